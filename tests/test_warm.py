"""The warm start's bookkeeping (autograder/warm.py): which prepared sandbox a submission gets, and
that none is left behind. Real sandboxes started ahead are graded in test_adversarial.py (a daemon
beside a warm sandbox) and test_grade_behaviour.py (Ctrl-C with warm sandboxes waiting)."""
from __future__ import annotations

import threading

from autograder.warm import WarmSlots


class FakeProcess:
    def __init__(self):
        self.alive = True

    def poll(self):
        return None if self.alive else -9


class FakeBox:
    def __init__(self, slot: int, torch: bool):
        self.slot, self.torch, self.proc, self.closed = slot, torch, FakeProcess(), False

    def close(self):
        self.closed = True


class Opener:
    """Stands in for grade.open_sandbox: records every sandbox it starts."""

    def __init__(self, fail: bool = False):
        self.opened: list[FakeBox] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, slot: int, torch: bool) -> FakeBox:
        if self.fail:
            raise RuntimeError("the sandbox did not start")
        box = FakeBox(slot, torch)
        with self.lock:
            self.opened.append(box)
        return box


def test_a_prepared_sandbox_goes_to_the_next_submission_of_its_slot():
    """Check that take returns the slot's prepared sandbox once, and nothing for another slot"""
    opener = Opener()
    warm = WarmSlots(opener, remaining=3)
    assert warm.take(0, True) is None  # nothing prepared yet: the caller starts one cold
    warm.prepare(0, True)
    assert warm.take(1, True) is None
    box = warm.take(0, True)
    assert box is opener.opened[0] and box.slot == 0 and not box.closed
    assert warm.take(0, True) is None  # taken once only
    warm.close()


def test_a_sandbox_with_the_other_shell_or_a_dead_one_is_closed_not_used():
    """Check that a sandbox initialised with(out) torch unlike the notebook, or one that died waiting, is closed"""
    opener = Opener()
    warm = WarmSlots(opener, remaining=5)
    warm.prepare(0, True)
    assert warm.take(0, False) is None and opener.opened[0].closed
    warm.prepare(0, False)
    assert warm.take(0, True) is None and opener.opened[1].closed
    warm.prepare(0, True)
    warm._ready[0][1].result().proc.alive = False  # started, then died before its submission came
    assert warm.take(0, True) is None and opener.opened[2].closed
    warm.close()


def test_nothing_is_prepared_when_no_submission_is_left():
    """Check that the last submission of a batch starts no sandbox ahead"""
    opener = Opener()
    warm = WarmSlots(opener, remaining=2)
    warm.starting()
    warm.prepare(0, True)
    warm.take(0, True)
    warm.starting()
    warm.prepare(0, True)
    warm.close()
    assert len(opener.opened) == 1


def test_a_failed_start_ahead_leaves_the_cold_start_to_report_it():
    """Check that a sandbox that could not start ahead is not an error here: the cold start says why"""
    warm = WarmSlots(Opener(fail=True), remaining=2)
    warm.prepare(0, True)
    assert warm.take(0, True) is None
    warm.close()


def test_close_closes_what_nobody_took_and_prepares_nothing_after():
    """Check that close() closes every untaken sandbox and that a late prepare starts none"""
    opener = Opener()
    warm = WarmSlots(opener, remaining=10)
    warm.prepare(0, True)
    warm.prepare(0, True)  # one per slot
    warm.prepare(1, False)
    warm.close()
    assert len(opener.opened) == 2 and all(box.closed for box in opener.opened)
    warm.prepare(2, True)
    assert len(opener.opened) == 2
