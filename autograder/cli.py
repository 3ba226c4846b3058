"""`python -m autograder <verb>`: build, grade, collect, manual, report, release, validate, calibrate,
prepare-data."""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from .config import DEFAULT_CONFIG, REPO_ROOT, ConfigError, load_config
from .answers import AnswersError
from .manual import ManualGradesError
from .results import ResultFileError


def _config(args) -> "GradingConfig":  # noqa: F821 - imported lazily for a fast --help
    return load_config(args.config)


def cmd_validate(args) -> int:
    config = _config(args)
    problems = []
    for aid, assignment in config.assignments.items():
        master = Path(DEFAULT_CONFIG).parent / assignment.notebook
        if not master.exists():
            problems.append(f"assignments.{aid}.notebook: {assignment.notebook} does not exist")
        try:  # device: cuda needs a GPU on this machine
            from .sandbox import gpu_policy

            gpu_policy(0, config.device_for(aid))
        except ConfigError as exc:
            problems.append(f"assignments.{aid}: {exc}")
        checks = master.parent / "verdicts.py"
        if not checks.exists():
            problems.append(f"assignments.{aid}: hidden checks {checks.relative_to(master.parents[2])} are missing "
                            "(see docs/authoring.md)")
    if problems:
        print(f"{args.config}: " + "\n  - ".join(["problems:", *problems]), file=sys.stderr)
        return 1
    print(f"{args.config}: OK ({len(config.assignments)} assignments: {', '.join(config.assignments)})")
    return 0


def cmd_prepare_data(args) -> int:
    from .data import prepare

    raw = prepare()
    print(f"data verified; MNIST unpacked in {raw}")
    return 0


def _self_check(aid: str, config, solution: Path) -> None:
    """Grade the built solution with the trusted grader: it must earn every point."""
    from .build import BuildError
    from .grade import grade_one, make_job
    from .isolation import prepared_host
    from .results import Status
    from .submissions import Submission

    job = make_job(aid, config, jobs=1)
    # The solution is trusted: it may run unisolated, but sees the data as student code would.
    with prepared_host(job.layers, REPO_ROOT, job.data_dir, [], allow_unisolated=True) as data_dir:
        result = grade_one(dataclasses.replace(job, data_dir=data_dir), Submission(solution, f"{aid} solution")).result
    if result.status != Status.OK or not result.auto_complete:
        failing = [f"{q}: {row.feedback}" for q, row in result.questions.items() if not row.manual and not row.full]
        raise BuildError(f"{aid}: the solution does not pass its hidden checks "
                         f"({result.total:g}/{result.max_total:g}, status {result.status} "
                         f"{result.message}):\n  " + "\n  ".join(failing))
    print(f"{aid}: solution scores every auto-graded point ({result.total:g}) in the sandbox "
          f"({result.seconds:.1f} s, layers: {', '.join(result.sandbox)})")


