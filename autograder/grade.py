"""Grade submissions: run each in its own sandbox, probe it, and compute verdicts here.

The score is decided only in this process, from plain data the probes exported and references the
grader computed itself. A crash or timeout stops the notebook, but every question whose probes ran
before that point is still graded.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import answers
from . import checks as checks_api
from . import shipping, wire
from .config import REPO_ROOT, ConfigError, GradingConfig
from .data import declared_sums
from .plan import build_plan
from .results import CheckOutcome, QuestionResult, ResultStore, Status, SubmissionResult
from .isolation import Layers, detect_layers, prepared_host
from .manual import sheets_for_batch
from .sandbox import Sandbox, SandboxBroken, SandboxDied, SandboxTimeout, close_all
from .submissions import InvalidSubmission, Submission, assignment_name, parse_notebook, read_notebook
from .forkserver import ForkServers
from .warm import WarmSlots

INIT_TIMEOUT_S = 120
PROBE_TIMEOUT_S = 120
LOCK_FILE = REPO_ROOT / "requirements.lock"


CORES_ENV = "NN4E_CORES"


def usable_cores() -> int:
    """The cores this grader may use: `NN4E_CORES` when set (several Dask workers on one machine
    each get their share), else the CPUs this process may run on (a Slurm job's or container's
    cpuset), else every CPU of the machine."""
    value = os.environ.get(CORES_ENV, "").strip()
    if value:
        try:
            cores = int(value)
        except ValueError:
            cores = 0
        if cores < 1:
            raise ConfigError(f"{CORES_ENV}={value!r} in the environment: set it to a whole number of cores "
                              "(1 or more), or unset it to use every CPU this process may run on")
        return cores
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class GradingJob:
    """Everything needed to grade submissions of one assignment."""

    aid: str
    config: GradingConfig
    layers: Layers
    data_dir: Path
    jobs: int = 1
    allow_unisolated: bool = False  # grade even when no layer isolates the filesystem (recorded)
    warm: bool = False  # start each slot's next sandbox while it grades (warm.py)
    fork_server: bool = False  # fork each slot's sandboxes from a server that imported torch (forkserver.py)

    @property
    def threads(self) -> int:
        """Torch and BLAS threads of each sandbox: the cores shared among the slots."""
        return max(1, usable_cores() // max(1, self.jobs))

    @property
    def assignment(self):
        return self.config.assignment(self.aid)

    @property
    def student_notebook(self) -> Path:
        return REPO_ROOT / "assignments" / self.aid / f"{self.aid}.ipynb"

    def fingerprint(self) -> str:
        """Changes whenever anything that could change a grade changes.

        Computed, not listed: the assignment's configuration and the grading defaults, every file
        of the grader package and of the assignment's check package, the student notebook (the
        cells the plan compares with), the checksums of the data files it declares and the locked
        dependencies.
        """
        digest = hashlib.sha256()
        digest.update(self.assignment.model_dump_json().encode())
        digest.update(self.config.defaults.model_dump_json().encode())
        for path in self.fingerprint_files():
            digest.update(path.name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"(missing)"))
        digest.update(declared_sums(self.assignment.data, self.data_dir).encode())
        return digest.hexdigest()[:16]

    def fingerprint_files(self) -> list[Path]:
        """Every file of the grader package and of the assignment's check package, the student
        notebook and the lock file."""
        package = REPO_ROOT / Path(self.assignment.notebook).parent
        return [*sorted(Path(__file__).parent.glob("*.py")), *sorted(package.rglob("*.py")),
                self.student_notebook, LOCK_FILE]


def _reference_notebook(job: GradingJob) -> dict:
    if not job.student_notebook.exists():
        raise FileNotFoundError(f"{job.student_notebook} is missing: run `python -m autograder build {job.aid}`")
    return parse_notebook(job.student_notebook.read_bytes(), job.student_notebook.name)


# -- one submission: read -> plan -> run -> record ------------------------------------------------
@dataclass
class Planned:
    """What `plan_submission` decides before anything runs: the checks, the reference and the steps."""

    suite: checks_api.AssignmentChecks
    ref: object
    steps: list
    notes: list[str]
    code_cells: list[str]
    uses_torch: bool


@dataclass
class Execution:
    """What running a plan in the sandbox gave: probe replies with the contexts their inputs came from."""

    replies: dict[str, dict] = field(default_factory=dict)  # "q3.1" -> the runner's reply
    contexts: dict[tuple[str, int], checks_api.Context] = field(default_factory=dict)
    cell_errors: list[str] = field(default_factory=list)
    status: str = Status.OK
    message: str = ""
    device: str | None = None  # "cpu" or "cuda:<index>": what the sandbox ran on


@dataclass(frozen=True)
class Graded:
    """A submission's result, and the probe data `grade --reuse` keeps beside it (None when nothing ran)."""

    result: SubmissionResult
    probes: dict | None = None
    answers: dict | None = None  # the hand-graded questions' answers, for `manual`


