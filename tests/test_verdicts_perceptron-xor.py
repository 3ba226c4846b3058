"""perceptron-xor's verdicts without a sandbox or a notebook: the reference's objects pass each check,
and each known mistake fails its check with a message that names it."""
from __future__ import annotations

import copy

import matplotlib
import pytest
import torch
import torch.nn as nn

from harness import all_checks, assert_fails, module, outcome, unlisted

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

AID = "perceptron-xor"


class XORModule(nn.Module):
    """The student's XOR_MLP, written as the notebook writes it (a Sequential attribute)."""

    def __init__(self, hidden=4, sigmoid=True):
        super().__init__()
        net = module(AID, "reference").xor_net()
        if hidden != 4:
            net = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())
        self.net = net if sigmoid else net[:-1]

    def forward(self, x):
        return self.net(x)


def curves(manual_losses, losses, legend=True, log=True):
    """Question 4's figure: both curves on one axes, labelled, with a legend and a log y-axis."""
    fig, ax = plt.subplots()
    ax.plot(manual_losses, label="manual (MSE)")
    ax.plot(losses, label="PyTorch (BCE)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if log:
        ax.set_yscale("log")
    if legend:
        ax.legend()
    return fig


@pytest.fixture(scope="module")
def solved() -> dict:
    """The student's namespace after a correct notebook: the regression, the perceptron's class, the
    XOR network trained for the grader's hand-off (seed 42), the step and the curves."""
    ref = module(AID, "reference")
    regression = ref.train_regression()
    w = torch.tensor(regression["w"], requires_grad=True)
    b = torch.tensor(regression["b"], requires_grad=True)
    and_model = ref.train_and(0)
    net, losses = ref.train_xor()
    xor_model = XORModule()
    xor_model.net = net
    manual_losses = [1.0 / (1 + i) for i in range(ref.XOR_EPOCHS)]
    fig = curves(manual_losses, losses)
    yield {"w": w, "b": b, "regression_losses": [float(v) for v in regression["losses"]],
           "Perceptron": ref.Perceptron, "and_model": and_model,
           "and_optimizer": torch.optim.SGD(and_model.parameters(), lr=ref.AND_LR),
           "train_step": ref.train_step, "pick_device": ref.pick_device, "XOR_MLP": XORModule, "model": xor_model,
           "criterion": nn.BCELoss(), "optimizer": torch.optim.Adam(xor_model.parameters(), lr=ref.XOR_LR),
           "losses": losses, "manual_losses": manual_losses, "fig": fig, **part1()}
    plt.close("all")


# -- Part I (Questions 6 to 9): the student's objects, written as the notebook writes them -------------
def regression_grads(x, y_true, w0, b0, reduce="mean"):
    w = torch.tensor(float(w0), requires_grad=True)
    b = torch.tensor(float(b0), requires_grad=True)
    loss = getattr((w * x + b - y_true) ** 2, reduce)()
    loss.backward()
    return w.grad.item(), b.grad.item()


def grad_history(w0, n_backward, zero_grad, never_zero=False, always_zero=False, alias=False):
    w = torch.tensor(float(w0), requires_grad=True)
    history = []
    for _ in range(n_backward):
        if (zero_grad and not never_zero or always_zero) and w.grad is not None:
            w.grad.zero_()
        ((w * 3) ** 2).backward()
        history.append(w.grad if alias else w.grad.item())
    return history


class MyFirstNetwork(nn.Module):
    def __init__(self, n_input, n_hidden, n_output, relu=True, last=None):
        super().__init__()
        self.hidden = nn.Linear(n_input, n_hidden)
        self.output = nn.Linear(n_hidden, n_output)
        self.relu = nn.ReLU() if relu else nn.Identity()
        self.last = last or nn.Identity()

    def forward(self, x):
        return self.last(self.output(self.relu(self.hidden(x))))


def part1() -> dict:
    """The Part I names of a correct notebook."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    y = torch.tensor([2.2, 3.8, 6.1, 7.9, 10.1])
    dL_dw, dL_db = regression_grads(x, y, 0.0, 0.0)
    first, accumulated = grad_history(1.0, 2, zero_grad=False)
    net = MyFirstNetwork(2, 4, 3)
    return {"regression_grads": regression_grads, "dL_dw": dL_dw, "dL_db": dL_db, "grad_history": grad_history,
            "grad_first": first, "grad_accumulated": accumulated, "grad_after_zero": grad_history(1.0, 1, True)[0],
            "MyFirstNetwork": MyFirstNetwork, "net": net, "n_params": sum(p.numel() for p in net.parameters()),
            "net_seq": nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))}


class _Shared:
    """regression_grads that keeps one w and b between calls and never zeroes their gradients."""

    def __init__(self):
        self.w = torch.tensor(0.0, requires_grad=True)
        self.b = torch.tensor(0.0, requires_grad=True)

    def __call__(self, x, y_true, w0, b0):
        with torch.no_grad():
            self.w.fill_(float(w0))
            self.b.fill_(float(b0))
        ((self.w * x + self.b - y_true) ** 2).mean().backward()
        return self.w.grad.item(), self.b.grad.item()


def _autograd_grad(x, y_true, w0, b0):
    params = torch.tensor([w0, b0], dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.mse_loss(params[0] * x.double() + params[1], y_true.double())
    dw, db = torch.autograd.grad(loss, params)[0]
    return dw, db


def _history_none_clone(w0, n_backward, zero_grad):
    w = torch.tensor(float(w0), requires_grad=True)
    out = []
    for _ in range(n_backward):
        if zero_grad:
            w.grad = None
        (9 * w ** 2).backward()
        out.append(w.grad.clone())
    return tuple(out)


class _OutputFirst(nn.Module):
    """Layers created output-first, a functional ReLU: parameters() comes in another order."""

    def __init__(self, n_input, n_hidden, n_output):
        super().__init__()
        self.fc2 = nn.Linear(n_hidden, n_output)
        self.fc1 = nn.Linear(n_input, n_hidden)

    def forward(self, x):
        return self.fc2(torch.nn.functional.relu(self.fc1(x)))


class _Fixed(MyFirstNetwork):
    """Ignores its arguments: always 2-4-3."""

    def __init__(self, *sizes):
        super().__init__(2, 4, 3)


HONEST = {  # Part I answers in another idiom: each check must pass
    "autograd_grad_float64": ("q6", "regression_grads", {"regression_grads": _autograd_grad}),
    "notes_grads_tensors": ("q6", "dL_dw", {"dL_dw": torch.tensor(-44.08), "dL_db": torch.tensor(-12.04)}),
    "history_none_clone": ("q7", "grad_history", {"grad_history": _history_none_clone}),
    "notes_steps_tensors": ("q7", "grad_history", {"grad_first": torch.tensor(18.0)}),
    "output_first_functional_relu": ("q8", "MyFirstNetwork", {"MyFirstNetwork": _OutputFirst}),
    "hand_count": ("q8", "MyFirstNetwork", {"n_params": 2 * 4 + 4 + 4 * 3 + 3}),
    "sequential_star_list": ("q9", "net_seq", {"net_seq": nn.Sequential(*[nn.Linear(2, 4), nn.ReLU(),
                                                                           nn.Linear(4, 3)])}),
    "sequential_extra_identity": ("q9", "net_seq", {"net_seq": nn.Sequential(nn.Linear(2, 4), nn.ReLU(),
                                                                              nn.Dropout(0.5), nn.Linear(4, 3))}),
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_variant_passes(solved, name):
    question, description, change = HONEST[name]
    result = outcome(AID, question, description, {**solved, **change})
    assert result["passed"], result


def as_of(question: str, namespace: dict) -> dict:
    """The namespace when `question` is checked: `model`, `losses` and the optimiser of that phase."""
    if question == "q1":
        return {**namespace, "losses": namespace["regression_losses"]}
    if question == "q2":
        return {**namespace, "model": namespace["and_model"], "optimizer": namespace["and_optimizer"]}
    return namespace


CHECKS = all_checks(AID)


@pytest.mark.parametrize("question, description", CHECKS)
def test_reference_passes(solved, question, description):
    result = outcome(AID, question, description, as_of(question, solved))
    assert result["passed"], result


def _batch_not_moved(model, criterion, optimizer, X, y, device):
    X.to(device)
    y.to(device)
    loss = criterion(model(X), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _not_zeroed(ns):
    never = module(AID, "calibrate").regression_variant(zero="never")
    run = module(AID, "reference").train_regression(epoch=never)
    return {"w": torch.tensor(run["w"], requires_grad=True), "b": torch.tensor(run["b"], requires_grad=True)}


def _sum_not_mean(ns):
    return {"regression_losses": [50 * v for v in ns["regression_losses"]]}


def _untrained() -> nn.Module:
    """The XOR model before its training loop ran (seeded, so the test does not depend on the order)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return XORModule()


def _perceptron_no_sigmoid():
    class Perceptron(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, x):
            return self.linear(x)
    return Perceptron


MISTAKES = {  # name in tests/submissions/perceptron-xor.yml: (question, check, change, feedback word)
    "gradients_not_zeroed": ("q1", "learned w and b", _not_zeroed, "zero"),
    "update_rebinds_weights": ("q1", "learned w and b",
                               lambda ns: {"w": ns["w"] * 1.0, "b": ns["b"] * 1.0}, "in place"),
    "regression_sum_not_mean": ("q1", "one mean squared error", _sum_not_mean, "mean squared error"),
    "perceptron_no_sigmoid": ("q2", "Perceptron: 3 parameters", lambda ns: {"Perceptron": _perceptron_no_sigmoid()},
                              "sigmoid"),
    "perceptron_wrong_lr": ("q2", "loss function and optimiser",
                            lambda ns: {"and_optimizer": torch.optim.SGD(ns["and_model"].parameters(), lr=0.01)},
                            "lr=1"),
    "and_too_few_epochs": ("q2", "all four AND outputs",
                           lambda ns: {"and_model": module(AID, "reference").train_and(0, epochs=10)}, "1000 epochs"),
    "train_step_no_zero_grad": ("q2", "train_step: one step",
                                lambda ns: {"train_step": module(AID, "calibrate").NO_ZERO_GRAD}, "zero_grad"),
    "train_step_batch_not_moved": ("q2", "train_step(..., device)", lambda ns: {"train_step": _batch_not_moved},
                                   "X = X.to(device)"),
    "pick_device_always_cpu": ("q2", "pick_device()", lambda ns: {"pick_device": lambda: torch.device("cpu")},
                               "torch.cuda.is_available"),
    "xor_hidden_8": ("q3", "XOR_MLP: 17 parameters", lambda ns: {"XOR_MLP": lambda: XORModule(hidden=8)},
                     "17 parameters"),
    "xor_wrong_lr": ("q3", "loss function and optimiser",
                     lambda ns: {"optimizer": torch.optim.Adam(ns["model"].parameters(), lr=0.1)}, "lr=0.01"),
    "xor_too_few_epochs": ("q3", "one loss per epoch", lambda ns: {"losses": ns["losses"][:150]}, "5000 epochs"),
    "xor_no_sigmoid": ("q3", "XOR_MLP: 17 parameters", lambda ns: {"XOR_MLP": lambda: XORModule(sigmoid=False)},
                       "Sigmoid"),
    "xor_untrained": ("q3", "all four XOR outputs", lambda ns: {"model": _untrained()}, "of 4 are right"),
    "no_legend": ("q4", "both loss curves",
                  lambda ns: {"fig": curves(ns["manual_losses"], ns["losses"], legend=False)}, "legend"),
    "linear_y_axis": ("q4", "logarithmic y-axis",
                      lambda ns: {"fig": curves(ns["manual_losses"], ns["losses"], log=False)}, "log"),
    "part1_grads_sum_not_mean": ("q6", "regression_grads",
                                 lambda ns: {"regression_grads": lambda *a: regression_grads(*a, reduce="sum")},
                                 "mean squared error"),
    "part1_grads_shared_weights": ("q6", "regression_grads", lambda ns: {"regression_grads": _Shared()},
                                   "fresh w and b"),
    "part1_grads_swapped": ("q6", "regression_grads",
                            lambda ns: {"regression_grads": lambda *a: regression_grads(*a)[::-1]}, "w.grad and b.grad"),
    "part1_notes_sum": ("q6", "dL_dw", lambda ns: {"dL_dw": 5 * ns["dL_dw"], "dL_db": 5 * ns["dL_db"]},
                        "mean squared error"),
    "part1_history_never_zeroed": ("q7", "grad_history",
                                   lambda ns: {"grad_history": lambda *a: grad_history(*a, never_zero=True)}, "zero"),
    "part1_history_always_zeroed": ("q7", "grad_history",
                                    lambda ns: {"grad_history": lambda *a: grad_history(*a, always_zero=True)},
                                    "accumulates"),
    "part1_history_alias": ("q7", "grad_history",
                            lambda ns: {"grad_history": lambda *a: grad_history(*a, alias=True)}, "clone"),
    "part1_notes_not_zeroed": ("q7", "grad_history", lambda ns: {"grad_after_zero": 54.0}, "zero_()"),
    "part1_no_relu": ("q8", "MyFirstNetwork",
                      lambda ns: {"MyFirstNetwork": lambda *a: MyFirstNetwork(*a, relu=False)}, "ReLU"),
    "part1_softmax_last": ("q8", "MyFirstNetwork",
                           lambda ns: {"MyFirstNetwork": lambda *a: MyFirstNetwork(*a, last=nn.Softmax(dim=1))},
                           "raw logits"),
    "part1_fixed_sizes": ("q8", "MyFirstNetwork", lambda ns: {"MyFirstNetwork": _Fixed}, "nn.Linear"),
    "part1_count_weights_only": ("q8", "MyFirstNetwork", lambda ns: {"n_params": 24}, "biases"),
    "part1_net_wrong_size": ("q8", "MyFirstNetwork", lambda ns: {"net": MyFirstNetwork(2, 8, 3), "n_params": 59},
                             "n_hidden=4"),
    "part1_sequential_softmax": ("q9", "net_seq", lambda ns: {"net_seq": nn.Sequential(
        nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), nn.Softmax(dim=1))}, "softmax"),
    "part1_sequential_no_relu": ("q9", "net_seq", lambda ns: {"net_seq": nn.Sequential(
        nn.Linear(2, 4), nn.Linear(4, 3))}, "nn.ReLU()"),
    "part1_sequential_sigmoid_hidden": ("q9", "net_seq", lambda ns: {"net_seq": nn.Sequential(
        nn.Linear(2, 4), nn.Sigmoid(), nn.Linear(4, 3))}, "nn.ReLU()"),
    "part1_not_sequential": ("q9", "net_seq", lambda ns: {"net_seq": MyFirstNetwork(2, 4, 3)}, "nn.Sequential"),
    "part1_sequential_wide": ("q9", "net_seq", lambda ns: {"net_seq": nn.Sequential(
        nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3))}, "nn.Linear(2, 4)"),
}


def test_every_check_has_a_mistake():
    assert not unlisted(AID, MISTAKES.values(), repeats=True)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_fails_its_check(solved, name):
    question, description, change, word = MISTAKES[name]
    namespace = as_of(question, {**solved, **change(copy.copy(solved))})
    assert_fails(AID, question, description, namespace, word)
