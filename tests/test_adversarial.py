"""The adversarial corpus (tests/adversarial/cases.yml): every hostile submission earns exactly what
its honest part earns, leaves nothing on the host and no process alive, and the clean solution in
the same batch still gets full marks. Hostile writes aim at a decoy repository, never at the checkout.

The corpus runs under whichever layers this machine offers, forked from each slot's fork server
(grade's default); the cases that follow another are graded both forked and warm-started.
`--start-modes warm` grades it all warm-started (`forked`: all forked): CI runs it again so with
bubblewrap off (Landlock alone, forked), as an unprivileged user (warm) and with both off (the uid
layer alone, as root, warm)."""
from __future__ import annotations

import copy
import dataclasses
import os
import shutil
import socket
import tempfile
import threading
import time
from unittest import mock
from pathlib import Path

import pytest
import yaml

from autograder.config import REPO_ROOT
from autograder.data import verify
from autograder.forkserver import ForkServers, SlotServer
from autograder.grade import grade_batch, make_job
from autograder.isolation import BASE_UID, UID_RANGE, Layers, detect_layers
from autograder.submissions import discover
from autograder.warm import WarmSlots
from conftest import SUBMISSIONS, config_with, decoy_intact, decoy_repository, load_notebook, write_notebook

CASES = yaml.safe_load((REPO_ROOT / "tests" / "adversarial" / "cases.yml").read_text())
LAYERS = detect_layers()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not LAYERS.isolated, reason="no sandbox layer is available: grading refuses to run")]
TOKEN = f"nn4e-{os.getpid()}"
# What each `needs:` in cases.yml requires of the active layers.
DEFENCES = {
    "network": (LAYERS.bubblewrap or LAYERS.landlock >= 4 or LAYERS.private_network,
                "no layer blocks TCP here (bubblewrap, Landlock ABI 4+, or root's network namespace)"),
}


def walk_roots(*grader_paths: Path) -> list[str]:
    """Where the read case searches for hidden files (see cases.yml)."""
    if LAYERS.uid_only:
        return [str(REPO_ROOT), *map(str, grader_paths)]
    return ["/"]


def runnable_cases() -> dict:
    """The corpus's cases this machine can defend against (a case graded `after` another runs on its own)."""
    return {name: case for name, case in CASES.items()
            if DEFENCES.get(case.get("needs"), (True,))[0] and "after" not in case}


def case_code(case: dict, decoy: Path, out: Path, folder: Path, port: int) -> str:
    """A case's hostile cell with its placeholders filled in (see cases.yml)."""
    return (case["code"].replace("{repo}", str(decoy)).replace("{real_repo}", str(REPO_ROOT))
            .replace("{out}", str(out)).replace("{home}", os.environ["HOME"])
            .replace("{walk_roots}", repr(walk_roots(decoy, out, folder)))
            .replace("{port}", str(port)).replace("{token}", TOKEN))


def insert_cell(base: dict, code: str, before: str | None) -> dict:
    notebook = copy.deepcopy(base)
    cells = notebook["cells"]
    text = lambda c: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]  # noqa: E731
    anchor = before.replace("\\n", "\n") if before else None
    index = next(i for i, c in enumerate(cells) if c["cell_type"] == "code"
                 and (anchor is None or anchor in text(c)) and "otter.Notebook(" not in text(c))
    cells.insert(index, {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                         "source": code})
    return notebook


class LoopbackServer:
    """Counts connections to a port on the host's loopback interface."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def sandbox_processes() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if BASE_UID <= entry.stat().st_uid < BASE_UID + UID_RANGE:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


MAX_FILES = 2000  # the corpus's file budget per submission (the disk budget is grading.yml's)


class FreeSpace:
    """Records the lowest free space of a filesystem while a batch runs."""

    def __init__(self, folder: Path):
        self.folder, self.before = folder, shutil.disk_usage(folder).free
        self.lowest, self.running = self.before, True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while self.running:
            self.lowest = min(self.lowest, shutil.disk_usage(self.folder).free)
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()


def descendants(pid: int) -> list[int]:
    """Processes whose parent chain leads to `pid` (orphans re-parented to the grader included)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found += sorted(frontier)
    return found


