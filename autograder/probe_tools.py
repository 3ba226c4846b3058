"""What probes and hand-offs may call inside the sandbox, besides the student's own names.

A copy of this file runs in the sandbox next to `runner.py` (imported there as `probe_tools`), so
it imports only the standard library at module level, and numpy, torch and matplotlib inside
functions. In the grader it is `autograder.probe_tools`: an assignment's `probes.py` imports from
here, and `shipping.py` turns that import into `import probe_tools` on the sandbox side.

It also holds the probes that several assignments share (the training set-up, the device choice):
their verdicts are in `checks.py`.
"""
from __future__ import annotations

import traceback


def describe_error(exc: BaseException | None) -> str:
    """The last line of a traceback, bounded: what a student sees of an exception."""
    if exc is None:
        return ""
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[-600:]


def faked_cuda(call, available: bool) -> dict:
    """Call `call()` while torch reports a GPU as `available` (or not); describe what it returned.

    Lets a device check run on a machine without a GPU: a `pick_device()` that ignores
    `torch.cuda.is_available()` answers "cpu" when told a GPU is there. Only the two functions
    are replaced, and always restored, so nothing else in the student's process changes.
    """
    import torch

    saved = torch.cuda.is_available, torch.cuda.device_count
    torch.cuda.is_available = lambda: available
    torch.cuda.device_count = lambda: 1 if available else 0
    try:
        value = call()
        return {"value": str(value), "type": type(value).__name__, "error": ""}
    except Exception as exc:  # noqa: BLE001 - the student's function may fail in any way
        return {"value": "", "type": "", "error": describe_error(exc)}
    finally:
        torch.cuda.is_available, torch.cuda.device_count = saved


def figure_summary(figure=None):
    """Describe a matplotlib figure (default: the latest): axes, labels, lines, legend, collections."""
    import matplotlib.pyplot as plt
    import numpy as np

    if type(figure).__name__ != "Figure":
        numbers = plt.get_fignums()
        if not numbers:
            return None
        figure = plt.figure(numbers[-1])
    axes = []
    for ax in figure.axes:
        lines = []
        for line in ax.get_lines():
            try:
                x = np.asarray(line.get_xdata(), dtype=float).ravel()
            except (TypeError, ValueError):
                x = np.zeros(0)
            lines.append({
                "n": int(x.size),
                "label": str(line.get_label()),
                "vertical_at": float(x[0]) if x.size and np.all(x == x[0]) else None,
            })
        legend = ax.get_legend()
        axes.append({
            "xlabel": ax.get_xlabel(),
            "ylabel": ax.get_ylabel(),
            "title": ax.get_title(),
            "xscale": ax.get_xscale(),
            "yscale": ax.get_yscale(),
            "legend": [t.get_text() for t in legend.get_texts()] if legend else None,
            "lines": lines,
            "collections": [type(c).__name__ for c in ax.collections],
            "collection_points": [_offset_count(c) for c in ax.collections],
            "n_images": len(ax.images),
            "n_patches": len(ax.patches),
        })
    return {"axes": axes}


def _offset_count(collection) -> int:
    """How many points a collection draws (a scatter's markers); 0 when it has no offsets."""
    try:
        return int(len(collection.get_offsets()))
    except (TypeError, ValueError, AttributeError):
        return 0


def fresh_outputs(model_class, x):
    """A fresh instance of the student's class in eval mode, with its parameter count and its
    outputs on `x` (computed without gradients)."""
    import torch

    model = model_class()
    model.eval()
    with torch.no_grad():
        out = model(x)
    return model, dict(n_params=sum(p.numel() for p in model.parameters()), out=out)


# -- probes shared by several assignments (verdicts: `checks.expect_training_setup`, ...) -------
def training_setup(optimizer, model, criterion) -> dict:
    """The loss class, the optimiser class and its settings, and whether it updates `model`."""
    group = optimizer.param_groups[0]
    return dict(criterion=type(criterion).__name__, optimizer=type(optimizer).__name__,
                lr=float(group["lr"]), weight_decay=float(group.get("weight_decay", 0.0)),
                same_params=[id(p) for p in group["params"]] == [id(p) for p in model.parameters()])


def device_choice(pick_device) -> dict:
    """What `pick_device()` returns when told a GPU is there, and when told none is."""
    return dict(device_choice={"gpu": faked_cuda(pick_device, True), "no_gpu": faked_cuda(pick_device, False)})


def watched_run(call, net, loss=None) -> dict:
    """Call `call(net, criterion)` and record which devices the student's code used.

    Every forward pass of `net` records the device of its input batch and of `net`'s parameters
    at that moment; every call of `criterion` (which computes `loss`) records the devices of its
    prediction and target. Run with `net` or the device on `torch.device("meta")`, this checks
    `.to(device)` without a GPU. An exception ends the call and is recorded, since a meta tensor
    cannot be read with `.item()`.
    """
    seen = {"forward": [], "parameters": [], "criterion": [], "error": "", "out": None}

    def before_forward(module, args):
        seen["forward"].append(str(args[0].device) if args and hasattr(args[0], "device") else "")
        seen["parameters"].append(sorted({str(p.device) for p in module.parameters()}))

    def criterion(out, target):
        seen["criterion"].append([str(out.device), str(target.device)])
        return loss(out, target)

    net.register_forward_pre_hook(before_forward)
    try:
        out = call(net, criterion)
        seen["out"] = {"type": type(out).__name__, "device": str(getattr(out, "device", "")),
                       "shape": [int(s) for s in getattr(out, "shape", [])]}
    except Exception as exc:  # noqa: BLE001 - the student's function may fail in any way
        seen["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return seen
