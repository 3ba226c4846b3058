"""The reference the perceptron-xor checks compare with: the Phase 1 regression loop, the prompt's
Perceptron and 2-4-1 XOR network, `train_step` and `pick_device` (handed over after Question 2)
and the AND and XOR training recipes. Imports only numpy and torch: hand-offs send these functions'
own source into the sandbox."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

REGRESSION_SEED = 42
REGRESSION_EPOCHS = 500
REGRESSION_LR = 0.01
AND_EPOCHS = 1000
AND_LR = 1.0
XOR_EPOCHS = 5000
XOR_LR = 0.01
XOR_SEED = 42  # the notebook's torch.manual_seed right before XOR_MLP() (see calibrate.py)
GATE_INPUTS = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
AND_TARGETS = [[0.0], [0.0], [0.0], [1.0]]
XOR_TARGETS = [[0.0], [1.0], [1.0], [0.0]]


# -- Phase 1: linear regression with raw autograd -----------------------------------------------
def regression_epoch(w, b, x, y_true, lr):
    """One epoch of the notes' loop: mean squared error, update under no_grad, both gradients zeroed."""
    loss = ((w * x + b - y_true) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
    w.grad.zero_()
    b.grad.zero_()
    return loss.item()


def train_regression(epochs: int = REGRESSION_EPOCHS, lr: float = REGRESSION_LR, dtype=torch.float32,
                     epoch=regression_epoch) -> dict:
    """Phase 1 exactly as the notes write it (calibration passes other `epoch` functions, counts, lrs)."""
    torch.manual_seed(REGRESSION_SEED)
    x = torch.linspace(0, 5, 50)
    y_true = 2 * x + 1 + torch.randn(50) * 0.5
    x, y_true = x.to(dtype), y_true.to(dtype)
    w = torch.tensor(0.0, requires_grad=True, dtype=dtype)
    b = torch.tensor(0.0, requires_grad=True, dtype=dtype)
    losses = [epoch(w, b, x, y_true, lr) for _ in range(epochs)]
    return {"w": w.item(), "b": b.item(), "losses": np.array(losses)}


# -- Phases 2 and 3: the models, the training step, the device ----------------------------------
class Perceptron(nn.Module):
    """The AND perceptron: inputs (N, 2) -> probabilities (N, 1)."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.linear(x))


def xor_net() -> nn.Sequential:
    """The 2-4-1 network: Linear(2, 4) -> ReLU -> Linear(4, 1) -> Sigmoid, layers created in that order."""
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())


def pick_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def train_step(model, criterion, optimizer, X, y, device):
    X, y = X.to(device), y.to(device)
    loss = criterion(model(X), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_from(inputs: dict, step) -> tuple[dict, object]:
    """`step` (a train_step) run once on the grader's batch: the 2-4-1 network with the grader's
    weights, stale gradients left by an earlier step and SGD at the grader's lr. Returns the
    weights after the step and what `step` returned."""
    with torch.random.fork_rng():
        net = xor_net()
    net.load_state_dict(inputs["init"])
    net.train()
    for name, p in net.named_parameters():
        p.grad = inputs["stale"][name].clone()  # gradients left over from an earlier step
    optimizer = torch.optim.SGD(net.parameters(), lr=float(inputs["lr"]))
    loss = step(net, nn.BCELoss(), optimizer, inputs["X"].clone(), inputs["y"].clone(), torch.device("cpu"))
    return net.state_dict(), loss


def train_gate(model, optimizer, targets, epochs: int) -> list[float]:
    """Full-batch BCE training on a truth table with `train_step` (on the CPU); the loss of every epoch."""
    X = torch.tensor(GATE_INPUTS, dtype=torch.float32)
    y = torch.tensor(targets, dtype=torch.float32)
    criterion = nn.BCELoss()
    return [train_step(model, criterion, optimizer, X, y, torch.device("cpu")) for _ in range(epochs)]


def train_and(seed: int, epochs: int = AND_EPOCHS, lr: float = AND_LR) -> Perceptron:
    """The AND recipe: a Perceptron after torch.manual_seed(seed), BCELoss, SGD."""
    torch.manual_seed(seed)
    model = Perceptron()
    train_gate(model, torch.optim.SGD(model.parameters(), lr=lr), AND_TARGETS, epochs)
    return model


def train_xor(seed: int = XOR_SEED, epochs: int = XOR_EPOCHS) -> tuple[nn.Sequential, list[float]]:
    """The XOR recipe: the 2-4-1 network after torch.manual_seed(seed), BCELoss, Adam lr=0.01."""
    torch.manual_seed(seed)
    net = xor_net()
    losses = train_gate(net, torch.optim.Adam(net.parameters(), lr=XOR_LR), XOR_TARGETS, epochs)
    return net, losses


# -- Part I: the fundamentals (Questions 6 to 9) ---------------------------------------------------
NOTES_X = [1.0, 2.0, 3.0, 4.0, 5.0]  # the five points of "Linear regression in 5 lines"
NOTES_Y = [2.2, 3.8, 6.1, 7.9, 10.1]
FIRST_SIZES = (2, 4, 3)  # MyFirstNetwork(n_input=2, n_hidden=4, n_output=3), and the nn.Sequential net_seq


def mse_grads(x, y_true, w0: float, b0: float) -> tuple[float, float]:
    """dL/dw and dL/db of L = mean((w x + b - y)^2) at (w0, b0), in closed form (float64):
    2 mean(r x) and 2 mean(r) with the residuals r = w0 x + b0 - y."""
    x = np.asarray(x, dtype=np.float64)
    residual = w0 * x + b0 - np.asarray(y_true, dtype=np.float64)
    return float(2 * np.mean(residual * x)), float(2 * np.mean(residual))


def square_grad_history(w0: float, n_backward: int, zero_grad: bool) -> list[float]:
    """w.grad after each of n_backward backward passes of (w * 3) ** 2 at w = w0: each pass adds
    d/dw = 18 w, so the k-th value is 18 w0 k, or 18 w0 every time when w.grad is zeroed before each."""
    return [18.0 * w0 * (1 if zero_grad else k) for k in range(1, n_backward + 1)]


def linear_params(n_in: int, n_out: int) -> int:
    """The parameters of nn.Linear(n_in, n_out): the weight matrix and the bias."""
    return n_in * n_out + n_out


def first_network(n_input: int, n_hidden: int, n_output: int) -> nn.Sequential:
    """MyFirstNetwork's computation: Linear(n_input, n_hidden) -> ReLU -> Linear(n_hidden, n_output), raw logits."""
    return nn.Sequential(nn.Linear(n_input, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_output))
