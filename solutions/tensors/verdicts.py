"""Verdicts for `tensors`: the probes' plain data compared with the truth recomputed here (the
grader's own seeded runs, closed-form derivatives, reference.py's modules loaded with the student's
weights)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from autograder.checks import (Check, Context, Fail, Handoff, array, expect, expect_device_choice, integer, number,
                               numbers)
from autograder.checks import state_dict as as_state_dict
from autograder.probe_tools import device_choice
from autograder.wire import Array

from . import probes
from .reference import (RNG_LOCK, X_XOR, Y_XOR, XORNet, f_prime, linear_model_run, relu_xor_losses, sequential_net,
                        side_by_side_truth, simple_net_formula, skip_formula, xor_data, xornet_run)

HIDDEN_SIZES = (2, 4, 8, 16)
CONVERGED_LOSS = 0.01
XORNET_SHAPES = {"hidden.weight": (2, 2), "hidden.bias": (2,), "output.weight": (1, 2), "output.bias": (1,)}
SEQ_LAYERS = ["Linear", "ReLU", "Linear"]
# Comparison tolerances (rtol, atol), calibrated in docs/calibration.md (`python -m autograder calibrate tensors`).
GRADIENT_TOLERANCE = (1e-4, 1e-6)     # q3 grad_f / grad_quadratic, q5 accumulation_demo
DERIVATIVE_TOLERANCE = (1e-6, 1e-9)   # q6: against the float64 truth
FLOAT32_TOLERANCE = (1e-3, 1e-6)      # q6: "close but not float64" message
RELU_TOLERANCE = (1e-3, 1e-5)         # q10_1: train_relu_xor against either reading of the grader's run
XOR_LOSS_TOLERANCE = (1e-3, 1e-5)     # q7: the losses of the chapter's run
OUTPUT_TOLERANCE = (1e-4, 1e-5)       # q4 gradients, q7/q9/q11 outputs recomputed from the student's weights
LOSS_TOLERANCE = 1e-5                 # q4: relative |loss - grader's loss|


def reference(assignment):
    with RNG_LOCK:
        torch.manual_seed(0)
        t_int = torch.randint(0, 10, (2, 3, 4)).numpy()
        linear = linear_model_run()
        xornet = xornet_run()
    return {"t_int": t_int, "linear": linear, "xornet": xornet}


def close(a, b, rtol=GRADIENT_TOLERANCE[0], atol=GRADIENT_TOLERANCE[1]) -> bool:
    return bool(np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol))


def excess(values, truth, rtol: float, atol: float) -> float:
    """max |v - t| / (atol + rtol |t|): the distance in units of the tolerance; `close` passes exactly
    when it is <= 1."""
    values, truth = np.asarray(values, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    return float(np.max(np.abs(values - truth) / (atol + rtol * np.abs(truth))))


def either_reading(value: float, hidden: int, seed: int, epochs: int) -> bool:
    """`value` is one of the two readings of the grader's run (see reference.relu_xor_run)."""
    rtol, atol = RELU_TOLERANCE
    return any(close(value, truth, rtol=rtol, atol=atol) for truth in relu_xor_losses(hidden, seed, epochs))


def _autograd_runs(value, name: str, n: int) -> None:
    """Every call of `name` ran autograd's backward engine at least once (counted by probes.counted)."""
    expect(isinstance(value, list) and len(value) == n and all(isinstance(v, int) and not isinstance(v, bool)
                                                                for v in value), f"could not call `{name}`")
    expect(all(v >= 1 for v in value),
           f"`{name}` should compute the gradient with autograd (.backward() or torch.autograd.grad), "
           "not from a formula worked out by hand")


def _pairs(value, name: str, width: int) -> np.ndarray:
    expect(isinstance(value, list), f"`{name}` should return {width} numbers")
    rows = []
    for item in value:
        items = list(item) if isinstance(item, (list, tuple)) else [item]
        expect(len(items) == width, f"`{name}` should return {width} numbers")
        rows.append([number(v, f"a value returned by {name}") for v in items])
    return np.array(rows, dtype=np.float64)


# -- q1: Exercise 29.1 --------------------------------------------------------------------------

def verdict_int_tensor(data: dict, ctx: Context) -> None:
    t_int = array(data.get("t_int"), "t_int", kind="tensor", shape=(2, 3, 4))
    expect(data["t_int"].dtype == "torch.int64", "`t_int` should be an integer tensor from torch.randint")
    expect(int(t_int.min()) >= 0 and int(t_int.max()) <= 9, "the values of `t_int` should lie between 0 and 9")
    expect(np.array_equal(t_int, ctx.ref["t_int"]),
           "`t_int` is not the torch.randint draw right after torch.manual_seed(0) with values 0 to 9 "
           "(is the upper bound exclusive?)")
    t_float = array(data.get("t_float"), "t_float", kind="tensor", dtype="torch.float32", shape=(2, 3, 4))
    expect(np.array_equal(t_float, t_int.astype(np.float32)), "`t_float` should hold the values of `t_int`")


def verdict_int_attributes(data: dict, ctx: Context) -> None:
    expect(data.get("t_shape") == [2, 3, 4], "`t_shape` should be t_int.shape")
    expect(data.get("t_dtype") == "torch.int64", "`t_dtype` should be t_int.dtype")
    expect(data.get("t_device") == "cpu", "`t_device` should be t_int.device")
    expect(integer(data.get("t_numel"), "t_numel") == 24, "`t_numel` should be t_int.numel()")


# -- q2: NumPy interop --------------------------------------------------------------------------
def inputs_array(ctx: Context) -> dict:
    return {"a": ctx.rng.normal(size=(3, 4))}


def verdict_interop(data: dict, ctx: Context) -> None:
    original = ctx.inputs["a"]
    shared = array(data.get("shared"), "shared_tensor(a)", kind="tensor", dtype="torch.float64", shape=original.shape)
    copied = array(data.get("copied"), "copied_tensor(a)", kind="tensor", dtype="torch.float64", shape=original.shape)
    expect(np.array_equal(shared, original + 1.0),
           "`shared_tensor(a)` did not change when `a` changed: it made a copy instead of sharing memory")
    expect(np.array_equal(copied, original),
           "`copied_tensor(a)` changed when `a` changed: it shares memory instead of copying")


