"""Calibrate the `pipeline` thresholds and tolerances over seeds.

    nice -n 10 python tools/calibrate_pipeline.py [--seeds 20]

1. Test accuracy of the solution's pipeline (Classifier 2-64-32-3, Adam 0.01, batch 32,
   patience 10, MAX_EPOCHS epochs) over torch seeds -> `min_test_accuracy`.
2. Rosenbrock paths: equivalent ways of writing the function (x*x, expanded squares) against the
   grader's rerun, from random starts -> PATH_ATOL.
3. Focal loss: equivalent stable formulations against the float64 reference -> FOCAL_RTOL(_F32).
4. Checkpoints: resumed vs uninterrupted and the grader's rerun -> RESUME_ATOL, RERUN_ATOL.
5. Every other numeric tolerance of checks.py: the largest distance among correct variants and the
   smallest among the nearest realistic mistakes (`--all`), printed as the rows of the calibration
   table: datasets, rosenbrock values, losses-vs-path, path start, state_dict round trip,
   train_epoch weights and loss, validate loss and accuracy, best/restored validation loss (last-
   epoch weights as the mistake), and the test accuracy of a too-small learning rate.
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


# -- 5. the remaining tolerances -----------------------------------------------------------------------
class _Ctx:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def datasets_gaps() -> dict:
    import csv
    ref = C.reference(None)
    X_ref = np.concatenate([ref[s][0].numpy() for s in ("train", "val", "test")])
    with open(ROOT / "datasets" / "spiral.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    ordered = [r for s in ("train", "val", "test") for r in by_split[s]]
    X_csv = np.array([[float(r["x1"]), float(r["x2"])] for r in ordered], dtype=np.float32)  # float64 -> float32
    X_direct = np.array([[np.float32(r["x1"]), np.float32(r["x2"])] for r in ordered], dtype=np.float32)  # parsed as float32
    X_swapped = X_ref[:, ::-1]
    X_scaled = (X_ref - X_ref.mean(0)) / X_ref.std(0)  # standardised features
    return {"correct": max(np.abs(X_csv - X_ref).max(), np.abs(X_direct - X_ref).max()),
            "mistake": min(np.abs(X_swapped - X_ref).max(), np.abs(X_scaled - X_ref).max())}


def rosenbrock_value_gaps(seeds) -> dict:
    correct, mistake = 0.0, np.inf
    for seed in seeds:
        pts = C.inputs_start(_Ctx(seed))["points"]
        x, y = torch.from_numpy(pts[:, 0]), torch.from_numpy(pts[:, 1])
        ref = C.rosenbrock(pts[:, 0], pts[:, 1])
        for variant in rosen_variants():
            correct = max(correct, _rel(variant(x, y).numpy(), ref))
        for wrong in (lambda x, y: (1 - x) ** 2 + 10 * (y - x ** 2) ** 2,   # coefficient 10
                      lambda x, y: (1 - x) ** 2 + 100 * (y - x) ** 2,       # x instead of x**2
                      lambda x, y: (1 - x) ** 2 + 100 * (y - x ** 2)):      # square missing
            mistake = min(mistake, _rel(wrong(x, y).numpy(), ref))
        # float32 inside rosenbrock: reported, not a mistake the check is meant for
        correct32 = _rel(C.rosenbrock(x.float(), y.float()).double().numpy(), ref)
    return {"correct": correct, "mistake": mistake, "float32": correct32}


def _path_run(cls, lr, start, kw, *, order="solution", n_steps=100):
    x = torch.tensor(start, dtype=torch.float32, requires_grad=True)
    opt = cls([x], lr=lr, **kw)
    path, losses = [x.detach().clone().numpy()], []
    for _ in range(n_steps):
        if order != "no_zero_grad":
            opt.zero_grad()
        loss = C.rosenbrock(x[0], x[1])
        loss.backward()
        opt.step()
        path.append(x.detach().clone().numpy())
        losses.append(loss.item() if order != "loss_after_step" else C.rosenbrock(x[0], x[1]).item())
    if order == "no_start":
        path = path[1:] + [path[-1]]
    return np.array(path), losses


def path_gaps(seeds) -> dict:
    out = {"losses_correct": 0.0, "losses_mistake": np.inf, "start_correct": 0.0, "start_mistake": np.inf,
           "path_mistake": np.inf}
    for seed in seeds:
        start = tuple(float(v) for v in C.inputs_start(_Ctx(seed))["start"])
        for _, cls, lr, kw in C.OPTIMIZERS:
            path, losses = _path_run(cls, lr, start, kw)
            truth = C.rosenbrock(path[:-1, 0].astype(np.float64), path[:-1, 1].astype(np.float64))
            # allclose(losses, truth, rtol=1e-3, atol=1e-4) passes iff this ratio <= 1
            out["losses_correct"] = max(out["losses_correct"], float(np.max(np.abs(np.array(losses) - truth) / (1e-4 + 1e-3 * np.abs(truth)))))
            _, late = _path_run(cls, lr, start, kw, order="loss_after_step")
            out["losses_mistake"] = min(out["losses_mistake"], float(np.max(np.abs(np.array(late) - truth) / (1e-4 + 1e-3 * np.abs(truth)))))
            out["start_correct"] = max(out["start_correct"], float(np.max(np.abs(path[0] - start))))
            shifted, _ = _path_run(cls, lr, start, kw, order="no_start")
            out["start_mistake"] = min(out["start_mistake"], float(np.max(np.abs(shifted[0] - start))))
            acc, _ = _path_run(cls, lr, start, kw, order="no_zero_grad")
            out["path_mistake"] = min(out["path_mistake"], float(np.nanmax(np.abs(acc - path))))
    return out


def roundtrip_gaps(seeds) -> dict:
    correct, mistake = 0.0, np.inf
    for seed in seeds:
        x = C.inputs_x10(_Ctx(seed))["x"]
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 1)).eval()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        fresh = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 1)).eval()
        with torch.no_grad():
            truth = C._small_model(state)(x).numpy()
            out = model(x).numpy()
            wrong = fresh(x).numpy()   # new_model never loaded
        correct = max(correct, float(np.max(np.abs(out - truth) / (1e-6 + 1e-5 * np.abs(truth)))))
        mistake = min(mistake, float(np.max(np.abs(wrong - truth) / (1e-6 + 1e-5 * np.abs(truth)))))
    return {"correct": correct, "mistake": mistake}


def _train_epoch_variant(net, batches, opt, kind):
    net.train()
    losses = []
    for X, y in batches:
        if kind in ("functional", "zero_first", "weighted"):
            opt.zero_grad()
            loss = F.cross_entropy(net(X), y)
        else:
            loss = nn.CrossEntropyLoss()(net(X), y)
            if kind != "no_zero_grad":
                opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item() * (len(y) if kind == "weighted" else 1))
    if kind == "weighted":
        return sum(losses) / sum(len(y) for _, y in batches)
    if kind == "last":
        return losses[-1]
    return sum(losses) / len(losses)


def train_epoch_gaps(seeds) -> dict:
    out = {"w_correct": 0.0, "w_mistake": np.inf, "l_correct": 0.0, "l_mistake": np.inf}
    for seed in seeds:
        inp = C.inputs_train_epoch(_Ctx(seed))
        batches = C._batches(inp["X"], inp["y"], 16)

        def run(kind):
            net = C._load(C._te_net(), inp["init"])
            opt = torch.optim.SGD(net.parameters(), lr=inp["lr"])
            if kind == "reference":
                loss = C.train_epoch(net, batches, nn.CrossEntropyLoss(), opt, torch.device("cpu"))
            else:
                loss = _train_epoch_variant(net, batches, opt, kind)
            return loss, [v.detach().numpy().copy() for v in net.state_dict().values()]

        ref_loss, ref_w = run("reference")

        def wgap(w):  # torch.allclose(atol=RERUN_ATOL, rtol=1e-5) passes iff <= 1
            return max(float(np.max(np.abs(a - b) / (C.RERUN_ATOL + 1e-5 * np.abs(b)))) for a, b in zip(w, ref_w))

        for kind in ("functional", "zero_first", "weighted"):
            loss, w = run(kind)
            out["w_correct"] = max(out["w_correct"], wgap(w))
            out["l_correct"] = max(out["l_correct"], abs(loss - ref_loss) / max(1.0, abs(ref_loss)))
        _, w = run("no_zero_grad")
        out["w_mistake"] = min(out["w_mistake"], wgap(w))
        loss, _ = run("last")
        out["l_mistake"] = min(out["l_mistake"], abs(loss - ref_loss) / max(1.0, abs(ref_loss)))
    return out


def validate_gaps(seeds) -> dict:
    out = {"l_correct": 0.0, "l_mistake": np.inf, "a_correct": 0.0, "a_mistake": np.inf}
    for seed in seeds:
        inp = C.inputs_validate(_Ctx(seed))
        batches = C._batches(inp["X"], inp["y"], 16)
        net = C._load(C._val_net(), inp["init"]).eval()
        with torch.no_grad():
            ref_loss = float(np.mean([F.cross_entropy(net(xb), yb).item() for xb, yb in batches]))
            ref_acc = (net(inp["X"]).argmax(dim=1) == inp["y"]).float().mean().item()
        with torch.inference_mode():  # tensor accumulation in float32, per-batch accuracy mean
            total = sum(F.cross_entropy(net(xb), yb) for xb, yb in batches) / len(batches)
            acc = torch.stack([(net(xb).argmax(1) == yb).float().mean() for xb, yb in batches]).mean()
        out["l_correct"] = max(out["l_correct"], abs(total.item() - ref_loss) / max(1.0, ref_loss))
        out["a_correct"] = max(out["a_correct"], abs(acc.item() - ref_acc))
        net.train()  # dropout on: the validate_without_eval mistake
        torch.manual_seed(seed)
        with torch.no_grad():
            loss = float(np.mean([F.cross_entropy(net(xb), yb).item() for xb, yb in batches]))
            wrong_acc = float(np.mean([(net(xb).argmax(1) == yb).float().mean().item() for xb, yb in batches]))
        out["l_mistake"] = min(out["l_mistake"], abs(loss - ref_loss) / max(1.0, ref_loss))
        out["a_mistake"] = min(out["a_mistake"], abs(wrong_acc - ref_acc) if wrong_acc != ref_acc else np.inf,
                               1.0 / len(inp["y"]))  # one point counted wrong is the smallest accuracy error
    return out


def best_vs_last(seed: int, max_epochs: int, lr=0.01) -> dict:
    """One run of the pipeline: best and last-epoch validation loss (as the grader measures them)."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    ref = C.reference(None)
    train = DataLoader(TensorDataset(*ref["train"]), batch_size=32, shuffle=True)
    X_val, y_val = ref["val"]
    model = C.Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    crit = nn.CrossEntropyLoss()
    best, counter, best_state, history = float("inf"), 0, None, []
    for _ in range(max_epochs):
        C.train_epoch(model, train, crit, opt, torch.device("cpu"))
        model.eval()
        with torch.no_grad():
            val = crit(model(X_val), y_val).item()
        history.append(val)
        if val < best:
            best, counter = val, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            counter += 1
            if counter >= C.PATIENCE:
                break

    class Ctx:
        pass
    ctx = Ctx()
    ctx.ref = ref
    last = C._val_loss(model.state_dict(), ctx)
    regrade = C._val_loss(best_state, ctx)
    model.load_state_dict(best_state)
    model.eval()
    X, y = ref["test"]
    with torch.no_grad():
        acc = (model(X).argmax(1) == y).float().mean().item()
    return {"best": best, "regrade_gap": abs(regrade - best) / max(1.0, best),
            "last_gap": abs(last - best) / max(1.0, best), "accuracy": acc}


