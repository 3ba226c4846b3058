"""Verdicts for `pipeline`: the probes' plain data compared with the grader's own reference (the
spiral split from datasets/spiral.csv, the XOR table, and reference.py's functions and runs).

Nothing a submission wrote is ever unpickled here: files the student saved are read back inside the
student's process (with `weights_only=True`, see probes.py) and only their tensors cross over.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from autograder.checks import (Check, Context, Fail, Handoff, array, expect, expect_device_choice,
                               expect_watched_run, figure, integer, number, numbers)
from autograder.checks import state_dict as as_state_dict
from autograder.data import gate_arrays, load_spiral
from autograder.probe_tools import device_choice

from . import probes
from .reference import (ADAMW, OPTIMIZERS, PATIENCE, Classifier, SpiralDataset, XORDataset, batches, checkpoint_rerun,
                        ck_net, focal_loss, loaded, optimize_with, pick_device, rosenbrock, small_net, te_net,
                        split_dataset, train_epoch, val_net, validate, bin_net, simple_labels, split_indices)

SPLIT_SIZES = {"train": 316, "val": 67, "test": 67}
# Tolerances; measured with `python -m autograder calibrate pipeline` (largest distance among correct
# variants, smallest among the nearest realistic mistakes); the table is in the calibration notes.
PATH_ATOL = 1e-4        # Rosenbrock paths: student vs grader rerun (float32, 100 steps)
FOCAL_RTOL = 1e-9       # focal loss in float64 against the grader's float64 reference
FOCAL_RTOL_F32 = 1e-4   # focal loss in float32 with logits up to +-100
RESUME_ATOL = 1e-6      # resumed vs uninterrupted training, same process
RERUN_ATOL = 1e-5       # the student's process vs the grader's rerun
BEST_RTOL = 1e-5        # grader's val loss of best_model.pth / the final weights vs the history's minimum
GPU_ATOL = 1e-4         # train_epoch on a GPU vs the grader's CPU rerun (only on a grading machine with a GPU)
CLASSIFIER_SHAPES = {"network.0.weight": (64, 2), "network.0.bias": (64,), "network.3.weight": (32, 64),
                     "network.3.bias": (32,), "network.6.weight": (3, 32), "network.6.bias": (3,)}


def reference(assignment):
    return {split: (torch.from_numpy(X), torch.from_numpy(y)) for split, (X, y) in load_spiral().items()}


def _random_state(model: nn.Module, rng: np.random.Generator, scale=0.5) -> dict:
    return {k: torch.from_numpy(rng.normal(0, scale, size=tuple(v.shape)).astype(np.float32))
            for k, v in model.state_dict().items()}


def _shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# -- q1: datasets and loaders -----------------------------------------------------------------


def inputs_batch_size(ctx: Context) -> dict:
    return {"batch_size": int(ctx.rng.integers(5, 60))}


def verdict_datasets(data: dict, ctx: Context) -> None:
    X_xor, y_xor = gate_arrays("xor")
    expect(integer(data.get("xor_len"), "len(XORDataset())") == 4, "len(XORDataset()) should be the number of points")
    X = array(data.get("xor_X"), "XORDataset features", kind="tensor", dtype="torch.float32", shape=(4, 2))
    y = array(data.get("xor_y"), "XORDataset targets", kind="tensor", dtype="torch.float32", shape=(4, 1))
    expect(np.array_equal(X, X_xor) and np.array_equal(y, y_xor),
           "XORDataset()[i] should be (x, y) for row i of xor.csv, in file order")
    splits = data.get("splits")
    expect(isinstance(splits, dict), "SpiralDataset could not be read")
    for split, n in SPLIT_SIZES.items():
        part = splits.get(split)
        expect(isinstance(part, dict), f"SpiralDataset('{split}') could not be read")
        expect(integer(part.get("len"), "len") == n, f"len(SpiralDataset('{split}')) is not the size of that split")
        Xs = array(part.get("X"), f"SpiralDataset('{split}') features", kind="tensor", dtype="torch.float32",
                   shape=(n, 2))
        ys = array(part.get("y"), f"SpiralDataset('{split}') labels", kind="tensor", dtype="torch.int64", shape=(n,))
        X_ref, y_ref = ctx.ref[split]
        expect(np.allclose(Xs, X_ref.numpy(), atol=1e-6) and np.array_equal(ys, y_ref.numpy()),
               f"SpiralDataset('{split}')[i] should be row i of the '{split}' rows of spiral.csv")


def verdict_batches(data: dict, ctx: Context) -> None:
    bs = ctx.inputs["batch_size"]
    expected = math.ceil(SPLIT_SIZES["train"] / bs)
    expect(integer(data.get("len_loader"), "len(loader)") == expected == integer(data.get("n_iterated"), "batches"),
           "a DataLoader over SpiralDataset('train') gives the wrong number of batches: check __len__")
    first = data.get("first_batch")
    expect(first == [[bs, 2], [bs]], "a batch should be (X (B, 2), y (B,)): return one point and its label per item")
    expect(integer(data.get("n_batches_xor"), "n_batches_xor") == 2, "`n_batches_xor` should be len(xor_loader)")
    expect(integer(data.get("n_batches_train"), "n_batches_train") == math.ceil(SPLIT_SIZES["train"] / 32),
           "`n_batches_train` should be len(train_loader)")


# -- q2: optimizers on the Rosenbrock function ------------------------------------------------


def inputs_start(ctx: Context) -> dict:
    return {"start": ctx.rng.uniform([-1.4, 0.0], [-0.6, 1.4]),
            "points": ctx.rng.uniform(-2, 2, size=(20, 2))}


def verdict_rosenbrock(data: dict, ctx: Context) -> None:
    pts = ctx.inputs["points"]
    values = array(data.get("rosen"), "rosenbrock(x, y)", shape=(20,))
    expect(np.allclose(values, rosenbrock(pts[:, 0], pts[:, 1]), rtol=1e-7),
           "rosenbrock(x, y) should be (1 - x)**2 + 100 * (y - x**2)**2")
    expect(array(data.get("default_path"), "path").shape == (101, 2)
           and integer(data.get("default_n"), "len(losses)") == 100,
           "optimize_with should return a (101, 2) path and 100 losses by default")
    runs = data.get("runs")
    expect(isinstance(runs, dict), "optimize_with did not return (path, losses)")
    start = tuple(float(v) for v in ctx.inputs["start"])
    for name, class_name, lr, kwargs in OPTIMIZERS:
        run = runs.get(name)
        expect(isinstance(run, dict), f"no run for {name}")
        path = array(run.get("path"), f"{name} path", shape=(101, 2))
        losses = numbers(run.get("losses"), f"{name} losses", min_len=100)
        expect(len(losses) == 100, f"{name}: return one loss per step (100)")
        expect(np.allclose(path[0], start, atol=1e-6), "the path should start with the starting point")
        expect(not (np.all(path[1:] == path[-1]) and np.ptp(losses) > 0),
               f"{name}: every point after the start is the same although the loss changes: the path holds x "
               "itself, which the optimizer updates in place; append a copy (x.detach().clone().numpy())")
        expect(np.allclose(losses, rosenbrock(path[:-1, 0], path[:-1, 1]), rtol=1e-3, atol=1e-4),
               "losses[i] should be the loss at path[i], the point before step i")
        expect(losses[-1] < losses[0], f"{name}: the loss should go down")
        ref_path, _ = optimize_with(getattr(optim, class_name), lr, start=start, **kwargs)
        expect(bool(np.all(np.isfinite(path))) and np.max(np.abs(path - ref_path)) < PATH_ATOL,
               f"the {name} path does not follow zero_grad -> loss -> backward -> step from the given start "
               "(did you append a copy of x after each step?)")


def verdict_opt_figure(data: dict, ctx: Context) -> None:
    fig = figure(data.get("figure"), "fig_opt")
    expect(len(fig["axes"]) >= 2, "make fig_opt with two panels: plt.subplots(1, 2)")
    left, right = fig["axes"][0], fig["axes"][1]
    expect(len([ln for ln in left["lines"] if ln["n"] == 100]) >= 4, "plot the 4 loss curves on the left panel")
    expect(left["yscale"] == "log", "use a log scale for the losses (ax.set_yscale('log'))")
    expect(bool(left["legend"]) and len(left["legend"]) >= 4, "add a legend naming the optimizers on the left")
    drawn = [ln for ln in right["lines"] if ln["n"] == 101]  # plt.plot / ax.plot of a path
    dots = [c for c in right.get("collection_points", []) if c == 101]  # ax.scatter of a path
    expect(len(drawn) + len(dots) >= 4, "plot the 4 paths (101 points) on the right")
    expect(any("Contour" in kind for kind in right["collections"]), "draw the Rosenbrock contours on the right")


# -- q4: state_dict round trip and the whole-model failure -----------------------------------
SMALL_SHAPES = {"0.weight": (20, 10), "0.bias": (20,), "2.weight": (1, 20), "2.bias": (1,)}


def inputs_x10(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.normal(size=(16, 10)).astype(np.float32))}


def _expect_saved_state_dict(data: dict) -> None:
    """model_state.pth must be a state_dict; name the whole-model save instead of showing a pickle error."""
    error = str(data.get("saved_error") or "")
    expect(error != "missing", "model_state.pth was not written: torch.save(model.state_dict(), \"model_state.pth\")")
    expect(not error, "model_state.pth holds a pickled Python object that torch.load(weights_only=True) refuses "
                      f"({error[:40]}): save model.state_dict(), not the whole model")
    expect(isinstance(data.get("saved"), dict),
           f"model_state.pth holds a {str(data.get('saved_type'))[:40]}, not a state_dict: "
           "save model.state_dict(), not the whole model")


def verdict_roundtrip(data: dict, ctx: Context) -> None:
    _expect_saved_state_dict(data)
    state = as_state_dict(data.get("state"), "model.state_dict()", SMALL_SHAPES)
    new_state = as_state_dict(data.get("new_state"), "new_model.state_dict()", SMALL_SHAPES)
    saved = as_state_dict(data.get("saved"), "the contents of model_state.pth", SMALL_SHAPES)
    expect(data.get("distinct") is True, "`new_model` should be a new nn.Sequential, not `model` itself")
    expect(all(torch.equal(state[k], saved[k]) for k in state),
           "model_state.pth should hold model.state_dict() (torch.save(model.state_dict(), ...))")
    expect(all(torch.equal(state[k], new_state[k]) for k in state),
           "new_model's weights differ from model's: load the saved state_dict into new_model")
    out = array(data.get("out_new"), "new_model(x)", kind="tensor", shape=(16, 1))
    out_model = array(data.get("out_model"), "model(x)", kind="tensor", shape=(16, 1))
    with torch.no_grad():
        truth = loaded(small_net(), saved).eval()(ctx.inputs["x"]).numpy()
    expect(np.array_equal(out, out_model) and np.allclose(out, truth, rtol=1e-5, atol=1e-6),
           "new_model does not give the same outputs as model")


def verdict_full_model(data: dict, ctx: Context) -> None:
    expect(data.get("full_load_error") != probes.NOT_DEFINED,
           "`full_load_error` is not defined: did the cell stop before it (run it top to bottom)?")
    expect(data.get("full_load_error") == "UnpicklingError",
           "`full_load_error` should be the name of the exception plain torch.load raises on the whole-model "
           "file (do not pass weights_only=False)")


# -- q6: checkpoints ------------------------------------------------------------------------------
CK_SHAPES = [(8, 4), (8,), (1, 8), (1,)]


def inputs_checkpoint(ctx: Context) -> dict:
    net = ck_net()
    return {"X": torch.from_numpy(ctx.rng.normal(size=(32, 4)).astype(np.float32)),
            "y": torch.from_numpy(ctx.rng.normal(size=(32, 1)).astype(np.float32)),
            "k": int(ctx.rng.integers(5, 15)), "lr": float(ctx.rng.uniform(0.02, 0.08)),
            "init_a": _random_state(net, ctx.rng), "init_b": _random_state(net, ctx.rng)}


def verdict_checkpoint(data: dict, ctx: Context) -> None:
    expect(integer(data.get("epoch"), "the epoch load_checkpoint returns") == ctx.inputs["k"],
           "load_checkpoint should return the epoch stored in the checkpoint")
    a, b = data.get("uninterrupted"), data.get("resumed")
    expect(isinstance(a, list) and isinstance(b, list) and len(a) == len(b) == 4, "the probe's training did not run")
    a = [array(v, "parameter", shape=s) for v, s in zip(a, CK_SHAPES)]
    b = [array(v, "parameter", shape=s) for v, s in zip(b, CK_SHAPES)]
    gap = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    expect(gap <= RESUME_ATOL, "training resumed from your checkpoint does not continue exactly where it stopped: "
                               "save and restore the model *and* the optimizer state (Adam keeps moment estimates)")
    rerun = checkpoint_rerun(ctx.inputs)
    expect(max(float(np.max(np.abs(x - y))) for x, y in zip(a, rerun)) <= RERUN_ATOL,
           "saving a checkpoint changed the training run: save_checkpoint should not modify the model or optimizer")


# -- q7: train_epoch and validate --------------------------------------------------------------


def _points(ctx: Context, n=64) -> dict:
    return {"X": torch.from_numpy(ctx.rng.normal(size=(n, 2)).astype(np.float32)),
            "y": torch.from_numpy(ctx.rng.integers(0, 3, size=n).astype(np.int64))}


def inputs_train_epoch(ctx: Context) -> dict:
    return {**_points(ctx), "init": _random_state(te_net(), ctx.rng), "lr": float(ctx.rng.uniform(0.05, 0.3))}


def inputs_validate(ctx: Context) -> dict:
    return {**_points(ctx), "init": _random_state(val_net(), ctx.rng, scale=1.0)}


def train_epoch_rerun(inputs: dict) -> tuple[float, nn.Module]:
    """The grader's run of the reference train_epoch on a check's inputs: (its loss, the network)."""
    net = loaded(te_net(), inputs["init"])
    opt = torch.optim.SGD(net.parameters(), lr=inputs["lr"])
    return train_epoch(net, batches(inputs["X"], inputs["y"]), nn.CrossEntropyLoss(), opt, torch.device("cpu")), net


def verdict_train_epoch(data: dict, ctx: Context) -> None:
    loss, net = train_epoch_rerun(ctx.inputs)
    state = as_state_dict(data.get("state"), "the model's state after train_epoch", _shapes(net))
    expect(data.get("training") is True, "train_epoch should put the model in training mode (model.train())")
    expect(all(torch.allclose(state[k], v, atol=RERUN_ATOL) for k, v in net.state_dict().items()),
           "after one epoch the weights differ from forward -> loss -> zero_grad -> backward -> step on each batch "
           "(are the gradients zeroed before every backward?)")
    expect(abs(number(data.get("loss"), "train_epoch's return value") - loss) <= 1e-5 * max(1.0, abs(loss)),
           "train_epoch should return the mean of the batch losses")


def _expect_validation(data: dict, ctx: Context, name: str, net, reference, criterion, loss_hint: str,
                       accuracy_hint: str) -> None:
    """One verdict for `validate` (q7) and `validate_binary` (q13): (average loss, accuracy) on the grader's
    weights and points with dropout off, against reference.py's function, and the weights untouched."""
    inp = ctx.inputs
    result = data.get("result")
    expect(isinstance(result, list) and len(result) == 2, f"{name} should return (average loss, accuracy)")
    loss, acc = number(result[0], f"{name}'s loss"), number(result[1], f"{name}'s accuracy")
    state = as_state_dict(data.get("state"), f"the model's state after {name}", _shapes(net()))
    expect(all(torch.equal(state[k], inp["init"][k]) for k in state), f"{name} must not change the weights")
    ref_loss, ref_acc = reference(loaded(net(), inp["init"]), batches(inp["X"], inp["y"]), criterion,
                                  torch.device("cpu"))
    expect(abs(loss - ref_loss) <= 1e-5 * max(1.0, ref_loss), loss_hint)
    expect(abs(acc - ref_acc) <= 1e-6, accuracy_hint)


