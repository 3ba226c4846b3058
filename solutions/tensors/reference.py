"""The reference the tensors checks compare with: the chapter's modules (XORNet, ReLUXORNet,
SkipBlock, the 2-8-1 nn.Sequential), its seeded runs and the functions the prompt specifies.
Imports only the standard library, numpy and torch."""
from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn

X_XOR = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
Y_XOR = [[0.0], [1.0], [1.0], [0.0]]
Y_XOR_TANH = [[-1.0], [1.0], [1.0], [-1.0]]

# The reference runs seed torch's global generator; verdicts of parallel submissions must not interleave.
RNG_LOCK = threading.Lock()


class XORNet(nn.Module):
    """Reference 2-2-1 tanh network."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(2, 2)
        self.output = nn.Linear(2, 1)

    def forward(self, x):
        return torch.tanh(self.output(torch.tanh(self.hidden(x))))


class ReLUXORNet(nn.Module):
    """Reference 2-h-1 ReLU network with a linear output."""

    def __init__(self, hidden):
        super().__init__()
        self.hidden = nn.Linear(2, hidden)
        self.output = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.output(torch.relu(self.hidden(x)))


def sequential_net(relu: bool = True) -> nn.Sequential:
    """Question 8's Linear(2, 8) -> ReLU -> Linear(8, 1) (`relu=False`: the no-ReLU mistake)."""
    return nn.Sequential(nn.Linear(2, 8), *([nn.ReLU()] if relu else []), nn.Linear(8, 1))


def skip_formula(state: dict, x: torch.Tensor) -> np.ndarray:
    """SkipBlock's output, ReLU(W2 ReLU(W1 x + b1) + b2) + x, from a state_dict's weights."""
    h = torch.relu(x @ state["fc1.weight"].T + state["fc1.bias"])
    return (torch.relu(h @ state["fc2.weight"].T + state["fc2.bias"]) + x).numpy()


def f_prime(x: float) -> float:
    """The float64 truth of Exercise 29.2: f'(x) = 2 sigma''(2x)."""
    s = 1.0 / (1.0 + math.exp(-2.0 * x))
    return 2.0 * s * (1.0 - s) * (1.0 - 2.0 * s)


def xor_data():
    return torch.tensor(X_XOR), torch.tensor(Y_XOR), torch.tensor(Y_XOR_TANH)


def linear_model_run() -> dict:
    """Question 4: the chapter's seeded draws, the MSE and its gradients."""
    torch.manual_seed(42)
    W = torch.randn(3, 2, requires_grad=True)
    b = torch.randn(2, requires_grad=True)
    X = torch.randn(4, 3)
    y_true = torch.randn(4, 2)
    loss = ((X @ W + b - y_true) ** 2).mean()
    loss.backward()
    return {"W": W.detach().numpy(), "b": b.detach().numpy(), "X": X.numpy(), "y_true": y_true.numpy(),
            "loss": loss.item(), "W_grad": W.grad.numpy(), "b_grad": b.grad.numpy()}


def xornet_run(model: nn.Module | None = None, zero_grad: bool = True) -> dict:
    """Question 7: the chapter's SGD run of XORNet after torch.manual_seed(42).

    `model` (built after the seed) replaces XORNet and `zero_grad=False` never zeroes the
    gradients: calibration measures an honest variant and a mistake with the same loop.
    """
    X, _, Y = xor_data()
    torch.manual_seed(42)
    model = model() if model is not None else XORNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(500):
        loss = ((model(X) - Y) ** 2).mean()
        if zero_grad:
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = model(X).numpy()
    return {"losses": np.array(losses), "final_pred": final,
            "state": {k: v.numpy().copy() for k, v in model.state_dict().items()}}


