"""Execute a notebook's cells inside the sandbox and answer the grader over pipes.

This file is copied into the sandbox with `wire.py`, `landlock.py` and `probe_tools.py` and started
as a plain Python process, so it imports nothing from the grader package. It never decides a score:
it runs cells, runs the grader's probes (functions sent as source by `shipping.py`, which return
plain data) and carries out the grader's hand-offs.

Protocol: one JSON object per line. The grader writes requests to our stdin; we answer on the
file descriptor that was stdout at start-up. Student output goes to a bounded buffer instead, so
printing hundreds of megabytes cannot fill a pipe or a disk.
"""
from __future__ import annotations

import builtins
import importlib
import inspect
import os
import random
import signal
import sys
import time

import landlock
import wire
from probe_tools import describe_error

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
                reply = {"op": "error", "ok": False, "error": describe_error(exc)}
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
            "error": describe_error(error),
            "output_tail": self.tail.text[-500:],
            "seconds": round(time.monotonic() - start, 3),
        }

    def op_probe(self, request: dict) -> dict:
        try:
            inputs = self._to_native(wire.decode(request["inputs"])) if request.get("inputs") else {}
            probe = rebuild(request["code"], fresh_namespace())
            exported = probe(**arguments(probe, {"inputs": inputs}, self.shell.user_ns))
            if not isinstance(exported, dict):
                raise ProbeError(f"the probe {request['code'].get('call')} returned no data (a grader fault)")
            return {"op": "probed", "id": request["id"], "ok": True, "data": wire.encode(exported)}
        except ProbeError as exc:
            error = str(exc)
        except BaseException as exc:  # noqa: BLE001 - student objects may raise anything
            error = describe_error(exc)
        return {"op": "probed", "id": request["id"], "ok": False, "error": error}

    def op_inject(self, request: dict) -> dict:
        user_ns = self.shell.user_ns
        values = wire.decode(request.get("values") or {})
        for name, value in values.items():
            user_ns[name] = self._to_native(value)
        error = ""
        try:
            # Reference classes and functions the prompt specifies, defined as a notebook cell would.
            for shipment in request.get("install") or []:
                rebuild(shipment, user_ns)
            if request.get("run"):
                step = rebuild(request["run"], fresh_namespace())
                made = step(**arguments(step, {}, user_ns))
                user_ns.update(made or {})
        except BaseException as exc:  # noqa: BLE001 - the student's objects may be broken
            error = describe_error(exc)
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

def arguments(function, given: dict, user_ns: dict) -> dict:
    """A value for each parameter: the grader's (`inputs`), else the student's variable of that name.

    A parameter with a default is optional; any other missing name is the student's to fix.
    """
    values = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name in given:
            values[name] = given[name]
        elif name in user_ns:
            values[name] = user_ns[name]
        elif parameter.default is inspect.Parameter.empty:
            raise ProbeError(f"`{name}` is not defined: run the cell that creates it, and keep its name")
    return values


def fresh_namespace() -> dict:
    """Where a probe is rebuilt: nothing of the student's, so it reads only what it is passed."""
    return {"__builtins__": builtins, "__name__": "nn4e_probe"}


def rebuild(shipment: dict, namespace: dict):
    """Define a shipped function or class (see the grader's shipping.py) in `namespace` and return it."""
    for name, module, attribute in shipment.get("imports", []):
        value = importlib.import_module(module)
        namespace[name] = getattr(value, attribute) if attribute else value
    if shipment.get("constants"):
        namespace.update(wire.decode(shipment["constants"]))
    for source in shipment.get("sources", []):
        exec(compile(source, f"<grader: {shipment['call']}>", "exec"), namespace)
    return namespace[shipment["call"]]


if __name__ == "__main__":
    Runner().serve()
