"""Calibration of perceptron-xor's recipes and tolerances: `python -m autograder calibrate perceptron-xor`.

Per seed: the XOR recipe (2-4-1, ReLU then Sigmoid, BCELoss, Adam lr=0.01, 5000 full-batch epochs)
and the AND recipe (Perceptron, BCELoss, SGD lr=1.0, 1000 epochs) right after
`torch.manual_seed(seed)`, scored by the verdicts' own count of right outputs: the mean of "XOR recipe
fails" is the failure rate that justifies the notebook's fixed seed. Then, for every tolerance, the
largest distance among correct variants and the smallest among realistic mistakes, measured with the
verdicts' own distances on one grader draw of the inputs (regression_tolerance and the losses' RTOL
do not depend on the seed).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder import wire
from autograder.checks import Context

from . import verdicts
from .reference import (FIRST_SIZES, NOTES_X, NOTES_Y, Perceptron, first_network, mse_grads, square_grad_history,
                        train_and, train_regression, train_xor, xor_net)

DEFAULT_SEEDS = 66


def _as_probed(data: dict) -> dict:
    """What a verdict receives: the data after the wire format."""
    return wire.decode(wire.encode(data))


# -- Phase 1 loops: correct variants and mistakes ------------------------------------------------
def regression_variant(loss: str = "mean", update: str = "-=", zero: str = "after"):
    """One epoch of the Phase 1 loop written another way (the reference is reference.regression_epoch)."""
    def epoch(w, b, x, y_true, lr):
        if zero == "before" and w.grad is not None:
            w.grad.zero_()
            b.grad.zero_()
        y_pred = w * x + b
        value = {"mean": lambda: ((y_pred - y_true) ** 2).mean(), "F.mse_loss": lambda: F.mse_loss(y_pred, y_true),
                 "absolute": lambda: (y_pred - y_true).abs().mean()}[loss]()
        value.backward()
        with torch.no_grad():
            if update == "-=":
                w -= lr * w.grad
                b -= lr * b.grad
            else:
                w.sub_(lr * w.grad)
                b.sub_(lr * b.grad)
        if zero == "after":
            w.grad.zero_()
            b.grad.zero_()
        elif zero == "None":
            w.grad = None
            b.grad = None
        elif zero == "w only":
            w.grad.zero_()
        return value.item()
    return epoch


REGRESSION_CORRECT = {"F.mse_loss": dict(epoch=regression_variant("F.mse_loss")),
                      ".sub_()": dict(epoch=regression_variant(update="sub_")),
                      "grad = None": dict(epoch=regression_variant(zero="None")),
                      "zeroed before backward": dict(epoch=regression_variant(zero="before")),
                      "float64 data": dict(dtype=torch.float64)}
REGRESSION_WRONG = {"lr 0.011": dict(lr=0.011), "lr 0.009": dict(lr=0.009), "499 epochs": dict(epochs=499),
                    "501 epochs": dict(epochs=501), "only w zeroed": dict(epoch=regression_variant(zero="w only")),
                    "never zeroed": dict(epoch=regression_variant(zero="never")),
                    "mean absolute error": dict(epoch=regression_variant("absolute"))}


def _regression(ref: dict) -> dict[str, float]:
    target = ref["regression"]

    def learned(run):
        return max(verdicts.learned_distance(run[name], name, target) for name in ("w", "b"))

    def history(run):  # the length check catches other epoch counts first
        n = min(len(run["losses"]), len(target["losses"]))
        return verdicts.allclose_excess(run["losses"][:n], target["losses"][:n])

    correct = [train_regression(**options) for options in REGRESSION_CORRECT.values()]
    wrong = {name: train_regression(**options) for name, options in REGRESSION_WRONG.items()}
    same_length = [run for name, run in wrong.items() if "epochs" not in name]
    return {
        "regression_tolerance largest correct distance (F.mse_loss, .sub_(), grad = None, zeroed first, float64)":
            max(learned(run) for run in correct),
        "regression_tolerance smallest mistake distance (499/501 epochs, lr 0.011/0.009, only w zeroed, never "
        "zeroed, absolute error)": min(learned(run) for run in wrong.values()),
        "losses RTOL largest correct excess": max(history(run) for run in correct),
        "losses RTOL smallest mistake excess (lr 0.011/0.009, only w zeroed, never zeroed, absolute error)":
            min(history(run) for run in same_length),
    }


# -- Phase 2 and 3 forward passes: the outputs' RTOL on the grader's points -----------------------
def _outputs(ctx: Context) -> dict[str, float]:
    x = verdicts.inputs_points(ctx)["x"]
    perceptron, net = Perceptron(), xor_net()
    with torch.no_grad():
        probed = _as_probed({"state": perceptron.state_dict(), "params": list(net.parameters())})
        expected = verdicts.perceptron_from(probed["state"])(x).numpy()
        z = perceptron.linear(x)
        perceptron_correct = [nn.Sigmoid()(z), 1 / (1 + torch.exp(-z)), F.sigmoid(z), torch.sigmoid(z.double()).float()]
        perceptron_wrong = [F.hardsigmoid(z), z, torch.sigmoid(2 * z)]
        xor_expected = verdicts.xor_net_from(probed["params"], "the network")(x).numpy()
        hidden, output = net[0], net[2]
        xor_correct = [torch.sigmoid(output(torch.relu(hidden(x)))), torch.sigmoid(output(hidden(x).clamp(min=0)))]
        xor_wrong = [torch.sigmoid(output(F.leaky_relu(hidden(x), 0.01))), torch.sigmoid(output(hidden(x))),
                     torch.sigmoid(output(torch.tanh(hidden(x))))]

    def excess(outs, reference):
        return [verdicts.allclose_excess(out.numpy(), reference) for out in outs]
    return {
        "perceptron output RTOL largest correct excess (nn.Sigmoid, 1/(1+exp(-z)), F.sigmoid, float64)":
            max(excess(perceptron_correct, expected)),
        "perceptron output RTOL smallest mistake excess (hardsigmoid, no sigmoid, sigmoid(2z))":
            min(excess(perceptron_wrong, expected)),
        "XOR_MLP output RTOL largest correct excess (torch.relu, clamp(min=0))": max(excess(xor_correct, xor_expected)),
        "XOR_MLP output RTOL smallest mistake excess (LeakyReLU(0.01), no ReLU, Tanh)":
            min(excess(xor_wrong, xor_expected)),
    }


# -- train_step variants: the correct ones must stay within STEP_ATOL, the mistakes beyond it ------
def step_variant(*order: str, loss_function=None):
    """A train_step doing `order`'s actions ("forward", "zero_grad", "zero_grad(set_to_none=False)",
    "model.zero_grad", "backward", "step"), with the given criterion unless `loss_function` replaces it;
    it returns the last forward pass's loss (the reference order is forward, zero_grad, backward, step)."""
    def step(model, criterion, optimizer, X, y, device):
        losses = []
        actions = {"forward": lambda: losses.append((loss_function or criterion)(model(X), y)),
                   "zero_grad": optimizer.zero_grad,
                   "zero_grad(set_to_none=False)": lambda: optimizer.zero_grad(set_to_none=False),
                   "model.zero_grad": model.zero_grad, "backward": lambda: losses[0].backward(),
                   "step": optimizer.step}
        for action in order:
            actions[action]()
        return losses[-1].item()
    return step


