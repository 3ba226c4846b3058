"""Calibration of tensors' thresholds and tolerances: `python -m autograder calibrate tensors`.

Per seed: question 8's training (reference.sequential_xor) for the solution and two realistic
mistakes, checked against `max_xor_error`; Exercise 29.5's final losses per hidden size, to show
that CONVERGED_LOSS sits in the gap between solved and stuck runs; and one grader draw of each
check's inputs, with the distance of correct answers (the solution and the honest variants of
tests/submissions/tensors.yml) and of the nearest realistic mistake in units of the verdict's
tolerance (`verdicts.excess`: a check fails above 1). Seed-independent distances (question 4's
sum-not-mean mistake, question 7's run) are measured too, so one table holds every number
docs/calibration.md quotes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from autograder.checks import Context
from autograder.config import load_config

from . import verdicts
from .reference import (accumulation_demo, center_columns, chain_gradient, f_prime, f_prime_autograd, grad_f,
                        linear_map, linear_model_run, relu_xor_losses, relu_xor_run, sequential_xor,
                        side_by_side_truth, torch_grads, xornet_run)

DEFAULT_SEEDS = 30


def _context(seed: int) -> Context:
    """One grader draw: a generator and the configured values, as grade.check_context builds them."""
    assignment = load_config().assignment("tensors")
    return Context(ref=None, thresholds=dict(assignment.thresholds), budget=dict(assignment.budget),
                   rng=np.random.default_rng([1, seed]))


def _f_prime_sigmoid_grad(x0: float) -> float:
    """An honest variant of f_prime_autograd: f = s(1 - s) with s = sigmoid(2x), by torch.autograd.grad."""
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    s = torch.sigmoid(2 * x)
    (dfdx,) = torch.autograd.grad(s * (1 - s), x)
    return dfdx.item()


def _f_prime_sigma_helper(x0: float) -> float:
    """An honest variant of f_prime_analytic: 2 sigma''(2x) through a sigma helper."""
    sigma = 1.0 / (1.0 + math.exp(-2.0 * x0))
    return 2 * sigma * (1 - sigma) * (1 - 2 * sigma)


def _tolerances(seed: int) -> dict[str, float]:
    ctx = _context(seed)
    xs = verdicts.inputs_xs(ctx)["xs"]
    truth = [f_prime(x) for x in xs]
    f32 = [f_prime_autograd(x, torch.float32) for x in xs]
    points = verdicts.inputs_points(ctx)["points"]
    fx = [[y, x + 2 * y] for x, y in points]
    thetas = verdicts.inputs_thetas(ctx)["thetas"]
    one = [3 * t ** 2 for t in thetas]
    measured = {
        "q6 DERIVATIVE_TOLERANCE largest correct distance (autograd float64, sigmoid form by autograd.grad)":
            max(verdicts.excess([f(x) for x in xs], truth, *verdicts.DERIVATIVE_TOLERANCE)
                for f in (f_prime_autograd, _f_prime_sigmoid_grad)),
        "q6 DERIVATIVE_TOLERANCE smallest mistake distance (autograd in float32)":
            verdicts.excess(f32, truth, *verdicts.DERIVATIVE_TOLERANCE),
        "q6 FLOAT32_TOLERANCE distance of the float32 mistake (at most 1: the 'close' message)":
            verdicts.excess(f32, truth, *verdicts.FLOAT32_TOLERANCE),
        "q6 DERIVATIVE_TOLERANCE largest correct distance (closed form through a sigma helper)":
            verdicts.excess([_f_prime_sigma_helper(x) for x in xs], truth, *verdicts.DERIVATIVE_TOLERANCE),
        "q6 DERIVATIVE_TOLERANCE smallest mistake distance (closed form doubled)":
            verdicts.excess([2 * t for t in truth], truth, *verdicts.DERIVATIVE_TOLERANCE),
        "q3 GRADIENT_TOLERANCE largest correct distance (grad_f)":
            verdicts.excess([grad_f(x, y) for x, y in points], fx, *verdicts.GRADIENT_TOLERANCE),
        "q3 GRADIENT_TOLERANCE smallest mistake distance (grad_f swapped)":
            verdicts.excess([grad_f(x, y)[::-1] for x, y in points], fx, *verdicts.GRADIENT_TOLERANCE),
        "q5 GRADIENT_TOLERANCE largest correct distance (gradient after the reset)":
            verdicts.excess([accumulation_demo(t)[2] for t in thetas], one, *verdicts.GRADIENT_TOLERANCE),
        "q5 GRADIENT_TOLERANCE smallest mistake distance (no reset)":
            verdicts.excess([accumulation_demo(t, reset=False)[2] for t in thetas], one,
                            *verdicts.GRADIENT_TOLERANCE),
    }
    # q10_1: each of the check's two runs against either reading of the grader's cached run; the
    # check fails when either run misses, so a mistake's distance is the larger of the two.
    correct, wrong = [], []
    torch.manual_seed(seed)  # the not-reseeded mistake continues whatever stream came before
    for args in verdicts.inputs_relu_run(ctx)["runs"]:
        truths = relu_xor_losses(*args)
        correct += [min(verdicts.excess(mine, t, *verdicts.RELU_TOLERANCE) for t in truths)
                    for mine in relu_xor_run(*args)]
        mistake = relu_xor_run(*args, reseed=False)[0]
        wrong.append(min(verdicts.excess(mistake, t, *verdicts.RELU_TOLERANCE) for t in truths))
    measured["q10_1 RELU_TOLERANCE largest correct distance (either reading)"] = max(correct)
    measured["q10_1 RELU_TOLERANCE smallest mistake distance (not reseeded)"] = max(wrong)
    measured.update(_skip_distances(seed, verdicts.inputs_skip(ctx)["x8"]))
    measured.update(_lesson_distances(ctx))
    return measured


def _lesson_distances(ctx: Context) -> dict[str, float]:
    """q12, q14 and q16 (OUTPUT_TOLERANCE): correct answers in float32 and in other idioms against the
    verdicts' float64 truth, and the nearest realistic mistake of each."""
    ops = verdicts.inputs_operations(ctx)
    X, W, b, A = (ops[k] for k in ("X", "W", "b", "A"))
    X64, W64, b64, A64 = (t.double() for t in (X, W, b, A))
    truth_linear, truth_centered = (X64 @ W64 + b64).numpy(), (A64 - A64.mean(dim=0)).numpy()
    chains = verdicts.inputs_lesson_autograd(ctx)["vectors"]
    eight = [8 * np.array(v) / len(v) for v in chains]
    points = verdicts.inputs_side_by_side(ctx)["points"]
    truth = [side_by_side_truth(x, y) for x, y in points]
    relu_first = [(x * y + max(x, 0) ** 2, y + 2 * max(x, 0), x) for x, y in points]
    tol = verdicts.OUTPUT_TOLERANCE
    return {
        "q12 OUTPUT_TOLERANCE largest correct distance (linear_map and center_columns in float32, torch.mm, keepdim)":
            max(verdicts.excess(linear_map(X, W, b).numpy(), truth_linear, *tol),
                verdicts.excess((torch.mm(X, W) + b.unsqueeze(0)).numpy(), truth_linear, *tol),
                verdicts.excess(center_columns(A).numpy(), truth_centered, *tol),
                verdicts.excess((A - A.mean(0, keepdim=True)).numpy(), truth_centered, *tol)),
        "q12 OUTPUT_TOLERANCE smallest mistake distance (centred by the mean of all entries)":
            verdicts.excess((A - A.mean()).numpy(), truth_centered, *tol),
        "q14 OUTPUT_TOLERANCE largest correct distance (x.grad in float32 against 8x/n)":
            max(verdicts.excess(chain_gradient(v)[0].numpy(), e, *tol) for v, e in zip(chains, eight)),
        "q14 OUTPUT_TOLERANCE smallest mistake distance (8x/3 typed in)":
            min(verdicts.excess(8 * np.array(v) / 3, e, *tol) for v, e in zip(chains, eight)),
        "q16 OUTPUT_TOLERANCE largest correct distance (torch float64 and float32)":
            max(verdicts.excess([torch_grads(x, y) for x, y in points], truth, *tol),
                verdicts.excess([_torch_grads_float32(x, y) for x, y in points], truth, *tol)),
        "q16 OUTPUT_TOLERANCE smallest mistake distance (relu(x) ** 2)":
            verdicts.excess(relu_first, truth, *tol),
    }


