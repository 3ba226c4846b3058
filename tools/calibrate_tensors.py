"""Calibrate the `tensors` thresholds over many torch seeds (run with `nice -n 10`).

    python tools/calibrate_tensors.py [n_seeds]

1. Question 8 (nn.Sequential 2-8-1 ReLU, Adam lr 0.01, 1000 epochs, MSE on 0/1 XOR targets):
   the largest |prediction - target| over the four XOR points, per seed.
2. Question 10 (ReLU XOR, hidden sizes 2/4/8/16, SGD lr 0.1, 500 epochs): the final MSE per
   seed, to show that "converged" (final loss below 0.01) sits in a wide gap between the two
   kinds of outcome (a solved XOR and a network stuck with dead ReLUs).
3. The comparison tolerances of checks.py (`python tools/calibrate_tensors.py tolerances [n_draws]`):
   for each, the largest distance among correct answers (the solution and the honest variants of
   tests/submissions/tensors.yml, re-implemented here) and the smallest among the nearest realistic
   mistakes, over many draws of the check's inputs, in units of the tolerance (a check fails above 1).
"""
from __future__ import annotations

import importlib.util
import math
import sys
from functools import lru_cache
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(1)
X = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = torch.tensor([[0.0], [1.0], [1.0], [0.0]])


