"""Verdicts for `mnist`: the probes' plain data compared with the grader's own reference (the
MNIST split loaded from datasets/ and reference.py's architectures).

Every accuracy is measured here, from the exported weights: numbers the notebook reports are only
compared with those measurements.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from autograder.checks import (Check, Context, Handoff, array, expect, expect_device_choice, expect_logits,
                               expect_training_setup, expect_watched_run, figure, integer, labelled, number,
                               numbers)
from autograder.data import DATA_DIR, prepare
from autograder.probe_tools import device_choice, training_setup

from . import probes
from .reference import (ACC_PROBE_ROWS, BATCH_SIZE, EPOCH_LR, EPOCH_ROWS, PATIENCE, PROBE_EPOCHS, PROBE_PATIENCE,
                        MNISTNet, accuracy, architectures, dropout_net, epoch_net, mnist_split, predict, probe_net,
                        reference_epoch)

SPLITS = {"train": ("X_train_mnist", "y_train_mnist", 5000),
          "val": ("X_val_mnist", "y_val_mnist", 1000),
          "test": ("X_test_mnist", "y_test_mnist", 10000)}
ROWS_PER_SPLIT = 64  # rows compared value by value; every row is compared by its sum
# Calibrated in docs/calibration.md (`python -m autograder calibrate mnist`).
ROW_SUM_RTOL, ROW_SUM_ATOL = 1e-5, 1e-3  # q1: every row's sum against the grader's (np.allclose)
PIXEL_TOLERANCE = 1e-6  # q1: |pixel - grader's pixel| on the compared rows
PRED_TOLERANCE = 10  # test predictions that may differ from the grader's (float ties across thread counts;
#                      measured 0 between 1 and 2 threads, 845 for predictions with dropout on)
ACC_TOLERANCE = 0.15  # percentage points between a reported accuracy and the grader's measurement (measured:
#                      0 for correct answers, >= 0.68 for a val accuracy taken with dropout on; on q3's
#                      training-accuracy problem one image is 100 / ACC_PROBE_ROWS = 0.39 points)
PROBE_RESTORE_TOLERANCE = 1e-5  # q3: |restored - lowest val loss| / max(1, lowest) on the grader's problem
RESTORE_TOLERANCE = 1e-4  # q3: the same on the MNIST run
PERCENT_TOLERANCE = 1e-3  # q4: |test_acc - the percentage of correct test_preds|
DIGIT_TOLERANCE = 1e-6  # q4: |digit_accs[d] - the grader's per-digit percentage|
EPOCH_TOLERANCE = 1e-5  # largest |student - grader| on a weight after the epoch, and on the mean loss
# (<= 1.8e-7 for correct variants on 1 or 2 threads, >= 4.2e-3 without zero_grad, with the last batch's
# loss, with momentum or another batch size)


def reference(assignment):
    prepare()
    return mnist_split(DATA_DIR)


def load_params(model: nn.Module, params, name: str) -> nn.Module:
    """Copy an exported list of parameters (in `model.parameters()` order) into `model`, in eval mode."""
    expect(isinstance(params, list), f"could not read the parameters of {name}")
    targets = list(model.parameters())
    expect(len(params) == len(targets),
           f"{name} has {len(params)} parameter tensors; expected {len(targets)} (check the layers and their order)")
    with torch.no_grad():
        for i, (value, target) in enumerate(zip(params, targets)):
            values = array(value, f"parameter {i} of {name}", shape=tuple(target.shape))
            expect(values.dtype.kind == "f", f"the parameters of {name} should be floats")
            target.copy_(torch.from_numpy(np.array(values, dtype=np.float32)))
    return model.eval()


def split_accuracy(model: nn.Module, ctx: Context, split: str) -> float:
    """Accuracy (a fraction) of `model` on the reference split."""
    return accuracy(model, ctx.ref[f"X_{split}"], ctx.ref[f"y_{split}"])


def percent_gap(reported, measured_fraction: float, name: str) -> float:
    """Percentage points between a reported accuracy and the grader's measurement."""
    return abs(number(reported, name) - 100 * measured_fraction)


