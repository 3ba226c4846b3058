"""Verdicts for `autograd`: the grader sends expressions and functions as plain data, the probes
evaluate them with the student's code and return numbers, and the verdicts compare those numbers
with the grader's own analytic derivatives and PyTorch (float64, reference.py), never in the notebook."""
from __future__ import annotations

import ast
import math
import re

import numpy as np

from autograder.checks import Check, Context, Fail, Handoff, expect, integer, number, numbers, parse

from . import probes
from .reference import (BINARY, DERIVED_OPERATIONS, MLP, N_UPDATES, REFLECTED, WITH_CONST, XOR_X, XOR_Y, Dual, Layer,
                        Neuron, Value, apply, central_diff, central_grads, count_ops, counting, dual_sin,
                        flat_grads, float_unary, mlp_forward, reverse_table_truth,
                        mlp_loss_counts, operands, rel_error, seeded_init, spec_derivative, spec_function,
                        torch_program, true_grads, unpack, xor_loss_from)

# Calibrated in docs/calibration.md (`python -m autograder calibrate autograd`).
TOL = 1e-6  # values and gradients agree with PyTorch float64 to 1e-6 (relative to max(1, |reference|))
FORBIDDEN_MODULES = ("torch", "jax", "tensorflow", "autograd", "sympy", "functorch")  # may not be imported
FORBIDDEN_NAMES = ("torch", "jax", "tensorflow", "functorch")  # may not be used as names or import strings
H_WINDOW = (1e-7, 3e-5)  # where the best central-difference step lies (cube root of eps ~ 6e-6)
# q6: the student's central differences against the grader's, with the student's step h. A correct one
# differs by roundoff, about eps*|L|/h (4.4e-16/h here: 2.2e-10 at h = 1e-6, 4.4e-9 at 1e-7); a forward
# difference by about h*|L''|/2 (1.0e-6 at h = 1e-6, 9.1e-8 at 1e-7). Their geometric mean is ~2e-8 for
# every h, so a fixed 2e-8 sits between them with a margin of >= 4.5x each way on the allowed steps
# (45x at the notebook's h = 1e-6); below h = 1e-7 the two overlap, hence the window.
NUMERICAL_TOL = 2e-8
H_GRADCHECK = (1e-7, 1e-4)
CENTRAL_TOL = 1e-6  # q1: central_diff with its default step against the exact derivative
COARSE_TOL = 1e-8   # q1: central_diff with h=1e-3 against the grader's central difference


def reference(assignment):
    return None


def close(a: float, b: float, tol: float = TOL) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


def relative_distance(a: float, b: float) -> float:
    """|a - b| / max(1, |b|): what `close` compares with its tolerance."""
    return abs(a - b) / max(1.0, abs(b))


# -- random expression programs (the instruction set is reference.py's) ----------------------------
CORE_OPS = ["add", "mul", "addc", "mulc", "pow", "relu", "exp", "log", "tanh"]
DERIVED_OPS = ["neg", "sub", "div", "subc", "divc", "radd", "rmul", "rsub", "rdiv"]


def forward_value(ins: list, vals: list[float]) -> float:
    """The value of one instruction in plain floats (used to keep random programs in their domain)."""
    return apply(ins, vals, float_unary)


def _candidate(rng: np.random.Generator, op: str, n: int, vals: list[float]) -> list | None:
    """A random instruction for `op` over nodes 0..n-1, or None if it would leave the safe domain."""
    pick = lambda: int(n - 1 - min(n - 1, rng.geometric(0.35) - 1)) if rng.random() < 0.7 else int(rng.integers(n))
    i = pick()
    const = float(np.round(rng.uniform(-2.5, 2.5), 3)) or 1.5
    if op in BINARY:
        ins = [op, i, i if rng.random() < 0.15 else int(rng.integers(n))]
    elif op == "pow":
        ins = [op, i, [2, 3, -1, 2.0, 0.5, 1.5, -0.5, -2][int(rng.integers(8))]]
    elif op in REFLECTED:
        ins = [op, const, i]
    elif op in WITH_CONST:
        ins = [op, i, const]
    else:
        ins = [op, i]
    v = vals[ins[2] if op in REFLECTED else ins[1]]
    if op == "log" and v < 0.1 or op == "exp" and v > 3 or op == "sigmoid" and abs(v) > 8:
        return None
    if op == "pow" and (ins[2] < 0 and abs(v) < 0.3 or ins[2] != int(ins[2]) and v < 0.1):
        return None
    if op in ("div", "rdiv") and abs(vals[ins[2]]) < 0.3 or op == "relu" and abs(v) < 1e-3:
        return None
    try:
        out = forward_value(ins, vals)
    except (ValueError, OverflowError, ZeroDivisionError):
        return None
    return ins if math.isfinite(out) and abs(out) < 30 else None