def grade_one(job: GradingJob, submission: Submission, slot: int = 0, warm: WarmSlots | ForkServers | None = None) -> Graded:
    """Grade one submission: read, plan, run, record (never raises for bad submissions).

    With `warm`, the slot's sandbox may have been started ahead, and the slot's next one is."""
    started = time.monotonic()
    header = dict(submission=submission.name, assignment=job.aid, fingerprint=job.fingerprint(),
                  sandbox=tuple(job.layers.names), student=submission.student)
    try:
        notebook, sha = read_submission(job, submission)
    except InvalidSubmission as exc:
        questions = {q: QuestionResult.scored(question, [], "not graded: invalid submission")
                     for q, question in job.assignment.questions.items()}
        return Graded(_finish(questions, job.assignment, started, status=Status.INVALID, message=str(exc), **header))
    answers = hand_graded_answers(job, notebook)
    planned = plan_submission(job, notebook)
    execution = run_plan(job, planned, slot, warm)
    header = {**header, "sha256": sha, "device": execution.device}
    return dataclasses.replace(record(job, header, planned, execution, started), answers=answers)


def hand_graded_answers(job: GradingJob, notebook: dict) -> dict | None:
    """The submission's answers to the hand-graded questions (None when the assignment has none)."""
    manual = job.assignment.manual_questions
    if not manual:
        return None
    try:
        asked = answers.load_questions(REPO_ROOT / job.assignment.notebook, job.student_notebook, manual)
    except answers.AnswersError as exc:  # a stale build: say so where the grader will look
        return {qid: {"missing": str(exc)} for qid in manual}
    return answers.collect(notebook, asked)


def read_submission(job: GradingJob, submission: Submission) -> tuple[dict, str]:
    """The submission's notebook and its SHA-256; `InvalidSubmission` says what is wrong with it."""
    limits = job.config.limits_for(job.aid)
    notebook, sha = read_notebook(submission.path, int(limits.max_notebook_mb * 2**20))
    name = assignment_name(notebook)
    if name is not None and name != job.aid:
        raise InvalidSubmission(f"{submission.path.name} is a notebook for assignment {name!r}, "
                                f"not {job.aid!r}: submit it to the right assignment")
    return notebook, sha


def plan_submission(job: GradingJob, notebook: dict) -> Planned:
    """Which cells run, and after which of them each question is probed."""
    assignment = job.assignment
    suite = checks_api.load_checks(job.aid, assignment)
    questions = [q for q in assignment.questions if suite.for_question(q)]
    plan = build_plan(notebook, _reference_notebook(job), questions)
    code_cells = [c["source"] for c in notebook["cells"] if c["cell_type"] == "code"]
    # Pre-import torch (and seed it) only for notebooks that use it: it costs about 3 s.
    uses_torch = any("torch" in source for source in code_cells)
    return Planned(suite, checks_api.reference_for(job.aid, assignment), plan.steps, list(plan.notes),
                   code_cells, uses_torch)


def check_context(assignment, seed: int, check, ref, cells: list[str]) -> checks_api.Context:
    """A verdict's context: the reference, the configured values and the check's own generator."""
    return checks_api.Context(ref, dict(assignment.thresholds), dict(assignment.budget),
                              check_rng(seed, check), cells=cells)


def new_sandbox(job: GradingJob, slot: int, server=None) -> Sandbox:
    """An unstarted sandbox for `slot` (forked from `server`, a forkserver.SlotServer, if given)."""
    return Sandbox(job.aid, job.config.limits_for(job.aid), job.layers, job.data_dir, slot=slot,
                   threads=job.threads, device=job.config.device_for(job.aid), server=server)


