"""Execute a notebook's cells inside the sandbox and answer the grader over pipes.

This file is copied into the sandbox with `wire.py` and `landlock.py` and started as a plain
Python process, so it imports nothing from the grader package. It never decides a score: it runs cells, runs the
grader's probes (which export plain data) and injects the grader's hand-off values.

Protocol: one JSON object per line. The grader writes requests to our stdin; we answer on the
file descriptor that was stdout at start-up. Student output goes to a bounded buffer instead, so
printing hundreds of megabytes cannot fill a pipe or a disk.
"""
from __future__ import annotations

import builtins
import os
import random
import signal
import sys
import time
import traceback

import landlock
import wire

TAIL_CHARS = 2000


class Tail:
    """A write-only text stream that keeps only the last `TAIL_CHARS` characters."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        s = str(s)
        self.text = (self.text + s)[-TAIL_CHARS:]
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        raise OSError("student output is captured")


class ProbeError(Exception):
    """A probe could not find what it looks for; the message is shown to the student."""


def _describe_error(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[-600:]


def _drop_privileges() -> None:
    """Become the sandbox's unprivileged uid (set by the grader when it runs as root)."""
    uid = os.environ.pop("NN4E_SANDBOX_UID", None)
    if uid and os.getuid() == 0:
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))


class Runner:
    def __init__(self):
        _drop_privileges()
        self.proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
        self.proto_out = os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        self.tail = Tail()
        sys.stdout = sys.stderr = self.tail
        # Writing past RLIMIT_FSIZE should raise OSError in the cell, not kill the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.shell = None
        self.torch = None

    # -- protocol -------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        data = wire.dumps(message)
        view = memoryview(data)
        while view:
            written = os.write(self.proto_out, view)
            view = view[written:]

    def serve(self) -> None:
        while True:
            line = self.proto_in.readline()
            if not line:
                return
            request = wire.loads(line)
            op = request.get("op")
            if op == "exit":
                self.send({"op": "bye"})
                return
            handler = getattr(self, "op_" + str(op), None)
            if handler is None:
                self.send({"op": "error", "error": f"unknown op {op!r}"})
                continue
            try:
                reply = handler(request)
            except Exception as exc:  # noqa: BLE001 - answer, so the grader can carry on
                reply = {"op": "error", "ok": False, "error": _describe_error(exc)}
            self.send(reply)

    # -- requests -------------------------------------------------------------------------
    def op_init(self, request: dict) -> dict:
        applied = 0
        rules = request.get("landlock")
        if rules:
            # Before anything else: no student code may ever run unrestricted. A failure raises,
            # the grader gets an error instead of "ready", and refuses to go on.
            applied = landlock.restrict(rules["read"], rules["write"])
        os.environ.setdefault("MPLBACKEND", "Agg")
        seed = int(request["seed"])
        random.seed(seed)
        try:
            import numpy as np

            np.random.seed(seed)
        except ImportError:
            pass
        if request.get("torch", True):
            # Imported before any student code so the seed, thread count and device policy hold.
            import torch

            torch.manual_seed(seed)
            torch.set_num_threads(int(request.get("threads", 1)))
            self.torch = torch
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        self.shell = InteractiveShell.instance(config=config, colors="nocolor", autocall=0)
        # Figures must survive `plt.show()` so probes can inspect them; inline backends close them.
        self.shell.register_magic_function(lambda line="": None, "line", "matplotlib")
        self.shell.user_ns["__name__"] = "__main__"
        return {"op": "ready", "pid": os.getpid(), "landlock": applied}

    def op_run(self, request: dict) -> dict:
        self.tail.text = ""
        start = time.monotonic()
        result = self.shell.run_cell(request["source"], store_history=True, silent=False)
        error = result.error_before_exec or result.error_in_exec
        return {
            "op": "ran",
            "index": request["index"],
            "ok": error is None,
            "error": _describe_error(error),
            "output_tail": self.tail.text[-500:],
            "seconds": round(time.monotonic() - start, 3),
        }

    def op_probe(self, request: dict) -> dict:
        exported: dict = {}
        namespace = self._probe_namespace(request, exported)
        try:
            exec(compile(request["code"], f"<probe {request['id']}>", "exec"), namespace)
            return {"op": "probed", "id": request["id"], "ok": True, "data": wire.encode(exported)}
        except ProbeError as exc:
            error = str(exc)
        except BaseException as exc:  # noqa: BLE001 - student objects may raise anything
            error = _describe_error(exc)
        return {"op": "probed", "id": request["id"], "ok": False, "error": error}

    def op_inject(self, request: dict) -> dict:
        values = wire.decode(request.get("values") or {})
        for name, value in values.items():
            self.shell.user_ns[name] = self._to_native(value)
        error = ""
        if request.get("source"):
            try:
                exec(compile(request["source"], "<grader hand-off>", "exec"), self.shell.user_ns)
            except BaseException as exc:  # noqa: BLE001 - the student's objects may be broken
                error = _describe_error(exc)
        return {"op": "injected", "names": sorted(values), "error": error}

    # -- helpers for probes ------------------------------------------------------------------
    def _to_native(self, value):
        if isinstance(value, wire.Array):
            if value.kind == "tensor" and self.torch is not None:
                return self.torch.from_numpy(value.values.copy())
            return value.values.copy()
        if isinstance(value, dict):
            return {k: self._to_native(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._to_native(v) for v in value]
        return value

    def _probe_namespace(self, request: dict, exported: dict) -> dict:
        user_ns = self.shell.user_ns

        def get(name):
            if name not in user_ns:
                raise ProbeError(f"`{name}` is not defined: run the cell that creates it, and keep its name")
            return user_ns[name]

        def export(**values):
            exported.update(values)

        return {
            "__builtins__": builtins,
            "get": get,
            "export": export,
            "ProbeError": ProbeError,
            "inputs": self._to_native(wire.decode(request["inputs"])) if request.get("inputs") else {},
            "figure_summary": figure_summary,
            "faked_cuda": faked_cuda,
        }


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
        return {"value": "", "type": "", "error": _describe_error(exc)}
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


if __name__ == "__main__":
    Runner().serve()