def random_program(rng: np.random.Generator, ops: list[str], n_inputs: int, n_ops: int,
                   must: list[str] = ()) -> list:
    """A random graph over `ops`: nodes are reused (diamonds), and every node feeds the output."""
    prog = [["input", float(np.round(rng.uniform(-2, 2), 4)) or 0.5] for _ in range(n_inputs)]
    vals = [p[1] for p in prog]
    wanted = list(must) + [ops[int(rng.integers(len(ops)))] for _ in range(n_ops)]
    for op in wanted:
        for _ in range(40):
            ins = _candidate(rng, op, len(prog), vals)
            if ins is not None:
                prog.append(ins)
                vals.append(forward_value(ins, vals))
                break
    used = {k for ins in prog[n_inputs:] for k in operands(ins)}
    for k in range(len(prog) - 1):
        if k not in used and k != len(prog) - 1:
            prog.append(["add", len(prog) - 1, k])
            vals.append(vals[-1] + vals[k])
    return prog


def _single_op_programs(rng: np.random.Generator, ops: list[str]) -> tuple[list, list]:
    """Two programs per op. The inputs of the first are negative and of the second positive (log, and
    pow on the negative side, excepted), so sign-dependent derivatives such as relu's step are exercised
    on every draw, not on a lucky one."""
    programs, labels = [], []
    for op in ops:
        for sign in (-1.0, 1.0):
            prog = None
            while prog is None:
                a, b = [float(np.round(rng.uniform(-2, 2), 4)) or 0.7 for _ in range(2)]
                if op != "log" and not (op == "pow" and sign < 0):
                    a, b = sign * max(abs(a), 0.05), sign * max(abs(b), 0.05)
                vals = [a, b]
                base = [["input", a], ["input", b]]
                ins = _candidate(rng, op, 2, vals)
                if ins is not None and ins[0] in BINARY and ins[1] == ins[2]:
                    ins = [op, 0, 1] if _candidate_ok(op, [op, 0, 1], vals) else None
                if ins is not None:
                    prog = base + [ins]
            programs.append(prog)
            labels.append(op)
    return programs, labels


def _candidate_ok(op, ins, vals) -> bool:
    try:
        out = forward_value(ins, vals)
    except (ValueError, OverflowError, ZeroDivisionError):
        return False
    return math.isfinite(out) and (op != "div" or abs(vals[ins[2]]) > 0.3)


WORKED = [
    # x*y + relu(x^2) at (2, 3): dz/dx = 7, dz/dy = 2
    [["input", 2.0], ["input", 3.0], ["mul", 0, 1], ["mul", 0, 0], ["relu", 3], ["add", 2, 4]],
    # sigmoid through exp: e^x * (e^x + 1)^-1 at 1.5
    [["input", 1.5], ["exp", 0], ["exp", 0], ["addc", 2, 1], ["pow", 3, -1], ["mul", 1, 4]],
    # tanh at 0.7
    [["input", 0.7], ["tanh", 0]],
    # x^3 log x + exp(-x) at 2
    [["input", 2.0], ["pow", 0, 3], ["log", 0], ["mul", 1, 2], ["mulc", 0, -1], ["exp", 4], ["add", 3, 5]],
]
N_RANDOM_CORE = 12  # random graphs per grading draw in q2


def inputs_core(ctx: Context) -> dict:
    programs, labels = _single_op_programs(ctx.rng, CORE_OPS)
    programs += WORKED
    labels += ["worked"] * len(WORKED)
    for k in range(N_RANDOM_CORE):
        programs.append(random_program(ctx.rng, CORE_OPS, int(ctx.rng.integers(2, 5)), int(ctx.rng.integers(8, 16)),
                                       must=[CORE_OPS[k % len(CORE_OPS)]]))
        labels.append("random")
    return {"programs": programs, "labels": labels}


def inputs_derived(ctx: Context) -> dict:
    programs, labels = _single_op_programs(ctx.rng, DERIVED_OPS)
    for k in range(10):
        programs.append(random_program(ctx.rng, DERIVED_OPS + ["add", "mul", "tanh", "exp"],
                                       int(ctx.rng.integers(2, 4)), int(ctx.rng.integers(6, 12)),
                                       must=[DERIVED_OPS[k % len(DERIVED_OPS)]]))
        labels.append("random")
    return {"programs": programs, "labels": labels}


def program_distances(prog: list, res: dict) -> tuple[float, float]:
    """The largest relative distance (see `close`) of the values and of the gradients of one probed program
    from PyTorch's."""
    vals, grads = torch_program(prog)
    mine_v = numbers(res.get("data"), "values", min_len=len(prog))
    mine_g = numbers(res.get("grads"), "gradients", min_len=len(prog))
    expect(len(mine_v) == len(prog) and len(mine_g) == len(prog), "the probe could not evaluate your Value")
    return (max(relative_distance(a, b) for a, b in zip(mine_v, vals)),
            max(relative_distance(a, b) for a, b in zip(mine_g, grads)))


