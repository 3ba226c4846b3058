"""Calibrate the `autograd` XOR threshold: train the chapter's 2-8-1 tanh MLP with the reference engine
(the hand-off sources in solutions/autograd/checks.py) for XOR_EPOCHS epochs from many seeds, and report
the final MSE and sign accuracy that the grader would measure.

    nice -n 10 .venv/bin/python tools/calibrate_autograd.py [n_seeds]
    nice -n 10 .venv/bin/python tools/calibrate_autograd.py --tolerances   # the checks' tolerances
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)

spec = importlib.util.spec_from_file_location("autograd_checks", ROOT / "solutions/autograd/checks.py")
checks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(checks)

EPOCHS, LR = 200, 0.05


def train(seed: int) -> tuple[float, bool]:
    ns: dict = {}
    exec(checks.VALUE_SOURCE + checks.DERIVED_SOURCE + checks.MLP_SOURCE, ns)
    Value, MLP, rnd = ns["Value"], ns["MLP"], ns["random"]
    rnd.seed(seed)
    model = MLP(2, [8, 1])
    for _ in range(EPOCHS):
        preds = [model(x) for x in checks.XOR_X]
        loss = sum([(p - y) ** 2 for p, y in zip(preds, checks.XOR_Y)], Value(0.0)) * (1.0 / 4)
        for p in model.parameters():
            p.grad = 0.0
        loss.backward()
        for p in model.parameters():
            p.data -= LR * p.grad
    mse, preds = checks.xor_loss_from([p.data for p in model.parameters()])
    return mse, bool(np.all(np.sign(preds) == np.sign(checks.XOR_Y)))


if __name__ == "__main__" and "--tolerances" not in sys.argv:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    rows = [(seed, *train(seed)) for seed in range(n)]
    for seed, mse, ok in rows:
        print(f"seed {seed:3d}: final MSE {mse:.5f}  signs {'ok' if ok else 'WRONG'}")
    losses = np.array([r[1] for r in rows])
    print(f"{n} seeds: MSE min {losses.min():.5f} mean {losses.mean():.5f} max {losses.max():.5f}; "
          f"all signs right on {sum(r[2] for r in rows)}/{n}; seed 42: {train(42)}")


# -- tolerances (calibration.md): largest distance of correct answers, smallest of the nearest mistakes --
def _engine():
    ns: dict = {}
    exec(checks.VALUE_SOURCE + checks.DERIVED_SOURCE + checks.MLP_SOURCE, ns)
    return ns


def gradcheck_distances() -> None:
    """q6 NUMERICAL_TOL: max |student central difference - grader's| for correct variants (p +/- h in
    place, and through a helper setting p.data) and for forward / backward differences, per step h."""
    x, t = [0.5, -0.3], 1.0
    init = checks.seeded_init(123, 2, [4, 1])
    for h in [1e-8, 1e-7, 1e-6, 1e-5, 1e-4]:
        ns = _engine()
        ns["random"].seed(123)
        m = ns["MLP"](2, [4, 1])
        loss = lambda: ((m(x) - t) ** 2).data
        central = []
        for k in range(17):
            plus, minus = list(init), list(init)
            plus[k] += h
            minus[k] -= h
            lp = (checks.mlp_forward(checks._unpack(plus, 2, [4, 1]), x)[0][0].item() - t) ** 2
            lm = (checks.mlp_forward(checks._unpack(minus, 2, [4, 1]), x)[0][0].item() - t) ** 2
            central.append((lp - lm) / (2 * h))
        base, inplace, helper, forward, backward = loss(), [], [], [], []
        for p in m.parameters():
            p.data += h; lp = loss(); p.data -= 2 * h; lm = loss(); p.data += h
            inplace.append((lp - lm) / (2 * h))
            p0 = p.data
            at = lambda v: (setattr(p, "data", v), loss())[1]
            helper.append((at(p0 + h) - at(p0 - h)) / (2 * h))
            forward.append((at(p0 + h) - base) / h)
            backward.append((base - at(p0 - h)) / h)
            p.data = p0
        d = lambda a: float(np.max(np.abs(np.array(a) - np.array(central))))
        print(f"q6 h={h:.0e}: correct {max(d(inplace), d(helper)):.2e}  forward {d(forward):.2e}  "
              f"backward {d(backward):.2e}  tol {checks.NUMERICAL_TOL:.0e}")


def central_diff_distances() -> None:
    """q1: central_diff with its default step against the exact derivative (tolerance 1e-6, relative to
    max(1, |f'|)), for the central difference and for the one-sided mistake, on 2000 grader draws."""
    rng = np.random.default_rng(0)
    worst_c, best_f, worst_coarse = 0.0, np.inf, 0.0
    for _ in range(2000):
        a, b, c = rng.uniform(-2, 2, 3)
        spec = [a, b, c, rng.uniform(0.5, 2), rng.uniform(-2, 2)]
        f, x, exact = checks._spec_f(spec), spec[4], checks._spec_df(spec)
        h = 1e-6
        worst_c = max(worst_c, abs((f(x + h) - f(x - h)) / (2 * h) - exact) / max(1, abs(exact)))
        best_f = min(best_f, abs((f(x + 1e-3) - f(x)) / 1e-3 - (f(x + 1e-3) - f(x - 1e-3)) / 2e-3)
                     / max(1, abs(exact)))
    print(f"q1 default h vs exact: correct max {worst_c:.2e} (tol 1e-6); one-sided at h=1e-3 vs central: "
          f"min {best_f:.2e} (tol 1e-8)")


def count_check() -> None:
    """q12: the grader's analytic XOR counts against the reference engine instrumented like the notebook."""
    ns = _engine()
    Value = ns["Value"]
    counts = {"f": 0, "b": 0}
    updates = {"__add__": 2, "__mul__": 2, "__pow__": 1, "relu": 1, "exp": 1, "log": 1, "tanh": 1}
    for name, k in updates.items():
        op = getattr(Value, name)
        def wrapper(*args, op=op, k=k):
            out = op(*args)
            counts["f"] += 1
            inner = out._backward
            def counted():
                counts["b"] += k
                inner()
            out._backward = counted
            return out
        setattr(Value, name, wrapper)
    ns["random"].seed(42)
    model = ns["MLP"](2, [8, 1])
    loss = sum([(model(x) - y) ** 2 for x, y in zip(checks.XOR_X, checks.XOR_Y)], Value(0.0)) * (1.0 / 4)
    fwd = counts["f"]
    loss.backward()
    print(f"q12 XOR counts: instrumented {(fwd, counts['b'])}, grader {checks.mlp_loss_counts(2, [8, 1], 4)}; "
          f"ratio {counts['b'] / fwd:.4f}, inverted {fwd / counts['b']:.4f} (tolerance 1e-9 relative)")


def engine_distances() -> None:
    """TOL (1e-6 relative to max(1, |torch|)): the reference engine against PyTorch float64 on 200 random
    graphs, and the tanh (1 - t) mistake's distance: the largest over the 12 random graphs of one grading
    draw (a submission fails if any graph is off), the smallest such over 20 draws."""
    rng = np.random.default_rng(1)
    worst, per_graph = 0.0, []
    for _ in range(240):
        prog = checks.random_program(rng, checks.CORE_OPS, 3, 12, must=["tanh"])
        vals, grads = checks.torch_program(prog)
        for broken in (False, True):
            ns = _engine()
            V = ns["Value"]
            if broken:
                def tanh(self, V=V):
                    t = np.tanh(self.data)
                    out = V(t, (self,), "tanh")
                    def bw():
                        self.grad += (1 - t) * out.grad
                    out._backward = bw
                    return out
                V.tanh = tanh
            nodes = []
            for ins in prog:
                op = ins[0]
                if op == "input":
                    nodes.append(V(ins[1]))
                elif op in ("add", "mul"):
                    nodes.append(nodes[ins[1]] + nodes[ins[2]] if op == "add" else nodes[ins[1]] * nodes[ins[2]])
                elif op in ("addc", "mulc", "pow"):
                    a, c = nodes[ins[1]], ins[2]
                    nodes.append(a + c if op == "addc" else a * c if op == "mulc" else a ** c)
                else:
                    nodes.append(getattr(nodes[ins[1]], op)())
            nodes[-1].backward()
            dist = max(abs(n.grad - g) / max(1, abs(g)) for n, g in zip(nodes, grads))
            if broken:
                per_graph.append(dist)
            else:
                worst = max(worst, dist, max(abs(n.data - v) / max(1, abs(v)) for n, v in zip(nodes, vals)))
    mistake = min(max(per_graph[k:k + 12]) for k in range(0, 240, 12))
    print(f"engine vs torch: correct max {worst:.2e}; tanh mistake, min over draws of the max over a draw's "
          f"12 graphs {mistake:.2e} (TOL {checks.TOL:.0e})")


if __name__ == "__main__" and "--tolerances" in sys.argv:
    gradcheck_distances()
    central_diff_distances()
    count_check()
    engine_distances()
