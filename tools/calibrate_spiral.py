"""Calibrate the spiral test-accuracy threshold over torch seeds.

Runs the solution and two realistic mistakes (softmax at the end, best state not restored) for N
seeds (default 30) and prints min/mean/max test accuracy.  Usage: python tools/calibrate_spiral.py [N]

`python tools/calibrate_spiral.py --tolerances [DRAWS] [SEEDS]` measures every numeric tolerance of
solutions/spiral/checks.py: the largest distance among correct variants and the smallest among the
nearest realistic mistakes (train_step variants on DRAWS grader batches, training runs over SEEDS).
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from autograder.data import load_spiral  # noqa: E402
torch.set_num_threads(1)
parts = load_spiral()
T = {k: (torch.tensor(X), torch.tensor(y)) for k, (X, y) in parts.items()}
class SpiralNet(nn.Module):
    def __init__(self, n_hidden=100, dropout=0.2, softmax=False):
        super().__init__()
        layers = [nn.Linear(2, n_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(n_hidden, 3)]
        if softmax: layers.append(nn.Softmax(dim=1))
        self.net = nn.Sequential(*layers)
    def forward(self, x): return self.net(x)
def run(seed, softmax=False, restore=True):
    torch.manual_seed(seed)
    model = SpiralNet(softmax=softmax)
    crit = nn.CrossEntropyLoss(); opt = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.005)
    (Xtr, ytr), (Xv, yv), (Xte, yte) = T["train"], T["val"], T["test"]
    best, be, bs = float("inf"), 0, None; n=0
    for epoch in range(5000):
        model.train(); loss = crit(model(Xtr), ytr); opt.zero_grad(); loss.backward(); opt.step()
        model.eval()
        with torch.no_grad(): vl = crit(model(Xv), yv).item()
        if vl < best: best, be, bs = vl, epoch, {k: v.clone() for k, v in model.state_dict().items()}
        n = epoch
        if epoch - be >= 200: break
    if restore: model.load_state_dict(bs)
    model.eval()
    with torch.no_grad(): acc = (model(Xte).argmax(1) == yte).float().mean().item()
    return acc, be, n, best
def seeds_main(n_seeds: int) -> None:
    out = {}
    for variant in [("solution", False, True), ("softmax", True, True), ("norestore", False, False)]:
        accs, losses = [], []
        t = time.time()
        for seed in range(n_seeds):
            acc, be, n, best = run(seed, variant[1], variant[2])
            accs.append(acc)
            losses.append(best)
        out[variant[0]] = accs
        print(variant[0], "test accuracy min %.4f mean %.4f max %.4f;" % (min(accs), np.mean(accs), max(accs)),
              "best val loss min %.4f mean %.4f max %.4f" % (min(losses), np.mean(losses), max(losses)),
              "%.1fs" % (time.time() - t), flush=True)
    print(json.dumps({k: [round(a, 4) for a in v] for k, v in out.items()}))



# -- tolerances of solutions/spiral/checks.py: python tools/calibrate_spiral.py --tolerances [N] -------
def _checks_module():
    import importlib.util
    from types import SimpleNamespace
    spec = importlib.util.spec_from_file_location("spiral_checks", Path(__file__).resolve().parents[1]
                                                  / "solutions" / "spiral" / "checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, SimpleNamespace


def _steps(step, inputs, module):
    """Run a train_step variant twice as STEP_PROBE does; return the probe's data."""
    net = module._step_net()
    net.load_state_dict(inputs["init"])
    opt = optim.SGD(net.parameters(), lr=module.STEP_LR)
    losses, states = [], []
    for X, y in inputs["batches"]:
        loss = step(net, X, y, nn.CrossEntropyLoss(), opt)
        losses.append(float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss))
        states.append({k: v.detach().clone() for k, v in net.state_dict().items()})
    return _wire({"losses": losses, "states": states})