def cmd_build(args) -> int:
    from .build import BuildError, build_assignment
    from .data import prepare

    config = _config(args)
    prepare()
    ids = args.ids or list(config.assignments)
    for aid in ids:
        config.assignment(aid)
    failed = []
    for aid in ids:
        try:
            paths = build_assignment(aid, config)
            from .gradescope import build_gradescope_zip

            gradescope = build_gradescope_zip(aid, config, Path(DEFAULT_CONFIG).parent / "build" / "gradescope")
            print(f"{aid}: wrote {gradescope.relative_to(Path(DEFAULT_CONFIG).parent)} (upload it to Gradescope)")
            if not args.no_verify:
                _self_check(aid, config, paths["solution"])
        except BuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed.append(aid)
    if failed:
        print(f"build failed for: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_grade(args) -> int:
    from .data import prepare
    from .lms import identify, is_bulk_zip, unpack_bulk_zip, unparsed_canvas_names
    from .submissions import discover, in_shard

    if args.fork_server and args.no_warm_start:
        print("error: --fork-server and --no-warm-start contradict each other: give one of them", file=sys.stderr)
        return 2
    config = _config(args)
    config.assignment(args.id)
    args.out = args.out or str(Path("results") / args.id)  # one folder per assignment: never mixed
    from .build import stale_build

    for problem in stale_build(args.id, config):  # a changed grading.yml the release does not show
        print(f"warning: {args.id}: {problem}", file=sys.stderr)
    prepare()
    roots = []
    for given in map(Path, args.submissions):
        # A Canvas or Gradescope bulk zip is unpacked next to the results, then read as a folder.
        # Each shard unpacks its own copy: shards run at once, and must not write the same files.
        into = Path(args.out) / "unpacked" / (f"shard-{args.shard[0]}" if args.shard else "")
        roots.append(unpack_bulk_zip(given, into) if given.suffix == ".zip"
                     and given.is_file() and is_bulk_zip(given) else given)
    submissions, choices = identify(discover(roots), roots)
    if args.shard:
        total = len(submissions)
        submissions = [s for s in submissions if in_shard(s.name, *args.shard)]
        print(f"shard {args.shard[0]}/{args.shard[1]}: {len(submissions)} of {total} submission(s)", file=sys.stderr)
    for name in unparsed_canvas_names(submissions):
        print(f"warning: {name} looks like a Canvas download, but its name does not read as "
              "lastfirst[_LATE]_<user id>_<submission id>_<file>: it is graded without the student's "
              "Canvas id and will not reach canvas_gradebook.csv; rename it and grade again", file=sys.stderr)
    for choice in choices:
        print(f"{choice.student}: graded the latest, {choice.kept}; not graded: {', '.join(choice.superseded)}",
              file=sys.stderr)
    if choices:
        from .results import atomic_write

        lines = ["student,graded,not_graded"] + [f'"{c.student}","{c.kept}","{" ".join(c.superseded)}"' for c in choices]
        atomic_write(Path(args.out) / "resubmissions.csv", "\n".join(lines) + "\n")
    if not submissions:
        if args.shard:  # a small batch split many ways leaves some shards empty: nothing to do
            print("this shard has no submissions", file=sys.stderr)
            return 0
        print("error: no submissions found in " + ", ".join(args.submissions), file=sys.stderr)
        return 2
    engine = None
    if args.cluster:
        from .cluster import ClusterError, ClusterEngine, connect

        try:
            engine = ClusterEngine(connect(args.cluster), args.cluster, use_bwrap=not args.no_bwrap)
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        return _grade_submissions(args, config, submissions, engine)
    finally:
        if engine is not None:
            engine.close()


def _grade_submissions(args, config, submissions, engine) -> int:
    """Grade the found submissions here or on the cluster behind `engine`; print the outcome."""
    from .grade import DiskFull, GraderBroken, grade_batch, make_job
    from .isolation import Unisolated
    from .results import Status
    from .sandbox import device_note

    faults_of_setup: tuple = (Unisolated, DiskFull, GraderBroken)
    if engine is not None:
        from .cluster import ClusterError

        faults_of_setup += (ClusterError,)
        # One queued task per worker thread besides the running one: no worker waits for this client.
        jobs = args.jobs or max(1, 2 * engine.threads())
        job = make_job(args.id, config, jobs=jobs, use_bwrap=not args.no_bwrap, allow_unisolated=args.allow_unisolated)
        print(f"grading {len(submissions)} submission(s) of {args.id} on {engine.describe()}, "
              f"{job.jobs} at a time; each worker uses its own sandbox", file=sys.stderr)
    else:
        job = make_job(args.id, config, jobs=args.jobs, use_bwrap=not args.no_bwrap,
                       allow_unisolated=args.allow_unisolated, warm=False if args.no_warm_start else None,
                       fork_server=args.fork_server)  # warm=False alone already means no fork server
        print(f"grading {len(submissions)} submission(s) of {args.id} with {job.jobs} job(s)"
              + (", each slot's sandboxes forked from a server that imported torch once" if job.fork_server else "")
              + (", each slot's next sandbox started ahead" if job.warm else "") + "; "
              f"sandbox layers: {', '.join(job.layers.names)}"
              + (f" (not active: {'; '.join(job.layers.off)})" if job.layers.off else ""), file=sys.stderr)
        # `device: cuda` on a machine without a GPU raises ConfigError here, before anything is graded.
        print(device_note(config.device_for(args.id), job.jobs), file=sys.stderr)
    out = Path(args.out)
    try:
        results = grade_batch(job, submissions, out, force=args.force, reuse=args.reuse, summary=not args.shard,
                              engine=engine)
    except faults_of_setup as exc:  # nothing unsafe ran; finished results are kept
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, DiskFull) else 2
    if engine is None and not job.layers.isolated:
        print("warning: graded WITHOUT filesystem isolation (--allow-unisolated); every result records it",
              file=sys.stderr)
    summary = _status_summary(results)
    faults = [r for r in results if r.status == Status.GRADER_ERROR]
    if args.shard:
        print(f"wrote {len(results) - len(faults)} result file(s) in {out / 'results'} ({summary}); when every "
              f"shard is done, run `python -m autograder collect {out}` for grades.csv")
    else:
        print(f"wrote {out / 'grades.csv'} and {len(results) - len(faults)} result file(s) in {out / 'results'} "
              f"({summary})")
    if faults:
        print(f"error: the grader failed on {len(faults)} submission(s), through no fault of theirs; they have no "
              f"grade yet (listed in grades.csv as {Status.GRADER_ERROR}). Run the same command again to retry "
              "them:\n  " + "\n  ".join(f"{r.submission}: {r.message}" for r in faults[:10]), file=sys.stderr)
    return 0 if len(results) == len(submissions) and not faults else 1


