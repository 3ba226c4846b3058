"""Calibration of pipeline's threshold and tolerances: `python -m autograder calibrate pipeline`.

Per seed: the prompt's Part 5 run (reference.spiral_run) for the solution and for the nearest
mistake (Adam with lr=1e-4), scored by the verdicts' own measures -> `min_test_accuracy` and
BEST_RTOL; and one grader draw of each check's inputs, on which equivalent correct answers and the
nearest realistic mistakes are measured with the verdicts' distances -> PATH_ATOL, FOCAL_RTOL(_F32),
RESUME_ATOL, RERUN_ATOL and the fixed tolerances of the other checks; PATH_ATOL again for AdamW
(q11, against AdamW written out by hand and Adam's coupled weight_decay); and the notebook's binary
classifier (q13) on the check's fresh points -> `min_binary_accuracy`. "ratio" rows are
|a - b| / (atol + rtol |b|) of an allclose: it passes when the ratio is at most 1.
"""
from __future__ import annotations

import csv
import io

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.checks import Context
from autograder.config import load_config

from . import verdicts
from torch.utils.data import DataLoader, TensorDataset

from .reference import (ADAMW, DATA_ROOT, OPTIMIZERS, Classifier, batches, simple_labels, split_dataset, train_epoch, checkpoint_rerun, ck_net, loaded, mse_steps,
                        optimize_with, rosenbrock, small_net, spiral_run, te_net, val_net, validate)

DEFAULT_SEEDS = 20


def _ctx(ref, seed: int, stream: int) -> Context:
    """A verdict's context with the grader-style generator of one check (`stream`) for this seed."""
    assignment = load_config().assignment("pipeline")
    return Context(ref=ref, thresholds=dict(assignment.thresholds), budget=dict(assignment.budget),
                   rng=np.random.default_rng([stream, seed]))


def _ratio(a, b, atol: float, rtol: float) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.nanmax(np.abs(a - b) / (atol + rtol * np.abs(b))))


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


