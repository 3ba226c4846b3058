"""Hidden checks for `spiral`: probes export plain data, verdicts compare it with the grader's own
reference (the spiral split from datasets/spiral.csv and the reference SpiralNet below)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from autograder.checks import (TRAINING_SETUP_PROBE, Check, Context, Handoff, array, expect, expect_logits,
                               expect_training_setup, figure, integer, labelled, number, numbers)
from autograder.checks import state_dict as as_state_dict
from autograder.data import load_spiral

PATIENCE = 200
N_EPOCHS = 5000
SPLIT_SIZES = {"train": 316, "val": 67, "test": 67}
STATE_SHAPES = {"net.0.weight": (100, 2), "net.0.bias": (100,), "net.3.weight": (3, 100), "net.3.bias": (3,)}


class SpiralNet(nn.Module):
    """Reference architecture: (N, 2) -> logits (N, 3)."""

    def __init__(self, n_hidden=100, dropout=0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, n_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(n_hidden, 3))

    def forward(self, x):
        return self.net(x)


def reference(assignment):
    parts = load_spiral()
    tensors = {}
    for split, (X, y) in parts.items():
        tensors[f"X_{split}"] = torch.from_numpy(X)
        tensors[f"y_{split}"] = torch.from_numpy(y)
    return tensors


def _model_from(data_state, name="model.state_dict()") -> SpiralNet:
    model = SpiralNet()
    model.load_state_dict(as_state_dict(data_state, name, STATE_SHAPES))
    return model.eval()


# -- q1: tensors ------------------------------------------------------------------------------
def verdict_tensors(data: dict, ctx: Context) -> None:
    for split, n in SPLIT_SIZES.items():
        X = array(data.get(f"X_{split}"), f"X_{split}", kind="tensor", dtype="torch.float32", shape=(n, 2))
        y = array(data.get(f"y_{split}"), f"y_{split}", kind="tensor", dtype="torch.int64", shape=(n,))
        expect(np.allclose(X, ctx.ref[f"X_{split}"].numpy(), atol=1e-6),
               f"`X_{split}` does not hold the {split} split's points (transpose X_{split}_np, do not reorder it)")
        expect(np.array_equal(y, ctx.ref[f"y_{split}"].numpy()), f"`y_{split}` does not hold the {split} labels")


TENSORS_PROBE = """
export(**{name: get(name) for name in
          ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")})
"""


# -- q2: the model -----------------------------------------------------------------------------
def inputs_points(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.uniform(-1.3, 1.3, size=(256, 2)).astype(np.float32))}


MODEL_PROBE = """
import torch
Net = get("SpiralNet")
fresh = Net()
fresh.eval()
with torch.no_grad():
    out = fresh(inputs["x"])
export(n_params=sum(p.numel() for p in fresh.parameters()),
       n_params_16=sum(p.numel() for p in Net(n_hidden=16).parameters()),
       has_dropout=any(type(m).__name__ == "Dropout" for m in fresh.modules()),
       state=fresh.state_dict(), out=out)
"""


def verdict_model(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 603,
           "SpiralNet() should have 603 parameters (2*100 + 100 + 100*3 + 3)")
    expect(integer(data.get("n_params_16"), "parameter count") == 99,
           "SpiralNet(n_hidden=16) should have 99 parameters: use the n_hidden argument")
    expect(data.get("has_dropout") is True, "SpiralNet should contain nn.Dropout(dropout)")
    model = _model_from(data.get("state"), "SpiralNet().state_dict()")
    out = array(data.get("out"), "the model's output", kind="tensor", shape=(256, 3))
    with torch.no_grad():
        logits = model(ctx.inputs["x"]).numpy()
    expect_logits(out, logits, "Linear -> ReLU -> Dropout -> Linear")


# -- q3: training ------------------------------------------------------------------------------
def verdict_setup(data: dict, ctx: Context) -> None:
    expect_training_setup(data, criterion="CrossEntropyLoss", optimizer="Adam", lr=0.01, weight_decay=0.005)


HISTORY_PROBE = """
export(train_losses=[float(v) for v in get("train_losses")], val_losses=[float(v) for v in get("val_losses")],
       best_epoch=get("best_epoch"), best_val_loss=float(get("best_val_loss")), state=get("model").state_dict())
"""


def verdict_history(data: dict, ctx: Context) -> None:
    train = numbers(data.get("train_losses"), "train_losses")
    val = numbers(data.get("val_losses"), "val_losses")
    best = integer(data.get("best_epoch"), "best_epoch")
    expect(len(train) == len(val), "record one training and one validation loss per epoch")
    expect(0 <= best < len(val) and val[best] == val.min() and best == int(np.argmin(val)),
           "`best_epoch` should be the epoch of the lowest validation loss")
    expect(abs(number(data.get("best_val_loss"), "best_val_loss") - val.min()) < 1e-9,
           "`best_val_loss` should be the lowest validation loss")
    expected_len = min(N_EPOCHS, best + PATIENCE + 1)
    expect(len(val) == expected_len,
           f"training should stop {PATIENCE} epochs after the best epoch (or after {N_EPOCHS} epochs)")
    expect(train[-10:].mean() < train[:10].mean(), "the training loss should go down")


def verdict_restored(data: dict, ctx: Context) -> None:
    val = numbers(data.get("val_losses"), "val_losses")
    model = _model_from(data.get("state"))
    with torch.no_grad():  # measured here, on the grader's own validation split
        restored = nn.functional.cross_entropy(model(ctx.ref["X_val"]), ctx.ref["y_val"]).item()
    expect(abs(restored - val.min()) <= 1e-5 * max(1.0, abs(val.min())),
           "the restored model's validation loss is not the minimum of `val_losses`: did you load `best_state`?")
    limit = ctx.thresholds["max_best_val_loss"]
    expect(restored <= limit, f"the grader measured a validation loss of {restored:.3f} with your restored weights; "
                              f"a trained model reaches {limit} or less")


# -- q4: accuracy ------------------------------------------------------------------------------
ACCURACY_PROBE = """
export(state=get("model").state_dict(), test_acc=float(get("test_acc")), test_preds=get("test_preds"))
"""


def _grader_accuracy(data: dict, ctx: Context) -> tuple[float, np.ndarray]:
    model = _model_from(data.get("state"))
    with torch.no_grad():
        preds = model(ctx.ref["X_test"]).argmax(dim=1)
    return (preds == ctx.ref["y_test"]).float().mean().item(), preds.numpy()


def verdict_accuracy(data: dict, ctx: Context) -> None:
    accuracy, _ = _grader_accuracy(data, ctx)
    minimum = ctx.thresholds["min_test_accuracy"]
    expect(accuracy >= minimum, f"the grader measured {100 * accuracy:.1f}% test accuracy with your model's "
                                f"weights; at least {100 * minimum:.0f}% is required")


def verdict_reported(data: dict, ctx: Context) -> None:
    accuracy, preds = _grader_accuracy(data, ctx)
    mine = array(data.get("test_preds"), "test_preds", kind="tensor", shape=(SPLIT_SIZES["test"],))
    expect(np.array_equal(mine, preds), "`test_preds` are not the argmax of your model's outputs on X_test")
    expect(abs(number(data.get("test_acc"), "test_acc") - 100 * accuracy) < 1e-3,
           "`test_acc` should be the percentage of correct test predictions")


# -- q5: figure --------------------------------------------------------------------------------
FIGURE_PROBE = """
export(figure=figure_summary(get("fig")), n_epochs=len(get("train_losses")), best_epoch=get("best_epoch"))
"""


def verdict_curves(data: dict, ctx: Context) -> None:
    fig = figure(data.get("figure"))
    expect(len(fig["axes"]) >= 2, "make a figure with two panels: plt.subplots(1, 2)")
    left = fig["axes"][0]
    n = integer(data.get("n_epochs"), "len(train_losses)")
    curves = [line for line in left["lines"] if line["n"] == n]
    expect(len(curves) >= 2, "the left panel should plot train_losses and val_losses (one point per epoch)")
    best = integer(data.get("best_epoch"), "best_epoch")
    expect(any(line["vertical_at"] == best for line in left["lines"] if line["n"] <= 2),
           "mark best_epoch with a vertical line (ax.axvline(best_epoch))")
    expect(labelled(left), "label both axes of the learning-curve panel")
    expect(bool(left["legend"]) and len(left["legend"]) >= 2, "add a legend to the learning-curve panel")


def verdict_boundary(data: dict, ctx: Context) -> None:
    fig = figure(data.get("figure"))
    expect(len(fig["axes"]) >= 2, "make a figure with two panels: plt.subplots(1, 2)")
    right = fig["axes"][1]
    kinds = right["collections"]
    expect(any("Contour" in kind for kind in kinds) or right["n_images"] > 0,
           "draw the predicted classes on the right panel with ax.contourf (or imshow)")
    expect("PathCollection" in kinds, "scatter the test points on the decision boundary")
    expect(labelled(right), "label both axes of the decision-boundary panel")


CHECKS = [
    Check("q1", "six tensors, batch-first float32 features and long labels, holding the split",
          TENSORS_PROBE, verdict_tensors, hint="use `.T` on the features and `dtype=torch.long` on the labels"),
    Check("q2", "SpiralNet's layers, parameter count and logits on fresh inputs", MODEL_PROBE, verdict_model,
          inputs=inputs_points),
    Check("q3", "loss function and optimiser settings", TRAINING_SETUP_PROBE, verdict_setup),
    Check("q3", "loss history and early stopping", HISTORY_PROBE, verdict_history),
    Check("q3", "the best weights are restored (validation loss measured by the grader)", HISTORY_PROBE,
          verdict_restored, hint="did you call model.load_state_dict(best_state) after the loop?"),
    Check("q4", "test accuracy measured by the grader from your weights", ACCURACY_PROBE, verdict_accuracy),
    Check("q4", "test_preds and test_acc agree with your model", ACCURACY_PROBE, verdict_reported),
    Check("q5", "learning curves with the best epoch marked", FIGURE_PROBE, verdict_curves),
    Check("q5", "decision boundary with the test points", FIGURE_PROBE, verdict_boundary),
]


# Hand-offs: once a question is graded, what its prompt fully specifies replaces the student's
# answer, so one mistake costs only its own question's points.
REFERENCE_MODEL_SOURCE = """
import torch.nn as nn


class SpiralNet(nn.Module):
    def __init__(self, n_hidden=100, dropout=0.2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, n_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(n_hidden, 3))

    def forward(self, x):
        return self.net(x)
"""
RESTORE_SOURCE = """
if isinstance(best_state, dict):
    model.load_state_dict(best_state)
"""
HANDOFFS = {
    "q1": Handoff(values=dict),  # the reference split's tensors
    "q2": Handoff(source=REFERENCE_MODEL_SOURCE),
    "q3": Handoff(source=RESTORE_SOURCE),
}
