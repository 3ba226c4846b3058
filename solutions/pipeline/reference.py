"""The reference the pipeline checks compare with: the prompt's datasets, Rosenbrock optimisation,
Classifier, epoch functions, early-stopping training and focal loss, and the small networks the
probes try the student's functions on. Imports only the standard library, numpy and torch:
hand-offs send the datasets and the epoch functions into the sandbox by their own source."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

PATIENCE = 10
BATCH_SIZE = 16  # the batches of the grader's train_epoch / validate data
# The optimizers compared on the Rosenbrock function: name, torch.optim class name, lr, settings.
OPTIMIZERS = (("sgd", "SGD", 1e-3, {}), ("momentum", "SGD", 1e-3, {"momentum": 0.9}),
              ("adam", "Adam", 1e-2, {}), ("rmsprop", "RMSprop", 1e-2, {}))
ADAMW = ("adamw", "AdamW", 1e-2, {"weight_decay": 0.01})  # the notes' fifth optimizer, at Adam's lr
# The repository's data folder. Installed in a notebook, the datasets use the notebook's DATA_ROOT.
DATA_ROOT = Path(__file__).resolve().parents[2] / "datasets"


# -- Part 1: datasets (the q1 hand-off) ----------------------------------------------------------
class XORDataset(Dataset):
    def __init__(self, path=DATA_ROOT / "xor.csv"):
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32)
        self.X = torch.from_numpy(table[:, :2].copy())
        self.y = torch.from_numpy(table[:, 2:3].copy())

    def __len__(self):
        return len(self.X)

    def __getitem__(self, idx):
        return self.X[idx], self.y[idx]


class SpiralDataset(Dataset):
    def __init__(self, split, path=DATA_ROOT / "spiral.csv"):
        table = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
        rows = table[table["split"] == split]
        self.X = torch.tensor(np.stack([rows["x1"], rows["x2"]], axis=1), dtype=torch.float32)
        self.y = torch.tensor(rows["label"].astype(np.int64))

    def __len__(self):
        return len(self.X)

    def __getitem__(self, idx):
        return self.X[idx], self.y[idx]


# -- Part 2: optimizers on the Rosenbrock function ---------------------------------------------------
def rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def optimize_with(optimizer_class, lr, start=(-1.0, 1.0), n_steps=100, function=rosenbrock, **kwargs):
    """The prompt's loop; `function` lets calibration try equivalent ways of writing rosenbrock."""
    x = torch.tensor(start, dtype=torch.float32, requires_grad=True)
    optimizer = optimizer_class([x], lr=lr, **kwargs)
    path, losses = [x.detach().clone().numpy()], []
    for _ in range(n_steps):
        optimizer.zero_grad()
        loss = function(x[0], x[1])
        loss.backward()
        optimizer.step()
        path.append(x.detach().clone().numpy())
        losses.append(loss.item())
    return np.array(path), losses


# -- Parts 3-4: small networks the probes try the student's code on -----------------------------------
def small_net() -> nn.Sequential:
    """The state_dict round trip's model."""
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 1))


def ck_net() -> nn.Sequential:
    """The network trained around a checkpoint."""
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def te_net() -> nn.Sequential:
    """The network train_epoch is tried on."""
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 3))


def val_net() -> nn.Sequential:
    """The network validate is tried on (with dropout, to see model.eval())."""
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))


def loaded(model: nn.Module, state: dict) -> nn.Module:
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    return model


def mse_steps(net, optimizer, X, y, n) -> None:
    """`n` full-batch steps of the mean squared error (the checkpoint part's training)."""
    for _ in range(n):
        optimizer.zero_grad()
        F.mse_loss(net(X), y).backward()
        optimizer.step()


def checkpoint_rerun(inputs: dict) -> list[np.ndarray]:
    """The uninterrupted run of the checkpoint check: 2k Adam steps from `init_a`."""
    net = loaded(ck_net(), inputs["init_a"])
    mse_steps(net, torch.optim.Adam(net.parameters(), lr=inputs["lr"]), inputs["X"], inputs["y"], 2 * inputs["k"])
    return [p.detach().numpy().copy() for p in net.parameters()]