def verdict_validate(data: dict, ctx: Context) -> None:
    _expect_validation(data, ctx, "validate", val_net, validate, nn.CrossEntropyLoss(),
                       "validate's loss is not the model's loss with dropout off: call model.eval() first",
                       "validate's accuracy should be the fraction (0 to 1) of argmax predictions equal to the "
                       "labels, with dropout off")


# -- q8: devices ---------------------------------------------------------------------------------


def _expect_meta(run, name: str) -> None:
    expect_watched_run(run, name,
                       batch=f"{name}(..., device) fed the model a batch that is not on `device`: "
                             "move each batch with .to(device)",
                       target=f"{name}(..., device) passed the criterion a prediction or target that is not on "
                              "`device`")


def verdict_device_meta(data: dict, ctx: Context) -> None:
    runs = data.get("meta")
    expect(isinstance(runs, dict), "the device test could not run")
    _expect_meta(runs.get("train_epoch"), "train_epoch")
    _expect_meta(runs.get("validate"), "validate")
    if data.get("cuda") is True:  # a grading machine with a GPU also runs train_epoch there
        _expect_gpu_run(data.get("gpu"), ctx)


def verdict_device_choice(data: dict, ctx: Context) -> None:
    # `device` is a module variable computed once in a cell, so the grader tests the function that
    # chooses it, with torch.cuda.is_available() faked True and then False in the student's process.
    expect_device_choice(data, "pick_device()")