def _status_summary(results) -> str:
    """"2 invalid, 40 ok": how many results ended in each status."""
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def cmd_collect(args) -> int:
    from .manual import collect

    path, results = collect(Path(args.out), _config(args))
    summary = _status_summary(results)
    print(f"wrote {path} from {len(results)} result file(s) ({summary})")
    return 0


def cmd_report(args) -> int:
    from .report import build_report, load_results

    config = _config(args)
    path = build_report(config, load_results([Path(d) for d in args.results], config), Path(args.out))
    print(f"wrote {path} and gradebook.csv, canvas_gradebook.csv, item_analysis.csv in {path.parent}")
    return 0


def cmd_manual(args) -> int:
    from .manual import prepare

    out = Path(args.out or Path("results") / args.id)
    for item in prepare(out, args.id, _config(args), show_names=args.names):
        print(f"{item.qid}: {item.graded} of {item.submissions} graded; open {item.page} "
              f"and save its CSV as {item.sheet} (or fill that file in)")
    print(f"then run `python -m autograder report {out}` to merge the points")
    return 0


def cmd_gradescope_run(args) -> int:
    from .grade import GraderBroken
    from .gradescope import run

    try:
        payload = run(args.id, _config(args), Path(args.submission), Path(args.results))
    except GraderBroken as exc:  # no results.json: Gradescope shows a failed run, never a 0
        print(f"error: the grader failed, not the submission: {exc}", file=sys.stderr)
        return 1
    print(f"score {payload['score']:g}; wrote {args.results}")
    return 0


def cmd_release(args) -> int:
    from .release import release

    folder, archive = release(_config(args), Path(args.out), args.ids or None)
    print(f"wrote the student release to {folder} and {archive}")
    return 0


def cmd_calibrate(args) -> int:
    from .calibration import CalibrationError, run, table

    config = _config(args)
    try:
        values = run(args.id, config, args.seeds, args.first_seed)
    except CalibrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(values))
    return 0


