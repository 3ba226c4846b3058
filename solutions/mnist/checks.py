"""Hidden checks for `mnist`: probes export plain data, verdicts compare it with the grader's own
reference (the MNIST split loaded from datasets/ and the reference architectures below).

Every accuracy is measured here, from the exported weights: numbers the notebook reports are only
compared with those measurements.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from autograder.checks import (DEVICE_CHOICE_PROBE, TRAINING_SETUP_PROBE, Check, Context, Handoff, array, expect,
                               expect_device_choice, expect_logits, expect_training_setup, figure, integer,
                               labelled, number, numbers)
from autograder.data import DATA_DIR, prepare

SPLITS = {"train": ("X_train_mnist", "y_train_mnist", 5000),
          "val": ("X_val_mnist", "y_val_mnist", 1000),
          "test": ("X_test_mnist", "y_test_mnist", 10000)}
PATIENCE = 30
BATCH_SIZE = 64
ROWS_PER_SPLIT = 64  # rows compared value by value; every row is compared by its sum
PRED_TOLERANCE = 10  # test predictions that may differ from the grader's (float ties across thread counts;
#                      measured 0 between 1 and 2 threads, 845 for predictions with dropout on)
ACC_TOLERANCE = 0.15  # percentage points between a reported accuracy and the grader's measurement (measured:
#                      0 for correct answers, >= 0.68 for a val accuracy taken with dropout on)
# The grader's own early-stopping problem for `train_model`: random labels, so the validation loss
# rises after a few epochs and the final weights differ from the best ones.
PROBE_EPOCHS = 60
PROBE_PATIENCE = 5
PROBE_LR = 0.01
# q9: the grader's own mini-batch problem for `train_epoch` (plain SGD, so every step is exact).
EPOCH_ROWS = 64
EPOCH_BATCH = 16
EPOCH_LR = 0.1
EPOCH_TOLERANCE = 1e-5  # largest |student - grader| on a weight after the epoch, and on the mean loss
# (measured with tools/calibrate_mnist.py --tolerances: <= 1.8e-7 for correct variants on 1 or 2 threads,
# >= 4.2e-3 without zero_grad, with the last batch's loss, with momentum or another batch size)


def mnist_net() -> nn.Sequential:
    """The MNISTNet layers (also the comparison's Deep network)."""
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 128), nn.ReLU(),
                         nn.Dropout(0.2), nn.Linear(128, 10))


def architectures() -> dict[int, tuple[str, nn.Sequential]]:
    """Phase 6's networks by parameter count."""
    nets = {
        "Small": nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)),
        "Medium": nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10)),
        "Deep": mnist_net(),
    }
    return {sum(p.numel() for p in net.parameters()): (name, net) for name, net in nets.items()}


def probe_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def reference(assignment):
    import torchvision

    prepare()
    train = torchvision.datasets.MNIST(root=DATA_DIR, train=True, download=True)
    test = torchvision.datasets.MNIST(root=DATA_DIR, train=False, download=True)
    X = train.data[:6000].reshape(-1, 784).float() / 255.0
    y = train.targets[:6000].long()
    return {
        "X_train": X[:5000], "y_train": y[:5000],
        "X_val": X[5000:], "y_val": y[5000:],
        "X_test": test.data.reshape(-1, 784).float() / 255.0, "y_test": test.targets.long(),
    }


def _load(model: nn.Module, params, name: str) -> nn.Module:
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