def _expect_gpu_run(gpu, ctx: Context) -> None:
    expect(isinstance(gpu, dict), "train_epoch/validate did not run on the GPU")
    loss, net = train_epoch_rerun(ctx.inputs)
    state = as_state_dict(gpu.get("state"), "the model's state after train_epoch on the GPU", _shapes(net))
    expect(all(torch.allclose(state[k], v, atol=GPU_ATOL) for k, v in net.state_dict().items())
           and abs(number(gpu.get("loss"), "loss") - loss) < GPU_ATOL, "train_epoch on the GPU differs from the CPU run")


# -- q9: the full pipeline on the spiral ----------------------------------------------------


def _classifier_state(value, name: str) -> dict:
    """The student's Classifier weights under the reference's keys.

    Layers may be named (an OrderedDict, an nn.ModuleList, attributes): the tensors are matched in
    the order the state_dict lists them, by shape, so only the architecture counts, not the names.
    """
    if not isinstance(value, dict):
        raise Fail(f"`{name}` should be a state_dict (a dict of tensors)")
    shapes = [tuple(np.shape(array(v, f"{name}['{k}']"))) for k, v in value.items()]
    expect(shapes == list(CLASSIFIER_SHAPES.values()),
           f"`{name}` has tensors of shapes {shapes[:8]}: the model should be "
           "Classifier(input_size=2, hidden_sizes=[64, 32], output_size=3)")
    return as_state_dict(dict(zip(CLASSIFIER_SHAPES, value.values())), name, CLASSIFIER_SHAPES)


