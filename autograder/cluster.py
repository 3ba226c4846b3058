"""Grade on a Dask `distributed` cluster: `grade --cluster ADDRESS`.

Only the grading of one submission moves to the cluster; everything else stays with `grade_batch`
on the TA's machine (the client): which submissions need grading (resume, `--force`, `--reuse`),
progress, Ctrl-C, and writing each result atomically into `--out`.

Contract:
- A worker grades with its own checkout, venv, data and sandbox; no filesystem is shared. A task
  receives the submission's bytes and returns its result as UTF-8 JSON bytes (which Dask moves as
  raw frames): the client never unpickles anything a submission produced.
- Before anything is graded, `ClusterEngine.check_workers` makes every worker prove that its grader,
  grading.yml, data and lock file are the client's (the job fingerprint), that its sandbox cuts the
  network (the scheduler runs any task it is sent: student code must never reach it), and that its
  sandbox starts. Otherwise the batch stops, naming the worker and the reason.
- A task whose worker was lost is sent once more; losing it twice gives a `grader-error` row with
  the reason (never a grade, never stored: the next run retries it). A grader fault on a worker is
  such a row too. Neither stops the batch.
- Ctrl-C cancels every queued task. A task already running finishes on its worker (Dask cannot
  interrupt it) within the notebook's time limit, and its result is dropped.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import queue
import shutil
import tempfile
import threading
from pathlib import Path

from .config import REPO_ROOT, load_config
from .results import SubmissionResult
from .submissions import InvalidSubmission, Submission

CONNECT_TIMEOUT_S = 30
# The worker folders a task's submission is written to: private to the worker's user.
TASK_PREFIX = "nn4e-task-"


class ClusterError(RuntimeError):
    """The cluster cannot grade this batch (not reachable, a worker unfit); nothing was graded."""


def connect(address: str):
    """A Dask client of the scheduler at `address`; ClusterError says what to install or check."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("grading on a cluster needs the `distributed` package: install the project's "
                           "`cluster` extra (`pip install -e '.[cluster]'`), or `make venv`, whose lock "
                           "includes it") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"no Dask scheduler answered at {address} within {CONNECT_TIMEOUT_S} s ({exc}): "
                           "start one (the README's \"Grading on a Dask cluster\" shows how) or check the address") from None


# -- on a worker --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def worker_job(aid: str, use_bwrap: bool, allow_unisolated: bool, jobs: int):
    """The worker's own GradingJob for `aid`, from its own checkout (made once per worker process).
    Each task starts its sandbox cold: a task is one submission, with no slot of its own to serve."""
    from .grade import make_job

    return make_job(aid, load_config(), jobs=jobs, use_bwrap=use_bwrap, allow_unisolated=allow_unisolated,
                    warm=False)


def _worker_threads(worker=None) -> int:
    """How many tasks this worker runs at once (its sandboxes share its cores)."""
    from distributed import get_worker

    return max(1, (worker or get_worker()).state.nthreads)


def worker_problem(aid: str, fingerprint: str, use_bwrap: bool, allow_unisolated: bool, dask_worker=None) -> str:
    """Why this worker must not grade `aid` for this client, or "" (`Client.run` passes `dask_worker`)."""
    from .grade import GraderBroken, startup_check
    from .isolation import Unisolated, prepared_host

    try:
        job = worker_job(aid, use_bwrap, allow_unisolated, _worker_threads(dask_worker))
        if job.fingerprint() != fingerprint:
            return ("its grader, grading.yml, data or lock file differ from the client's: install the same "
                    "commit on every worker (and `make venv` there)")
        if not job.layers.network_cut:
            return ("its sandbox does not cut the network (" + "; ".join(job.layers.off) + "): student code "
                    "could reach the Dask scheduler, which runs any task it is sent")
        with prepared_host(job.layers, REPO_ROOT, job.data_dir, [], allow_unisolated,
                           declared=job.assignment.data) as data_dir:
            startup_check(_with_data(job, data_dir))
    except (Unisolated, GraderBroken) as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure here means: this worker cannot grade
        return f"{type(exc).__name__}: {exc}"
    return ""


def _with_data(job, data_dir: Path):
    return dataclasses.replace(job, data_dir=data_dir)


class _Slots:
    """Each running task's sandbox slot on this worker (the GPU it gets is slot % GPUs)."""

    lock = threading.Lock()
    free: queue.Queue | None = None

    @classmethod
    def pool(cls, count: int) -> queue.Queue:
        with cls.lock:
            if cls.free is None:
                cls.free = queue.Queue()
                for slot in range(count):
                    cls.free.put(slot)
            return cls.free


