"""The reference the autograd checks compare with: the expression-program interpreter (one for plain
floats, PyTorch, the student's `Value` and `Dual`), the prompt's engine (`Value`, the derived
operations, `Neuron`/`Layer`/`MLP`, `central_diff`, `rel_error`, q8's `Dual`, q12's `counting` and
`count_ops`) that the hand-offs install in the student's namespace, PyTorch float64 versions of the MLP
and its gradient check, and q15's worked example computed analytically. Imports only
the standard library, numpy and torch: hand-offs send the engine's own source into the sandbox."""
from __future__ import annotations

import math
import random

import numpy as np
import torch

XOR_X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
XOR_Y = [-1.0, 1.0, 1.0, -1.0]
XOR_LEARNING_RATE = 0.05
GRADCHECK_SEED = 123  # the notebook's random.seed(123) before model_check = MLP(2, [4, 1])
GRADCHECK_SIZES = (2, [4, 1])

# -- expression programs -----------------------------------------------------------------------
# A program is a list of instructions; instruction k creates node k. ["input", v] is a leaf; the
# others name earlier nodes by index and constants by value. The last node is the output.
BINARY = ("add", "mul", "sub", "div")  # [op, node, node]
REFLECTED = ("radd", "rmul", "rsub", "rdiv")  # [op, constant, node]: the number on the left
WITH_CONST = ("addc", "mulc", "subc", "divc")  # [op, node, constant]
ARITHMETIC = {"add": "+", "mul": "*", "sub": "-", "div": "/", "radd": "+", "rmul": "*", "rsub": "-", "rdiv": "/",
              "addc": "+", "mulc": "*", "subc": "-", "divc": "/", "pow": "**"}
# gradient updates (`grad +=`) in each primitive's backward closure
N_UPDATES = {"add": 2, "mul": 2, "addc": 2, "mulc": 2, "radd": 2, "rmul": 2, "pow": 1, "relu": 1, "exp": 1, "log": 1,
             "tanh": 1}
# q12: the counted Value methods and their gradient updates, and the counters (as the notebook names them)
GRAD_UPDATES = {"__add__": 2, "__mul__": 2, "__pow__": 1, "relu": 1, "exp": 1, "log": 1, "tanh": 1}
OP_COUNTS = {"forward": 0, "backward": 0}


def operands(ins: list) -> list[int]:
    """The earlier nodes an instruction reads."""
    op = ins[0]
    if op == "input":
        return []
    if op in BINARY:
        return [ins[1], ins[2]]
    if op in REFLECTED:
        return [ins[2]]
    return [ins[1]]


def apply(ins: list, nodes: list, unary):
    """The node instruction `ins` makes from the earlier `nodes`: Python's operators do the arithmetic (so a
    number on the left calls the reflected method), `unary(op, node)` the named functions."""
    op = ins[0]
    if op not in ARITHMETIC:
        return -nodes[ins[1]] if op == "neg" else unary(op, nodes[ins[1]])
    if op in BINARY:
        a, b = nodes[ins[1]], nodes[ins[2]]
    elif op in REFLECTED:
        a, b = ins[1], nodes[ins[2]]
    else:
        a, b = nodes[ins[1]], ins[2]
    symbol = ARITHMETIC[op]
    if symbol == "+":
        return a + b
    if symbol == "*":
        return a * b
    if symbol == "-":
        return a - b
    if symbol == "/":
        return a / b
    return a ** b


def evaluate(prog: list, leaf, unary, made=None) -> list:
    """Every node of `prog`, in order: leaf(k, value) makes input node k, `apply` the others; made(op,
    node), if given, sees each node as it is made."""
    nodes = []
    for k, ins in enumerate(prog):
        nodes.append(leaf(k, ins[1]) if ins[0] == "input" else apply(ins, nodes, unary))
        if made is not None:
            made(ins[0], nodes[-1])
    return nodes


def float_unary(op: str, a: float) -> float:
    return {"relu": lambda: max(0.0, a), "exp": lambda: math.exp(a), "log": lambda: math.log(a),
            "tanh": lambda: math.tanh(a), "sigmoid": lambda: 1 / (1 + math.exp(-a)), "sin": lambda: math.sin(a)}[op]()