NO_ZERO_GRAD = step_variant("forward", "backward", "step")
CORRECT_STEPS = (step_variant("zero_grad", "forward", "backward", "step"),
                 step_variant("forward", "model.zero_grad", "backward", "step"),
                 step_variant("forward", "zero_grad(set_to_none=False)", "backward", "step"),
                 step_variant("forward", "zero_grad", "backward", "step",
                              loss_function=lambda out, y: F.binary_cross_entropy(out.double(), y.double())))
SUM_REDUCTION = step_variant("forward", "zero_grad", "backward", "step", loss_function=nn.BCELoss(reduction="sum"))
WEIGHT_MISTAKES = (NO_ZERO_GRAD, step_variant("forward", "backward", "zero_grad", "step"),
                   step_variant("forward", "zero_grad", "step", "backward"), SUM_REDUCTION)
LOSS_MISTAKES = (step_variant("forward", "zero_grad", "backward", "step", "forward"), SUM_REDUCTION)


def _steps(ctx: Context) -> dict[str, float]:
    inputs = verdicts.inputs_step(ctx)

    def distances(step):
        state, loss = verdicts.step_from(inputs, step)
        return verdicts.step_distance(_as_probed({"state": state, "loss": loss}), inputs)

    correct = [distances(step) for step in CORRECT_STEPS]
    return {
        "STEP_ATOL largest correct weight distance": max(weights for weights, _ in correct),
        "STEP_ATOL smallest mistake weight distance (no zero_grad, zero_grad after backward, step before "
        "backward, sum reduction)": min(distances(step)[0] for step in WEIGHT_MISTAKES),
        "10 * STEP_ATOL largest correct loss distance": max(loss for _, loss in correct),
        "10 * STEP_ATOL smallest mistake loss distance (loss after the step, sum reduction)":
            min(distances(step)[1] for step in LOSS_MISTAKES),
    }