def _compare(data: dict, ctx: Context, which: set[str]) -> None:
    """Compare the probe's results for the programs whose label is in `which` with PyTorch."""
    results = data.get("results")
    programs, labels = ctx.inputs["programs"], ctx.inputs["labels"]
    expect(isinstance(results, list) and len(results) == len(programs), "the probe could not evaluate your Value")
    for prog, label, res in zip(programs, labels, results):
        if label not in which and not (label in CORE_OPS + DERIVED_OPS + ["sigmoid"] and "op" in which):
            continue
        where = f"`{label}`" if label not in ("random", "worked") else (
            "one of the chapter's worked examples" if label == "worked" else
            "a random expression graph (nodes used several times, diamond-shaped paths)")
        expect(isinstance(res, dict), "the probe could not evaluate your Value")
        if "error" in res:
            raise Fail(f"{where} raised {str(res['error'])[:160]}")
        values, gradients = program_distances(prog, res)
        if values > TOL:
            raise Fail(f"the forward value of {where} is wrong")
        if gradients > TOL:
            if label == "random":
                raise Fail(f"the gradients of {where} differ from PyTorch's: gradients from every path must be "
                           "summed (`+=` in each closure), and backward() must call each node's `_backward` once, "
                           "in reverse topological order, after every node that uses it")
            raise Fail(f"the gradient of {where} is wrong")


def verdict_single_ops(data: dict, ctx: Context) -> None:
    _compare(data, ctx, {"op"})


def verdict_worked(data: dict, ctx: Context) -> None:
    _compare(data, ctx, {"worked"})


def verdict_random(data: dict, ctx: Context) -> None:
    _compare(data, ctx, {"random"})


# -- static check: no autodiff library ----------------------------------------------------------
def _forbidden(source: str) -> str | None:
    lines = [("" if line.lstrip().startswith(("%", "!")) else line) for line in source.splitlines()]
    try:
        tree = parse("\n".join(lines))  # the grader's lock: verdicts run in several threads
    except SyntaxError:
        hit = re.search(r"^\s*(?:import|from)\s+(" + "|".join(FORBIDDEN_MODULES) + r")\b", source, re.M)
        return hit.group(1) if hit else None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    return name.split(".")[0]
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            return node.id
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.split(".")[0] in FORBIDDEN_NAMES and re.fullmatch(r"[A-Za-z_][\w.]*", node.value):
                return node.value.split(".")[0]
    return None


def verdict_no_torch(data: dict, ctx: Context) -> None:
    for source in ctx.cells:
        bad = _forbidden(source)
        if bad:
            raise Fail(f"the notebook uses `{bad}`: this assignment builds automatic differentiation from "
                       "scratch, so the engine must compute every value and gradient itself with plain Python "
                       f"and `math` (the grader compares it with PyTorch). Remove `{bad}` from every cell")


# -- q1: central differences --------------------------------------------------------------------
def inputs_functions(ctx: Context) -> dict:
    specs = []
    for _ in range(6):
        a, b, c = (float(np.round(v, 3)) for v in ctx.rng.uniform(-2, 2, size=3))
        w = float(np.round(ctx.rng.uniform(0.5, 2.0), 3))
        x0 = float(np.round(ctx.rng.uniform(-2, 2), 3))
        specs.append([a, b, c, w, x0])
    return {"specs": specs}


def central_distances(data: dict, ctx: Context) -> tuple[float, float]:
    """The largest relative distance of `central_diff` with h=1e-3 from the grader's central difference, and
    of `central_diff` with its default step from the exact derivative, over the grader's functions."""
    specs = ctx.inputs["specs"]
    default_h = numbers(data.get("default_h"), "central_diff results", min_len=len(specs))
    coarse_h = numbers(data.get("coarse_h"), "central_diff results", min_len=len(specs))
    coarse = max(relative_distance(mine, central_diff(spec_function(spec), spec[4], 1e-3))
                 for spec, mine in zip(specs, coarse_h))
    exact = max(relative_distance(mine, spec_derivative(spec)) for spec, mine in zip(specs, default_h))
    return coarse, exact


def verdict_central(data: dict, ctx: Context) -> None:
    coarse, exact = central_distances(data, ctx)
    expect(coarse <= COARSE_TOL,
           "with h=1e-3, `central_diff` does not return (f(x + h) - f(x - h)) / (2h): is it a one-sided "
           "difference, or is the step ignored?")
    expect(exact <= CENTRAL_TOL, "with its default step, `central_diff` is not within 1e-6 of the "
                                 "exact derivative on the grader's functions")
    sq = number(data.get("sq"), "central_diff(x**2 sin x, 2)")
    expect(close(sq, 4 * math.sin(2) + 4 * math.cos(2), CENTRAL_TOL), "`central_diff` on x² sin x at x = 2 is not "
                                                                      "within 1e-6 of the symbolic derivative")