def _wire(data):
    """What a verdict receives: the data after the probe's export."""
    from autograder import wire
    return wire.decode(wire.encode(data))


def _step_variants():
    def solution(m, X, y, c, o):
        m.train(); out = m(X); loss = c(out, y); o.zero_grad(); loss.backward(); o.step(); return loss
    def functional_model_zero(m, X, y, c, o):
        m.train(); m.zero_grad(); loss = torch.nn.functional.cross_entropy(m(X), y); loss.backward(); o.step()
        return loss
    def zero_grad_last(m, X, y, c, o):
        m.train(); loss = c(m(X), y); loss.backward(); o.step(); o.zero_grad(set_to_none=True); return loss
    def zero_grad_keep_tensors(m, X, y, c, o):
        m.train(); o.zero_grad(set_to_none=False); loss = c(m(X), y); loss.backward(); o.step(); return loss.detach()
    def no_zero_grad(m, X, y, c, o):
        m.train(); loss = c(m(X), y); loss.backward(); o.step(); return loss
    def step_before_backward(m, X, y, c, o):
        m.train(); loss = c(m(X), y); o.zero_grad(); o.step(); loss.backward(); return loss
    def zero_grad_between(m, X, y, c, o):
        m.train(); loss = c(m(X), y); loss.backward(); o.zero_grad(); o.step(); return loss
    def divided_by_n(m, X, y, c, o):  # Session 7's habit of dividing by N on top of the mean
        m.train(); loss = c(m(X), y) / len(y); o.zero_grad(); loss.backward(); o.step(); return loss
    def float64_batch(m, X, y, c, o):  # a second cast of X: nothing changes (a correct variant)
        m.train(); loss = c(m(X.float()), y.long()); o.zero_grad(); loss.backward(); o.step(); return loss
    correct = [solution, functional_model_zero, zero_grad_last, zero_grad_keep_tensors, float64_batch]
    wrong = [no_zero_grad, step_before_backward, zero_grad_between, divided_by_n]
    return correct, wrong


