"""tensors' verdicts without a sandbox or a notebook: the reference's objects pass each check, and
each known mistake fails its check with a message that names it."""
from __future__ import annotations

import functools
import json

import pytest
import torch
import torch.nn as nn

from autograder.config import REPO_ROOT
from harness import all_checks, assert_fails, module, outcome, reference, unlisted

AID = "tensors"


def _given_value_class():
    """Question 16's Value engine, as the notebook gives it (run from the master's own cell)."""
    cells = json.loads((REPO_ROOT / "solutions" / AID / f"{AID}.ipynb").read_text())["cells"]
    source = next("".join(c["source"]) for c in cells
                  if c["cell_type"] == "code" and "".join(c["source"]).startswith("class Value:"))
    namespace: dict = {}
    exec(source, namespace)
    return namespace["Value"]


Value = _given_value_class()


def micrograd_grads(x0, y0, relu_first=False):
    x, y = Value(x0), Value(y0)
    z = x * y + (x.relu() ** 2 if relu_first else (x ** 2).relu())
    z.backward()
    return z.data, x.grad, y.grad


def torch_relu_first(x0, y0):
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    y = torch.tensor(float(y0), dtype=torch.float64, requires_grad=True)
    z = x * y + torch.relu(x) ** 2
    z.backward()
    return z.item(), x.grad.item(), y.grad.item()


def chain_gradient(values, reduce="mean"):
    x = torch.tensor(values, requires_grad=True)
    z = (x * 2) ** 2
    out = z.mean() if reduce == "mean" else z.sum()
    out.backward()
    return x.grad, [(x * 2).grad_fn.name(), z.grad_fn.name(), out.grad_fn.name()]


def time_matmul(A, device, repeats=5, warm_up=True, sync="cuda", average=True):
    """Question 17's timing; `sync` is "cuda" (correct), "never" or "always" (the mistakes)."""
    import time

    def synchronize():
        if sync == "always" or (sync == "cuda" and device.type == "cuda"):
            torch.cuda.synchronize()

    A = A.to(device)
    if warm_up:
        A @ A
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        A @ A
    synchronize()
    return (time.perf_counter() - start) / (repeats if average else 1)


def time_matmul_per_run(A, device, repeats=5):
    """An honest variant: `from time import perf_counter`, each run timed alone, is_available()."""
    from time import perf_counter

    A = A.to(device)
    torch.mm(A, A)
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = perf_counter()
        torch.matmul(A, A)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(perf_counter() - t0)
    return sum(times) / len(times)


class SimpleNetNoSigmoid(nn.Module):
    def __init__(self, i, h, o):
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class SkipBlock(nn.Module):
    def __init__(self, dim=8, hidden=16, inside=False):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.inside = inside

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return torch.relu(self.fc2(h) + x) if self.inside else torch.relu(self.fc2(h)) + x


def grad_quadratic(x0):
    x = torch.tensor(float(x0), requires_grad=True)
    (x ** 2 + 2 * x + 1).backward()
    return x.grad.item()


def with_bias(X, on_cpu=False):
    ones = torch.ones(X.shape[0], 1, dtype=X.dtype, device=None if on_cpu else X.device)
    return torch.cat([X, ones], dim=1)


def predict_on(model, X, device, move_model=True):
    if move_model:
        model = model.to(device)
    with torch.no_grad():
        return model(X.to(device))


def _linear(draw_order=("W", "b", "X", "y_true"), scale=1.0) -> dict:
    """Question 4's variables from the grader's run (or drawn in another order); `scale` multiplies
    the loss and the gradients (8: a sum instead of a mean over the 8 entries)."""
    lin = reference(AID)["linear"]
    if draw_order != ("W", "b", "X", "y_true"):
        torch.manual_seed(42)
        shapes = {"W": (3, 2), "b": (2,), "X": (4, 3), "y_true": (4, 2)}
        drawn = {name: torch.randn(*shapes[name]) for name in draw_order}
    else:
        drawn = {name: torch.from_numpy(lin[name].copy()) for name in draw_order}
    W, b = drawn["W"].requires_grad_(), drawn["b"].requires_grad_()
    W.grad, b.grad = scale * torch.from_numpy(lin["W_grad"]), scale * torch.from_numpy(lin["b_grad"])
    return {"W": W, "b": b, "X": drawn["X"], "y_true": drawn["y_true"], "loss": torch.tensor(scale * lin["loss"])}


def _xor_run(**options) -> dict:
    ref = module(AID, "reference")
    run = ref.xornet_run(**options)
    model = ref.XORNet()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in run["state"].items()})
    return {"losses": list(run["losses"]), "final_pred": torch.from_numpy(run["final_pred"]), "model": model}


def _sequential(**options) -> dict:
    ref = module(AID, "reference")
    model = ref.train_sequential(42, **options)
    with torch.no_grad():
        return {"model_seq": model, "seq_pred": model(ref.xor_data()[0])}


