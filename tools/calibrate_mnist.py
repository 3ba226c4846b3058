"""Calibrate the `mnist` thresholds: train what the solution trains, over many torch seeds.

    nice -n 10 python tools/calibrate_mnist.py --seeds 20 --max-epochs 100 --comparison-epochs 40 \
        --minibatch-epochs 3

For each seed it reports the grader-measured test accuracy of
  - MNISTNet trained full-batch with early stopping (patience 30, at most --max-epochs epochs),
  - the three architectures of the comparison after --comparison-epochs full-batch epochs,
  - MNISTNet after --minibatch-epochs epochs of mini-batches (batch 64, shuffled) and after the
    same number of full-batch epochs,
then min / mean / max over seeds. Runs on one thread, like one grading job per core.

    nice -n 10 python tools/calibrate_mnist.py --tolerances 10

measures instead, for every numeric tolerance of solutions/mnist/checks.py, the largest distance
among correct ways of writing the answer and the smallest among the nearest realistic mistakes
(the numbers behind the tolerance comments in checks.py).
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



# -- tolerances (python tools/calibrate_mnist.py --tolerances) -----------------------------------
# For each numeric tolerance of solutions/mnist/checks.py: the largest distance among correct ways
# of writing the answer and the smallest among the nearest realistic mistakes. Cheap: the training
# problems are the grader's small probe problems, and one short MNIST run per seed.

def _checks():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "solutions" / "mnist" / "checks.py"
    spec = importlib.util.spec_from_file_location("mnist_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Ctx:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)


def _epoch_variants(inp, threads):
    """Student train_epoch variants on the grader's q9 problem: (name, params, loss, correct?)."""
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    out = []
    for name, correct in (("solution", True), ("functional+tensor sum", True), ("no zero_grad", False),
                          ("last batch loss", False), ("momentum 0.9", False), ("batch of 32", False)):
        net = nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
        net.load_state_dict(inp["init"])
        batch = 32 if name == "batch of 32" else 16
        opt = optim.SGD(net.parameters(), lr=inp["lr"], momentum=0.9 if name == "momentum 0.9" else 0.0)
        total = torch.zeros(()) if name == "functional+tensor sum" else 0.0
        batches = 0
        for start in range(0, 64, batch):
            X, y = inp["X"][start:start + batch], inp["y"][start:start + batch]
            loss = F.cross_entropy(net(X), y) if name == "functional+tensor sum" else nn.CrossEntropyLoss()(net(X), y)
            if name != "no zero_grad":
                opt.zero_grad()
            loss.backward()
            opt.step()
            total = total + (loss.detach() if isinstance(total, torch.Tensor) else loss.item())
            batches += 1
        mean = float(total / batches) if name != "last batch loss" else loss.item()
        out.append((name, [p.detach().clone() for p in net.parameters()], mean, correct))
    torch.set_num_threads(1)
    return out