def tolerances(n_draws: int = 30, n_seeds: int = 10) -> None:
    module, ns = _checks_module()
    ref = module.reference(None)
    rows = []
    # q3 STEP_TOLERANCE: parameters after two SGD steps and the returned losses
    correct, wrong = _step_variants()
    worst = {f.__name__: 0.0 for f in correct}
    best = {f.__name__: float("inf") for f in wrong}
    for draw in range(n_draws):
        ctx = ns(rng=np.random.default_rng([1, draw]))
        inputs = module.inputs_steps(ctx)
        ctx.inputs = inputs
        for f in correct + wrong:
            params, losses, _ = module.step_distances(_steps(f, inputs, module), ctx)
            d = max(params + losses)
            if f in correct:
                worst[f.__name__] = max(worst[f.__name__], d)
            else:
                best[f.__name__] = min(best[f.__name__], d)
    rows.append(("STEP_TOLERANCE", worst, best))
    # q1 X_TOLERANCE: correct casts of X_train_np.T against mistakes that keep dtype and shape
    from autograder.data import spiral_arrays
    Xall, _, split = spiral_arrays()
    Xtr = Xall[split == "train"]  # (316, 2) float64, the rows of X_train_np.T
    target = ref["X_train"].numpy()
    variants = {"torch.tensor(.T, float32)": torch.tensor(Xtr, dtype=torch.float32).numpy(),
                "from_numpy(.T).float()": torch.from_numpy(np.ascontiguousarray(Xtr)).float().numpy(),
                "torch.tensor(X).T.float()": torch.tensor(Xtr.T).T.float().numpy()}
    mistakes = {"half precision cast back": torch.tensor(Xtr).half().float().numpy(),
                "columns swapped": torch.tensor(Xtr[:, ::-1].copy()).float().numpy(),
                "rounded to 2 decimals": torch.tensor(np.round(Xtr, 2)).float().numpy()}
    rows.append(("X_TOLERANCE", {k: float(np.abs(v - target).max()) for k, v in variants.items()},
                 {k: float(np.abs(v - target).max()) for k, v in mistakes.items()}))
    # q4 PERCENT_TOLERANCE: float32 fractions times 100 against the exact percentage, for every count
    exact = [100 * k / 67 for k in range(68)]
    f32 = [torch.tensor(k / 67, dtype=torch.float32).item() * 100 for k in range(68)]
    count = [100.0 * k / 67 for k in range(68)]
    mean32 = [(torch.arange(67) < k).float().mean().item() * 100 for k in range(68)]
    rows.append(("PERCENT_TOLERANCE",
                 {"float32 mean * 100": max(abs(a - b) for a, b in zip(mean32, exact)),
                  "float32 fraction * 100": max(abs(a - b) for a, b in zip(f32, exact)),
                  "count / len * 100": max(abs(a - b) for a, b in zip(count, exact))},
                 {"one test point off": 100 / 67, "fraction, not percent": min(e - e / 100 for e in exact[57:]),
                  "rounded to one decimal (worst case 0.05)":
                      min(abs(round(e, 1) - e) for e in exact if abs(round(e, 1) - e) > 0)}))
    # q3 RESTORE_TOLERANCE and the two thresholds, over torch seeds
    restored_gap, unrestored_gap, accs = [], [], {"solution": [], "no_zero_grad": [], "step_before_backward": []}
    losses_at = {k: [] for k in accs}
    for seed in range(n_seeds):
        for name, step in [("solution", correct[0]), ("no_zero_grad", wrong[0]), ("step_before_backward", wrong[1])]:
            torch.manual_seed(seed)
            model = module.SpiralNet()
            crit = nn.CrossEntropyLoss(); opt = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.005)
            vals, best_v, be, bs = [], float("inf"), 0, None
            for epoch in range(module.N_EPOCHS):
                step(model, ref["X_train"], ref["y_train"], crit, opt)
                model.eval()
                with torch.no_grad():
                    vals.append(crit(model(ref["X_val"]), ref["y_val"]).item())
                if vals[-1] < best_v:
                    best_v, be, bs = vals[-1], epoch, {k: v.clone() for k, v in model.state_dict().items()}
                if epoch - be >= module.PATIENCE:
                    break
            last = {k: v.clone() for k, v in model.state_dict().items()}
            ctx = ns(ref=ref)
            if name == "solution":
                r = module.restored_val_loss(_wire({"state": bs}), ctx)
                restored_gap.append(abs(r - min(vals)) / max(1.0, min(vals)))
                unrestored_gap.append(abs(module.restored_val_loss(_wire({"state": last}), ctx) - min(vals)))
            model.load_state_dict(bs)
            losses_at[name].append(module.restored_val_loss(_wire({"state": bs}), ctx))
            accs[name].append(module._accuracy(model.eval(), ctx))
        print(f"seed {seed}: " + ", ".join(f"{k} acc {v[-1]:.3f} loss {losses_at[k][-1]:.3f}" for k, v in accs.items()),
              flush=True)
    rows.append(("RESTORE_TOLERANCE", {"solution (relative)": max(restored_gap)},
                 {"last epoch's weights (not restored / live state_dict)": min(unrestored_gap)}))
    rows.append(("max_best_val_loss", {"solution (largest)": max(losses_at["solution"])},
                 {k + " (smallest)": min(v) for k, v in losses_at.items() if k != "solution"}))
    rows.append(("min_test_accuracy", {"solution (smallest)": min(accs["solution"])},
                 {k + " (largest)": max(v) for k, v in accs.items() if k != "solution"}))
    print(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    numbers_given = [int(a) for a in sys.argv[1:] if a.isdigit()]
    if "--tolerances" in sys.argv:
        tolerances(*(numbers_given[:1] or [30]), *(numbers_given[1:2] or [10]))
    else:
        seeds_main(numbers_given[0] if numbers_given else 30)
