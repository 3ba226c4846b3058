"""Probes for `perceptron-xor`, run in the student's process. Each parameter names a student variable
(`inputs` is the check's fresh inputs); the returned dict is all its verdict sees."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from autograder.probe_tools import figure_summary, fresh_outputs, watched_run

from .reference import GATE_INPUTS, XOR_EPOCHS, XOR_TARGETS, step_from, train_xor, xor_net


def regression(w, b, losses) -> dict:
    return dict(w=w, b=b, leaf=[getattr(w, "is_leaf", None), getattr(b, "is_leaf", None)],
                losses=[float(v) for v in losses])


def fresh_perceptron(Perceptron, inputs) -> dict:
    fresh, data = fresh_outputs(Perceptron, inputs["x"])
    return dict(data, state=fresh.state_dict())


def fresh_xor_mlp(XOR_MLP, inputs) -> dict:
    fresh, data = fresh_outputs(XOR_MLP, inputs["x"])
    return dict(data, params=[p.detach().clone() for p in fresh.parameters()])


def one_step(train_step, inputs) -> dict:
    """The student's train_step once on the grader's batch, weights and stale gradients."""
    state, loss = step_from(inputs, train_step)
    return dict(loss=loss, state=state)


def step_on_meta(train_step) -> dict:
    """train_step given a network on the meta device and the XOR batch on the CPU: it must move the batch."""
    meta = torch.device("meta")
    with torch.random.fork_rng():
        net = xor_net().to(meta)
    X = torch.tensor(GATE_INPUTS)  # on the CPU
    y = torch.tensor(XOR_TARGETS)
    return dict(run=watched_run(
        lambda model, criterion: train_step(model, criterion, torch.optim.SGD(model.parameters(), lr=0.1), X, y, meta),
        net, F.binary_cross_entropy))


def and_weights(model) -> dict:
    return dict(state={k: v.cpu() for k, v in model.state_dict().items()})


def xor_history(losses) -> dict:
    return dict(losses=[float(v) for v in losses])


def xor_weights(model) -> dict:
    return dict(params=[p.detach().cpu().clone() for p in model.parameters()])


def curves(fig, manual_losses, losses) -> dict:
    return dict(figure=figure_summary(fig), n_manual=len(manual_losses), n_torch=len(losses))


# -- hand-offs ----------------------------------------------------------------------------------
def set_device(pick_device) -> dict:
    """After q2, with the reference pick_device installed: `device = pick_device()`."""
    return dict(device=pick_device())


def usable_xor_losses(losses=None) -> dict:
    """After q3: Question 4 plots the XOR `losses`. When Question 3 left no usable curve (5000
    floats), the grader trains the fully specified reference recipe here (on the CPU: only the
    curve is used), so a mistake in Question 3 does not also cost Question 4."""
    if isinstance(losses, list) and len(losses) == XOR_EPOCHS and all(isinstance(v, float) for v in losses):
        return {}
    return dict(losses=train_xor()[1])


# -- Part I: the fundamentals ---------------------------------------------------------------------
def _plain(value):
    """A tensor detached onto the CPU (a gradient or an output), anything else as it is."""
    return value.detach().cpu() if isinstance(value, torch.Tensor) else value


def regression_grads_on(regression_grads, inputs) -> dict:
    """The student's regression_grads on each of the grader's data sets and starting weights, in turn
    (a function that keeps its w and b between calls shows accumulated gradients on the later ones)."""
    grads = []
    for case in inputs["cases"]:
        result = regression_grads(case["x"].clone(), case["y"].clone(), case["w0"], case["b0"])
        grads.append([_plain(v) for v in result] if isinstance(result, (tuple, list)) else _plain(result))
    return dict(grads=grads)


def notes_regression_grads(dL_dw, dL_db) -> dict:
    return dict(dL_dw=_plain(dL_dw), dL_db=_plain(dL_db))


def grad_histories(grad_history, grad_first, grad_accumulated, grad_after_zero, inputs) -> dict:
    """The student's grad_history on the grader's starting values and counts, and the notes' three steps."""
    runs = []
    for case in inputs["cases"]:
        result = grad_history(case["w0"], case["n"], case["zero_grad"])
        runs.append([_plain(v) for v in result] if isinstance(result, (tuple, list)) else _plain(result))
    return dict(runs=runs, notes=[_plain(grad_first), _plain(grad_accumulated), _plain(grad_after_zero)])


def first_network_on(MyFirstNetwork, net, n_params, inputs) -> dict:
    """MyFirstNetwork built with the grader's sizes (its parameters and its outputs on the grader's
    inputs), and the shapes of `net`'s parameters with the student's count of them."""
    with torch.random.fork_rng():
        fresh = MyFirstNetwork(*inputs["sizes"])
    fresh.eval()
    try:  # a network with other layer sizes cannot take the inputs: its parameters' shapes say why
        with torch.no_grad():
            out = fresh(inputs["x"].clone())
    except RuntimeError:
        out = None
    return dict(params=[p.detach().clone() for p in fresh.parameters()], out=_plain(out),
                net_shapes=[list(p.shape) for p in net.parameters()], n_params=_plain(n_params))


def sequential_on(net_seq, inputs) -> dict:
    """A copy of `net_seq` given the grader's weights (in parameters() order), then run on the grader's inputs."""
    seq = copy.deepcopy(net_seq)
    params = list(seq.parameters())
    shapes = [list(p.shape) for p in params]
    out = None
    if shapes == [list(v.shape) for v in inputs["weights"]]:
        with torch.no_grad():
            for p, value in zip(params, inputs["weights"]):
                p.copy_(value)
            seq.eval()
            out = _plain(seq(inputs["x"].clone()))
    return dict(sequential=isinstance(net_seq, torch.nn.Sequential), shapes=shapes, out=out)