def verdict_best_h(data: dict, ctx: Context) -> None:
    errors = numbers(data.get("errors"), "errors", min_len=100)
    h_values = np.logspace(-15, 0, 100)
    expect(len(errors) == 100, "compute one error per step in `h_values` (100 of them)")
    best = number(data.get("best_h"), "best_h")
    expect(abs(best - h_values[int(np.argmin(errors))]) <= 1e-9 * best,
           "`best_h` should be the step in `h_values` with the smallest error")
    expect(H_WINDOW[0] <= best <= H_WINDOW[1],
           "`best_h` is not where a central difference's error is smallest: compute the errors with "
           "`central_diff` (a central difference balances roundoff ~eps/h against truncation ~h²)")
    expect(errors[0] > 1e3 * errors.min() and errors[-1] > 1e3 * errors.min(),
           "the errors should be large at both ends of `h_values` (roundoff at tiny h, truncation at large h)")
    fig = data.get("figure")
    expect(isinstance(fig, dict) and isinstance(fig.get("axes"), list) and fig["axes"],
           "plot the errors against h in `fig`")
    axes = [ax for ax in fig["axes"] if isinstance(ax, dict)]
    # a line (plot/loglog) or a scatter of the 100 errors: count the points of both
    curves = [ax for ax in axes
              if 100 in [line.get("n") for line in ax.get("lines") or [] if isinstance(line, dict)]
              + list(ax.get("collection_points") or [])]
    expect(bool(curves), "plot the 100 errors against `h_values` (a line or a scatter)")
    expect(any(ax.get("xscale") == "log" and ax.get("yscale") == "log" for ax in curves),
           "use log scales on both axes (ax.loglog, or ax.set_xscale('log') and ax.set_yscale('log'))")


# -- q4: Neuron, Layer, MLP ---------------------------------------------------------------------
ARCHS = [(2, [4, 1], 17), (2, [8, 1], 33), (3, [5, 4, 2], None)]


def inputs_mlp(ctx: Context) -> dict:
    return {"archs": [{"n_in": n_in, "n_outs": outs, "seed": int(ctx.rng.integers(1000)),
                       "x": [float(v) for v in np.round(ctx.rng.uniform(-1.5, 1.5, size=n_in), 4)]}
                      for n_in, outs, _ in ARCHS]}


def verdict_mlp(data: dict, ctx: Context) -> None:
    results = data.get("results")
    expect(isinstance(results, list) and len(results) == len(ARCHS), "the probe could not build your MLP")
    for (n_in, outs, count), spec, res in zip(ARCHS, ctx.inputs["archs"], results):
        expect(isinstance(res, dict), "the probe could not build your MLP")
        n = integer(res.get("n_params"), "len(model.parameters())")
        expected_n = sum((a + 1) * b for a, b in zip([n_in] + outs[:-1], outs))
        expect(n == expected_n, f"MLP({n_in}, {outs}).parameters() has the wrong length: each neuron has one "
                                "weight per input and one bias")
        if count is not None:
            expect(n == count, "wrong parameter count")
        params = numbers(res.get("params"), "parameters", min_len=n)
        layers = unpack(params, n_in, outs)
        expect(all(np.all(np.abs(W) <= 1) and np.all(b == 0) for W, b in layers),
               "weights should start uniform in [-1, 1] and biases at 0, listed neuron by neuron "
               "(weights, then bias) and layer by layer in parameters()")
        expect((res.get("single") is True) == (outs[-1] == 1),
               "a layer with one neuron should return that Value itself, a wider layer a list of Values")
        y, tparams = mlp_forward(layers, spec["x"])
        mine = numbers(res.get("out"), "outputs", min_len=outs[-1])
        expect(len(mine) == outs[-1] and all(close(a, b) for a, b in zip(mine, y.tolist())),
               f"MLP({n_in}, {outs}) computes the wrong output: tanh on every hidden layer, and no "
               "nonlinearity on the last layer")
        y.sum().backward()
        grads = numbers(res.get("grads"), "gradients", min_len=n)
        expect(all(close(a, b) for a, b in zip(grads, flat_grads(tparams))),
               "the gradients of the MLP's output with respect to its parameters are wrong: build the "
               "neuron from Value operations so that backward() reaches every weight")


# -- q5: XOR ---------------------------------------------------------------------------------------
def verdict_xor(data: dict, ctx: Context) -> None:
    params = numbers(data.get("params"), "model.parameters()", min_len=33)
    expect(len(params) == 33, "`model` should be MLP(2, [8, 1]) (33 parameters)")
    loss, preds = xor_loss_from(params)
    expect(bool(np.all(np.sign(preds) == np.sign(XOR_Y))),
           "the grader ran your trained model on the four XOR inputs: not every prediction has the target's sign")
    limit = ctx.thresholds["max_xor_loss"]
    expect(loss <= limit, f"the grader measured an MSE of {loss:.4f} with your trained weights; at most {limit} "
                          "is required")


