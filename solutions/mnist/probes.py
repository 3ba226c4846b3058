"""Probes for `mnist`, run in the student's process. Each parameter names a student variable
(`inputs` is the check's fresh inputs); the returned dict is all its verdict sees."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

from autograder.probe_tools import figure_summary, fresh_outputs, watched_run

from .reference import (ACC_PROBE_EPOCHS, EPOCH_BATCH, PROBE_EPOCHS, PROBE_LR, PROBE_PATIENCE, dropout_net, epoch_net,
                        mnist_split, probe_net)


def weights(net) -> list:
    """A network's parameters, in `net.parameters()` order."""
    return [p.detach() for p in net.parameters()]


def split(X_train_mnist, y_train_mnist, X_val_mnist, y_val_mnist, X_test_mnist, y_test_mnist, inputs) -> dict:
    """Type, dtype and shape of the six tensors; the labels; every row's sum and the grader's rows."""
    parts = {}
    for name, X, y in (("train", X_train_mnist, y_train_mnist), ("val", X_val_mnist, y_val_mnist),
                       ("test", X_test_mnist, y_test_mnist)):
        part = {"X_type": type(X).__name__, "y": y if isinstance(y, torch.Tensor) else type(y).__name__}
        if isinstance(X, torch.Tensor):
            part.update(X_dtype=str(X.dtype), X_shape=list(X.shape))
            rows = torch.as_tensor(inputs["rows_" + name])
            if X.dim() == 2 and X.shape[1] == 784 and X.shape[0] > int(rows.max()):
                part.update(row_sums=X.double().sum(dim=1), rows=X[rows])
        parts[name] = part
    return dict(parts=parts)


def fresh_model(MNISTNet, inputs) -> dict:
    """The student's class, built fresh: its size, dropout rates, weights and logits on fresh images."""
    fresh, data = fresh_outputs(MNISTNet, inputs["x"])
    return dict(data, dropouts=[float(m.p) for m in fresh.modules() if type(m).__name__ == "Dropout"],
                params=weights(fresh))


def train_function(train_model, inputs) -> dict:
    """`train_model` on the grader's small problem, where early stopping triggers."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = probe_net()
        opt = optim.Adam(net.parameters(), lr=PROBE_LR)
        history = train_model(net, inputs["X_tr"], inputs["y_tr"], inputs["X_v"], inputs["y_v"],
                              nn.CrossEntropyLoss(), opt, n_epochs=PROBE_EPOCHS, patience=PROBE_PATIENCE)
    return dict(history=history, params=weights(net))


def train_accuracy_run(train_model, inputs) -> dict:
    """`train_model` on the grader's problem with dropout, without early stopping; a copy of the
    weights after every optimizer step, so the grader can measure each epoch's training accuracy."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = dropout_net()
        opt = optim.Adam(net.parameters(), lr=PROBE_LR)
        after_steps = []
        opt.register_step_post_hook(lambda *_: after_steps.append([p.detach().clone() for p in net.parameters()]))
        history = train_model(net, inputs["X_tr"], inputs["y_tr"], inputs["X_v"], inputs["y_v"],
                              nn.CrossEntropyLoss(), opt, n_epochs=ACC_PROBE_EPOCHS, patience=ACC_PROBE_EPOCHS)
    return dict(history=history, after_steps=after_steps)


def mnist_run(history, model) -> dict:
    return dict(history=history, params=weights(model))


def evaluation(model, test_preds, test_acc, fig_cm, cm, digit_accs) -> dict:
    return dict(params=weights(model), test_preds=test_preds, test_acc=test_acc, figure=figure_summary(fig_cm),
                cm=cm, digit_accs=[float(a) for a in digit_accs])


def examples(model, test_preds, test_acc, fig_preds, correct_idx, incorrect_idx) -> dict:
    return dict(params=weights(model), test_preds=test_preds, test_acc=test_acc, figure=figure_summary(fig_preds),
                correct_idx=correct_idx, incorrect_idx=incorrect_idx)


def comparison(architectures, arch_results, fig_arch) -> dict:
    return dict(params={name: weights(net) for name, net in architectures.items()},
                results={name: {"val_hist": [float(v) for v in r["val_hist"]], "test_acc": float(r["test_acc"]),
                                "n_params": int(r["n_params"])} for name, r in arch_results.items()},
                figure=figure_summary(fig_arch))


def minibatch(train_loader, mb_model, fb_model, mb_val_accs, fb_val_accs, mb_test_acc, fb_test_acc) -> dict:
    """The loader's dataset, sampler and batch size; both models' weights and reported accuracies."""
    dataset = getattr(train_loader, "dataset", None)
    tensors = getattr(dataset, "tensors", None)
    info = {"loader": type(train_loader).__name__, "dataset": type(dataset).__name__,
            "batch_size": getattr(train_loader, "batch_size", None),
            "sampler": type(getattr(train_loader, "sampler", None)).__name__}
    if isinstance(tensors, tuple) and len(tensors) == 2 and all(isinstance(t, torch.Tensor) for t in tensors):
        X, y = tensors
        info.update(y=y, X_shape=list(X.shape), row_sums=X.double().sum(dim=1) if X.dim() == 2 else None)
    return dict(loader=info, mb_params=weights(mb_model), fb_params=weights(fb_model),
                mb_val_accs=[float(v) for v in mb_val_accs], fb_val_accs=[float(v) for v in fb_val_accs],
                mb_test_acc=float(mb_test_acc), fb_test_acc=float(fb_test_acc))


def epoch_on_meta(train_epoch) -> dict:
    """`train_epoch` with a model and a device on the meta device: every batch must be moved."""
    meta = torch.device("meta")
    with torch.random.fork_rng():
        net = epoch_net().to(meta)
    loader = DataLoader(TensorDataset(torch.zeros(32, 784), torch.zeros(32, dtype=torch.long)), batch_size=16)
    run = watched_run(lambda model, criterion: train_epoch(model, loader, criterion,
                                                           torch.optim.SGD(model.parameters(), lr=0.1), meta),
                      net, F.cross_entropy)
    return dict(meta=run)


def epoch_steps(train_epoch, inputs) -> dict:
    """`train_epoch` on the grader's weights and batches, with plain SGD."""
    with torch.random.fork_rng():
        net = epoch_net()
        net.load_state_dict(inputs["init"])
        loader = DataLoader(TensorDataset(inputs["X"], inputs["y"]), batch_size=EPOCH_BATCH, shuffle=False)
        opt = torch.optim.SGD(net.parameters(), lr=float(inputs["lr"]))
        loss = train_epoch(net, loader, nn.CrossEntropyLoss(), opt, torch.device("cpu"))
    return dict(loss=loss.detach() if isinstance(loss, torch.Tensor) else loss, params=weights(net))


def load_split() -> dict:
    """Hand-off after q1: the prompt's six tensors, loaded from the repository's datasets/ folder."""
    root = next(p / "datasets" for p in [Path.cwd(), *Path.cwd().parents] if (p / "datasets").is_dir())
    return {f"{name}_mnist": tensor for name, tensor in mnist_split(root).items()}
