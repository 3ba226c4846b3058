"""Verdicts for `perceptron-xor`: the probes' plain data compared with the grader's own reference (its
own run of the Phase 1 regression loop, reference.py's networks and training step, and the AND and
XOR truth tables from datasets/and.csv and datasets/xor.csv)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from autograder.checks import (Check, Context, Fail, Handoff, array, expect, expect_device_choice,
                               expect_training_setup, expect_watched_run, figure, integer, labelled, number, numbers)
from autograder.checks import state_dict as as_state_dict
from autograder.data import DATA_DIR, verify
from autograder.probe_tools import device_choice, training_setup

from . import probes
from .reference import (AND_EPOCHS, AND_LR, FIRST_SIZES, NOTES_X, NOTES_Y, REGRESSION_EPOCHS, REGRESSION_LR,
                        XOR_EPOCHS, XOR_LR, XOR_SEED, Perceptron, first_network, linear_params, mse_grads,
                        pick_device, square_grad_history, step_from, train_regression, train_step, xor_net)

PERCEPTRON_SHAPES = {"linear.weight": (1, 2), "linear.bias": (1,)}
XOR_SHAPES = [(4, 2), (4,), (1, 4), (1,)]  # Linear(2, 4) then Linear(4, 1), in parameters() order
# Outputs and loss histories are compared like np.allclose(values, reference, rtol=RTOL, atol=ATOL).
RTOL = 1e-4
ATOL = 1e-6
# Largest distance allowed between the student's train_step and the grader's step (weights and loss). Correct
# variants agree to 6e-8; the nearest mistake (stale gradients never zeroed) is 3e-3 away.
# Calibrated in docs/calibration.md (`python -m autograder calibrate perceptron-xor`).
STEP_ATOL = 1e-5


def _gate(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A truth table from its verified CSV: X (4, 2) float32, y (4, 1) float32."""
    verify(DATA_DIR, [f"{name}.csv"])
    table = np.loadtxt(DATA_DIR / f"{name}.csv", delimiter=",", skiprows=1, dtype=np.float32)
    return torch.from_numpy(table[:, :2].copy()), torch.from_numpy(table[:, 2:].copy())


def reference(assignment):
    return {"and": _gate("and"), "xor": _gate("xor"), "regression": train_regression()}


def allclose_excess(values, expected) -> float:
    """How far `values` lie outside np.allclose's band around `expected`, relative to |expected|:
    they are close (rtol=RTOL, atol=ATOL) exactly when this is at most RTOL."""
    values, expected = np.asarray(values, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    return float(np.max((np.abs(values - expected) - ATOL) / np.maximum(np.abs(expected), 1e-12)))


def perceptron_from(state) -> Perceptron:
    model = Perceptron()
    model.load_state_dict(as_state_dict(state, "Perceptron().state_dict()", PERCEPTRON_SHAPES))
    return model.eval()


def xor_net_from(params, name: str) -> nn.Sequential:
    """The reference 2-4-1 network with the student's parameters, taken in `parameters()` order."""
    expect(isinstance(params, list) and len(params) == len(XOR_SHAPES),
           f"`{name}` should have 4 parameter tensors (two nn.Linear layers: 2 -> 4 and 4 -> 1)")
    net = xor_net()
    with torch.no_grad():
        for target, value, shape in zip(net.parameters(), params, XOR_SHAPES):
            values = array(value, f"a parameter of {name}", shape=shape)
            expect(values.dtype.kind == "f", f"the parameters of {name} should hold floats")
            target.copy_(torch.from_numpy(np.array(values, dtype=np.float32)))
    return net.eval()


def right_outputs(model: nn.Module, table) -> int:
    """How many of a truth table's four outputs the model puts on the right side of 0.5."""
    X, y = table
    with torch.no_grad():
        return int(((model(X) > 0.5).float() == y).sum())


def inputs_points(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.uniform(-3, 3, size=(64, 2)).astype(np.float32))}


# -- q1: linear regression with raw autograd ---------------------------------------------------
def learned_distance(value, name: str, ref: dict) -> float:
    """|learned `name` - the grader's run|."""
    return abs(number(value, name) - ref[name])


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
        expect(learned_distance(value, name, ref) <= tolerance,
               f"the learned `{name}` does not agree with the grader's run of the same loop (lr {REGRESSION_LR:g}, "
               f"{REGRESSION_EPOCHS} epochs): check the loss, the update and that both gradients are zeroed every "
               "epoch")