# -- the AND and XOR recipes at this seed -----------------------------------------------------------
def _recipes(ref: dict, seed: int) -> dict[str, float]:
    X, _ = ref["xor"]
    net, losses = train_xor(seed)
    with torch.no_grad():
        p = net(X)
        dead = int((net[0](X) <= 0).all(dim=0).sum())  # hidden units that are off for all four inputs
    xor_fails = verdicts.right_outputs(net, ref["xor"]) < 4
    and_model = train_and(seed)
    with torch.no_grad():
        and_margin = float((and_model(ref["and"][0]) - 0.5).abs().min())
    return {
        "XOR recipe fails (1 = below 4 of 4; the mean is the failure rate)": float(xor_fails),
        "XOR recipe dead hidden units": dead,
        "XOR recipe margin: smallest distance of an output from 0.5 (successful seeds)": float("nan") if xor_fails else
        float((p - 0.5).abs().min()),
        "XOR recipe final BCE": losses[-1],
        "AND recipe outputs right (of 4)": verdicts.right_outputs(and_model, ref["and"]),
        "AND recipe margin: smallest distance of an output from 0.5": and_margin,
        "AND mistake 10 epochs: outputs right (of 4)": verdicts.right_outputs(train_and(seed, epochs=10), ref["and"]),
        "AND mistake lr 0.01: outputs right (of 4)": verdicts.right_outputs(train_and(seed, lr=0.01), ref["and"]),
    }


# -- Part I (Questions 6 to 9): RTOL on the grader's draws ---------------------------------------------
def autograd_grads(x, y, w0, b0, dtype=torch.float32, reduce=lambda r: (r ** 2).mean()):
    """regression_grads as a notebook writes it (the mistakes pass another reduction)."""
    w = torch.tensor(float(w0), requires_grad=True, dtype=dtype)
    b = torch.tensor(float(b0), requires_grad=True, dtype=dtype)
    reduce(w * x.to(dtype) + b - y.to(dtype)).backward()
    return [w.grad.item(), b.grad.item()]


def autograd_history(w0, n, zero_grad, dtype=torch.float32):
    w = torch.tensor(float(w0), requires_grad=True, dtype=dtype)
    out = []
    for _ in range(n):
        if zero_grad:
            w.grad = None
        ((w * 3) ** 2).backward()
        out.append(w.grad.item())
    return out


GRAD_CORRECT = {"float32": {}, "float64": dict(dtype=torch.float64),
                "F.mse_loss": dict(reduce=lambda r: F.mse_loss(r, torch.zeros_like(r)))}
GRAD_WRONG = {"sum": dict(reduce=lambda r: (r ** 2).sum()), "half": dict(reduce=lambda r: (r ** 2).mean() / 2),
              "absolute error": dict(reduce=lambda r: r.abs().mean())}