def batches(X, y, batch_size=BATCH_SIZE) -> list:
    """What DataLoader(TensorDataset(X, y), batch_size, shuffle=False) gives, as a list."""
    return [(X[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(X), batch_size)]


# -- Part 5: the training pipeline (train_epoch, validate, pick_device: the q8 hand-off) ---------
class Classifier(nn.Module):
    """Reference architecture of Part 4: (N, 2) -> logits (N, 3)."""

    def __init__(self, input_size=2, hidden_sizes=(64, 32), output_size=3):
        super().__init__()
        layers, prev = [], input_size
        for size in hidden_sizes:
            layers += [nn.Linear(prev, size), nn.ReLU(), nn.Dropout(0.2)]
            prev = size
        layers.append(nn.Linear(prev, output_size))
        self.network = nn.Sequential(*layers)

    def forward(self, x):
        return self.network(x)


def train_epoch(model, dataloader, criterion, optimizer, device):
    model.train()
    total_loss = 0.0
    for X_batch, y_batch in dataloader:
        X_batch, y_batch = X_batch.to(device), y_batch.to(device)
        y_pred = model(X_batch)
        loss = criterion(y_pred, y_batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    return total_loss / len(dataloader)


def validate(model, dataloader, criterion, device, threshold=None):
    """The notes' validate: (mean batch loss, accuracy) with dropout off and no gradients. The predicted
    class is the argmax of the logits; for one sigmoid output (the notes' binary classifier, q13), pass
    `threshold=0.5`: the class is whether the probability exceeds it."""
    model.eval()
    total_loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for X_batch, y_batch in dataloader:
            X_batch, y_batch = X_batch.to(device), y_batch.to(device)
            y_pred = model(X_batch)
            total_loss += criterion(y_pred, y_batch).item()
            predicted = y_pred.argmax(dim=1) if threshold is None else (y_pred > threshold).float()
            correct += (predicted == y_batch).sum().item()
            total += y_batch.size(0)
    return total_loss / len(dataloader), correct / total


def pick_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def early_stopping(model, train_loader, val_loader, criterion, optimizer, epochs, device,
                   patience=PATIENCE, best_path=None) -> tuple[dict, dict]:
    """The prompt's early-stopping loop: (history, best_state); the model keeps the last epoch's
    weights. The best weights are saved to `best_path` unless it is None."""
    history = {"train_loss": [], "val_loss": [], "val_acc": []}
    best_val_loss, best_state, patience_counter = float("inf"), None, 0
    for _ in range(epochs):
        history["train_loss"].append(train_epoch(model, train_loader, criterion, optimizer, device))
        val_loss, val_acc = validate(model, val_loader, criterion, device)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
        if val_loss < best_val_loss:
            best_val_loss, patience_counter = val_loss, 0
            if best_path is not None:
                torch.save(model.state_dict(), best_path)
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            patience_counter += 1
            if patience_counter >= patience:
                break
    return history, best_state


def train_model(model, train_loader, val_loader, criterion, optimizer, epochs, device,
                patience=PATIENCE, best_path="best_model.pth"):
    """The prompt's train_model: early stopping, the best weights saved and restored; the history."""
    history, best_state = early_stopping(model, train_loader, val_loader, criterion, optimizer, epochs, device,
                                         patience, best_path)
    model.load_state_dict(best_state)
    return history


def spiral_run(ref: dict, seed: int, max_epochs: int, lr: float = 0.01, best_path=None) -> dict:
    """The prompt's Part 5 run on the spiral split `ref` ({split: (X, y)}): Classifier 2-64-32-3,
    Adam(lr), batches of 32 shuffled, the whole validation split as one batch. The process's torch
    generator is left as it was. `model` ends with the best weights; `last_state` is the last epoch's."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        train_loader = DataLoader(TensorDataset(*ref["train"]), batch_size=32, shuffle=True)
        val_loader = DataLoader(TensorDataset(*ref["val"]), batch_size=len(ref["val"][1]), shuffle=False)
        model = Classifier()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        history, best_state = early_stopping(model, train_loader, val_loader, nn.CrossEntropyLoss(), optimizer,
                                             max_epochs, torch.device("cpu"), best_path=best_path)
    finally:
        torch.random.set_rng_state(generator_state)
    last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return {"model": model.eval(), "history": history, "best_state": best_state, "last_state": last_state,
            "optimizer": optimizer}


# -- Part 6: focal loss ---------------------------------------------------------------------------
def focal_loss(logits, targets, gamma=2.0):
    log_pt = F.log_softmax(logits, dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)
    return (-(1 - log_pt.exp()) ** gamma * log_pt).mean()


# -- Part 6: more from the notes ------------------------------------------------------------------
def split_dataset(dataset, train_fraction=0.8, seed=0):
    """The notes' random_split (the q12 hand-off): int(fraction * n) items for training, the rest
    for validation, shuffled by a generator seeded with `seed`."""
    train_size = int(train_fraction * len(dataset))
    val_size = len(dataset) - train_size
    generator = torch.Generator().manual_seed(seed)
    return random_split(dataset, [train_size, val_size], generator=generator)


def split_indices(n: int, train_fraction: float, seed: int) -> tuple[list, list]:
    """The dataset indices split_dataset puts in each part of a data set of `n` items."""
    train, val = split_dataset(TensorDataset(torch.arange(n)), train_fraction, seed)
    return list(train.indices), list(val.indices)


def bin_net() -> nn.Sequential:
    """The network validate_binary is tried on (dropout, to see model.eval(); a sigmoid output)."""
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1), nn.Sigmoid())


def simple_labels(X: torch.Tensor) -> torch.Tensor:
    """The notes' SimpleDataset target: 1.0 where the features sum to more than 0, as (N, 1) floats."""
    return (X.sum(dim=1, keepdim=True) > 0).float()