def _close_percent(reported, measured_fraction: float, name: str) -> None:
    expect(percent_gap(reported, measured_fraction, name) <= ACC_TOLERANCE,
           f"`{name}` does not match the accuracy the grader measured from the weights: measure it in "
           "percent, on the right split, in eval() mode (dropout off)")


def restore_gap(model: nn.Module, X, y, val_losses: np.ndarray) -> float:
    """|validation loss of the restored weights - the lowest in the history| / max(1, lowest)."""
    with torch.no_grad():
        restored = nn.CrossEntropyLoss()(model(X), y).item()
    return abs(restored - val_losses.min()) / max(1.0, abs(val_losses.min()))


# -- q1: the data -------------------------------------------------------------------------------
def inputs_rows(ctx: Context) -> dict:
    return {f"rows_{split}": np.sort(ctx.rng.choice(n, size=ROWS_PER_SPLIT, replace=False))
            for split, (_, _, n) in SPLITS.items()}


def row_distances(sums: np.ndarray, rows: np.ndarray, ref_X: torch.Tensor, picked) -> tuple[float, float]:
    """Largest |row sum - grader's| beyond ROW_SUM_RTOL of the grader's (np.allclose's measure), and
    largest |pixel - grader's| on the picked rows; infinite when the number of rows differs."""
    ref_sums = ref_X.double().sum(dim=1).numpy()
    if sums.shape != ref_sums.shape:
        return float("inf"), float("inf")
    ref_rows = ref_X[torch.as_tensor(picked)].numpy()
    return (float(np.max(np.abs(sums - ref_sums) - ROW_SUM_RTOL * np.abs(ref_sums))),
            float(np.max(np.abs(np.asarray(rows, dtype=np.float64) - ref_rows))))


def verdict_data(data: dict, ctx: Context) -> None:
    parts = data.get("parts")
    expect(isinstance(parts, dict), "could not read the six tensors")
    for split, (x_name, y_name, n) in SPLITS.items():
        part = parts.get(split)
        expect(isinstance(part, dict) and part.get("X_type") == "Tensor", f"`{x_name}` should be a torch tensor")
        expect(part.get("X_shape") == [n, 784],
               f"`{x_name}` has shape {tuple(part.get('X_shape') or ())}; expected ({n}, 784): flatten the images")
        expect(part.get("X_dtype") == "torch.float32", f"`{x_name}` should be torch.float32")
        y = array(part.get("y"), y_name, kind="tensor", shape=(n,))
        expect(str(part["y"].dtype) == "torch.int64",
               f"`{y_name}` has dtype {part['y'].dtype}; CrossEntropyLoss needs class indices of dtype torch.long")
        expect(np.array_equal(y, ctx.ref[f"y_{split}"].numpy()), f"`{y_name}` does not hold the {split} labels")
        sums = numbers(part.get("row_sums"), f"row sums of {x_name}")
        rows = array(part.get("rows"), f"rows of {x_name}", shape=(ROWS_PER_SPLIT, 784))
        ref_X = ctx.ref[f"X_{split}"]
        ref_sums = ref_X.double().sum(dim=1).numpy()
        expect(not (sums.shape == ref_sums.shape and np.allclose(sums, 255 * ref_sums, rtol=1e-5, atol=1e-2)),
               f"the pixels of `{x_name}` run from 0 to 255: scale them to [0, 1]")
        excess, pixels = row_distances(sums, rows, ref_X, ctx.inputs[f"rows_{split}"])
        expect(excess <= ROW_SUM_ATOL and pixels <= PIXEL_TOLERANCE,
               f"`{x_name}` does not hold the {split} images described in the question, scaled to [0, 1]")


