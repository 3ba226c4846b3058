"""Time a batch through a Dask LocalCluster against the local pool, on the same machine.

    python benchmarks/cluster.py [--n 200] [--assignment autograd] [--threads 2]

Makes N byte-distinct copies of the assignment's canned submissions, then grades them twice, one
run after the other, with every sandbox layer on: in the local pool at `--jobs THREADS`, and with
`--cluster` on a LocalCluster of one worker process running THREADS tasks at once (the layout the
README recommends per machine), so both runs grade THREADS submissions at a time with the same
cores per sandbox. It prints one JSON line: both runs' seconds and throughput, the scheduling
overhead per submission ((cluster - local) / N; the cluster's start-up is timed apart), and
whether every status and score agree.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distributed import Client, LocalCluster  # noqa: E402

from autograder.cluster import ClusterEngine  # noqa: E402
from autograder.config import load_config  # noqa: E402
from autograder.grade import grade_batch, make_job  # noqa: E402
from autograder.submissions import discover  # noqa: E402
from run import distinct_copies, scores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--assignment", default="autograd")
    parser.add_argument("--threads", type=int, default=2, help="submissions graded at once in both runs")
    args = parser.parse_args()
    config, aid = load_config(), args.assignment
    with tempfile.TemporaryDirectory(prefix="nn4e-cluster-bench-") as tmp:
        tmp = Path(tmp)
        distinct_copies(aid, args.n, tmp / "copies")
        submissions = discover([tmp / "copies"])
        job = make_job(aid, config, jobs=args.threads, warm=False)  # cold, as a worker's tasks start

        start = time.monotonic()
        local = grade_batch(job, submissions, tmp / "local", force=True, progress=False)
        local_s = time.monotonic() - start

        start = time.monotonic()
        with LocalCluster(n_workers=1, threads_per_worker=args.threads, processes=True, dashboard_address=None,
                          local_directory=str(tmp / "dask")) as cluster, \
                Client(cluster.scheduler_address, set_as_default=False) as client:
            engine = ClusterEngine(client, cluster.scheduler_address)
            startup_s = time.monotonic() - start
            start = time.monotonic()
            remote = grade_batch(make_job(aid, config, jobs=2 * args.threads), submissions, tmp / "cluster",
                                 force=True, progress=False, engine=engine)
            cluster_s = time.monotonic() - start
    print(json.dumps({
        "assignment": aid, "n": args.n, "threads": args.threads,
        "local_s": round(local_s, 1), "cluster_s": round(cluster_s, 1), "cluster_startup_s": round(startup_s, 1),
        "local_subs_per_min": round(60 * args.n / local_s, 1), "cluster_subs_per_min": round(60 * args.n / cluster_s, 1),
        "overhead_s_per_submission": round((cluster_s - local_s) / args.n, 3),
        "scores_agree": scores(local) == scores(remote),
    }))


if __name__ == "__main__":
    main()