def train_sequential(seed: int, lr: float = 0.01, relu: bool = True) -> nn.Sequential:
    """Question 8's training: Adam, MSE, 1000 epochs on 0/1 XOR, after torch.manual_seed(seed)."""
    X, Y, _ = xor_data()
    torch.manual_seed(seed)
    model = sequential_net(relu)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.MSELoss()
    for _ in range(1000):
        loss = loss_fn(model(X), Y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def sequential_xor(seed: int, lr: float = 0.01, relu: bool = True) -> float:
    """The largest |prediction - target| of question 8's trained network on the four XOR points."""
    X, Y, _ = xor_data()
    model = train_sequential(seed, lr, relu)  # trained outside no_grad: its backward passes need the graph
    with torch.no_grad():
        return (model(X) - Y).abs().max().item()


def relu_xor_run(hidden: int, seed: int, epochs: int, reseed: bool = True) -> tuple[float, float]:
    """Exercise 29.5's training: (the MSE after the last update, the loss recorded in the last
    epoch, before its update). `reseed=False` continues torch's stream (the unseeded mistake)."""
    X, Y, _ = xor_data()
    if reseed:
        torch.manual_seed(seed)
    model = ReLUXORNet(hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    last = float("nan")
    for _ in range(epochs):
        loss = ((model(X) - Y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last = loss.item()
    with torch.no_grad():
        return ((model(X) - Y) ** 2).mean().item(), last


@lru_cache(maxsize=256)
def relu_xor_losses(hidden: int, seed: int, epochs: int) -> tuple[float, float]:
    """The grader's own run of Exercise 29.5 (cached). The prompt's "final loss" fits both readings."""
    with RNG_LOCK:
        return relu_xor_run(hidden, seed, epochs)


def relu_xor_loss(hidden: int, seed: int, epochs: int) -> float:
    """The MSE of the trained network (the notebook's solution)."""
    return relu_xor_losses(hidden, seed, epochs)[0]


# -- the prompt's functions, as a correct notebook writes them (tests and calibration) ----------
def grad_f(x0, y0):
    """(df/dx, df/dy) of f(x, y) = (x + y) * y at (x0, y0), by autograd."""
    x = torch.tensor(float(x0), requires_grad=True)
    y = torch.tensor(float(y0), requires_grad=True)
    ((x + y) * y).backward()
    return x.grad.item(), y.grad.item()


def accumulation_demo(theta0, reset: bool = True):
    """Exercise 29.4: (one backward, a second without zeroing, one after `theta.grad = None`);
    `reset=False` leaves out the reset (the mistake)."""
    theta = torch.tensor(float(theta0), requires_grad=True)
    (theta ** 3).backward()
    first = theta.grad.item()
    (theta ** 3).backward()
    accumulated = theta.grad.item()
    if reset:
        theta.grad = None
    (theta ** 3).backward()
    return first, accumulated, theta.grad.item()


def f_prime_autograd(x0, dtype=torch.float64):
    """Exercise 29.2 by autograd (`dtype=torch.float32`: the rounding mistake)."""
    x = torch.tensor(float(x0), dtype=dtype, requires_grad=True)
    (torch.exp(2 * x) / (1 + torch.exp(2 * x)) ** 2).backward()
    return x.grad.item()


# -- questions 12 to 16: tensor operations, Lesson 5's autograd and modules, micrograd vs torch --
def linear_map(X, W, b):
    """Question 12: the matrix product, then the bias broadcast over the rows."""
    return X @ W + b


def row_sums(A):
    return A.sum(dim=1)


def center_columns(A):
    """Each column minus its mean: a (D,) row broadcast over the N rows."""
    return A - A.mean(dim=0)


def flatten_samples(T):
    return T.reshape(T.shape[0], -1)


def evenly_spaced(start, stop, n):
    """Question 13: n points from start to stop, both included."""
    return torch.linspace(start, stop, n)


def numbered_grid(rows, cols):
    return torch.arange(rows * cols).reshape(rows, cols)


def first_row_and_column(d):
    return d[0], d[:, 0]


def sub_block(d, r0, r1, c0, c1):
    return d[r0:r1, c0:c1]


def chain_gradient(values):
    """Question 14: Lesson 5's y = 2x, z = y**2, out = z.mean(); (x.grad, the grad_fn names)."""
    x = torch.tensor(values, dtype=torch.float32, requires_grad=True)
    y = x * 2
    z = y ** 2
    out = z.mean()
    out.backward()
    return x.grad, [y.grad_fn.name(), z.grad_fn.name(), out.grad_fn.name()]


def df_manual(x):
    """f(x) = x**2 + 3x differentiated by hand."""
    return 2 * x + 3


def df_autograd(x0):
    x = torch.tensor(float(x0), requires_grad=True)
    (x ** 2 + 3 * x).backward()
    return x.grad.item()


class SimpleNet(nn.Module):
    """Question 15: Lesson 5's first network, fc1 -> ReLU -> fc2 -> Sigmoid."""

    def __init__(self, input_size, hidden_size, output_size):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, output_size)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.fc2(self.relu(self.fc1(x))))


def parameter_table(net):
    return {name: tuple(param.shape) for name, param in net.named_parameters()}


def count_parameters(net):
    return sum(p.numel() for p in net.parameters())


def simple_net_formula(state: dict, x: torch.Tensor) -> np.ndarray:
    """SimpleNet's output, sigmoid(W2 relu(W1 x + b1) + b2), from a state_dict's weights."""
    h = torch.relu(x @ state["fc1.weight"].T + state["fc1.bias"])
    return torch.sigmoid(h @ state["fc2.weight"].T + state["fc2.bias"]).numpy()


def side_by_side_truth(x: float, y: float) -> tuple[float, float, float]:
    """Question 16: z = x*y + relu(x**2), dz/dx and dz/dy (x**2 >= 0, so the ReLU passes it on)."""
    return x * y + x * x, y + 2 * x, x


def torch_grads(x0, y0):
    """Question 16's torch side: (z, dz/dx, dz/dy) of z = x*y + (x**2).relu()."""
    x = torch.tensor(float(x0), dtype=torch.float64, requires_grad=True)
    y = torch.tensor(float(y0), dtype=torch.float64, requires_grad=True)
    z = x * y + (x ** 2).relu()
    z.backward()
    return z.item(), x.grad.item(), y.grad.item()


def synchronize_if_cuda(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_matmul(A, device, repeats=5):
    """Question 17: the average seconds per A @ A on `device`, after a warm-up, synchronised on CUDA."""
    import time

    A = A.to(device)
    A @ A
    synchronize_if_cuda(device)
    start = time.perf_counter()
    for _ in range(repeats):
        A @ A
    synchronize_if_cuda(device)
    return (time.perf_counter() - start) / repeats


def benchmark(n, device):
    A = torch.randn(n, n)
    return time_matmul(A, torch.device("cpu")), time_matmul(A, device)
