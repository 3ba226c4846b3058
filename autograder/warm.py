"""The warm start: each slot's next sandbox is started while the slot grades its current submission.

Starting a sandbox costs about 3 s when the notebook uses torch (bubblewrap, the interpreter,
IPython, and importing torch), and that cost used to sit between two submissions of a slot. Here it
overlaps with the current submission instead, on a core the current notebook leaves idle.

Isolation is exactly that of a cold start, because a warm sandbox *is* a cold start, only earlier:
its own process, folder, uid and limits; its shell ready and Landlock applied before any student
code exists; no student code in it until the slot's next submission is handed to it. It never
sees the submission being graded beside it, and that submission's leftovers (daemons, files) die
with that submission's own sandbox, as they always did.

Contract:
  - `take(slot, torch)` returns the slot's warm sandbox, initialised with `torch` as asked, or None
    (nothing prepared, or its start failed, died, or imported torch when the submission does not
    use it, or the other way round): the caller then starts one cold, so a grade never depends on
    whether its sandbox was warm, and a host that cannot start a sandbox fails there, as before.
  - `prepare(slot, torch)` starts the slot's next sandbox in the background, unless no submission
    is left that could use it (`remaining`, which the batch counts down as submissions start).
  - `close()` stops preparing and closes every sandbox nobody took; after Ctrl-C too.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from .sandbox import Sandbox


class WarmSlots:
    """At most one sandbox per slot, started and initialised ahead of the submission that uses it."""

    def __init__(self, open_box: Callable[[int, bool], Sandbox], remaining: int):
        self._open = open_box          # (slot, torch) -> an initialised sandbox; raises when it cannot
        self._remaining = remaining    # submissions that have not started yet
        self._ready: dict[int, tuple[bool, Future]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(thread_name_prefix="nn4e-warm")

    def starting(self) -> None:
        """One more submission of the batch has started (or was skipped): one fewer to prepare for."""
        with self._lock:
            self._remaining -= 1

    def prepare(self, slot: int, torch: bool) -> None:
        with self._lock:
            if self._closed or self._remaining <= 0 or slot in self._ready:
                return
            self._ready[slot] = (torch, self._pool.submit(self._open, slot, torch))

    def take(self, slot: int, torch: bool) -> Sandbox | None:
        with self._lock:
            prepared = self._ready.pop(slot, None)
        if prepared is None:
            return None
        box = _result(prepared[1])
        if box is None:
            return None  # its start failed: the cold start that follows says why, or succeeds
        if prepared[0] != torch or box.proc is None or box.proc.poll() is not None:
            box.close()  # the wrong shell for this notebook, or it died waiting
            return None
        return box

    def close(self) -> None:
        with self._lock:
            self._closed = True
            prepared, self._ready = list(self._ready.values()), {}
        for _, future in prepared:
            box = _result(future)
            if box is not None:
                box.close()
        self._pool.shutdown(wait=True)


def _result(future: Future) -> Sandbox | None:
    """The prepared sandbox, or None when preparing it failed (the failure is not the student's)."""
    try:
        return future.result()
    except Exception:  # noqa: BLE001 - a cold start follows and reports its own failure
        return None
