"""`grade --cluster`: submissions graded on Dask workers, results written by the client.

The scores of two assignments' canned submissions on a LocalCluster equal the local run's in
test_canned.py; here: a worker killed mid-batch loses no submission, a lost task is retried once
and then becomes a grader-error row, unfit workers stop the batch before anything is graded, and a
rerun resumes without sending anything to the cluster.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
import threading
import time

import pytest

from autograder.cluster import ClusterEngine, ClusterError, connect, grade_task, worker_problem
from autograder.config import ConfigError
from autograder.grade import CORES_ENV, grade_batch, grade_one, make_job, usable_cores
from autograder.results import Status
from autograder.submissions import Submission, discover
from conftest import SUBMISSIONS

distributed = pytest.importorskip("distributed")
from distributed.comm.core import CommClosedError  # noqa: E402


class FakeFuture:
    def __init__(self, outcome):
        self.outcome = outcome

    def result(self):
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


class FakeClient:
    """Hands out the given outcomes, one per task sent, and records what was sent and cancelled."""

    def __init__(self, outcomes):
        self.outcomes, self.sent, self.cancelled = list(outcomes), [], []

    def submit(self, function, *args, **options):
        self.sent.append((function, args, options))
        return FakeFuture(self.outcomes.pop(0))

    def cancel(self, futures):
        self.cancelled.extend(futures)


@pytest.fixture(scope="module")
def job(config):
    return make_job("autograd", config, jobs=1)


@pytest.fixture()
def solution(tmp_path):
    path = tmp_path / "alice.ipynb"
    shutil.copy(SUBMISSIONS / "autograd" / "solution.ipynb", path)
    return Submission(path=path, name="alice.ipynb")


def reply_for(job, tmp_path, name: str) -> bytes:
    """A worker's reply for submission `name`: a real result of this job (an invalid file's, which
    needs no sandbox), renamed."""
    junk = tmp_path / "junk.ipynb"
    junk.write_text("not a notebook")
    result = dataclasses.replace(grade_one(job, Submission(path=junk, name="junk")).result, submission=name)
    return json.dumps({"result": result.to_json(), "probes": {"q1.0": {"ok": True}}, "answers": None}).encode()


def test_a_lost_task_is_sent_once_more(job, solution, tmp_path):
    """Check that a task whose worker was lost is retried once, and its second answer is the grade"""
    client = FakeClient([CommClosedError("worker lost"), reply_for(job, tmp_path, solution.name)])
    graded = ClusterEngine(client, "tcp://test:1").grade(job, solution)
    assert len(client.sent) == 2 and client.sent[0][2]["key"] != client.sent[1][2]["key"]
    assert client.sent[0][1][4] == solution.path.read_bytes(), "the task carries the submission's bytes"
    assert graded.result.submission == solution.name and graded.result.status == Status.INVALID
    assert graded.probes == {"q1.0": {"ok": True}}


def test_a_task_lost_twice_is_a_grader_error_not_a_grade(job, solution):
    """Check that losing the worker twice gives a grader-error row naming the reason (no third try)"""
    client = FakeClient([CommClosedError("first"), OSError("second"), CommClosedError("never asked")])
    result = ClusterEngine(client, "tcp://test:1").grade(job, solution).result
    assert len(client.sent) == 2
    assert result.status == Status.GRADER_ERROR and result.total == 0
    assert "lost 2 times" in result.message and "second" in result.message and "not the student's fault" in result.message


@pytest.mark.parametrize("reply, says", [
    ({"fault": "the grader's sandbox did not start: no bwrap", "log": ""}, "sandbox did not start"),
    ("not json at all", "unreadable"),
    ({"result": {"submission": "x"}}, "unreadable"),
])
def test_a_worker_fault_or_bad_reply_is_a_grader_error(job, solution, reply, says):
    """Check that a fault on a worker, or a reply the client cannot read, is a grader-error row"""
    payload = (reply if isinstance(reply, str) else json.dumps(reply)).encode()
    result = ClusterEngine(FakeClient([payload]), "tcp://test:1").grade(job, solution).result
    assert result.status == Status.GRADER_ERROR and says in result.message


def test_a_reply_for_another_submission_is_refused(job, solution, tmp_path):
    """Check that a result naming another submission is never stored as this one's"""
    client = FakeClient([reply_for(job, tmp_path, "bob.ipynb")])
    result = ClusterEngine(client, "tcp://test:1").grade(job, solution).result
    assert result.status == Status.GRADER_ERROR and "another submission" in result.message


def test_an_invalid_file_is_graded_without_the_cluster(job, tmp_path):
    """Check that a file that is no notebook is graded invalid here: nothing is sent"""
    path = tmp_path / "broken.ipynb"
    path.write_text("{")
    client = FakeClient([])
    result = ClusterEngine(client, "tcp://test:1").grade(job, Submission(path=path, name="broken.ipynb")).result
    assert client.sent == [] and result.status == Status.INVALID


def test_ctrl_c_cancels_the_running_tasks(job, solution):
    """Check that cancel() hands every unfinished task to the client to cancel"""
    client = FakeClient([])
    engine = ClusterEngine(client, "tcp://test:1")
    futures = {FakeFuture(b""), FakeFuture(b"")}
    engine.running |= futures
    engine.cancel()
    assert set(client.cancelled) == futures


class FakeWorker:
    class state:
        nthreads = 1


def test_a_worker_with_another_checkout_is_unfit(job):
    """Check that a worker whose grader or grading.yml differs from the client's refuses to grade"""
    problem = worker_problem("autograd", "0" * 16, True, False, dask_worker=FakeWorker())
    assert "differ from the client's" in problem and "same commit" in problem