def sequential_xor(seed: int) -> float:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.MSELoss()
    for _ in range(1000):
        loss = loss_fn(model(X), Y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (model(X) - Y).abs().max().item()


def relu_xor(hidden: int, seed: int, epochs: int = 500) -> float:
    """The grader's own run of Exercise 29.5 (solutions/tensors/checks.py), so both agree by construction."""
    return _checks().relu_xor_loss(hidden, seed, epochs)


@lru_cache(maxsize=1)
def _checks():
    path = Path(__file__).resolve().parents[1] / "solutions" / "tensors" / "checks.py"
    sys.path.insert(0, str(path.parents[2]))
    spec = importlib.util.spec_from_file_location("tensors_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(n_seeds: int = 30) -> None:
    start = time.time()
    seeds = list(range(n_seeds))
    errors = np.array([sequential_xor(s) for s in seeds])
    solved = errors[errors < 0.25]
    print(f"Q8: {n_seeds} seeds, max |pred - target|: min {errors.min():.2e} mean {errors.mean():.3f} "
          f"max {errors.max():.3f}; solved (< 0.25) {solved.size}/{n_seeds}, largest solved error "
          f"{solved.max():.2e}; seed 42: {sequential_xor(42):.2e}")
    print("    stuck seeds:", {s: round(float(e), 3) for s, e in zip(seeds, errors) if e >= 0.25})
    for hidden in (2, 4, 8, 16):
        losses = np.array([relu_xor(hidden, s) for s in seeds])
        low, high = losses[losses < 0.01], losses[losses >= 0.01]
        print(f"Q10: hidden {hidden:2d}: converged {low.size}/{n_seeds}; largest converged loss "
              f"{low.max() if low.size else float('nan'):.2e}; smallest stuck loss "
              f"{high.min() if high.size else float('nan'):.3f}")
    print(f"{time.time() - start:.0f} s")


# -- 3. tolerances -------------------------------------------------------------------------------
class _Ctx:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng([0, seed])
        self.budget = {"n_seeds": 5, "relu_xor_epochs": 500}


def _excess(values, truth, rtol: float, atol: float) -> float:
    """max |v - t| / (atol + rtol |t|): the check passes exactly when this is <= 1 (np.allclose)."""
    values, truth = np.asarray(values, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return float(np.max(np.abs(values - truth) / (atol + rtol * np.abs(truth))))


def _f_prime_autograd(x0, dtype, form="exp", use_grad=False):
    x = torch.tensor(float(x0), dtype=dtype, requires_grad=True)
    if form == "exp":
        f = torch.exp(2 * x) / (1 + torch.exp(2 * x)) ** 2
    else:
        s = torch.sigmoid(2 * x)
        f = s * (1 - s)
    if use_grad:
        return torch.autograd.grad(f, x)[0].item()
    f.backward()
    return x.grad.item()


def _grad_f(x0, y0, swapped=False):
    x = torch.tensor(float(x0), requires_grad=True)
    y = torch.tensor(float(y0), requires_grad=True)
    ((x + y) * y).backward()
    return (y.grad.item(), x.grad.item()) if swapped else (x.grad.item(), y.grad.item())


def _accumulation(theta0, reset=True):
    theta = torch.tensor(float(theta0), requires_grad=True)
    (theta ** 3).backward()
    first = theta.grad.item()
    (theta ** 3).backward()
    second = theta.grad.item()
    if reset:
        theta.grad = None
    (theta ** 3).backward()
    return first, second, theta.grad.item()


def _relu_student(hidden, seed, epochs, reading="after", reseed=True):
    checks = _checks()
    X, Y, _ = checks._xor()
    if reseed:
        torch.manual_seed(seed)
    model = checks.ReLUXORNet(hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(epochs):
        loss = ((model(X) - Y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if reading == "last":
        return loss.item()
    with torch.no_grad():
        return ((model(X) - Y) ** 2).mean().item()


def tolerances(n_draws: int = 500) -> None:
    checks = _checks()
    rows = {}

    def record(name, kind, value):
        low, high = rows.setdefault(name, {}).get(kind, (np.inf, -np.inf))
        rows[name][kind] = (min(low, value), max(high, value))

    for draw in range(n_draws):
        ctx = _Ctx(draw)
        # q6: rtol 1e-6, atol 1e-9 against the float64 truth, at inputs_xs's points
        xs = checks.inputs_xs(ctx)["xs"]
        truth = [checks._f_prime(x) for x in xs]
        for label, kwargs in (("solution (exp, float64)", {}), ("sigmoid form, float64", {"form": "sigmoid"}),
                              ("torch.autograd.grad, float64", {"use_grad": True})):
            record("q6 autograd (rtol 1e-6, atol 1e-9)", "correct",
                   _excess([_f_prime_autograd(x, torch.float64, **kwargs) for x in xs], truth, 1e-6, 1e-9))
        f32 = [_f_prime_autograd(x, torch.float32) for x in xs]
        record("q6 autograd (rtol 1e-6, atol 1e-9)", "mistake", _excess(f32, truth, 1e-6, 1e-9))
        record("q6 float32 'close' message (rtol 1e-3, atol 1e-6)", "mistake", _excess(f32, truth, 1e-3, 1e-6))
        analytic = [2 * s * (1 - s) * (1 - 2 * s) for s in (1 / (1 + math.exp(-2 * x)) for x in xs)]
        record("q6 analytic (rtol 1e-6, atol 1e-9)", "correct", _excess(analytic, truth, 1e-6, 1e-9))
        record("q6 analytic (rtol 1e-6, atol 1e-9)", "mistake", _excess([2 * a for a in analytic], truth, 1e-6, 1e-9))
        # q3: rtol 1e-4, atol 1e-6
        points = checks.inputs_points(ctx)["points"]
        fx = np.array([[y, x + 2 * y] for x, y in points])
        record("q3 grad_f (rtol 1e-4, atol 1e-6)", "correct", _excess([_grad_f(x, y) for x, y in points], fx, 1e-4, 1e-6))
        record("q3 grad_f (rtol 1e-4, atol 1e-6)", "mistake",
               _excess([_grad_f(x, y, swapped=True) for x, y in points], fx, 1e-4, 1e-6))
        # q5: rtol 1e-4, atol 1e-6 on the third gradient
        thetas = checks.inputs_thetas(ctx)["thetas"]
        one = [3 * t ** 2 for t in thetas]
        record("q5 accumulation (rtol 1e-4, atol 1e-6)", "correct",
               _excess([_accumulation(t)[2] for t in thetas], one, 1e-4, 1e-6))
        record("q5 accumulation (rtol 1e-4, atol 1e-6)", "mistake",
               _excess([_accumulation(t, reset=False)[2] for t in thetas], one, 1e-4, 1e-6))
        if draw < min(n_draws, 60):  # q10.1: each run trains a network; fewer draws
            wrong_excess = []
            torch.manual_seed(draw)  # the not-reseeded mistake continues whatever stream came before
            for args in checks.inputs_relu_run(ctx)["runs"]:
                after, last = checks.relu_xor_losses(*args)
                for reading in ("after", "last"):
                    mine = _relu_student(*args, reading=reading)
                    record("q10.1 train_relu_xor (rtol 1e-3, atol 1e-5, either reading)", "correct",
                           min(_excess(mine, after, 1e-3, 1e-5), _excess(mine, last, 1e-3, 1e-5)))
                wrong = _relu_student(*args, reseed=False)
                wrong_excess.append(min(_excess(wrong, after, 1e-3, 1e-5), _excess(wrong, last, 1e-3, 1e-5)))
            # the check fails when either of its two runs misses
            record("q10.1 train_relu_xor (rtol 1e-3, atol 1e-5, either reading)", "mistake", max(wrong_excess))
    print(f"{n_draws} draws of each check's inputs; distance in units of the tolerance (a check fails above 1)")
    print("| tolerance | largest correct | smallest mistake | margin (mistake / correct) |")
    print("|---|---|---|---|")
    for name, kinds in rows.items():
        correct = kinds.get("correct", (np.nan, np.nan))[1]
        mistake = kinds.get("mistake", (np.nan, np.nan))[0]
        print(f"| {name} | {correct:.3g} | {mistake:.3g} | {mistake / correct if correct else np.inf:.3g} |")


def recomputed() -> None:
    """Checks that recompute the student's own computation: the distance of a correct answer
    (another idiom, same arithmetic) and of the nearest mistake, in units of the tolerance."""
    checks = _checks()
    ref = checks.reference(None)
    # q4: loss (relative 1e-5), gradients (atol 1e-5, rtol 1e-4): the sum-not-mean mistake scales by 8
    lin = ref["linear"]
    print(f"q4 loss: sum-not-mean mistake off by {abs(8 * lin['loss'] - lin['loss']) / (1e-5 * max(1, lin['loss'])):.3g} tolerances")
    print(f"q4 W.grad: sum-not-mean mistake off by {_excess(8 * lin['W_grad'], lin['W_grad'], 1e-4, 1e-5):.3g} tolerances")
    # q7: the module_idioms variant (nn.Tanh module, p.grad = None) against the reference run
    X, _, Yt = checks._xor()
    torch.manual_seed(42)
    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1), nn.Tanh())
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    losses, stale = [], []
    for _ in range(500):
        loss = ((net(X) - Yt) ** 2).mean()
        for p in net.parameters():
            p.grad = None
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"q7 losses (rtol 1e-3, atol 1e-5): variant {_excess(losses, ref['xornet']['losses'], 1e-3, 1e-5):.3g}")
    torch.manual_seed(42)
    net = checks.XORNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(500):  # the never-zeroed mistake
        loss = ((net(X) - Yt) ** 2).mean()
        loss.backward()
        opt.step()
        stale.append(loss.item())
    print(f"q7 losses: never-zeroed mistake {_excess(stale, ref['xornet']['losses'], 1e-3, 1e-5):.3g}")
    # q9, q11: outputs recomputed from the same weights (atol 1e-5, rtol 1e-4)
    rng = np.random.default_rng(0)
    worst, wrong = 0.0, np.inf
    for _ in range(200):
        block = nn.ModuleDict({"fc1": nn.Linear(8, 16), "fc2": nn.Linear(16, 8)})
        x = torch.from_numpy(rng.normal(size=(16, 8)).astype(np.float32))
        state = {f"{k}.{n}": v.detach() for k, m in block.items() for n, v in m.state_dict().items()}
        with torch.no_grad():
            mine = nn.ReLU()(block["fc2"](nn.ReLU()(block["fc1"](x)))) + x
            inside = torch.relu(block["fc2"](torch.relu(block["fc1"](x))) + x)
        truth = checks._skip_formula(state, x)
        worst = max(worst, _excess(mine.numpy(), truth, 1e-4, 1e-5))
        wrong = min(wrong, _excess(inside.numpy(), truth, 1e-4, 1e-5))
    print(f"q9 SkipBlock (rtol 1e-4, atol 1e-5): variant {worst:.3g}, skip-inside-ReLU mistake {wrong:.3g}")


def q8_mistakes(seeds=(42,)) -> None:
    """q8's max_xor_error: the nearest realistic mistakes (Adam lr 1e-4; no ReLU) on seed 42."""
    for label, layers, lr in (("lr=1e-4", "relu", 1e-4), ("no ReLU", "linear", 0.01)):
        torch.manual_seed(42)
        mods = [nn.Linear(2, 8)] + ([nn.ReLU()] if layers == "relu" else []) + [nn.Linear(8, 1)]
        model = nn.Sequential(*mods)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(1000):
            loss = nn.functional.mse_loss(model(X), Y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            print(f"Q8 mistake {label}: max |pred - target| = {(model(X) - Y).abs().max().item():.3f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "tolerances":
        tolerances(int(sys.argv[2]) if len(sys.argv) > 2 else 500)
        recomputed()
        q8_mistakes()
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