def open_sandbox(job: GradingJob, slot: int, torch: bool, server=None) -> Sandbox:
    """A started sandbox for `slot` whose shell is ready (with torch imported, or not); the caller
    closes it. Raises GraderFault (and leaves nothing behind) when it cannot start."""
    box = new_sandbox(job, slot, server)
    try:
        box.start()
        start_shell(box, job, job.threads, torch)
    except BaseException:
        box.close()
        raise
    return box


def starter(job: GradingJob, submissions: int) -> WarmSlots | ForkServers | None:
    """How the batch's sandboxes start ahead of their submissions: forked from each slot's fork
    server, started ahead (warm), or None, each when it starts."""
    if job.fork_server:
        return ForkServers(lambda slot: new_sandbox(job, slot),
                           lambda slot, server: open_sandbox(job, slot, True, server),
                           usable=job.config.device_for(job.aid) == "cpu")
    if job.warm:
        return WarmSlots(lambda slot, torch: open_sandbox(job, slot, torch), submissions)
    return None


def run_plan(job: GradingJob, planned: Planned, slot: int = 0, warm: WarmSlots | ForkServers | None = None) -> Execution:
    """Run the plan's cells in a fresh sandbox, probing and handing off after each question.

    A timeout or a crash ends the run; what was probed before it is kept. The notebook's time
    limit counts from its shell being ready, so a warm and a cold start give it the same time.
    """
    limits = job.config.limits_for(job.aid)
    execution = Execution()
    box = warm.take(slot, planned.uses_torch) if warm is not None else None
    if box is None:
        box = open_sandbox(job, slot, planned.uses_torch)
    try:
        if warm is not None:
            warm.prepare(slot, planned.uses_torch)  # most notebooks of an assignment agree on torch
        deadline = time.monotonic() + limits.notebook_timeout_s
        execution.device = box.policy.label
        current = "start-up"
        try:
            for step in planned.steps:
                current = step.label
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SandboxTimeout()
                if step.kind == "run":
                    reply = box.request({"op": "run", "index": len(execution.cell_errors), "source": step.source},
                                        min(limits.cell_timeout_s, remaining))
                    if not reply.get("ok"):
                        error = str(reply.get("error", ""))[:300]
                        if "No space left on device" in error:  # a full tmpfs under bubblewrap
                            error = f"disk limit reached ({limits.disk_mb} MiB): {error}"
                        execution.cell_errors.append(f"{step.label}: {error}")
                    continue
                _probe_question(job, planned, step.question, box, execution, deadline)
                handoff = planned.suite.handoffs.get(step.question)
                if handoff is not None:
                    box.request(handoff_request(handoff, planned.ref), PROBE_TIMEOUT_S)
        except SandboxTimeout:
            over_notebook = time.monotonic() >= deadline
            limit = (f"the notebook's {limits.notebook_timeout_s:.0f} s limit" if over_notebook
                     else f"the {limits.cell_timeout_s:.0f} s per-cell limit")
            execution.status = Status.TIMEOUT
            execution.message = f"{current} exceeded {limit}; later cells were not run"
        except SandboxDied as exc:
            execution.status = Status.ERROR
            execution.message = f"{exc} while running {current}; later cells were not run"
    finally:
        box.close()
    return execution


class GraderFault(RuntimeError):
    """The grader could not grade a submission: never the student's doing, never a grade.

    `log` is the runner's own error output (what went wrong before any student code ran).
    """

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class GraderBroken(RuntimeError):
    """The sandbox cannot start on this host: the batch stopped before (or as soon as) it found out.

    Finished results are kept; nothing is recorded against a student; a rerun resumes.
    """


def start_shell(box: Sandbox, job: GradingJob, threads: int, torch: bool) -> None:
    """Start the notebook's shell in `box`. No student code has run yet, so any failure here is the
    grader's (a broken interpreter, a venv the sandbox cannot see, a memory cap too low for torch)."""
    limits = job.config.limits_for(job.aid)
    try:
        box.initialise(job.config.defaults.seed, threads, torch, min(INIT_TIMEOUT_S, limits.notebook_timeout_s))
    except (SandboxDied, SandboxTimeout, SandboxBroken) as exc:
        reason = str(exc) or f"no answer within {min(INIT_TIMEOUT_S, limits.notebook_timeout_s):.0f} s"
        raise GraderFault(f"the grader's sandbox did not start: {reason}", box.startup_log()) from None