def verdict_dtypes(data: dict, ctx: Context) -> None:
    expect(data.get("int_dtype") == "torch.int64", "`default_int_dtype` is not the dtype of torch.tensor([1, 2, 3])")
    expect(data.get("float_dtype") == "torch.float32",
           "`default_float_dtype` is not the dtype of torch.tensor([1.0, 2.0, 3.0])")


# -- q3: scalar autograd ------------------------------------------------------------------------
def inputs_points(ctx: Context) -> dict:
    return {"points": [[round(float(v), 3) for v in ctx.rng.uniform(-3, 3, size=2)] for _ in range(3)]}


def verdict_scalar(data: dict, ctx: Context) -> None:
    points = np.array(ctx.inputs["points"], dtype=np.float64)
    f = _pairs(data.get("f"), "grad_f", 2)
    q = _pairs(data.get("q"), "grad_quadratic", 1)[:, 0]
    x, y = points[:, 0], points[:, 1]
    expect(close(f[:, 0], y) and close(f[:, 1], x + 2 * y), "`grad_f` does not return (df/dx, df/dy) of (x + y) * y")
    expect(close(q, 2 * x + 2), "`grad_quadratic` does not return the derivative of x**2 + 2x + 1")


def verdict_scalar_autograd(data: dict, ctx: Context) -> None:
    n = len(ctx.inputs["points"])
    _autograd_runs(data.get("f_runs"), "grad_f", n)
    _autograd_runs(data.get("q_runs"), "grad_quadratic", n)


# -- q4: tensor autograd ------------------------------------------------------------------------

def verdict_linear_draws(data: dict, ctx: Context) -> None:
    ref = ctx.ref["linear"]
    for name, shape in (("W", (3, 2)), ("b", (2,)), ("X", (4, 3)), ("y_true", (4, 2))):
        values = array(data.get(name), name, kind="tensor", dtype="torch.float32", shape=shape)
        expect(close(values, ref[name], atol=1e-6),
               f"`{name}` is not the chapter's draw: torch.randn right after torch.manual_seed(42), "
               "in the order W, b, X, y_true")
    expect(data["W"].requires_grad and data["b"].requires_grad, "W and b need requires_grad=True")


def verdict_linear_grads(data: dict, ctx: Context) -> None:
    ref = ctx.ref["linear"]
    expect(abs(number(data.get("loss"), "loss") - ref["loss"]) <= LOSS_TOLERANCE * max(1.0, abs(ref["loss"])),
           "`loss` is not the mean squared error of X @ W + b against y_true")
    expect(data.get("W_grad") is not None and data.get("b_grad") is not None, "call loss.backward()")
    W_grad = array(data.get("W_grad"), "W.grad", shape=(3, 2))
    b_grad = array(data.get("b_grad"), "b.grad", shape=(2,))
    expect(close(W_grad, ref["W_grad"], *OUTPUT_TOLERANCE) and close(b_grad, ref["b_grad"], *OUTPUT_TOLERANCE),
           "`W.grad` and `b.grad` are not the gradients of the mean squared error (one backward call)")


# -- q5: the accumulation trap ------------------------------------------------------------------
def inputs_thetas(ctx: Context) -> dict:
    return {"thetas": [round(float(v), 3) for v in ctx.rng.uniform(0.5, 3.0, size=2) * ctx.rng.choice([-1, 1], 2)]}


def verdict_accumulation(data: dict, ctx: Context) -> None:
    thetas = np.array(ctx.inputs["thetas"], dtype=np.float64)
    results = _pairs(data.get("results"), "accumulation_demo", 3)
    one = 3 * thetas ** 2
    expect(close(results[:, 0], one), "the first gradient is not d(theta**3)/dtheta")
    expect(close(results[:, 1], 2 * one), "the second gradient should be the sum of two backward passes")
    expect(close(results[:, 2], one),
           "after `theta.grad = None` the gradient should be that of one backward pass again")


# -- q6: Exercise 29.2 --------------------------------------------------------------------------
SMALL_X = (0.0005, 0.005)  # inputs_xs always draws four points with |x| in this range


def inputs_xs(ctx: Context) -> dict:
    """Three points anywhere in [-2.5, 2.5] and, on every draw, four with 0.0005 <= |x| <= 0.005. Near 0
    the derivative is small (about -x/2) while float32 rounding is not, so there a float32 autograd
    answer misses the float64 truth: one such point catches it 95% of the time, four of them on all
    but about 5 in a million draws (calibrate.py)."""
    wide = ctx.rng.uniform(-2.5, 2.5, size=3)
    small = ctx.rng.uniform(SMALL_X[0], SMALL_X[1], size=4) * ctx.rng.choice([-1.0, 1.0], size=4)
    xs = [round(float(v), 4) for v in wide] + [round(float(v), 6) for v in small]
    return {"xs": [xs[i] for i in ctx.rng.permutation(len(xs))]}


def verdict_derivative_autograd(data: dict, ctx: Context) -> None:
    truth = np.array([f_prime(x) for x in ctx.inputs["xs"]])
    values = numbers(data.get("autograd"), "f_prime_autograd values")
    expect(values.size == truth.size, f"`f_prime_autograd` should return one float per point")
    if not close(values, truth, *DERIVATIVE_TOLERANCE):
        expect(not close(values, truth, *FLOAT32_TOLERANCE),
               "`f_prime_autograd` is close to the derivative but not to float64 precision: near x = 0 it "
               "is off by float32 rounding; create the input tensor with dtype=torch.float64")
        raise Fail("`f_prime_autograd` does not return the derivative of exp(2x) / (1 + exp(2x))**2 "
                   "(computed in torch.float64)")
    _autograd_runs(data.get("autograd_runs"), "f_prime_autograd", truth.size)


def verdict_derivative_analytic(data: dict, ctx: Context) -> None:
    truth = np.array([f_prime(x) for x in ctx.inputs["xs"]])
    values = numbers(data.get("analytic"), "f_prime_analytic values")
    expect(values.size == truth.size and close(values, truth, *DERIVATIVE_TOLERANCE),
           "`f_prime_analytic` does not match the derivative: f(x) is sigma'(2x), so apply the chain rule once")