def _part1(ctx: Context) -> dict[str, float]:
    def grads_excess(variant):
        return max(verdicts.allclose_excess(autograd_grads(c["x"], c["y"], c["w0"], c["b0"], **variant),
                                            mse_grads(c["x"].numpy(), c["y"].numpy(), c["w0"], c["b0"]))
                   for c in verdicts.inputs_regression_grads(ctx)["cases"])

    def notes_excess(variant):
        return verdicts.allclose_excess(autograd_grads(torch.tensor(NOTES_X), torch.tensor(NOTES_Y), 0.0, 0.0,
                                                       **variant), mse_grads(NOTES_X, NOTES_Y, 0.0, 0.0))

    cases = verdicts.inputs_grad_history(ctx)["cases"]

    def history_excess(history):
        return max(verdicts.allclose_excess(history(c), square_grad_history(c["w0"], c["n"], c["zero_grad"]))
                   for c in cases)

    sizes = verdicts.inputs_first_network(ctx)
    seq = verdicts.inputs_sequential(ctx)
    net = first_network(*FIRST_SIZES)
    with torch.no_grad():
        for target, value in zip(net.parameters(), seq["weights"]):
            target.copy_(value)
    fresh = first_network(*sizes["sizes"])

    def forward_excess(model, x, activation, last=lambda z: z):
        with torch.no_grad():
            return verdicts.allclose_excess(last(model[2](activation(model[0](x)))).numpy(), model(x).numpy())

    correct_act = {"torch.relu": torch.relu, "clamp(min=0)": lambda z: z.clamp(min=0)}
    wrong_act = {"no ReLU": lambda z: z, "LeakyReLU(0.01)": lambda z: F.leaky_relu(z, 0.01), "Sigmoid": torch.sigmoid}
    forward = {}
    for name, model, x in (("MyFirstNetwork", fresh, sizes["x"]), ("net_seq", net, seq["x"])):
        forward[f"{name} output RTOL largest correct excess (torch.relu, clamp(min=0))"] = \
            max(forward_excess(model, x, act) for act in correct_act.values())
        forward[f"{name} output RTOL smallest mistake excess (no ReLU, LeakyReLU(0.01), Sigmoid, softmax at the end)"] \
            = min([forward_excess(model, x, act) for act in wrong_act.values()]
                  + [forward_excess(model, x, torch.relu, lambda z: torch.softmax(z, dim=1))])
    return {
        "regression_grads RTOL largest correct excess (float32, float64, F.mse_loss)":
            max(grads_excess(v) for v in GRAD_CORRECT.values()),
        "regression_grads RTOL smallest mistake excess (sum, half the MSE, absolute error)":
            min(grads_excess(v) for v in GRAD_WRONG.values()),
        "dL_dw, dL_db RTOL largest correct excess": max(notes_excess(v) for v in GRAD_CORRECT.values()),
        "dL_dw, dL_db RTOL smallest mistake excess": min(notes_excess(v) for v in GRAD_WRONG.values()),
        "grad_history RTOL largest correct excess (float32, float64)":
            max(history_excess(lambda c, d=d: autograd_history(c["w0"], c["n"], c["zero_grad"], d))
                for d in (torch.float32, torch.float64)),
        "grad_history RTOL smallest mistake excess (never zeroed, always zeroed)":
            min(history_excess(lambda c, z=z: autograd_history(c["w0"], c["n"], z)) for z in (False, True)),
        **forward,
    }


def calibrate(seed: int) -> dict[str, float]:
    torch.set_num_threads(1)
    ref = verdicts.reference(None)
    measured = _recipes(ref, seed)
    torch.manual_seed(seed)  # the fresh weights the outputs are compared on
    measured.update(_outputs(Context(ref=ref, thresholds={}, budget={}, rng=np.random.default_rng([1, seed]))))
    measured.update(_steps(Context(ref=ref, thresholds={}, budget={}, rng=np.random.default_rng([2, seed]))))
    measured.update(_regression(ref))
    measured.update(_part1(Context(ref=ref, thresholds={}, budget={}, rng=np.random.default_rng([3, seed]))))
    return measured
