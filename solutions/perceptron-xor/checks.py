"""Hidden checks for `perceptron-xor`: probes export plain data, verdicts compare it with the grader's
own reference (its own run of the Phase 1 regression loop, and the AND and XOR truth tables from
datasets/and.csv and datasets/xor.csv)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from autograder.checks import (DEVICE_CHOICE_PROBE, TRAINING_SETUP_PROBE, Check, Context, Handoff, array, expect,
                               expect_device_choice, expect_training_setup, figure, integer, labelled, number,
                               numbers)
from autograder.checks import state_dict as as_state_dict
from autograder.data import DATA_DIR, verify

REGRESSION_EPOCHS = 500
XOR_EPOCHS = 5000
PERCEPTRON_SHAPES = {"linear.weight": (1, 2), "linear.bias": (1,)}
XOR_SHAPES = [(4, 2), (4,), (1, 4), (1,)]  # Linear(2, 4) then Linear(4, 1), in parameters() order
XOR_SEED = 42  # the notebook's torch.manual_seed before XOR_MLP() (tools/calibrate_perceptron-xor.py)
# Largest distance allowed between the student's train_step and the grader's step (weights and loss). Correct
# variants agree to 6e-8; the nearest mistake (stale gradients never zeroed) is 3e-3 away.
# Calibrated in docs/calibration.md (tools/calibrate_perceptron-xor.py --tolerances).
STEP_ATOL = 1e-5


def _gate(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A truth table from its verified CSV: X (4, 2) float32, y (4, 1) float32."""
    verify(DATA_DIR, [f"{name}.csv"])
    table = np.loadtxt(DATA_DIR / f"{name}.csv", delimiter=",", skiprows=1, dtype=np.float32)
    return torch.from_numpy(table[:, :2].copy()), torch.from_numpy(table[:, 2:].copy())