def _predict(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(X).argmax(dim=1)


def _accuracy(model: nn.Module, ctx: Context, split: str) -> float:
    """Accuracy (a fraction) of `model` on the reference split."""
    return (_predict(model, ctx.ref[f"X_{split}"]) == ctx.ref[f"y_{split}"]).float().mean().item()


def _close_percent(reported, measured_fraction: float, name: str) -> None:
    value = number(reported, name)
    expect(abs(value - 100 * measured_fraction) <= ACC_TOLERANCE,
           f"`{name}` does not match the accuracy the grader measured from the weights: measure it in "
           "percent, on the right split, in eval() mode (dropout off)")


# -- q1: the data -------------------------------------------------------------------------------
def inputs_rows(ctx: Context) -> dict:
    return {f"rows_{split}": np.sort(ctx.rng.choice(n, size=ROWS_PER_SPLIT, replace=False))
            for split, (_, _, n) in SPLITS.items()}


DATA_PROBE = """
import torch
parts = {}
for split, (x_name, y_name) in {"train": ("X_train_mnist", "y_train_mnist"), "val": ("X_val_mnist", "y_val_mnist"),
                                "test": ("X_test_mnist", "y_test_mnist")}.items():
    X, y = get(x_name), get(y_name)
    part = {"X_type": type(X).__name__, "y": y if isinstance(y, torch.Tensor) else type(y).__name__}
    if isinstance(X, torch.Tensor):
        part.update(X_dtype=str(X.dtype), X_shape=list(X.shape))
        rows = torch.as_tensor(inputs["rows_" + split])
        if X.dim() == 2 and X.shape[1] == 784 and X.shape[0] > int(rows.max()):
            part.update(row_sums=X.double().sum(dim=1), rows=X[rows])
    parts[split] = part
export(parts=parts)
"""


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
        ref_rows = ref_X[torch.as_tensor(ctx.inputs[f"rows_{split}"])].numpy()
        expect(sums.shape == ref_sums.shape and np.allclose(sums, ref_sums, rtol=1e-5, atol=1e-3)
               and np.allclose(rows, ref_rows, atol=1e-6),
               f"`{x_name}` does not hold the {split} images described in the question, scaled to [0, 1]")


# -- q2: the model ------------------------------------------------------------------------------
def inputs_images(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.uniform(0.0, 1.0, size=(128, 784)).astype(np.float32))}


MODEL_PROBE = """
import torch
fresh = get("MNISTNet")()
fresh.eval()
with torch.no_grad():
    out = fresh(inputs["x"])
export(n_params=sum(p.numel() for p in fresh.parameters()),
       dropouts=[float(m.p) for m in fresh.modules() if type(m).__name__ == "Dropout"],
       params=[p.detach() for p in fresh.parameters()], out=out)
"""


def verdict_model(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 235146,
           "MNISTNet() should have 235,146 parameters: 784*256 + 256 + 256*128 + 128 + 128*10 + 10")
    dropouts = data.get("dropouts")
    expect(isinstance(dropouts, list) and len(dropouts) == 2 and all(abs(p - 0.2) < 1e-12 for p in dropouts),
           "MNISTNet should contain two nn.Dropout(0.2) layers, one after each hidden ReLU")
    model = _load(mnist_net(), data.get("params"), "MNISTNet()")
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


def inputs_noise(ctx: Context) -> dict:
    def images(n):
        return torch.from_numpy(ctx.rng.uniform(0.0, 1.0, size=(n, 784)).astype(np.float32))

    def labels(n):
        return torch.from_numpy(ctx.rng.integers(0, 10, size=n).astype(np.int64))

    return {"X_tr": images(64), "y_tr": labels(64), "X_v": images(64), "y_v": labels(64)}


TRAIN_PROBE = f"""
import torch
import torch.nn as nn
import torch.optim as optim
train_model = get("train_model")
with torch.random.fork_rng():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = optim.Adam(net.parameters(), lr={PROBE_LR})
    history = train_model(net, inputs["X_tr"], inputs["y_tr"], inputs["X_v"], inputs["y_v"],
                          nn.CrossEntropyLoss(), opt, n_epochs={PROBE_EPOCHS}, patience={PROBE_PATIENCE})
export(history=history, params=[p.detach() for p in net.parameters()])
"""


