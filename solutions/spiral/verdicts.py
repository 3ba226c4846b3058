"""Verdicts for `spiral`: the probes' plain data compared with the grader's own reference (the
spiral split from datasets/spiral.csv and reference.py's SpiralNet and training run)."""
from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn as nn

from autograder.checks import (Check, Context, Handoff, array, expect, expect_device_choice, expect_logits,
                               expect_training_setup, expect_watched_run, figure, integer, labelled, number,
                               numbers)
from autograder.checks import state_dict as as_state_dict
from autograder.data import load_spiral
from autograder.probe_tools import device_choice, training_setup

from . import probes
from .reference import N_EPOCHS, PATIENCE, STEP_HIDDEN, SpiralNet, reference_steps, train_reference, train_step

SPLIT_SIZES = {"train": 316, "val": 67, "test": 67}
STATE_SHAPES = {"net.0.weight": (100, 2), "net.0.bias": (100,), "net.3.weight": (3, 100), "net.3.bias": (3,)}
# Calibrated in docs/calibration.md (`python -m autograder calibrate spiral`).
X_TOLERANCE = 1e-6          # q1: |X - reference| (a float32 cast of the same numbers is exact)
BEST_LOSS_TOLERANCE = 1e-9  # q3: |best_val_loss - min(val_losses)| (both are the same float)
RESTORE_TOLERANCE = 1e-5    # q3: relative |grader's val loss of the restored weights - min(val_losses)|
STEP_TOLERANCE = 1e-5       # q3: |parameters after train_step - grader's SGD step| and |loss - grader's loss|
PERCENT_TOLERANCE = 1e-3    # q4: |test_acc - grader's percentage|


def reference(assignment):
    parts = load_spiral()
    tensors = {}
    for split, (X, y) in parts.items():
        tensors[f"X_{split}"] = torch.from_numpy(X)
        tensors[f"y_{split}"] = torch.from_numpy(y)
    return tensors


def _canonical(data_state, name: str):
    """The exported state_dict with the reference's keys: layers may have other names (an
    OrderedDict in nn.Sequential, fc1/fc2 attributes) as long as the parameters come in the
    reference's order and shapes."""
    if not isinstance(data_state, dict) or set(data_state) == set(STATE_SHAPES):
        return data_state
    values = list(data_state.values())
    shapes = [getattr(v, "shape", None) for v in values]
    if len(values) == len(STATE_SHAPES) and all(tuple(s or ()) == want for s, want in zip(shapes, STATE_SHAPES.values())):
        return dict(zip(STATE_SHAPES, values))
    return data_state


def model_from_state(data_state, name="model.state_dict()") -> SpiralNet:
    model = SpiralNet()
    model.load_state_dict(as_state_dict(_canonical(data_state, name), name, STATE_SHAPES))
    return model.eval()


def test_accuracy(model: nn.Module, ctx: Context) -> float:
    """The fraction of the grader's test split that `model` classifies correctly."""
    with torch.no_grad():
        return (model(ctx.ref["X_test"]).argmax(dim=1) == ctx.ref["y_test"]).float().mean().item()


# -- q1: tensors ------------------------------------------------------------------------------
def verdict_tensors(data: dict, ctx: Context) -> None:
    for split, n in SPLIT_SIZES.items():
        X = array(data.get(f"X_{split}"), f"X_{split}", kind="tensor", dtype="torch.float32", shape=(n, 2))
        y = array(data.get(f"y_{split}"), f"y_{split}", kind="tensor", dtype="torch.int64", shape=(n,))
        expect(np.allclose(X, ctx.ref[f"X_{split}"].numpy(), rtol=0, atol=X_TOLERANCE),
               f"`X_{split}` does not hold the {split} split's points (transpose X_{split}_np, do not reorder it)")
        expect(np.array_equal(y, ctx.ref[f"y_{split}"].numpy()), f"`y_{split}` does not hold the {split} labels")


# -- q2: the model -----------------------------------------------------------------------------
def inputs_points(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.uniform(-1.3, 1.3, size=(256, 2)).astype(np.float32))}