def torch_unary(op: str, a: torch.Tensor) -> torch.Tensor:
    return {"relu": torch.relu, "exp": torch.exp, "log": torch.log, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
            "sin": torch.sin}[op](a)


def torch_program(prog: list) -> tuple[list[float], list[float]]:
    """Values and d(output)/d(node) of every node, with PyTorch in float64."""
    nodes = evaluate(prog, lambda k, v: torch.tensor(float(v), dtype=torch.float64, requires_grad=True), torch_unary)
    for node in nodes:
        if not node.is_leaf:
            node.retain_grad()
    nodes[-1].backward()
    grads = [0.0 if n.grad is None else float(n.grad) for n in nodes]
    return [float(n.detach()) for n in nodes], grads


def value_unary(op: str, node):
    """A named function of a `Value` is its method."""
    return getattr(node, op)()


# -- q1: the grader's functions to differentiate -------------------------------------------------
def spec_function(spec):
    """f(x) = a x² sin(wx) + b x³ + c exp(0.3x) for spec = [a, b, c, w, x0]."""
    a, b, c, w, _ = spec
    return lambda x: a * x ** 2 * math.sin(w * x) + b * x ** 3 + c * math.exp(0.3 * x)


def spec_derivative(spec) -> float:
    """f'(x0) of `spec_function(spec)`."""
    a, b, c, w, x = spec
    return a * (2 * x * math.sin(w * x) + w * x ** 2 * math.cos(w * x)) + 3 * b * x ** 2 + 0.3 * c * math.exp(0.3 * x)


# -- the prompt's engine: the hand-offs install these in the student's namespace, where `Value` is the
# notebook's own (their free names resolve there)
def central_diff(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


class Value:
    def __init__(self, data, _children=(), _op=''):
        self.data = data
        self.grad = 0.0
        self._backward = lambda: None
        self._prev = set(_children)
        self._op = _op

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), '+')
        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), '*')
        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, other):
        assert isinstance(other, (int, float)), "only int/float powers supported"
        out = Value(self.data ** other, (self,), f'**{other}')
        def _backward():
            self.grad += other * (self.data ** (other - 1)) * out.grad
        out._backward = _backward
        return out

    def relu(self):
        out = Value(max(0, self.data), (self,), 'ReLU')
        def _backward():
            self.grad += (self.data > 0) * out.grad
        out._backward = _backward
        return out

    def exp(self):
        out = Value(math.exp(self.data), (self,), 'exp')
        def _backward():
            self.grad += out.data * out.grad
        out._backward = _backward
        return out

    def log(self):
        out = Value(math.log(self.data), (self,), 'log')
        def _backward():
            self.grad += (1.0 / self.data) * out.grad
        out._backward = _backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,), 'tanh')
        def _backward():
            self.grad += (1 - t ** 2) * out.grad
        out._backward = _backward
        return out

    def backward(self):
        topo, visited = [], set()
        def build_topo(v):
            if v not in visited:
                visited.add(v)
                for child in v._prev:
                    build_topo(child)
                topo.append(v)
        build_topo(self)
        self.grad = 1.0
        for v in reversed(topo):
            v._backward()

    def __repr__(self):
        return f"Value(data={self.data:.4f}, grad={self.grad:.4f})"


# q3's derived operations, attached to the student's Value by probes.derived_operations
def value_neg(self):
    return self * -1


def value_sub(self, other):
    return self + (-other)


def value_truediv(self, other):
    return self * (other ** -1) if isinstance(other, Value) else self * (1.0 / other)


def value_radd(self, other):
    return self + other


def value_rmul(self, other):
    return self * other


def value_rsub(self, other):
    return (-self) + other


def value_rtruediv(self, other):
    return Value(other) * (self ** -1)


DERIVED_OPERATIONS = (value_neg, value_sub, value_truediv, value_radd, value_rmul, value_rsub, value_rtruediv)


class Neuron:
    def __init__(self, n_in, nonlin=True):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(n_in)]
        self.b = Value(0.0)
        self.nonlin = nonlin

    def __call__(self, x):
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.tanh() if self.nonlin else act

    def parameters(self):
        return self.w + [self.b]