def verdict_regression_losses(data: dict, ctx: Context) -> None:
    ref = ctx.ref["regression"]["losses"]
    losses = numbers(data.get("losses"), "losses")
    expect(len(losses) == REGRESSION_EPOCHS, f"record one loss per epoch ({REGRESSION_EPOCHS} in all)")
    expect(allclose_excess(losses, ref) <= RTOL,
           "`losses` does not follow the grader's run: record the mean squared error of each epoch")


# -- q2: the perceptron on AND -----------------------------------------------------------------
def verdict_perceptron(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 3,
           "Perceptron() should have 3 parameters: one nn.Linear(2, 1)")
    model = perceptron_from(data.get("state"))
    out = array(data.get("out"), "the perceptron's output", kind="tensor", shape=(64, 1))
    with torch.no_grad():
        expected = model(ctx.inputs["x"]).numpy()
    expect(allclose_excess(out, expected) <= RTOL,
           "forward should return sigmoid(linear(x)): BCELoss needs probabilities, not raw scores")


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
            for k, v in xor_net().state_dict().items()}
    stale = {k: torch.from_numpy((rng.choice([-1.0, 1.0], size=tuple(v.shape))
                                  * rng.uniform(0.1, 1.0, size=tuple(v.shape))).astype(np.float32))
             for k, v in init.items()}
    return {"X": torch.from_numpy(rng.uniform(-2, 2, size=(n, 2)).astype(np.float32)),
            "y": torch.from_numpy(y), "init": init, "stale": stale, "lr": float(rng.uniform(0.2, 1.0))}


def reference_step(inp: dict) -> tuple[dict, float]:
    """The grader's own step (reference.train_step) from the same weights and stale gradients."""
    state, loss = step_from(inp, train_step)
    return {k: v.detach().clone() for k, v in state.items()}, loss


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


def verdict_train_step_device(data: dict, ctx: Context) -> None:
    expect_watched_run(data.get("run"), "train_step",
                       batch="train_step(..., device) fed the model a batch that is not on `device`: X.to(device) "
                             "returns a moved copy, so assign it (X = X.to(device))",
                       target="train_step(..., device) passed the criterion a target that is not on `device`: "
                              "move y too (y = y.to(device))")


def verdict_and(data: dict, ctx: Context) -> None:
    right = right_outputs(perceptron_from(data.get("state")), ctx.ref["and"])
    expect(right == 4, f"the grader ran the AND inputs through your trained weights: {right} of 4 are right")


# -- q3: the XOR MLP ---------------------------------------------------------------------------
def verdict_xor_model(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 17,
           "XOR_MLP() should have 17 parameters: Linear(2, 4) (8 weights + 4 biases) and Linear(4, 1) (4 + 1)")
    net = xor_net_from(data.get("params"), "XOR_MLP()")
    out = array(data.get("out"), "the XOR_MLP's output", kind="tensor", shape=(64, 1))
    with torch.no_grad():
        expected = net(ctx.inputs["x"]).numpy()
    expect(allclose_excess(out, expected) <= RTOL,
           "the outputs are not those of Linear(2, 4) -> ReLU -> Linear(4, 1) -> Sigmoid")


XOR_HISTORY_LENGTH = "train for {epochs} epochs and append each epoch's loss to `losses` ({n} found)"


def verdict_xor_history(data: dict, ctx: Context) -> None:
    losses = numbers(data.get("losses"), "losses")
    expect(len(losses) == XOR_EPOCHS, XOR_HISTORY_LENGTH.format(epochs=XOR_EPOCHS, n=len(losses)))
    expect(losses[-10:].mean() < losses[:10].mean(), "the training loss should go down")


def verdict_xor_accuracy(data: dict, ctx: Context) -> None:
    right = right_outputs(xor_net_from(data.get("params"), "the trained model"), ctx.ref["xor"])
    expect(right == 4, f"the grader ran the XOR inputs through your trained weights: {right} of 4 are right")


# -- q4: the loss curves -----------------------------------------------------------------------
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


def verdict_and_setup(data: dict, ctx: Context) -> None:
    expect_training_setup(data, criterion="BCELoss", optimizer="SGD", lr=AND_LR)