def _classifier(state: dict) -> Classifier:
    model = Classifier().eval()
    model.load_state_dict(state)
    return model


def val_loss(state: dict, ctx: Context) -> float:
    """The grader's validation loss of Classifier weights `state`."""
    X, y = ctx.ref["val"]
    with torch.no_grad():
        return F.cross_entropy(_classifier(state)(X), y).item()


def test_accuracy(state: dict, ctx: Context) -> float:
    """The grader's test accuracy (a fraction) of Classifier weights `state`."""
    X, y = ctx.ref["test"]
    with torch.no_grad():
        return (_classifier(state)(X).argmax(dim=1) == y).float().mean().item()


def _history(data: dict) -> dict:
    history = data.get("history")
    expect(isinstance(history, dict), "`history` should be a dict with train_loss, val_loss and val_acc lists")
    return {k: numbers(history.get(k), f"history['{k}']") for k in ("train_loss", "val_loss", "val_acc")}


CLASSIFIER_PARAMS = sum(math.prod(shape) for shape in CLASSIFIER_SHAPES.values())  # 2371


def verdict_param_count(data: dict, ctx: Context) -> None:
    n = integer(data.get("n_params"), "the number of parameters")
    expect(n == CLASSIFIER_PARAMS, f"`model` has {n} parameters; Classifier(input_size=2, hidden_sizes=[64, 32], "
                                   "output_size=3) has a different number: build the model the cell describes")
    expect(integer(data.get("n_trainable"), "the number of trainable parameters") == n,
           "some of the model's parameters are frozen (requires_grad=False): train them all")


