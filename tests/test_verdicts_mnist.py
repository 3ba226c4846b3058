"""mnist's verdicts without a sandbox or a notebook: the reference's objects pass each check, and
each known mistake fails its check with a message that names it."""
from __future__ import annotations

import copy
import functools

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from harness import all_checks, assert_fails, module, outcome, reference, suite, unlisted

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

AID = "mnist"


def _pick_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _heatmap(cm, xlabel="Predicted", ylabel="True"):
    fig, ax = plt.subplots()
    ax.imshow(cm)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig


def _examples(preds, y, correct_idx, incorrect_idx, with_truth=True):
    fig, axes = plt.subplots(2, 10)
    for ax, idx in zip(axes[0], correct_idx):
        ax.imshow(np.zeros((28, 28)))
        ax.set_title(str(preds[idx].item()))
    for ax, idx in zip(axes[1], incorrect_idx):
        ax.imshow(np.zeros((28, 28)))
        ax.set_title(f"{preds[idx].item()} (true: {y[idx].item()})" if with_truth else str(preds[idx].item()))
    return fig


def _comparison_plot(results, legend=True):
    fig, ax = plt.subplots()
    for name, result in results.items():
        ax.plot(result["val_hist"], label=name)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Validation accuracy (%)")
    if legend:
        ax.legend()
    return fig


@pytest.fixture(scope="module")
def solved() -> dict:
    """The student's namespace after a correct notebook, trained at the grading budget."""
    ref = module(AID, "reference")
    budget = suite(AID)[0].budget
    data = reference(AID)
    split = {f"{name}_mnist": tensor for name, tensor in data.items()}
    X, y, Xv, yv, Xt, yt = (data[k] for k in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"))
    torch.manual_seed(42)
    model = ref.MNISTNet()
    criterion, optimizer = nn.CrossEntropyLoss(), ref.adam(model)
    history = ref.train_model(model, X, y, Xv, yv, criterion, optimizer, n_epochs=int(budget["max_epochs"]),
                              patience=ref.PATIENCE)
    test_preds = ref.predict(model, Xt)
    test_acc = (test_preds == yt).float().mean().item() * 100
    cm = np.bincount(10 * yt.numpy() + test_preds.numpy(), minlength=100).reshape(10, 10)
    digit_accs = [100 * cm[d, d] / cm[d].sum() for d in range(10)]
    correct_idx = np.flatnonzero((test_preds == yt).numpy())[:10]
    incorrect_idx = np.flatnonzero((test_preds != yt).numpy())[:10]
    nets = ref.architectures()
    arch_results = {}
    for name, net in nets.items():
        val_hist = ref.train_full_batch(net, X, y, int(budget["comparison_epochs"]), Xv, yv)
        arch_results[name] = {"val_hist": val_hist, "test_acc": 100 * ref.accuracy(net, Xt, yt),
                              "n_params": sum(p.numel() for p in net.parameters())}
    loader = ref.train_loader(X, y)
    mb_model, fb_model = ref.MNISTNet(), ref.MNISTNet()
    mb_val_accs = ref.train_mini_batch(mb_model, loader, int(budget["minibatch_epochs"]), Xv, yv)
    fb_val_accs = ref.train_full_batch(fb_model, X, y, int(budget["minibatch_epochs"]), Xv, yv)
    return {**split, "MNISTNet": ref.MNISTNet, "model": model, "criterion": criterion, "optimizer": optimizer,
            "train_model": ref.train_model, "history": history, "test_preds": test_preds, "test_acc": test_acc,
            "cm": cm, "digit_accs": digit_accs, "fig_cm": _heatmap(cm), "correct_idx": correct_idx,
            "incorrect_idx": incorrect_idx, "fig_preds": _examples(test_preds, yt, correct_idx, incorrect_idx),
            "architectures": nets, "arch_results": arch_results, "fig_arch": _comparison_plot(arch_results),
            "train_loader": loader, "mb_model": mb_model, "fb_model": fb_model, "mb_val_accs": mb_val_accs,
            "fb_val_accs": fb_val_accs, "mb_test_acc": 100 * ref.accuracy(mb_model, Xt, yt),
            "fb_test_acc": 100 * ref.accuracy(fb_model, Xt, yt), "pick_device": _pick_device,
            "train_epoch": ref.train_epoch}


CHECKS = all_checks(AID)


@pytest.mark.parametrize("question, description", CHECKS)
def test_reference_passes(solved, question, description):
    result = outcome(AID, question, description, solved)
    assert result["passed"], result


def _softmax_class():
    ref = module(AID, "reference")

    class MNISTNet(ref.MNISTNet):
        def __init__(self):
            super().__init__()
            self.net.append(nn.Softmax(dim=1))
    return MNISTNet


def _hidden_64_class():
    class MNISTNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 64), nn.ReLU(),
                                     nn.Dropout(0.2), nn.Linear(64, 10))

        def forward(self, x):
            return self.net(x)
    return MNISTNet