# -- q2: the model ------------------------------------------------------------------------------
def inputs_images(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.uniform(0.0, 1.0, size=(128, 784)).astype(np.float32))}


def verdict_model(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 235146,
           "MNISTNet() should have 235,146 parameters: 784*256 + 256 + 256*128 + 128 + 128*10 + 10")
    dropouts = data.get("dropouts")
    expect(isinstance(dropouts, list) and len(dropouts) == 2 and all(abs(p - 0.2) < 1e-12 for p in dropouts),
           "MNISTNet should contain two nn.Dropout(0.2) layers, one after each hidden ReLU")
    model = load_params(MNISTNet(), data.get("params"), "MNISTNet()")
    out = array(data.get("out"), "the model's output", kind="tensor", shape=(128, 10))
    with torch.no_grad():
        logits = model(ctx.inputs["x"]).numpy()
    expect_logits(out, logits, "Linear -> ReLU -> Dropout -> Linear -> ReLU -> Dropout -> Linear")


# -- q3: training -------------------------------------------------------------------------------
def verdict_setup(data: dict, ctx: Context) -> None:
    expect_training_setup(data, criterion="CrossEntropyLoss", optimizer="Adam", lr=1e-3, weight_decay=1e-4)


def _history(value, name: str) -> dict:
    expect(isinstance(value, dict), f"`{name}` should be the dict that train_model returns")
    out = {}
    for key in ("train_losses", "val_losses", "train_accs", "val_accs"):
        out[key] = numbers(value.get(key), f"{name}['{key}']")
    n = len(out["val_losses"])
    expect(all(len(v) == n for v in out.values()), f"`{name}` should hold one value per epoch in each list")
    out["best_epoch"] = integer(value.get("best_epoch"), f"{name}['best_epoch']")
    out["best_val_loss"] = number(value.get("best_val_loss"), f"{name}['best_val_loss']")
    val = out["val_losses"]
    best = out["best_epoch"]
    expect(0 <= best < n and best == int(np.argmin(val)), "`best_epoch` should be the epoch of the lowest validation loss")
    expect(abs(out["best_val_loss"] - val.min()) < 1e-9, "`best_val_loss` should be the lowest validation loss")
    expect(bool(np.all((out["train_accs"] >= 0) & (out["train_accs"] <= 100)
                       & (out["val_accs"] >= 0) & (out["val_accs"] <= 100))), "record the accuracies in percent")
    return out


def noise_problem(ctx: Context, n_train: int, n_val: int) -> dict:
    """Uniform images with random labels, drawn with the check's generator."""
    def images(n):
        return torch.from_numpy(ctx.rng.uniform(0.0, 1.0, size=(n, 784)).astype(np.float32))

    def labels(n):
        return torch.from_numpy(ctx.rng.integers(0, 10, size=n).astype(np.int64))

    return {"X_tr": images(n_train), "y_tr": labels(n_train), "X_v": images(n_val), "y_v": labels(n_val)}


def inputs_noise(ctx: Context) -> dict:
    return noise_problem(ctx, 64, 64)


def inputs_train_accuracy(ctx: Context) -> dict:
    return noise_problem(ctx, ACC_PROBE_ROWS, 64)


def probe_restore_gap(data: dict, ctx: Context) -> float:
    """On the grader's problem: restore_gap of the weights `train_model` ended with."""
    h = _history(data.get("history"), "train_model(...)")
    net = load_params(probe_net(), data.get("params"), "the grader's test network")
    return restore_gap(net, ctx.inputs["X_v"], ctx.inputs["y_v"], h["val_losses"])


