"""The device policy on a fake device layout: which GPU nodes a slot gets, its environment, its
memory limits, and grading.yml's `device`. Nothing here needs a GPU but the last test."""
from __future__ import annotations

import dataclasses
import errno
import os
import resource
import signal
import tempfile
from pathlib import Path

import pytest
import yaml

from autograder import memcap, shipping
from autograder.config import DEFAULT_CONFIG, REPO_ROOT, ConfigError, load_config
from autograder.grade import Planned, make_job, run_plan
from autograder.isolation import Layers, delegated_cgroup, detect_layers, find_gpus, prepared_host
from autograder.memcap import delegation
from autograder.results import Status, SubmissionResult
from autograder.sandbox import NO_GPU_MEMORY_CAP, Sandbox, SandboxBroken, SandboxDied, _bwrap_args, _rlimits, _scrubbed_env, gpu_policy
from conftest import SUBMISSIONS, config_with

LIMITS = load_config().defaults.limits


@pytest.fixture()
def machine(tmp_path):
    """A fake GPU machine: /dev with two GPUs and two control nodes, the driver's /proc folder,
    and a cgroup v2 tree without delegation (the memory controller is not offered)."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "null", "nvidia-caps"):
        (dev / name).touch()
    proc = tmp_path / "proc"
    (proc / "driver" / "nvidia").mkdir(parents=True)
    (proc / "self").mkdir()
    (proc / "self" / "cgroup").write_text("0::/grader.slice\n")
    cgroup = tmp_path / "cgroup"
    (cgroup / "grader.slice").mkdir(parents=True)
    (cgroup / "grader.slice" / "cgroup.controllers").write_text("cpu io pids\n")
    return {"dev_root": str(dev), "proc_root": str(proc), "cgroup_root": str(cgroup),
            "self_cgroup": str(proc / "self" / "cgroup")}


def use_fake_gpus(monkeypatch, machine) -> None:
    """Sandboxes made from now on find the fake machine's GPUs and cgroup tree instead of this machine's."""
    monkeypatch.setattr("autograder.sandbox.find_gpus", lambda *_: find_gpus(machine["dev_root"], machine["proc_root"]))
    monkeypatch.setattr("autograder.sandbox.delegation",
                        lambda *_: delegation(machine["cgroup_root"], machine["self_cgroup"]))


def delegate(machine) -> Path:
    """Make the fake machine's cgroup a delegated one: writable, offering memory, not yet readied."""
    folder = Path(machine["cgroup_root"]) / "grader.slice"
    (folder / "cgroup.controllers").write_text("cpu memory pids\n")
    (folder / "cgroup.subtree_control").write_text("")
    return folder


def test_find_gpus_lists_gpu_and_control_nodes(machine):
    """Check that find_gpus finds nvidia0/1, the control nodes present and the driver folder"""
    gpus = find_gpus(machine["dev_root"], machine["proc_root"])
    dev = machine["dev_root"]
    assert gpus.indices == (0, 1)
    assert gpus.nodes == (f"{dev}/nvidia0", f"{dev}/nvidia1", f"{dev}/nvidiactl", f"{dev}/nvidia-uvm")
    assert gpus.driver == f"{machine['proc_root']}/driver/nvidia"


def test_control_nodes_alone_are_no_gpu(tmp_path):
    """Check that a /dev with nvidiactl but no nvidia<N> node counts as no GPU"""
    (tmp_path / "nvidiactl").touch()
    assert not find_gpus(str(tmp_path), str(tmp_path))


def test_gpu_slot_binds_every_node_after_the_fresh_dev(machine):
    """Check that a GPU slot's bubblewrap argv dev-binds each node after bwrap's own /dev (which would
    otherwise hide them), and that Landlock may open the nodes and read the driver's /proc folder"""
    policy = gpu_policy(0, "cuda", **machine)
    dev = machine["dev_root"]
    assert policy.binds == (
        "--dev-bind-try", f"{dev}/nvidia0", "/dev/nvidia0", "--dev-bind-try", f"{dev}/nvidia1", "/dev/nvidia1",
        "--dev-bind-try", f"{dev}/nvidiactl", "/dev/nvidiactl",
        "--dev-bind-try", f"{dev}/nvidia-uvm", "/dev/nvidia-uvm")
    args = _bwrap_args("bwrap", LIMITS, Path("/sandbox/assignments/spiral"), Path("/g"), None, policy.binds)
    assert args.index("--dev-bind-try") > args.index("--dev") > 0
    assert policy.devices == ("/dev/nvidia0", "/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm")
    assert policy.readable == ("/proc/driver/nvidia",)


