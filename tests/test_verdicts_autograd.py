"""autograd's verdicts without a sandbox or a notebook: the reference's objects pass each check, and
each known mistake (tests/submissions/autograd.yml) fails its check with a message that names it."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from matplotlib.figure import Figure

from autograder.grade import handoff_request
from harness import all_checks, assert_fails, module, outcome, runner, suite, unlisted

AID = "autograd"
H_VALUES = np.logspace(-15, 0, 100)
SIG_POINTS = [-3.0, -1.0, 0.0, 0.5, 2.0]


def handed_off(**replaced) -> dict:
    """A namespace holding the engine as the grader's hand-offs install it (q1 to q6), with the `Value`
    methods in `replaced` swapped for a mistake's."""
    run, handoffs, namespace = runner(), module(AID, "verdicts").HANDOFFS, {}
    for question in ("q1", "q2", "q3", "q4", "q6"):
        request = handoff_request(handoffs[question], None)
        for shipment in request["install"]:
            run.rebuild(shipment, namespace)
        if request["run"]:
            step = run.rebuild(request["run"], run.fresh_namespace())
            namespace.update(step(**run.arguments(step, {}, namespace)))
    namespace["Value"].sigmoid = sigmoid
    namespace["Value"].sin = sin
    for name, method in replaced.items():
        setattr(namespace["Value"], name, method)
    return namespace


def sigmoid(self):
    s = 1.0 / (1.0 + math.exp(-self.data))
    out = type(self)(s, (self,), "sigmoid")

    def _backward():
        self.grad += s * (1 - s) * out.grad
    out._backward = _backward
    return out


Dual, dual_sin = module(AID, "reference").Dual, module(AID, "reference").dual_sin
forward_mode, sin = module(AID, "calibrate").forward_mode, module(AID, "calibrate").sin_op  # q13, q15


def reverse_table(Value, one_path=False):
    """The notebook's q15 reverse_table, or a mistake: df/dx read as the adjoint of x + y only."""
    def table(x, y):
        vx, vy = Value(x), Value(y)
        v3, v4 = vx + vy, vx.sin()
        f = v3 * v4
        f.backward()
        return {"v3": v3.data, "v4": v4.data, "f": f.data, "bar_v3": v3.grad, "bar_v4": v4.grad,
                "df_dx": v3.grad if one_path else vx.grad, "df_dy": vy.grad}
    return table


def forward_partials(x, y):
    f = lambda a, b: a * a * b + dual_sin(a * b)
    return f(Dual(x, 1.0), Dual(y, 0.0)).dot, f(Dual(x, 0.0), Dual(y, 1.0)).dot


def error_plot(central_diff, plot="loglog") -> tuple[list[float], float, Figure]:
    f = lambda x: x ** 2 * np.sin(x)
    exact = 4 * math.sin(2.0) + 4 * math.cos(2.0)
    errors = [abs(central_diff(f, 2.0, h) - exact) for h in H_VALUES]
    fig = Figure()
    getattr(fig.subplots(), plot)(H_VALUES, errors)
    return errors, float(H_VALUES[int(np.argmin(errors))]), fig


def gradient_check(ns: dict, central=True, restore=True) -> dict:
    """The notebook's q6 cell on the namespace's MLP."""
    random.seed(123)
    model_check, x_check, y_target, h = ns["MLP"](2, [4, 1]), [0.5, -0.3], 1.0, 1e-6
    loss = (model_check(x_check) - y_target) ** 2
    for p in model_check.parameters():
        p.grad = 0.0
    loss.backward()
    autograd_grads, numerical_grads = [p.grad for p in model_check.parameters()], []
    for p in model_check.parameters():
        p.data += h
        plus = ((model_check(x_check) - y_target) ** 2).data
        p.data -= 2 * h
        minus = ((model_check(x_check) - y_target) ** 2).data
        p.data += h if restore else 0.0
        numerical_grads.append((plus - minus) / (2 * h) if central else (plus - loss.data) / h)
    return dict(model_check=model_check, x_check=x_check, y_target=y_target, h=h, autograd_grads=autograd_grads,
                numerical_grads=numerical_grads, max_rel_error=ns["rel_error"](autograd_grads, numerical_grads))


def sigmoid_check(ns: dict, grads=True) -> dict:
    autograd, numerical = [], []
    for x0 in SIG_POINTS:
        xv = ns["Value"](x0)
        out = xv.sigmoid()
        out.backward()
        autograd.append(xv.grad if grads else out.data)
        numerical.append(ns["central_diff"](lambda t: ns["Value"](t).sigmoid().data, x0))
    return dict(sig_points=SIG_POINTS, sig_autograd=autograd, sig_numerical=numerical,
                sigmoid_rel_error=ns["rel_error"](autograd, numerical))


