"""Calibrate the `mnist` thresholds: train what the solution trains, over many torch seeds.

    nice -n 10 python tools/calibrate_mnist.py --seeds 20 --max-epochs 100 --comparison-epochs 40 \
        --minibatch-epochs 3

For each seed it reports the grader-measured test accuracy of
  - MNISTNet trained full-batch with early stopping (patience 30, at most --max-epochs epochs),
  - the three architectures of the comparison after --comparison-epochs full-batch epochs,
  - MNISTNet after --minibatch-epochs epochs of mini-batches (batch 64, shuffled) and after the
    same number of full-batch epochs,
then min / mean / max over seeds. Runs on one thread, like one grading job per core.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from autograder.data import DATA_DIR, prepare  # noqa: E402


def load():
    import torchvision

    prepare()
    train = torchvision.datasets.MNIST(root=DATA_DIR, train=True, download=True)
    test = torchvision.datasets.MNIST(root=DATA_DIR, train=False, download=True)
    X = train.data[:6000].reshape(-1, 784).float() / 255.0
    y = train.targets[:6000].long()
    X_test = test.data.reshape(-1, 784).float() / 255.0
    return X[:5000], y[:5000], X[5000:], y[5000:], X_test, test.targets.long()


def deep():
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 128), nn.ReLU(),
                         nn.Dropout(0.2), nn.Linear(128, 10))


def architectures():
    return {
        "small": nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)),
        "medium": nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10)),
        "deep": deep(),
    }


def accuracy(model, X, y):
    model.eval()
    with torch.no_grad():
        return (model(X).argmax(dim=1) == y).float().mean().item()


def early_stopping(model, Xtr, ytr, Xv, yv, n_epochs, patience=30):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    best, best_epoch, best_state = float("inf"), 0, None
    for epoch in range(n_epochs):
        model.train()
        loss = criterion(model(Xtr), ytr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            val = criterion(model(Xv), yv).item()
        if val < best:
            best, best_epoch = val, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return epoch + 1, best_epoch


def full_batch(model, Xtr, ytr, n_epochs):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(n_epochs):
        model.train()
        loss = criterion(model(Xtr), ytr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def mini_batch(model, Xtr, ytr, n_epochs, batch_size=64):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = DataLoader(TensorDataset(Xtr, ytr), batch_size=batch_size, shuffle=True)
    for _ in range(n_epochs):
        model.train()
        for xb, yb in loader:
            loss = criterion(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--comparison-epochs", type=int, default=40)
    parser.add_argument("--minibatch-epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    Xtr, ytr, Xv, yv, Xte, yte = load()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row = {}
        times = {}
        torch.manual_seed(seed)
        t = time.perf_counter()
        model = deep()
        row["epochs_run"], row["best_epoch"] = early_stopping(model, Xtr, ytr, Xv, yv, args.max_epochs)
        row["early_stopping"] = accuracy(model, Xte, yte)
        times["early"] = time.perf_counter() - t
        t = time.perf_counter()
        for name, net in architectures().items():
            full_batch(net, Xtr, ytr, args.comparison_epochs)
            row[name] = accuracy(net, Xte, yte)
        times["comparison"] = time.perf_counter() - t
        t = time.perf_counter()
        model = deep()
        mini_batch(model, Xtr, ytr, args.minibatch_epochs)
        row["minibatch"] = accuracy(model, Xte, yte)
        model = deep()
        full_batch(model, Xtr, ytr, args.minibatch_epochs)
        row["fullbatch_same_epochs"] = accuracy(model, Xte, yte)
        times["minibatch"] = time.perf_counter() - t
        rows.append(row)
        print(f"seed {seed:3d}: " + " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in row.items())
              + " | seconds " + " ".join(f"{k}={v:.1f}" for k, v in times.items()), flush=True)
    print(f"\n{len(rows)} seeds, budget: max_epochs={args.max_epochs} comparison_epochs={args.comparison_epochs} "
          f"minibatch_epochs={args.minibatch_epochs}")
    for key in rows[0]:
        values = np.array([r[key] for r in rows], dtype=float)
        print(f"{key:>22s}: min {values.min():.4f}  mean {values.mean():.4f}  max {values.max():.4f}")
    gaps = np.array([r["minibatch"] - r["fullbatch_same_epochs"] for r in rows])
    print(f"{'minibatch - fullbatch':>22s}: min {gaps.min():.4f}  mean {gaps.mean():.4f}  max {gaps.max():.4f}")


if __name__ == "__main__":
    main()