def verdict_xor_setup(data: dict, ctx: Context) -> None:
    expect_training_setup(data, criterion="BCELoss", optimizer="Adam", lr=XOR_LR)


def verdict_device_choice(data: dict, ctx: Context) -> None:
    expect_device_choice(data)

# -- q6: the gradients of "linear regression in 5 lines" -----------------------------------------
def inputs_regression_grads(ctx: Context) -> dict:
    """Three data sets of 8 to 20 points and starting weights away from the notes' (0, 0), used in turn."""
    rng = ctx.rng
    cases = []
    for _ in range(3):
        n = int(rng.integers(8, 21))
        x = rng.uniform(-3, 5, size=n)
        y = rng.uniform(-3, 3) * x + rng.uniform(-2, 2) + rng.normal(0, 0.5, size=n)
        cases.append({"x": torch.from_numpy(x.astype(np.float32)), "y": torch.from_numpy(y.astype(np.float32)),
                      "w0": float(np.round(rng.uniform(-2, 2), 3)), "b0": float(np.round(rng.uniform(-2, 2), 3))})
    return {"cases": cases}


def grad_pair(value, name: str) -> np.ndarray:
    """Two numbers (dL/dw, dL/db), each a float or a one-element tensor."""
    expect(isinstance(value, list) and len(value) == 2, f"{name} should return two values: (dL/dw, dL/db)")
    return np.array([number(v, name) for v in value])


def verdict_regression_grads(data: dict, ctx: Context) -> None:
    grads = data.get("grads")
    cases = ctx.inputs["cases"]
    expect(isinstance(grads, list) and len(grads) == len(cases), "regression_grads could not be called")
    right = [allclose_excess(grad_pair(value, "regression_grads"),
                             mse_grads(case["x"].numpy(), case["y"].numpy(), case["w0"], case["b0"])) <= RTOL
             for value, case in zip(grads, cases)]
    expect(not right[0] or all(right),
           "regression_grads is right on its first call but not on the next ones: create fresh w and b with "
           "requires_grad=True inside the function (or zero their gradients), since backward() adds to .grad")
    expect(all(right),
           "regression_grads does not return the gradients of the mean squared error at (w0, b0) on the "
           "grader's data: y_pred = w * x + b, loss = ((y_pred - y_true) ** 2).mean(), loss.backward(), "
           "then w.grad and b.grad")


def verdict_notes_grads(data: dict, ctx: Context) -> None:
    got = np.array([number(data.get("dL_dw"), "dL_dw"), number(data.get("dL_db"), "dL_db")])
    expect(allclose_excess(got, mse_grads(NOTES_X, NOTES_Y, 0.0, 0.0)) <= RTOL,
           "`dL_dw` and `dL_db` are not the gradients of the mean squared error on the notes' five points "
           "at w = b = 0")


# -- q7: gradients accumulate: (w * 3) ** 2 ------------------------------------------------------
def inputs_grad_history(ctx: Context) -> dict:
    """Starting values with |w0| >= 0.3, 3 or 4 backward passes, with and without zeroing."""
    rng = ctx.rng
    cases = []
    for zero_grad in (False, True, False):
        w0 = float(np.round(rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 2.0), 3))
        cases.append({"w0": w0, "n": int(rng.integers(3, 5)), "zero_grad": zero_grad})
    return {"cases": cases}


def verdict_grad_history(data: dict, ctx: Context) -> None:
    runs = data.get("runs")
    cases = ctx.inputs["cases"]
    expect(isinstance(runs, list) and len(runs) == len(cases), "grad_history could not be called")
    for run, case in zip(runs, cases):
        expected = square_grad_history(case["w0"], case["n"], case["zero_grad"])
        values = numbers(run, "grad_history(...)")
        expect(len(values) == case["n"], "grad_history(w0, n_backward, zero_grad) should return one value of "
                                         "w.grad per backward pass (n_backward of them)")
        aliased = np.allclose(values, values[-1]) and allclose_excess(values[-1:], expected[-1:]) <= RTOL
        if not case["zero_grad"] and aliased:
            raise Fail("grad_history's values are all the last one: w.grad is one tensor that backward() updates "
                       "in place, so record w.grad.item() (or w.grad.clone()) after each pass")
        which = "with zero_grad=True, zero w.grad before each backward pass" if case["zero_grad"] else \
            "with zero_grad=False, never zero it: each backward() adds to (accumulates in) w.grad"
        expect(allclose_excess(values, expected) <= RTOL,
               f"grad_history does not follow w.grad over the backward passes of (w * 3) ** 2: {which}")
    notes = data.get("notes")
    names = ("grad_first", "grad_accumulated", "grad_after_zero")
    got = np.array([number(v, name) for v, name in zip(notes, names)])
    expected = square_grad_history(1.0, 2, False) + square_grad_history(1.0, 1, True)
    expect(allclose_excess(got, expected) <= RTOL,
           "`grad_first`, `grad_accumulated` and `grad_after_zero` should be w.grad after each of the notes' "
           "three steps at w = 1: backward, backward again without zeroing (it accumulates), then zero_() and "
           "backward")


