"""Calibrate `autograd`: the XOR threshold from reference.py's training run, and the checks'
tolerances as distances measured by verdicts.py on one grading draw per seed (largest distance of a
correct answer, smallest of the nearest mistake).

    python -m autograder calibrate autograd [--seeds N]
"""
from __future__ import annotations

import math
import random

import numpy as np
from matplotlib.figure import Figure

from autograder.checks import Context
from autograder.config import load_config

from . import probes, verdicts
from .reference import (GRADCHECK_SEED, GRADCHECK_SIZES, MLP, Dual, Value, XOR_Y, central_diff, counted, gradcheck_model,
                        mlp_loss_counts, seeded_init, squared_error, train_xor, value_radd, value_rmul, xor_loss, xor_loss_from)

DEFAULT_SEEDS = 30
GRADCHECK_STEPS = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4)
X_CHECK, Y_TARGET = [0.5, -0.3], 1.0  # the notebook's gradient-check point


def _context(seed: int) -> Context:
    """A verdict context like the grader's, with this seed's draw."""
    assignment = load_config().assignment("autograd")
    return Context(None, dict(assignment.thresholds), dict(assignment.budget), np.random.default_rng([1, seed]))


def xor(seed: int, epochs: int) -> dict[str, float]:
    """The reference training from random.seed(seed), measured as verdict_xor measures it."""
    model, _ = train_xor(seed, epochs)
    mse, preds = xor_loss_from([p.data for p in model.parameters()])
    return {"XOR final MSE (max_xor_loss)": mse,
            "XOR predictions with the target's sign (of 4)": float(np.sum(np.sign(preds) == np.sign(XOR_Y)))}


def central_differences(ctx: Context) -> dict[str, float]:
    """q1 on one draw of the grader's functions: the reference central_diff, and a one-sided difference."""
    ctx.inputs = verdicts.inputs_functions(ctx)
    one_sided = lambda f, x, h=1e-6: (f(x + h) - f(x)) / h
    measured = {}
    for name, function in (("correct", central_diff), ("one-sided mistake", one_sided)):
        data = probes.central_differences(function, 1e-6, [1.0], Figure(), ctx.inputs)
        coarse, exact = verdicts.central_distances(data, ctx)
        measured[f"COARSE_TOL {name} distance (h=1e-3 vs the grader's central difference)"] = coarse
        if name == "correct":
            measured["CENTRAL_TOL correct distance (default h vs the exact derivative)"] = exact
    return measured


def tanh_one_minus_t(self):
    """q2's nearest mistake: tanh's derivative as 1 - t instead of 1 - t²."""
    t = math.tanh(self.data)
    out = type(self)(t, (self,), "tanh")

    def _backward():
        self.grad += (1 - t) * out.grad
    out._backward = _backward
    return out


def engine(ctx: Context) -> dict[str, float]:
    """TOL on one q2 draw: the reference engine against PyTorch on every program, and the tanh (1 - t)
    mistake on the random graphs (the check fails if any graph of the draw is off)."""
    ctx.inputs = verdicts.inputs_core(ctx)
    programs, labels = ctx.inputs["programs"], ctx.inputs["labels"]
    correct = probes.program_results(Value, ctx.inputs)["results"]
    tanh = Value.tanh
    try:
        Value.tanh = tanh_one_minus_t
        broken = probes.program_results(Value, ctx.inputs)["results"]
    finally:
        Value.tanh = tanh
    return {"TOL largest correct distance (engine vs PyTorch, q2 draw)":
            max(max(verdicts.program_distances(p, r)) for p, r in zip(programs, correct)),
            "TOL smallest mistake distance (tanh derivative 1 - t, q2 random graphs)":
            max(verdicts.program_distances(p, r)[1] for p, r, label in zip(programs, broken, labels)
                if label == "random")}


def gradcheck() -> dict[str, float]:
    """q6 NUMERICAL_TOL per step h: the distance of the student's numerical gradients from the grader's, for
    the correct central difference (p +/- h in place, and through a helper setting p.data) and for forward
    and backward differences. It does not depend on the seed (model_check is seeded in the notebook)."""
    init = seeded_init(GRADCHECK_SEED, *GRADCHECK_SIZES)
    measured = {}
    for h in GRADCHECK_STEPS:
        model = gradcheck_model()
        loss = lambda: squared_error(model(X_CHECK), Y_TARGET).data
        base, inplace, helper, forward, backward = loss(), [], [], [], []
        for p in model.parameters():
            p.data += h
            plus = loss()
            p.data -= 2 * h
            minus = loss()
            p.data += h
            inplace.append((plus - minus) / (2 * h))
            p0 = p.data
            at = lambda v: (setattr(p, "data", v), loss())[1]
            helper.append((at(p0 + h) - at(p0 - h)) / (2 * h))
            forward.append((at(p0 + h) - base) / h)
            backward.append((base - at(p0 - h)) / h)
            p.data = p0
        distance = lambda grads: verdicts.numerical_distance(grads, init, X_CHECK, Y_TARGET, h)
        measured[f"NUMERICAL_TOL largest correct distance, h={h:.0e}"] = max(distance(inplace), distance(helper))
        measured[f"NUMERICAL_TOL forward-difference distance, h={h:.0e}"] = distance(forward)
        measured[f"NUMERICAL_TOL backward-difference distance, h={h:.0e}"] = distance(backward)
    return measured


