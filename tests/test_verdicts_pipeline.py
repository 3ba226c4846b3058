"""pipeline's verdicts without a sandbox or a notebook: the reference's objects pass each check, and
each known mistake (from tests/submissions/pipeline.yml) fails its check with a message that names it."""
from __future__ import annotations

import contextlib
import copy
import os
from functools import partial

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset, TensorDataset

from harness import all_checks, assert_fails, module, outcome, reference, suite, unlisted

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

AID = "pipeline"


@contextlib.contextmanager
def inside(folder):
    """Run the probes in `folder`: they read model_state.pth and best_model.pth from the working directory."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _opt_figure(ref, log_scale=True):
    fig, (left, right) = plt.subplots(1, 2)
    for _, class_name, lr, kwargs in ref.OPTIMIZERS:
        path, losses = ref.optimize_with(getattr(torch.optim, class_name), lr, **kwargs)
        left.plot(losses, label=class_name)
        right.plot(path[:, 0], path[:, 1], "o-")
    if log_scale:
        left.set_yscale("log")
    left.legend()
    gx, gy = np.meshgrid(np.linspace(-1.5, 1.5, 30), np.linspace(-0.5, 1.5, 30))
    right.contour(gx, gy, ref.rosenbrock(gx, gy))
    plt.close(fig)
    return fig


def save_checkpoint(path, model, optimizer, epoch):
    torch.save({"epoch": epoch, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": optimizer.state_dict()}, path)


def load_checkpoint(path, model, optimizer):
    checkpoint = torch.load(path, weights_only=True)
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    return checkpoint["epoch"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def solved(folder) -> dict:
    """The student's namespace after a correct notebook, and its files in `folder`."""
    ref = module(AID, "reference")
    assignment, _ = suite(AID)
    run = ref.spiral_run(reference(AID), seed=0, max_epochs=int(assignment.budget["max_epochs"]),
                         best_path=folder / "best_model.pth")
    torch.manual_seed(0)
    model, new_model = ref.small_net(), ref.small_net()
    torch.save(model.state_dict(), folder / "model_state.pth")
    new_model.load_state_dict(torch.load(folder / "model_state.pth"))
    return {"XORDataset": ref.XORDataset, "SpiralDataset": ref.SpiralDataset, "n_batches_xor": 2,
            "n_batches_train": 10, "rosenbrock": ref.rosenbrock, "optimize_with": ref.optimize_with,
            "fig_opt": _opt_figure(ref), "model_small": model, "new_model": new_model,
            "full_load_error": "UnpicklingError", "save_checkpoint": save_checkpoint,
            "load_checkpoint": load_checkpoint, "train_epoch": ref.train_epoch, "validate": ref.validate,
            "pick_device": ref.pick_device, "train_model": ref.train_model, "run": run,
            "history": run["history"], "model": run["model"], "focal_loss": ref.focal_loss,
            "run_adamw": _run_adamw, "split_dataset": ref.split_dataset, "validate_binary": partial(ref.validate, threshold=0.5),
            "binary_model": _binary_model(ref), "ImageFolderDataset": _image_folder()}


def _image_folder(scale=255.0, channels_first=True, mode="RGB", order=sorted, suffix=".png"):
    """The notebook's ImageFolderDataset, with the knobs of its realistic mistakes."""
    from PIL import Image

    class ImageFolderDataset(torch.utils.data.Dataset):
        def __init__(self, root):
            self.classes = order(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name)))
            self.samples = [(os.path.join(root, name, file), label) for label, name in enumerate(self.classes)
                            for file in sorted(os.listdir(os.path.join(root, name))) if file.endswith(suffix)]

        def __len__(self):
            return len(self.samples)

        def __getitem__(self, idx):
            path, label = self.samples[idx]
            pixels = torch.from_numpy(np.asarray(Image.open(path).convert(mode), dtype=np.float32) / scale)
            if pixels.dim() == 3 and channels_first:
                pixels = pixels.permute(2, 0, 1)
            return pixels, label
    return ImageFolderDataset


def _torchvision_image_folder(root):
    from torchvision import datasets, transforms
    return datasets.ImageFolder(root, transform=transforms.ToTensor())


def _run_adamw(start=(-1.0, 1.0), optimizer_class=torch.optim.AdamW, lr=0.01):
    return module(AID, "reference").optimize_with(optimizer_class, lr, start=start, weight_decay=0.01)