@pytest.fixture(scope="module")
def solved() -> dict:
    """The student's namespace after a correct notebook, built from reference.py's objects."""
    ref = module(AID, "reference")
    t_int = torch.from_numpy(reference(AID)["t_int"])
    X_xor, Y_xor, Y_xor_tanh = ref.xor_data()
    epochs, n_seeds = 500, 5
    final_losses = {h: [ref.relu_xor_loss(h, seed, epochs) for seed in range(n_seeds)] for h in (2, 4, 8, 16)}
    torch.manual_seed(0)
    return {"t_int": t_int, "t_float": t_int.float(), "t_shape": t_int.shape, "t_dtype": t_int.dtype,
            "t_device": t_int.device, "t_numel": t_int.numel(),
            "shared_tensor": torch.from_numpy, "copied_tensor": torch.tensor,
            "default_int_dtype": torch.int64, "default_float_dtype": torch.float32,
            "grad_f": ref.grad_f, "grad_quadratic": grad_quadratic, **_linear(),
            "accumulation_demo": ref.accumulation_demo,
            "f_prime_autograd": ref.f_prime_autograd, "f_prime_analytic": ref.f_prime,
            "X_xor": X_xor, "Y_xor": Y_xor, "Y_xor_tanh": Y_xor_tanh, "XORNet": ref.XORNet, **_xor_run(),
            **_sequential(), "SkipBlock": SkipBlock, "out_skip": SkipBlock(8, 16)(torch.randn(4, 8)),
            "train_relu_xor": ref.relu_xor_loss, "final_losses": final_losses,
            "convergence_rate": {h: sum(v < 0.01 for v in final_losses[h]) / n_seeds for h in final_losses},
            "pick_device": lambda: torch.device("cuda" if torch.cuda.is_available() else "cpu"),
            "with_bias": with_bias, "predict_on": predict_on,
            **{name: getattr(ref, name) for name in (
                "linear_map", "row_sums", "center_columns", "flatten_samples", "evenly_spaced", "numbered_grid",
                "first_row_and_column", "sub_block", "chain_gradient", "df_manual", "df_autograd", "SimpleNet",
                "parameter_table", "count_parameters", "torch_grads")},
            "Value": Value, "micrograd_grads": micrograd_grads,
            "time_matmul": time_matmul, "benchmark": ref.benchmark}


CHECKS = all_checks(AID)


@pytest.mark.parametrize("question, description", CHECKS)
def test_reference_passes(solved, question, description):
    result = outcome(AID, question, description, solved)
    assert result["passed"], result


def _linear_output_xornet():
    """XORNet without the tanh on its output layer."""
    class XORNet(module(AID, "reference").XORNet):
        def forward(self, x):
            return self.output(torch.tanh(self.hidden(x)))
    return XORNet


def _relu_not_reseeded(hidden, seed, epochs):
    return module(AID, "reference").relu_xor_run(hidden, seed, epochs, reseed=False)[0]


def _reference(name: str):
    return getattr(module(AID, "reference"), name)