# -- q1 (seed-independent) ----------------------------------------------------------------------------
def _datasets(ref) -> dict[str, float]:
    X_ref = np.concatenate([ref[s][0].numpy() for s in ("train", "val", "test")])
    with open(DATA_ROOT / "spiral.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    ordered = [r for s in ("train", "val", "test") for r in rows if r["split"] == s]
    parsed64 = np.array([[float(r["x1"]), float(r["x2"])] for r in ordered], dtype=np.float32)
    parsed32 = np.array([[np.float32(r["x1"]), np.float32(r["x2"])] for r in ordered], dtype=np.float32)
    standardised = (X_ref - X_ref.mean(0)) / X_ref.std(0)
    return {"SpiralDataset X (atol 1e-6) largest correct distance (float32 parses)":
            max(np.abs(parsed64 - X_ref).max(), np.abs(parsed32 - X_ref).max()),
            "SpiralDataset X (atol 1e-6) smallest mistake distance (swapped or standardised features)":
            min(np.abs(X_ref[:, ::-1] - X_ref).max(), np.abs(standardised - X_ref).max())}


# -- q2 -----------------------------------------------------------------------------------------------
ROSENBROCK_VARIANTS = (lambda x, y: (1 - x) * (1 - x) + 100 * (y - x * x) * (y - x * x),
                       lambda x, y: 1 - 2 * x + x ** 2 + 100 * (y - x ** 2) ** 2,
                       lambda x, y: (x - 1) ** 2 + 100.0 * (x ** 2 - y) ** 2)
ROSENBROCK_MISTAKES = (lambda x, y: (1 - x) ** 2 + 10 * (y - x ** 2) ** 2,   # coefficient 10
                       lambda x, y: (1 - x) ** 2 + 100 * (y - x) ** 2,       # x instead of x**2
                       lambda x, y: (1 - x) ** 2 + 100 * (y - x ** 2))       # square missing


def _no_zero_grad(optimizer_class):
    """The optimizer class with zero_grad doing nothing: gradients accumulate over the steps."""
    return type(f"{optimizer_class.__name__}WithoutZeroGrad", (optimizer_class,),
                {"zero_grad": lambda self, set_to_none=True: None})


def _rosenbrock(ref, seed: int) -> dict[str, float]:
    inputs = verdicts.inputs_start(_ctx(ref, seed, 2))
    pts, start = inputs["points"], tuple(float(v) for v in inputs["start"])
    x, y = torch.from_numpy(pts[:, 0]), torch.from_numpy(pts[:, 1])
    truth = rosenbrock(pts[:, 0], pts[:, 1])
    out = {"rosenbrock values (rtol 1e-7) largest correct distance (relative)":
           max(_rel(v(x, y).numpy(), truth) for v in ROSENBROCK_VARIANTS),
           "rosenbrock values (rtol 1e-7) smallest mistake distance (relative)":
           min(_rel(v(x, y).numpy(), truth) for v in ROSENBROCK_MISTAKES),
           "rosenbrock values in float32 (reported, not a mistake; relative)":
           _rel(rosenbrock(x.float(), y.float()).double().numpy(), truth)}
    path_correct, path_mistake, losses_correct, losses_mistake, start_mistake = 0.0, np.inf, 0.0, np.inf, np.inf
    for _, class_name, lr, kwargs in OPTIMIZERS:
        cls = getattr(torch.optim, class_name)
        path, losses = optimize_with(cls, lr, start=start, **kwargs)
        for variant in ROSENBROCK_VARIANTS:
            path_correct = max(path_correct, float(np.max(np.abs(optimize_with(cls, lr, start=start, function=variant,
                                                                                **kwargs)[0] - path))))
        path_mistake = min(path_mistake, float(np.nanmax(np.abs(optimize_with(_no_zero_grad(cls), lr, start=start,
                                                                                **kwargs)[0] - path))))
        exact = rosenbrock(path.astype(np.float64)[:, 0], path.astype(np.float64)[:, 1])
        losses_correct = max(losses_correct, _ratio(losses, exact[:-1], 1e-4, 1e-3))
        late = rosenbrock(torch.from_numpy(path[1:, 0]), torch.from_numpy(path[1:, 1])).numpy()  # after the step
        losses_mistake = min(losses_mistake, _ratio(late, exact[:-1], 1e-4, 1e-3))
        start_mistake = min(start_mistake, float(np.max(np.abs(path[1] - start))))  # the start left out
    out.update({"PATH_ATOL largest correct distance (equivalent rosenbrock formulas)": path_correct,
                "PATH_ATOL smallest mistake distance (no zero_grad)": path_mistake,
                "losses vs path (allclose rtol 1e-3 atol 1e-4) largest correct ratio": losses_correct,
                "losses vs path (allclose rtol 1e-3 atol 1e-4) smallest mistake ratio (loss after the step)":
                losses_mistake,
                "path start (atol 1e-6) smallest mistake distance (start left out)": start_mistake})
    return out


# -- q4 -----------------------------------------------------------------------------------------------
def _roundtrip(ref, seed: int) -> dict[str, float]:
    x = verdicts.inputs_x10(_ctx(ref, seed, 4))["x"]
    torch.manual_seed(seed)
    model, fresh = small_net().eval(), small_net().eval()
    with torch.no_grad():
        truth = loaded(small_net(), model.state_dict()).eval()(x).numpy()
        return {"state_dict round trip (allclose rtol 1e-5 atol 1e-6) largest correct ratio":
                _ratio(model(x).numpy(), truth, 1e-6, 1e-5),
                "state_dict round trip (allclose rtol 1e-5 atol 1e-6) smallest mistake ratio (never loaded)":
                _ratio(fresh(x).numpy(), truth, 1e-6, 1e-5)}


# -- q6 -----------------------------------------------------------------------------------------------
def _checkpoint(ref, seed: int) -> dict[str, float]:
    inp = verdicts.inputs_checkpoint(_ctx(ref, seed, 6))
    X, y, k = inp["X"], inp["y"], inp["k"]

    def make(init):
        net = loaded(ck_net(), init)
        return net, torch.optim.Adam(net.parameters(), lr=inp["lr"])

    net, opt = make(inp["init_a"])  # as the probe runs it, with the checkpoint kept in memory
    mse_steps(net, opt, X, y, k)
    buffer = io.BytesIO()
    torch.save({"m": net.state_dict(), "o": opt.state_dict()}, buffer)
    mse_steps(net, opt, X, y, k)
    uninterrupted = [p.detach().numpy().copy() for p in net.parameters()]
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    gaps = {}
    for name, with_optimizer in (("resumed", True), ("without optimizer state", False)):
        net, opt = make(inp["init_b"])
        net.load_state_dict(checkpoint["m"])
        if with_optimizer:
            opt.load_state_dict(checkpoint["o"])
        mse_steps(net, opt, X, y, k)
        gaps[name] = max(float(np.max(np.abs(a - p.detach().numpy()))) for a, p in zip(uninterrupted, net.parameters()))
    rerun = checkpoint_rerun(inp)
    return {"RESUME_ATOL largest correct distance (resumed vs uninterrupted)": gaps["resumed"],
            "RESUME_ATOL smallest mistake distance (checkpoint without optimizer state)":
            gaps["without optimizer state"],
            "RERUN_ATOL largest correct distance (probe-style run vs grader rerun)":
            max(float(np.max(np.abs(a - b))) for a, b in zip(uninterrupted, rerun))}


# -- q7 -----------------------------------------------------------------------------------------------
def _epoch_variant(kind):
    """train_epoch written another way (functional loss, zero_grad first, size-weighted mean) or wrongly
    (no zero_grad, the last batch's loss)."""
    def run(net, loader, criterion, opt, device):
        net.train()
        losses = []
        for X, y in loader:
            if kind != "no zero_grad":
                opt.zero_grad()
            loss = F.cross_entropy(net(X), y)
            loss.backward()
            opt.step()
            losses.append(loss.item() * (len(y) if kind == "size-weighted" else 1))
        if kind == "size-weighted":
            return sum(losses) / sum(len(y) for _, y in loader)
        return losses[-1] if kind == "last batch" else sum(losses) / len(losses)
    return run


def _train_epoch(ref, seed: int) -> dict[str, float]:
    inp = verdicts.inputs_train_epoch(_ctx(ref, seed, 7))
    ref_loss, ref_net = verdicts.train_epoch_rerun(inp)
    ref_w = [v.numpy() for v in ref_net.state_dict().values()]

    def run(kind):
        net = loaded(te_net(), inp["init"])
        loss = _epoch_variant(kind)(net, batches(inp["X"], inp["y"]), None,
                                    torch.optim.SGD(net.parameters(), lr=inp["lr"]), torch.device("cpu"))
        weights = max(_ratio(a.detach().numpy(), b, verdicts.RERUN_ATOL, 1e-5)
                      for a, b in zip(net.state_dict().values(), ref_w))
        return weights, abs(loss - ref_loss) / max(1.0, abs(ref_loss))

    correct = [run(kind) for kind in ("functional", "size-weighted")]
    return {"train_epoch weights (allclose atol RERUN_ATOL) largest correct ratio": max(w for w, _ in correct),
            "train_epoch weights (allclose atol RERUN_ATOL) smallest mistake ratio (no zero_grad)":
            run("no zero_grad")[0],
            "train_epoch loss (rtol 1e-5) largest correct distance (relative)": max(l for _, l in correct),
            "train_epoch loss (rtol 1e-5) smallest mistake distance (last batch's loss, relative)":
            run("last batch")[1]}


def _validate(ref, seed: int) -> dict[str, float]:
    inp = verdicts.inputs_validate(_ctx(ref, seed, 17))
    loader = batches(inp["X"], inp["y"])
    net = loaded(val_net(), inp["init"])
    ref_loss, ref_acc = validate(net, loader, nn.CrossEntropyLoss(), torch.device("cpu"))
    with torch.inference_mode():  # float32 tensor accumulation, the mean of per-batch accuracies
        total = sum(F.cross_entropy(net(xb), yb) for xb, yb in loader) / len(loader)
        acc = torch.stack([(net(xb).argmax(1) == yb).float().mean() for xb, yb in loader]).mean()
    net.train()  # dropout on: validate without model.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        loss = float(np.mean([F.cross_entropy(net(xb), yb).item() for xb, yb in loader]))
        wrong_acc = float(np.mean([(net(xb).argmax(1) == yb).float().mean().item() for xb, yb in loader]))
    return {"validate loss (rtol 1e-5) largest correct distance (relative)":
            abs(total.item() - ref_loss) / max(1.0, ref_loss),
            "validate loss (rtol 1e-5) smallest mistake distance (dropout on, relative)":
            abs(loss - ref_loss) / max(1.0, ref_loss),
            "validate accuracy (atol 1e-6) largest correct distance": abs(acc.item() - ref_acc),
            "validate accuracy (atol 1e-6) smallest mistake distance (dropout on, or one point)":
            min(abs(wrong_acc - ref_acc) if wrong_acc != ref_acc else np.inf, 1.0 / len(inp["y"]))}


# -- q10 ----------------------------------------------------------------------------------------------
def _ce_based(z, t, gamma):
    ce = F.cross_entropy(z, t, reduction="none")
    return ((1 - torch.exp(-ce)) ** gamma * ce).mean()


def _expm1_based(z, t, gamma):
    lp = F.log_softmax(z, dim=1)[torch.arange(len(t)), t]
    return (-(-torch.expm1(lp)) ** gamma * lp).mean()


def _nll_based(z, t, gamma):
    lp = F.log_softmax(z, dim=1)
    return F.nll_loss((1 - lp.exp()) ** gamma * lp, t)


def _focal(ref, seed: int) -> dict[str, float]:
    inp = verdicts.inputs_focal(_ctx(ref, seed, 10))
    rel64, rel32 = 0.0, 0.0
    for variant in (_ce_based, _expm1_based, _nll_based):
        for gamma in inp["gammas"]:
            ref_v, ref_g = verdicts.focal_truth(inp["logits"], inp["targets"], gamma)
            z = inp["logits"].clone().requires_grad_(True)
            v = variant(z, inp["targets"], gamma)
            v.backward()
            rel64 = max(rel64, abs(v.item() - ref_v) / abs(ref_v),
                        float(np.max(np.abs(z.grad.numpy() - ref_g) / (np.abs(ref_g) + 1e-12))))
        ref_v, ref_g = verdicts.focal_truth(inp["big_logits"], inp["big_targets"], 2.0)
        z = inp["big_logits"].clone().requires_grad_(True)
        v = variant(z, inp["big_targets"], 2.0)
        v.backward()
        rel32 = max(rel32, abs(v.item() - ref_v) / abs(ref_v),
                    float(np.max(np.abs(z.grad.numpy() - ref_g) / (np.abs(ref_g) + 1e-5))))
    return {"FOCAL_RTOL largest correct distance (float64, relative)": rel64,
            "FOCAL_RTOL_F32 largest correct distance (float32 logits up to +-100, relative)": rel32}


# -- q9 -----------------------------------------------------------------------------------------------
def _pipeline(ref, seed: int) -> dict[str, float]:
    ctx = _ctx(ref, seed, 9)
    max_epochs = int(ctx.budget["max_epochs"])
    run = spiral_run(ref, seed, max_epochs)
    best = min(run["history"]["val_loss"])
    epochs = len(run["history"]["val_loss"])
    slow = spiral_run(ref, seed, max_epochs, lr=1e-4)
    return {"solution test accuracy": verdicts.test_accuracy(run["best_state"], ctx),
            "solution epochs run": epochs,
            "solution runs that hit max_epochs (fraction)": float(epochs == max_epochs),
            "Adam lr=1e-4 (mistake) test accuracy": verdicts.test_accuracy(slow["best_state"], ctx),
            "BEST_RTOL largest correct distance (grader's val loss of the best weights vs history min, relative)":
            abs(verdicts.val_loss(run["best_state"], ctx) - best) / max(1.0, best),
            "BEST_RTOL smallest mistake distance (last epoch's weights, relative)":
            abs(verdicts.val_loss(run["last_state"], ctx) - best) / max(1.0, best)}


# -- q11 and q13 --------------------------------------------------------------------------------------
def _adamw_by_hand(start):
    """AdamW written out: Adam on the loss, the parameters shrunk by lr * weight_decay before each step."""
    x = torch.tensor(start, dtype=torch.float32, requires_grad=True)
    adam = torch.optim.Adam([x], lr=ADAMW[2])
    path = [x.detach().clone().numpy()]
    for _ in range(100):
        adam.zero_grad()
        rosenbrock(x[0], x[1]).backward()
        with torch.no_grad():
            x.mul_(1 - ADAMW[2] * ADAMW[3]["weight_decay"])
        adam.step()
        path.append(x.detach().clone().numpy())
    return np.array(path)


def _adamw(ref, seed: int) -> dict[str, float]:
    ctx = _ctx(ref, seed, 11)
    start = tuple(float(v) for v in verdicts.inputs_start(ctx)["start"])
    _, class_name, lr, kwargs = ADAMW
    path, _ = optimize_with(getattr(torch.optim, class_name), lr, start=start, **kwargs)
    adam_l2, _ = optimize_with(torch.optim.Adam, lr, start=start, **kwargs)
    return {"AdamW path (PATH_ATOL) largest correct distance (Adam + decay by hand)":
            np.abs(_adamw_by_hand(start) - path).max(),
            "AdamW path (PATH_ATOL) smallest mistake distance (Adam's coupled weight_decay, or AdamW lr=0.001)":
            min(np.abs(adam_l2 - path).max(),
                np.abs(optimize_with(getattr(torch.optim, class_name), 1e-3, start=start, **kwargs)[0] - path).max())}


def binary_run(seed: int, lr: float = 0.001, epochs: int = 10) -> nn.Module:
    """The notebook's binary classifier (Classifier(10, [64, 32], 1) + Sigmoid, BCELoss, Adam) for a torch seed."""
    torch.manual_seed(seed)
    X = torch.randn(1000, 10)
    train, _ = split_dataset(TensorDataset(X, simple_labels(X)), 0.8, seed=0)
    loader = DataLoader(train, batch_size=32, shuffle=True)
    model = nn.Sequential(Classifier(10, [64, 32], 1), nn.Sigmoid())
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        train_epoch(model, loader, nn.BCELoss(), optimizer, torch.device("cpu"))
    return model.eval()


def _binary(ref, seed: int) -> dict[str, float]:
    X = verdicts.inputs_binary_points(_ctx(ref, seed, 13))["X"]
    truth = simple_labels(X)

    def accuracy(model):
        with torch.no_grad():
            return ((model(X) > 0.5).float() == truth).float().mean().item()
    return {"binary_model accuracy on 400 fresh points (solution)": accuracy(binary_run(seed)),
            "binary_model accuracy (mistake: Adam lr=1e-5)": accuracy(binary_run(seed, lr=1e-5)),
            "binary_model accuracy (mistake: untrained)": accuracy(binary_run(seed, epochs=0))}


def calibrate(seed: int) -> dict[str, float]:
    torch.set_num_threads(1)
    ref = verdicts.reference(None)
    measured = _pipeline(ref, seed)
    for part in (_rosenbrock, _roundtrip, _checkpoint, _train_epoch, _validate, _focal, _adamw, _binary):
        measured.update(part(ref, seed))
    measured.update(_datasets(ref))
    return {name: float(value) for name, value in measured.items()}