def counts(seed: int) -> dict[str, float]:
    """q12: the XOR loss counted on the reference engine, against the grader's analytic counts."""
    random.seed(seed)
    model = MLP(2, [8, 1])
    forward, backward = counted(Value, lambda: xor_loss(model))
    grader = mlp_loss_counts(2, [8, 1], len(XOR_Y))
    return {"q12 XOR forward count, counted minus the grader's": forward - grader[0],
            "q12 XOR backward count, counted minus the grader's": backward - grader[1],
            "q12 cheap_ratio (backward / forward)": backward / forward,
            "q12 inverted ratio (forward / backward), the mistake": forward / backward}


DUAL_COUNT = {"ops": 0}


class CountedDual(Dual):
    """The notebook's q13 Dual with a counter."""

    def __add__(self, other):
        DUAL_COUNT["ops"] += 1
        out = Dual.__add__(self, other)
        return CountedDual(out.val, out.dot)

    def __mul__(self, other):
        DUAL_COUNT["ops"] += 1
        out = Dual.__mul__(self, other)
        return CountedDual(out.val, out.dot)

    __radd__ = __add__
    __rmul__ = __mul__


def forward_mode(seed_all=False, last_pass_only=False):
    """q13's forward_mode_gradient, or a mistake: every input seeded in every pass, or the counter reset
    before each pass (only the last pass counted)."""
    def forward_mode_gradient(f, xs):
        DUAL_COUNT["ops"] = 0
        gradient = []
        for i in range(len(xs)):
            if last_pass_only:
                DUAL_COUNT["ops"] = 0
            gradient.append(f([CountedDual(x, 1.0 if seed_all or j == i else 0.0) for j, x in enumerate(xs)]).dot)
        return gradient, DUAL_COUNT["ops"]
    return forward_mode_gradient


def reverse_mode_gradient(f, xs):
    """q13's reverse_mode_gradient on the reference engine."""
    leaves = [Value(x) for x in xs]
    n_forward, n_backward = counted(Value, lambda: f(leaves))
    return [v.grad for v in leaves], n_forward + n_backward


def sin_op(self, sign=1.0):
    """q15's sin op (sign=-1: the mistake d/dx sin x = -cos x)."""
    out = type(self)(math.sin(self.data), (self,), "sin")

    def _backward():
        self.grad += sign * math.cos(self.data) * out.grad
    out._backward = _backward
    return out


def modes(ctx: Context) -> dict[str, float]:
    """q13 on one draw: the gradients of both modes against PyTorch (TOL), the nearest mistake (every input
    seeded in one pass), and the counts against the grader's (exact)."""
    ctx.inputs = verdicts.inputs_modes(ctx)
    measured = {}
    for name, forward in (("correct", forward_mode()), ("all-seeded mistake", forward_mode(seed_all=True))):
        Value.__radd__, Value.__rmul__ = value_radd, value_rmul  # q3's reflected operations, as in the notebook
        try:
            data = probes.mode_costs(forward, reverse_mode_gradient, ctx.inputs)
        finally:
            del Value.__radd__, Value.__rmul__
        distances, count_gaps = [], []
        for prog, n, res in verdicts._mode_results(data, ctx):
            truth = verdicts.torch_program(prog)[1][:n]
            keys = ("forward", "reverse") if name == "correct" else ("forward",)
            distances.append(max(verdicts.relative_distance(a, b) for key in keys for a, b in zip(res[key], truth)))
            ops = [ins[0] for ins in prog if ins[0] != "input"]
            count_gaps.append(abs(res["forward_ops"] - n * len(ops)) +
                              abs(res["reverse_ops"] - len(ops) - sum(verdicts.N_UPDATES[op] for op in ops)))
        measured[f"q13 TOL {name} gradient distance (largest over the draw's functions)"] = max(distances)
        if name == "correct":
            measured["q13 counts, counted minus the grader's (absolute, summed over the draw)"] = sum(count_gaps)
    return measured


def sine(ctx: Context) -> dict[str, float]:
    """q15 on one draw: the sin op against PyTorch (TOL), and the -cos mistake on the single-op programs."""
    ctx.inputs = verdicts.inputs_sin(ctx)
    programs, labels = ctx.inputs["programs"], ctx.inputs["labels"]
    measured = {}
    for name, sign in (("correct", 1.0), ("-cos mistake", -1.0)):
        Value.sin = lambda self, sign=sign: sin_op(self, sign)
        try:
            results = probes.program_results(Value, ctx.inputs)["results"]
        finally:
            del Value.sin
        measured[f"q15 TOL {name} distance (sin programs)"] = max(
            max(verdicts.program_distances(p, r)) for p, r, label in zip(programs, results, labels) if label == "sin")
    return measured


def calibrate(seed: int) -> dict[str, float]:
    ctx = _context(seed)
    return {**xor(seed, int(ctx.budget["xor_epochs"])), **central_differences(ctx), **engine(ctx),
            **gradcheck(), **counts(seed), **modes(_context(seed)), **sine(_context(seed))}
