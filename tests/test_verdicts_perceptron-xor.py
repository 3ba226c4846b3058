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
           "losses": losses, "manual_losses": manual_losses, "fig": fig}
    plt.close("all")


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
}


def test_every_check_has_a_mistake():
    assert not unlisted(AID, MISTAKES.values(), repeats=True)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_fails_its_check(solved, name):
    question, description, change, word = MISTAKES[name]
    namespace = as_of(question, {**solved, **change(copy.copy(solved))})
    assert_fails(AID, question, description, namespace, word)