def _torch_grads_float32(x0: float, y0: float) -> tuple[float, float, float]:
    """An honest variant of torch_grads that keeps the default float32."""
    x = torch.tensor(float(x0), requires_grad=True)
    y = torch.tensor(float(y0), requires_grad=True)
    z = x * y + torch.relu(x ** 2)
    z.backward()
    return z.item(), x.grad.item(), y.grad.item()


def _skip_distances(seed: int, x: torch.Tensor) -> dict[str, float]:
    """q9: a SkipBlock(8, 16) written with nn.ReLU modules, and the skip-inside-the-ReLU mistake,
    against the verdict's formula on the same weights."""
    torch.manual_seed(seed)
    fc1, fc2, relu = nn.Linear(8, 16), nn.Linear(16, 8), nn.ReLU()
    state = {f"{name}.{key}": value.detach() for name, layer in (("fc1", fc1), ("fc2", fc2))
             for key, value in layer.state_dict().items()}
    truth = verdicts.skip_formula(state, x)
    with torch.no_grad():
        modules = relu(fc2(relu(fc1(x)))) + x
        inside = torch.relu(fc2(torch.relu(fc1(x))) + x)
    return {"q9 OUTPUT_TOLERANCE largest correct distance (nn.ReLU modules)":
                verdicts.excess(modules.numpy(), truth, *verdicts.OUTPUT_TOLERANCE),
            "q9 OUTPUT_TOLERANCE smallest mistake distance (skip inside the ReLU)":
                verdicts.excess(inside.numpy(), truth, *verdicts.OUTPUT_TOLERANCE)}