def verdict_model(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 603,
           "SpiralNet() should have 603 parameters (2*100 + 100 + 100*3 + 3)")
    expect(integer(data.get("n_params_16"), "parameter count") == 99,
           "SpiralNet(n_hidden=16) should have 99 parameters: use the n_hidden argument")
    expect(data.get("has_dropout") is True, "SpiralNet should contain nn.Dropout(dropout)")
    model = model_from_state(data.get("state"), "SpiralNet().state_dict()")
    out = array(data.get("out"), "the model's output", kind="tensor", shape=(256, 3))
    with torch.no_grad():
        logits = model(ctx.inputs["x"]).numpy()
    expect_logits(out, logits, "Linear -> ReLU -> Dropout -> Linear")


# -- q3: training ------------------------------------------------------------------------------
def verdict_setup(data: dict, ctx: Context) -> None:
    expect_training_setup(data, criterion="CrossEntropyLoss", optimizer="Adam", lr=0.01, weight_decay=0.005)


def inputs_steps(ctx: Context) -> dict:
    """A fresh small network and two batches of 32 points in the spiral's range, every class in each."""
    rng = ctx.rng
    init = {"0.weight": rng.normal(0, 0.7, (STEP_HIDDEN, 2)), "0.bias": rng.normal(0, 0.3, STEP_HIDDEN),
            "2.weight": rng.normal(0, 0.5, (3, STEP_HIDDEN)), "2.bias": rng.normal(0, 0.1, 3)}
    batches = []
    for _ in range(2):
        X = rng.uniform(-1.2, 1.2, size=(32, 2)).astype(np.float32)
        y = rng.permutation(np.arange(32) % 3).astype(np.int64)
        batches.append([torch.from_numpy(X), torch.from_numpy(y)])
    return {"init": {k: torch.from_numpy(v.astype(np.float32)) for k, v in init.items()}, "batches": batches}


def step_distances(data: dict, ctx: Context) -> tuple[list[float], list[float], list[float]]:
    """Per step: max |student - grader| over the parameters, |loss - grader's loss|, and how far
    the student's parameters moved from where the step started."""
    shapes = {k: tuple(v.shape) for k, v in ctx.inputs["init"].items()}
    losses = data.get("losses")
    states = data.get("states")
    expect(isinstance(losses, list) and isinstance(states, list) and len(losses) == len(states) == 2,
           "train_step could not be run twice on the grader's batches")
    ref_losses, ref_states = reference_steps(ctx.inputs, train_step)
    params, loss_gaps, moved = [], [], []
    before = {k: v.clone() for k, v in ctx.inputs["init"].items()}
    for i in range(2):
        state = as_state_dict(states[i], f"the parameters after train_step #{i + 1}", shapes)
        params.append(max(float((state[k] - ref_states[i][k]).abs().max()) for k in shapes))
        moved.append(max(float((state[k] - before[k]).abs().max()) for k in shapes))
        loss_gaps.append(abs(number(losses[i], "train_step's loss") - ref_losses[i]))
        before = ref_states[i]
    return params, loss_gaps, moved


def verdict_step(data: dict, ctx: Context) -> None:
    params, loss_gaps, moved = step_distances(data, ctx)
    expect(moved[0] > 0, "train_step did not change the parameters: call loss.backward() and then optimizer.step()")
    expect(loss_gaps[0] <= STEP_TOLERANCE,
           "train_step should return the loss of the model's outputs on (X, y), computed with `criterion`")
    expect(params[0] <= STEP_TOLERANCE,
           "train_step's update is not one optimizer step on the gradient of the loss on (X, y): "
           "forward, loss, zero_grad, backward, step")
    expect(params[1] <= STEP_TOLERANCE and loss_gaps[1] <= STEP_TOLERANCE,
           "a second train_step is not one step on its own batch's gradient: the previous step's gradients "
           "were added in. Call optimizer.zero_grad() in every step, before loss.backward()")


def verdict_history(data: dict, ctx: Context) -> None:
    train = numbers(data.get("train_losses"), "train_losses")
    val = numbers(data.get("val_losses"), "val_losses")
    best = integer(data.get("best_epoch"), "best_epoch")
    expect(len(train) == len(val), "record one training and one validation loss per epoch")
    expect(0 <= best < len(val) and val[best] == val.min() and best == int(np.argmin(val)),
           "`best_epoch` should be the epoch of the lowest validation loss")
    expect(abs(number(data.get("best_val_loss"), "best_val_loss") - val.min()) <= BEST_LOSS_TOLERANCE,
           "`best_val_loss` should be the lowest validation loss")
    expected_len = min(N_EPOCHS, best + PATIENCE + 1)
    expect(len(val) == expected_len,
           f"training should stop {PATIENCE} epochs after the best epoch (or after {N_EPOCHS} epochs)")
    expect(train[-10:].mean() < train[:10].mean(), "the training loss should go down")