def _regression_reference() -> dict:
    """Phase 1 exactly as the notes write it: raw autograd, lr 0.01, 500 epochs."""
    torch.manual_seed(42)
    x = torch.linspace(0, 5, 50)
    y_true = 2 * x + 1 + torch.randn(50) * 0.5
    w = torch.tensor(0.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    losses = []
    for _ in range(REGRESSION_EPOCHS):
        loss = ((w * x + b - y_true) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            w -= 0.01 * w.grad
            b -= 0.01 * b.grad
        w.grad.zero_()
        b.grad.zero_()
        losses.append(loss.item())
    return {"w": w.item(), "b": b.item(), "losses": np.array(losses)}


def reference(assignment):
    return {"and": _gate("and"), "xor": _gate("xor"), "regression": _regression_reference()}


def _perceptron(state) -> nn.Module:
    model = nn.Module()
    model.linear = nn.Linear(2, 1)
    model.load_state_dict(as_state_dict(state, "Perceptron().state_dict()", PERCEPTRON_SHAPES))
    return model


def _xor_mlp(params, name: str) -> nn.Sequential:
    """The reference 2-4-1 network with the student's parameters, taken in `parameters()` order."""
    expect(isinstance(params, list) and len(params) == len(XOR_SHAPES),
           f"`{name}` should have 4 parameter tensors (two nn.Linear layers: 2 -> 4 and 4 -> 1)")
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    with torch.no_grad():
        for target, value, shape in zip(net.parameters(), params, XOR_SHAPES):
            values = array(value, f"a parameter of {name}", shape=shape)
            expect(values.dtype.kind == "f", f"the parameters of {name} should hold floats")
            target.copy_(torch.from_numpy(np.array(values, dtype=np.float32)))
    return net.eval()


def inputs_points(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.uniform(-3, 3, size=(64, 2)).astype(np.float32))}


# -- q1: linear regression with raw autograd ---------------------------------------------------
REGRESSION_PROBE = """
w, b = get("w"), get("b")
export(w=w, b=b, leaf=[getattr(w, "is_leaf", None), getattr(b, "is_leaf", None)],
       losses=[float(v) for v in get("losses")])
"""


def verdict_regression(data: dict, ctx: Context) -> None:
    ref = ctx.ref["regression"]
    tolerance = ctx.thresholds["regression_tolerance"]
    expect(data.get("leaf") == [True, True],
           "`w` and `b` should stay leaf tensors: update them in place (w -= lr * w.grad) inside torch.no_grad(); "
           "`w = w - lr * w.grad` makes a new tensor whose .grad is never filled")
    for name in ("w", "b"):
        value = data.get(name)
        values = array(value, name, kind="tensor")
        expect(values.size == 1, f"`{name}` should be a scalar tensor, not one of shape {values.shape}")
        expect(value.requires_grad, f"`{name}` should still require gradients: update it in place inside "
                                    "torch.no_grad() instead of creating a new tensor")
        expect(abs(number(value, name) - ref[name]) <= tolerance,
               f"the learned `{name}` does not agree with the grader's run of the same loop (lr 0.01, "
               "500 epochs): check the loss, the update and that both gradients are zeroed every epoch")


def verdict_regression_losses(data: dict, ctx: Context) -> None:
    ref = ctx.ref["regression"]["losses"]
    losses = numbers(data.get("losses"), "losses")
    expect(len(losses) == REGRESSION_EPOCHS, f"record one loss per epoch ({REGRESSION_EPOCHS} in all)")
    expect(np.allclose(losses, ref, rtol=1e-4, atol=1e-6),
           "`losses` does not follow the grader's run: record the mean squared error of each epoch")


# -- q2: the perceptron on AND -----------------------------------------------------------------
PERCEPTRON_PROBE = """
import torch
fresh = get("Perceptron")()
fresh.eval()
with torch.no_grad():
    out = fresh(inputs["x"])
export(n_params=sum(p.numel() for p in fresh.parameters()), state=fresh.state_dict(), out=out)
"""


def verdict_perceptron(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 3,
           "Perceptron() should have 3 parameters: one nn.Linear(2, 1)")
    model = _perceptron(data.get("state"))
    out = array(data.get("out"), "the perceptron's output", kind="tensor", shape=(64, 1))
    with torch.no_grad():
        expected = torch.sigmoid(model.linear(ctx.inputs["x"])).numpy()
    expect(np.allclose(out, expected, rtol=1e-4, atol=1e-6),
           "forward should return sigmoid(linear(x)): BCELoss needs probabilities, not raw scores")


def _step_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())


def inputs_step(ctx: Context) -> dict:
    """A batch with both labels, fresh random weights, stale gradients left by an earlier step and an lr.

    The stale gradients are what a step without zero_grad() adds to its own: they are drawn on every
    draw, at least 0.1 in size, so a missing or misplaced zero_grad() moves every weight by >= lr * 0.1.
    """
    rng = ctx.rng
    n = 16
    y = np.zeros((n, 1), dtype=np.float32)
    y[rng.permutation(n)[: n // 2]] = 1.0  # both classes, every draw
    init = {k: torch.from_numpy(rng.normal(0, 0.8, size=tuple(v.shape)).astype(np.float32))
            for k, v in _step_net().state_dict().items()}
    stale = {k: torch.from_numpy((rng.choice([-1.0, 1.0], size=tuple(v.shape))
                                  * rng.uniform(0.1, 1.0, size=tuple(v.shape))).astype(np.float32))
             for k, v in init.items()}
    return {"X": torch.from_numpy(rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)),
            "y": torch.from_numpy(y), "init": init, "stale": stale, "lr": float(rng.uniform(0.2, 1.0))}


TRAIN_STEP_PROBE = """
import torch
import torch.nn as nn
with torch.random.fork_rng():
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
net.load_state_dict(inputs["init"])
net.train()
for name, p in net.named_parameters():
    p.grad = inputs["stale"][name].clone()  # gradients left over from an earlier step
opt = torch.optim.SGD(net.parameters(), lr=float(inputs["lr"]))
loss = get("train_step")(net, nn.BCELoss(), opt, inputs["X"].clone(), inputs["y"].clone(), torch.device("cpu"))
export(loss=loss, state=net.state_dict())
"""


def reference_step(inp: dict) -> tuple[dict, float]:
    """The grader's own step: forward, BCE, zero_grad, backward, SGD step, from the same weights."""
    net = _step_net()
    net.load_state_dict(inp["init"])
    for name, p in net.named_parameters():
        p.grad = inp["stale"][name].clone()
    opt = torch.optim.SGD(net.parameters(), lr=inp["lr"])
    loss = nn.BCELoss()(net(inp["X"]), inp["y"])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}, loss.item()