def test_slots_share_gpus_round_robin(machine):
    """Check that slots 0, 1, 2 over two GPUs get CUDA_VISIBLE_DEVICES 0, 1, 0 and record cuda:0/1/0"""
    policies = [gpu_policy(slot, "auto", **machine) for slot in range(3)]
    envs = [_scrubbed_env("/tmp", "/tmp", 1, p)["CUDA_VISIBLE_DEVICES"] for p in policies]
    assert envs == ["0", "1", "0"]
    assert [p.label for p in policies] == ["cuda:0", "cuda:1", "cuda:0"]


def test_gpu_slot_has_no_address_space_cap(machine):
    """Check that a GPU slot's rlimits leave out RLIMIT_AS and keep the others"""
    policy = gpu_policy(1, "cuda", **machine)
    gpu = dict(_rlimits(LIMITS, policy.cap_address_space))
    assert resource.RLIMIT_AS not in gpu
    assert gpu[resource.RLIMIT_NOFILE] == LIMITS.max_open_files
    assert gpu[resource.RLIMIT_FSIZE] == LIMITS.max_file_size_mb * 2**20


def test_warning_without_cgroup_delegation(machine):
    """Check that a GPU slot without a delegated cgroup v2 warns that it has no memory cap"""
    assert delegated_cgroup(machine["cgroup_root"], machine["self_cgroup"]) is None
    assert gpu_policy(0, "cuda", **machine).warning == NO_GPU_MEMORY_CAP + "no delegated cgroup v2"


def test_delegated_cgroup_caps_gpu_slots(machine):
    """Check that with a delegated cgroup the grader moves itself into the leaf grader/, enables the
    memory controller, and GPU slots get their cap there with no warning"""
    folder = delegate(machine)
    assert delegated_cgroup(machine["cgroup_root"], machine["self_cgroup"]) == folder
    policy = gpu_policy(0, "cuda", **machine)
    assert (policy.memory_cgroup, policy.warning, policy.cap_address_space) == (folder, "", False)
    assert (folder / "grader" / "cgroup.procs").read_text() == str(os.getpid())
    assert (folder / "cgroup.subtree_control").read_text() == "+memory"
    assert gpu_policy(1, "cuda", **machine).memory_cgroup == folder  # readied once, not moved again
    assert (folder / "grader" / "cgroup.procs").read_text() == str(os.getpid())


def test_readied_cgroup_is_used_as_it_is(machine):
    """Check that a delegated cgroup whose children already have the memory controller is used without
    moving the grader"""
    folder = delegate(machine)
    (folder / "cgroup.subtree_control").write_text("cpu memory\n")
    assert gpu_policy(0, "cuda", **machine).memory_cgroup == folder
    assert not (folder / "grader").exists()


def test_busy_cgroup_puts_the_grader_back_and_warns(machine, monkeypatch):
    """Check that when the kernel refuses the memory controller (other processes in the cgroup), the
    grader moves back, removes its leaf, and GPU slots warn why they have no cap"""
    folder = delegate(machine)
    real_write = memcap._write

    def busy(path, text):
        if path.name == "cgroup.subtree_control":
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        real_write(path, text)

    monkeypatch.setattr(memcap, "_write", busy)
    removed = []  # a real cgroupfs removes a cgroup holding only its interface files; a folder does not
    monkeypatch.setattr(Path, "rmdir", lambda path: removed.append(path))
    policy = gpu_policy(0, "cuda", **machine)
    assert policy.memory_cgroup is None and not policy.cap_address_space
    assert policy.warning == (NO_GPU_MEMORY_CAP + f"could not enable the memory controller in {folder}: "
                              f"{os.strerror(errno.EBUSY)} (other processes live there: run the grader in a "
                              "cgroup of its own, e.g. under `systemd-run --scope -p Delegate=yes`)")
    assert (folder / "cgroup.procs").read_text() == str(os.getpid())
    assert removed == [folder / "grader"]