def verdict_history(data: dict, ctx: Context) -> None:
    h = _history(data)
    n = len(h["val_loss"])
    expect(len(h["train_loss"]) == n == len(h["val_acc"]), "record one value per epoch in each history list")
    best = int(np.argmin(h["val_loss"]))
    expect(n == min(ctx.budget["max_epochs"], best + PATIENCE + 1),
           f"training should stop after {PATIENCE} epochs without a new lowest validation loss: stop as soon as "
           "patience_counter reaches patience (the patience-th epoch without improvement)")
    expect(bool(np.all((h["val_acc"] >= 0) & (h["val_acc"] <= 1))), "val_acc should be a fraction between 0 and 1")
    expect(h["train_loss"][-3:].mean() < h["train_loss"][:3].mean(), "the training loss should go down")


def verdict_best_saved(data: dict, ctx: Context) -> None:
    best = float(_history(data)["val_loss"].min())
    error = str(data.get("saved_error") or "")
    expect(error != "missing", "best_model.pth was not written: torch.save(model.state_dict(), best_path)")
    expect(not error, f"best_model.pth is not a state_dict ({error[:40]}): save model.state_dict(), not the whole model")
    saved = _classifier_state(data.get("saved"), "the contents of best_model.pth")
    expect(abs(val_loss(saved, ctx) - best) <= BEST_RTOL * max(1.0, best),
           "best_model.pth does not hold the weights of the epoch with the lowest validation loss")


def verdict_restored(data: dict, ctx: Context) -> None:
    best = float(_history(data)["val_loss"].min())
    state = _classifier_state(data.get("state"), "model.state_dict()")
    expect(abs(val_loss(state, ctx) - best) <= BEST_RTOL * max(1.0, best),
           "after train_model the model does not hold the best epoch's weights: snapshot them with "
           "{k: v.detach().clone() ...} (state_dict().copy() is shallow) and load them at the end")


def verdict_accuracy(data: dict, ctx: Context) -> None:
    state = _classifier_state(data.get("state"), "model.state_dict()")
    accuracy = test_accuracy(state, ctx)
    minimum = ctx.thresholds["min_test_accuracy"]
    expect(accuracy >= minimum, f"the grader measured {100 * accuracy:.1f}% test accuracy with your model's "
                                f"weights; at least {100 * minimum:.0f}% is required")


def verdict_train_model_device(data: dict, ctx: Context) -> None:
    runs = data.get("meta")
    expect(isinstance(runs, dict), "the device test could not run")
    _expect_meta(runs.get("train_model"), "train_model")


# -- q10: focal loss ------------------------------------------------------------------------------


def inputs_focal(ctx: Context) -> dict:
    rng = ctx.rng
    big_logits = rng.uniform(-100, 100, size=(32, 4)).astype(np.float32)
    big_targets = rng.integers(0, 4, size=32).astype(np.int64)
    # the critical region on every draw: true classes whose softmax underflows float32 (p_t < 1e-38,
    # a gap over 88 to the top logit), so log(softmax(...)) is -inf, not only on lucky draws
    for row in range(4):
        big_logits[row] = rng.permutation(np.array([100.0, -100.0, rng.uniform(-50, 50), rng.uniform(-50, 50)],
                                                   dtype=np.float32))
        big_targets[row] = int(np.argmin(big_logits[row]))
    return {"gammas": [0.0, 0.5, 2.0, float(rng.uniform(1, 4))],
            "logits": torch.from_numpy(rng.normal(0, 3, size=(64, 5))),
            "targets": torch.from_numpy(rng.integers(0, 5, size=64).astype(np.int64)),
            "big_logits": torch.from_numpy(big_logits),
            "big_targets": torch.from_numpy(big_targets),
            "small_logits": torch.from_numpy(rng.normal(0, 2, size=(6, 3))),
            "small_targets": torch.from_numpy(rng.integers(0, 3, size=6).astype(np.int64))}


