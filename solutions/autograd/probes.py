"""Probes for `autograd`, run in the student's process. Each parameter names a student variable
(`inputs` is the check's fresh inputs: expressions and functions as plain data); the returned dict
of numbers is all its verdict sees. The grader's derivatives and PyTorch stay on the grader's side."""
from __future__ import annotations

import math
import random

from autograder.probe_tools import figure_summary

from .reference import evaluate, spec_function, value_unary


def no_data() -> dict:
    """For the static check, which reads the notebook's cells."""
    return dict(checked=True)


def central_differences(central_diff, best_h, errors, fig, inputs) -> dict:
    """`central_diff` on the grader's functions, with its default step and with h=1e-3."""
    default_h, coarse_h = [], []
    for spec in inputs["specs"]:
        f, x0 = spec_function(spec), spec[4]
        default_h.append(float(central_diff(f, x0)))
        coarse_h.append(float(central_diff(f, x0, h=1e-3)))
    sq = float(central_diff(lambda x: x ** 2 * math.sin(x), 2.0))
    return dict(default_h=default_h, coarse_h=coarse_h, sq=sq, best_h=float(best_h),
                errors=[float(e) for e in errors], figure=figure_summary(fig))


def program_results(Value, inputs) -> dict:
    """Values and gradients of every node of the grader's programs, built with the student's Value."""
    def made(op, node):
        if not isinstance(node, Value):
            raise TypeError(f"`{op}` returned a {type(node).__name__}, not a Value")

    results = []
    for prog in inputs["programs"]:
        try:
            nodes = evaluate(prog, lambda k, v: Value(v), value_unary, made)
            nodes[-1].backward()
            results.append({"data": [float(n.data) for n in nodes], "grads": [float(n.grad) for n in nodes]})
        except Exception as exc:
            results.append({"error": f"{type(exc).__name__}: {str(exc)[:120]}"})
    return dict(results=results)


def sigmoid_results(Value, sig_points, sig_autograd, sig_numerical, sigmoid_rel_error, inputs) -> dict:
    """The programs with the sigmoid op, and the notebook's sigmoid gradient check."""
    return dict(program_results(Value, inputs), points=[float(v) for v in sig_points],
                autograd=[float(v) for v in sig_autograd], numerical=[float(v) for v in sig_numerical],
                rel=float(sigmoid_rel_error))


def mlp_results(MLP, Neuron, Layer, inputs) -> dict:
    """Fresh MLPs of the grader's architectures and seeds: parameters, outputs, gradients of their sum."""
    del Neuron, Layer  # required names: the notebook defines all three classes
    results = []
    for spec in inputs["archs"]:
        random.seed(spec["seed"])
        model = MLP(spec["n_in"], spec["n_outs"])
        params = model.parameters()
        init = [float(p.data) for p in params]
        y = model(spec["x"])
        ys = y if isinstance(y, list) else [y]
        total = ys[0]
        for v in ys[1:]:
            total = total + v
        for p in params:
            p.grad = 0.0
        total.backward()
        results.append({"n_params": len(params), "params": init, "out": [float(v.data) for v in ys],
                        "single": not isinstance(y, list), "grads": [float(p.grad) for p in params]})
    return dict(results=results)


def xor_model(model, loss_history) -> dict:
    return dict(params=[float(p.data) for p in model.parameters()], loss_history=[float(v) for v in loss_history])


def gradient_check(rel_error, model_check, x_check, y_target, h, autograd_grads, numerical_grads, max_rel_error,
                   inputs) -> dict:
    """`rel_error` on the grader's arrays, and the notebook's gradient check of model_check."""
    return dict(rel=[float(rel_error(a, b)) for a, b in inputs["pairs"]],
                params=[float(p.data) for p in model_check.parameters()], x=[float(v) for v in x_check],
                target=float(y_target), h=float(h), autograd=[float(g) for g in autograd_grads],
                numerical=[float(g) for g in numerical_grads], max_rel_error=float(max_rel_error))