def start_modes(request) -> list[str]:
    """The sandbox starts the corpus is graded with (`--start-modes`): the corpus with the first,
    the pairs with each."""
    modes = [mode.strip() for mode in request.config.getoption("start_modes").split(",") if mode.strip()]
    unknown = sorted(set(modes) - {"warm", "forked"})
    if unknown or not modes:
        raise pytest.UsageError(f"--start-modes takes forked, warm or both, not {unknown or 'nothing'}")
    return modes


@pytest.fixture(scope="module")
def corpus(request, tmp_path_factory, raw_config):
    folder = tmp_path_factory.mktemp("corpus")
    out = tmp_path_factory.mktemp("corpus-results")
    decoy = decoy_repository(tmp_path_factory.mktemp("decoy-repository"))
    server = LoopbackServer()
    bases = {"solution": load_notebook(SUBMISSIONS / "spiral" / "solution.ipynb"),
             "blank": load_notebook(SUBMISSIONS / "spiral" / "blank.ipynb")}
    for name, case in runnable_cases().items():
        code = case_code(case, decoy, out, folder, server.port)
        write_notebook(insert_cell(bases[case["base"]], code, case.get("before")), folder / f"{name}.ipynb")
    write_notebook(bases["solution"], folder / "clean_solution.ipynb")
    # 25 s per cell: five times the spiral solution's slowest cell on a busy 2-core machine, and what
    # the two cases that never end (an infinite loop, a long sleep) each cost the run.
    config = config_with(raw_config, **{"assignments.spiral.limits": {
        "cell_timeout_s": 25, "notebook_timeout_s": 240, "max_files": MAX_FILES}})
    sandboxes_before = set(Path(tempfile.gettempdir()).glob(f"nn4e-sandbox-{os.getpid()}-*"))
    free = FreeSpace(Path(tempfile.gettempdir()))
    try:
        # Forked: each slot's fork server outlives its hostile notebooks. Warm: each slot's next
        # sandbox starts while the slot grades a hostile notebook.
        job = make_job("spiral", config, jobs=2, warm=True, fork_server=start_modes(request)[0] == "forked")
        results = [r.to_json() for r in grade_batch(job, discover([folder]), out, progress=False)]
    finally:
        server.close()
        free.stop()
    return {"results": {Path(r["submission"]).stem: r for r in results}, "out": out, "server": server,
            "decoy": decoy, "survivors": descendants(os.getpid()), "free": free,
            "disk_mb": config.limits_for("spiral").disk_mb,
            "leftover_dirs": set(Path(tempfile.gettempdir()).glob(f"nn4e-sandbox-{os.getpid()}-*")) - sandboxes_before}


def lingering_files() -> list[Path]:
    """What the lingering daemon planted in the host's shared folders (nothing, if it was contained)."""
    return [path for folder in ("/tmp", "/dev/shm", os.environ["HOME"])
            for path in Path(folder).glob(f"lingering-{TOKEN}")]


def honest_points(result: dict) -> dict:
    """A result's points per automatically graded question."""
    return {q: row["points"] for q, row in result["questions"].items() if not row["manual"]}


def grade_after(name: str, job, folder: Path, out: Path, decoy: Path) -> dict:
    """Grade case `name` in one slot right after the case it names in `after`; results by file stem."""
    case = CASES[name]
    base = load_notebook(SUBMISSIONS / "spiral" / f"{case['base']}.ipynb")
    first = CASES[case["after"]]
    folder.mkdir(exist_ok=True)
    write_notebook(insert_cell(base, case_code(first, decoy, out, folder, 9), first.get("before")),
                   folder / f"1-{case['after']}.ipynb")
    write_notebook(insert_cell(base, case_code(case, decoy, out, folder, 9), case.get("before")),
                   folder / f"2-{name}.ipynb")
    return {Path(r.submission).stem: r.to_json()
            for r in grade_batch(job, discover([folder]), out, progress=False)}


