"""`grade --shard I/N` splits a batch for clusters without Dask (e.g. Slurm job arrays); `collect`
rebuilds grades.csv from the result files the shards wrote."""
from __future__ import annotations

import csv

import pytest

from autograder.cli import main
from autograder.submissions import in_shard, parse_shard

NAMES = [f"student{i:03d}.ipynb" for i in range(300)]


def test_shards_partition_the_batch_and_keep_their_members():
    """Check that N shards cover every submission exactly once, in shares of about 1/N"""
    for count in (1, 2, 7):
        owners = [[i for i in range(1, count + 1) if in_shard(name, i, count)] for name in NAMES]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(o == [i] for o in owners) for i in range(1, count + 1)]
        assert min(sizes) > 0.5 * len(NAMES) / count, sizes  # roughly even


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_refused(text, capsys):
    """Check that --shard needs I/N with 1 <= I <= N"""
    with pytest.raises(SystemExit) as stop:
        main(["grade", "spiral", "x", "--shard", text])
    assert stop.value.code == 2 and "--shard" in capsys.readouterr().err
    with pytest.raises(ValueError, match="I/N|between 1 and N"):
        parse_shard(text)


def test_shards_then_collect_give_the_whole_batch(tmp_path, capsys):
    """Check two shards into one folder, then collect: every submission once in grades.csv"""
    folder = tmp_path / "subs"
    folder.mkdir()
    names = [f"s{i}.ipynb" for i in range(6)]
    for name in names:
        (folder / name).write_text("not a notebook")  # graded as invalid: no sandbox needed
    out = tmp_path / "out"
    for index in (1, 2):
        assert main(["grade", "spiral", str(folder), "--out", str(out), "--shard", f"{index}/2", "--jobs", "1"]) == 0
        assert not (out / "grades.csv").exists(), "a shard leaves grades.csv to collect"
    assert "run `python -m autograder collect" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "results").glob("*.json")) == sorted(f"{n}.json" for n in names)
    assert main(["collect", str(out)]) == 0
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert sorted(r["submission"] for r in rows) == names and {r["status"] for r in rows} == {"invalid"}