def dual_results(Dual, dual_sin, forward_partials, forward_mode_passes, reverse_mode_passes, inputs) -> dict:
    """Each program run once per input with Dual numbers (that input's dot seeded with 1), and
    forward_partials at the grader's points."""
    results = []
    for prog in inputs["programs"]:
        n_inputs = sum(1 for ins in prog if ins[0] == "input")
        runs = []
        for seed in range(n_inputs):
            out = evaluate(prog, lambda k, v: Dual(v, 1.0 if k == seed else 0.0), lambda op, d: dual_sin(d))[-1]
            runs.append((float(out.val), float(out.dot)))
        results.append({"val": runs[0][0], "dots": [r[1] for r in runs]})
    return dict(results=results, partials=[[float(v) for v in forward_partials(x, y)] for x, y in inputs["points"]],
                passes=[forward_mode_passes, reverse_mode_passes])


def operation_counts(Value, count_ops, inputs) -> dict:
    """`count_ops` on builders of the grader's programs (with the student's Value)."""
    def builder(prog):
        return lambda: evaluate(prog, lambda k, v: Value(v), value_unary)[-1]

    return dict(counts=[[int(v) for v in count_ops(builder(prog))] for prog in inputs["programs"]])


def cheap_gradient(xor_counts, cheap_ratio) -> dict:
    return dict(xor_counts=[int(v) for v in xor_counts], cheap_ratio=float(cheap_ratio))


def derived_operations(Value, value_neg, value_sub, value_truediv, value_radd, value_rmul, value_rsub,
                       value_rtruediv) -> dict:
    """Hand-off after q3: the reference derived operations (installed next to the student's Value, so
    they build on it) attached to the student's Value."""
    Value.__neg__, Value.__sub__, Value.__truediv__ = value_neg, value_sub, value_truediv
    Value.__radd__, Value.__rmul__ = value_radd, value_rmul
    Value.__rsub__, Value.__rtruediv__ = value_rsub, value_rtruediv
    return {}


def recount(Value, counting, GRAD_UPDATES) -> dict:
    """Hand-off after q12: the prompt's `counting` (installed next to the student's counters) wrapped around
    the original methods of Value, as the notebook's loop does."""
    for name in GRAD_UPDATES:
        method = getattr(Value, name)
        setattr(Value, name, counting(name, getattr(method, "uncounted", method)))
    return {}


def mode_costs(forward_mode_gradient, reverse_mode_gradient, inputs) -> dict:
    """Both modes on the grader's functions f: R^n -> R (programs of + and *) at the grader's points: the
    gradients and the operation counts that forward_mode_gradient and reverse_mode_gradient return."""
    results = []
    for prog in inputs["programs"]:
        xs = [float(ins[1]) for ins in prog if ins[0] == "input"]
        f = lambda leaves, prog=prog: evaluate(prog, lambda k, v: leaves[k], value_unary)[-1]
        try:
            forward, forward_ops = forward_mode_gradient(f, list(xs))
            reverse, reverse_ops = reverse_mode_gradient(f, list(xs))
            results.append({"forward": [float(g) for g in forward], "forward_ops": float(forward_ops),
                            "reverse": [float(g) for g in reverse], "reverse_ops": float(reverse_ops)})
        except Exception as exc:
            results.append({"error": f"{type(exc).__name__}: {str(exc)[:120]}"})
    return dict(results=results)


TABLE_KEYS = ("v3", "v4", "f", "bar_v3", "bar_v4", "df_dx", "df_dy")  # reverse_table's entries


def sin_results(Value, reverse_table, inputs) -> dict:
    """The programs with the sin op, and reverse_table at the grader's points."""
    tables = []
    for x, y in inputs["points"]:
        try:
            table = reverse_table(x, y)
            tables.append({key: float(table[key]) for key in TABLE_KEYS})
        except Exception as exc:
            tables.append({"error": f"{type(exc).__name__}: {str(exc)[:120]}"})
    return dict(program_results(Value, inputs), tables=tables)
