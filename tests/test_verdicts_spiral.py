"""spiral's verdicts without a sandbox or a notebook: the reference's objects pass each check, and
each known mistake fails its check with a message that names it."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from harness import all_checks, assert_fails, module, outcome, reference, unlisted

AID = "spiral"


@pytest.fixture(scope="module")
def solved() -> dict:
    """The student's namespace after a correct notebook: the split, the class, the trained model."""
    ref_module = module(AID, "reference")
    data = reference(AID)
    run = ref_module.train_reference(data)
    model = ref_module.SpiralNet()
    model.load_state_dict(run["best_state"])
    model.eval()
    with torch.no_grad():
        preds = model(data["X_test"]).argmax(dim=1)
    test_acc = 100 * (preds == data["y_test"]).float().mean().item()

    def train_step(model, X, y, criterion, optimizer):
        loss = criterion(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def pick_device():
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def predict(model, X, device):
        model = model.to(device)
        model.eval()
        with torch.no_grad():
            return model(X.to(device)).argmax(dim=1)

    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.005)
    fig = figure(run["train_losses"], run["val_losses"], run["best_epoch"], model, data["X_test"])
    return {**data, **run, "fig": fig, "SpiralNet": ref_module.SpiralNet, "model": model, "optimizer": optimizer,
            "criterion": nn.CrossEntropyLoss(), "train_step": train_step, "test_preds": preds,
            "test_acc": test_acc, "pick_device": pick_device, "predict": predict}


def figure(train_losses, val_losses, best_epoch, model, points, marker=True):
    """The two panels the prompt asks for: learning curves, and the decision boundary with `points`."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    left.plot(train_losses, label="train")
    left.plot(val_losses, label="validation")
    if marker:
        left.axvline(best_epoch, color="k")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    xx, yy = np.meshgrid(np.linspace(-1.3, 1.3, 50), np.linspace(-1.3, 1.3, 50))
    grid = torch.tensor(np.c_[xx.ravel(), yy.ravel()], dtype=torch.float32)
    with torch.no_grad():
        zz = model(grid).argmax(dim=1).reshape(xx.shape).numpy()
    right.contourf(xx, yy, zz, alpha=0.3)
    right.scatter(points[:, 0], points[:, 1], s=8)
    right.set_xlabel("x1")
    right.set_ylabel("x2")
    return fig


CHECKS = all_checks(AID)


@pytest.mark.parametrize("question, description", CHECKS)
def test_reference_passes(solved, question, description):
    result = outcome(AID, question, description, solved)
    assert result["passed"], result


def _no_zero_grad(model, X, y, criterion, optimizer):
    loss = criterion(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def _softmax_class():
    class SpiralNet(nn.Module):
        def __init__(self, n_hidden=100, dropout=0.2):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, n_hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(n_hidden, 3), nn.Softmax(dim=1))

        def forward(self, x):
            return self.net(x)
    return SpiralNet


def _predict_points_stay(model, X, device):
    model = model.to(device)
    model.eval()
    with torch.no_grad():
        return model(X).argmax(dim=1)


def _untrained(ns) -> dict:
    """The model as it was before training (its first epoch's weights are long gone)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return {"model": ns["SpiralNet"]().eval()}


def _last_epoch(ns) -> dict:
    model = ns["SpiralNet"]()
    model.load_state_dict(ns["last_state"])
    return {"model": model.eval()}


def _predict_dropout_on(model, X, device):
    model = model.to(device)
    with torch.no_grad():
        return model(X.to(device)).argmax(dim=1)


MISTAKES = {
    "float labels": ("q1", "six tensors", lambda ns: {"y_train": ns["y_train"].float()}, "dtype"),
    "softmax at the end": ("q2", "SpiralNet's layers", lambda ns: {"SpiralNet": _softmax_class()}, "softmax"),
    "wrong learning rate": ("q3", "loss function",
                            lambda ns: {"optimizer": torch.optim.Adam(ns["model"].parameters(), lr=0.1,
                                                                      weight_decay=0.005)}, "lr=0.01"),
    "no zero_grad": ("q3", "train_step's", lambda ns: {"train_step": _no_zero_grad}, "zero_grad"),
    "accuracy as a fraction": ("q4", "test_acc", lambda ns: {"test_acc": ns["test_acc"] / 100}, "100"),
    "always the CPU": ("q7", "pick_device", lambda ns: {"pick_device": lambda: torch.device("cpu")}, "cuda"),
    "points not moved": ("q7", "predict moves", lambda ns: {"predict": _predict_points_stay}, "X.to(device)"),
    "best epoch off by one": ("q3", "loss history", lambda ns: {"best_epoch": ns["best_epoch"] + 1}, "best_epoch"),
    "best state not restored": ("q3", "best weights are restored", _last_epoch, "load_state_dict"),
    "untrained (validation loss)": ("q3", "validation loss of", _untrained, "validation loss"),
    "untrained (test accuracy)": ("q3", "test accuracy of", _untrained, "test accuracy"),
    "max values, not indices": ("q4", "test_preds", lambda ns: {"test_preds": ns["test_preds"].flip(0)}, "argmax"),
    "no best-epoch marker": ("q5", "learning curves", lambda ns: {"fig": figure(
        ns["train_losses"], ns["val_losses"], ns["best_epoch"], ns["model"], ns["X_test"], marker=False)}, "axvline"),
    "training points on the boundary": ("q5", "decision boundary", lambda ns: {"fig": figure(
        ns["train_losses"], ns["val_losses"], ns["best_epoch"], ns["model"], ns["X_train"])}, "X_test"),
    "dropout on in predict": ("q7", "predict's classes", lambda ns: {"predict": _predict_dropout_on}, "model.eval()"),
}


def test_every_check_has_a_mistake():
    assert not unlisted(AID, MISTAKES.values(), repeats=True)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_fails_its_check(solved, name):
    question, description, change, word = MISTAKES[name]
    assert_fails(AID, question, description, {**solved, **change(copy.copy(solved))}, word)
