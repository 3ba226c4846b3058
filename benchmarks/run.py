"""Benchmark this grader against a loop of `otter run` on the same notebooks and bundle.

    python benchmarks/run.py [--n 40] [--assignments spiral ...] [--otter-n 10] [--out docs/benchmarks.md]
    python benchmarks/run.py --only solution.ipynb --n 3 --otter-n 0    # the solution's cost alone

For each assignment it makes N distinct copies of the canned submissions (a comment differs, so
no result cache applies), then times, in one run on one machine:
  - this grader at --jobs 1 and at --jobs = cores (every sandbox layer stays on; sandboxes start
    as `grade` starts them: forked from each slot's fork server, or with `--no-fork-server` warm
    when a core is left for it, else cold);
    the runs' statuses and scores must agree; with `--cold`, both once more with every sandbox
    started from scratch, to compare in the same run (and with `--repeat K`, --jobs = cores K times
    each way, alternating, reported as medians);
  - `otter run` over `--otter-n` of the copies spread evenly over them, one after the other, with
    the same bundle;
  - the floor: a notebook's code executed in a warm Python process (torch, its compiler front end
    and matplotlib.pyplot imported, as in the fork server; no kernel, no sandbox, no grading), the
    median of `--floor-repeat` runs: the solution's, and each notebook otter ran.
It reports throughput, the ratio against otter, the overhead ratio (the median seconds of the
solution copies at --jobs 1 over the solution's floor), peak memory per worker, whether scores
agree across --jobs values, and the bound: the ratio against otter that a grader with no overhead at all would reach at
--jobs = cores (otter's seconds over the floors of the same notebooks, times the cores). Where the
notebooks' own compute is most of otter's time, no grader can go past that bound.
With `--interleave K`, the overhead ratio is also measured against the machine's drift: one slot
grades a first solution copy (which pays the slot's start, and is left out), then K times a floor
run of the solution followed by a graded copy of it, so that both sides of the ratio see the same
moments of the machine; it reports each side's median and their ratio.
`--only solution.ipynb` copies the solution alone, and `--otter-n 0` leaves otter out: run in two
checkouts one after the other, that compares what a change costs each solution.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.config import load_config  # noqa: E402
from autograder.grade import grade_batch, grade_one, host_ready, make_job, starter  # noqa: E402
from autograder.submissions import Submission, discover  # noqa: E402

CANNED = ROOT / "tests" / "submissions"


def canned_sources(aid: str, only: list[str] | None = None) -> list[Path]:
    """The canned notebooks the copies cycle through, in order (or the `only` ones)."""
    sources = sorted(CANNED / aid / name for name in only) if only else sorted((CANNED / aid).glob("*.ipynb"))
    missing = [path.name for path in sources if not path.is_file()]
    if missing:
        raise SystemExit(f"error: {aid} has no canned {', '.join(missing)} in {CANNED / aid}; "
                         "name files of that folder with --only")
    return sources


def check_solution_copied(aid: str, n: int, only: list[str] | None = None) -> None:
    """Stop before timing anything if the N copies would hold no solution, whose seconds the
    overhead ratio needs."""
    names = [path.name for path in canned_sources(aid, only)]
    if "solution.ipynb" not in names:
        raise SystemExit(f"error: --only leaves out {aid}'s solution.ipynb, whose seconds the overhead ratio "
                         "needs; add it")
    needed = names.index("solution.ipynb") + 1
    if n < needed:
        raise SystemExit(f"error: the first {n} copies of {aid} hold no solution.ipynb (it is canned notebook "
                         f"{needed} of {len(names)}), whose seconds the overhead ratio needs: use --n {needed} or more")


def distinct_copies(aid: str, n: int, folder: Path, only: list[str] | None = None) -> list[Path]:
    """N notebooks cycling through the canned submissions (or the `only` ones), each made byte-distinct."""
    sources = canned_sources(aid, only)
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        notebook = json.loads(sources[i % len(sources)].read_text())
        notebook = copy.deepcopy(notebook)
        notebook["cells"].append({"cell_type": "markdown", "metadata": {}, "source": f"copy {i}"})
        path = folder / f"{i:03d}-{sources[i % len(sources)].name}"
        path.write_text(json.dumps(notebook))
        paths.append(path)
    return paths


def time_ours(aid: str, config, folder: Path, jobs: int, out: Path, cold: bool = False,
              fork_server: bool | None = None) -> tuple[float, list]:
    """Seconds to grade the folder, and the results; `cold`: every sandbox started from scratch
    (no fork server, no warm start)."""
    job = (make_job(aid, config, jobs=jobs, warm=False) if cold
           else make_job(aid, config, jobs=jobs, fork_server=fork_server))
    start = time.monotonic()
    results = grade_batch(job, discover([folder]), out, force=True, progress=False)
    return time.monotonic() - start, results


def score(result) -> tuple[str, float]:
    """A result's status and total: what must agree between two gradings of the same notebook."""
    return str(result.status), result.total