def _shard(text: str) -> tuple[int, int]:
    from .submissions import parse_shard

    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m autograder",
                                  description="Build and grade the Neural Networks for Engineers assignments.")
    top.add_argument("--config", default=str(DEFAULT_CONFIG), help="grading.yml to use (default: %(default)s)")
    verbs = top.add_subparsers(dest="verb", required=True)

    build = verbs.add_parser("build", help="build student notebooks and otter bundles from solutions/")
    build.add_argument("ids", nargs="*", help="assignment ids (default: all in grading.yml)")
    build.add_argument("--no-verify", action="store_true",
                       help="skip grading the solution with the sandboxed grader after the build")
    build.set_defaults(func=cmd_build)

    grade = verbs.add_parser("grade", help="grade submissions into a CSV and one JSON file each")
    grade.add_argument("id", help="assignment id, e.g. spiral")
    grade.add_argument("submissions", nargs="+", help=".ipynb files, otter export .zip files, or folders")
    grade.add_argument("--out", default=None, help="output folder (default: results/<id>)")
    grade.add_argument("--jobs", type=int, default=None, help="submissions graded in parallel (default: cores)")
    grade.add_argument("--fork-server", action=argparse.BooleanOptionalAction, default=None,
                       help="fork each slot's sandboxes from one that imported torch once (the default); "
                            "--no-fork-server starts each from scratch, the next one ahead while a slot "
                            "grades when there are fewer jobs than cores (a warm start)")
    grade.add_argument("--no-warm-start", action="store_true",
                       help="start every sandbox from scratch only when its submission's turn comes: no fork "
                            "server, no warm start")
    grade.add_argument("--force", action="store_true", help="regrade even unchanged, already graded submissions")
    grade.add_argument("--reuse", action="store_true",
                       help="recompute verdicts from stored probe data (after a threshold or points change) "
                            "without executing notebooks; submissions that need new data are executed")
    grade.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                       help="grade only shard I of N (e.g. one task of a Slurm job array); then run `collect`")
    grade.add_argument("--cluster", default=None, metavar="ADDRESS",
                       help="grade on the workers of the Dask scheduler at ADDRESS (e.g. tcp://head:8786); "
                            "results are written here, as without it")
    grade.add_argument("--no-bwrap", action="store_true", help="do not use bubblewrap even if installed")
    grade.add_argument("--allow-unisolated", action="store_true",
                       help="grade even when no sandbox layer isolates the filesystem (unsafe; every result "
                            "and the report record it)")
    grade.set_defaults(func=cmd_grade)

    col = verbs.add_parser("collect", help="rebuild grades.csv from the result files in a folder (after shards)")
    col.add_argument("out", help="the folder the shards wrote (`grade --out`)")
    col.set_defaults(func=cmd_collect)

    validate = verbs.add_parser("validate", help="check grading.yml")
    validate.set_defaults(func=cmd_validate)

    rep = verbs.add_parser("report", help="HTML report with plots, and gradebook/Canvas/item-analysis CSVs")
    rep.add_argument("results", nargs="+", help="folders written by `grade --out`")
    rep.add_argument("--out", default="report", help="output folder (default: %(default)s)")
    rep.set_defaults(func=cmd_report)

    man = verbs.add_parser("manual", help="write a grading page and CSV template per hand-graded question")
    man.add_argument("id", help="assignment id, e.g. autograd")
    man.add_argument("--out", default=None, help="the results folder `grade` wrote (default: results/<id>)")
    man.add_argument("--names", action="store_true",
                     help="show students' names beside the anonymous codes (default: codes only)")
    man.set_defaults(func=cmd_manual)

    gs = verbs.add_parser("gradescope-run", help="inside Gradescope: grade one submission into results.json")
    gs.add_argument("id")
    gs.add_argument("--submission", default="/autograder/submission")
    gs.add_argument("--results", default="/autograder/results/results.json")
    gs.set_defaults(func=cmd_gradescope_run)

    rel = verbs.add_parser("release", help="write the folder and zip to hand to students")
    rel.add_argument("ids", nargs="*", help="assignment ids (default: all in grading.yml)")
    rel.add_argument("--out", default="release", help="output folder; the zip is <out>.zip (default: %(default)s)")
    rel.set_defaults(func=cmd_release)

    cal = verbs.add_parser("calibrate", help="measure an assignment's thresholds and tolerances over seeds")
    cal.add_argument("id", help="assignment id, e.g. spiral")
    cal.add_argument("--seeds", type=int, default=None, help="how many seeds (default: the assignment's own)")
    cal.add_argument("--first-seed", type=int, default=0, help="the first seed (default: %(default)s)")
    cal.set_defaults(func=cmd_calibrate)

    prep = verbs.add_parser("prepare-data", help="verify datasets/ and unpack MNIST for offline use")
    prep.set_defaults(func=cmd_prepare_data)
    return top


def _private_torch_cache() -> None:
    """Creating a torch optimizer makes torch's compiler cache folder, by default /tmp/torchinductor_<user>;
    keep it in a folder of this run, removed at exit, so grading leaves nothing behind in /tmp."""
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="nn4e-torch-cache-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
        atexit.register(shutil.rmtree, folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _private_torch_cache()
    # Ctrl-C: let the sandboxes' context managers kill their process groups on the way out.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ResultFileError, ManualGradesError, AnswersError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished results are saved; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - data errors etc. get one clear line
        from .data import DataError

        if isinstance(exc, DataError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
