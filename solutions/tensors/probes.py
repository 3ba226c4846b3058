"""Probes for `tensors`, run in the student's process. Each parameter names a student variable
(`inputs` is the check's fresh inputs); the returned dict is all its verdict sees."""
from __future__ import annotations

import numpy as np
import torch
import torch.autograd as autograd_module
import torch.nn as nn


def counted(fn, *args):
    """`fn(*args)` and how many times it ran autograd's backward engine.

    Both `Tensor.backward()` / `torch.autograd.backward` and `torch.autograd.grad` (however it was
    imported: `from torch.autograd import grad`, a helper, a lambda, `torch.func.grad`) run
    `torch.autograd._engine_run_backward`, so the check sees what the function did, not how its
    source is spelled.
    """
    engine = autograd_module._engine_run_backward
    runs = []

    def counting(*a, **k):
        runs.append(1)
        return engine(*a, **k)

    autograd_module._engine_run_backward = counting
    try:
        value = fn(*args)
    finally:
        autograd_module._engine_run_backward = engine
    return value, len(runs)


def int_tensor(t_int, t_float, t_shape, t_dtype, t_device, t_numel) -> dict:
    return dict(t_int=t_int, t_float=t_float, t_shape=[int(s) for s in t_shape], t_dtype=str(t_dtype),
                t_device=str(t_device), t_numel=t_numel)


def interop(shared_tensor, copied_tensor, default_int_dtype, default_float_dtype, inputs) -> dict:
    """Both functions on a fresh array, which is then changed in place."""
    a = np.array(inputs["a"], dtype=np.float64)
    original = a.copy()
    shared = shared_tensor(a)
    copied = copied_tensor(a)
    a += 1.0
    return dict(shared=shared, copied=copied, mutated=a, original=original,
                int_dtype=str(default_int_dtype), float_dtype=str(default_float_dtype))


def scalar_gradients(grad_f, grad_quadratic, inputs) -> dict:
    f = [counted(grad_f, x0, y0) for x0, y0 in inputs["points"]]
    q = [counted(grad_quadratic, x0) for x0, _ in inputs["points"]]
    return dict(f=[list(v) for v, _ in f], q=[v for v, _ in q], f_runs=[n for _, n in f], q_runs=[n for _, n in q])


def linear_model(W, b, X, y_true, loss) -> dict:
    return dict(W=W, b=b, X=X, y_true=y_true, loss=float(loss), W_grad=W.grad, b_grad=b.grad)


def accumulation(accumulation_demo, inputs) -> dict:
    return dict(results=[list(accumulation_demo(t)) for t in inputs["thetas"]])


def derivatives(f_prime_autograd, f_prime_analytic, inputs) -> dict:
    xs = inputs["xs"]
    runs = [counted(f_prime_autograd, x) for x in xs]
    return dict(autograd=[v for v, _ in runs], autograd_runs=[n for _, n in runs],
                analytic=[f_prime_analytic(x) for x in xs])


def fresh_xornet(XORNet, inputs) -> dict:
    fresh = XORNet()
    with torch.no_grad():
        out = fresh(inputs["x"])
    return dict(n_params=sum(p.numel() for p in fresh.parameters()),
                shapes={n: [int(s) for s in p.shape] for n, p in fresh.named_parameters()},
                state=fresh.state_dict(), out=out)


def xor_training(losses, final_pred, model, X_xor, Y_xor_tanh) -> dict:
    return dict(losses=[float(v) for v in losses], final_pred=final_pred, state=model.state_dict(),
                X_xor=X_xor, Y_xor_tanh=Y_xor_tanh)


def sequential(model_seq, seq_pred) -> dict:
    return dict(kind=type(model_seq).__name__, n_params=sum(p.numel() for p in model_seq.parameters()),
                layers=[type(m).__name__ for m in model_seq.children()] if isinstance(model_seq, nn.Module) else None,
                params=[p.detach() for p in model_seq.parameters()], seq_pred=seq_pred)


def skip_blocks(SkipBlock, out_skip, inputs) -> dict:
    a, b = SkipBlock(8, 16), SkipBlock(5, 3)
    with torch.no_grad():
        out8, out5 = a(inputs["x8"]), b(inputs["x5"])
    return dict(state8=a.state_dict(), out8=out8, state5=b.state_dict(), out5=out5,
                out_skip_shape=[int(s) for s in out_skip.shape])


def relu_table(train_relu_xor, final_losses, convergence_rate, inputs) -> dict:
    runs = [float(train_relu_xor(hidden, seed, epochs)) for hidden, seed, epochs in inputs["runs"]]
    return dict(final_losses=final_losses, convergence_rate=convergence_rate, runs=runs)