# -- q8: MyFirstNetwork and its parameter count ----------------------------------------------------
def inputs_first_network(ctx: Context) -> dict:
    """Sizes other than the notes' 2-4-3, all three different (so each parameter's shape names it), and inputs."""
    rng = ctx.rng
    sizes = [int(rng.integers(3, 6)), int(rng.integers(6, 9)), int(rng.integers(9, 12))]
    return {"sizes": sizes, "x": torch.from_numpy(rng.uniform(-3, 3, size=(32, sizes[0])).astype(np.float32))}


def loaded(net: nn.Sequential, params, name: str) -> nn.Sequential:
    """`net` (the reference Linear -> ReLU -> Linear) with the student's parameters, matched by shape."""
    by_shape = {}
    for value in params if isinstance(params, list) else []:
        values = array(value, f"a parameter of {name}")
        by_shape[values.shape] = values
    with torch.no_grad():
        for target in net.parameters():
            shape = tuple(target.shape)
            expect(shape in by_shape and len(by_shape) == 4,
                   f"{name} should hold exactly two nn.Linear layers, (n_input -> n_hidden) and "
                   f"(n_hidden -> n_output): no parameter of shape {shape} found")
            target.copy_(torch.from_numpy(np.array(by_shape[shape], dtype=np.float32)))
    return net.eval()


def verdict_first_network(data: dict, ctx: Context) -> None:
    a, h, c = ctx.inputs["sizes"]
    name = f"MyFirstNetwork({a}, {h}, {c})"
    net = loaded(first_network(a, h, c), data.get("params"), name)
    out = array(data.get("out"), f"the output of {name}", kind="tensor", shape=(len(ctx.inputs["x"]), c))
    with torch.no_grad():
        expected = net(ctx.inputs["x"]).numpy()
    expect(allclose_excess(out, expected) <= RTOL,
           f"{name}'s outputs are not Linear -> ReLU -> Linear on the grader's inputs: apply the ReLU to the hidden "
           "layer, and return the output layer's raw logits (no activation at the end)")
    shapes = data.get("net_shapes")
    count = sum(int(np.prod(s)) for s in shapes) if isinstance(shapes, list) else -1
    expect(count == linear_params(*FIRST_SIZES[:2]) + linear_params(*FIRST_SIZES[1:]),
           "`net` should be MyFirstNetwork(n_input=2, n_hidden=4, n_output=3)")
    expect(integer(data.get("n_params"), "n_params") == count,
           "`n_params` should count every parameter of `net`, weights and biases: "
           "sum(p.numel() for p in net.parameters())")


# -- q9: the same network as an nn.Sequential ------------------------------------------------------
def inputs_sequential(ctx: Context) -> dict:
    """Weights for Linear(2, 4) and Linear(4, 3) (in parameters() order) and inputs."""
    rng = ctx.rng
    net = first_network(*FIRST_SIZES)
    weights = [torch.from_numpy(rng.normal(0, 1, size=tuple(p.shape)).astype(np.float32)) for p in net.parameters()]
    x = rng.uniform(-3, 3, size=(32, FIRST_SIZES[0]))
    return {"weights": weights, "x": torch.from_numpy(x.astype(np.float32))}