def _scalar(value, name: str, dtype: str) -> float:
    # the wire format stores a 0-d tensor as shape (1,); the probe exports .dim() separately
    values = array(value, name, kind="tensor", dtype=dtype)
    expect(values.size == 1, f"`{name}` should be a single number")
    return float(values.reshape(()))


def focal_truth(logits, targets, gamma):
    z = logits.detach().double().clone().requires_grad_(True)
    value = focal_loss(z, targets, gamma)
    value.backward()
    return value.item(), z.grad.numpy()


def verdict_focal(data: dict, ctx: Context) -> None:
    inp = ctx.inputs
    values, grads = data.get("values"), data.get("grads")
    expect(isinstance(values, list) and isinstance(grads, list) and len(values) == len(grads) == len(inp["gammas"]),
           "focal_loss did not run")
    expect(data.get("dims") == [0] * len(values), "focal_loss should return a 0-d tensor (the mean over the batch)")
    for gamma, value, grad in zip(inp["gammas"], values, grads):
        v = _scalar(value, "focal_loss(...)", "torch.float64")
        g = array(grad, "the gradient", shape=(64, 5))
        ref_v, ref_g = focal_truth(inp["logits"], inp["targets"], gamma)
        expect(abs(float(v) - ref_v) <= FOCAL_RTOL * abs(ref_v),
               f"focal_loss with gamma={gamma:g} gives the wrong value: the mean over the batch of "
               "-(1 - p_t)**gamma * log(p_t)")
        expect(np.allclose(g, ref_g, rtol=FOCAL_RTOL, atol=1e-12), f"the gradient of focal_loss (gamma={gamma:g}) "
                                                                    "is wrong")


def verdict_focal_stable(data: dict, ctx: Context) -> None:
    inp = ctx.inputs
    expect(data.get("big_dim") == 0, "focal_loss should return a 0-d tensor (the mean over the batch)")
    big = _scalar(data.get("big"), "focal_loss on large logits", "torch.float32")
    grad = array(data.get("big_grad"), "its gradient", shape=(32, 4))
    expect(bool(np.isfinite(big)) and bool(np.all(np.isfinite(grad))),
           "focal_loss is inf or NaN for logits around +-100: use F.log_softmax, not log(softmax(...))")
    ref_v, ref_g = focal_truth(inp["big_logits"], inp["big_targets"], 2.0)
    expect(abs(float(big) - ref_v) <= FOCAL_RTOL_F32 * abs(ref_v) + 1e-6
           and np.allclose(grad, ref_g, rtol=FOCAL_RTOL_F32, atol=1e-5),
           "focal_loss on large float32 logits is inaccurate: take log p_t from F.log_softmax and p_t = exp(log p_t)")
    expect(data.get("gradcheck") is True, "torch.autograd.gradcheck fails on focal_loss in float64 "
                                          "(keep the input's dtype; no .float() inside)")


# -- q11: AdamW on the Rosenbrock function ----------------------------------------------------------


def verdict_adamw(data: dict, ctx: Context) -> None:
    start = tuple(float(v) for v in ctx.inputs["start"])
    path = array(data.get("path"), "run_adamw's path", shape=(101, 2))
    losses = numbers(data.get("losses"), "run_adamw's losses", min_len=100)
    expect(len(losses) == 100 and np.allclose(path[0], start, atol=1e-6),
           "run_adamw(start) should return optimize_with's (path, losses) from `start`: 101 points, 100 losses")
    _, class_name, lr, kwargs = ADAMW
    ref_path, _ = optimize_with(getattr(optim, class_name), lr, start=start, **kwargs)
    adam_l2, _ = optimize_with(optim.Adam, lr, start=start, **kwargs)
    close = bool(np.all(np.isfinite(path))) and np.max(np.abs(path - ref_path)) < PATH_ATOL
    expect(close or np.max(np.abs(path - adam_l2)) >= PATH_ATOL,
           "this is Adam with weight_decay=0.01, an L2 term added to the gradient (then rescaled by Adam): AdamW "
           "decouples the decay, shrinking x by lr * weight_decay * x apart from Adam's step: use optim.AdamW")
    expect(close, "the AdamW path differs from optim.AdamW with lr=0.01, weight_decay=0.01 from the given start")


# -- q12: random_split ----------------------------------------------------------------------------


def inputs_split(ctx: Context) -> dict:
    seed, other = (int(v) for v in ctx.rng.choice(10_000, size=2, replace=False))
    return {"n": int(ctx.rng.integers(40, 300)), "fraction": float(ctx.rng.uniform(0.6, 0.9)), "seed": seed,
            "other_seed": other}