def verdict_train_function(data: dict, ctx: Context) -> None:
    h = _history(data.get("history"), "train_model(...)")
    n = len(h["val_losses"])
    expect(n == min(PROBE_EPOCHS, h["best_epoch"] + PROBE_PATIENCE + 1),
           "train_model should stop once the validation loss has not improved for `patience` epochs "
           "(use its `patience` and `n_epochs` arguments)")
    expect(h["train_losses"][-1] < h["train_losses"][0], "the training loss should go down: check the five steps")
    expect(probe_restore_gap(data, ctx) <= PROBE_RESTORE_TOLERANCE,
           "on the grader's problem, the model did not end with the weights of its best epoch: snapshot them "
           "with a real copy (clone every tensor) and restore them after the loop")


def train_accuracy_gap(data: dict, ctx: Context) -> float:
    """On the grader's problem with dropout: the largest gap (percentage points) between
    history['train_accs'] and the accuracy, dropout off, of the weights after that epoch's step."""
    h = _history(data.get("history"), "train_model(...)")
    steps = data.get("after_steps")
    expect(isinstance(steps, list) and len(steps) == len(h["train_accs"]),
           "train_model should take one optimizer step per epoch and record one training accuracy per epoch")
    gap = 0.0
    for reported, params in zip(h["train_accs"], steps):
        net = load_params(dropout_net(), params, "the grader's test network")
        gap = max(gap, percent_gap(reported, accuracy(net, ctx.inputs["X_tr"], ctx.inputs["y_tr"]),
                                   "history['train_accs']"))
    return gap


def verdict_train_accuracy(data: dict, ctx: Context) -> None:
    expect(train_accuracy_gap(data, ctx) <= ACC_TOLERANCE,
           "on the grader's problem (a network with dropout), history['train_accs'] is not the training accuracy "
           "of the weights after each epoch's step with dropout off: measure it in eval() mode, under "
           "torch.no_grad(), after the step (the outputs of the training step come from dropout)")


def mnist_restore_gap(model: nn.Module, h: dict, ctx: Context) -> float:
    """On the MNIST run: restore_gap of the trained model, on the grader's validation split."""
    return restore_gap(model, ctx.ref["X_val"], ctx.ref["y_val"], h["val_losses"])


def verdict_history(data: dict, ctx: Context) -> None:
    h = _history(data.get("history"), "history")
    max_epochs = int(ctx.budget["max_epochs"])
    n = len(h["val_losses"])
    expect(n == min(max_epochs, h["best_epoch"] + PATIENCE + 1),
           f"train with patience={PATIENCE} and n_epochs=MAX_EPOCHS")
    expect(h["train_losses"][-10:].mean() < h["train_losses"][:10].mean(), "the training loss should go down")
    model = load_params(MNISTNet(), data.get("params"), "model")
    expect(mnist_restore_gap(model, h, ctx) <= RESTORE_TOLERANCE,
           "the trained model's validation loss is not the lowest one in history['val_losses']: restore the best weights")
    _close_percent(float(h["val_accs"][h["best_epoch"]]), split_accuracy(model, ctx, "val"),
                   "history['val_accs'][best_epoch]")


def verdict_test_accuracy(data: dict, ctx: Context) -> None:
    model = load_params(MNISTNet(), data.get("params"), "model")
    measured = split_accuracy(model, ctx, "test")
    minimum = ctx.thresholds["min_test_accuracy"]
    expect(measured >= minimum, f"the grader measured {100 * measured:.1f}% test accuracy with your model's "
                                f"weights; at least {100 * minimum:.0f}% is required")


# -- q4 and q5: evaluation ----------------------------------------------------------------------
def prediction_gap(preds: np.ndarray, data: dict, ctx: Context) -> int:
    """How many of `preds` differ from the argmax of the exported model's outputs on the test set."""
    model = load_params(MNISTNet(), data.get("params"), "model")
    return int(np.sum(preds != predict(model, ctx.ref["X_test"]).numpy()))