def verdict_sequential(data: dict, ctx: Context) -> None:
    expect(data.get("sequential") is True, "`net_seq` should be an nn.Sequential")
    expect(data.get("shapes") == [list(w.shape) for w in ctx.inputs["weights"]],
           "`net_seq` should hold nn.Linear(2, 4) and nn.Linear(4, 3), with an activation between them")
    net = first_network(*FIRST_SIZES)
    with torch.no_grad():
        for target, value in zip(net.parameters(), ctx.inputs["weights"]):
            target.copy_(value)
        expected = net.eval()(ctx.inputs["x"]).numpy()
    out = array(data.get("out"), "the output of net_seq", kind="tensor", shape=expected.shape)
    expect(allclose_excess(out, expected) <= RTOL,
           "with the grader's weights copied in, `net_seq` does not compute what MyFirstNetwork computes: "
           "nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), with no softmax or other activation after the last "
           "layer (raw logits)")


CHECKS = [
    Check("q1", "learned w and b agree with the grader's run of the same loop", probes.regression,
          verdict_regression, hint="update under torch.no_grad() and call w.grad.zero_() and b.grad.zero_() "
                                   "every epoch"),
    Check("q1", "one mean squared error per epoch in `losses`", probes.regression, verdict_regression_losses),
    Check("q2", "Perceptron: 3 parameters, sigmoid of a linear layer on fresh inputs", probes.fresh_perceptron,
          verdict_perceptron, inputs=inputs_points),
    Check("q2", "loss function and optimiser settings", training_setup, verdict_and_setup),
    Check("q2", "all four AND outputs, measured by the grader from your weights", probes.and_weights, verdict_and,
          hint=f"train for all {AND_EPOCHS} epochs with SGD lr={AND_LR}"),
    Check("q2", "train_step: one step on the grader's batch updates the weights like the grader's step",
          probes.one_step, verdict_train_step, inputs=inputs_step,
          hint="forward, loss, optimizer.zero_grad(), loss.backward(), optimizer.step(); return loss.item()"),
    Check("q2", "train_step(..., device) runs the model and the loss on `device`", probes.step_on_meta,
          verdict_train_step_device),
    Check("q2", "pick_device() follows torch.cuda.is_available()", device_choice, verdict_device_choice),
    Check("q3", "XOR_MLP: 17 parameters, Linear -> ReLU -> Linear -> Sigmoid on fresh inputs", probes.fresh_xor_mlp,
          verdict_xor_model, inputs=inputs_points),
    Check("q3", "loss function and optimiser settings", training_setup, verdict_xor_setup),
    Check("q3", "one loss per epoch, going down", probes.xor_history, verdict_xor_history),
    Check("q3", "all four XOR outputs, measured by the grader from your weights", probes.xor_weights,
          verdict_xor_accuracy, hint=f"keep torch.manual_seed({XOR_SEED}) right before XOR_MLP() and train all {XOR_EPOCHS} "
                                     "epochs"),
    Check("q4", "both loss curves, axis labels and a legend", probes.curves, verdict_curves),
    Check("q4", "logarithmic y-axis", probes.curves, verdict_log_axis),
    Check("q6", "regression_grads: autograd's gradients of the MSE on the grader's data and weights",
          probes.regression_grads_on, verdict_regression_grads, inputs=inputs_regression_grads,
          hint="fresh w and b with requires_grad=True, the mean of the squared errors, loss.backward()"),
    Check("q6", "dL_dw and dL_db on the notes' five points", probes.notes_regression_grads, verdict_notes_grads),
    Check("q7", "grad_history: w.grad over repeated backward passes, with and without zeroing, and the notes' "
                "three steps", probes.grad_histories, verdict_grad_history, inputs=inputs_grad_history,
          hint="backward() adds to w.grad; w.grad.zero_() resets it"),
    Check("q8", "MyFirstNetwork on the grader's sizes and inputs (Linear -> ReLU -> Linear), and n_params",
          probes.first_network_on, verdict_first_network, inputs=inputs_first_network),
    Check("q9", "net_seq with the grader's weights copied in computes MyFirstNetwork's outputs",
          probes.sequential_on, verdict_sequential, inputs=inputs_sequential),
]


# Hand-offs: once a question is graded, what its prompt fully specifies replaces the student's answer, so
# one mistake costs only its own question's points. After q2: the reference `train_step` and `pick_device`
# (and `device = pick_device()`), which Question 3 trains with. After q3: a usable XOR `losses` curve for
# Question 4 (see probes.usable_xor_losses).
HANDOFFS = {
    "q2": Handoff(install=(pick_device, train_step), run=probes.set_device),
    "q3": Handoff(run=probes.usable_xor_losses),
}
