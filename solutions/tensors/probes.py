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
