"""The reference the mnist checks compare with: the prompt's split of MNIST, MNISTNet and the
comparison's architectures, its training runs (full-batch with early stopping, full-batch for a
fixed number of epochs, mini-batches), and the grader's own small problems for `train_model` and
`train_epoch`. Imports only numpy and torch (torchvision inside `mnist_split`): hand-offs send
MNISTNet's and mnist_split's source into the sandbox."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

PATIENCE = 30
BATCH_SIZE = 64
LR = 1e-3
WEIGHT_DECAY = 1e-4
# The grader's own early-stopping problem for `train_model`: random labels, so the validation loss
# rises after a few epochs and the final weights differ from the best ones.
PROBE_EPOCHS = 60
PROBE_PATIENCE = 5
PROBE_LR = 0.01
# q3: the grader's problem for the training accuracy: a network with dropout, trained without early
# stopping; the history's training accuracies are compared with the grader's, epoch by epoch.
ACC_PROBE_ROWS = 256
ACC_PROBE_EPOCHS = 12
ACC_PROBE_DROPOUT = 0.5
# q9: the grader's own mini-batch problem for `train_epoch` (plain SGD, so every step is exact).
EPOCH_ROWS = 64
EPOCH_BATCH = 16
EPOCH_LR = 0.1


def mnist_split(root) -> dict:
    """The prompt's six tensors from the MNIST copy in `root`: the first 5000 training images, the
    next 1000 for validation and the 10,000 test images, flattened and scaled to [0, 1]."""
    from torchvision import datasets

    train = datasets.MNIST(root=root, train=True, download=True)
    test = datasets.MNIST(root=root, train=False, download=True)
    X = train.data[:6000].reshape(-1, 784).float() / 255.0
    y = train.targets[:6000].long()
    return {"X_train": X[:5000], "y_train": y[:5000], "X_val": X[5000:], "y_val": y[5000:],
            "X_test": test.data.reshape(-1, 784).float() / 255.0, "y_test": test.targets.long()}


class MNISTNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 128), nn.ReLU(),
                                 nn.Dropout(0.2), nn.Linear(128, 10))

    def forward(self, x):
        return self.net(x)


def architectures() -> dict[str, nn.Module]:
    """Phase 6's networks, built in the prompt's order (Deep is MNISTNet's layers)."""
    return {
        "Small": nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)),
        "Medium": nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10)),
        "Deep": MNISTNet().net,
    }


def probe_net() -> nn.Sequential:
    """The small network `train_model` is tried on."""
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def dropout_net() -> nn.Sequential:
    """The small network with dropout on which `train_model`'s training accuracy is checked."""
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Dropout(ACC_PROBE_DROPOUT), nn.Linear(32, 10))


def epoch_net() -> nn.Sequential:
    """The small network `train_epoch` is tried on."""
    return nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


def adam(model: nn.Module) -> optim.Adam:
    """The prompt's optimiser."""
    return optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)


def predict(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """The predicted classes, with dropout off."""
    model.eval()
    with torch.no_grad():
        return model(X).argmax(dim=1)


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy (a fraction) of `model` on (X, y), with dropout off."""
    return (predict(model, X) == y).float().mean().item()


def train_step(model, X, y, criterion, optimizer):
    """The five-step pattern on one batch, in training mode; returns the outputs and the loss."""
    model.train()
    outputs = model(X)
    loss = criterion(outputs, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return outputs, loss


def clone_state(model: nn.Module) -> dict:
    """A real snapshot of the weights: a copy of every tensor."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def eval_train_accuracy(model, outputs, X, y) -> float:
    """The training accuracy (percent) of the weights after the step, in eval() mode (dropout off)."""
    return 100 * accuracy(model, X, y)


def train_model(model, X_train, y_train, X_val, y_val, criterion, optimizer, n_epochs, patience,
                snapshot=clone_state, train_accuracy=eval_train_accuracy):
    """The prompt's `train_model`: full-batch training with early stopping on the validation loss,
    the best epoch's weights restored. Returns the history dict of the prompt.

    `snapshot(model)` takes the best weights and `train_accuracy(model, outputs, X_train, y_train)`
    the epoch's training accuracy (calibration passes realistic mistakes for both).
    """
    history = {"train_losses": [], "val_losses": [], "train_accs": [], "val_accs": []}
    best_val_loss, best_epoch, best_state = float("inf"), 0, None
    for epoch in range(n_epochs):
        outputs, loss = train_step(model, X_train, y_train, criterion, optimizer)
        history["train_losses"].append(loss.item())
        history["train_accs"].append(train_accuracy(model, outputs, X_train, y_train))
        model.eval()
        with torch.no_grad():
            val_out = model(X_val)
            val_loss = criterion(val_out, y_val).item()
        history["val_losses"].append(val_loss)
        history["val_accs"].append((val_out.argmax(dim=1) == y_val).float().mean().item() * 100)
        if val_loss < best_val_loss:
            best_val_loss, best_epoch, best_state = val_loss, epoch, snapshot(model)
        if epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    history["best_epoch"] = best_epoch
    history["best_val_loss"] = best_val_loss
    return history


def train_full_batch(model, X, y, n_epochs: int, X_val=None, y_val=None) -> list[float]:
    """Phase 6 (and the full-batch side of Phase 7): one Adam step on the whole set per epoch.
    Returns the validation accuracy (percent) after each epoch when a validation split is given."""
    criterion, optimizer = nn.CrossEntropyLoss(), adam(model)
    val_accs = []
    for _ in range(n_epochs):
        train_step(model, X, y, criterion, optimizer)
        if X_val is not None:
            val_accs.append(100 * accuracy(model, X_val, y_val))
    return val_accs


def train_epoch(model, loader, criterion, optimizer, device):
    """The prompt's `train_epoch`: one step per mini-batch of `loader` on `device`; the mean batch loss."""
    total_loss = 0.0
    for X_batch, y_batch in loader:
        _, loss = train_step(model, X_batch.to(device), y_batch.to(device), criterion, optimizer)
        total_loss += loss.item()
    return total_loss / len(loader)


def train_mini_batch(model, loader, n_epochs: int, X_val=None, y_val=None) -> list[float]:
    """Phase 7: one Adam step per batch of `loader` (BATCH_SIZE, shuffled); validation as train_full_batch."""
    criterion, optimizer = nn.CrossEntropyLoss(), adam(model)
    val_accs = []
    for _ in range(n_epochs):
        train_epoch(model, loader, criterion, optimizer, torch.device("cpu"))
        if X_val is not None:
            val_accs.append(100 * accuracy(model, X_val, y_val))
    return val_accs


def train_loader(X, y):
    """Phase 7's loader: batches of BATCH_SIZE, shuffled every epoch."""
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(X, y), batch_size=BATCH_SIZE, shuffle=True)


def reference_epoch(inputs: dict) -> tuple[list[torch.Tensor], float]:
    """The grader's epoch on `train_epoch`'s problem: one plain SGD step per batch, in order; the
    mean of the batch losses."""
    net = epoch_net()
    net.load_state_dict(inputs["init"])
    losses = []
    for start in range(0, EPOCH_ROWS, EPOCH_BATCH):
        net.zero_grad()
        loss = nn.functional.cross_entropy(net(inputs["X"][start:start + EPOCH_BATCH]),
                                           inputs["y"][start:start + EPOCH_BATCH])
        loss.backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= inputs["lr"] * p.grad
        losses.append(loss.item())
    return [p.detach() for p in net.parameters()], float(np.mean(losses))