def verdict_train_function(data: dict, ctx: Context) -> None:
    h = _history(data.get("history"), "train_model(...)")
    n = len(h["val_losses"])
    expect(n == min(PROBE_EPOCHS, h["best_epoch"] + PROBE_PATIENCE + 1),
           "train_model should stop once the validation loss has not improved for `patience` epochs "
           "(use its `patience` and `n_epochs` arguments)")
    expect(h["train_losses"][-1] < h["train_losses"][0], "the training loss should go down: check the five steps")
    net = _load(probe_net(), data.get("params"), "the grader's test network")
    with torch.no_grad():
        restored = nn.CrossEntropyLoss()(net(ctx.inputs["X_v"]), ctx.inputs["y_v"]).item()
    expect(abs(restored - h["val_losses"].min()) <= 1e-5 * max(1.0, abs(h["val_losses"].min())),
           "on the grader's problem, the model did not end with the weights of its best epoch: snapshot them "
           "with a real copy (clone every tensor) and restore them after the loop")


HISTORY_PROBE = """
export(history=get("history"), params=[p.detach() for p in get("model").parameters()])
"""


def verdict_history(data: dict, ctx: Context) -> None:
    h = _history(data.get("history"), "history")
    max_epochs = int(ctx.budget["max_epochs"])
    n = len(h["val_losses"])
    expect(n == min(max_epochs, h["best_epoch"] + PATIENCE + 1),
           f"train with patience={PATIENCE} and n_epochs=MAX_EPOCHS")
    expect(h["train_losses"][-10:].mean() < h["train_losses"][:10].mean(), "the training loss should go down")
    model = _load(mnist_net(), data.get("params"), "model")
    with torch.no_grad():
        restored = nn.CrossEntropyLoss()(model(ctx.ref["X_val"]), ctx.ref["y_val"]).item()
    expect(abs(restored - h["val_losses"].min()) <= 1e-4 * max(1.0, h["val_losses"].min()),
           "the trained model's validation loss is not the lowest one in history['val_losses']: restore the best weights")
    _close_percent(float(h["val_accs"][h["best_epoch"]]), _accuracy(model, ctx, "val"),
                   "history['val_accs'][best_epoch]")


def verdict_test_accuracy(data: dict, ctx: Context) -> None:
    model = _load(mnist_net(), data.get("params"), "model")
    accuracy = _accuracy(model, ctx, "test")
    minimum = ctx.thresholds["min_test_accuracy"]
    expect(accuracy >= minimum, f"the grader measured {100 * accuracy:.1f}% test accuracy with your model's "
                                f"weights; at least {100 * minimum:.0f}% is required")


# -- q4 and q5: evaluation ----------------------------------------------------------------------
EVAL_PROBE = """
fig_name = {"q4": "fig_cm", "q5": "fig_preds"}[inputs["question"]]
values = dict(params=[p.detach() for p in get("model").parameters()], test_preds=get("test_preds"),
              test_acc=get("test_acc"), figure=figure_summary(get(fig_name)))
if inputs["question"] == "q4":
    values.update(cm=get("cm"), digit_accs=[float(a) for a in get("digit_accs")])
else:
    values.update(correct_idx=get("correct_idx"), incorrect_idx=get("incorrect_idx"))
export(**values)
"""


def inputs_q4(ctx: Context) -> dict:
    return {"question": "q4"}


def inputs_q5(ctx: Context) -> dict:
    return {"question": "q5"}


def _student_preds(data: dict, ctx: Context) -> np.ndarray:
    """`test_preds`, after checking that they are the argmax of the model's outputs."""
    preds = array(data.get("test_preds"), "test_preds", kind="tensor", shape=(10000,))
    expect(preds.dtype.kind in "iu", "`test_preds` should hold class indices (use torch.argmax(..., dim=1))")
    model = _load(mnist_net(), data.get("params"), "model")
    mine = _predict(model, ctx.ref["X_test"]).numpy()
    expect(int(np.sum(preds != mine)) <= PRED_TOLERANCE, "`test_preds` are not the argmax of your model's outputs on X_test_mnist")
    return preds.astype(np.int64)