@pytest.fixture(scope="module")
def sequences(request, tmp_path_factory, raw_config):
    """Each case with `after: other` graded in one slot right after `other`, twice: with the warm
    start (the case's own sandbox started while the other still ran) and forked from the same fork
    server as the other (grade's default). `--start-modes` may choose one of the two."""
    after_cases = [name for name, case in CASES.items() if "after" in case]
    modes = start_modes(request)
    runs = {mode: {} for mode in modes}
    taken, forked, servers_started = [], [], []
    warm_take, fork_take, server_start = WarmSlots.take, ForkServers.take, SlotServer.start

    def take(self, slot, torch):
        box = warm_take(self, slot, torch)
        taken.append(box is not None)
        return box

    def take_forked(self, slot, torch):
        box = fork_take(self, slot, torch)
        forked.append(box is not None and box.server is not None)
        return box

    def start(self):
        servers_started.append(self)
        return server_start(self)

    for mode in modes:
        job = make_job("spiral", config_with(raw_config), jobs=1, warm=True, fork_server=mode == "forked")
        for name in after_cases:
            with mock.patch.object(WarmSlots, "take", take), mock.patch.object(ForkServers, "take", take_forked), \
                    mock.patch.object(SlotServer, "start", start):
                runs[mode][name] = grade_after(name, job, tmp_path_factory.mktemp(f"after-{name}"),
                                               tmp_path_factory.mktemp(f"after-{name}-results"),
                                               decoy_repository(tmp_path_factory.mktemp("decoy-repository")))
    return {"results": runs, "taken": taken, "forked": forked, "servers_started": len(servers_started),
            "pairs": len(after_cases), "survivors": descendants(os.getpid())}


def test_the_next_submission_ran_in_a_sandbox_started_beside_the_daemon(sequences):
    """Check that the submissions graded after another ran in warm sandboxes, started while the other ran"""
    if "warm" not in sequences["results"]:
        pytest.skip("--start-modes leaves out the warm start")
    assert sequences["taken"] and all(sequences["taken"][1::2]), sequences["taken"]


def test_no_daemon_outlives_the_sequences(sequences):
    """Check that no process and no planted file of the lingering daemon is left once the pairs ran"""
    assert sequences["survivors"] == [] and sandbox_processes() == []
    assert lingering_files() == []


