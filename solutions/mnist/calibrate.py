"""Calibration of mnist's thresholds and tolerances: `python -m autograder calibrate mnist`.

Per seed, at the budget of grading.yml and on one thread, like one grading job per core: the
prompt's runs from reference.py (MNISTNet with early stopping, the three architectures of the
comparison, mini-batch against full-batch training), scored as the verdicts score them; then, for
every numeric tolerance of verdicts.py, the largest distance among correct ways of writing the
answer and the smallest among the nearest realistic mistakes, measured with the verdicts' own
distance functions on one grader draw of the check's inputs.
"""
from __future__ import annotations

import copy
import functools

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder import wire
from autograder.checks import Context
from autograder.config import load_config
from autograder.data import DATA_DIR

from . import probes, verdicts
from .reference import (PATIENCE, MNISTNet, accuracy, adam, architectures, clone_state, eval_train_accuracy, predict,
                        reference_epoch, train_epoch, train_full_batch, train_loader, train_mini_batch, train_model,
                        train_step)

DEFAULT_SEEDS = 20
AID = "mnist"


def _as_probed(data: dict) -> dict:
    """What a verdict receives: the data after the wire format."""
    return wire.decode(wire.encode(data))


# Snapshots of the best weights for `train_model` (its `snapshot` argument).
def deepcopy_state(model: nn.Module) -> dict:
    return copy.deepcopy(model.state_dict())


def shallow_state(model: nn.Module) -> dict:
    """A mistake: a new dict of the live tensors, which keep training."""
    return model.state_dict().copy()


def late_state(model: nn.Module) -> dict:
    """A mistake: the weights one optimizer step after the best epoch (taken at the next evaluation)."""
    state = {}

    def take(module, args):
        if not module.training:
            state.update({k: v.clone() for k, v in module.state_dict().items()})
            handle.remove()

    handle = model.register_forward_pre_hook(take)
    return state


# The training accuracy of `train_model` (its `train_accuracy` argument): correct variants and mistakes.
def inference_mode_accuracy(model, outputs, X, y) -> float:
    model.eval()
    with torch.inference_mode():
        return 100.0 * (model(X).argmax(dim=1) == y).sum().item() / len(y)


def step_outputs_accuracy(model, outputs, X, y) -> float:
    """A mistake (the notes' version): the training step's outputs, with dropout on, before the step."""
    with torch.no_grad():
        return (outputs.argmax(dim=1) == y).float().mean().item() * 100


def train_mode_accuracy(model, outputs, X, y) -> float:
    """A mistake: a fresh pass after the step, but still in train() mode (dropout on)."""
    with torch.no_grad():
        return (model(X).argmax(dim=1) == y).float().mean().item() * 100


TRAIN_ACCURACIES = {eval_train_accuracy: True, inference_mode_accuracy: True, step_outputs_accuracy: False,
                    train_mode_accuracy: False}