def step_distance(data: dict, inp: dict) -> tuple[float, float]:
    """Largest weight difference and loss difference between the student's step and the grader's."""
    expected, ref_loss = reference_step(inp)
    state = as_state_dict(data.get("state"), "the weights after train_step",
                          {k: tuple(v.shape) for k, v in expected.items()})
    weights = max(float((state[k] - v).abs().max()) for k, v in expected.items())
    return weights, abs(number(data.get("loss"), "train_step's return value") - ref_loss)


def verdict_train_step(data: dict, ctx: Context) -> None:
    weights, loss = step_distance(data, ctx.inputs)
    expect(weights <= STEP_ATOL,
           "after one train_step the weights differ from the grader's step (forward, loss, zero_grad, backward, "
           "step) on its batch: call optimizer.zero_grad() before loss.backward(), and step after it")
    expect(loss <= STEP_ATOL * 10, "train_step should return this step's loss, loss.item()")


TRAIN_STEP_DEVICE_PROBE = """
import torch
import torch.nn as nn
import torch.nn.functional as F
meta = torch.device("meta")
with torch.random.fork_rng():
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid()).to(meta)
seen = {"forward": [], "criterion": []}
net.register_forward_pre_hook(lambda module, args: seen["forward"].append(str(args[0].device)))
def criterion(out, target):
    seen["criterion"].append([str(out.device), str(target.device)])
    return F.binary_cross_entropy(out, target)
X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])  # on the CPU
y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
try:
    get("train_step")(net, criterion, torch.optim.SGD(net.parameters(), lr=0.1), X, y, meta)
    error = ""
except Exception as exc:  # loss.item() cannot read a meta tensor: expected
    error = type(exc).__name__ + ": " + str(exc)[:200]
export(meta={**seen, "error": error})
"""


def verdict_train_step_device(data: dict, ctx: Context) -> None:
    run = data.get("meta")
    expect(isinstance(run, dict), "train_step could not be run on another device")
    forward, crit = run.get("forward"), run.get("criterion")
    expect(isinstance(forward, list) and forward,
           f"train_step never called the model (it stopped with: {str(run.get('error', ''))[:120]})")
    expect(all(d == "meta" for d in forward),
           "train_step(..., device) fed the model a batch that is not on `device`: X.to(device) returns a "
           "moved copy, so assign it (X = X.to(device))")
    expect(isinstance(crit, list) and crit and all(pair == ["meta", "meta"] for pair in crit),
           "train_step(..., device) passed the criterion a target that is not on `device`: move y too "
           "(y = y.to(device))")


AND_PROBE = """
export(state={k: v.cpu() for k, v in get("model").state_dict().items()})
"""


def verdict_and(data: dict, ctx: Context) -> None:
    model = _perceptron(data.get("state"))
    X, y = ctx.ref["and"]
    with torch.no_grad():
        predicted = (torch.sigmoid(model.linear(X)) > 0.5).float()
    right = int((predicted == y).sum())
    expect(right == 4, f"the grader ran the AND inputs through your trained weights: {right} of 4 are right")