# name: (question, description, {student variable: mistaken value} from the namespace, feedback word)
MISTAKES = {
    "randint_high_inclusive": ("q1", "t_int: the random",
                               lambda ns: {"t_int": torch.randint(0, 9, (2, 3, 4), generator=torch.Generator().manual_seed(0))},
                               "exclusive"),
    "numel_is_len": ("q1", "t_shape, t_dtype", lambda ns: {"t_numel": len(ns["t_int"])}, "numel"),
    "tensor_instead_of_from_numpy": ("q2", "shared_tensor shares", lambda ns: {"shared_tensor": torch.tensor},
                                     "from_numpy"),
    "default_int_is_int32": ("q2", "default integer", lambda ns: {"default_int_dtype": torch.int32},
                             "default_int_dtype"),
    "grad_f_swapped": ("q3", "gradients at fresh points",
                       lambda ns: {"grad_f": lambda x, y: _reference("grad_f")(x, y)[::-1]}, "df/dx"),
    "quadratic_by_hand": ("q3", "come from autograd", lambda ns: {"grad_quadratic": lambda x: 2.0 * float(x) + 2.0},
                          "autograd"),
    "data_drawn_first": ("q4", "seeded draws", lambda ns: _linear(("X", "y_true", "W", "b")), "order"),
    "mse_sum_not_mean": ("q4", "loss and the gradients", lambda ns: _linear(scale=8.0), "mean"),
    "grad_never_reset": ("q5", "accumulated and reset",
                         lambda ns: {"accumulation_demo": functools.partial(ns["accumulation_demo"], reset=False)},
                         "theta.grad = None"),
    "f_prime_float32": ("q6", "autograd derivative",
                        lambda ns: {"f_prime_autograd": functools.partial(ns["f_prime_autograd"], dtype=torch.float32)},
                        "float64"),
    "chapter_factor_two": ("q6", "closed-form derivative",
                           lambda ns: {"f_prime_analytic": lambda x: 2 * ns["f_prime_analytic"](x)}, "chain rule"),
    "xornet_linear_output": ("q7", "XORNet's parameters", lambda ns: {"XORNet": _linear_output_xornet()}, "tanh"),
    "xor_gradients_never_zeroed": ("q7", "training run matches", lambda ns: _xor_run(zero_grad=False), "zero_grad"),
    "seq_missing_relu": ("q8", "architecture and seq_pred", lambda ns: _sequential(relu=False), "ReLU"),
    "adam_lr_too_small": ("q8", "XOR predictions measured", lambda ns: _sequential(lr=1e-4), "lr=0.01"),
    "skip_inside_relu": ("q9", "SkipBlock recomputed",
                         lambda ns: {"SkipBlock": functools.partial(SkipBlock, inside=True)}, "outer ReLU"),
    "relu_xor_not_reseeded": ("q10_1", "train_relu_xor on a fresh", lambda ns: {"train_relu_xor": _relu_not_reseeded},
                              "seed"),
    "convergence_rate_percent": ("q10_1", "convergence table", lambda ns: {
        "convergence_rate": {h: 100 * r for h, r in ns["convergence_rate"].items()}}, "fraction"),
    "pick_device_always_cpu": ("q11", "pick_device follows", lambda ns: {"pick_device": lambda: torch.device("cpu")},
                               "cuda"),
    "ones_created_on_cpu": ("q11", "with_bias on the CPU",
                            lambda ns: {"with_bias": functools.partial(with_bias, on_cpu=True)}, "device=X.device"),
    "model_not_moved": ("q11", "predict_on on the CPU",
                        lambda ns: {"predict_on": functools.partial(predict_on, move_model=False)}, ".to(device)"),
    "row_sums_dim0": ("q12", "tensor operations", lambda ns: {"row_sums": lambda A: A.sum(dim=0)}, "dim=1"),
    "elementwise_not_matmul": ("q12", "tensor operations",
                               lambda ns: {"linear_map": lambda X, W, b: (X * W.sum(1)).sum(1, keepdim=True) + b},
                               "matrix product"),
    "center_by_global_mean": ("q12", "tensor operations", lambda ns: {"center_columns": lambda A: A - A.mean()},
                              "each column's mean"),
    "center_by_row_mean": ("q12", "tensor operations", lambda ns: {"center_columns": lambda A: A - A.mean(dim=1)},
                           "raised an error"),
    "flatten_everything": ("q12", "tensor operations", lambda ns: {"flatten_samples": lambda T: T.flatten()},
                           "batch"),
    "arange_for_linspace": ("q13", "constructors", lambda ns: {
        "evenly_spaced": lambda a, b, n: torch.arange(a, b, (b - a) / n)}, "linspace"),
    "grid_column_major": ("q13", "constructors", lambda ns: {
        "numbered_grid": lambda r, c: torch.arange(r * c).reshape(c, r).T}, "row by row"),
    "row_column_swapped": ("q13", "constructors", lambda ns: {"first_row_and_column": lambda d: (d[:, 0], d[0])},
                           "first row"),
    "block_end_included": ("q13", "constructors", lambda ns: {
        "sub_block": lambda d, r0, r1, c0, c1: d[r0:r1 + 1, c0:c1 + 1]}, "leaves out its end"),
    "chain_sum_not_mean": ("q14", "grad_fn names", lambda ns: {
        "chain_gradient": functools.partial(chain_gradient, reduce="sum")}, "mean"),
    "chain_typed_8x_over_3": ("q14", "grad_fn names", lambda ns: {
        "chain_gradient": lambda v: (8 * torch.tensor(v) / 3, ["MulBackward0", "PowBackward0", "MeanBackward0"])},
                              "8x / "),
    "df_manual_without_3": ("q14", "grad_fn names", lambda ns: {"df_manual": lambda x: 2 * x}, "by hand"),
    "df_autograd_by_hand": ("q14", "grad_fn names", lambda ns: {"df_autograd": lambda x: 2.0 * x + 3.0},
                            "autograd"),
    "count_parameter_tensors": ("q15", "SimpleNet", lambda ns: {
        "count_parameters": lambda net: len(list(net.parameters()))}, "numel"),
    "simple_net_no_sigmoid": ("q15", "SimpleNet", lambda ns: {"SimpleNet": SimpleNetNoSigmoid}, "Sigmoid"),
    "table_of_sizes": ("q15", "SimpleNet", lambda ns: {
        "parameter_table": lambda net: {n: p.numel() for n, p in net.named_parameters()}}, "shape"),
    "torch_relu_first": ("q16", "micrograd and torch", lambda ns: {"torch_grads": torch_relu_first}, "ReLU"),
    "micrograd_relu_first": ("q16", "micrograd and torch", lambda ns: {
        "micrograd_grads": functools.partial(micrograd_grads, relu_first=True)}, "ReLU"),
    "clock_before_gpu_finishes": ("q17", "benchmark", lambda ns: {
        "time_matmul": functools.partial(time_matmul, sync="never")}, "synchronize"),
    "no_warm_up": ("q17", "benchmark", lambda ns: {"time_matmul": functools.partial(time_matmul, warm_up=False)},
                   "warm-up"),
    "synchronize_on_cpu": ("q17", "benchmark", lambda ns: {
        "time_matmul": functools.partial(time_matmul, sync="always")}, "device.type == 'cuda'"),
    "total_not_average": ("q17", "benchmark", lambda ns: {
        "time_matmul": functools.partial(time_matmul, average=False)}, "average"),
    "work_left_on_cpu": ("q17", "benchmark", lambda ns: {
        "time_matmul": lambda A, device, repeats=5: time_matmul(A, torch.device("cpu"), repeats)}, "A.to(device)"),
    "benchmark_different_work": ("q17", "benchmark", lambda ns: {
        "benchmark": lambda n, device: (time_matmul(torch.randn(n, n), torch.device("cpu")),
                                        time_matmul(torch.randn(n + 1, n + 1), device))}, "same"),
    "micrograd_by_hand": ("q16", "micrograd and torch", lambda ns: {
        "micrograd_grads": lambda x, y: (x * y + x * x, y + 2 * x, x)}, "backward"),
}