# -- q7: XORNet ---------------------------------------------------------------------------------
def inputs_pairs(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.uniform(-2, 2, size=(32, 2)).astype(np.float32))}


def verdict_xornet(data: dict, ctx: Context) -> None:
    expect(integer(data.get("n_params"), "parameter count") == 9, "XORNet() should have 9 parameters")
    shapes = data.get("shapes")
    expect(isinstance(shapes, dict) and {k: tuple(v) for k, v in shapes.items()
                                         if isinstance(v, list)} == XORNET_SHAPES,
           "XORNet's parameters should be hidden.weight (2, 2), hidden.bias (2,), output.weight (1, 2), output.bias (1,)")
    model = XORNet()
    model.load_state_dict(as_state_dict(data.get("state"), "XORNet().state_dict()", XORNET_SHAPES))
    out = array(data.get("out"), "XORNet's output", kind="tensor", shape=(32, 1))
    with torch.no_grad():
        expected = model(ctx.inputs["x"]).numpy()
    expect(close(out, expected, atol=1e-5), "XORNet's forward is not tanh(output(tanh(hidden(x))))")


def verdict_xor_training(data: dict, ctx: Context) -> None:
    ref = ctx.ref["xornet"]
    X, _, Y = xor_data()
    for name, given in (("X_xor", X), ("Y_xor_tanh", Y)):
        value = data.get(name)
        expect(isinstance(value, Array) and value.shape == tuple(given.shape)
               and np.array_equal(value.values, given.numpy()),
               f"`{name}` is not the given XOR data any more: train on the given X_xor and Y_xor_tanh "
               "without rescaling or overwriting them")
    losses = numbers(data.get("losses"), "losses")
    expect(losses.size == 500, "record one loss per epoch for 500 epochs")
    expect(close(losses, ref["losses"], *XOR_LOSS_TOLERANCE),
           "the losses differ from the chapter's run: torch.manual_seed(42), XORNet(), SGD with lr=0.5, "
           "and zero the gradients before each backward pass")
    state = as_state_dict(data.get("state"), "model.state_dict()", XORNET_SHAPES)
    expect(all(close(state[k].numpy(), ref["state"][k], rtol=1e-3, atol=1e-4) for k in XORNET_SHAPES),
           "the trained weights differ from the chapter's run")
    final = array(data.get("final_pred"), "final_pred", kind="tensor", shape=(4, 1))
    expect(close(final, ref["final_pred"], rtol=1e-3, atol=1e-4), "`final_pred` should be model(X_xor) after training")


# -- q8: nn.Sequential --------------------------------------------------------------------------

def _sequential_model(data: dict) -> nn.Module:
    """The reference Linear(2, 8) -> ReLU -> Linear(8, 1) holding the student's weights.

    The layers are compared by type and the weights copied by order and shape, so any layer names
    (numbered, or named with an OrderedDict) are fine.
    """
    expect(data.get("kind") == "Sequential", "`model_seq` should be an nn.Sequential")
    layers = data.get("layers")
    expect(isinstance(layers, list) and all(isinstance(t, str) for t in layers), "could not read model_seq's layers")
    if layers != SEQ_LAYERS:
        missing = [t for t in dict.fromkeys(SEQ_LAYERS) if layers.count(t) < SEQ_LAYERS.count(t)]
        extra = [t for t in dict.fromkeys(layers) if layers.count(t) > SEQ_LAYERS.count(t)]
        problem = "; ".join([f"{', '.join(missing)} missing"] * bool(missing)
                            + [f"an extra {', '.join(extra)}"] * bool(extra)) or "the order is wrong"
        raise Fail(f"`model_seq`'s layers are {' -> '.join(layers) or 'none'}; expected "
                   f"{' -> '.join(SEQ_LAYERS)} ({problem})")
    expect(integer(data.get("n_params"), "parameter count") == 33, "`model_seq` should have 33 parameters")
    model = sequential_net()
    params = data.get("params")
    targets = list(model.parameters())
    expect(isinstance(params, list) and len(params) == len(targets),
           "`model_seq` should have 4 parameter tensors: Linear(2, 8)'s weight and bias, then Linear(8, 1)'s")
    with torch.no_grad():
        for i, (value, target) in enumerate(zip(params, targets)):
            values = array(value, f"parameter {i} of model_seq", shape=tuple(target.shape))
            expect(values.dtype.kind == "f", "the parameters of `model_seq` should be floats")
            target.copy_(torch.from_numpy(np.array(values, dtype=np.float32)))
    return model


def _sequential_predictions(data: dict) -> np.ndarray:
    with torch.no_grad():
        return _sequential_model(data)(torch.tensor(X_XOR)).numpy()


def verdict_sequential(data: dict, ctx: Context) -> None:
    preds = _sequential_predictions(data)
    mine = array(data.get("seq_pred"), "seq_pred", kind="tensor", shape=(4, 1))
    expect(close(mine, preds, atol=1e-5), "`seq_pred` should be model_seq(X_xor), computed after training")


def verdict_sequential_learned(data: dict, ctx: Context) -> None:
    preds = _sequential_predictions(data)
    margin = ctx.thresholds["max_xor_error"]
    worst = float(np.abs(preds - np.array(Y_XOR)).max())
    expect(worst <= margin, f"with your weights the grader measured a prediction {worst:.3f} away from its "
                            f"target; each must be within MAX_XOR_ERROR = {margin}: train as asked "
                            "(Adam with lr=0.01, nn.MSELoss(), 1000 epochs on Y_xor)")


# -- q9: the skip connection --------------------------------------------------------------------
def inputs_skip(ctx: Context) -> dict:
    return {"x8": torch.from_numpy(ctx.rng.normal(size=(16, 8)).astype(np.float32)),
            "x5": torch.from_numpy(ctx.rng.normal(size=(8, 5)).astype(np.float32))}