def test_a_worker_whose_sandbox_keeps_the_network_is_unfit(job, monkeypatch):
    """Check that a worker whose sandbox would let student code reach the scheduler refuses to grade"""
    monkeypatch.setenv("NN4E_SANDBOX_NO_BWRAP", "1")
    monkeypatch.setenv("NN4E_SANDBOX_NO_LANDLOCK", "1")
    monkeypatch.setenv("NN4E_SANDBOX_NO_USER", "1")
    fingerprint = make_job("autograd", job.config, jobs=1).fingerprint()
    problem = worker_problem("autograd", fingerprint, True, True, dask_worker=FakeWorker())
    assert "does not cut the network" in problem


def test_without_distributed_the_message_names_the_extra(monkeypatch):
    """Check that --cluster without the `distributed` package says what to install"""
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ClusterError, match=r"\[cluster\]"):
        connect("tcp://127.0.0.1:1")


def test_the_cores_are_the_environment_s_share_else_the_cpu_set(monkeypatch, config):
    """Check that NN4E_CORES sets the cores a grader shares among its slots, that a bad value is a
    clear error, and that without it the CPU set this process may run on counts, not the machine"""
    monkeypatch.setenv(CORES_ENV, "3")
    assert usable_cores() == 3 and make_job("autograd", config, jobs=2).threads == 1
    assert make_job("autograd", config).jobs == 3
    for bad in ("0", "two"):
        monkeypatch.setenv(CORES_ENV, bad)
        with pytest.raises(ConfigError, match="NN4E_CORES.*whole number"):
            usable_cores()
    monkeypatch.delenv(CORES_ENV)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5}, raising=False)
    assert usable_cores() == 1 and make_job("autograd", config, jobs=1).threads == 1


def test_workers_sharing_a_machine_give_each_sandbox_their_share(dask_cluster):
    """Check that each of the fixture's two single-thread workers, told its share of one core,
    gives its sandboxes one torch thread, not the machine's two"""
    from autograder.cluster import _worker_threads, worker_job

    def sandbox_threads(dask_worker):
        return worker_job("autograd", True, False, _worker_threads(dask_worker)).threads

    with distributed.Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        assert set(client.run(sandbox_threads).values()) == {1}


def test_the_task_never_raises_for_a_broken_notebook(dask_cluster):
    """Check that a worker grades a file that is no notebook as invalid, in plain JSON"""
    with distributed.Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        payload = client.submit(grade_task, "autograd", "x.ipynb", "x.ipynb", None, b"{", True, False,
                                pure=False).result()
    assert isinstance(payload, bytes)
    assert json.loads(payload)["result"]["status"] == Status.INVALID


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_no_submission(dask_cluster, config, tmp_path):
    """Check that killing a worker while it grades loses nothing: the task runs again elsewhere,
    every submission gets its grade, and a rerun sends nothing to the cluster"""
    folder = tmp_path / "subs"
    folder.mkdir()
    for name in ("solution", "blank", "gradient_ascent", "idioms_1"):
        shutil.copy(SUBMISSIONS / "autograd" / f"{name}.ipynb", folder / f"{name}.ipynb")
    submissions = discover([folder])
    out = tmp_path / "out"
    with distributed.Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        engine = ClusterEngine(client, dask_cluster.scheduler_address)
        sent = []
        submit = client.submit
        client.submit = lambda *a, **k: sent.append(k["key"]) or submit(*a, **k)
        pids_before = set(client.run(os.getpid).values())
        job = make_job("autograd", config, jobs=2)
        done: list = []
        batch = threading.Thread(target=lambda: done.append(grade_batch(job, submissions, out, progress=False,
                                                                         engine=engine)))
        batch.start()
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            busy = [worker for worker, keys in client.processing().items() if keys]
            if busy:
                time.sleep(1.0)  # well inside the grading: the sandbox is running the notebook
                victim = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(victim, signal.SIGKILL)
            time.sleep(0.05)
        batch.join(timeout=300)
        assert victim is not None and done, "no task ran, or the batch did not finish"
        results = {r.submission: r for r in done[0]}
        assert len(sent) > len(submissions), "the killed worker's task was not sent again"
        assert set(results) == {s.name for s in submissions}
        assert all(r.status == Status.OK for r in results.values()), [r.message for r in results.values()]
        assert results["solution.ipynb"].total == results["idioms_1.ipynb"].total > results["blank.ipynb"].total == 0
        assert sorted(p.name for p in (out / "results").glob("*.json")) == sorted(f"{s.name}.json" for s in submissions)
        client.wait_for_workers(2, timeout=60)
        assert victim not in set(client.run(os.getpid).values()) and len(pids_before) == 2
        sent.clear()
        again = grade_batch(job, submissions, out, progress=False, engine=engine)
        assert sent == [] and [r.total for r in again] == [results[r.submission].total for r in again]


def test_grade_cluster_from_the_command_line(dask_cluster, tmp_path, capsys):
    """Check `grade --cluster`: the workers are checked, the batch is written here, the summary printed"""
    from autograder.cli import main

    folder = tmp_path / "subs"
    folder.mkdir()
    for name in ("a.ipynb", "b.ipynb"):
        (folder / name).write_text("not a notebook")
    out = tmp_path / "out"
    assert main(["grade", "autograd", str(folder), "--out", str(out), "--cluster", dask_cluster.scheduler_address]) == 0
    err = capsys.readouterr().err
    assert f"on the Dask cluster at {dask_cluster.scheduler_address} (2 worker(s), 2 thread(s))" in err
    assert (out / "grades.csv").read_text().count("invalid") == 2