def reverse_mode(ns, backward_only=False, forward_only=False):
    """The notebook's reverse_mode_gradient with q12's counters, or a mistake: only one of the two counts."""
    def reverse_mode_gradient(f, xs):
        leaves = [ns["Value"](x) for x in xs]
        n_forward, n_backward = ns["count_ops"](lambda: f(leaves))
        ops = n_backward if backward_only else n_forward if forward_only else n_forward + n_backward
        return [v.grad for v in leaves], ops
    return reverse_mode_gradient


def reverse_by_central_differences(f, xs, h=1e-6):
    """A mistake: the 'gradient' by central differences (2n evaluations) instead of a backward pass."""
    grads = []
    for i in range(len(xs)):
        plus, minus = list(xs), list(xs)
        plus[i] += h
        minus[i] -= h
        grads.append((f(plus) - f(minus)) / (2 * h))
    return grads, 0


@pytest.fixture(scope="module")
def solved() -> dict:
    """The student's namespace after a correct notebook."""
    ref = module(AID, "reference")
    ns = handed_off()
    errors, best_h, fig = error_plot(ns["central_diff"])
    model, loss_history = ref.train_xor(42, int(suite(AID)[0].budget["xor_epochs"]))
    xor_counts = ref.counted(ref.Value, lambda: ref.xor_loss(model))
    return {**ns, **gradient_check(ns), **sigmoid_check(ns), "errors": errors, "best_h": best_h, "fig": fig,
            "model": model, "loss_history": loss_history, "Dual": Dual, "dual_sin": dual_sin,
            "forward_partials": forward_partials, "forward_mode_passes": 2, "reverse_mode_passes": 1,
            "count_ops": lambda build: ref.counted(ns["Value"], build), "xor_counts": xor_counts,
            "cheap_ratio": xor_counts[1] / xor_counts[0], "forward_mode_gradient": forward_mode(),
            "reverse_mode_gradient": reverse_mode({**ns, "count_ops": lambda build: ref.counted(ns["Value"], build)}),
            "reverse_table": reverse_table(ns["Value"])}


CHECKS = all_checks(AID)


@pytest.mark.parametrize("question, description", CHECKS)
def test_reference_passes(solved, question, description):
    cells = ["import math\nimport numpy as np"] if description == "does not use torch" else None
    result = outcome(AID, question, description, solved, cells)
    assert result["passed"], result


def _assign_mul(self, other):
    other = other if isinstance(other, type(self)) else type(self)(other)
    out = type(self)(self.data * other.data, (self, other), "*")

    def _backward():
        self.grad = other.data * out.grad
        other.grad = self.data * out.grad
    out._backward = _backward
    return out


def _relu_always_one(self):
    out = type(self)(max(0, self.data), (self,), "ReLU")

    def _backward():
        self.grad += out.grad
    out._backward = _backward
    return out


def _no_topological_sort(self):
    self.grad = 1.0

    def propagate(v):
        v._backward()
        for child in v._prev:
            propagate(child)
    propagate(self)


def _sigmoid_times_s(self):
    s = 1.0 / (1.0 + math.exp(-self.data))
    out = type(self)(s, (self,), "sigmoid")

    def _backward():
        self.grad += s * out.grad
    out._backward = _backward
    return out


class _DualNoProductRule(Dual):
    def __mul__(self, other):
        other = other if isinstance(other, Dual) else Dual(other)
        return _DualNoProductRule(self.val * other.val, self.dot * other.dot)

    __rmul__ = __mul__


def _nonlinear_output(ns):
    def build(n_in, n_outs):
        model = ns["MLP"](n_in, n_outs)
        for neuron in model.layers[-1].neurons:
            neuron.nonlin = True
        return model
    return build


def _engine(**replaced):
    ns = handed_off(**replaced)
    return {"Value": ns["Value"], **sigmoid_check(ns)}


def _tanh_mistake(ns):
    return _engine(tanh=module(AID, "calibrate").tanh_one_minus_t)