def restored_val_loss(data: dict, ctx: Context) -> float:
    model = model_from_state(data.get("state"))
    with torch.no_grad():  # measured here, on the grader's own validation split
        return nn.functional.cross_entropy(model(ctx.ref["X_val"]), ctx.ref["y_val"]).item()


def verdict_restored(data: dict, ctx: Context) -> None:
    val = numbers(data.get("val_losses"), "val_losses")
    restored = restored_val_loss(data, ctx)
    expect(abs(restored - val.min()) <= RESTORE_TOLERANCE * max(1.0, abs(val.min())),
           "the restored model's validation loss is not the minimum of `val_losses`: load `best_state` after the "
           "loop, and make `best_state` a real snapshot (v.clone() of each tensor), not the live state_dict")


def verdict_val_loss(data: dict, ctx: Context) -> None:
    restored = restored_val_loss(data, ctx)
    limit = ctx.thresholds["max_best_val_loss"]
    expect(restored <= limit, f"the grader measured a validation loss of {restored:.3f} with your restored weights; "
                              f"a trained model reaches {limit} or less: check the training step")


def verdict_trained_accuracy(data: dict, ctx: Context) -> None:
    accuracy = test_accuracy(model_from_state(data.get("state")), ctx)
    minimum = ctx.thresholds["min_test_accuracy"]
    expect(accuracy >= minimum, f"the grader measured {100 * accuracy:.1f}% test accuracy with your restored "
                                f"weights; at least {100 * minimum:.0f}% is required: check the training step")


# -- q4: evaluation ----------------------------------------------------------------------------
def _grader_predictions(data: dict, ctx: Context) -> np.ndarray:
    model = model_from_state(data.get("state"))
    with torch.no_grad():
        return model(ctx.ref["X_test"]).argmax(dim=1).numpy()


def verdict_preds(data: dict, ctx: Context) -> None:
    preds = _grader_predictions(data, ctx)
    mine = array(data.get("test_preds"), "test_preds", kind="tensor", shape=(SPLIT_SIZES["test"],))
    expect(np.array_equal(mine, preds), "`test_preds` are not the argmax of your model's outputs on X_test")


def verdict_percent(data: dict, ctx: Context) -> None:
    percent = 100 * float(np.mean(_grader_predictions(data, ctx) == ctx.ref["y_test"].numpy()))
    reported = number(data.get("test_acc"), "test_acc")
    expect(abs(reported - percent) <= PERCENT_TOLERANCE,
           "`test_acc` should be the percentage (0 to 100) of test points whose predicted class is the label"
           + (": multiply the fraction by 100" if abs(100 * reported - percent) <= PERCENT_TOLERANCE else ""))


# -- q5: figure --------------------------------------------------------------------------------
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
    counts = right.get("collection_points") or [0] * len(kinds)
    scattered = sum(int(c) for kind, c in zip(kinds, counts) if kind == "PathCollection")
    plotted = sum(int(line["n"]) for line in right["lines"])  # ax.plot(x, y, "o") draws markers as lines
    expect(scattered + plotted > 0, "scatter the test points on the decision boundary")
    expect(scattered + plotted == SPLIT_SIZES["test"],
           f"the right panel shows {scattered + plotted} points: scatter the {SPLIT_SIZES['test']} test points "
           "(X_test), not the training set")
    expect(labelled(right), "label both axes of the decision-boundary panel")


# -- q7: devices -------------------------------------------------------------------------------
def verdict_device_choice(data: dict, ctx: Context) -> None:
    expect_device_choice(data)