def _seed_independent() -> dict[str, float]:
    lin = linear_model_run()
    reference_losses = xornet_run()["losses"]
    modules = xornet_run(model=lambda: nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1), nn.Tanh()))
    return {
        "q4 LOSS_TOLERANCE smallest mistake distance (sum, not mean)":
            abs(8 * lin["loss"] - lin["loss"]) / (verdicts.LOSS_TOLERANCE * max(1.0, lin["loss"])),
        "q4 OUTPUT_TOLERANCE smallest mistake distance (W.grad of the sum, not mean)":
            verdicts.excess(8 * lin["W_grad"], lin["W_grad"], *verdicts.OUTPUT_TOLERANCE),
        "q7 XOR_LOSS_TOLERANCE largest correct distance (nn.Tanh modules)":
            verdicts.excess(modules["losses"], reference_losses, *verdicts.XOR_LOSS_TOLERANCE),
        "q7 XOR_LOSS_TOLERANCE smallest mistake distance (gradients never zeroed)":
            verdicts.excess(xornet_run(zero_grad=False)["losses"], reference_losses, *verdicts.XOR_LOSS_TOLERANCE),
        "max_xor_error: solution's largest prediction error at seed 42 (seed-independent)": sequential_xor(42),
    }


def calibrate(seed: int) -> dict[str, float]:
    torch.set_num_threads(1)
    measured = {
        "max_xor_error: solution's largest prediction error": sequential_xor(seed),
        "max_xor_error: mistake Adam lr=1e-4, largest prediction error": sequential_xor(seed, lr=1e-4),
        "max_xor_error: mistake no ReLU, largest prediction error": sequential_xor(seed, relu=False),
    }
    for hidden in verdicts.HIDDEN_SIZES:
        loss = relu_xor_run(hidden, seed, 500)[0]
        measured[f"CONVERGED_LOSS: hidden {hidden} final loss"] = loss
        measured[f"CONVERGED_LOSS: hidden {hidden} converged (1 if below CONVERGED_LOSS)"] = float(
            loss < verdicts.CONVERGED_LOSS)
    measured.update(_tolerances(seed))
    measured.update(_seed_independent())
    return measured