def _binary_model(ref, epochs=10, lr=0.001, sigmoid=True):
    """The notebook's binary classifier: Classifier(10, [64, 32], 1) + Sigmoid, 10 epochs of BCELoss."""
    torch.manual_seed(0)
    X = torch.randn(1000, 10)
    train, _ = ref.split_dataset(TensorDataset(X, ref.simple_labels(X)), 0.8, seed=0)
    loader = DataLoader(train, batch_size=32, shuffle=True)
    body = ref.Classifier(10, [64, 32], 1)
    model = nn.Sequential(body, nn.Sigmoid())
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        ref.train_epoch(model, loader, nn.BCELoss(), optimizer, torch.device("cpu"))
    return model if sigmoid else body


def _namespace(solved: dict, question: str) -> dict:
    """Questions 4 and 9 both read `model`: the round trip's small network, or the trained Classifier."""
    return {**solved, "model": solved["model_small"]} if question == "q4" else solved


CHECKS = all_checks(AID)


@pytest.mark.parametrize("question, description", CHECKS)
def test_reference_passes(solved, folder, question, description):
    with inside(folder):
        result = outcome(AID, question, description, _namespace(solved, question))
    assert result["passed"], result


# -- realistic mistakes (tests/submissions/pipeline.yml) -------------------------------------------
def _float_labels(ns):
    class SpiralDataset(ns["SpiralDataset"]):
        def __init__(self, split):
            super().__init__(split)
            self.y = self.y.float()
    return {"SpiralDataset": SpiralDataset}


def _path_not_copied(optimizer_class, lr, start=(-1.0, 1.0), n_steps=100, **kwargs):
    x = torch.tensor(start, dtype=torch.float32, requires_grad=True)
    optimizer = optimizer_class([x], lr=lr, **kwargs)
    path, losses = [x.detach().clone().numpy()], []
    for _ in range(n_steps):
        optimizer.zero_grad()
        loss = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        loss.backward()
        optimizer.step()
        path.append(x.detach().numpy())
        losses.append(loss.item())
    return np.array(path), losses


def _checkpoint_without_optimizer(path, model, optimizer, epoch):
    torch.save({"epoch": epoch, "model_state_dict": model.state_dict()}, path)


def _load_without_optimizer(path, model, optimizer):
    checkpoint = torch.load(path, weights_only=True)
    model.load_state_dict(checkpoint["model_state_dict"])
    return checkpoint["epoch"]


def _no_zero_grad(model, dataloader, criterion, optimizer, device):
    optimizer.zero_grad = lambda set_to_none=True: None  # the gradients accumulate over the batches
    return module(AID, "reference").train_epoch(model, dataloader, criterion, optimizer, device)


def _validate_without_eval(model, dataloader, criterion, device):
    model.train()
    return module(AID, "reference").validate(_AlwaysTraining(model), dataloader, criterion, device)