def verdict_skip(data: dict, ctx: Context) -> None:
    expect(data.get("out_skip_shape") == [4, 8], "`out_skip` should have the input's shape (4, 8)")
    for key, dim, hidden in (("8", 8, 16), ("5", 5, 3)):
        shapes = {"fc1.weight": (hidden, dim), "fc1.bias": (hidden,), "fc2.weight": (dim, hidden), "fc2.bias": (dim,)}
        state = as_state_dict(data.get(f"state{key}"), f"SkipBlock({dim}, {hidden}).state_dict()", shapes)
        x = ctx.inputs[f"x{key}"]
        out = array(data.get(f"out{key}"), f"SkipBlock({dim}, {hidden})'s output", kind="tensor", shape=tuple(x.shape))
        expect(close(out, skip_formula(state, x), *OUTPUT_TOLERANCE),
               f"SkipBlock({dim}, {hidden}) does not compute ReLU(W2 ReLU(W1 x + b1) + b2) + x with its own weights")


# -- q10_1: Exercise 29.5 -----------------------------------------------------------------------
def inputs_relu_run(ctx: Context) -> dict:
    """A fresh run for train_relu_xor, and which seed of the table to rerun for each hidden size."""
    n_seeds = int(ctx.budget["n_seeds"])
    runs = [[int(ctx.rng.choice([3, 5, 6])), int(ctx.rng.integers(100, 10_000)), int(ctx.rng.integers(40, 80))]
            for _ in range(2)]
    return {"runs": runs, "table_seeds": [int(ctx.rng.integers(0, n_seeds)) for _ in HIDDEN_SIZES]}


def _table(data: dict, n_seeds: int) -> tuple[dict, dict]:
    losses, rates = data.get("final_losses"), data.get("convergence_rate")
    keys = sorted(str(h) for h in HIDDEN_SIZES)
    expect(isinstance(losses, dict) and sorted(losses) == keys, "`final_losses` should have one entry per hidden size")
    expect(isinstance(rates, dict) and sorted(rates) == keys, "`convergence_rate` should have one entry per hidden size")
    losses = {h: numbers(losses[str(h)], f"final_losses[{h}]") for h in HIDDEN_SIZES}
    rates = {h: number(rates[str(h)], f"convergence_rate[{h}]") for h in HIDDEN_SIZES}
    expect(all(v.size == n_seeds for v in losses.values()), f"`final_losses` should hold {n_seeds} seeds per size")
    return losses, rates


def verdict_relu_function(data: dict, ctx: Context) -> None:
    runs = numbers(data.get("runs"), "train_relu_xor(...) values")
    expect(runs.size == len(ctx.inputs["runs"]), "train_relu_xor(hidden, seed, epochs) should return one float")
    expect(all(either_reading(float(run), *args) for run, args in zip(runs, ctx.inputs["runs"])),
           "train_relu_xor(hidden, seed, epochs) does not match the grader's run: seed first, then "
           "ReLUXORNet(hidden), SGD with lr=0.1 on the MSE, `epochs` epochs, and return the final MSE")


def verdict_relu_table(data: dict, ctx: Context) -> None:
    n_seeds, epochs = int(ctx.budget["n_seeds"]), int(ctx.budget["relu_xor_epochs"])
    losses, rates = _table(data, n_seeds)
    for h in HIDDEN_SIZES:
        expect(abs(rates[h] - float(np.mean(losses[h] < CONVERGED_LOSS))) < 1e-9,
               f"convergence_rate[{h}] is not the fraction (between 0 and 1) of final losses below CONVERGED_LOSS")
    # Rerun one seed per hidden size (drawn by inputs_relu_run) and compare with the student's entry.
    for h, seed in zip(HIDDEN_SIZES, ctx.inputs["table_seeds"]):
        expect(either_reading(float(losses[h][seed]), h, seed, epochs),
               f"final_losses[{h}] does not hold the final losses of seeds 0 to N_SEEDS - 1 (trained for "
               "RELU_XOR_EPOCHS epochs)")


# -- q11: devices -------------------------------------------------------------------------------
def inputs_device(ctx: Context) -> dict:
    return {"x": torch.from_numpy(ctx.rng.normal(size=(6, 2)).astype(np.float32)),
            "weight": torch.from_numpy(ctx.rng.normal(size=(1, 3)).astype(np.float32)),
            "bias": torch.from_numpy(ctx.rng.normal(size=(1,)).astype(np.float32))}


def _on(data: dict, name: str, device: str, shape: tuple, what: str) -> np.ndarray:
    value = data.get(name)
    if isinstance(value, str):
        raise Fail(f"{what} raised an error on a {device} device: does it create a tensor on the CPU "
                   f"or leave something behind there? ({value[:160]})")
    values = array(value, what, kind="tensor", shape=shape)
    expect(value.device.startswith(device), f"{what} returned a tensor on {value.device}, not on the {device} device")
    return values


def verdict_pick_device(data: dict, ctx: Context) -> None:
    expect_device_choice(data)


def verdict_with_bias(data: dict, ctx: Context) -> None:
    x = ctx.inputs["x"].numpy()
    n = x.shape[0]
    values = _on(data, "bias_cpu", "cpu", (n, 3), "with_bias(X)")
    expect(np.array_equal(values, np.hstack([x, np.ones((n, 1), np.float32)])),
           "with_bias(X) should return X with a column of ones appended on the right")
    for name, dtype, device in (("bias_cpu", "torch.float32", "cpu"), ("bias_cpu64", "torch.float64", "cpu"),
                                ("bias_cpu16", "torch.float16", "cpu"), ("bias_meta64", "torch.float64", "meta")):
        _on(data, name, device, (n, 3), "with_bias(X)")
        expect(data[name].dtype == dtype,
               f"with_bias(X) turned a {dtype} X on the {device} device into {data[name].dtype}: "
               "create the ones with dtype=X.dtype")
    devices = ["meta"] + (["cuda"] if data.get("cuda") is True else [])
    for device in devices:
        _on(data, f"bias_{device}", device, (n, 3), "with_bias(X)")