def verdict_history(data: dict, ctx: Context) -> None:
    history = numbers(data.get("loss_history"), "loss_history")
    epochs = int(ctx.budget["xor_epochs"])
    expect(len(history) == epochs, f"record one loss per epoch, for XOR_EPOCHS = {epochs} epochs")
    expect(history[-1] < 0.5 * history[0], "the recorded loss should go down during training")


# -- q6: gradient check ----------------------------------------------------------------------------
def inputs_gradcheck(ctx: Context) -> dict:
    pairs = []
    for n in (3, 5, 8):
        a = ctx.rng.normal(size=n) * 10.0 ** ctx.rng.integers(-3, 2)
        b = a + ctx.rng.normal(size=n) * 1e-5
        b[0] = -a[0] if n == 5 else b[0]
        pairs.append([[float(v) for v in a], [float(v) for v in b]])
    pairs.append([[0.0, 1e-12, 2.0], [0.0, -1e-12, 2.0 + 1e-9]])
    return {"pairs": pairs}


def verdict_rel_error(data: dict, ctx: Context) -> None:
    mine = numbers(data.get("rel"), "rel_error results", min_len=len(ctx.inputs["pairs"]))
    for (a, b), value in zip(ctx.inputs["pairs"], mine):
        expect(close(value, rel_error(a, b), 1e-9) or abs(value - rel_error(a, b)) < 1e-15,
               "`rel_error` does not compute |a - b| / max(1e-8, |a| + |b|) elementwise and return the "
               "maximum over the elements")


def numerical_distance(numerical, init, x, target, h: float) -> float:
    """The largest |student's numerical gradient - grader's central difference| over the parameters."""
    return max(abs(a - b) for a, b in zip(numerical, central_grads(init, x, target, h)))


def verdict_gradcheck(data: dict, ctx: Context) -> None:
    init = seeded_init(123, 2, [4, 1])
    params = numbers(data.get("params"), "model_check.parameters()", min_len=17)
    expect(len(params) == 17, "`model_check` should be MLP(2, [4, 1])")
    expect(np.allclose(params, init, rtol=0, atol=1e-12),
           "after the check, model_check's parameters are not the ones it started with: restore each p.data")
    x = numbers(data.get("x"), "x_check")
    target = number(data.get("target"), "y_target")
    truth = true_grads(init, x, target)
    auto = numbers(data.get("autograd"), "autograd_grads", min_len=17)
    num = numbers(data.get("numerical"), "numerical_grads", min_len=17)
    expect(len(auto) == 17 and len(num) == 17, "list one gradient per parameter, in parameters() order")
    expect(all(close(a, b) for a, b in zip(auto, truth)), "`autograd_grads` are not the engine's gradients of "
                                                          "the loss (did you zero the grads and call backward()?)")
    h = number(data.get("h"), "h")
    expect(H_GRADCHECK[0] <= h <= H_GRADCHECK[1], f"use a step h between {H_GRADCHECK[0]:g} and {H_GRADCHECK[1]:g}")
    expect(numerical_distance(num, init, x, target, h) <= NUMERICAL_TOL,
           "`numerical_grads` are not central differences (L(p + h) - L(p - h)) / 2h, one parameter at a time: "
           "a forward difference (L(p + h) - L(p)) / h is off by about h")
    reported = number(data.get("max_rel_error"), "max_rel_error")
    recomputed = rel_error(auto, num)
    expect(abs(reported - recomputed) <= 1e-9 * max(1e-12, recomputed) + 1e-15,
           "`max_rel_error` should be rel_error(autograd_grads, numerical_grads)")
    expect(recomputed < ctx.thresholds["max_grad_rel_error"], "the relative error is not below the threshold")


# -- q7: sigmoid --------------------------------------------------------------------------------
def inputs_sigmoid(ctx: Context) -> dict:
    programs, labels = [], []
    for _ in range(3):
        x = float(np.round(ctx.rng.uniform(-4, 4), 4))
        programs.append([["input", x], ["sigmoid", 0]])
        labels.append("sigmoid")
    for _ in range(6):
        programs.append(random_program(ctx.rng, ["sigmoid", "add", "mul", "mulc", "tanh"], 2,
                                       int(ctx.rng.integers(5, 10)), must=["sigmoid", "sigmoid"]))
        labels.append("random")
    return {"programs": programs, "labels": labels}


def verdict_sigmoid_op(data: dict, ctx: Context) -> None:
    _compare(data, ctx, {"sigmoid", "random"})