def verdict_split(data: dict, ctx: Context) -> None:
    n, fraction = ctx.inputs["n"], ctx.inputs["fraction"]
    runs = data.get("runs")
    expect(isinstance(runs, list) and len(runs) == 3, "split_dataset did not return (train, val)")
    train, val = runs[0]["train"], runs[0]["val"]
    n_train = int(fraction * n)
    expect(sorted(train + val) == list(range(n)),
           f"on {n} items the two parts hold {len(train)} + {len(val)} items, not every item exactly once: "
           "the parts must be disjoint and cover the data set (val_size = len(dataset) - train_size)")
    expect((len(train), len(val)) == (n_train, n - n_train),
           f"with train_fraction={fraction:.3f} and {n} items the parts have {len(train)} and {len(val)} items: "
           f"train_size = int(train_fraction * len(dataset)) = {n_train}, val_size = the rest")
    expect(train != list(range(n_train)), "the training part is the first items in order: split at random "
                                          "(random_split)")
    expect(runs[1] == runs[0], "two calls with the same seed give different splits: pass "
                               "generator=torch.Generator().manual_seed(seed) to random_split")
    ref_train, ref_val = split_indices(n, fraction, ctx.inputs["seed"])
    expect(train == ref_train and val == ref_val,
           "the split is not random_split's with generator=torch.Generator().manual_seed(seed)")
    expect(runs[2] != runs[0], "another seed gives the same split: seed the generator with `seed`")


# -- q13: a sigmoid output and BCELoss ------------------------------------------------------------


def inputs_binary_validate(ctx: Context) -> dict:
    X = torch.from_numpy(ctx.rng.normal(size=(64, 10)).astype(np.float32))
    init = _random_state(bin_net(), ctx.rng, scale=1.0)
    with torch.no_grad():
        predicted = (loaded(bin_net(), init).eval()(X) > 0.5).float()
    while True:  # labels on which argmax's "always class 0" does not score the right accuracy by chance
        y = torch.from_numpy(ctx.rng.integers(0, 2, size=(64, 1)).astype(np.float32))
        if (predicted == y).sum() != (y == 0).sum():
            return {"X": X, "y": y, "init": init}


def inputs_binary_points(ctx: Context) -> dict:
    return {"X": torch.from_numpy(ctx.rng.normal(size=(400, 10)).astype(np.float32))}


def verdict_binary_validate(data: dict, ctx: Context) -> None:
    _expect_validation(data, ctx, "validate_binary", bin_net, partial(validate, threshold=0.5), nn.BCELoss(),
                       "validate_binary's loss is not the model's BCE loss with dropout off: call model.eval() first",
                       "validate_binary's accuracy should be the fraction (0 to 1) of points whose predicted class "
                       "(y_pred > 0.5) equals the label: with one sigmoid output, argmax is always 0")


def verdict_binary_model(data: dict, ctx: Context) -> None:
    out = array(data.get("out"), "binary_model(X)", kind="tensor", shape=(400, 1))
    expect(bool(np.all(np.isfinite(out))) and bool(np.all((out >= 0) & (out <= 1))),
           "binary_model's outputs are not probabilities: end the model with nn.Sigmoid() (BCELoss takes "
           "probabilities)")
    truth = simple_labels(ctx.inputs["X"]).numpy()
    accuracy = float(np.mean((out > 0.5) == truth))
    minimum = ctx.thresholds["min_binary_accuracy"]
    expect(accuracy >= minimum, f"the grader measured {100 * accuracy:.1f}% accuracy of binary_model on 400 fresh "
                                f"points; at least {100 * minimum:.0f}% is required")


# -- q14: a Dataset of images in class folders ----------------------------------------------------
IMAGE_CLASSES = ("ants", "bees", "birds", "cats", "dogs", "fish")


def inputs_image_folder(ctx: Context) -> dict:
    rng = ctx.rng
    names = [str(v) for v in rng.choice(IMAGE_CLASSES, size=3, replace=False)]  # created in this (unsorted) order
    height, width = int(rng.integers(5, 12)), int(rng.integers(5, 12))
    return {"classes": names, "images": {name: [rng.integers(0, 256, size=(height, width, 3)).astype(np.uint8)
                                                for _ in range(int(rng.integers(2, 5)))] for name in names}}