def scores(results: list) -> dict:
    return {r.submission: score(r) for r in results}


def time_otter(aid: str, paths: list[Path], work: Path) -> float:
    bundle = ROOT / "autograder" / "bundles" / f"{aid}-autograder.zip"
    start = time.monotonic()
    for i, path in enumerate(paths):
        out = work / f"otter-{i}"
        out.mkdir(parents=True)
        subprocess.run([sys.executable, "-m", "otter", "run", "-a", str(bundle), "-o", str(out), str(path)],
                       check=False, capture_output=True, cwd=out)
    return time.monotonic() - start


FLOOR_SCRIPT = """
import json, sys, time
cells = json.load(open(sys.argv[1]))
import torch  # the floor is measured warm: imports happen before the clock starts
import torch._dynamo  # torch.optim imports it at a notebook's first optimizer (the fork server has it)
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot  # the fork server has it too
start = time.monotonic()
namespace = {"__name__": "__main__"}
for source in cells:
    try:  # the grader runs every cell of a notebook whatever the one before raised: so does the floor
        exec(compile(source, "<cell>", "exec"), namespace)
    except Exception:
        pass
print(time.monotonic() - start)
"""


def floor_seconds(notebook_path: Path, work: Path, repeat: int = 1) -> float:
    """Seconds to run a notebook's code in a warm process, with no grading at all: the median of
    `repeat` runs, each in a new process (one run varied by a third from day to day here)."""
    notebook = json.loads(notebook_path.read_text())
    cells = []
    for cell in notebook["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code" or "otter" in source or "grader." in source:
            continue
        cells.append("\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%")))
    aid = notebook_path.parent.name
    cells_path = work / f"{aid}-cells.json"
    cells_path.write_text(json.dumps(cells))
    runs = []
    for _ in range(repeat):
        # A fresh working folder for each run, beside a datasets link, as the notebook expects.
        base = Path(tempfile.mkdtemp(prefix="floor-", dir=work))
        run_dir = base / "assignments" / aid
        run_dir.mkdir(parents=True)
        (base / "datasets").symlink_to(ROOT / "datasets")
        # torch's compiler makes its cache folder at import: in that folder too, not in /tmp.
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
               "TORCHINDUCTOR_CACHE_DIR": str(base / "torch")}
        done = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, str(cells_path)], capture_output=True,
                              text=True, cwd=run_dir, env=env)
        shutil.rmtree(base, ignore_errors=True)
        if done.returncode != 0:
            raise RuntimeError(f"floor run of {notebook_path.name} failed: {done.stderr[-500:]}")
        runs.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def interleaved(aid: str, config, work: Path, rounds: int, expected: tuple, fork_server: bool | None = None) -> dict:
    """The solution's overhead at --jobs 1, with the floor and the grader taking turns: a first graded
    copy that pays the slot's start (reported, not counted), then `rounds` pairs of one floor run and
    one graded copy in the same slot. This machine's speed drifts by a third over minutes, more than
    the overhead measured, so the two sides of the ratio are timed at the same moments. `expected`:
    the solution's (status, total) in the batch, which every copy here must get too."""
    solution = CANNED / aid / "solution.ipynb"
    copies = distinct_copies(aid, rounds + 1, work / "interleaved", only=["solution.ipynb"])
    floors, graded, statuses = [], [], set()
    # As grade_batch sets a batch up, one slot: the host prepared, the sandboxes started as `grade` would.
    with host_ready(make_job(aid, config, jobs=1, fork_server=fork_server), [work]) as job:
        slots = starter(job, rounds + 1)

        def grade(path: Path):
            if slots is not None:
                slots.starting()
            result = grade_one(job, Submission(path, path.name), 0, slots).result
            statuses.add(score(result))
            return result

        try:
            first = grade(copies[0])
            for path in copies[1:]:
                floors.append(floor_seconds(solution, work))
                graded.append(grade(path).seconds)
        finally:
            if slots is not None:
                slots.close()
            shutil.rmtree(work / "interleaved", ignore_errors=True)
    return {"interleaved_first_s": first.seconds, "interleaved_floors_s": floors, "interleaved_graded_s": graded,
            "interleaved_ratio": statistics.median(graded) / statistics.median(floors),
            "interleaved_same_score": statuses == {expected}}


