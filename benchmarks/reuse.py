"""Time `grade --reuse` on a class of N submissions after a threshold change.

    python benchmarks/reuse.py [--n 300] [--assignment spiral]

Grades the canned submissions once (really, in the sandbox), then makes N byte-distinct copies of
them whose stored results and probe data are the originals' (re-keyed to the copies' SHA-256, as
if all N had been graded), changes a threshold, and times the `--reuse` regrade. Any attempt to
execute a notebook during it fails the run; the output counts the results not taken from stored data.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from autograder import grade as grade_module  # noqa: E402
from autograder.config import DEFAULT_CONFIG, GradingConfig  # noqa: E402
from autograder.grade import grade_batch, make_job  # noqa: E402
from autograder.results import Status, safe_name  # noqa: E402
from autograder.submissions import discover  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--assignment", default="spiral")
    args = parser.parse_args()
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config = GradingConfig.model_validate(raw)
    aid = args.assignment
    with tempfile.TemporaryDirectory(prefix="nn4e-reuse-") as tmp:
        tmp = Path(tmp)
        originals = discover([ROOT / "tests" / "submissions" / aid])
        graded = {r.submission: r for r in grade_batch(make_job(aid, config), originals, tmp / "seed", progress=False)}
        class_dir, out = tmp / "class", tmp / "out"
        class_dir.mkdir()
        (out / "results").mkdir(parents=True)
        (out / "probes").mkdir()
        for i in range(args.n):
            source = originals[i % len(originals)]
            notebook = json.loads(source.path.read_text())
            notebook["cells"].append({"cell_type": "markdown", "metadata": {}, "source": f"student {i}"})
            raw_bytes = json.dumps(notebook).encode()
            name = f"{i:04d}-{source.name}"
            (class_dir / name).write_bytes(raw_bytes)
            result = dataclasses.replace(graded[source.name], submission=name,
                                         sha256=hashlib.sha256(raw_bytes).hexdigest())
            (out / "results" / f"{safe_name(name)}.json").write_text(json.dumps(result.to_json()))
            probes = (tmp / "seed" / "probes" / f"{safe_name(source.name)}.json").read_bytes()
            (out / "probes" / f"{safe_name(name)}.json").write_bytes(probes)

        thresholds = dict(raw["assignments"][aid].get("thresholds", {}))
        first = sorted(thresholds)[0]
        thresholds[first] = thresholds[first] * (1.05 if first.startswith("min") else 0.95)
        raw["assignments"][aid]["thresholds"] = thresholds
        changed = GradingConfig.model_validate(raw)

        def no_execution(*_args, **_kwargs):
            raise AssertionError("a notebook was executed during --reuse")

        grade_module.grade_one = no_execution
        start = time.monotonic()
        results = grade_batch(make_job(aid, changed), discover([class_dir]), out, progress=False, reuse=True)
        seconds = time.monotonic() - start
    executed = [r.submission for r in results if not r.reused_probes and r.status != Status.INVALID]
    print(json.dumps({"assignment": aid, "n": args.n, "changed": f"{first} -> {thresholds[first]:g}",
                      "seconds": round(seconds, 2), "executed": len(executed)}))


if __name__ == "__main__":
    main()