class _AlwaysTraining(nn.Module):
    """A model whose eval() is ignored: dropout stays on, as if validate never called model.eval()."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def eval(self):
        return self

    def forward(self, x):
        return self.model(x)


def _ignores_device(model, dataloader, criterion, optimizer, device):
    return module(AID, "reference").train_epoch(model, dataloader, criterion, optimizer, "cpu")


def _train_model_ignores_device(model, train_loader, val_loader, criterion, optimizer, epochs, device,
                                patience=10, best_path="best_model.pth"):
    return module(AID, "reference").train_model(model, train_loader, val_loader, criterion, optimizer, epochs,
                                                "cpu", patience, best_path)


def _one_hidden_layer(ns):
    return {"model": module(AID, "reference").Classifier(hidden_sizes=(64,))}


def _patience_off_by_one(ns):
    history = {k: list(v) for k, v in ns["history"].items()}
    for values in history.values():
        values.append(values[-1])
    return {"history": history}


def _last_weights(ns):
    model = copy.deepcopy(ns["model"])
    model.load_state_dict(ns["run"]["last_state"])
    return {"model": model}


def _untrained(ns):
    torch.manual_seed(0)
    return {"model": module(AID, "reference").Classifier()}


def _focal_without_factor(logits, targets, gamma=2.0):
    return F.cross_entropy(logits, targets)


def _focal_log_of_softmax(logits, targets, gamma=2.0):
    pt = F.softmax(logits, dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)
    return (-(1 - pt) ** gamma * torch.log(pt)).mean()


def _adamw_by_hand(start=(-1.0, 1.0)):
    x = torch.tensor(start, dtype=torch.float32, requires_grad=True)
    adam = torch.optim.Adam([x], lr=0.01)
    path, losses = [x.detach().clone().numpy()], []
    for _ in range(100):
        adam.zero_grad()
        loss = (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
        loss.backward()
        with torch.no_grad():
            x.mul_(1 - 0.01 * 0.01)
        adam.step()
        path.append(x.detach().clone().numpy())
        losses.append(loss.item())
    return np.array(path), losses


def _split_randperm(dataset, train_fraction=0.8, seed=0):
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = int(train_fraction * len(dataset))
    return Subset(dataset, order[:cut]), Subset(dataset, order[cut:])


def _split_global_seed(dataset, train_fraction=0.8, seed=0):
    torch.manual_seed(seed)
    train_size = int(train_fraction * len(dataset))
    return torch.utils.data.random_split(dataset, [train_size, len(dataset) - train_size])


def _split_no_generator(dataset, train_fraction=0.8, seed=0):
    train_size = int(train_fraction * len(dataset))
    return torch.utils.data.random_split(dataset, [train_size, len(dataset) - train_size])


def _split_fractions(dataset, train_fraction=0.8, seed=0):
    return torch.utils.data.random_split(dataset, [train_fraction, 1 - train_fraction],
                                         generator=torch.Generator().manual_seed(seed))


def _split_in_order(dataset, train_fraction=0.8, seed=0):
    cut = int(train_fraction * len(dataset))
    return Subset(dataset, range(cut)), Subset(dataset, range(cut, len(dataset)))


def _split_drops_items(dataset, train_fraction=0.8, seed=0):
    n = len(dataset)
    train, val, _ = torch.utils.data.random_split(
        dataset, [int(train_fraction * n), int((1 - train_fraction) * n), n - int(train_fraction * n)
                  - int((1 - train_fraction) * n)], generator=torch.Generator().manual_seed(seed))
    return train, val


def _binary_validate(threshold_rule=None, eval_mode=True):
    def validate_binary(model, dataloader, criterion, device):
        if eval_mode:
            model.eval()
        total_loss, correct, total = 0.0, 0, 0
        with torch.inference_mode():
            for X_batch, y_batch in dataloader:
                y_pred = model(X_batch.to(device))
                total_loss += float(criterion(y_pred, y_batch.to(device)))
                correct += int((threshold_rule(y_pred) == y_batch.squeeze(1)).sum())
                total += len(y_batch)
        return total_loss / len(dataloader), correct / total
    return validate_binary


HONEST = {
    "adamw_by_hand": ("q11", "AdamW's path", lambda ns: {"run_adamw": _adamw_by_hand}),
    "split_randperm_subset": ("q12", "split_dataset", lambda ns: {"split_dataset": _split_randperm}),
    "split_global_seed": ("q12", "split_dataset", lambda ns: {"split_dataset": _split_global_seed}),
    "torchvision_image_folder": ("q14", "ImageFolderDataset", lambda ns: {"ImageFolderDataset": _torchvision_image_folder}),
    "binary_round_inference_mode": ("q13", "validate_binary", lambda ns: {"validate_binary": _binary_validate(
        lambda p: p.round().squeeze(1))}),
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_variant_passes(solved, folder, name):
    question, description, change = HONEST[name]
    with inside(folder):
        result = outcome(AID, question, description, {**solved, **change(solved)})
    assert result["passed"], result


MISTAKES = {
    "spiral_float_labels": ("q1", "XORDataset and SpiralDataset items", _float_labels, "int64"),
    "batches_computed_from_dataset_size": ("q1", "number of batches", lambda ns: {"n_batches_train": 9},
                                           "len(train_loader)"),
    "path_not_copied": ("q2", "rosenbrock and optimize_with", lambda ns: {"optimize_with": _path_not_copied}, "copy"),
    "linear_loss_axis": ("q2", "optimizer comparison figure",
                         lambda ns: {"fig_opt": _opt_figure(module(AID, "reference"), log_scale=False)}, "log"),
    "full_model_weights_only_false": ("q4", "whole-model loading", lambda ns: {"full_load_error": None},
                                      "weights_only"),
    "checkpoint_without_optimizer": ("q6", "resuming from a checkpoint",
                                     lambda ns: {"save_checkpoint": _checkpoint_without_optimizer,
                                                 "load_checkpoint": _load_without_optimizer}, "optimizer"),
    "no_zero_grad": ("q7", "train_epoch on fresh data", lambda ns: {"train_epoch": _no_zero_grad}, "zero_grad"),
    "validate_without_eval": ("q7", "validate on fresh data", lambda ns: {"validate": _validate_without_eval},
                              "eval"),
    "ignores_device": ("q8", "honour their device argument", lambda ns: {"train_epoch": _ignores_device}, "device"),
    "hard_coded_cpu": ("q8", "pick_device()", lambda ns: {"pick_device": lambda: torch.device("cpu")}, "cuda"),
    "one_hidden_layer": ("q9", "parameter count", _one_hidden_layer, "parameters"),
    "patience_off_by_one": ("q9", "history and early stopping", _patience_off_by_one, "patience"),
    "shallow_best_state": ("q9", "weights are restored", _last_weights, "shallow"),
    "learning_rate_too_small (an untrained model)": ("q9", "test accuracy", _untrained, "accuracy"),
    "train_model_ignores_device": ("q9", "train_model passes its device on",
                                   lambda ns: {"train_model": _train_model_ignores_device}, "device"),
    "focal_without_modulating_factor": ("q10", "values and gradients", lambda ns: {"focal_loss": _focal_without_factor},
                                        "gamma"),
    "focal_log_of_softmax": ("q10", "stable for large logits", lambda ns: {"focal_loss": _focal_log_of_softmax},
                             "log_softmax"),
    "adam_weight_decay": ("q11", "AdamW's path", lambda ns: {
        "run_adamw": lambda start=(-1.0, 1.0): _run_adamw(start, torch.optim.Adam)}, "decouple"),
    "adamw_notes_lr (lr=0.001)": ("q11", "AdamW's path", lambda ns: {
        "run_adamw": lambda start=(-1.0, 1.0): _run_adamw(start, lr=0.001)}, "lr=0.01"),
    "split_without_generator": ("q12", "split_dataset", lambda ns: {"split_dataset": _split_no_generator},
                                "generator"),
    "split_by_fractions": ("q12", "split_dataset", lambda ns: {"split_dataset": _split_fractions}, "int(train_fraction"),
    "split_in_order": ("q12", "split_dataset", lambda ns: {"split_dataset": _split_in_order}, "random"),
    "split_drops_items": ("q12", "split_dataset", lambda ns: {"split_dataset": _split_drops_items}, "cover"),
    "binary_argmax_accuracy": ("q13", "validate_binary", lambda ns: {"validate_binary": _binary_validate(
        lambda p: p.argmax(dim=1))}, "0.5"),
    "binary_validate_without_eval": ("q13", "validate_binary", lambda ns: {"validate_binary": _binary_validate(
        lambda p: (p > 0.5).float().squeeze(1), eval_mode=False)}, "eval"),
    "binary_model_without_sigmoid": ("q13", "binary_model gives", lambda ns: {
        "binary_model": _binary_model(module(AID, "reference"), sigmoid=False)}, "Sigmoid"),
    "binary_model_untrained": ("q13", "binary_model gives", lambda ns: {
        "binary_model": _binary_model(module(AID, "reference"), epochs=0)}, "accuracy"),
    "image_pixels_not_scaled": ("q14", "ImageFolderDataset", lambda ns: {"ImageFolderDataset": _image_folder(1.0)},
                                "255"),
    "image_channels_last": ("q14", "ImageFolderDataset", lambda ns: {
        "ImageFolderDataset": _image_folder(channels_first=False)}, "permute"),
    "image_grayscale": ("q14", "ImageFolderDataset", lambda ns: {"ImageFolderDataset": _image_folder(mode="L")},
                        "RGB"),
    "image_labels_not_sorted": ("q14", "ImageFolderDataset", lambda ns: {
        "ImageFolderDataset": _image_folder(order=lambda names: sorted(names, reverse=True))}, "sorted"),
    "image_every_file_counted (a loader that skips unreadable files)": ("q14", "ImageFolderDataset", lambda ns: {
        "ImageFolderDataset": _image_folder(suffix="")}, "png"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_fails_its_check(solved, folder, name):
    question, description, change, word = MISTAKES[name]
    namespace = _namespace(solved, question)
    namespace = {**namespace, **change(namespace)}
    with inside(folder):
        assert_fails(AID, question, description, namespace, word)


FILE_MISTAKES = [("q4", "state_dict round trip"), ("q9", "saved to best_model.pth")]


def test_every_check_has_a_mistake():
    assert not unlisted(AID, [*MISTAKES.values(), *FILE_MISTAKES], repeats=True)


def test_file_mistakes(solved, tmp_path):
    """The files a mistake writes: the whole model in model_state.pth; the last epoch in best_model.pth."""
    torch.save(solved["model_small"], tmp_path / "model_state.pth")
    with inside(tmp_path):
        assert_fails(AID, *FILE_MISTAKES[0], _namespace(solved, "q4"), "state_dict")
    torch.save(solved["run"]["last_state"], tmp_path / "best_model.pth")
    with inside(tmp_path):
        assert_fails(AID, *FILE_MISTAKES[1], solved, "best_model.pth")