def test_memory_cap_reads_the_kernels_oom_kills(tmp_path):
    """Check that a sandbox cgroup gets memory.max, and reports an OOM kill only when memory.events counts one"""
    cap = memcap.MemoryCap(tmp_path, "box", 3 * 2**30)
    assert (tmp_path / "box" / "memory.max").read_text() == str(3 * 2**30)
    assert not (tmp_path / "box" / "memory.swap.max").exists()  # only written where swap is accounted
    (tmp_path / "box" / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n")
    assert not cap.out_of_memory()
    (tmp_path / "box" / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n")
    assert cap.out_of_memory()


def test_cuda_without_gpu_is_a_config_error(tmp_path):
    """Check that device: cuda on a machine without /dev/nvidia0 raises ConfigError saying what to do"""
    with pytest.raises(ConfigError, match=r"device: cuda in grading.yml, but this machine has no NVIDIA GPU "
                                          r".*nvidia0.*set device: cpu or auto"):
        gpu_policy(0, "cuda", dev_root=str(tmp_path), proc_root=str(tmp_path))


def test_auto_without_gpu_grades_on_the_cpu(tmp_path):
    """Check that device: auto without GPUs binds nothing, keeps the address-space cap and records cpu"""
    policy = gpu_policy(2, "auto", dev_root=str(tmp_path), proc_root=str(tmp_path))
    assert (policy.label, policy.binds, policy.cap_address_space, policy.warning) == ("cpu", (), True, "")
    assert "CUDA_VISIBLE_DEVICES" not in _scrubbed_env("/tmp", "/tmp", 1, policy)


def test_cpu_is_unchanged_on_a_gpu_machine(machine):
    """Check that device: cpu on a GPU machine binds nothing, hides the GPUs and keeps RLIMIT_AS"""
    policy = gpu_policy(1, "cpu", **machine)
    assert (policy.label, policy.binds, policy.devices, policy.warning) == ("cpu", (), (), "")
    assert _scrubbed_env("/tmp", "/tmp", 1, policy)["CUDA_VISIBLE_DEVICES"] == ""
    assert dict(_rlimits(LIMITS, policy.cap_address_space))[resource.RLIMIT_AS] == LIMITS.memory_mb * 2**20
    args = _bwrap_args("bwrap", LIMITS, Path("/sandbox/assignments/spiral"), Path("/g"), None, policy.binds)
    assert not any("nvidia" in arg for arg in args)


def test_sandbox_with_cuda_fails_before_making_anything(tmp_path, monkeypatch):
    """Check that a Sandbox for device: cuda on a GPU-less machine raises ConfigError before creating its folder"""
    no_gpu, temp = tmp_path / "dev", tmp_path / "tmp"
    no_gpu.mkdir()
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setattr("autograder.sandbox.find_gpus", lambda *_: find_gpus(str(no_gpu), str(no_gpu)))
    with pytest.raises(ConfigError, match="no NVIDIA GPU"):
        Sandbox("spiral", LIMITS, Layers(), None, slot=0, device="cuda")
    assert list(temp.iterdir()) == []


def what_the_slot_sees(visible=None, address_space=None, opened=None):
    """A probe, shipped as the grader ships one: the slot's GPU environment and limits."""
    return {"visible": visible, "address_space": address_space, "opened": opened}


def test_sandbox_applies_the_gpu_policy(machine, tmp_path, monkeypatch):
    """Check, in a real sandbox on the fake GPU layout, that slot 1 sees CUDA_VISIBLE_DEVICES=1, no
    address-space cap and (under bubblewrap) a /dev/nvidia1 it may open read-write"""
    layers = detect_layers()
    if not layers.isolated:
        pytest.skip("no sandbox layer is available on this machine")
    for node in Path(machine["dev_root"]).iterdir():
        node.chmod(0o666)  # as the driver's nodes are: the sandbox uid opens them
    use_fake_gpus(monkeypatch, machine)
    code = ("import os, resource\nvisible = os.environ.get('CUDA_VISIBLE_DEVICES')\n"
            "address_space = resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY\n"
            "try:\n    os.close(os.open('/dev/nvidia1', os.O_RDWR))\n    opened = True\n"
            "except OSError as exc:\n    opened = str(exc)\n")
    with prepared_host(layers, REPO_ROOT, REPO_ROOT / "datasets", [tmp_path / "private"]) as data_dir:
        with Sandbox("spiral", LIMITS, layers, data_dir, slot=1, device="cuda") as box:
            box.initialise(seed=0, torch=False, timeout=60)
            assert box.request({"op": "run", "index": 0, "source": code}, 20)["ok"]
            probed = box.request({"op": "probe", "id": "t", "code": shipping.ship(what_the_slot_sees),
                                  "inputs": {}}, 20)
    seen = dict(probed["data"]["__dict__"])
    assert (seen["visible"], seen["address_space"]) == ("1", True)
    if layers.bubblewrap:
        assert seen["opened"] is True


def test_gpu_sandbox_runs_in_its_own_memory_cgroup(machine, tmp_path, monkeypatch):
    """Check, in a real sandbox on the fake GPU layout with a delegated cgroup, that the sandbox's
    process joined a cgroup of its own before exec, capped at the memory limit (plus its tmpfs disk
    under bubblewrap), and that an OOM kill there is reported as the memory limit"""
    layers = detect_layers()
    if not layers.isolated:
        pytest.skip("no sandbox layer is available on this machine")
    folder = delegate(machine)
    use_fake_gpus(monkeypatch, machine)
    with prepared_host(layers, REPO_ROOT, REPO_ROOT / "datasets", [tmp_path / "private"]) as data_dir:
        with Sandbox("spiral", LIMITS, layers, data_dir, slot=0, device="cuda") as box:
            box.initialise(seed=0, torch=False, timeout=60)
            own = folder / box.tmp.name
            assert (own / "cgroup.procs").read_text() == str(box.proc.pid)
            mib = LIMITS.memory_mb + (LIMITS.disk_mb if layers.bubblewrap else 0)
            assert (own / "memory.max").read_text() == str(mib * 2**20)
            (own / "memory.events").write_text("oom 1\noom_kill 1\n")  # as the kernel counts its kill
            os.killpg(box.proc.pid, signal.SIGKILL)
            with pytest.raises(SandboxDied, match=f"ran out of memory \\(the limit is {LIMITS.memory_mb} MiB\\)"):
                box.request({"op": "run", "index": 0, "source": "1"}, 20)


def test_gpu_sandbox_without_its_cgroup_fails_closed(machine, tmp_path, monkeypatch):
    """Check that a GPU sandbox whose memory cgroup cannot be made does not start, says why and what to
    do, and leaves no folder behind"""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    use_fake_gpus(monkeypatch, machine)
    gone = tmp_path / "gone"
    monkeypatch.setattr("autograder.sandbox.delegation", lambda *_: memcap.Delegation(gone))
    with pytest.raises(SandboxBroken, match=f"could not give the sandbox its memory cap, a cgroup under {gone} "
                                            r".*grade with device: cpu, or fix the cgroup's delegation"):
        with Sandbox("spiral", LIMITS, Layers(), None, slot=0, device="cuda"):
            pass
    assert list(temp.iterdir()) == []


def test_grade_stops_before_grading_when_gpu_slots_cannot_get_their_cgroup(machine, raw_config, tmp_path,
                                                                            monkeypatch, capsys):
    """Check that `grade` with device: cuda whose memory cgroups cannot be made exits 2 at its start-up
    check, says why, and grades nothing (no student gets a zero for the host's fault)"""
    from autograder.cli import main

    if not detect_layers().isolated:
        pytest.skip("no sandbox layer is available on this machine")
    use_fake_gpus(monkeypatch, machine)
    gone = tmp_path / "gone"
    monkeypatch.setattr("autograder.sandbox.delegation", lambda *_: memcap.Delegation(gone))
    raw = yaml.safe_load(yaml.safe_dump(raw_config))
    raw["assignments"]["spiral"]["device"] = "cuda"
    path = tmp_path / "grading.yml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    code = main(["--config", str(path), "grade", "spiral", str(SUBMISSIONS / "spiral" / "solution.ipynb"),
                 "--out", str(out), "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"device cuda: cuda:0; GPU slots' memory capped by cgroup v2 (memory.max) under {gone}" in err
    assert f"could not give the sandbox its memory cap, a cgroup under {gone}" in err and "nothing was graded" in err
    assert not (out / "grades.csv").exists()


def test_run_plan_records_the_slot_device(machine, raw_config, monkeypatch):
    """Check that grading runs slot 1 of an assignment with device: auto on the fake machine's
    second GPU and reports cuda:1 for its result"""
    use_fake_gpus(monkeypatch, machine)
    job = make_job("spiral", config_with(raw_config, **{"assignments.spiral.device": "auto"}), jobs=2)
    if not job.layers.isolated:
        pytest.skip("no sandbox layer is available on this machine")
    nothing = Planned(suite=None, ref=None, steps=[], notes=[], code_cells=[], uses_torch=False)
    with prepared_host(job.layers, REPO_ROOT, job.data_dir, []) as data_dir:
        execution = run_plan(dataclasses.replace(job, data_dir=data_dir), nothing, slot=1)
    assert (execution.status, execution.device) == ("ok", "cuda:1")


def test_assignment_device_overrides_the_default(tmp_path):
    """Check that an assignment's device overrides defaults.device, and a bad value names the key"""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["defaults"]["device"] = "auto"
    raw["assignments"]["spiral"]["device"] = "cuda"
    path = tmp_path / "grading.yml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.device_for("spiral") == "cuda"
    assert config.device_for("mnist") == "auto"
    raw["assignments"]["spiral"]["device"] = "gpu"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"assignments\.spiral\.device"):
        load_config(path)


def test_unset_assignment_device_keeps_the_fingerprint_input(config):
    """Check that an assignment without its own device dumps without the key (old results stay valid)"""
    assignment = config.assignments["spiral"]
    assert "device" not in assignment.model_dump_json()
    assert '"device":"cuda"' in assignment.model_copy(update={"device": "cuda"}).model_dump_json()


def test_result_records_the_device_only_when_set():
    """Check that a result's device is written and read back, and absent when nothing ran"""
    result = SubmissionResult(submission="a.ipynb", assignment="spiral", status=Status.OK, total=1, max_total=1,
                              device="cuda:1")
    assert SubmissionResult.from_json(result.to_json()).device == "cuda:1"
    bare = SubmissionResult(submission="a.ipynb", assignment="spiral", status=Status.INVALID, total=0, max_total=1)
    assert "device" not in bare.to_json()


def seen_by_torch(available=None, total=None):
    """A probe, shipped as the grader ships one: what the notebook's torch saw on the GPU."""
    return {"available": available, "total": total}


def test_notebook_computes_on_its_gpu(tmp_path):
    """Check, on a CUDA machine only, that a sandbox with device: cuda can compute on its GPU"""
    if not find_gpus():  # decided before importing torch, which takes seconds
        pytest.skip("no CUDA GPU on this machine")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    layers = detect_layers()
    with prepared_host(layers, REPO_ROOT, REPO_ROOT / "datasets", [tmp_path / "private"]) as data_dir:
        with Sandbox("spiral", LIMITS, layers, data_dir, slot=0, device="cuda") as box:
            assert box.policy.label.startswith("cuda:") and not box.policy.cap_address_space
            box.initialise(seed=0, torch=True, timeout=120)
            code = ("import torch\navailable = torch.cuda.is_available()\n"
                    "total = float((torch.ones(1000, device='cuda') * 2).sum().item())")
            reply = box.request({"op": "run", "index": 0, "source": code}, 120)
            assert reply["ok"], reply
            probed = box.request({"op": "probe", "id": "t", "code": shipping.ship(seen_by_torch), "inputs": {}}, 60)
    assert probed["ok"], probed
    assert dict(probed["data"]["__dict__"]) == {"available": True, "total": 2000.0}


@pytest.mark.skipif(bool(find_gpus()), reason="this machine has a GPU")
def test_validate_refuses_cuda_on_a_machine_without_a_gpu(raw_config, tmp_path, capsys):
    """Check that `validate` names the assignment and says what to do when device: cuda has no GPU"""
    from autograder.cli import main

    raw = yaml.safe_load(yaml.safe_dump(raw_config))
    raw["assignments"]["spiral"]["device"] = "cuda"
    path = tmp_path / "grading.yml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["--config", str(path), "validate"]) == 1
    assert "assignments.spiral: device: cuda in grading.yml, but this machine has no NVIDIA GPU" in capsys.readouterr().err