def device_runs(with_bias, predict_on, inputs) -> dict:
    """with_bias and predict_on on the CPU, on the meta device and (when there is one) on a GPU."""
    results = {"cuda": bool(torch.cuda.is_available())}
    meta = torch.device("meta")

    def attempt(name, fn):
        try:
            results[name] = fn()
        except Exception as exc:
            results[name] = "error: " + (type(exc).__name__ + ": " + str(exc))[:200]

    def linear(name):
        # the layer records where its input and its weight are each time it runs
        layer = nn.Linear(3, 1)
        layer.load_state_dict({"weight": inputs["weight"], "bias": inputs["bias"]})
        seen = results.setdefault("seen_" + name, [])
        layer.register_forward_pre_hook(lambda module, args: seen.append([str(args[0].device),
                                                                          str(module.weight.device)]))
        return layer

    x = inputs["x"]
    x_bias = torch.cat([x, torch.ones(x.shape[0], 1)], dim=1)
    targets = {"meta": meta}
    if torch.cuda.is_available():
        targets["cuda"] = torch.device("cuda")
    attempt("bias_cpu", lambda: with_bias(x))
    attempt("bias_cpu64", lambda: with_bias(x.double()))
    attempt("bias_cpu16", lambda: with_bias(x.half()))
    attempt("bias_meta64", lambda: with_bias(x.to(meta, torch.float64)))
    attempt("pred_cpu", lambda: predict_on(linear("pred_cpu"), x_bias, torch.device("cpu")))
    for name, dev in targets.items():
        attempt("bias_" + name, lambda: with_bias(x.to(dev)))
        attempt("pred_" + name, lambda: predict_on(linear("pred_" + name), x_bias, dev))
        attempt("pred_from_" + name, lambda: predict_on(linear("pred_from_" + name).to(dev), x_bias.to(dev), dev))
    return results


def attempt(fn, *args):
    """`fn(*args)`, or "error: ..." when the student's code raises (the verdict says so)."""
    try:
        value = fn(*args)
    except Exception as exc:  # noqa: BLE001 - reported to the student by the verdict
        return "error: " + (type(exc).__name__ + ": " + str(exc))[:200]
    return list(value) if isinstance(value, tuple) else value


def tensor_operations(linear_map, row_sums, center_columns, flatten_samples, inputs) -> dict:
    """Each function on the grader's tensors (fresh copies, so an in-place change does not leak)."""
    X, W, b, A, T = (inputs[k].clone() for k in ("X", "W", "b", "A", "T"))
    return dict(linear=attempt(linear_map, X, W, b), sums=attempt(row_sums, A.clone()),
                centered=attempt(center_columns, A.clone()), flat=attempt(flatten_samples, T))


def constructors(evenly_spaced, numbered_grid, first_row_and_column, sub_block, inputs) -> dict:
    start, stop, n = inputs["space"]
    rows, cols = inputs["grid"]
    d = inputs["d"]
    return dict(spaced=attempt(evenly_spaced, start, stop, n), grid=attempt(numbered_grid, rows, cols),
                row_col=attempt(first_row_and_column, d.clone()), block=attempt(sub_block, d.clone(), *inputs["block"]))


def lesson_autograd(chain_gradient, df_manual, df_autograd, inputs) -> dict:
    chains = [counted(attempt, chain_gradient, list(v)) for v in inputs["vectors"]]
    auto = [counted(attempt, df_autograd, x) for x in inputs["xs"]]
    return dict(chains=[v for v, _ in chains], chain_runs=[n for _, n in chains],
                manual=[attempt(df_manual, x) for x in inputs["xs"]],
                autograd=[v for v, _ in auto], autograd_runs=[n for _, n in auto])


def simple_net(SimpleNet, parameter_table, count_parameters, inputs) -> dict:
    """A SimpleNet of the grader's sizes on its inputs, and both helpers on it and on a stack of the
    grader's own layers (built here from torch.nn only)."""
    i, h, o = inputs["sizes"]
    net = SimpleNet(i, h, o)
    with torch.no_grad():
        out = attempt(net, inputs["x"])
    sizes = inputs["stack"]
    stack = nn.Sequential(*[nn.Linear(a, c) for a, c in zip(sizes, sizes[1:])])
    table = attempt(parameter_table, net)
    return dict(state=net.state_dict(), out=out,
                layers=[[name, type(m).__name__] for name, m in net.named_children()],
                table=[[str(k), [int(s) for s in v] if isinstance(v, (tuple, list)) else repr(v)]
                       for k, v in table.items()] if isinstance(table, dict) else str(table)[:200],
                count=attempt(count_parameters, net), stack_count=attempt(count_parameters, stack))