def verdict_predict_on(data: dict, ctx: Context) -> None:
    x = ctx.inputs["x"].numpy()
    n = x.shape[0]
    values = _on(data, "pred_cpu", "cpu", (n, 1), "predict_on(model, X, device)")
    layer = nn.Linear(3, 1)
    layer.load_state_dict({"weight": ctx.inputs["weight"], "bias": ctx.inputs["bias"]})
    with torch.no_grad():
        expected = layer(torch.from_numpy(np.hstack([x, np.ones((n, 1), np.float32)]))).numpy()
    expect(close(values, expected, atol=1e-5), "predict_on(model, X, device) should return model(X)")
    devices = ["meta"] + (["cuda"] if data.get("cuda") is True else [])
    for device in devices:
        for name in (f"pred_{device}", f"pred_from_{device}"):
            _on(data, name, device, (n, 1), "predict_on(model, X, device)")
            seen = data.get(f"seen_{name}")
            expect(isinstance(seen, list) and len(seen) >= 1, "predict_on(model, X, device) never called the model")
            expect(all(isinstance(pair, list) and len(pair) == 2 and all(str(d).startswith(device) for d in pair)
                       for pair in seen),
                   f"predict_on(model, X, {device!r}) ran the model with its input and weights on "
                   f"{', '.join(sorted({' and '.join(map(str, p)) for p in seen}))[:80]}, not on the {device} device: "
                   "move the model and X with .to(device) before calling the model")
    for name in ["pred_cpu"] + [f"pred_{d}" for d in devices]:
        expect(not data[name].requires_grad,
               "predict_on should not track gradients: compute model(X) inside torch.no_grad()")


# -- q12: tensor operations (Chapter 29 29.2, Lesson 5) -------------------------------------------
def inputs_operations(ctx: Context) -> dict:
    """Non-square shapes (N != D), so a sum or a mean over the wrong dimension shows in the shape."""
    n, d = (int(v) for v in ctx.rng.choice(np.arange(2, 7), size=2, replace=False))
    k = int(ctx.rng.integers(2, 5))
    shape = [n] + [int(v) for v in ctx.rng.integers(2, 4, size=3)]

    def normal(*size):
        return torch.from_numpy(ctx.rng.normal(size=size).astype(np.float32))

    return {"X": normal(n, d), "W": normal(d, k), "b": normal(k), "A": normal(n, d) + 1.0, "T": normal(*shape)}


def _result(value, call: str, tensor: bool = True):
    """A probe's `attempt` result: the value, or a failure that quotes the student's error."""
    if isinstance(value, str) and value.startswith("error:"):
        raise Fail(f"`{call}` raised an error on the grader's inputs ({value[7:160]})")
    expect(not tensor or isinstance(value, Array), f"`{call}` should return a tensor")
    return value


def verdict_operations(data: dict, ctx: Context) -> None:
    X, W, b, A, T = (ctx.inputs[k].numpy().astype(np.float64) for k in ("X", "W", "b", "A", "T"))
    n, d = A.shape
    linear = array(_result(data.get("linear"), "linear_map(X, W, b)"), "linear_map(X, W, b)", shape=(n, W.shape[1]))
    expect(close(linear, X @ W + b, *OUTPUT_TOLERANCE),
           "`linear_map(X, W, b)` should be the matrix product X @ W plus the bias b broadcast over the rows")
    sums = array(_result(data.get("sums"), "row_sums(A)"), "row_sums(A)")
    expect(sums.shape != (d,) or not close(sums, A.sum(axis=0), *OUTPUT_TOLERANCE),
           "`row_sums(A)` summed each column (dim=0): sum across each row with A.sum(dim=1)")
    expect(sums.shape == (n,) and close(sums, A.sum(axis=1), *OUTPUT_TOLERANCE),
           "`row_sums(A)` should return the sum of each row, shape (N,): A.sum(dim=1)")
    centered = array(_result(data.get("centered"), "center_columns(A)"), "center_columns(A)", shape=(n, d))
    expect(not close(centered, A - A.mean(), *OUTPUT_TOLERANCE),
           "`center_columns(A)` subtracted the mean of all entries: subtract each column's mean, A.mean(dim=0)")
    expect(close(centered, A - A.mean(axis=0), *OUTPUT_TOLERANCE),
           "`center_columns(A)` should subtract each column's mean (A.mean(dim=0), broadcast over the rows)")
    flat = array(_result(data.get("flat"), "flatten_samples(T)"), "flatten_samples(T)")
    expect(flat.shape == (T.shape[0], int(np.prod(T.shape[1:]))),
           f"`flatten_samples(T)` turned a {T.shape} tensor into {flat.shape}: keep the first (batch) dimension "
           "and flatten the rest, T.view(T.shape[0], -1)")
    expect(close(flat, T.reshape(T.shape[0], -1), *OUTPUT_TOLERANCE),
           "`flatten_samples(T)` should keep each sample's values in order (view or reshape, not a transpose)")


# -- q13: constructors and indexing (Lesson 5) ---------------------------------------------------
def inputs_constructors(ctx: Context) -> dict:
    start = round(float(ctx.rng.uniform(-3, 1)), 2)
    stop = round(start + float(ctx.rng.uniform(1, 4)), 2)
    rows, cols = (int(v) for v in ctx.rng.choice(np.arange(3, 8), size=2, replace=False))
    r0, c0 = int(ctx.rng.integers(0, rows - 2)), int(ctx.rng.integers(0, cols - 2))
    block = [r0, int(ctx.rng.integers(r0 + 2, rows + 1)), c0, int(ctx.rng.integers(c0 + 2, cols + 1))]
    d = torch.from_numpy(ctx.rng.integers(-50, 50, size=(rows, cols)))
    return {"space": [start, stop, int(ctx.rng.integers(4, 10))], "grid": [rows, cols], "d": d, "block": block}