def test_the_next_submission_was_forked_by_the_daemon_s_own_server(sequences):
    """Check that each pair was forked from one fork server, which the daemon could not stop: the
    case after it got a child of the very server the daemon's submission came from"""
    if "forked" not in sequences["results"]:
        pytest.skip("--start-modes leaves out the fork server")
    assert sequences["forked"] and all(sequences["forked"]), sequences["forked"]
    if LAYERS.landlock >= 6 or LAYERS.unprivileged_user:  # the daemon cannot signal the server
        assert sequences["servers_started"] == sequences["pairs"]
    else:  # it may kill the server: the slot then starts a new one, which is safe but proves less
        assert sequences["servers_started"] <= 2 * sequences["pairs"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_earns_only_its_honest_points(corpus, sequences, name):
    """Check a hostile submission's status and per-question points"""
    case = CASES[name]
    if "after" in case:
        for mode, runs in sequences["results"].items():
            first, then = runs[name][f"1-{case['after']}"], runs[name][f"2-{name}"]
            assert first["status"] == "ok" and honest_points(first) == CASES[case["after"]]["points"], (mode, first)
            assert then["status"] == case.get("status", "ok") and honest_points(then) == case["points"], (mode, then)
        result = runs[name][f"2-{name}"]
    elif name not in runnable_cases():
        pytest.skip(DEFENCES[case["needs"]][1])
    else:
        result = corpus["results"][name]
    allowed = case.get("status", "ok")
    assert result["status"] in (allowed if isinstance(allowed, list) else [allowed]), result["message"]
    if result["status"] != "ok" and "message" in case:
        assert case["message"] in result["message"], result["message"]
    assert honest_points(result) == case["points"], result["questions"]


def test_clean_solution_in_the_same_batch_gets_full_marks(corpus):
    """Check that hostile neighbours do not cost a correct submission anything"""
    clean = corpus["results"]["clean_solution"]
    assert clean["status"] == "ok" and all(row["points"] == row["max_points"]
                                           for row in clean["questions"].values() if not row["manual"])


def test_nothing_left_on_the_host(corpus):
    """Check that no planted file, deleted file, sandbox folder or process survives the batch"""
    decoy = corpus["decoy"]
    assert decoy_intact(decoy) and not (decoy / "PLANTED.txt").exists() and not (decoy / "grades.csv").exists()
    assert not (corpus["out"] / "PLANTED.txt").exists()
    assert not Path(f"/tmp/PLANTED-{TOKEN}.txt").exists()
    assert not (Path(os.environ["HOME"]) / f"PLANTED-{TOKEN}.txt").exists()
    assert lingering_files() == []
    assert (REPO_ROOT / "grading.yml").exists()
    verify(names=["spiral.csv"])
    assert corpus["leftover_dirs"] == set()
    assert sandbox_processes() == []
    assert corpus["survivors"] == []
    grades = (corpus["out"] / "grades.csv").read_text()
    assert "1000" not in grades


def test_disk_use_stays_within_the_budget(corpus):
    """Check that the host's free space never dropped by more than the budgets of the two sandboxes running at once"""
    free = corpus["free"]
    budget = corpus["disk_mb"] * 2**20
    assert free.before - free.lowest <= 2 * budget, (free.before - free.lowest) / 2**20  # two run at once
    assert not list(Path("/dev/shm").glob(f"nn4e-{TOKEN}*"))


def test_no_connection_reached_the_host(corpus):
    """Check that the loopback server never saw a connection from a sandbox"""
    if not DEFENCES["network"][0]:
        pytest.skip(DEFENCES["network"][1])
    assert corpus["server"].connections == 0


def test_results_record_the_layers(corpus):
    """Check that every result names the layers that were active, and none ran unisolated"""
    for result in corpus["results"].values():
        assert result["sandbox"] == LAYERS.names and "unisolated" not in result["sandbox"]


@pytest.mark.unisolated
def test_canaries_fire_without_isolation(tmp_path, raw_config):
    """Check that the read and network canaries do cost points with no isolation, so full marks above prove a defence held"""
    decoy = decoy_repository(tmp_path / "decoy")
    server = LoopbackServer()
    base = load_notebook(SUBMISSIONS / "spiral" / "solution.ipynb")
    folder = tmp_path / "subs"
    folder.mkdir()
    for name in ("read_hidden_files", "network_exfiltration"):
        case = CASES[name]
        code = (case["code"].replace("{repo}", str(decoy)).replace("{real_repo}", str(REPO_ROOT))
                .replace("{walk_roots}", repr(walk_roots(decoy, folder))).replace("{port}", str(server.port)))
        write_notebook(insert_cell(base, code, case.get("before")), folder / f"{name}.ipynb")
    job = dataclasses.replace(make_job("spiral", config_with(raw_config), jobs=2),
                              layers=Layers(off=("turned off for this test",)), allow_unisolated=True)
    try:
        results = {Path(r.submission).stem: r.to_json() for r in
                   grade_batch(job, discover([folder]), tmp_path / "out", progress=False)}
    finally:
        server.close()
    for name in ("read_hidden_files", "network_exfiltration"):
        assert results[name]["total"] < sum(CASES[name]["points"].values()), name
        assert "unisolated" in results[name]["sandbox"]
    assert server.connections > 0


@pytest.mark.unisolated
def test_the_lingering_daemon_reaches_the_next_submission_without_isolation(tmp_path, raw_config):
    """Check that the next submission does find the daemon's files when nothing contains them, so
    its full marks above prove the sandbox did"""
    job = dataclasses.replace(make_job("spiral", config_with(raw_config), jobs=1, warm=True),
                              layers=Layers(off=("turned off for this test",)), allow_unisolated=True)
    try:
        results = grade_after("after_a_lingering_daemon", job, tmp_path / "subs", tmp_path / "out",
                              decoy_repository(tmp_path / "decoy"))
    finally:
        for path in lingering_files():
            path.unlink()
    assert results["2-after_a_lingering_daemon"]["status"] == "error", results["2-after_a_lingering_daemon"]
    assert results["1-lingering_daemon"]["status"] == "ok"