# Correct answers in other idioms: each must pass its check.
VARIANTS = {
    "operations_other_idioms": ("q12", "tensor operations", lambda ns: {
        "linear_map": lambda X, W, b: torch.mm(X, W) + b.unsqueeze(0), "row_sums": lambda A: torch.sum(A, 1),
        "center_columns": lambda A: A - A.mean(0, keepdim=True), "flatten_samples": lambda T: T.flatten(1)}),
    "constructors_other_idioms": ("q13", "constructors", lambda ns: {
        "evenly_spaced": lambda a, b, n: a + (b - a) * torch.arange(n) / (n - 1),
        "numbered_grid": lambda r, c: torch.arange(r * c).view(r, c),
        "first_row_and_column": lambda d: [d[0, :], d[:, 0]], "sub_block": lambda d, r0, r1, c0, c1: d[r0:r1][:, c0:c1]}),
    "grad_fn_as_str": ("q14", "grad_fn names", lambda ns: {
        "chain_gradient": lambda v: (lambda g, n: (g.tolist(), [f"<{m} object at 0x0>" for m in n]))(
            *ns["chain_gradient"](v))}),
    "count_with_generator": ("q15", "SimpleNet", lambda ns: {
        "count_parameters": lambda net: sum(map(torch.numel, net.state_dict().values())),
        "parameter_table": lambda net: dict((n, tuple(p.size())) for n, p in net.named_parameters())}),
    "timing_per_run": ("q17", "benchmark", lambda ns: {"time_matmul": time_matmul_per_run}),
    "torch_relu_function": ("q16", "micrograd and torch", lambda ns: {
        "torch_grads": lambda x, y: (lambda xt, yt: (lambda z: (z.backward(), (z.item(), xt.grad.item(),
                                                                                  yt.grad.item()))[1])(
            xt * yt + torch.relu(xt ** 2)))(torch.tensor(float(x), dtype=torch.float64, requires_grad=True),
                                             torch.tensor(float(y), dtype=torch.float64, requires_grad=True))}),
}


def test_every_check_has_a_mistake():
    assert not unlisted(AID, MISTAKES.values(), repeats=True)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_fails_its_check(solved, name):
    question, description, change, word = MISTAKES[name]
    namespace = {**solved, **change(solved)}
    assert_fails(AID, question, description, namespace, word)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_passes_its_check(solved, name):
    question, description, change = VARIANTS[name]
    result = outcome(AID, question, description, {**solved, **change(solved)})
    assert result["passed"], result


def test_the_benchmark_trace_ignores_other_threads_clocks(solved):
    """Check that q17's trace records only the benchmark's own clock reads: a library thread that
    reads the clock meanwhile (an event loop, a progress bar) must not cost the student the question"""
    import threading
    import time

    stop = threading.Event()

    def spin():
        while not stop.is_set():
            time.perf_counter(), time.monotonic(), time.time()
            stop.wait(0.0002)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        question, description, change = VARIANTS["timing_per_run"]
        results = [outcome(AID, question, description, {**solved, **change(solved)}),
                   outcome(AID, question, description, solved)]
    finally:
        stop.set()
        thread.join()
    assert all(r["passed"] for r in results), results