def startup_check(job: GradingJob) -> None:
    """Start one sandbox before a batch, so a host that cannot run any notebook grades nothing.

    It starts the shell without torch (a fraction of a second); the first notebook's own start-up,
    which imports torch, is the rest of the check: a failure there stops the batch too.
    Raises GraderBroken with the runner's error output.
    """
    try:
        open_sandbox(job, 0, torch=False).close()
    except GraderFault as exc:
        raise GraderBroken(_broken_message(exc, "nothing was graded")) from None
    except (OSError, SandboxBroken) as exc:  # the runner could not even be launched
        raise GraderBroken(f"the grader's sandbox could not be launched ({exc}); nothing was graded") from None


def _broken_message(fault: GraderFault, done: str) -> str:
    """What a TA reads when the sandbox cannot start: the fault, what was kept, the runner's output."""
    log = "\n".join(f"    {line}" for line in fault.log.splitlines()[-15:]) or "    (none)"
    return (f"{fault}; {done}, and no submission was graded as failed. The sandbox's own error output:\n{log}\n"
            "Fix the installation (the README's section \"The sandbox\" lists what each layer needs), then run "
            "the same command again: it resumes")


def _probe_question(job: GradingJob, planned: Planned, qid: str, box: Sandbox, execution: Execution,
                    deadline: float) -> None:
    shared: dict = {}  # checks with the same probe and inputs share one probe run
    for number, check in enumerate(planned.suite.for_question(qid)):
        key = (check.probe, check.inputs)
        if key not in shared:
            ctx = check_context(job.assignment, job.config.defaults.seed, check, planned.ref, planned.code_cells)
            if check.inputs is not None:
                ctx.inputs = check.inputs(ctx)
            reply = box.request({"op": "probe", "id": f"{qid}.{number}", "code": shipping.ship(check.probe),
                                 "inputs": wire.encode(ctx.inputs)},
                                min(PROBE_TIMEOUT_S, max(1.0, deadline - time.monotonic())))
            shared[key] = (ctx, reply)
        execution.contexts[(qid, number)], execution.replies[f"{qid}.{number}"] = shared[key]


def handoff_request(handoff: checks_api.Handoff, ref) -> dict:
    """The runner's `inject` request for a hand-off: values, installed sources, then its run step."""
    values = handoff.values(ref) if handoff.values else {}
    return {"op": "inject", "values": wire.encode(values),
            "install": [shipping.ship(obj, closure=False) for obj in handoff.install],
            "run": shipping.ship(handoff.run) if handoff.run else None}


def record(job: GradingJob, header: dict, planned: Planned, execution: Execution, started: float) -> Graded:
    """Compute every verdict in this process; `header` names the submission (see `grade_one`)."""
    questions = _verdicts(planned.suite, job.assignment, execution.replies, execution.contexts, execution.status)
    # Kept so `grade --reuse` can recompute verdicts after a config change without executing anything.
    signatures = {f"{check.question}.{n}": probe_signature(check)
                  for q in job.assignment.questions for n, check in enumerate(planned.suite.for_question(q))}
    probes = {key: {"reply": reply, "inputs": wire.encode(execution.contexts[_split(key)].inputs)}
              for key, reply in execution.replies.items()}
    result = _finish(questions, job.assignment, started, status=execution.status, message=execution.message,
                     notes=planned.notes, cell_errors=tuple(execution.cell_errors), probe_signatures=signatures,
                     **header)
    return Graded(result, probes)


def _split(key: str) -> tuple[str, int]:
    qid, number = key.rsplit(".", 1)
    return qid, int(number)