def grade_task(aid: str, name: str, filename: str, student: dict | None, data: bytes, use_bwrap: bool,
               allow_unisolated: bool) -> bytes:
    """Grade one submission on this worker: {"result", "probes", "answers"} or {"fault", "log"}, as
    UTF-8 JSON. Never raises for a bad submission; a grader fault is returned, not raised."""
    from .grade import GraderFault, grade_one
    from .isolation import prepared_host

    threads = _worker_threads()
    job = worker_job(aid, use_bwrap, allow_unisolated, threads)
    folder = Path(tempfile.mkdtemp(prefix=TASK_PREFIX))
    slots = _Slots.pool(threads)
    slot = slots.get()
    try:
        path = folder / Path(filename).name  # the suffix tells a notebook from an otter export
        path.write_bytes(data)
        submission = Submission(path=path, name=name, student=student)
        with prepared_host(job.layers, REPO_ROOT, job.data_dir, [folder], allow_unisolated,
                           declared=job.assignment.data) as data_dir:
            graded = grade_one(_with_data(job, data_dir), submission, slot)
        reply = {"result": graded.result.to_json(), "probes": graded.probes, "answers": graded.answers}
    except GraderFault as exc:
        reply = {"fault": str(exc), "log": exc.log}
    except Exception as exc:  # noqa: BLE001 - reported to the client as the grader's fault
        reply = {"fault": f"the grader failed on a worker ({type(exc).__name__}: {exc})", "log": ""}
    finally:
        slots.put(slot)
        shutil.rmtree(folder, ignore_errors=True)
    return json.dumps(reply, separators=(",", ":")).encode()


# -- on the client ------------------------------------------------------------------------------
def lost_worker_errors() -> tuple[type[BaseException], ...]:
    """What `Future.result()` raises when the task's worker (or the connection to it) was lost."""
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return (KilledWorker, CommClosedError, OSError, TimeoutError)


class ClusterEngine:
    """Grades one submission at a time on the cluster behind `client` (one thread per call)."""

    ATTEMPTS = 2  # a lost worker's task is sent once more

    def __init__(self, client, address: str = "", use_bwrap: bool = True):
        self.client, self.use_bwrap = client, use_bwrap
        self.address = address or str(getattr(client.scheduler, "address", ""))
        self.running: set = set()
        self.lock = threading.Lock()

    def threads(self) -> int:
        """Worker threads in the cluster now (each grades one submission at a time)."""
        return sum(self.client.nthreads().values())

    def describe(self) -> str:
        workers = self.client.nthreads()
        return f"the Dask cluster at {self.address} ({len(workers)} worker(s), {sum(workers.values())} thread(s))"

    def check_workers(self, job) -> None:
        """Raise ClusterError unless the cluster has workers and every one of them may grade `job`."""
        if not self.client.nthreads():
            raise ClusterError(f"the Dask cluster at {self.address} has no workers: start some "
                               "(`dask worker ADDRESS` on each machine) and run the same command again")
        problems = self.client.run(worker_problem, job.aid, job.fingerprint(), self.use_bwrap,
                                   job.allow_unisolated, on_error="return")
        unfit = {worker: problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
                 for worker, problem in problems.items() if problem}
        if unfit:
            raise ClusterError("nothing was graded: these workers cannot grade "
                               f"{job.aid}:\n  " + "\n  ".join(f"{w}: {p}" for w, p in sorted(unfit.items())))

    def grade(self, job, submission: Submission, slot: int = 0):
        """The submission's `Graded`, from a worker; an invalid file is graded here, with no sandbox."""
        from .grade import Graded, grade_one, grader_error, read_submission

        try:
            read_submission(job, submission)
        except InvalidSubmission:
            return grade_one(job, submission, slot)  # returns before any sandbox starts
        data = submission.path.read_bytes()
        reason = ""
        for attempt in range(1, self.ATTEMPTS + 1):
            future = self.client.submit(grade_task, job.aid, submission.name, submission.path.name,
                                        submission.student, data, self.use_bwrap, job.allow_unisolated,
                                        pure=False, key=f"grade-{job.aid}-{submission.name}-{attempt}-{os.urandom(4).hex()}")
            with self.lock:
                self.running.add(future)
            try:
                payload = future.result()
            except lost_worker_errors() as exc:
                reason = f"{type(exc).__name__}: {exc}"[:200]
                continue
            finally:
                with self.lock:
                    self.running.discard(future)
            return decode(job, submission, payload)
        return Graded(grader_error(job, submission, f"its worker was lost {self.ATTEMPTS} times ({reason}); "
                                                    "not graded, and not the student's fault"))

    def cancel(self) -> None:
        """Ctrl-C: drop every task not yet finished (a running one ends on its worker, unrecorded)."""
        with self.lock:
            futures = list(self.running)
        if futures:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()


def decode(job, submission: Submission, payload: bytes):
    """A worker's JSON reply as `Graded`; a fault, or a reply for another submission or grader, is a
    grader-error row."""
    from .grade import Graded, grader_error

    try:
        reply = json.loads(payload.decode("utf-8"))
        if "fault" in reply:
            last = (str(reply.get("log") or "").strip().splitlines() or [""])[-1][:200]
            return Graded(grader_error(job, submission, f"{reply['fault']}; not graded, and not the student's fault"
                                                        + (f" (the sandbox said: {last})" if last else "")))
        result = SubmissionResult.from_json(reply["result"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Graded(grader_error(job, submission, f"a worker sent an unreadable result ({exc}); not graded"))
    if (result.submission, result.assignment, result.fingerprint) != (submission.name, job.aid, job.fingerprint()):
        return Graded(grader_error(job, submission, "a worker sent the result of another submission or grader; "
                                                    "not graded"))
    return Graded(result, reply.get("probes"), reply.get("answers"))