# -- q3: the XOR MLP ---------------------------------------------------------------------------
XOR_MODEL_PROBE = """
import torch
fresh = get("XOR_MLP")()
fresh.eval()
with torch.no_grad():
    out = fresh(inputs["x"])
export(n_params=sum(p.numel() for p in fresh.parameters()), params=[p.detach().clone() for p in fresh.parameters()],
       out=out)
"""


def verdict_xor_model(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 17,
           "XOR_MLP() should have 17 parameters: Linear(2, 4) (8 weights + 4 biases) and Linear(4, 1) (4 + 1)")
    net = _xor_mlp(data.get("params"), "XOR_MLP()")
    out = array(data.get("out"), "the XOR_MLP's output", kind="tensor", shape=(64, 1))
    with torch.no_grad():
        expected = net(ctx.inputs["x"]).numpy()
    expect(np.allclose(out, expected, rtol=1e-4, atol=1e-6),
           "the outputs are not those of Linear(2, 4) -> ReLU -> Linear(4, 1) -> Sigmoid")


XOR_HISTORY_PROBE = """
export(losses=[float(v) for v in get("losses")])
"""
XOR_HISTORY_LENGTH = "train for {epochs} epochs and append each epoch's loss to `losses` ({n} found)"


def verdict_xor_history(data: dict, ctx: Context) -> None:
    losses = numbers(data.get("losses"), "losses")
    expect(len(losses) == XOR_EPOCHS, XOR_HISTORY_LENGTH.format(epochs=XOR_EPOCHS, n=len(losses)))
    expect(losses[-10:].mean() < losses[:10].mean(), "the training loss should go down")


XOR_TRAINED_PROBE = """
export(params=[p.detach().cpu().clone() for p in get("model").parameters()])
"""


def verdict_xor_accuracy(data: dict, ctx: Context) -> None:
    net = _xor_mlp(data.get("params"), "the trained model")
    X, y = ctx.ref["xor"]
    with torch.no_grad():
        right = int(((net(X) > 0.5).float() == y).sum())
    expect(right == 4, f"the grader ran the XOR inputs through your trained weights: {right} of 4 are right")


# -- q4: the loss curves -----------------------------------------------------------------------
FIGURE_PROBE = """
export(figure=figure_summary(get("fig")), n_manual=len(get("manual_losses")), n_torch=len(get("losses")))
"""


def _curve_axes(data: dict) -> dict:
    fig = figure(data.get("figure"))
    expect(len(fig["axes"]) >= 1, "draw the curves on `ax` of `fig, ax = plt.subplots(...)`")
    return fig["axes"][0]


def verdict_curves(data: dict, ctx: Context) -> None:
    ax = _curve_axes(data)
    n_manual = integer(data.get("n_manual"), "len(manual_losses)")
    n_torch = integer(data.get("n_torch"), "len(losses)")
    lengths = [line["n"] for line in ax["lines"]]
    if n_manual == n_torch:
        both = lengths.count(n_manual) >= 2
    else:
        both = n_manual in lengths and n_torch in lengths
    expect(both, "plot `manual_losses` and `losses` on the same axes, one line each")
    expect(labelled(ax), "label both axes")
    expect(bool(ax["legend"]) and len(ax["legend"]) >= 2, "add a legend that names both curves")


def verdict_log_axis(data: dict, ctx: Context) -> None:
    expect(_curve_axes(data)["yscale"] == "log", "use a logarithmic y-axis: ax.set_yscale('log')")