def side_by_side(micrograd_grads, torch_grads, Value, inputs) -> dict:
    """Both functions at the grader's points, counting Value.backward calls and autograd runs."""
    backward, calls = Value.backward, []

    def counting(self, *a, **k):
        calls.append(1)
        return backward(self, *a, **k)

    micro = []
    Value.backward = counting
    try:
        for x0, y0 in inputs["points"]:
            start = len(calls)
            micro.append([attempt(micrograd_grads, x0, y0), len(calls) - start])
    finally:
        Value.backward = backward
    runs = [counted(attempt, torch_grads, x0, y0) for x0, y0 in inputs["points"]]
    return dict(micro=[v for v, _ in micro], micro_runs=[n for _, n in micro],
                torch=[v for v, _ in runs], torch_runs=[n for _, n in runs])


def traced_timing(call, events: list, cuda: bool, namespace: dict):
    """`call()` while torch claims a GPU (`cuda`), every CUDA placement lands on the meta device,
    and each matrix product, torch.cuda.synchronize() and clock read is appended to `events`.

    The clock is fake: it reads 0.5 s per matrix product run so far, so a function that times
    exactly its `repeats` products returns 0.5 per product whatever the machine.
    """
    import time
    import timeit

    from torch.overrides import TorchFunctionMode

    products = {"matmul", "mm", "__matmul__", "__rmatmul__", "bmm", "einsum"}

    def meta(a):
        if isinstance(a, torch.device) and a.type == "cuda":
            return torch.device("meta")
        return "meta" if isinstance(a, str) and a.startswith("cuda") else a

    class Redirect(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in products:
                shapes = [list(a.shape) for a in args if isinstance(a, torch.Tensor)]
                events.append(["work", str(args[0].device) if args and isinstance(args[0], torch.Tensor) else "?",
                               shapes[:1]])
            if func is torch.device:  # the device the student names stays "cuda"; its tensors go to meta
                return func(*args, **(kwargs or {}))
            if func is torch.Tensor.cuda:
                return args[0].to("meta")
            args = tuple(meta(a) for a in args)
            kwargs = {k: meta(v) for k, v in (kwargs or {}).items()}
            return func(*args, **kwargs)

    def clock(*a):
        events.append(["clock"])
        return 0.5 * sum(1 for e in events if e[0] == "work")

    def clock_ns(*a):
        return int(clock() * 1e9)

    def sync(*a, **k):
        events.append(["sync"])

    fakes = {(time, "perf_counter"): clock, (time, "time"): clock, (time, "monotonic"): clock,
             (time, "process_time"): clock, (time, "perf_counter_ns"): clock_ns, (time, "time_ns"): clock_ns,
             (time, "monotonic_ns"): clock_ns, (timeit, "default_timer"): clock,
             (torch.cuda, "synchronize"): sync, (torch.cuda, "is_available"): lambda: cuda}
    saved = {key: getattr(*key) for key in fakes}
    patched = {key: _this_thread_only(fake, saved[key]) for key, fake in fakes.items()}
    replacement = {id(value): patched[key] for key, value in saved.items()}
    # names bound by `from time import perf_counter` in the student's namespace
    names = {name: value for name, value in namespace.items() if id(value) in replacement and callable(value)}
    try:
        for (owner, name), value in patched.items():
            setattr(owner, name, value)
        for name, value in names.items():
            namespace[name] = replacement[id(value)]
        with Redirect():
            return call()
    except Exception as exc:  # noqa: BLE001 - reported to the student by the verdict
        return "error: " + (type(exc).__name__ + ": " + str(exc))[:200]
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)
        namespace.update(names)


def _this_thread_only(fake, real):
    """`fake` for calls from the thread that installs it (the traced benchmark), `real` for any other
    thread's: a library's background thread reading the clock is not part of the student's timing."""
    import threading

    tracer = threading.get_ident()

    def either(*args, **kwargs):
        return (fake if threading.get_ident() == tracer else real)(*args, **kwargs)

    return either


def benchmark_trace(time_matmul, benchmark, inputs) -> dict:
    """time_matmul on a stand-in GPU and on the CPU, and benchmark, each with its trace of events."""
    n, repeats = inputs["n"], inputs["repeats"]
    A = torch.from_numpy(inputs["A"].numpy().copy()) if hasattr(inputs["A"], "numpy") else torch.tensor(inputs["A"])
    namespace = getattr(time_matmul, "__globals__", {})
    runs = {}
    for name, device, cuda, call in (
            ("gpu", "cuda", True, lambda: time_matmul(A.clone(), torch.device("cuda"), repeats)),
            ("cpu", "cpu", False, lambda: time_matmul(A.clone(), torch.device("cpu"), repeats)),
            ("benchmark", "cuda", True, lambda: benchmark(n, torch.device("cuda")))):
        events = []
        value = traced_timing(call, events, cuda, namespace)
        runs[name] = {"value": list(value) if isinstance(value, tuple) else value, "events": events[:200]}
    return runs