def summary(name, values):
    values = np.asarray(values, dtype=float)
    print(f"{name}: min {values.min():.4g}  mean {values.mean():.4g}  max {values.max():.4g}  (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--all", action="store_true", help="also measure every other tolerance (section 5)")
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
    if not args.all:
        return

    seeds = range(args.seeds)
    print("\n-- 5. other tolerances (correct = largest among correct variants, mistake = smallest) --")
    print("datasets X (atol 1e-6):", datasets_gaps())
    print("rosenbrock values (rtol 1e-7):", rosenbrock_value_gaps(seeds))
    print("paths (allclose ratios; start atol 1e-6; PATH_ATOL):", path_gaps(seeds))
    print("state_dict round trip (allclose ratio, rtol 1e-5 atol 1e-6):", roundtrip_gaps(seeds))
    print("train_epoch (weights: allclose ratio; loss: relative):", train_epoch_gaps(seeds))
    print("validate (loss relative, accuracy absolute):", validate_gaps(seeds))
    runs = [best_vs_last(seed, max_epochs) for seed in seeds]
    summary("grader's val loss of the best weights vs history min (relative)", [r["regrade_gap"] for r in runs])
    summary("last-epoch weights (shallow copy / save every epoch) vs best (relative)", [r["last_gap"] for r in runs])
    slow = [best_vs_last(seed, max_epochs, lr=1e-4)["accuracy"] for seed in seeds]
    summary("test accuracy with Adam lr=1e-4 (mistake)", slow)


if __name__ == "__main__":
    main()