def verdict_predictions(data: dict, ctx: Context) -> None:
    preds = _student_preds(data, ctx)
    y = ctx.ref["y_test"].numpy()
    expect(abs(number(data.get("test_acc"), "test_acc") - 100 * np.mean(preds == y)) < 1e-3,
           "`test_acc` should be the percentage of correct test predictions")


def verdict_confusion(data: dict, ctx: Context) -> None:
    preds = _student_preds(data, ctx)
    y = ctx.ref["y_test"].numpy()
    cm = array(data.get("cm"), "cm", shape=(10, 10))
    expect(cm.dtype.kind in "iu", "`cm` should hold integer counts")
    expect(int(cm.sum()) == 10000, "the entries of `cm` should add up to the 10,000 test images")
    truth = np.zeros((10, 10), dtype=np.int64)
    np.add.at(truth, (y, preds), 1)
    expect(not (np.array_equal(cm, truth.T) and not np.array_equal(cm, truth)),
           "`cm` is transposed: rows are the true digits, columns the predictions")
    expect(np.array_equal(cm, truth), "`cm` does not count your predictions: cm[true, predicted] += 1 for every test image")
    accs = numbers(data.get("digit_accs"), "digit_accs")
    expect(len(accs) == 10, "`digit_accs` should hold ten accuracies, one per digit")
    expected = 100 * np.diag(truth) / truth.sum(axis=1)
    expect(np.allclose(accs, expected, atol=1e-6),
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
ARCH_PROBE = """
nets = get("architectures")
results = get("arch_results")
export(params={name: [p.detach() for p in net.parameters()] for name, net in nets.items()},
       results={name: {"val_hist": [float(v) for v in r["val_hist"]], "test_acc": float(r["test_acc"]),
                       "n_params": int(r["n_params"])} for name, r in results.items()},
       figure=figure_summary(get("fig_arch")))
"""


def verdict_architectures(data: dict, ctx: Context) -> None:
    params, results = data.get("params"), data.get("results")
    expect(isinstance(params, dict) and isinstance(results, dict) and len(params) == 3 and set(params) == set(results),
           "keep the three networks in `architectures` and one entry per network in `arch_results`")
    epochs = int(ctx.budget["comparison_epochs"])
    minimum = ctx.thresholds["min_comparison_accuracy"]
    reference = architectures()
    seen = set()
    for name, result in results.items():
        n_params = integer(result.get("n_params"), f"arch_results[{name!r}]['n_params']")
        expect(n_params in reference and n_params not in seen,
               "the three networks should be Small (25,450 parameters), Medium (101,770) and Deep (235,146)")
        seen.add(n_params)
        label, net = reference[n_params]
        net = _load(net, params[name], f"the {label} network")
        hist = numbers(result.get("val_hist"), f"arch_results[{name!r}]['val_hist']")
        expect(len(hist) == epochs, f"train each network for COMPARISON_EPOCHS epochs, recording one validation "
                                    f"accuracy per epoch")
        expect(bool(np.all((hist >= 0) & (hist <= 100))), "record the validation accuracy in percent")
        _close_percent(float(hist[-1]), _accuracy(net, ctx, "val"), f"the last entry of {label}'s val_hist")
        accuracy = _accuracy(net, ctx, "test")
        _close_percent(result.get("test_acc"), accuracy, f"arch_results[{name!r}]['test_acc']")
        expect(accuracy >= minimum, f"the grader measured {100 * accuracy:.1f}% test accuracy for the {label} "
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
LOADER_PROBE = """
import torch
loader = get("train_loader")
dataset = getattr(loader, "dataset", None)
tensors = getattr(dataset, "tensors", None)
info = {"loader": type(loader).__name__, "dataset": type(dataset).__name__,
        "batch_size": getattr(loader, "batch_size", None),
        "sampler": type(getattr(loader, "sampler", None)).__name__}
if isinstance(tensors, tuple) and len(tensors) == 2 and all(isinstance(t, torch.Tensor) for t in tensors):
    X, y = tensors
    info.update(y=y, X_shape=list(X.shape),
                row_sums=X.double().sum(dim=1) if X.dim() == 2 else None)
export(loader=info,
       mb_params=[p.detach() for p in get("mb_model").parameters()],
       fb_params=[p.detach() for p in get("fb_model").parameters()],
       mb_val_accs=[float(v) for v in get("mb_val_accs")], fb_val_accs=[float(v) for v in get("fb_val_accs")],
       mb_test_acc=float(get("mb_test_acc")), fb_test_acc=float(get("fb_test_acc")))
"""


def verdict_loader(data: dict, ctx: Context) -> None:
    info = data.get("loader")
    expect(isinstance(info, dict) and info.get("loader") == "DataLoader", "`train_loader` should be a DataLoader")
    expect(info.get("dataset") == "TensorDataset", "wrap the training tensors in a TensorDataset")
    expect(info.get("X_shape") == [5000, 784], "the TensorDataset should hold X_train_mnist and y_train_mnist")
    y = array(info.get("y"), "the dataset's labels", shape=(5000,))
    sums = numbers(info.get("row_sums"), "the dataset's images")
    expect(np.array_equal(y, ctx.ref["y_train"].numpy())
           and np.allclose(sums, ctx.ref["X_train"].double().sum(dim=1).numpy(), rtol=1e-5, atol=1e-3),
           "the TensorDataset should hold X_train_mnist and y_train_mnist")
    expect(info.get("batch_size") == BATCH_SIZE, f"use batch_size={BATCH_SIZE}")
    expect(info.get("sampler") == "RandomSampler", "shuffle the training set every epoch: shuffle=True")


def verdict_minibatch(data: dict, ctx: Context) -> None:
    epochs = int(ctx.budget["minibatch_epochs"])
    measured = {}
    for kind, label in (("mb", "mini-batch"), ("fb", "full-batch")):
        model = _load(mnist_net(), data.get(f"{kind}_params"), f"{kind}_model")
        hist = numbers(data.get(f"{kind}_val_accs"), f"{kind}_val_accs")
        expect(len(hist) == epochs, f"train {kind}_model for MINIBATCH_EPOCHS epochs, recording one validation "
                                    f"accuracy per epoch")
        _close_percent(float(hist[-1]), _accuracy(model, ctx, "val"), f"the last entry of {kind}_val_accs")
        measured[kind] = _accuracy(model, ctx, "test")
        _close_percent(data.get(f"{kind}_test_acc"), measured[kind], f"{kind}_test_acc")
    minimum = ctx.thresholds["min_minibatch_accuracy"]
    expect(measured["mb"] >= minimum, f"the grader measured {100 * measured['mb']:.1f}% test accuracy for "
                                      f"mb_model; at least {100 * minimum:.0f}% is required")
    expect(measured["mb"] > measured["fb"], "after the same number of epochs, mb_model should beat fb_model: "
                                            "is fb_model trained with one full-batch step per epoch?")


# -- q9: devices ---------------------------------------------------------------------------------
def epoch_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


def inputs_epoch(ctx: Context) -> dict:
    """Weights, images and labels of the grader's problem, drawn fresh from the grading seed."""
    shapes = {k: tuple(v.shape) for k, v in epoch_net().state_dict().items()}
    init = {k: torch.from_numpy(ctx.rng.uniform(-0.1, 0.1, size=shape).astype(np.float32))
            for k, shape in shapes.items()}
    return {"init": init, "lr": EPOCH_LR,
            "X": torch.from_numpy(ctx.rng.uniform(0.0, 1.0, size=(EPOCH_ROWS, 784)).astype(np.float32)),
            "y": torch.from_numpy(ctx.rng.integers(0, 10, size=EPOCH_ROWS).astype(np.int64))}


EPOCH_PROBE = f"""
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset
with torch.random.fork_rng():
    net = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    net.load_state_dict(inputs["init"])
    loader = DataLoader(TensorDataset(inputs["X"], inputs["y"]), batch_size={EPOCH_BATCH}, shuffle=False)
    opt = torch.optim.SGD(net.parameters(), lr=float(inputs["lr"]))
    loss = get("train_epoch")(net, loader, nn.CrossEntropyLoss(), opt, torch.device("cpu"))
export(loss=loss.detach() if isinstance(loss, torch.Tensor) else loss, params=[p.detach() for p in net.parameters()])
"""


def reference_epoch(inp: dict) -> tuple[list[torch.Tensor], float]:
    """The grader's epoch: one plain SGD step per batch, in order; the mean of the batch losses."""
    net = epoch_net()
    net.load_state_dict(inp["init"])
    losses = []
    for start in range(0, EPOCH_ROWS, EPOCH_BATCH):
        net.zero_grad()
        loss = nn.functional.cross_entropy(net(inp["X"][start:start + EPOCH_BATCH]),
                                           inp["y"][start:start + EPOCH_BATCH])
        loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= inp["lr"] * p.grad
        losses.append(loss.item())
    return [p.detach() for p in net.parameters()], float(np.mean(losses))


def verdict_epoch_steps(data: dict, ctx: Context) -> None:
    params, mean_loss = reference_epoch(ctx.inputs)
    theirs = data.get("params")
    expect(isinstance(theirs, list) and len(theirs) == len(params), "could not read the weights after train_epoch")
    for i, (value, mine) in enumerate(zip(theirs, params)):
        values = array(value, f"parameter {i} after train_epoch", shape=tuple(mine.shape))
        expect(np.allclose(values, mine.numpy(), rtol=0, atol=EPOCH_TOLERANCE),
               "after train_epoch on the grader's batches, the weights are not where one SGD step per "
               "mini-batch takes them: optimizer.zero_grad(), loss.backward() and optimizer.step() once per batch")
    expect(abs(number(data.get("loss"), "the value train_epoch returns") - mean_loss) <= EPOCH_TOLERANCE,
           "train_epoch should return the mean of the batch losses (total_loss / len(loader))")


EPOCH_DEVICE_PROBE = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
meta = torch.device("meta")
seen = {"forward": [], "criterion": []}
with torch.random.fork_rng():
    net = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)).to(meta)