def verdict_sigmoid_check(data: dict, ctx: Context) -> None:
    points = numbers(data.get("points"), "sig_points", min_len=3)
    auto = numbers(data.get("autograd"), "sig_autograd", min_len=len(points))
    num = numbers(data.get("numerical"), "sig_numerical", min_len=len(points))
    expect(len(auto) == len(points) == len(num), "one autograd and one numerical derivative per point")
    sig = 1 / (1 + np.exp(-points))
    expect(np.allclose(auto, sig * (1 - sig), rtol=1e-9, atol=1e-12),
           "`sig_autograd` are not the gradients your sigmoid op's backward() gives")
    expect(np.allclose(num, sig * (1 - sig), rtol=1e-6, atol=1e-9),
           "`sig_numerical` are not central differences of the sigmoid's forward value")
    rel = number(data.get("rel"), "sigmoid_rel_error")
    expect(abs(rel - rel_error(auto, num)) <= 1e-9 * rel_error(auto, num) + 1e-15,
           "`sigmoid_rel_error` should be rel_error(sig_autograd, sig_numerical)")
    expect(rel < ctx.thresholds["max_grad_rel_error"], "the gradient check did not pass")


# -- q8: dual numbers -----------------------------------------------------------------------------
DUAL_OPS = ["add", "mul", "addc", "mulc", "radd", "rmul", "sin"]


def inputs_dual(ctx: Context) -> dict:
    programs = [random_program(ctx.rng, DUAL_OPS, int(ctx.rng.integers(2, 4)), int(ctx.rng.integers(6, 12)),
                               must=["sin", "mul", "radd", "rmul"]) for _ in range(5)]
    points = [[float(v) for v in np.round(ctx.rng.uniform(-2, 2, size=2), 4)] for _ in range(4)]
    return {"programs": programs, "points": points}


def verdict_dual_ops(data: dict, ctx: Context) -> None:
    results = data.get("results")
    expect(isinstance(results, list) and len(results) == len(ctx.inputs["programs"]), "could not run your Dual")
    for prog, res in zip(ctx.inputs["programs"], results):
        expect(isinstance(res, dict), "could not run your Dual")
        vals, grads = torch_program(prog)
        n_inputs = sum(1 for ins in prog if ins[0] == "input")
        expect(close(number(res.get("val"), "val"), vals[-1]), "the `val` of a Dual expression is wrong")
        dots = numbers(res.get("dots"), "dot", min_len=n_inputs)
        expect(all(close(a, b) for a, b in zip(dots, grads[:n_inputs])),
               "the `dot` of a Dual expression is not its derivative: check the product rule and dual_sin")


def verdict_partials(data: dict, ctx: Context) -> None:
    got = data.get("partials")
    expect(isinstance(got, list) and len(got) == len(ctx.inputs["points"]), "forward_partials should return two numbers")
    for (x, y), pair in zip(ctx.inputs["points"], got):
        d = numbers(pair, "forward_partials(x, y)", min_len=2)
        expect(len(d) == 2, "forward_partials should return (df/dx, df/dy)")
        expect(close(d[0], 2 * x * y + y * math.cos(x * y)) and close(d[1], x * x + x * math.cos(x * y)),
               "forward_partials does not give the partial derivatives of x²y + sin(xy)")
    passes = data.get("passes")
    expect(isinstance(passes, list) and len(passes) == 2, "set forward_mode_passes and reverse_mode_passes")
    expect(integer(passes[0], "forward_mode_passes") == 2 and integer(passes[1], "reverse_mode_passes") == 1,
           "how many passes does each mode need for the full gradient of f: R² → R?")


# -- q12: operation counts ----------------------------------------------------------------------
def inputs_counts(ctx: Context) -> dict:
    return {"programs": [random_program(ctx.rng, CORE_OPS, int(ctx.rng.integers(2, 4)), int(ctx.rng.integers(5, 14)))
                         for _ in range(5)]}


def verdict_counts(data: dict, ctx: Context) -> None:
    counts = data.get("counts")
    expect(isinstance(counts, list) and len(counts) == len(ctx.inputs["programs"]), "count_ops should return two counts")
    for prog, pair in zip(ctx.inputs["programs"], counts):
        expect(isinstance(pair, list) and len(pair) == 2, "count_ops should return (forward, backward)")
        ops = [ins[0] for ins in prog if ins[0] != "input"]
        n_fwd, n_bwd = integer(pair[0], "forward count"), integer(pair[1], "backward count")
        expect(n_fwd == len(ops), "the forward count should be one per operation the expression performs")
        expect(n_bwd == sum(N_UPDATES[op] for op in ops),
               "the backward count should be the number of gradient updates (`grad +=`) backward() performs")