def check_rng(seed: int, check) -> np.random.Generator:
    """The generator a check draws its inputs from: a function of the grading seed and the check.

    It never depends on the submission, so every student is tested on the same inputs (as with
    fixed hidden tests) and two copies of one notebook that differ by a byte get the same grade.
    """
    material = hashlib.sha256(f"{check.question}\0{check.description}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(material[:8], "big")])


def probe_signature(check) -> str:
    """Identifies the data a check needs: its probe's source and its inputs function's source
    (each with the helpers and constants it uses)."""
    return f"{check.question}:{shipping.signature(check.probe, check.inputs)}"


def regrade_from_probes(job: GradingJob, previous: SubmissionResult, probes: dict, cells: list[str]) -> Graded | None:
    """Recompute every verdict from stored probe data under the current grading.yml.

    Returns None when a check needs data that was never probed (a new or changed check): the
    submission must then be executed again.
    """
    started = time.monotonic()
    assignment = job.assignment
    suite = checks_api.load_checks(job.aid, assignment)
    ref = checks_api.reference_for(job.aid, assignment)
    contexts, probed = {}, {}
    for qid in assignment.questions:
        for number, check in enumerate(suite.for_question(qid)):
            key = f"{qid}.{number}"
            if previous.probe_signatures.get(key) != probe_signature(check):
                return None
            if key in probes:
                ctx = check_context(assignment, job.config.defaults.seed, check, ref, cells)
                ctx.inputs = _decoded_inputs(probes[key]["inputs"])
                contexts[(qid, number)], probed[key] = ctx, probes[key]["reply"]
    questions = _verdicts(suite, assignment, probed, contexts, previous.status)
    kept = {name: getattr(previous, name) for name in
            ("submission", "assignment", "sandbox", "sha256", "student", "cell_errors", "probe_signatures",
             "device")}
    result = _finish(questions, assignment, started, status=previous.status, message=previous.message,
                     notes=previous.notes, fingerprint=job.fingerprint(), reused_probes=True, **kept)
    # The time it took to grade is the execution's, not this recomputation's (the report plots it).
    return Graded(dataclasses.replace(result, seconds=previous.seconds), probes)


def _decoded_inputs(encoded) -> dict:
    """Inputs as verdicts saw them: tensors for tensor arrays (the grader wrote these itself)."""
    import torch

    def native(value):
        if isinstance(value, wire.Array):
            return torch.from_numpy(value.values.copy()) if value.kind == "tensor" else value.values
        if isinstance(value, dict):
            return {k: native(v) for k, v in value.items()}
        if isinstance(value, list):
            return [native(v) for v in value]
        return value

    return native(wire.decode(encoded)) if encoded else {}


def _verdicts(suite, assignment, probed: dict, contexts: dict, status: str) -> dict[str, QuestionResult]:
    rows = {}
    for qid, question in assignment.questions.items():
        outcomes = []
        for number, check in enumerate(suite.for_question(qid)):
            reply = probed.get(f"{qid}.{number}")
            outcomes.append(verdict_outcome(check, reply, contexts.get((qid, number)), status))
        rows[qid] = QuestionResult.scored(question, outcomes)
    return rows


def verdict_outcome(check, reply: dict | None, ctx, status: str) -> CheckOutcome:
    """One check's outcome from its probe reply: passed, or the message (and hint) saying why not."""
    if reply is None:
        return CheckOutcome(check.description, False, "not reached: the notebook stopped before this question"
                            if status != Status.OK else "not checked")
    if not reply.get("ok"):
        message = f"could not inspect your answer: {str(reply.get('error', ''))[:300]}"
        return CheckOutcome(check.description, False, message, check.hint)
    try:
        data = wire.decode(reply.get("data"))
        if not isinstance(data, dict):
            raise checks_api.Fail("the probe exported no data")
        check.verdict(data, ctx)
        return CheckOutcome(check.description, True)
    except checks_api.Fail as exc:
        message = str(exc)
    except Exception as exc:  # noqa: BLE001 - hostile data must fail the check, not the grader
        message = f"your answer has an unexpected form ({type(exc).__name__})"
    return CheckOutcome(check.description, False, message, check.hint)


def _finish(questions: dict[str, QuestionResult], assignment, started: float, /, *, status: Status, message: str = "",
            notes=(), **fields) -> SubmissionResult:
    """The result, totalled; a clean run's notes (edited locked cells, ...) become its message."""
    if status == Status.OK and notes:
        message = "; ".join(notes)[:500]
    return SubmissionResult.totalled(questions, assignment.points_possible, status=status, message=message,
                                     notes=tuple(notes), seconds=round(time.monotonic() - started, 2), **fields)


class Progress:
    """One line per finished submission, on stderr, with a count and an ETA."""

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.stream = total, 0, stream or sys.stderr  # stderr as it is now, not at import
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def update(self, result: SubmissionResult, reused: bool = False) -> None:
        with self.lock:
            self.done += 1
            elapsed = time.monotonic() - self.started
            eta = elapsed / self.done * (self.total - self.done)
            width = len(str(self.total))
            bar = "#" * int(20 * self.done / self.total)
            how = "reused" if reused else f"{result.seconds:.1f} s"
            by_hand = sum(result.questions[q].max_points for q in result.still_to_grade)
            if result.status in (Status.GRADER_ERROR, Status.INVALID):
                score = "no grade"
            else:
                score = f"{result.total:g}/{result.max_total:g}" + (f" ({by_hand:g} to grade by hand)" if by_hand else "")
            reason = f": {result.message[:160]}" if result.status != Status.OK and result.message else ""
            print(f"[{bar:<20}] {self.done:>{width}}/{self.total} {result.submission}: {result.status} {score} "
                  f"({how}; ETA {eta:.0f} s){reason}", file=self.stream, flush=True)


class DiskFull(RuntimeError):
    """Too little disk is free to grade on; what was finished is on disk, and a rerun resumes."""


def free_space_problem(out: Path, minimum_mb: int) -> str:
    """Why grading must not go on for lack of disk (results folder or temporary folder), or ""."""
    for folder in dict.fromkeys([out, Path(tempfile.gettempdir())]):
        free = shutil.disk_usage(folder).free
        if free < minimum_mb * 2**20:
            return (f"only {free / 2**20:.0f} MiB of disk is free in {folder}, less than "
                    f"defaults.min_free_disk_mb ({minimum_mb} MiB) in grading.yml")
    return ""


def grade_batch(job: GradingJob, submissions: list[Submission], out: Path, force: bool = False,
                progress: bool = True, reuse: bool = False, summary: bool = True,
                engine: "ClusterEngine | None" = None) -> list[SubmissionResult]:  # noqa: F821
    """Grade every submission (in parallel), writing each result as soon as it is done.

    With `summary` (the default) it also writes the batch's grades.csv; a shard of a batch leaves
    that to `collect`, which reads every result in the folder.

    Raises `isolation.Unisolated` before grading anything when no sandbox layer isolates the
    filesystem and the job does not allow that. Free disk is checked before the batch and before
    each submission: below `defaults.min_free_disk_mb` the batch stops with `DiskFull`, keeping
    every finished result and writing nothing half-way. With `reuse`, verdicts are recomputed from
    each submission's stored probe data, and only submissions whose checks need new data run again.

    With a cluster `engine` (`cluster.ClusterEngine`), submissions are executed on its workers, which
    are checked first (`cluster.ClusterError` when one cannot grade); everything else stays here.
    """
    out.mkdir(parents=True, exist_ok=True)
    problem = free_space_problem(out, job.config.defaults.min_free_disk_mb)
    if problem:
        raise DiskFull(f"{problem}: nothing was graded; free some space and run the same command again")
    # Hand-graded points are merged into every result written; a bad sheet stops the batch first.
    sheets = sheets_for_batch(out, job.aid, job.assignment, [s.name for s in submissions])
    if engine is not None:  # no student code runs here: the workers prepare their own hosts
        engine.check_workers(job)
        return _grade_batch(job, submissions, ResultStore(out, job.assignment, sheets), force, progress, reuse,
                            summary, engine)
    with host_ready(job, [out, *{s.path.parent for s in submissions}]) as job:
        store = ResultStore(out, job.assignment, sheets)
        return _grade_batch(job, submissions, store, force, progress, reuse, summary)


@contextlib.contextmanager
def host_ready(job: GradingJob, private: list[Path]):
    """The job, on a host prepared to grade it here: its data in place, the `private` folders (the
    results and the submissions) hidden from sandboxes, and one sandbox started (startup_check).
    Raises as prepared_host and startup_check do; everything is undone on leaving."""
    with prepared_host(job.layers, REPO_ROOT, job.data_dir, private, job.allow_unisolated,
                       declared=job.assignment.data) as data_dir:
        job = dataclasses.replace(job, data_dir=data_dir)
        startup_check(job)
        yield job


def _grade_batch(job: GradingJob, submissions: list[Submission], store: ResultStore, force: bool,
                 progress: bool, reuse: bool, summary: bool, engine=None) -> list[SubmissionResult]:
    out = store.out
    # The warm start is local: a cluster's workers start their own sandboxes.
    warm = starter(job, len(submissions)) if engine is None else None
    execute = engine.grade if engine is not None else functools.partial(grade_one, warm=warm)
    meter = Progress(len(submissions)) if progress and submissions else None
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(job.jobs):
        slots.put(slot)
    fingerprint = job.fingerprint()
    stopping = threading.Event()  # set on Ctrl-C: results of killed runs must not be saved
    disk_full: list[str] = []     # set when free disk ran low: no new submission starts
    broken: list[GraderFault] = []  # set when a sandbox did not start: no later one would either

    def work(submission: Submission) -> SubmissionResult | None:
        """The submission's result; None when it was not started (Ctrl-C, or too little disk)."""
        if warm is not None:
            warm.starting()
        previous = None if force else store.reusable(submission, fingerprint)
        if previous is not None:
            previous = store.save(previous)  # the manual sheets may have changed since
            if meter:
                meter.update(previous, reused=True)
            return previous
        if reuse:
            stored = store.stored(submission)
            regraded = regrade_from_probes(job, *stored) if stored else None
            if regraded is not None:
                result = store.write(submission, regraded.result, regraded.probes)
                if meter:
                    meter.update(result, reused=True)
                return result
        slot = slots.get()
        if stopping.is_set() or disk_full or broken:
            slots.put(slot)
            return None
        problem = free_space_problem(out, job.config.defaults.min_free_disk_mb)
        if problem:
            disk_full.append(problem)
            slots.put(slot)
            return None
        try:
            graded = execute(job, submission, slot)
        except GraderFault as exc:
            broken.append(exc)
            graded = Graded(grader_error(job, submission, f"{exc}; not graded, and not the student's fault"))
        except Exception as exc:  # noqa: BLE001 - one broken submission never stops a batch
            graded = Graded(grader_error(job, submission, f"the grader failed ({type(exc).__name__}: {exc}); "
                                                          "not graded, and not the student's fault"))
        finally:
            slots.put(slot)
        if stopping.is_set():
            return graded.result  # killed by the interrupt, not graded: a rerun grades it
        if graded.result.status == Status.GRADER_ERROR:
            if meter:
                meter.update(graded.result)
            return graded.result  # never stored: the next run grades it again
        result = store.write(submission, graded.result, graded.probes, graded.answers)
        if meter:
            meter.update(result)
        return result

    pool = ThreadPoolExecutor(max_workers=job.jobs)
    try:
        results = list(pool.map(work, submissions))
    except KeyboardInterrupt:
        # Stop queued work, kill running sandboxes; finished results are already on disk.
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        close_all()
        if engine is not None:
            engine.cancel()
        raise
    finally:
        if warm is not None:
            warm.close()  # the sandboxes nobody took
    pool.shutdown()
    graded = [r for r in results if r is not None]
    if broken:
        if summary:
            store.write_csv(graded)
        kept = sum(r.status != Status.GRADER_ERROR for r in graded)
        raise GraderBroken(_broken_message(broken[0], f"the batch stopped; {kept} of {len(submissions)} "
                                                      "submission(s) have results"))
    if disk_full:
        if graded and summary:
            store.write_csv(graded)
        raise DiskFull(f"{disk_full[0]}: stopped after {len(graded)} of {len(submissions)} submission(s); "
                       "their results are kept. Free some space and run the same command again: it resumes")
    if summary:
        store.write_csv(graded)
    return graded


def grader_error(job: GradingJob, submission: Submission, message: str) -> SubmissionResult:
    """The row of a submission the grader failed on: no points, the reason, and never stored."""
    return SubmissionResult(submission=submission.name, assignment=job.aid, status=Status.GRADER_ERROR, total=0,
                            max_total=job.assignment.points_possible, message=message[:500],
                            fingerprint=job.fingerprint(), sandbox=tuple(job.layers.names), student=submission.student)


def make_job(aid: str, config: GradingConfig, jobs: int | None = None, use_bwrap: bool = True,
             allow_unisolated: bool = False, warm: bool | None = None,
             fork_server: bool | None = None) -> GradingJob:
    """The job for grading `aid`, and how its sandboxes start:
      - by default (both None), forked from each slot's fork server, which imported torch once;
      - `fork_server=False`: started ahead (warm) when a core is left for it (fewer jobs than cores),
        since with every core grading, starting ahead only competes with the notebooks; else cold;
      - `warm=True`: started ahead; `warm=False`: every sandbox from scratch when its turn comes."""
    jobs = jobs or config.defaults.jobs or usable_cores()
    if fork_server is None:
        fork_server = warm is None
    if warm is None:
        warm = jobs < usable_cores()
    return GradingJob(aid, config, detect_layers(use_bwrap), REPO_ROOT / "datasets", jobs, allow_unisolated,
                      warm and not fork_server, fork_server)