CHECKS = [
    Check("q1", "learned w and b agree with the grader's run of the same loop", REGRESSION_PROBE,
          verdict_regression, hint="update under torch.no_grad() and call w.grad.zero_() and b.grad.zero_() "
                                   "every epoch"),
    Check("q1", "one mean squared error per epoch in `losses`", REGRESSION_PROBE, verdict_regression_losses),
    Check("q2", "Perceptron: 3 parameters, sigmoid of a linear layer on fresh inputs", PERCEPTRON_PROBE,
          verdict_perceptron, inputs=inputs_points),
    Check("q2", "loss function and optimiser settings", TRAINING_SETUP_PROBE,
          lambda d, c: expect_training_setup(d, criterion="BCELoss", optimizer="SGD", lr=1.0)),
    Check("q2", "all four AND outputs, measured by the grader from your weights", AND_PROBE, verdict_and,
          hint="train for all 1000 epochs with SGD lr=1.0"),
    Check("q2", "train_step: one step on the grader's batch updates the weights like the grader's step",
          TRAIN_STEP_PROBE, verdict_train_step, inputs=inputs_step,
          hint="forward, loss, optimizer.zero_grad(), loss.backward(), optimizer.step(); return loss.item()"),
    Check("q2", "train_step(..., device) runs the model and the loss on `device`", TRAIN_STEP_DEVICE_PROBE,
          verdict_train_step_device),
    Check("q2", "pick_device() follows torch.cuda.is_available()", DEVICE_CHOICE_PROBE,
          lambda d, c: expect_device_choice(d)),
    Check("q3", "XOR_MLP: 17 parameters, Linear -> ReLU -> Linear -> Sigmoid on fresh inputs", XOR_MODEL_PROBE,
          verdict_xor_model, inputs=inputs_points),
    Check("q3", "loss function and optimiser settings", TRAINING_SETUP_PROBE,
          lambda d, c: expect_training_setup(d, criterion="BCELoss", optimizer="Adam", lr=0.01)),
    Check("q3", "one loss per epoch, going down", XOR_HISTORY_PROBE, verdict_xor_history),
    Check("q3", "all four XOR outputs, measured by the grader from your weights", XOR_TRAINED_PROBE,
          verdict_xor_accuracy, hint="keep torch.manual_seed(42) right before XOR_MLP() and train all 5000 epochs"),
    Check("q4", "both loss curves, axis labels and a legend", FIGURE_PROBE, verdict_curves),
    Check("q4", "logarithmic y-axis", FIGURE_PROBE, verdict_log_axis),
]


# Hand-off: Question 4 plots the XOR `losses` of Question 3. When Question 3 left no usable curve
# (5000 floats), the grader trains the fully specified reference recipe in the notebook, so a
# mistake in Question 3 does not also cost Question 4.
XOR_LOSSES_SOURCE = f"""
_losses = globals().get("losses")
if not (isinstance(_losses, list) and len(_losses) == {XOR_EPOCHS} and all(isinstance(v, float) for v in _losses)):
    import torch as _torch
    import torch.nn as _nn
    _X = _torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=_torch.float32)  # on the CPU: only the curve is used
    _y = _torch.tensor([[0], [1], [1], [0]], dtype=_torch.float32)
    _torch.manual_seed({XOR_SEED})
    _net = _nn.Sequential(_nn.Linear(2, 4), _nn.ReLU(), _nn.Linear(4, 1), _nn.Sigmoid())
    _criterion = _nn.BCELoss()
    _optimizer = _torch.optim.Adam(_net.parameters(), lr=0.01)
    losses = []
    for _ in range({XOR_EPOCHS}):
        _loss = _criterion(_net(_X), _y)
        _optimizer.zero_grad()
        _loss.backward()
        _optimizer.step()
        losses.append(_loss.item())
"""
# Hand-off: Question 3 trains with Question 2's `train_step` and `device`, which the prompt fully specifies.
# After Question 2 the grader puts the reference versions in the namespace, so a wrong train_step or
# pick_device costs Question 2 only.
STEP_SOURCE = """
import torch as _torch


def pick_device():
    return _torch.device("cuda" if _torch.cuda.is_available() else "cpu")


def train_step(model, criterion, optimizer, X, y, device):
    X, y = X.to(device), y.to(device)
    loss = criterion(model(X), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


device = pick_device()
"""
HANDOFFS = {"q2": Handoff(source=STEP_SOURCE), "q3": Handoff(source=XOR_LOSSES_SOURCE)}