class Layer:
    def __init__(self, n_in, n_out, **kwargs):
        self.neurons = [Neuron(n_in, **kwargs) for _ in range(n_out)]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    def __init__(self, n_in, n_outs):
        sz = [n_in] + n_outs
        self.layers = [Layer(sz[i], sz[i + 1], nonlin=i < len(n_outs) - 1) for i in range(len(n_outs))]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]


def rel_error(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


# q8's dual numbers, installed by the q8 hand-off (Question 13's CountedDual builds on them)
class Dual:
    def __init__(self, val, dot=0.0):
        self.val = val
        self.dot = dot

    def __add__(self, other):
        other = other if isinstance(other, Dual) else Dual(other)
        return Dual(self.val + other.val, self.dot + other.dot)

    def __mul__(self, other):
        other = other if isinstance(other, Dual) else Dual(other)
        return Dual(self.val * other.val, self.dot * other.val + self.val * other.dot)

    __radd__ = __add__
    __rmul__ = __mul__


def dual_sin(d):
    return Dual(math.sin(d.val), math.cos(d.val) * d.dot)


# q12's counters, installed by the q12 hand-off next to the notebook's OP_COUNTS and GRAD_UPDATES (Question
# 13 counts with count_ops); `counted` below uses them on this module's own counters
def counting(name, op):
    def wrapper(*args):
        out = op(*args)
        OP_COUNTS["forward"] += 1
        local_backward = out._backward

        def counted_backward():
            OP_COUNTS["backward"] += GRAD_UPDATES[name]
            local_backward()
        out._backward = counted_backward
        return out
    wrapper.uncounted = op
    return wrapper


def count_ops(build):
    OP_COUNTS["forward"] = OP_COUNTS["backward"] = 0
    out = build()
    forward_count = OP_COUNTS["forward"]
    out.backward()
    return forward_count, OP_COUNTS["backward"]


# -- reference runs with the engine ----------------------------------------------------------------
def squared_error(prediction, target: float):
    """(prediction - target)², with the engine's primitives only: `-` is `+ (-target)` in q3's engine."""
    return (prediction + (-target)) ** 2


def xor_loss(model):
    """The notebook's XOR loss: the mean of the four squared errors, summed from Value(0.0)."""
    losses = [squared_error(model(x), y) for x, y in zip(XOR_X, XOR_Y)]
    return sum(losses, Value(0.0)) * (1.0 / len(losses))


def train_xor(seed: int, epochs: int, learning_rate: float = XOR_LEARNING_RATE) -> tuple[MLP, list[float]]:
    """The prompt's XOR training: MLP(2, [8, 1]) after random.seed(seed), plain gradient descent (ascent
    with a negative learning rate). Returns the model and the loss of every epoch."""
    random.seed(seed)
    model = MLP(2, [8, 1])
    history = []
    for _ in range(epochs):
        loss = xor_loss(model)
        history.append(loss.data)
        for p in model.parameters():
            p.grad = 0.0
        loss.backward()
        for p in model.parameters():
            p.data -= learning_rate * p.grad
    return model, history


def gradcheck_model() -> MLP:
    """The notebook's model_check: MLP(2, [4, 1]) after random.seed(123)."""
    random.seed(GRADCHECK_SEED)
    return MLP(*GRADCHECK_SIZES)


def counted(Value, build) -> tuple[int, int]:
    """(operations, gradient updates) of build() and its backward(), counted as the notebook's q12 counts:
    each primitive of `Value` wrapped by `counting` while build() runs, then restored."""
    originals = {name: getattr(Value, name) for name in GRAD_UPDATES}
    try:
        for name, op in originals.items():
            setattr(Value, name, counting(name, getattr(op, "uncounted", op)))
        return count_ops(build)
    finally:
        for name, op in originals.items():
            setattr(Value, name, op)


# -- the MLP in PyTorch float64 ------------------------------------------------------------------
def unpack(params, n_in: int, n_outs: list[int]):
    """Per layer (W (n_out, n_in), b (n_out,)) from parameters() order: neuron by neuron, weights then bias."""
    layers, k, sizes = [], 0, [n_in] + list(n_outs)
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        block = np.asarray(params[k:k + fan_out * (fan_in + 1)], dtype=np.float64).reshape(fan_out, fan_in + 1)
        layers.append((block[:, :fan_in], block[:, fan_in]))
        k += fan_out * (fan_in + 1)
    return layers


def mlp_forward(layers, x):
    """Reference MLP in torch float64: tanh on hidden layers, linear output. Returns (outputs, params)."""
    params, h = [], torch.as_tensor(np.asarray(x, dtype=np.float64))
    for i, (W, b) in enumerate(layers):
        Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
        bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
        params += [Wt, bt]
        h = Wt @ h + bt
        if i < len(layers) - 1:
            h = torch.tanh(h)
    return h, params


def flat_grads(params) -> np.ndarray:
    """The gradients of mlp_forward's parameters, in parameters() order."""
    out = []
    for Wt, bt in zip(params[::2], params[1::2]):
        out.append(np.concatenate([Wt.grad.numpy(), bt.grad.numpy()[:, None]], axis=1).ravel())
    return np.concatenate(out)


def xor_loss_from(params) -> tuple[float, np.ndarray]:
    """The XOR MSE and the four predictions of MLP(2, [8, 1]) with these parameters."""
    layers = unpack(params, 2, [8, 1])
    preds = np.array([mlp_forward(layers, x)[0].item() for x in XOR_X])
    return float(np.mean((preds - np.array(XOR_Y)) ** 2)), preds


def seeded_init(seed: int, n_in: int, n_outs: list[int]) -> list[float]:
    """The chapter's initialisation, replayed: weights random.uniform(-1, 1) neuron by neuron, bias 0."""
    rnd = random.Random(seed)
    params = []
    for fan_in, fan_out in zip([n_in] + n_outs[:-1], n_outs):
        for _ in range(fan_out):
            params += [rnd.uniform(-1, 1) for _ in range(fan_in)] + [0.0]
    return params


def gradcheck_loss(params, x, target) -> float:
    """(model_check(x) - target)² in torch float64."""
    return (mlp_forward(unpack(params, *GRADCHECK_SIZES), x)[0][0].item() - target) ** 2


def true_grads(params, x, target) -> np.ndarray:
    """The exact gradient of (model_check(x) - target)² with respect to the parameters."""
    y, tparams = mlp_forward(unpack(params, *GRADCHECK_SIZES), x)
    ((y[0] - target) ** 2).backward()
    return flat_grads(tparams)


def central_grads(params, x, target, h: float) -> list[float]:
    """The central differences of (model_check(x) - target)², one parameter at a time, with step h."""
    central = []
    for k in range(len(params)):
        plus, minus = list(params), list(params)
        plus[k] += h
        minus[k] -= h
        central.append((gradcheck_loss(plus, x, target) - gradcheck_loss(minus, x, target)) / (2 * h))
    return central


def mlp_loss_counts(n_in: int, n_outs: list[int], n_samples: int) -> tuple[int, int]:
    """(forward operations, gradient updates) of the notebook's `xor_loss` on MLP(n_in, n_outs), derived
    from the architecture in the grader: a neuron with fan-in k makes k products and k sums (starting
    from its bias) and a tanh when hidden; each sample adds (pred - y), a sum, and ** 2; the mean adds
    n_samples sums (from Value(0.0)) and one product. + and * update 2 gradients, ** and tanh 1."""
    fwd = bwd = 0
    for i, (fan_in, fan_out) in enumerate(zip([n_in] + n_outs[:-1], n_outs)):
        hidden = i < len(n_outs) - 1
        fwd += fan_out * (2 * fan_in + hidden)
        bwd += fan_out * (4 * fan_in + hidden)
    fwd, bwd = n_samples * (fwd + 2), n_samples * (bwd + 3)
    return fwd + n_samples + 1, bwd + 2 * n_samples + 2


def reverse_table_truth(x: float, y: float) -> dict[str, float]:
    """The chapter's forward and reverse tables of f(x, y) = (x + y) sin x, analytically."""
    v3, v4 = x + y, math.sin(x)
    return {"v3": v3, "v4": v4, "f": v3 * v4, "bar_v3": v4, "bar_v4": v3, "df_dx": v4 + v3 * math.cos(x),
            "df_dy": v4}