net.register_forward_pre_hook(lambda module, args: seen["forward"].append(str(args[0].device)))
def criterion(out, target):
    seen["criterion"].append([str(out.device), str(target.device)])
    return F.cross_entropy(out, target)
loader = DataLoader(TensorDataset(torch.zeros(32, 784), torch.zeros(32, dtype=torch.long)), batch_size=16)
train_epoch = get("train_epoch")
error = ""
try:
    train_epoch(net, loader, criterion, torch.optim.SGD(net.parameters(), lr=0.1), meta)
except Exception as exc:
    error = type(exc).__name__ + ": " + str(exc)[:200]
export(meta={**seen, "error": error})
"""


def verdict_epoch_device(data: dict, ctx: Context) -> None:
    run = data.get("meta")
    expect(isinstance(run, dict), "train_epoch could not be run on the meta device")
    forward, crit = run.get("forward"), run.get("criterion")
    expect(isinstance(forward, list) and bool(forward),
           f"train_epoch(..., device) never called the model (it stopped with: {str(run.get('error', ''))[:120]})")
    expect(all(d == "meta" for d in forward),
           "train_epoch(..., device) fed the model a batch that is not on `device`: move each batch with .to(device)")
    expect(isinstance(crit, list) and bool(crit) and all(pair == ["meta", "meta"] for pair in crit),
           "train_epoch(..., device) passed the criterion labels that are not on `device`: move y_batch with "
           ".to(device) too")


def verdict_device_choice(data: dict, ctx: Context) -> None:
    expect_device_choice(data)


CHECKS = [
    Check("q1", "six tensors: flattened float32 images in [0, 1] and long labels, holding the split",
          DATA_PROBE, verdict_data, inputs=inputs_rows,
          hint="divide the uint8 grey levels by 255 and keep the labels as torch.long"),
    Check("q2", "MNISTNet's layers, parameter count and logits on fresh inputs", MODEL_PROBE, verdict_model,
          inputs=inputs_images),
    Check("q3", "loss function and optimiser settings", TRAINING_SETUP_PROBE, verdict_setup),
    Check("q3", "train_model on the grader's problem: early stopping and restored best weights", TRAIN_PROBE,
          verdict_train_function, inputs=inputs_noise,
          hint="best_state must be a real copy ({k: v.clone() ...}), restored with model.load_state_dict"),
    Check("q3", "the MNIST run: history, early stopping and restored weights", HISTORY_PROBE, verdict_history),
    Check("q3", "test accuracy measured by the grader from your weights", HISTORY_PROBE, verdict_test_accuracy,
          hint="check the five steps in train_model: optimizer.zero_grad() before loss.backward(), then "
               "optimizer.step(), once per epoch"),
    Check("q4", "test_preds and test_acc agree with your model", EVAL_PROBE, verdict_predictions, inputs=inputs_q4),
    Check("q4", "confusion matrix and per-digit accuracies", EVAL_PROBE, verdict_confusion, inputs=inputs_q4),
    Check("q4", "confusion-matrix heatmap", EVAL_PROBE, verdict_heatmap, inputs=inputs_q4),
    Check("q5", "correct and misclassified digits", EVAL_PROBE, verdict_examples, inputs=inputs_q5),
    Check("q6", "three architectures trained, with validation histories and test accuracies", ARCH_PROBE,
          verdict_architectures),
    Check("q6", "comparison plot: three curves, a legend and labelled axes", ARCH_PROBE, verdict_arch_plot),
    Check("q7", "TensorDataset and shuffled DataLoader", LOADER_PROBE, verdict_loader),
    Check("q7", "mini-batch against full-batch training after the same number of epochs", LOADER_PROBE,
          verdict_minibatch,
          hint="mb_model takes one optimizer step per mini-batch: zero_grad, backward and step inside the loop "
               "over train_loader"),
    Check("q9", "pick_device() follows torch.cuda.is_available(), with and without a GPU", DEVICE_CHOICE_PROBE,
          verdict_device_choice),
    Check("q9", "train_epoch on the meta device: the model and the loss see only tensors on `device`",
          EPOCH_DEVICE_PROBE, verdict_epoch_device),
    Check("q9", "train_epoch on the grader's mini-batches: the weights after one SGD step per batch, and the "
                "mean loss", EPOCH_PROBE, verdict_epoch_steps, inputs=inputs_epoch),
]


# Hand-offs: once a question is graded, what its prompt fully specifies replaces the student's
# answer, so one mistake costs only that question's points.
DATA_SOURCE = """
def _nn4e_load_mnist():
    from pathlib import Path
    from torchvision import datasets as _datasets
    root = next(p / "datasets" for p in [Path.cwd(), *Path.cwd().parents] if (p / "datasets").is_dir())
    train = _datasets.MNIST(root=root, train=True, download=True)
    test = _datasets.MNIST(root=root, train=False, download=True)
    X = train.data[:6000].reshape(-1, 784).float() / 255.0
    y = train.targets[:6000].long()
    return (X[:5000], y[:5000], X[5000:], y[5000:],
            test.data.reshape(-1, 784).float() / 255.0, test.targets.long())


(X_train_mnist, y_train_mnist, X_val_mnist, y_val_mnist,
 X_test_mnist, y_test_mnist) = _nn4e_load_mnist()
del _nn4e_load_mnist
"""
REFERENCE_MODEL_SOURCE = """
import torch.nn as nn


class MNISTNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 128), nn.ReLU(),
                                 nn.Dropout(0.2), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)
"""
HANDOFFS = {
    "q1": Handoff(source=DATA_SOURCE),
    "q2": Handoff(source=REFERENCE_MODEL_SOURCE),
}
