"""Calibrate the `pipeline` thresholds and tolerances over seeds.

    nice -n 10 python tools/calibrate_pipeline.py [--seeds 20]

1. Test accuracy of the solution's pipeline (Classifier 2-64-32-3, Adam 0.01, batch 32,
   patience 10, MAX_EPOCHS epochs) over torch seeds -> `min_test_accuracy`.
2. Rosenbrock paths: equivalent ways of writing the function (x*x, expanded squares) against the
   grader's rerun, from random starts -> PATH_ATOL.
3. Focal loss: equivalent stable formulations against the float64 reference -> FOCAL_RTOL(_F32).
4. Checkpoints: resumed vs uninterrupted and the grader's rerun -> RESUME_ATOL, RERUN_ATOL.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "solutions" / "pipeline"))
import checks as C  # noqa: E402  (solutions/pipeline/checks.py)


def spiral_accuracy(seed: int, max_epochs: int) -> tuple[float, int]:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    ref = C.reference(None)
    train = DataLoader(TensorDataset(*ref["train"]), batch_size=32, shuffle=True)
    X_val, y_val = ref["val"]
    model = C.Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    crit = nn.CrossEntropyLoss()
    best, best_state, counter, epochs = float("inf"), None, 0, 0
    for epoch in range(max_epochs):
        C.train_epoch(model, train, crit, opt, torch.device("cpu"))
        model.eval()
        with torch.no_grad():
            val = crit(model(X_val), y_val).item()
        epochs += 1
        if val < best:
            best, counter = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            counter += 1
            if counter >= C.PATIENCE:
                break
    model.load_state_dict(best_state)
    model.eval()
    X, y = ref["test"]
    with torch.no_grad():
        return (model(X).argmax(1) == y).float().mean().item(), epochs


def rosen_variants():
    return [lambda x, y: (1 - x) * (1 - x) + 100 * (y - x * x) * (y - x * x),
            lambda x, y: 1 - 2 * x + x ** 2 + 100 * (y - x ** 2) ** 2,
            lambda x, y: (x - 1) ** 2 + 100.0 * (x ** 2 - y) ** 2]


def path_gap(start, variant) -> float:
    gaps = []
    original = C.rosenbrock
    for _, cls, lr, kw in C.OPTIMIZERS:
        ref, _ = C.optimize_with(cls, lr, start=start, **kw)
        C.rosenbrock = variant
        try:
            alt, _ = C.optimize_with(cls, lr, start=start, **kw)
        finally:
            C.rosenbrock = original
        gaps.append(np.max(np.abs(alt - ref)))
    return float(max(gaps))


def focal_variants():
    def ce_based(z, t, gamma):
        ce = F.cross_entropy(z, t, reduction="none")
        return ((1 - torch.exp(-ce)) ** gamma * ce).mean()

    def expm1_based(z, t, gamma):
        lp = F.log_softmax(z, dim=1)[torch.arange(len(t)), t]
        return (-(-torch.expm1(lp)) ** gamma * lp).mean()

    def nll_based(z, t, gamma):
        lp = F.log_softmax(z, dim=1)
        p = lp.exp()
        w = (1 - p) ** gamma
        return F.nll_loss(w * lp, t)

    return [ce_based, expm1_based, nll_based]


def focal_gaps(rng) -> tuple[float, float]:
    class Ctx:
        pass
    ctx = Ctx()
    ctx.rng = rng
    inp = C.inputs_focal(ctx)
    rel64, rel32 = 0.0, 0.0
    for variant in focal_variants():
        for gamma in inp["gammas"]:
            ref_v, ref_g = C._focal_truth(inp["logits"], inp["targets"], gamma)
            z = inp["logits"].clone().requires_grad_(True)
            v = variant(z, inp["targets"], gamma)
            v.backward()
            rel64 = max(rel64, abs(v.item() - ref_v) / abs(ref_v),
                        float(np.max(np.abs(z.grad.numpy() - ref_g) / (np.abs(ref_g) + 1e-12))))
        ref_v, ref_g = C._focal_truth(inp["big_logits"], inp["big_targets"], 2.0)
        z = inp["big_logits"].clone().requires_grad_(True)
        v = variant(z, inp["big_targets"], 2.0)
        v.backward()
        rel32 = max(rel32, abs(v.item() - ref_v) / abs(ref_v),
                    float(np.max(np.abs(z.grad.numpy() - ref_g) / (np.abs(ref_g) + 1e-5))))
    return rel64, rel32


def checkpoint_gaps(rng) -> tuple[float, float]:
    class Ctx:
        pass
    ctx = Ctx()
    ctx.rng = rng
    inp = C.inputs_checkpoint(ctx)
    rerun = C.uninterrupted_run(inp)
    # the resumed run, as the probe does it, with an in-memory round trip of the checkpoint
    net = C._load(C._ck_net(), inp["init_a"])
    opt = torch.optim.Adam(net.parameters(), lr=inp["lr"])

    def steps(n):
        for _ in range(n):
            opt.zero_grad()
            F.mse_loss(net(inp["X"]), inp["y"]).backward()
            opt.step()
    steps(inp["k"])
    import io
    buffer = io.BytesIO()
    torch.save({"m": net.state_dict(), "o": opt.state_dict()}, buffer)
    steps(inp["k"])
    uninterrupted = [p.detach().numpy().copy() for p in net.parameters()]
    buffer.seek(0)
    ck = torch.load(buffer, weights_only=True)
    net = C._load(C._ck_net(), inp["init_b"])
    opt = torch.optim.Adam(net.parameters(), lr=inp["lr"])
    net.load_state_dict(ck["m"])
    opt.load_state_dict(ck["o"])
    steps(inp["k"])
    resumed = [p.detach().numpy().copy() for p in net.parameters()]
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(uninterrupted, resumed))
    regap = max(float(np.max(np.abs(a - b))) for a, b in zip(uninterrupted, rerun))
    # what a checkpoint without the optimizer state gives (must be far above RESUME_ATOL)
    net = C._load(C._ck_net(), inp["init_b"])
    net.load_state_dict(ck["m"])
    opt = torch.optim.Adam(net.parameters(), lr=inp["lr"])
    steps(inp["k"])
    fresh = max(float(np.max(np.abs(a - p.detach().numpy()))) for a, p in zip(uninterrupted, net.parameters()))
    return gap, regap, fresh


def summary(name, values):
    values = np.asarray(values, dtype=float)
    print(f"{name}: min {values.min():.4g}  mean {values.mean():.4g}  max {values.max():.4g}  (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    block = (yaml.safe_load((ROOT / "grading.yml").read_text()).get("assignments") or {}).get("pipeline") or {}
    max_epochs = (block.get("budget") or {}).get("max_epochs", 200)

    accs, epochs = [], []
    for seed in range(args.seeds):
        acc, n = spiral_accuracy(seed, max_epochs)
        accs.append(acc)
        epochs.append(n)
        print(f"seed {seed:2d}: test accuracy {acc:.3f} after {n} epochs", flush=True)
    summary("test accuracy", accs)
    summary("epochs run", epochs)
    print(f"runs that hit MAX_EPOCHS={max_epochs}: {sum(e == max_epochs for e in epochs)}")

    rng = np.random.default_rng(0)
    gaps = [max(path_gap(tuple(rng.uniform([-1.4, 0.0], [-0.6, 1.4])), v) for v in rosen_variants())
            for _ in range(args.seeds)]
    summary("Rosenbrock path gap (equivalent formulas)", gaps)

    f64, f32 = zip(*[focal_gaps(np.random.default_rng(seed)) for seed in range(args.seeds)])
    summary("focal loss relative gap, float64", f64)
    summary("focal loss relative gap, float32 large logits", f32)

    gap, regap, fresh = zip(*[checkpoint_gaps(np.random.default_rng(seed)) for seed in range(args.seeds)])
    summary("resumed vs uninterrupted", gap)
    summary("probe-style run vs grader rerun", regap)
    summary("checkpoint without optimizer state vs uninterrupted", fresh)


if __name__ == "__main__":
    main()