def _epoch_moving(move_labels: bool):
    """train_epoch that moves the images to `device` but the labels only if `move_labels`."""
    def train_epoch(model, loader, criterion, optimizer, device):
        model.train()
        total = 0.0
        for X_batch, y_batch in loader:
            loss = criterion(model(X_batch.to(device)), y_batch.to(device) if move_labels else y_batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        return total / len(loader)
    return train_epoch


def _epoch_batch_not_moved(model, loader, criterion, optimizer, device):
    return _epoch_moving(True)(model, loader, criterion, optimizer, torch.device("cpu"))


def _val_hist_with_dropout(ns):
    results = copy.deepcopy(ns["arch_results"])
    name, net = list(ns["architectures"].items())[-1]  # Deep: it has dropout
    net = copy.deepcopy(net).train()
    with torch.no_grad():
        correct = net(ns["X_val_mnist"]).argmax(dim=1) == ns["y_val_mnist"]
    results[name]["val_hist"][-1] = 100 * correct.float().mean().item()
    return {"arch_results": results}


def _calibrate():
    return module(AID, "calibrate")


def _train_model_measuring_before_step(model, X_train, y_train, X_val, y_val, criterion, optimizer, n_epochs,
                                       patience):
    """A mistake: the training accuracy in eval() mode, but of the weights before the epoch's step."""
    ref = module(AID, "reference")
    before = []

    def train_accuracy(net, outputs, X, y):
        return before.pop()

    original_step = optimizer.step

    def step(*args, **kwargs):
        before.append(100 * ref.accuracy(model, X_train, y_train))
        model.train()
        return original_step(*args, **kwargs)

    optimizer.step = step
    return ref.train_model(model, X_train, y_train, X_val, y_val, criterion, optimizer, n_epochs, patience,
                           train_accuracy=train_accuracy)


@pytest.mark.parametrize("variant", ["eval_train_accuracy", "inference_mode_accuracy"])
def test_train_accuracy_variants_pass(solved, variant):
    measure = getattr(_calibrate(), variant)
    result = outcome(AID, "q3", "training accuracy of train_model",
                     {**solved, "train_model": functools.partial(solved["train_model"], train_accuracy=measure)})
    assert result["passed"], result


MISTAKES = {  # name: (question, check, change of the namespace, word of the feedback); names from mnist.yml
    "pixels_not_scaled": ("q1", "six tensors", lambda ns: {"X_train_mnist": ns["X_train_mnist"] * 255}, "scale"),
    "labels_float": ("q1", "six tensors", lambda ns: {"y_val_mnist": ns["y_val_mnist"].float()}, "torch.long"),
    "softmax_at_end": ("q2", "MNISTNet's layers", lambda ns: {"MNISTNet": _softmax_class()}, "softmax"),
    "hidden_layer_64": ("q2", "MNISTNet's layers", lambda ns: {"MNISTNet": _hidden_64_class()}, "235,146"),
    "no_weight_decay": ("q3", "loss function", lambda ns: {"optimizer": torch.optim.Adam(ns["model"].parameters(),
                                                                                         lr=0.001)}, "weight_decay"),
    "best_state_shallow_copy": ("q3", "train_model on the grader's problem", lambda ns: {
        "train_model": functools.partial(ns["train_model"], snapshot=_calibrate().shallow_state)}, "copy"),
    "train_acc_from_training_step": ("q3", "training accuracy of train_model", lambda ns: {
        "train_model": functools.partial(ns["train_model"], train_accuracy=_calibrate().step_outputs_accuracy)},
                                     "eval()"),
    "train_acc_in_train_mode": ("q3", "training accuracy of train_model", lambda ns: {
        "train_model": functools.partial(ns["train_model"], train_accuracy=_calibrate().train_mode_accuracy)},
                                "eval()"),
    "train_acc_before_step": ("q3", "training accuracy of train_model", lambda ns: {
        "train_model": _train_model_measuring_before_step}, "after the step"),
    "best_epoch_off_by_one": ("q3", "the MNIST run", lambda ns: {
        "history": {**ns["history"], "best_epoch": ns["history"]["best_epoch"] - 1}}, "best_epoch"),
    "no_zero_grad_in_train_model": ("q3", "test accuracy measured", lambda ns: {"model": ns["MNISTNet"]()},
                                    "zero_grad"),
    "test_acc_fraction": ("q4", "test_preds and test_acc", lambda ns: {"test_acc": ns["test_acc"] / 100},
                          "percentage"),
    "confusion_transposed": ("q4", "confusion matrix and", lambda ns: {"cm": ns["cm"].T}, "transposed"),
    "heatmap_axes_swapped": ("q4", "confusion-matrix heatmap", lambda ns: {"fig_cm": _heatmap(ns["cm"], "True",
                                                                                              "Predicted")},
                             "predicted digit"),
    "misclassified_title_without_truth": ("q5", "correct and misclassified", lambda ns: {
        "fig_preds": _examples(ns["test_preds"], ns["y_test_mnist"], ns["correct_idx"], ns["incorrect_idx"],
                               with_truth=False)}, "true digit"),
    "comparison_val_with_dropout": ("q6", "three architectures", _val_hist_with_dropout, "dropout"),
    "comparison_no_legend": ("q6", "comparison plot", lambda ns: {"fig_arch": _comparison_plot(ns["arch_results"],
                                                                                               legend=False)},
                             "legend"),
    "loader_not_shuffled": ("q7", "TensorDataset", lambda ns: {
        "train_loader": DataLoader(ns["train_loader"].dataset, batch_size=64)}, "shuffle"),
    "minibatch_one_step_per_epoch": ("q7", "mini-batch against full-batch", lambda ns: {
        "mb_model": ns["fb_model"], "mb_val_accs": ns["fb_val_accs"], "mb_test_acc": ns["fb_test_acc"]}, "step"),
    "pick_device_always_cpu": ("q9", "pick_device()", lambda ns: {"pick_device": lambda: torch.device("cpu")},
                               "cuda"),
    "pick_device_string": ("q9", "pick_device()", lambda ns: {
        "pick_device": lambda: "cuda" if torch.cuda.is_available() else "cpu"}, "torch.device"),
    "batch_not_moved": ("q9", "train_epoch on the meta device", lambda ns: {"train_epoch": _epoch_batch_not_moved},
                        "device"),
    "labels_not_moved": ("q9", "train_epoch on the meta device", lambda ns: {
        "train_epoch": _epoch_moving(False)}, "y_batch"),
    "train_epoch_no_zero_grad": ("q9", "train_epoch on the grader's mini-batches", lambda ns: {
        "train_epoch": _calibrate().epoch_no_zero_grad}, "zero_grad"),
    "train_epoch_last_loss": ("q9", "train_epoch on the grader's mini-batches", lambda ns: {
        "train_epoch": _calibrate().epoch_last_loss}, "mean"),
}


def test_every_check_has_a_mistake():
    assert not unlisted(AID, MISTAKES.values(), repeats=True)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_fails_its_check(solved, name):
    question, description, change, word = MISTAKES[name]
    assert_fails(AID, question, description, {**solved, **change(solved)}, word)