def verdict_cheap(data: dict, ctx: Context) -> None:
    fwd, bwd = mlp_loss_counts(2, [8, 1], len(XOR_X))
    counts = data.get("xor_counts")
    expect(isinstance(counts, list) and len(counts) == 2, "`xor_counts` should be count_ops(xor_loss)")
    expect([integer(counts[0], "xor_counts[0]"), integer(counts[1], "xor_counts[1]")] == [fwd, bwd],
           "`xor_counts` is not (forward, backward) of the XOR loss: set xor_counts = count_ops(xor_loss)")
    ratio = number(data.get("cheap_ratio"), "cheap_ratio")
    expect(abs(ratio - bwd / fwd) <= 1e-9 * bwd / fwd,
           "`cheap_ratio` should be the backward count divided by the forward count (backward / forward), "
           "the factor the cheap gradient principle bounds")


# -- q13: forward against reverse mode on f: R^n -> R ---------------------------------------------
MODE_OPS = ["add", "mul", "addc", "mulc", "radd", "rmul"]  # what both Dual and Value support


def inputs_modes(ctx: Context) -> dict:
    """Three functions of + and * with the grader's number of inputs (one below 4, where forward mode is the
    cheaper, and two above) at the grader's point."""
    programs = []
    for low, high in ((1, 4), (5, 12), (12, 30)):
        n = int(ctx.rng.integers(low, high))
        programs.append(random_program(ctx.rng, MODE_OPS, n, int(ctx.rng.integers(n + 2, 2 * n + 6)),
                                       must=["mul", "radd", "rmul", "mulc"]))
    return {"programs": programs}


def _mode_results(data: dict, ctx: Context):
    """(program, n inputs, student's result) for each of the grader's functions."""
    results = data.get("results")
    programs = ctx.inputs["programs"]
    expect(isinstance(results, list) and len(results) == len(programs), "could not run your two gradient functions")
    for prog, res in zip(programs, results):
        expect(isinstance(res, dict), "could not run your two gradient functions")
        if "error" in res:
            raise Fail(f"on one of the grader's functions, your gradient functions raised {str(res['error'])[:160]}")
        yield prog, sum(1 for ins in prog if ins[0] == "input"), res


def verdict_mode_gradients(data: dict, ctx: Context) -> None:
    for prog, n, res in _mode_results(data, ctx):
        truth = torch_program(prog)[1][:n]
        forward = numbers(res.get("forward"), "forward_mode_gradient's gradient", min_len=n)
        expect(len(forward) == n and all(close(a, b) for a, b in zip(forward, truth)),
               "forward_mode_gradient does not give the gradient of the grader's f: make one pass per input, "
               "seed that input's dot with 1 and every other input's with 0, and keep the output's dot")
        reverse = numbers(res.get("reverse"), "reverse_mode_gradient's gradient", min_len=n)
        expect(len(reverse) == n and all(close(a, b) for a, b in zip(reverse, truth)),
               "reverse_mode_gradient does not give the gradient of the grader's f: make the inputs Values, "
               "call backward() once on the output and read each input's grad")


def verdict_mode_counts(data: dict, ctx: Context) -> None:
    for prog, n, res in _mode_results(data, ctx):
        ops = [ins[0] for ins in prog if ins[0] != "input"]
        expect(integer(res.get("forward_ops"), "forward mode's operations") == n * len(ops),
               "forward mode makes one pass per input: its count should be n passes of every operation of f, the "
               "CountedDual operations of all the passes together")
        expect(integer(res.get("reverse_ops"), "reverse mode's operations") == len(ops) + sum(N_UPDATES[op] for op in ops),
               "reverse mode's count should be one forward pass plus one backward pass: count_ops's forward "
               "operations + backward gradient updates")


# -- q15: sin, and the chapter's worked example node by node --------------------------------------
def inputs_sin(ctx: Context) -> dict:
    programs, labels = [], []
    for _ in range(3):
        programs.append([["input", float(np.round(ctx.rng.uniform(-4, 4), 4))], ["sin", 0]])
        labels.append("sin")
    for _ in range(5):
        programs.append(random_program(ctx.rng, ["sin", "add", "mul", "mulc", "tanh"], 2,
                                       int(ctx.rng.integers(5, 10)), must=["sin", "sin"]))
        labels.append("random")
    points = [[float(v) for v in np.round(ctx.rng.uniform(-3, 3, size=2), 4)] for _ in range(3)]
    return {"programs": programs, "labels": labels, "points": points}


def verdict_sin_op(data: dict, ctx: Context) -> None:
    _compare(data, ctx, {"sin", "random"})


TABLE_MESSAGES = {
    "v3": "the forward value `v3` (x + y) is wrong", "v4": "the forward value `v4` (sin x) is wrong",
    "f": "the forward value `f` ((x + y) sin x) is wrong",
    "bar_v3": "`bar_v3` should be the adjoint of v3, df/dv3: v3's grad after f.backward()",
    "bar_v4": "`bar_v4` should be the adjoint of v4, df/dv4: v4's grad after f.backward()",
    "df_dx": "`df_dx` is wrong: x is used twice (in x + y and in sin x), so its adjoint sums both paths, "
             "bar_v3 + bar_v4 cos x: read x's grad after one f.backward()",
    "df_dy": "`df_dy` should be y's grad after f.backward()",
}


