"""datasets/: checksums, the toy data as the source builds it, and MNIST offline."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from autograder import data


def test_checksums_match():
    """Check that every committed data file matches datasets/SHA256SUMS"""
    names = data.verify()
    assert "spiral.csv" in names and "mnist/train-images-idx3-ubyte.gz" in names


def test_toy_csvs_are_the_source_construction():
    """Check that spiral.csv, and.csv and xor.csv are exactly what the source code builds"""
    for name, text in data.toy_csv_files().items():
        assert (data.DATA_DIR / name).read_text() == text, name


def test_spiral_split_sizes():
    """Check the 316/67/67 split (the source's comment says 315)"""
    parts = data.load_spiral()
    assert {k: len(v[1]) for k, v in parts.items()} == {"train": 316, "val": 67, "test": 67}
    assert parts["train"][0].dtype == np.float32 and parts["train"][1].dtype == np.int64
    assert set(np.unique(parts["train"][1])) == {0, 1, 2}


@pytest.fixture()
def data_copy(tmp_path):
    target = tmp_path / "datasets"
    shutil.copytree(data.DATA_DIR, target, ignore=shutil.ignore_patterns("MNIST"))
    return target


def test_corrupt_file_is_named(data_copy):
    """Check that a corrupt file fails with its name and how to restore it"""
    with (data_copy / "xor.csv").open("a") as handle:
        handle.write("1.0,1.0,1.0\n")
    with pytest.raises(data.DataError, match=r"xor\.csv is corrupt.*git checkout"):
        data.verify(data_copy)


def test_missing_file_is_named(data_copy):
    """Check that a missing MNIST file fails with its name and how to restore it"""
    (data_copy / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte\.gz is missing"):
        data.prepare(data_copy)


def test_prepare_is_idempotent_and_torchvision_loads_offline(data_copy, monkeypatch):
    """Check that prepare unpacks MNIST once and torchvision's download=True line then needs no network"""
    raw = data.prepare(data_copy)
    first = {p.name: p.stat().st_mtime_ns for p in raw.iterdir()}
    data.prepare(data_copy)
    assert {p.name: p.stat().st_mtime_ns for p in raw.iterdir()} == first

    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("MNIST tried to use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    import torchvision

    train = torchvision.datasets.MNIST(root=str(data_copy), train=True, download=True)
    test = torchvision.datasets.MNIST(root=str(data_copy), train=False, download=True)
    assert len(train) == 60000 and len(test) == 10000
    assert train.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    pixels = train.data[:5000].float() / 255
    assert 0.10 < pixels.mean().item() < 0.16


@pytest.mark.parametrize("declared, expected", [
    (["spiral.csv"], {"spiral.csv"}),
    ([], set()),
    (["mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"],
     {"MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/train-labels-idx1-ubyte"}),
])
def test_student_code_sees_only_the_declared_data(tmp_path, declared, expected):
    """Check that the sandbox's copy of the data holds the assignment's declared files (MNIST
    unpacked where torchvision looks) and their checksums, and nothing else"""
    from autograder.isolation import public_copy

    copy = public_copy(data.DATA_DIR, tmp_path, declared)
    files = {p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()}
    assert files == expected | {"SHA256SUMS"}
    assert set(data.read_sums(copy)) == set(declared)
