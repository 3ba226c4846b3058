"""Calibration of spiral's thresholds and tolerances: `python -m autograder calibrate spiral`.

Per seed: the prompt's training run (reference.train_reference) for the solution and for realistic
mistakes, scored by the verdicts' own measures; and one grader draw of train_step's batches for
STEP_TOLERANCE. The seed-independent tolerances (X_TOLERANCE, PERCENT_TOLERANCE) are measured too,
so one table holds every number docs/calibration.md quotes.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from autograder import wire
from autograder.checks import Context
from autograder.data import spiral_arrays

from . import verdicts
from .reference import SpiralNet, reference_steps, train_reference, train_step

DEFAULT_SEEDS = 30


def _as_probed(data: dict) -> dict:
    """What a verdict receives: the data after the wire format."""
    return wire.decode(wire.encode(data))


# train_step variants: the correct ones must stay within STEP_TOLERANCE, the mistakes beyond it.
def in_order(*calls: str, scale_by_batch: bool = False):
    """A train_step that calls the optimiser's zero_grad/step and the loss's backward in this order."""
    def step(model, X, y, criterion, optimizer):
        loss = criterion(model(X), y) / (len(y) if scale_by_batch else 1)
        for call in calls:
            loss.backward() if call == "backward" else getattr(optimizer, call)()
        return loss
    step.__name__ = "_".join(calls)
    return step


def functional_model_zero(m, X, y, c, o):
    m.zero_grad()
    loss = nn.functional.cross_entropy(m(X), y)
    loss.backward()
    o.step()
    return loss


CORRECT_STEPS = (train_step, functional_model_zero, in_order("backward", "step", "zero_grad"))
no_zero_grad, step_before_backward = in_order("backward", "step"), in_order("zero_grad", "step", "backward")
WRONG_STEPS = (no_zero_grad, step_before_backward, in_order("backward", "zero_grad", "step"),
               in_order("zero_grad", "backward", "step", scale_by_batch=True))  # Session 7's divide-by-N habit


def _step_distance(step, ctx: Context) -> float:
    losses, states = reference_steps(ctx.inputs, step)
    params, loss_gaps, _ = verdicts.step_distances(_as_probed({"losses": losses, "states": states}), ctx)
    return max(params + loss_gaps)


def _seed_independent(ref: dict) -> dict[str, float]:
    X, _, split = spiral_arrays()
    rows = X[split == "train"]  # X_train_np.T
    target = ref["X_train"].numpy()
    correct = [torch.tensor(rows, dtype=torch.float32), torch.from_numpy(np.ascontiguousarray(rows)).float(),
               torch.tensor(rows.T).T.float()]
    wrong = [torch.tensor(rows).half().float(), torch.tensor(rows[:, ::-1].copy()).float(),
             torch.tensor(np.round(rows, 2)).float()]
    exact = [100 * k / 67 for k in range(68)]
    mean32 = [(torch.arange(67) < k).float().mean().item() * 100 for k in range(68)]
    return {
        "X_TOLERANCE largest correct distance (float32 casts)":
            max(float(np.abs(v.numpy() - target).max()) for v in correct),
        "X_TOLERANCE smallest mistake distance (half precision, swapped, rounded)":
            min(float(np.abs(v.numpy() - target).max()) for v in wrong),
        "PERCENT_TOLERANCE largest correct distance (float32 mean * 100)":
            max(abs(a - b) for a, b in zip(mean32, exact)),
        "PERCENT_TOLERANCE smallest mistake distance (fraction, not percent)": min(e - e / 100 for e in exact[57:]),
    }


def calibrate(seed: int) -> dict[str, float]:
    ref = verdicts.reference(None)
    ctx = Context(ref=ref, thresholds={}, budget={}, rng=np.random.default_rng([1, seed]))
    ctx.inputs = verdicts.inputs_steps(ctx)
    measured = {
        "STEP_TOLERANCE largest correct distance": max(_step_distance(s, ctx) for s in CORRECT_STEPS),
        "STEP_TOLERANCE smallest mistake distance": min(_step_distance(s, ctx) for s in WRONG_STEPS),
    }
    runs = {"solution": train_reference(ref, seed),
            "softmax at the end": train_reference(ref, seed, make_model=lambda: nn.Sequential(SpiralNet(),
                                                                                                nn.Softmax(dim=1))),
            "no zero_grad": train_reference(ref, seed, step=no_zero_grad),
            "step before backward": train_reference(ref, seed, step=step_before_backward)}
    for name, run in runs.items():
        # A softmax at the end adds no weights: the grader measures SpiralNet's without it.
        restored = _as_probed({"state": {k.removeprefix("0."): v for k, v in run["best_state"].items()}})
        model = verdicts.model_from_state(restored["state"])
        measured[f"{name}: test accuracy"] = verdicts.test_accuracy(model, ctx)
        measured[f"{name}: validation loss of the restored weights"] = verdicts.restored_val_loss(restored, ctx)
    solution = runs["solution"]
    best = min(solution["val_losses"])
    measured["RESTORE_TOLERANCE largest correct distance (relative)"] = abs(
        verdicts.restored_val_loss(_as_probed({"state": solution["best_state"]}), ctx) - best) / max(1.0, best)
    measured["RESTORE_TOLERANCE smallest mistake distance (last epoch's weights)"] = abs(
        verdicts.restored_val_loss(_as_probed({"state": solution["last_state"]}), ctx) - best)
    measured.update(_seed_independent(ref))
    return measured