def verdict_image_folder(data: dict, ctx: Context) -> None:
    classes, images = ctx.inputs["classes"], ctx.inputs["images"]
    label_of = {name: i for i, name in enumerate(sorted(classes))}
    expected = sorted((label_of[name], float(pixels.sum()) / 255) for name in classes for pixels in images[name])
    height, width = images[classes[0]][0].shape[:2]
    n = integer(data.get("len"), "len(dataset)")
    expect(n == len(expected), f"len(dataset) is {n} for a folder of {len(expected)} .png images in "
                               f"{len(classes)} class folders: count only the .png files (skip other files)")
    expect(not data.get("item_error"), f"reading an item raised {str(data.get('item_error'))[:40]}: list only the "
                                       ".png files of the class folders")
    shapes = data.get("shapes")
    expect(isinstance(shapes, list) and all(s == [3, height, width] for s in shapes),
           f"an image should be a (3, H, W) tensor, here (3, {height}, {width}); got {str(shapes[:1])[:40]}: "
           "convert('RGB') and move the channels first (.permute(2, 0, 1))")
    expect(all(d == "torch.float32" for d in data.get("dtypes") or [None]), "an image should be float32")
    labels = data.get("labels")
    expect(isinstance(labels, list) and sorted(labels) == [label for label, _ in expected],
           "the labels should be the index of the image's class folder in sorted (alphabetical) order, as "
           "torchvision's ImageFolder numbers them")
    got = sorted(zip(labels, numbers(data.get("sums"), "pixel sums")))
    scale = [s / max(e, 1e-9) for (_, s), (_, e) in zip(got, expected)]
    expect(not np.allclose(scale, 255, rtol=1e-3), "the pixels are 0-255: divide by 255 for values in [0, 1]")
    expect(all(a == b and abs(s - e) <= 1e-3 * max(1.0, e) for (a, s), (b, e) in zip(got, expected)),
           "an item should be (the image's pixels / 255 as a (3, H, W) float32 tensor, the index of its class "
           "folder in sorted (alphabetical) order)")


CHECKS = [
    Check("q1", "XORDataset and SpiralDataset items", probes.datasets, verdict_datasets, inputs=inputs_batch_size),
    Check("q1", "number of batches a DataLoader gives", probes.datasets, verdict_batches, inputs=inputs_batch_size),
    Check("q2", "rosenbrock and optimize_with on a fresh starting point", probes.optimizer_runs, verdict_rosenbrock,
          inputs=inputs_start),
    Check("q2", "the optimizer comparison figure", probes.optimizer_runs, verdict_opt_figure, inputs=inputs_start),
    Check("q4", "a state_dict round trip gives the same model", probes.roundtrip, verdict_roundtrip,
          inputs=inputs_x10),
    Check("q4", "whole-model loading fails with weights_only=True", probes.roundtrip, verdict_full_model,
          inputs=inputs_x10),
    Check("q6", "resuming from a checkpoint continues training exactly", probes.checkpoint_resume, verdict_checkpoint,
          inputs=inputs_checkpoint, hint="a checkpoint needs model.state_dict() and optimizer.state_dict()"),
    Check("q7", "train_epoch on fresh data and weights", probes.train_epoch_run, verdict_train_epoch,
          inputs=inputs_train_epoch),
    Check("q7", "validate on fresh data and weights", probes.validate_run, verdict_validate, inputs=inputs_validate),
    Check("q8", "train_epoch and validate honour their device argument (and run on a GPU when present)",
          probes.epoch_devices, verdict_device_meta, inputs=inputs_train_epoch),
    Check("q8", "pick_device() chooses cuda exactly when torch.cuda.is_available()", device_choice,
          verdict_device_choice, hint="do not hard-code the device: test torch.cuda.is_available() inside pick_device()"),
    Check("q9", "the model's parameter count", probes.pipeline, verdict_param_count),
    Check("q9", "history and early stopping", probes.pipeline, verdict_history),
    Check("q9", "the best weights are saved to best_model.pth", probes.pipeline, verdict_best_saved),
    Check("q9", "the best weights are restored", probes.pipeline, verdict_restored),
    Check("q9", "test accuracy measured by the grader from your weights", probes.pipeline, verdict_accuracy),
    Check("q9", "train_model passes its device on", probes.train_model_devices, verdict_train_model_device),
    Check("q10", "focal loss values and gradients in float64", probes.focal, verdict_focal, inputs=inputs_focal),
    Check("q10", "focal loss is stable for large logits and passes gradcheck", probes.focal, verdict_focal_stable,
          inputs=inputs_focal),
    Check("q11", "AdamW's path from a fresh starting point", probes.adamw_run, verdict_adamw, inputs=inputs_start),
    Check("q12", "split_dataset on a fresh data set: sizes, disjoint, complete, seeded", probes.splits,
          verdict_split, inputs=inputs_split),
    Check("q13", "validate_binary on fresh data and weights", probes.binary_validate_run, verdict_binary_validate,
          inputs=inputs_binary_validate),
    Check("q13", "binary_model gives probabilities that separate fresh points", probes.binary_outputs,
          verdict_binary_model, inputs=inputs_binary_points),
    Check("q14", "ImageFolderDataset on a fresh folder of PNG images", probes.image_folder, verdict_image_folder,
          inputs=inputs_image_folder),
]


# Hand-offs: once a question is graded, what its prompt fully specifies replaces the student's
# answer, so one mistake costs only that question's points.
HANDOFFS = {
    "q1": Handoff(install=(XORDataset, SpiralDataset)),
    "q2": Handoff(install=(rosenbrock, optimize_with)),
    "q8": Handoff(install=(train_epoch, validate, pick_device), run=probes.set_device),
    "q12": Handoff(install=(split_dataset,)),
}