def verdict_reverse_table(data: dict, ctx: Context) -> None:
    tables = data.get("tables")
    expect(isinstance(tables, list) and len(tables) == len(ctx.inputs["points"]), "could not run reverse_table")
    for (x, y), table in zip(ctx.inputs["points"], tables):
        expect(isinstance(table, dict), "could not run reverse_table")
        if "error" in table:
            raise Fail(f"reverse_table at the grader's point raised {str(table['error'])[:160]}")
        truth = reverse_table_truth(x, y)
        for key in probes.TABLE_KEYS:
            expect(close(number(table.get(key), f"reverse_table's {key}"), truth[key]), TABLE_MESSAGES[key])


CHECKS = [
    Check("q1", "central_diff matches central differences and exact derivatives of the grader's functions",
          probes.central_differences, verdict_central, inputs=inputs_functions),
    Check("q1", "best_h from the error curve, plotted on log-log axes", probes.central_differences, verdict_best_h,
          inputs=inputs_functions),
    Check("q2", "each operation's value and local gradient, against PyTorch", probes.program_results,
          verdict_single_ops, inputs=inputs_core),
    Check("q2", "the chapter's worked examples", probes.program_results, verdict_worked, inputs=inputs_core),
    Check("q2", "random expression graphs with reused nodes, against PyTorch (float64, 1e-6)", probes.program_results,
          verdict_random, inputs=inputs_core, hint="x + x and x * x must give a gradient of 2 and 2x"),
    Check("q2", "the engine does not use torch", probes.no_data, verdict_no_torch),
    Check("q3", "neg, sub, truediv and the reflected operations, with Values and numbers", probes.program_results,
          verdict_single_ops, inputs=inputs_derived),
    Check("q3", "random expressions mixing derived operations and numbers, against PyTorch", probes.program_results,
          verdict_random, inputs=inputs_derived),
    Check("q4", "MLP parameters, outputs and gradients for several architectures", probes.mlp_results, verdict_mlp,
          inputs=inputs_mlp),
    Check("q5", "the trained XOR model, measured by the grader", probes.xor_model, verdict_xor,
          hint="train by gradient descent: zero every grad, loss.backward(), then p.data -= learning_rate * p.grad"),
    Check("q5", "the loss history", probes.xor_model, verdict_history),
    Check("q6", "rel_error on the grader's arrays", probes.gradient_check, verdict_rel_error, inputs=inputs_gradcheck),
    Check("q6", "autograd and numerical gradients of model_check", probes.gradient_check, verdict_gradcheck,
          inputs=inputs_gradcheck),
    Check("q7", "the sigmoid op inside random expressions, against PyTorch", probes.sigmoid_results,
          verdict_sigmoid_op, inputs=inputs_sigmoid),
    Check("q7", "the sigmoid gradient check", probes.sigmoid_results, verdict_sigmoid_check, inputs=inputs_sigmoid),
    Check("q8", "Dual arithmetic on random expressions", probes.dual_results, verdict_dual_ops, inputs=inputs_dual),
    Check("q8", "forward_partials of x²y + sin(xy) at the grader's points", probes.dual_results, verdict_partials,
          inputs=inputs_dual),
    Check("q12", "forward and backward operation counts", probes.operation_counts, verdict_counts,
          inputs=inputs_counts),
    Check("q12", "the cheap gradient ratio of the XOR loss", probes.cheap_gradient, verdict_cheap),
    Check("q13", "the gradient by n forward passes and by one backward pass, on the grader's f: R^n -> R",
          probes.mode_costs, verdict_mode_gradients, inputs=inputs_modes),
    Check("q13", "the operations counted in each mode, against the grader's counts", probes.mode_costs,
          verdict_mode_counts, inputs=inputs_modes),
    Check("q15", "the sin op inside random expressions, against PyTorch", probes.sin_results, verdict_sin_op,
          inputs=inputs_sin),
    Check("q15", "the forward values and adjoints of (x + y) sin x at the grader's points", probes.sin_results,
          verdict_reverse_table, inputs=inputs_sin),
]


# Hand-offs: once a question is graded, what its prompt fully specifies replaces the student's
# answer, so one mistake costs only its own question's points. The classes and functions are
# defined in the student's namespace from their source, so they build on the notebook's `Value`.
HANDOFFS = {
    "q1": Handoff(install=(central_diff,)),
    "q2": Handoff(install=(Value,)),
    "q3": Handoff(install=DERIVED_OPERATIONS, run=probes.derived_operations),
    "q4": Handoff(install=(Neuron, Layer, MLP)),
    "q6": Handoff(install=(rel_error,)),
    "q8": Handoff(install=(Dual, dual_sin)),
    "q12": Handoff(install=(counting, count_ops), run=probes.recount),
}