def verdict_predict_meta(data: dict, ctx: Context) -> None:
    run = data.get("run")
    expect_watched_run(run, "predict(model, X, device)",
                       batch="predict fed the model points that are not on `device`: move them with X.to(device)",
                       parameters="predict ran a model whose parameters are not on `device`: "
                                  "move it with model.to(device)")
    error = run.get("error")
    expect(not error, f"predict(model, X, device) failed on another device: {str(error)[:150]}"
                      " (return the predictions on `device`, without .cpu() or .numpy())")
    out = run.get("out") or {}
    expect(out.get("type") == "Tensor" and out.get("device") == "meta" and out.get("shape") == [5],
           "predict should return the N predicted classes as a tensor on `device`")


def inputs_predict(ctx: Context) -> dict:
    rng = ctx.rng
    shapes = {"0.weight": ((100, 2), 1.0), "0.bias": ((100,), 0.5), "3.weight": ((3, 100), 0.3), "3.bias": ((3,), 0.1)}
    init = {k: torch.from_numpy(rng.normal(0, scale, shape).astype(np.float32)) for k, (shape, scale) in shapes.items()}
    return {"init": init, "X": torch.from_numpy(rng.uniform(-1.3, 1.3, size=(256, 2)).astype(np.float32))}


def verdict_predict(data: dict, ctx: Context) -> None:
    preds = array(data.get("preds"), "predict(model, X, device)", kind="tensor", dtype="torch.int64", shape=(256,))
    net = SpiralNet().net
    net.load_state_dict(ctx.inputs["init"])
    net.eval()
    with torch.no_grad():
        expected = net(ctx.inputs["X"]).argmax(dim=1).numpy()
    expect(np.array_equal(preds, expected), "predict's classes are not the argmax of the model's logits with dropout "
                                            "off: call model.eval() before the forward pass")


CHECKS = [
    Check("q1", "six tensors, batch-first float32 features and long labels, holding the split",
          probes.split_tensors, verdict_tensors,
          hint="transpose the features to batch-first (N, 2) with `.T`, and give the labels dtype=torch.long"),
    Check("q2", "SpiralNet's layers, parameter count and logits on fresh inputs", probes.fresh_model, verdict_model,
          inputs=inputs_points),
    Check("q3", "loss function and optimiser settings", training_setup, verdict_setup),
    Check("q3", "train_step's parameter update on the grader's batches (two SGD steps)", probes.two_steps, verdict_step,
          inputs=inputs_steps),
    Check("q3", "loss history and early stopping", probes.history, verdict_history),
    Check("q3", "the best weights are restored (validation loss measured by the grader)", probes.history,
          verdict_restored, hint="did you call model.load_state_dict(best_state) after the loop?"),
    Check("q3", "validation loss of the restored weights, measured by the grader", probes.history, verdict_val_loss),
    Check("q3", "test accuracy of the restored weights, measured by the grader", probes.history,
          verdict_trained_accuracy),
    Check("q4", "test_preds are your model's predicted classes on X_test", probes.evaluation, verdict_preds),
    Check("q4", "test_acc is the percentage of correct test predictions", probes.evaluation, verdict_percent),
    Check("q5", "learning curves with the best epoch marked", probes.figure, verdict_curves),
    Check("q5", "decision boundary with the test points", probes.figure, verdict_boundary),
    Check("q7", "pick_device follows torch.cuda.is_available() (told once that a GPU is there, once that none is)",
          device_choice, verdict_device_choice),
    Check("q7", "predict moves the model and the points to its device (run on the meta device)",
          probes.predict_on_meta, verdict_predict_meta),
    Check("q7", "predict's classes on the grader's points, with dropout off", probes.predictions, verdict_predict,
          inputs=inputs_predict),
]


# Hand-offs: once a question is graded, what its prompt fully specifies replaces the student's
# answer, so one mistake costs only its own question's points. After q3: the grader's own run of
# the prompt's training (seed 42, Adam, early stopping, best weights restored), so an error in the
# training loop does not cost q4, q5 or q7 as well.
_TRAINED: dict = {}
_TRAINED_LOCK = threading.Lock()


def trained_handoff(ref: dict) -> dict:
    with _TRAINED_LOCK:
        if "run" not in _TRAINED:
            _TRAINED["run"] = train_reference(ref)
        return {k: v for k, v in _TRAINED["run"].items() if k != "last_state"}


HANDOFFS = {
    "q1": Handoff(values=dict),  # the reference split's tensors
    "q2": Handoff(install=(SpiralNet,)),
    "q3": Handoff(values=trained_handoff, install=(SpiralNet,), run=probes.restore_trained),
}