def verdict_constructors(data: dict, ctx: Context) -> None:
    start, stop, n = ctx.inputs["space"]
    spaced = array(_result(data.get("spaced"), "evenly_spaced(start, stop, n)"), "evenly_spaced(start, stop, n)")
    expect(spaced.shape == (n,) and close(spaced, np.linspace(start, stop, n), *OUTPUT_TOLERANCE),
           "`evenly_spaced(start, stop, n)` should hold n points from start to stop with both ends included: "
           "torch.linspace(start, stop, n) (torch.arange leaves out the end)")
    rows, cols = ctx.inputs["grid"]
    grid = array(_result(data.get("grid"), "numbered_grid(rows, cols)"), "numbered_grid(rows, cols)",
                 shape=(rows, cols))
    expect(np.array_equal(grid, np.arange(rows * cols).reshape(rows, cols)),
           "`numbered_grid(rows, cols)` should number the entries 0, 1, 2, ... row by row: "
           "torch.arange(rows * cols).reshape(rows, cols)")
    d = ctx.inputs["d"].numpy()
    pair = data.get("row_col")
    if isinstance(pair, str):
        _result(pair, "first_row_and_column(d)")
    expect(isinstance(pair, list) and len(pair) == 2, "`first_row_and_column(d)` should return two tensors")
    row = array(pair[0], "the first row", shape=None)
    column = array(pair[1], "the first column", shape=None)
    expect(not (np.array_equal(row, d[:, 0]) and np.array_equal(column, d[0])),
           "`first_row_and_column(d)` returned the column first: d[0] is the first row, d[:, 0] the first column")
    expect(np.array_equal(row, d[0]) and np.array_equal(column, d[:, 0]),
           "`first_row_and_column(d)` should return (d[0], d[:, 0]): the first row, then the first column")
    r0, r1, c0, c1 = ctx.inputs["block"]
    block = array(_result(data.get("block"), "sub_block(d, r0, r1, c0, c1)"), "sub_block(d, r0, r1, c0, c1)")
    expect(np.array_equal(block, d[r0:r1, c0:c1]),
           "`sub_block(d, r0, r1, c0, c1)` should be d[r0:r1, c0:c1]: rows r0 to r1 - 1 and columns c0 to c1 - 1 "
           "(a slice leaves out its end)")


# -- q14: Lesson 5's autograd: grad_fn, 8x/n, manual vs autograd ---------------------------------
CHAIN_GRAD_FNS = ("MulBackward0", "PowBackward0", "MeanBackward0")


def inputs_lesson_autograd(ctx: Context) -> dict:
    """Vectors of 2, 4 and 5 to 7 entries (never the lesson's 3, so 8x/3 typed in fails)."""
    lengths = [2, 4, int(ctx.rng.integers(5, 8))]
    return {"vectors": [[round(float(v), 3) for v in ctx.rng.uniform(-3, 3, size=k)] for k in lengths],
            "xs": [round(float(v), 3) for v in ctx.rng.uniform(-5, 5, size=3)]}


def verdict_lesson_autograd(data: dict, ctx: Context) -> None:
    chains = data.get("chains")
    expect(isinstance(chains, list) and len(chains) == len(ctx.inputs["vectors"]), "could not call `chain_gradient`")
    for values, result in zip(ctx.inputs["vectors"], chains):
        if isinstance(result, str):
            _result(result, "chain_gradient(values)", tensor=False)
        expect(isinstance(result, list) and len(result) == 2, "`chain_gradient(values)` should return (x.grad, names)")
        x = np.array(values, dtype=np.float64)
        grad = numbers(result[0], "the x.grad returned by chain_gradient")
        expect(grad.size == x.size, f"`chain_gradient` on {x.size} values should return x.grad with {x.size} entries")
        names = result[1]
        expect(isinstance(names, list) and len(names) == 3 and all(isinstance(v, str) for v in names),
               "`chain_gradient` should return the names of the three grad_fn nodes (y, z, out) as strings")
        if close(grad, 8 * x, *OUTPUT_TOLERANCE) or "Sum" in names[2]:
            raise Fail("`chain_gradient`: out should be z.mean(), the average over the entries, not their sum")
        expect(close(grad, 8 * x / x.size, *OUTPUT_TOLERANCE),
               f"`chain_gradient` on {x.size} entries does not give x.grad = 8x / {x.size}: run the lesson's "
               "y = x * 2, z = y ** 2, out = z.mean() and out.backward() on the given values")
        expect(all(want in name for want, name in zip(CHAIN_GRAD_FNS, names)),
               "`chain_gradient` should return the grad_fn names of y, z and out, e.g. y.grad_fn.name()")
    _autograd_runs(data.get("chain_runs"), "chain_gradient", len(ctx.inputs["vectors"]))
    xs = np.array(ctx.inputs["xs"], dtype=np.float64)
    manual = data.get("manual")
    expect(isinstance(manual, list) and len(manual) == xs.size
           and close([number(v, "df_manual(x)") for v in manual], 2 * xs + 3),
           "`df_manual(x)` should return the derivative of x**2 + 3x worked out by hand, 2x + 3")
    auto = data.get("autograd")
    expect(isinstance(auto, list) and len(auto) == xs.size
           and close([number(v, "df_autograd(x)") for v in auto], 2 * xs + 3),
           "`df_autograd(x)` does not return the derivative of x**2 + 3x at x")
    _autograd_runs(data.get("autograd_runs"), "df_autograd", xs.size)


# -- q15: Lesson 5's SimpleNet and its parameters -----------------------------------------------
SIMPLE_NET_LAYERS = [["fc1", "Linear"], ["relu", "ReLU"], ["fc2", "Linear"], ["sigmoid", "Sigmoid"]]


def inputs_simple_net(ctx: Context) -> dict:
    sizes = [int(ctx.rng.integers(2, 6)), int(ctx.rng.integers(3, 9)), int(ctx.rng.integers(1, 4))]
    return {"sizes": sizes, "x": torch.from_numpy(ctx.rng.normal(size=(7, sizes[0])).astype(np.float32)),
            "stack": [int(v) for v in ctx.rng.integers(2, 9, size=int(ctx.rng.integers(3, 5)))]}