# name: (question, check, the namespace's changes, a word of the yml's feedback, or of the check's message)
MISTAKES = {
    "forward_difference": ("q1", "central_diff matches",
                           lambda ns: {"central_diff": lambda f, x, h=1e-6: (f(x + h) - f(x)) / h}, "one-sided"),
    "linear_axes_error_plot": ("q1", "best_h from", lambda ns: dict(zip(("errors", "best_h", "fig"),
                                                                       error_plot(ns["central_diff"], "plot"))),
                               "log scales"),
    "relu_gradient_always_one": ("q2", "each operation's value", lambda ns: _engine(relu=_relu_always_one), "relu"),
    "tanh_derivative_one_minus_t": ("q2", "each operation's value", _tanh_mistake, "tanh"),
    "tanh_derivative_one_minus_t (worked)": ("q2", "worked examples", _tanh_mistake, "worked examples"),
    "assign_instead_of_accumulate": ("q2", "random expression graphs", lambda ns: _engine(__mul__=_assign_mul),
                                     "+="),
    "no_topological_sort": ("q2", "random expression graphs", lambda ns: _engine(backward=_no_topological_sort),
                            "topological"),
    "rsub_wrong_order": ("q3", "neg, sub, truediv", lambda ns: _engine(__rsub__=lambda self, other: self - other),
                         "rsub"),
    "rsub_wrong_order (random)": ("q3", "random expressions mixing",
                                  lambda ns: _engine(__rsub__=lambda self, other: self - other), "forward value"),
    "nonlinear_output_layer": ("q4", "MLP parameters", lambda ns: {"MLP": _nonlinear_output(ns)}, "last layer"),
    "gradient_ascent": ("q5", "trained XOR model",
                        lambda ns: {"model": module(AID, "reference").train_xor(42, 200, -0.05)[0]},
                        "gradient descent"),
    "history_only_when_printed": ("q5", "loss history", lambda ns: {"loss_history": ns["loss_history"][::40]},
                                  "one loss per epoch"),
    "rel_error_mean": ("q6", "rel_error on", lambda ns: {"rel_error": lambda a, b: float(np.mean(
        np.abs(np.subtract(a, b)) / np.maximum(1e-8, np.abs(a) + np.abs(b))))}, "maximum"),
    "parameters_not_restored": ("q6", "autograd and numerical", lambda ns: gradient_check(ns, restore=False),
                                "restore"),
    "forward_difference_gradcheck": ("q6", "autograd and numerical", lambda ns: gradient_check(ns, central=False),
                                     "central"),
    "sigmoid_derivative_wrong": ("q7", "sigmoid op inside", lambda ns: _engine(sigmoid=_sigmoid_times_s), "sigmoid"),
    "sigmoid_check_values_not_gradients": ("q7", "sigmoid gradient check", lambda ns: sigmoid_check(ns, grads=False),
                                           "gradients"),
    "dual_product_rule_wrong": ("q8", "Dual arithmetic", lambda ns: {"Dual": _DualNoProductRule}, "product rule"),
    "passes_swapped": ("q8", "forward_partials", lambda ns: {"forward_mode_passes": 1, "reverse_mode_passes": 2},
                       "passes"),
    "backward_counted_per_op": ("q12", "operation counts",
                                lambda ns: {"count_ops": lambda build: (ns["count_ops"](build)[0],) * 2},
                                "gradient updates"),
    "cheap_ratio_inverted": ("q12", "cheap gradient ratio",
                             lambda ns: {"cheap_ratio": ns["xor_counts"][0] / ns["xor_counts"][1]},
                             "backward / forward"),
    "forward_mode_all_inputs_seeded": ("q13", "the gradient by n forward passes",
                                       lambda ns: {"forward_mode_gradient": forward_mode(seed_all=True)}, "seed"),
    # on a function of + and * the central differences are exact up to roundoff: the counts catch them
    "reverse_mode_by_central_differences": ("q13", "the operations counted",
                                            lambda ns: {"reverse_mode_gradient": reverse_by_central_differences},
                                            "one backward pass"),
    "forward_mode_last_pass_only": ("q13", "the operations counted",
                                    lambda ns: {"forward_mode_gradient": forward_mode(last_pass_only=True)},
                                    "n passes"),
    "reverse_mode_backward_count_only": ("q13", "the operations counted",
                                         lambda ns: {"reverse_mode_gradient": reverse_mode(ns, backward_only=True)},
                                         "forward pass plus one backward pass"),
    "reverse_mode_forward_count_only": ("q13", "the operations counted",
                                        lambda ns: {"reverse_mode_gradient": reverse_mode(ns, forward_only=True)},
                                        "forward pass plus one backward pass"),
    "sin_derivative_negative": ("q15", "the sin op inside", lambda ns: _engine(sin=lambda self: sin(self, -1.0)), "sin"),
    "sin_derivative_negative (table)": ("q15", "forward values and adjoints",
                                        lambda ns: {"reverse_table": reverse_table(_engine(
                                            sin=lambda self: sin(self, -1.0))["Value"])}, "df_dx"),
    "df_dx_one_path": ("q15", "forward values and adjoints",
                       lambda ns: {"reverse_table": reverse_table(ns["Value"], one_path=True)}, "both paths"),
}


def test_every_check_has_a_mistake():
    assert not unlisted(AID, [*MISTAKES.values(), ("q2", "does not use torch")], repeats=True)  # see below


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_fails_its_check(solved, name):
    question, description, change, word = MISTAKES[name]
    namespace = {**solved, **change(solved)}
    assert_fails(AID, question, description, namespace, word)


def test_torch_in_a_cell_fails():
    cells = ["import math", "t = torch.tanh(torch.tensor(0.5, dtype=torch.float64)).item()"]
    result = outcome(AID, "q2", "does not use torch", {}, cells)
    assert not result["passed"] and "torch" in result["message"], result