def _probe_problem_runs(seed):
    """The q3 probe problem with correct and wrong snapshots: |restored loss - min val loss|."""
    import copy

    ctx = _Ctx(seed)
    checks = _checks()
    inp = checks.inputs_noise(ctx)
    out = {}
    for kind in ("clone", "deepcopy", "shallow", "snapshot one epoch late"):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
        opt = optim.Adam(net.parameters(), lr=checks.PROBE_LR)
        crit = nn.CrossEntropyLoss()
        best, best_epoch, state, val_losses, pending = float("inf"), 0, None, [], False
        for epoch in range(checks.PROBE_EPOCHS):
            net.train()
            loss = crit(net(inp["X_tr"]), inp["y_tr"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if pending:
                state, pending = {k: v.clone() for k, v in net.state_dict().items()}, False
            net.eval()
            with torch.no_grad():
                val = crit(net(inp["X_v"]), inp["y_v"]).item()
            val_losses.append(val)
            if val < best:
                best, best_epoch = val, epoch
                if kind == "clone":
                    state = {k: v.clone() for k, v in net.state_dict().items()}
                elif kind == "deepcopy":
                    state = copy.deepcopy(net.state_dict())
                elif kind == "shallow":
                    state = net.state_dict().copy()
                else:
                    pending = True
            if epoch - best_epoch >= checks.PROBE_PATIENCE:
                break
        if state is not None:
            net.load_state_dict(state)
        with torch.no_grad():
            restored = crit(net(inp["X_v"]), inp["y_v"]).item()
        out[kind] = abs(restored - min(val_losses)) / max(1.0, min(val_losses))
    return out


def tolerances(n_seeds: int) -> None:
    checks = _checks()
    Xtr, ytr, Xv, yv, Xte, yte = load()
    train = __import__("torchvision").datasets.MNIST(root=DATA_DIR, train=True, download=True)
    raw = train.data[:6000].reshape(-1, 784)
    ref_sums = (raw.float() / 255.0).double().sum(dim=1)
    rows = {}

    def note(key, correct, value):
        worst = rows.setdefault(key, {"correct": 0.0, "mistake": float("inf")})
        if correct:
            worst["correct"] = max(worst["correct"], float(value))
        else:
            worst["mistake"] = min(worst["mistake"], float(value))

    # q1: row sums (relative, as np.allclose rtol) and single pixels
    for name, X, correct in (("div(255)", raw.float().div(255), True), ("* (1/255)", raw.float() * (1 / 255), True),
                             ("to(float64)/255 -> float32", (raw.double() / 255).float(), True),
                             ("/ 256", raw.float() / 256, False), ("/ 255 - 0.5", raw.float() / 255 - 0.5, False)):
        sums = X.double().sum(dim=1)
        note("q1 row sums |diff| - 1e-5*|ref| (atol 1e-3)", correct,
             (sums - ref_sums).abs().sub(1e-5 * ref_sums.abs()).max().item())
        note("q1 pixel |diff| (atol 1e-6)", correct, (X - raw.float() / 255.0).abs().max().item())

    for seed in range(n_seeds):
        # q9: the grader's epoch against student variants, on 1 and 2 threads
        inp = checks.inputs_epoch(_Ctx(seed))
        ref_params, ref_loss = checks.reference_epoch(inp)
        for threads in (1, 2):
            for name, params, loss, correct in _epoch_variants(inp, threads):
                dist = max(max((a - b).abs().max().item() for a, b in zip(params, ref_params)), abs(loss - ref_loss))
                note("q9 EPOCH_TOLERANCE: max |weight diff|, |loss diff|", correct, dist)
        # q3: the probe problem's restored weights
        for kind, dist in _probe_problem_runs(seed).items():
            note("q3 probe: |restored - min val loss| / max(1, min) (1e-5)", kind in ("clone", "deepcopy"), dist)

    # q3 MNIST run, q4/q6/q7 accuracies and predictions: a short Deep run per seed
    for seed in range(min(n_seeds, 3)):
        torch.manual_seed(seed)
        model = deep()
        criterion = nn.CrossEntropyLoss()
        opt = optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
        val_losses, states = [], []
        for _ in range(30):
            model.train()
            loss = criterion(model(Xtr), ytr)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.eval()
            with torch.no_grad():
                val_losses.append(criterion(model(Xv), yv).item())
            states.append({k: v.clone() for k, v in model.state_dict().items()})
        best = int(np.argmin(val_losses))
        model.load_state_dict(states[best])
        model.eval()
        with torch.no_grad():
            restored = criterion(model(Xv), yv).item()
            preds1 = model(Xte).argmax(1)
            torch.set_num_threads(2)
            preds2 = model(Xte).argmax(1)
            restored2 = criterion(model(Xv), yv).item()
            torch.set_num_threads(1)
            model.train()
            torch.manual_seed(seed + 100)
            preds_dropout = model(Xte).argmax(1)
            val_dropout = (model(Xv).argmax(1) == yv).float().mean().item()
            model.eval()
        val_acc = (model(Xv).argmax(1) == yv).float().mean().item()
        test_acc = (preds1 == yte).float().mean().item()
        note("q3 MNIST: |restored - min val loss| / max(1, min) (1e-4)", True,
             max(abs(restored - val_losses[best]), abs(restored2 - val_losses[best])))
        if best > 0:
            note("q3 MNIST: |restored - min val loss| / max(1, min) (1e-4)", False,
                 abs(val_losses[best - 1] - val_losses[best]))
        note("PRED_TOLERANCE: test predictions that differ (10)", True, int((preds1 != preds2).sum()))
        note("PRED_TOLERANCE: test predictions that differ (10)", False, int((preds1 != preds_dropout).sum()))
        note("ACC_TOLERANCE: |reported - measured| in points (0.15)", True,
             100 * abs((preds2 == yte).float().mean().item() - test_acc))
        note("ACC_TOLERANCE: |reported - measured| in points (0.15)", False, 100 * abs(val_dropout - val_acc))
        note("ACC_TOLERANCE: |reported - measured| in points (0.15)", False, 100 * abs(val_acc - test_acc))
        note("q4 test_acc |diff| (1e-3)", True, abs(100 * test_acc - 100 * np.mean((preds1 == yte).numpy())))
        note("q4 test_acc |diff| (1e-3)", False, 100 * abs((preds_dropout == yte).float().mean().item() - test_acc))
        note("q4 test_acc |diff| (1e-3)", False, abs(test_acc - 100 * test_acc))  # a fraction, not percent
        cm = np.zeros((10, 10), dtype=np.int64)
        np.add.at(cm, (yte.numpy(), preds1.numpy()), 1)
        recall = 100 * np.diag(cm) / cm.sum(axis=1)
        note("q4 digit_accs (atol 1e-6)", True, np.abs(100 * (np.diag(cm) / cm.sum(axis=1)) - recall).max())
        note("q4 digit_accs (atol 1e-6)", False, np.abs(100 * np.diag(cm) / cm.sum(axis=0) - recall).max())
    print(f"\n{'tolerance':62s} {'largest correct':>16s} {'smallest mistake':>17s}")
    for key, row in rows.items():
        print(f"{key:62s} {row['correct']:16.3g} {row['mistake']:17.3g}")


if __name__ == "__main__" and "--tolerances" in sys.argv:
    torch.set_num_threads(1)
    tolerances(int(sys.argv[sys.argv.index("--tolerances") + 1]) if len(sys.argv) > sys.argv.index("--tolerances") + 1
               else 10)
    sys.exit(0)


if __name__ == "__main__":
    main()