def verdict_simple_net(data: dict, ctx: Context) -> None:
    i, h, o = ctx.inputs["sizes"]
    expect(data.get("layers") == SIMPLE_NET_LAYERS,
           "SimpleNet should have the lesson's layers fc1 (Linear), relu (ReLU), fc2 (Linear) and sigmoid "
           f"(Sigmoid), in that order; it has {data.get('layers')}")
    shapes = {"fc1.weight": (h, i), "fc1.bias": (h,), "fc2.weight": (o, h), "fc2.bias": (o,)}
    state = as_state_dict(data.get("state"), f"SimpleNet({i}, {h}, {o}).state_dict()", shapes)
    x = ctx.inputs["x"]
    out = array(_result(data.get("out"), f"SimpleNet({i}, {h}, {o})(x)"), f"SimpleNet({i}, {h}, {o})'s output",
                shape=(x.shape[0], o))
    expect(close(out, simple_net_formula(state, x), *OUTPUT_TOLERANCE),
           f"SimpleNet({i}, {h}, {o}) does not compute sigmoid(fc2(relu(fc1(x)))) with its own weights")
    table = _result(data.get("table"), "parameter_table(net)", tensor=False)
    expect(isinstance(table, list) and [[k, tuple(v) if isinstance(v, list) else v] for k, v in table]
           == [[k, v] for k, v in shapes.items()],
           "`parameter_table(net)` should map each name of net.named_parameters() to its shape, in order")
    stack = ctx.inputs["stack"]
    expected = {"SimpleNet": i * h + h + h * o + o, "a stack of nn.Linear layers":
                sum(a * c + c for a, c in zip(stack, stack[1:]))}
    for key, what in (("count", "SimpleNet"), ("stack_count", "a stack of nn.Linear layers")):
        value = data.get(key)
        if isinstance(value, str):
            _result(value, "count_parameters(net)", tensor=False)
        expect(integer(value, "count_parameters(net)") == expected[what],
               f"`count_parameters` on {what} does not count every entry of every parameter tensor: "
               "sum p.numel() over net.parameters()")


# -- q16: Chapter 28 28.6, the same computation in micrograd and in torch ------------------------
def inputs_side_by_side(ctx: Context) -> dict:
    """Four points, at least two with x < 0 (where relu(x) ** 2 and relu(x ** 2) differ)."""
    xs = np.concatenate([-ctx.rng.uniform(0.2, 3, size=2), ctx.rng.uniform(-3, 3, size=2)])
    ys = ctx.rng.uniform(-3, 3, size=4)
    order = ctx.rng.permutation(4)
    return {"points": [[round(float(xs[i]), 3), round(float(ys[i]), 3)] for i in order]}


def verdict_side_by_side(data: dict, ctx: Context) -> None:
    points = ctx.inputs["points"]
    truth = np.array([side_by_side_truth(x, y) for x, y in points])
    for key, name, runs in (("micro", "micrograd_grads", "micro_runs"), ("torch", "torch_grads", "torch_runs")):
        values = data.get(key)
        expect(isinstance(values, list) and len(values) == len(points), f"could not call `{name}`")
        for value in values:
            if isinstance(value, str):
                _result(value, f"{name}(x0, y0)", tensor=False)
        got = _pairs(values, name, 3)
        if not close(got, truth, *OUTPUT_TOLERANCE):
            x, y = np.array(points, dtype=np.float64).T
            relu_first = np.stack([x * y + np.maximum(x, 0) ** 2, y + 2 * np.maximum(x, 0), x], axis=1)
            expect(not close(got, relu_first, *OUTPUT_TOLERANCE),
                   f"`{name}` applies the ReLU before squaring: the chapter's z = x*y + (x**2).relu() squares x "
                   "first, so relu(x) ** 2 differs for x < 0")
            raise Fail(f"`{name}(x0, y0)` does not return (z, dz/dx, dz/dy) for z = x*y + (x**2).relu()")
        counts = data.get(runs)
        expect(isinstance(counts, list) and all(isinstance(v, int) and v >= 1 for v in counts),
               f"`{name}` should compute the gradients with the engine's backward pass "
               f"({'z.backward() on Value objects' if key == 'micro' else 'z.backward() on torch tensors'}), "
               "not from a formula worked out by hand")


# -- q17: Lesson 5's CPU-vs-GPU benchmark, graded on what the code does (never on the times) ------
TIMED_PER_PRODUCT = 0.5  # probes.traced_timing's fake clock: 0.5 s per matrix product


def inputs_benchmark(ctx: Context) -> dict:
    n = int(ctx.rng.integers(3, 9))
    return {"n": n, "repeats": int(ctx.rng.integers(3, 7)),
            "A": torch.from_numpy(ctx.rng.normal(size=(n, n)).astype(np.float32))}


def _trace(run, call: str) -> tuple[list, list, list]:
    expect(isinstance(run, dict), f"could not run `{call}`")
    _result(run.get("value"), call, tensor=False)
    events = run.get("events")
    expect(isinstance(events, list), f"could not trace `{call}`")
    kinds = [e[0] if isinstance(e, list) and e else "" for e in events]
    return events, [i for i, k in enumerate(kinds) if k == "work"], [i for i, k in enumerate(kinds) if k == "clock"]


def verdict_benchmark(data: dict, ctx: Context) -> None:
    repeats, n = ctx.inputs["repeats"], ctx.inputs["n"]
    call = f"time_matmul(A, device, repeats={repeats})"
    events, works, clocks = _trace(data.get("gpu"), call)
    expect(works, f"`{call}` never computed A @ A")
    places = sorted({str(events[i][1]) for i in works})
    expect(all(p.startswith("meta") for p in places),
           f"on a GPU, `{call}` ran A @ A on {', '.join(places)}: move A to the device first (A.to(device))")
    expect(len(clocks) >= 2, f"`{call}` should read the clock (time.perf_counter()) before and after the timed products")
    expect(works[0] < clocks[0], f"`{call}` has no warm-up: compute A @ A once before starting the clock, so the "
                                 "first call's one-off costs (CUDA start-up) are not timed")
    for c in clocks:
        before = [w for w in works if w < c]
        expect(not before or "sync" in [events[i][0] for i in range(before[-1] + 1, c)],
               f"on a GPU, `{call}` read the clock right after queuing A @ A: GPU kernels run asynchronously, so "
               "call torch.cuda.synchronize() between the work and every clock read")
    timed = sum(1 for w in works if clocks[0] < w < clocks[-1])
    expect(timed == repeats, f"`{call}` timed {timed} products between its first and last clock reads, not {repeats}")
    value = number(data["gpu"]["value"], call)
    expect(abs(value - TIMED_PER_PRODUCT) < 1e-6,
           f"`{call}` should return the average time per product, (end - start) / repeats")
    cpu_call = "time_matmul(A, torch.device('cpu'), repeats)"
    events, works, _ = _trace(data.get("cpu"), cpu_call)
    expect("sync" not in [e[0] for e in events if isinstance(e, list) and e],
           f"`{cpu_call}` called torch.cuda.synchronize(), which raises on a machine without a GPU: synchronise "
           "only when device.type == 'cuda'")
    expect(works and all(str(events[i][1]) == "cpu" for i in works), f"`{cpu_call}` should compute A @ A on the CPU")
    expect(abs(number(data["cpu"]["value"], cpu_call) - TIMED_PER_PRODUCT) < 1e-6,
           f"`{cpu_call}` should return the average time per product")
    events, works, _ = _trace(data.get("benchmark"), "benchmark(n, device)")
    pair = data["benchmark"]["value"]
    expect(isinstance(pair, list) and len(pair) == 2, "`benchmark(n, device)` should return (cpu_time, device_time)")
    for device in ("cpu", "meta"):
        shapes = [events[i][2] for i in works if str(events[i][1]).startswith(device)]
        expect(shapes and all(s == [[n, n]] for s in shapes),
               f"`benchmark({n}, device)` should time the same ({n}, {n}) product on the CPU and on the device")