def _student_preds(data: dict, ctx: Context) -> np.ndarray:
    """`test_preds`, after checking that they are the argmax of the model's outputs."""
    preds = array(data.get("test_preds"), "test_preds", kind="tensor", shape=(10000,))
    expect(preds.dtype.kind in "iu", "`test_preds` should hold class indices (use torch.argmax(..., dim=1))")
    expect(prediction_gap(preds, data, ctx) <= PRED_TOLERANCE,
           "`test_preds` are not the argmax of your model's outputs on X_test_mnist")
    return preds.astype(np.int64)


def test_acc_gap(reported, preds: np.ndarray, ctx: Context) -> float:
    """|reported test accuracy - the percentage of `preds` equal to the test labels|."""
    return abs(number(reported, "test_acc") - 100 * np.mean(preds == ctx.ref["y_test"].numpy()))


def verdict_predictions(data: dict, ctx: Context) -> None:
    preds = _student_preds(data, ctx)
    expect(test_acc_gap(data.get("test_acc"), preds, ctx) < PERCENT_TOLERANCE,
           "`test_acc` should be the percentage of correct test predictions")


def confusion(y: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """The grader's confusion matrix: rows are the true digits, columns the predictions."""
    truth = np.zeros((10, 10), dtype=np.int64)
    np.add.at(truth, (y, preds), 1)
    return truth


def digit_percentages(truth: np.ndarray) -> np.ndarray:
    """Per digit, the percentage of its images classified as that digit."""
    return 100 * np.diag(truth) / truth.sum(axis=1)


def verdict_confusion(data: dict, ctx: Context) -> None:
    preds = _student_preds(data, ctx)
    y = ctx.ref["y_test"].numpy()
    cm = array(data.get("cm"), "cm", shape=(10, 10))
    expect(cm.dtype.kind in "iu", "`cm` should hold integer counts")
    expect(int(cm.sum()) == 10000, "the entries of `cm` should add up to the 10,000 test images")
    truth = confusion(y, preds)
    expect(not (np.array_equal(cm, truth.T) and not np.array_equal(cm, truth)),
           "`cm` is transposed: rows are the true digits, columns the predictions")
    expect(np.array_equal(cm, truth), "`cm` does not count your predictions: cm[true, predicted] += 1 for every test image")
    accs = numbers(data.get("digit_accs"), "digit_accs")
    expect(len(accs) == 10, "`digit_accs` should hold ten accuracies, one per digit")
    expect(np.allclose(accs, digit_percentages(truth), atol=DIGIT_TOLERANCE),
           "`digit_accs[d]` should be the percentage of the images of digit d that were classified as d")


def verdict_heatmap(data: dict, ctx: Context) -> None:
    fig = figure(data.get("figure"), "fig_cm")
    panels = [ax for ax in fig["axes"] if ax["n_images"] > 0]
    expect(bool(panels), "draw the confusion matrix on fig_cm with ax.imshow")
    ax = panels[0]
    expect(labelled(ax), "label both axes of the heatmap")
    expect("pred" in ax["xlabel"].lower() and ("true" in ax["ylabel"].lower() or "actual" in ax["ylabel"].lower()),
           "the x axis shows the predicted digit and the y axis the true digit: label them so")


def verdict_examples(data: dict, ctx: Context) -> None:
    preds = _student_preds(data, ctx)
    y = ctx.ref["y_test"].numpy()
    correct = array(data.get("correct_idx"), "correct_idx", shape=(10,))
    incorrect = array(data.get("incorrect_idx"), "incorrect_idx", shape=(10,))
    expect(correct.dtype.kind in "iu" and incorrect.dtype.kind in "iu", "the indices should be integers")
    expect(np.array_equal(correct, np.flatnonzero(preds == y)[:10]),
           "`correct_idx` should be the first ten correctly classified test images")
    expect(np.array_equal(incorrect, np.flatnonzero(preds != y)[:10]),
           "`incorrect_idx` should be the first ten misclassified test images")
    fig = figure(data.get("figure"), "fig_preds")
    panels = [ax for ax in fig["axes"] if ax["n_images"] > 0]
    expect(len(panels) == 20, "show ten correct and ten misclassified digits, one image per panel")
    for ax, idx in zip(panels[:10], correct):
        expect(str(preds[idx]) in ax["title"], "title each correct digit with its prediction")
    for ax, idx in zip(panels[10:], incorrect):
        expect(str(preds[idx]) in ax["title"] and str(y[idx]) in ax["title"],
               "title each misclassified digit with the prediction and the true digit")


# -- q6: architecture comparison ----------------------------------------------------------------
def verdict_architectures(data: dict, ctx: Context) -> None:
    params, results = data.get("params"), data.get("results")
    expect(isinstance(params, dict) and isinstance(results, dict) and len(params) == 3 and set(params) == set(results),
           "keep the three networks in `architectures` and one entry per network in `arch_results`")
    epochs = int(ctx.budget["comparison_epochs"])
    minimum = ctx.thresholds["min_comparison_accuracy"]
    reference_nets = {sum(p.numel() for p in net.parameters()): (label, net)
                      for label, net in architectures().items()}
    seen = set()
    for name, result in results.items():
        n_params = integer(result.get("n_params"), f"arch_results[{name!r}]['n_params']")
        expect(n_params in reference_nets and n_params not in seen,
               "the three networks should be Small (25,450 parameters), Medium (101,770) and Deep (235,146)")
        seen.add(n_params)
        label, net = reference_nets[n_params]
        net = load_params(net, params[name], f"the {label} network")
        hist = numbers(result.get("val_hist"), f"arch_results[{name!r}]['val_hist']")
        expect(len(hist) == epochs, f"train each network for COMPARISON_EPOCHS epochs, recording one validation "
                                    f"accuracy per epoch")
        expect(bool(np.all((hist >= 0) & (hist <= 100))), "record the validation accuracy in percent")
        _close_percent(float(hist[-1]), split_accuracy(net, ctx, "val"), f"the last entry of {label}'s val_hist")
        measured = split_accuracy(net, ctx, "test")
        _close_percent(result.get("test_acc"), measured, f"arch_results[{name!r}]['test_acc']")
        expect(measured >= minimum, f"the grader measured {100 * measured:.1f}% test accuracy for the {label} "
                                    f"network; at least {100 * minimum:.0f}% is required")


def verdict_arch_plot(data: dict, ctx: Context) -> None:
    fig = figure(data.get("figure"), "fig_arch")
    expect(len(fig["axes"]) >= 1, "plot the curves on fig_arch")
    ax = fig["axes"][0]
    epochs = int(ctx.budget["comparison_epochs"])
    curves = [line for line in ax["lines"] if line["n"] == epochs]
    expect(len(curves) == 3, "plot the three validation-accuracy curves (one point per epoch) on one set of axes")
    expect(bool(ax["legend"]) and len(ax["legend"]) >= 3, "add a legend naming the three networks")
    expect(labelled(ax), "label both axes")


# -- q7: mini-batches ---------------------------------------------------------------------------
def verdict_loader(data: dict, ctx: Context) -> None:
    info = data.get("loader")
    expect(isinstance(info, dict) and info.get("loader") == "DataLoader", "`train_loader` should be a DataLoader")
    expect(info.get("dataset") == "TensorDataset", "wrap the training tensors in a TensorDataset")
    expect(info.get("X_shape") == [5000, 784], "the TensorDataset should hold X_train_mnist and y_train_mnist")
    y = array(info.get("y"), "the dataset's labels", shape=(5000,))
    sums = numbers(info.get("row_sums"), "the dataset's images")
    expect(np.array_equal(y, ctx.ref["y_train"].numpy())
           and np.allclose(sums, ctx.ref["X_train"].double().sum(dim=1).numpy(), rtol=ROW_SUM_RTOL, atol=ROW_SUM_ATOL),
           "the TensorDataset should hold X_train_mnist and y_train_mnist")
    expect(info.get("batch_size") == BATCH_SIZE, f"use batch_size={BATCH_SIZE}")
    expect(info.get("sampler") == "RandomSampler", "shuffle the training set every epoch: shuffle=True")


def verdict_minibatch(data: dict, ctx: Context) -> None:
    epochs = int(ctx.budget["minibatch_epochs"])
    measured = {}
    for kind, label in (("mb", "mini-batch"), ("fb", "full-batch")):
        model = load_params(MNISTNet(), data.get(f"{kind}_params"), f"{kind}_model")
        hist = numbers(data.get(f"{kind}_val_accs"), f"{kind}_val_accs")
        expect(len(hist) == epochs, f"train {kind}_model for MINIBATCH_EPOCHS epochs, recording one validation "
                                    f"accuracy per epoch")
        _close_percent(float(hist[-1]), split_accuracy(model, ctx, "val"), f"the last entry of {kind}_val_accs")
        measured[kind] = split_accuracy(model, ctx, "test")
        _close_percent(data.get(f"{kind}_test_acc"), measured[kind], f"{kind}_test_acc")
    minimum = ctx.thresholds["min_minibatch_accuracy"]
    expect(measured["mb"] >= minimum, f"the grader measured {100 * measured['mb']:.1f}% test accuracy for "
                                      f"mb_model; at least {100 * minimum:.0f}% is required")
    expect(measured["mb"] > measured["fb"], "after the same number of epochs, mb_model should beat fb_model: "
                                            "is fb_model trained with one full-batch step per epoch?")


# -- q9: devices ---------------------------------------------------------------------------------
def inputs_epoch(ctx: Context) -> dict:
    """Weights, images and labels of the grader's problem, drawn fresh from the grading seed."""
    shapes = {k: tuple(v.shape) for k, v in epoch_net().state_dict().items()}
    init = {k: torch.from_numpy(ctx.rng.uniform(-0.1, 0.1, size=shape).astype(np.float32))
            for k, shape in shapes.items()}
    return {"init": init, "lr": EPOCH_LR,
            "X": torch.from_numpy(ctx.rng.uniform(0.0, 1.0, size=(EPOCH_ROWS, 784)).astype(np.float32)),
            "y": torch.from_numpy(ctx.rng.integers(0, 10, size=EPOCH_ROWS).astype(np.int64))}


def epoch_weight_distance(data: dict, reference_params: list) -> float:
    """Largest |weight after the student's epoch - the grader's| (infinite when not finite)."""
    theirs = data.get("params")
    expect(isinstance(theirs, list) and len(theirs) == len(reference_params),
           "could not read the weights after train_epoch")
    distance = 0.0
    for i, (value, mine) in enumerate(zip(theirs, reference_params)):
        values = array(value, f"parameter {i} after train_epoch", shape=tuple(mine.shape))
        gap = float(np.abs(np.asarray(values, dtype=np.float64) - mine.numpy()).max())
        distance = max(distance, gap if np.isfinite(gap) else float("inf"))
    return distance


def epoch_loss_distance(data: dict, reference_loss: float) -> float:
    """|the value train_epoch returned - the grader's mean batch loss|."""
    return abs(number(data.get("loss"), "the value train_epoch returns") - reference_loss)


def verdict_epoch_steps(data: dict, ctx: Context) -> None:
    params, mean_loss = reference_epoch(ctx.inputs)
    expect(epoch_weight_distance(data, params) <= EPOCH_TOLERANCE,
           "after train_epoch on the grader's batches, the weights are not where one SGD step per "
           "mini-batch takes them: optimizer.zero_grad(), loss.backward() and optimizer.step() once per batch")
    expect(epoch_loss_distance(data, mean_loss) <= EPOCH_TOLERANCE,
           "train_epoch should return the mean of the batch losses (total_loss / len(loader))")


def verdict_epoch_device(data: dict, ctx: Context) -> None:
    run = data.get("meta")
    expect(isinstance(run, dict), "train_epoch could not be run on the meta device")
    expect_watched_run(run, "train_epoch(..., device)",
                       batch="train_epoch(..., device) fed the model a batch that is not on `device`: move each "
                             "batch with .to(device)",
                       target="train_epoch(..., device) passed the criterion labels that are not on `device`: move "
                              "y_batch with .to(device) too")


def verdict_device_choice(data: dict, ctx: Context) -> None:
    expect_device_choice(data)


CHECKS = [
    Check("q1", "six tensors: flattened float32 images in [0, 1] and long labels, holding the split",
          probes.split, verdict_data, inputs=inputs_rows,
          hint="divide the uint8 grey levels by 255 and keep the labels as torch.long"),
    Check("q2", "MNISTNet's layers, parameter count and logits on fresh inputs", probes.fresh_model, verdict_model,
          inputs=inputs_images),
    Check("q3", "loss function and optimiser settings", training_setup, verdict_setup),
    Check("q3", "train_model on the grader's problem: early stopping and restored best weights",
          probes.train_function, verdict_train_function, inputs=inputs_noise,
          hint="best_state must be a real copy ({k: v.clone() ...}), restored with model.load_state_dict"),
    Check("q3", "training accuracy of train_model on the grader's network with dropout: every epoch's, "
                "measured in eval() mode after the step", probes.train_accuracy_run, verdict_train_accuracy,
          inputs=inputs_train_accuracy,
          hint="after the step, switch to model.eval() and compute the training accuracy from a fresh forward "
               "pass over X_train under torch.no_grad()"),
    Check("q3", "the MNIST run: history, early stopping and restored weights", probes.mnist_run, verdict_history),
    Check("q3", "test accuracy measured by the grader from your weights", probes.mnist_run, verdict_test_accuracy,
          hint="check the five steps in train_model: optimizer.zero_grad() before loss.backward(), then "
               "optimizer.step(), once per epoch"),
    Check("q4", "test_preds and test_acc agree with your model", probes.evaluation, verdict_predictions),
    Check("q4", "confusion matrix and per-digit accuracies", probes.evaluation, verdict_confusion),
    Check("q4", "confusion-matrix heatmap", probes.evaluation, verdict_heatmap),
    Check("q5", "correct and misclassified digits", probes.examples, verdict_examples),
    Check("q6", "three architectures trained, with validation histories and test accuracies", probes.comparison,
          verdict_architectures),
    Check("q6", "comparison plot: three curves, a legend and labelled axes", probes.comparison, verdict_arch_plot),
    Check("q7", "TensorDataset and shuffled DataLoader", probes.minibatch, verdict_loader),
    Check("q7", "mini-batch against full-batch training after the same number of epochs", probes.minibatch,
          verdict_minibatch,
          hint="mb_model takes one optimizer step per mini-batch: zero_grad, backward and step inside the loop "
               "over train_loader"),
    Check("q9", "pick_device() follows torch.cuda.is_available(), with and without a GPU", device_choice,
          verdict_device_choice),
    Check("q9", "train_epoch on the meta device: the model and the loss see only tensors on `device`",
          probes.epoch_on_meta, verdict_epoch_device),
    Check("q9", "train_epoch on the grader's mini-batches: the weights after one SGD step per batch, and the "
                "mean loss", probes.epoch_steps, verdict_epoch_steps, inputs=inputs_epoch),
]


# Hand-offs: once a question is graded, what its prompt fully specifies replaces the student's
# answer, so one mistake costs only that question's points. After q1: the prompt's six tensors,
# loaded in the student's process; after q2: the reference MNISTNet.
HANDOFFS = {
    "q1": Handoff(run=probes.load_split),
    "q2": Handoff(install=(MNISTNet,)),
}