def otter_sample(paths: list[Path], count: int) -> list[Path]:
    """`count` of the copies, spread evenly over them: the canned notebooks are sorted by name, so
    the first few would be a biased sample (a blank notebook costs both graders little)."""
    if count >= len(paths):
        return list(paths)
    return [paths[i * len(paths) // count] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="submissions per assignment (default 40)")
    parser.add_argument("--otter-n", type=int, default=10, help="how many of them otter runs (default 10)")
    parser.add_argument("--assignments", nargs="*", help="default: every assignment with canned submissions")
    parser.add_argument("--out", default=None, help="write the Markdown table here as well")
    parser.add_argument("--no-fork-server", dest="fork_server", action="store_false", default=None,
                        help="grade with `grade --no-fork-server` (no fork server; the warm start when a core "
                             "is left for it)")
    parser.add_argument("--cold", action="store_true",
                        help="also time both --jobs values with every sandbox started from scratch (no fork "
                             "server, no warm start)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="with --cold: time --jobs = cores K times each way, alternating which goes first, "
                             "and report the medians (this machine's run-to-run noise can exceed the effect)")
    parser.add_argument("--floor-repeat", type=int, default=3, metavar="K",
                        help="time each floor K times, in new processes, and take the median (default 3)")
    parser.add_argument("--only", nargs="*", metavar="FILE",
                        help="copy only these canned notebooks (e.g. solution.ipynb) instead of all of them")
    parser.add_argument("--interleave", type=int, default=0, metavar="K",
                        help="also measure the overhead ratio with K floor runs and K graded solution copies "
                             "taking turns in one slot (see above)")
    args = parser.parse_args()
    config = load_config()
    aids = args.assignments or [a for a in config.assignments if (CANNED / a).is_dir()]
    cores = os.cpu_count() or 1
    if args.repeat < 1 or (args.repeat > 1 and not args.cold):
        raise SystemExit("error: --repeat takes a count of at least 1, and repeats only with --cold")
    if args.floor_repeat < 1:
        raise SystemExit("error: --floor-repeat takes a count of at least 1")
    if args.interleave < 0 or args.interleave == 1:
        raise SystemExit("error: --interleave takes a count of at least 2 (a median of one run is that run)")
    for aid in aids:
        check_solution_copied(aid, args.n, args.only)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nn4e-bench-") as tmp:
        work = Path(tmp)
        for aid in aids:
            folder = work / aid / "subs"
            paths = distinct_copies(aid, args.n, folder, args.only)
            t1, results1 = time_ours(aid, config, folder, 1, work / aid / "ours-1", fork_server=args.fork_server)
            tn, results_n = time_ours(aid, config, folder, cores, work / aid / f"ours-{cores}",
                                      fork_server=args.fork_server)
            # Overhead is measured on the solution copies, like for like with the floor's solution run:
            # their median, since the batch's first submission also pays the slot's server start and
            # the grader's own first imports, once per batch (with --only, that is one copy in a few).
            solution_seconds = [r.seconds for r in results1 if r.submission.endswith("-solution.ipynb")]
            cold = {}
            if args.cold:
                t_cold, results_cold = time_ours(aid, config, folder, 1, work / aid / "ours-1-cold", cold=True)
                tn_cold, results_n_cold = time_ours(aid, config, folder, cores, work / aid / f"ours-{cores}-cold",
                                                    cold=True)
                cold_seconds = [r.seconds for r in results_cold if r.submission.endswith("-solution.ipynb")]
                cold = {"ours_1_cold_per_min": 60 * args.n / t_cold, "ours_n_cold_per_min": 60 * args.n / tn_cold,
                        "cold_solution_s": statistics.median(cold_seconds),
                        "scores_agree_cold": scores(results_cold) == scores(results1) == scores(results_n_cold)}
                if args.repeat > 1:
                    cold.update(repeated(aid, config, folder, args.n, cores, work / aid, args.repeat,
                                         args.fork_server, first=(tn, tn_cold), agree=scores(results1)))
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            sample = otter_sample(paths, min(args.otter_n, len(paths)))
            otter_n = len(sample)
            otter_per = time_otter(aid, sample, work / aid) / otter_n if otter_n else None
            floor = floor_seconds(CANNED / aid / "solution.ipynb", work, args.floor_repeat)
            bound = {}
            if otter_per:
                # What no grader can beat: otter's seconds over the code's own on the same notebooks,
                # times the cores (zero overhead and perfect scaling at --jobs = cores).
                names = [path.name.split("-", 1)[1] for path in sample]  # "007-idioms_1.ipynb": idioms_1.ipynb
                floors = {name: floor_seconds(CANNED / aid / name, work, args.floor_repeat) for name in set(names)}
                sample_floor = statistics.fmean(floors[name] for name in names)
                bound = {"sample_floor_s": sample_floor, "otter_s_per_sub": otter_per,
                         "zero_overhead_bound": cores * otter_per / sample_floor}
            rows.append({
                "assignment": aid, "n": args.n, "otter_n": otter_n,
                "ours_1_per_min": 60 * args.n / t1, "ours_n_per_min": 60 * args.n / tn,
                "otter_per_min": 60 / otter_per if otter_per else None,
                "ratio_vs_otter": (60 * args.n / tn) / (60 / otter_per) if otter_per else None,
                "overhead_ratio": statistics.median(solution_seconds) / floor, "floor_s": floor,
                "solution_s": statistics.median(solution_seconds), "ours_1_s_per_sub": t1 / args.n,
                "solution_runs_s": solution_seconds,
                "peak_worker_mb": peak_mb, **bound,
                "scores_agree": scores(results1) == scores(results_n) and cold.get("scores_agree_cold", True)
                and cold.get("scores_agree_repeated", True),
                **cold,
            })
            if cold:
                rows[-1]["overhead_ratio_cold"] = cold["cold_solution_s"] / floor
                if otter_per:
                    rows[-1]["ratio_vs_otter_cold"] = cold["ours_n_cold_per_min"] / (60 / otter_per)
            if args.interleave:
                expected = next(score(r) for r in results1 if r.submission.endswith("-solution.ipynb"))
                rows[-1].update(interleaved(aid, config, work / aid, args.interleave, expected, args.fork_server))
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(work / aid, ignore_errors=True)
    table = render(rows, cores, " ".join(sys.argv[1:]))
    print(table)
    if args.out:
        Path(args.out).write_text(table)


def repeated(aid: str, config, folder: Path, n: int, cores: int, work: Path, repeat: int,
             fork_server: bool | None, first: tuple[float, float], agree: dict) -> dict:
    """Time --jobs = cores `repeat` times each way in all (the first pair already timed), alternating
    which start goes first in each pair: per-run throughputs and their medians."""
    seconds = {"default": [first[0]], "cold": [first[1]]}
    same = True
    for round_ in range(1, repeat):
        for way in (("cold", "default") if round_ % 2 else ("default", "cold")):
            took, results = time_ours(aid, config, folder, cores, work / f"repeat-{round_}-{way}",
                                      cold=way == "cold", fork_server=fork_server)
            seconds[way].append(took)
            same = same and scores(results) == agree
    runs = {way: [60 * n / t for t in times] for way, times in seconds.items()}
    return {"ours_n_runs_per_min": runs["default"], "ours_n_cold_runs_per_min": runs["cold"],
            "ours_n_median_per_min": statistics.median(runs["default"]),
            "ours_n_cold_median_per_min": statistics.median(runs["cold"]), "scores_agree_repeated": same}


def render(rows: list[dict], cores: int, argv: str) -> str:
    lines = [
        "| assignment | N | ours --jobs 1 (subs/min) | ours --jobs %d (subs/min) | otter run (subs/min) | "
        "ratio vs otter (--jobs %d) | s/sub --jobs 1 | solution s | floor s | overhead ratio | "
        "peak MB/worker | scores agree |" % (cores, cores),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        otter = f"{r['otter_per_min']:.1f} (N={r['otter_n']})" if r["otter_n"] else "not run"
        ratio = f"{r['ratio_vs_otter']:.2f}x" if r["otter_n"] else "-"
        lines.append(f"| {r['assignment']} | {r['n']} | {r['ours_1_per_min']:.1f} | {r['ours_n_per_min']:.1f} | "
                     f"{otter} | {ratio} | "
                     f"{r['ours_1_s_per_sub']:.1f} | {r['solution_s']:.1f} | {r['floor_s']:.1f} | "
                     f"{r['overhead_ratio']:.2f} | {r['peak_worker_mb']:.0f} | {'yes' if r['scores_agree'] else 'NO'} |")
    if any("ours_1_cold_per_min" in r for r in rows):
        lines += ["", "Every sandbox started from scratch (no fork server, no warm start), in the same run (`--cold`):",
                  "", "| assignment | ours --jobs 1 cold (subs/min) | ours --jobs %d cold (subs/min) | "
                  "ratio vs otter cold (--jobs %d) | solution s cold | overhead ratio cold |" % (cores, cores),
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['assignment']} | {r['ours_1_cold_per_min']:.1f} | {r['ours_n_cold_per_min']:.1f} | "
                  + (f"{r['ratio_vs_otter_cold']:.2f}x" if "ratio_vs_otter_cold" in r else "-")
                  + f" | {r['cold_solution_s']:.1f} | {r['overhead_ratio_cold']:.2f} |"
                  for r in rows if "ours_1_cold_per_min" in r]
    if any("ours_n_runs_per_min" in r for r in rows):
        lines += ["", "At --jobs %d, each start timed K times, alternating which went first (`--repeat`):" % cores,
                  "", "| assignment | subs/min, each run | cold subs/min, each run | median | cold median | "
                  "median ratio vs otter | cold median ratio vs otter | scores agree |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
        for r in rows:
            if "ours_n_runs_per_min" not in r:
                continue
            otter = r["otter_per_min"]
            lines.append(f"| {r['assignment']} | {', '.join(f'{v:.1f}' for v in r['ours_n_runs_per_min'])} | "
                         f"{', '.join(f'{v:.1f}' for v in r['ours_n_cold_runs_per_min'])} | "
                         f"{r['ours_n_median_per_min']:.1f} | {r['ours_n_cold_median_per_min']:.1f} | "
                         + (f"{r['ours_n_median_per_min'] / otter:.2f}x | {r['ours_n_cold_median_per_min'] / otter:.2f}x"
                            if otter else "- | -")
                         + f" | {'yes' if r['scores_agree_repeated'] else 'NO'} |")
    if any("zero_overhead_bound" in r for r in rows):
        lines += ["", "The ratio a grader with no overhead at all would reach at --jobs %d (otter's seconds over "
                  "the code's own on otter's notebooks, times the cores):" % cores,
                  "", "| assignment | otter s/sub | floor s/sub, same notebooks | bound (--jobs %d) | "
                  "measured ratio | share of the bound |" % cores,
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['assignment']} | {r['otter_s_per_sub']:.1f} | {r['sample_floor_s']:.1f} | "
                  f"{r['zero_overhead_bound']:.2f}x | {r['ratio_vs_otter']:.2f}x | "
                  f"{r['ratio_vs_otter'] / r['zero_overhead_bound']:.0%} |" for r in rows if "zero_overhead_bound" in r]
    if any("interleaved_ratio" in r for r in rows):
        lines += ["", "The solution's overhead at --jobs 1, a floor run and a graded copy taking turns in one slot "
                  "(`--interleave`; the slot's first copy, which starts it, is not counted):",
                  "", "| assignment | floor s, each run | graded s, each run | floor median | graded median | "
                  "overhead ratio | first copy s | same score |",
                  "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
        lines += [f"| {r['assignment']} | {', '.join(f'{v:.1f}' for v in r['interleaved_floors_s'])} | "
                  f"{', '.join(f'{v:.1f}' for v in r['interleaved_graded_s'])} | "
                  f"{statistics.median(r['interleaved_floors_s']):.1f} | "
                  f"{statistics.median(r['interleaved_graded_s']):.1f} | {r['interleaved_ratio']:.2f} | "
                  f"{r['interleaved_first_s']:.1f} | {'yes' if r['interleaved_same_score'] else 'NO'} |"
                  for r in rows if "interleaved_ratio" in r]
    header = (f"Command: `python benchmarks/run.py {argv}`  \n"
              f"Machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}, "
              f"{platform.system()} {platform.release()}\n\n")
    return header + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