CHECKS = [
    Check("q1", "t_int: the random integer tensor and its float copy", probes.int_tensor, verdict_int_tensor,
          hint="torch.randint(low, high, size) never returns `high`"),
    Check("q1", "t_shape, t_dtype, t_device and t_numel describe t_int", probes.int_tensor, verdict_int_attributes),
    Check("q2", "shared_tensor shares memory and copied_tensor copies (fresh arrays)", probes.interop,
          verdict_interop, inputs=inputs_array, hint="torch.from_numpy shares memory; torch.tensor copies"),
    Check("q2", "the default integer and float dtypes", probes.interop, verdict_dtypes, inputs=inputs_array),
    Check("q3", "gradients at fresh points", probes.scalar_gradients, verdict_scalar, inputs=inputs_points),
    Check("q3", "the gradients come from autograd", probes.scalar_gradients, verdict_scalar_autograd,
          inputs=inputs_points),
    Check("q4", "the seeded draws of W, b, X and y_true", probes.linear_model, verdict_linear_draws),
    Check("q4", "the loss and the gradients, recomputed by the grader", probes.linear_model, verdict_linear_grads),
    Check("q5", "accumulated and reset gradients at fresh values of theta", probes.accumulation,
          verdict_accumulation, inputs=inputs_thetas),
    Check("q6", "the autograd derivative at fresh points", probes.derivatives, verdict_derivative_autograd,
          inputs=inputs_xs),
    Check("q6", "the closed-form derivative at fresh points", probes.derivatives, verdict_derivative_analytic,
          inputs=inputs_xs, hint="f(x) = sigma'(2x) exactly, so f'(x) = 2 sigma''(2x)"),
    Check("q7", "XORNet's parameters and its outputs on fresh inputs", probes.fresh_xornet, verdict_xornet,
          inputs=inputs_pairs),
    Check("q7", "the training run matches the grader's run", probes.xor_training, verdict_xor_training,
          hint="optimizer.zero_grad() before loss.backward() in every epoch"),
    Check("q8", "model_seq's architecture and seq_pred", probes.sequential, verdict_sequential),
    Check("q8", "XOR predictions measured by the grader from your weights", probes.sequential,
          verdict_sequential_learned),
    Check("q9", "SkipBlock recomputed from its own weights on fresh inputs", probes.skip_blocks, verdict_skip,
          inputs=inputs_skip, hint="the skip is added after the outer ReLU: relu(fc2(h)) + x"),
    Check("q10_1", "train_relu_xor on a fresh hidden size, seed and epoch count", probes.relu_table,
          verdict_relu_function, inputs=inputs_relu_run),
    Check("q10_1", "the convergence table, spot-checked against the grader's runs", probes.relu_table,
          verdict_relu_table, inputs=inputs_relu_run),
    Check("q11", "pick_device follows torch.cuda.is_available(), told both ways", device_choice,
          verdict_pick_device, hint="return torch.device(\"cuda\") exactly when torch.cuda.is_available() is True"),
    Check("q11", "with_bias on the CPU and on another device", probes.device_runs, verdict_with_bias,
          inputs=inputs_device, hint="create new tensors with device=X.device, dtype=X.dtype"),
    Check("q11", "predict_on on the CPU and on another device", probes.device_runs, verdict_predict_on,
          inputs=inputs_device, hint="move both the model and X with .to(device)"),
    Check("q12", "the tensor operations on the grader's tensors", probes.tensor_operations, verdict_operations,
          inputs=inputs_operations, hint="dim=1 runs across a row; dim=0 down a column"),
    Check("q13", "constructors and indexing on the grader's sizes", probes.constructors, verdict_constructors,
          inputs=inputs_constructors, hint="torch.linspace includes the end; torch.arange and slices leave it out"),
    Check("q14", "grad_fn names, 8x/n and manual vs autograd at fresh values", probes.lesson_autograd,
          verdict_lesson_autograd, inputs=inputs_lesson_autograd),
    Check("q15", "SimpleNet and its parameters at the grader's sizes", probes.simple_net, verdict_simple_net,
          inputs=inputs_simple_net),
    Check("q16", "micrograd and torch agree with the grader at fresh points", probes.side_by_side,
          verdict_side_by_side, inputs=inputs_side_by_side),
    Check("q17", "the benchmark's warm-up, synchronisation and work, traced on a stand-in GPU", probes.benchmark_trace,
          verdict_benchmark, inputs=inputs_benchmark,
          hint="warm up once, then torch.cuda.synchronize() before each clock read when device.type == 'cuda'"),
]


# Hand-offs: the XOR data is given; restore it after the questions whose cells could overwrite it.
def _xor_values(ref) -> dict:
    X, Y, Y_tanh = xor_data()
    return {"X_xor": X, "Y_xor": Y, "Y_xor_tanh": Y_tanh}


HANDOFFS = {
    "q7": Handoff(values=_xor_values),
    "q8": Handoff(values=_xor_values),
}