# `train_epoch` as students write it: correct variants and the nearest mistakes.
def functional_tensor_sum(model, loader, criterion, optimizer, device):
    model.train()
    total = torch.zeros(())
    for X_batch, y_batch in loader:
        loss = F.cross_entropy(model(X_batch.to(device)), y_batch.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total = total + loss.detach()
    return float(total / len(loader))


def epoch_no_zero_grad(model, loader, criterion, optimizer, device):
    model.train()
    total = 0.0
    for X_batch, y_batch in loader:
        loss = criterion(model(X_batch.to(device)), y_batch.to(device))
        loss.backward()
        optimizer.step()
        total += loss.item()
    return total / len(loader)


def epoch_last_loss(model, loader, criterion, optimizer, device):
    """A mistake: the last batch's loss instead of the mean."""
    model.train()
    for X_batch, y_batch in loader:
        _, loss = train_step(model, X_batch.to(device), y_batch.to(device), criterion, optimizer)
    return loss.item()


def epoch_momentum(model, loader, criterion, optimizer, device):
    """A mistake: SGD with momentum 0.9 instead of the plain step it was given."""
    for group in optimizer.param_groups:
        group["momentum"] = 0.9
    return train_epoch(model, loader, criterion, optimizer, device)


def epoch_batch_32(model, loader, criterion, optimizer, device):
    """A mistake: its own loader with batches of 32."""
    from torch.utils.data import DataLoader

    return train_epoch(model, DataLoader(loader.dataset, batch_size=32), criterion, optimizer, device)



EPOCH_VARIANTS = {train_epoch: True, functional_tensor_sum: True, epoch_no_zero_grad: False, epoch_last_loss: False,
                  epoch_momentum: False, epoch_batch_32: False}  # function: correct?
SNAPSHOTS = {clone_state: True, deepcopy_state: True, shallow_state: False, late_state: False}


class Extremes:
    """Per tolerance, the largest distance of a correct answer and the smallest of a mistake."""

    def __init__(self):
        self.values: dict[str, float] = {}

    def note(self, tolerance: str, correct: bool, distance: float) -> None:
        key = f"{tolerance} largest correct distance" if correct else f"{tolerance} smallest mistake distance"
        keep = max if correct else min
        self.values[key] = keep(self.values.get(key, distance), float(distance))


def _context(ref, assignment, rng) -> Context:
    return Context(ref, dict(assignment.thresholds), dict(assignment.budget), rng)


def _threads(n: int, call):
    """`call()` on n threads (a grading job may get two cores), then back to one."""
    torch.set_num_threads(n)
    try:
        return call()
    finally:
        torch.set_num_threads(1)


def _runs(seed: int, ref: dict, budget: dict) -> tuple[dict, nn.Module, dict]:
    """The prompt's training runs at the grading budget: (measurements, the trained MNISTNet, its history)."""
    out = {}
    torch.manual_seed(seed)
    model = MNISTNet()
    history = train_model(model, ref["X_train"], ref["y_train"], ref["X_val"], ref["y_val"], nn.CrossEntropyLoss(),
                          adam(model), n_epochs=int(budget["max_epochs"]), patience=PATIENCE)
    out["solution epochs run"] = len(history["val_losses"])
    out["solution best epoch"] = history["best_epoch"]
    for label, net in architectures().items():
        train_full_batch(net, ref["X_train"], ref["y_train"], int(budget["comparison_epochs"]))
        out[f"{label} comparison test accuracy"] = accuracy(net, ref["X_test"], ref["y_test"])
    mb, fb = MNISTNet(), MNISTNet()
    train_mini_batch(mb, train_loader(ref["X_train"], ref["y_train"]), int(budget["minibatch_epochs"]))
    train_full_batch(fb, ref["X_train"], ref["y_train"], int(budget["minibatch_epochs"]))
    out["mini-batch test accuracy"] = accuracy(mb, ref["X_test"], ref["y_test"])
    out["full-batch test accuracy after MINIBATCH_EPOCHS"] = accuracy(fb, ref["X_test"], ref["y_test"])
    out["mini-batch minus full-batch test accuracy"] = (out["mini-batch test accuracy"]
                                                        - out["full-batch test accuracy after MINIBATCH_EPOCHS"])
    return out, model, history


def _tolerances(seed: int, ref: dict, assignment, model: nn.Module, history: dict) -> dict:
    extremes = Extremes()
    note = extremes.note

    def context():
        return _context(ref, assignment, np.random.default_rng([1, seed]))

    # q1: the training split scaled in correct and wrong ways, on the grader's rows of this seed
    ctx = context()
    picked = verdicts.inputs_rows(ctx)["rows_train"]
    from torchvision import datasets

    raw = datasets.MNIST(root=DATA_DIR, train=True, download=True).data[:5000].reshape(-1, 784)
    for X, correct in ((raw.float().div(255), True), (raw.float() * (1 / 255), True),
                       ((raw.double() / 255).float(), True), (raw.float() / 256, False),
                       (raw.float() / 255 - 0.5, False)):
        excess, pixels = verdicts.row_distances(X.double().sum(dim=1).numpy(), X[torch.as_tensor(picked)].numpy(),
                                                ref["X_train"], picked)
        note("ROW_SUM_ATOL (beyond ROW_SUM_RTOL)", correct, excess)
        note("PIXEL_TOLERANCE", correct, pixels)

    # q3: train_model on the grader's problem with real and false snapshots of the best weights
    ctx = context()
    ctx.inputs = verdicts.inputs_noise(ctx)
    for snapshot, correct in SNAPSHOTS.items():
        data = _as_probed(probes.train_function(functools.partial(train_model, snapshot=snapshot), ctx.inputs))
        note("PROBE_RESTORE_TOLERANCE", correct, verdicts.probe_restore_gap(data, ctx))

    # q3: the training accuracy of train_model on the grader's problem with dropout, on 1 and 2 threads
    ctx = context()
    ctx.inputs = verdicts.inputs_train_accuracy(ctx)
    for measure, correct in TRAIN_ACCURACIES.items():
        for threads in (1, 2):
            run = functools.partial(train_model, train_accuracy=measure)
            data = _as_probed(_threads(threads, lambda: probes.train_accuracy_run(run, ctx.inputs)))
            note("ACC_TOLERANCE (q3 training accuracy)", correct, verdicts.train_accuracy_gap(data, ctx))

    # q3 MNIST run: the restored weights on 1 and 2 threads; the loss one epoch before the best
    val = np.asarray(history["val_losses"])
    for threads in (1, 2):
        gap = _threads(threads, lambda: verdicts.mnist_restore_gap(model, {"val_losses": val}, ctx))
        note("RESTORE_TOLERANCE", True, gap)
    best = history["best_epoch"]
    if best > 0:
        note("RESTORE_TOLERANCE", False, abs(val[best - 1] - val[best]) / max(1.0, abs(val.min())))

    # q3-q7: predictions and reported accuracies of the trained model
    data = _as_probed({"params": probes.weights(model)})
    preds = predict(model, ref["X_test"]).numpy()
    preds_2 = _threads(2, lambda: predict(model, ref["X_test"]).numpy())
    model.train()
    with torch.no_grad():
        preds_dropout = model(ref["X_test"]).argmax(dim=1).numpy()
        val_dropout = (model(ref["X_val"]).argmax(dim=1) == ref["y_val"]).float().mean().item()
    model.eval()
    note("PRED_TOLERANCE", True, verdicts.prediction_gap(preds_2, data, ctx))
    note("PRED_TOLERANCE", False, verdicts.prediction_gap(preds_dropout, data, ctx))
    y = ref["y_test"].numpy()
    val_acc = verdicts.split_accuracy(model, ctx, "val")
    test_acc = verdicts.split_accuracy(model, ctx, "test")
    note("ACC_TOLERANCE", True, verdicts.percent_gap(100 * float(np.mean(preds_2 == y)), test_acc, "test_acc"))
    note("ACC_TOLERANCE", False, verdicts.percent_gap(100 * val_dropout, val_acc, "val_acc"))
    note("ACC_TOLERANCE", False, verdicts.percent_gap(100 * val_acc, test_acc, "test_acc"))
    percent = 100 * float(np.mean(preds == y))
    note("PERCENT_TOLERANCE", True, verdicts.test_acc_gap(percent, preds_2, ctx))
    note("PERCENT_TOLERANCE", False, verdicts.test_acc_gap(100 * float(np.mean(preds_dropout == y)), preds, ctx))
    note("PERCENT_TOLERANCE", False, verdicts.test_acc_gap(percent / 100, preds, ctx))
    truth = verdicts.confusion(y, preds)
    expected = verdicts.digit_percentages(truth)
    note("DIGIT_TOLERANCE", True, np.abs(100 * truth.diagonal() / truth.sum(axis=1) - expected).max())
    note("DIGIT_TOLERANCE", False, np.abs(100 * truth.diagonal() / truth.sum(axis=0) - expected).max())

    # q9: train_epoch variants on the grader's problem, on 1 and 2 threads
    ctx = context()
    ctx.inputs = verdicts.inputs_epoch(ctx)
    params, mean_loss = reference_epoch(ctx.inputs)
    for variant, correct in EPOCH_VARIANTS.items():
        for threads in (1, 2):
            data = _as_probed(_threads(threads, lambda: probes.epoch_steps(variant, ctx.inputs)))
            note("EPOCH_TOLERANCE", correct, max(verdicts.epoch_weight_distance(data, params),
                                                 verdicts.epoch_loss_distance(data, mean_loss)))
    return extremes.values


def calibrate(seed: int) -> dict[str, float]:
    """One seed's measurements: test accuracies of the prompt's runs, then the tolerances' extremes."""
    torch.set_num_threads(1)
    assignment = load_config().assignment(AID)
    ref = verdicts.reference(assignment)
    runs, model, history = _runs(seed, ref, assignment.budget)
    out = {"solution test accuracy": accuracy(model, ref["X_test"], ref["y_test"]), **runs}
    out.update(_tolerances(seed, ref, assignment, model, history))
    return {name: float(value) for name, value in out.items()}
