"""The course's data sets: toy data built exactly as the source material builds it, and MNIST.

Everything lives in `datasets/` with its SHA-256 in `datasets/SHA256SUMS`. `prepare()` is
idempotent: it verifies the checksums and unpacks MNIST's IDX files into `datasets/MNIST/raw/`,
where `torchvision.datasets.MNIST(root="../../datasets", download=True)` finds them offline.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import shutil
from pathlib import Path

import numpy as np

from .config import REPO_ROOT

DATA_DIR = REPO_ROOT / "datasets"
SUMS_FILE = "SHA256SUMS"
TOY_FILES = ("spiral.csv", "and.csv", "xor.csv")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
RESTORE_HINT = "restore it with `git checkout -- datasets/` (the files are committed)"


class DataError(Exception):
    """A data file is missing or corrupt; the message names it and how to restore it."""


def spiral_arrays(seed: int = 42, n_per_class: int = 150, n_classes: int = 3):
    """Session 9's spiral, shuffled and split 70/15/15 exactly as the source code does.

    Returns (X, y, split): X (N, 2) float64, y (N,) int64, split (N,) of "train"/"val"/"test".
    The source keeps X as (2, N) until it converts to tensors; rows here are its columns.
    """
    np.random.seed(seed)
    n = n_per_class * n_classes
    X = np.zeros((2, n))
    y = np.zeros(n, dtype=int)
    for k in range(n_classes):
        s, e = k * n_per_class, (k + 1) * n_per_class
        r = np.linspace(0.2, 1.0, n_per_class)
        theta = np.linspace(k * 4.0, (k + 1) * 4.0, n_per_class) + np.random.randn(n_per_class) * 0.25
        X[0, s:e] = r * np.cos(theta)
        X[1, s:e] = r * np.sin(theta)
        y[s:e] = k
    idx = np.random.permutation(n)
    X, y = X[:, idx], y[idx]
    n_test = int(n * 0.15)
    n_val = int(n * 0.15)
    n_train = n - n_val - n_test  # 316, not the 315 the source's comment expects
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test)
    return X.T.copy(), y.astype(np.int64), split


def gate_arrays(gate: str):
    """The AND and XOR truth tables as the source writes them: X (4, 2) float32, y (4, 1) float32."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    table = {"and": [0, 0, 0, 1], "xor": [0, 1, 1, 0]}[gate]
    return X, np.array(table, dtype=np.float32).reshape(4, 1)


def _csv(header: list[str], rows) -> str:
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for row in rows:
        out.write(",".join(repr(v) if isinstance(v, float) else str(v) for v in row) + "\n")
    return out.getvalue()


def toy_csv_files() -> dict[str, str]:
    """The committed toy CSVs, regenerated (float repr round-trips exactly)."""
    X, y, split = spiral_arrays()
    files = {"spiral.csv": _csv(["split", "x1", "x2", "label"],
                                ((s, float(a), float(b), int(c)) for (a, b), c, s in zip(X, y, split)))}
    for gate in ("and", "xor"):
        Xg, yg = gate_arrays(gate)
        files[f"{gate}.csv"] = _csv(["x1", "x2", "label"], ((float(a), float(b), float(c[0]))
                                                           for (a, b), c in zip(Xg, yg)))
    return files


def load_spiral(data_dir: Path = DATA_DIR) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train"|"val"|"test": (X (n, 2) float32, y (n,) int64)} from the verified CSV."""
    verify(data_dir, ["spiral.csv"])
    raw = np.genfromtxt(data_dir / "spiral.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    parts = {}
    for name in ("train", "val", "test"):
        rows = raw[raw["split"] == name]
        X = np.stack([rows["x1"], rows["x2"]], axis=1).astype(np.float32)
        parts[name] = (X, rows["label"].astype(np.int64))
    return parts


def read_sums(data_dir: Path = DATA_DIR) -> dict[str, str]:
    sums_path = data_dir / SUMS_FILE
    if not sums_path.exists():
        raise DataError(f"{sums_path} is missing; {RESTORE_HINT}")
    sums = {}
    for line in sums_path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(data_dir: Path = DATA_DIR, names: list[str] | None = None) -> list[str]:
    """Check files against SHA256SUMS; raise DataError naming the first bad file."""
    sums = read_sums(data_dir)
    for name in names or sorted(sums):
        if name not in sums:
            raise DataError(f"{data_dir / name} has no entry in {SUMS_FILE}; {RESTORE_HINT}")
        path = data_dir / name
        if not path.exists():
            raise DataError(f"{path} is missing; {RESTORE_HINT}")
        if sha256(path) != sums[name]:
            raise DataError(f"{path} is corrupt (its SHA-256 does not match {SUMS_FILE}); {RESTORE_HINT}")
    return names or sorted(sums)


def prepare(data_dir: Path = DATA_DIR) -> Path:
    """Verify everything, then unpack MNIST to `MNIST/raw/` (skipped when already current)."""
    verify(data_dir)
    raw_dir = data_dir / "MNIST" / "raw"
    if f"mnist/{MNIST_FILES[0]}.gz" not in read_sums(data_dir):
        return raw_dir  # a data folder without MNIST (an autograder zip for another assignment)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        source = data_dir / "mnist" / f"{name}.gz"
        target = raw_dir / name
        stamp = raw_dir / f".{name}.sha256"
        expected = read_sums(data_dir)[f"mnist/{name}.gz"]
        if target.exists() and stamp.exists() and stamp.read_text() == expected:
            continue
        tmp = target.with_suffix(".tmp")
        with gzip.open(source, "rb") as src, tmp.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(target)
        stamp.write_text(expected)
    return raw_dir


def release_files(declared: list[str], data_dir: Path = DATA_DIR) -> dict[str, Path]:
    """{path in a release's datasets/: file to copy} for data files declared in grading.yml.

    Verified first. MNIST's `.gz` files are given unpacked in `MNIST/raw/`, where
    `torchvision.datasets.MNIST(root=..., download=True)` finds them offline.
    """
    verify(data_dir, sorted(set(declared)))
    files = {}
    for name in dict.fromkeys(declared):
        if name.startswith("mnist/") and name.endswith(".gz"):
            raw = prepare(data_dir)
            files[f"MNIST/raw/{Path(name).stem}"] = raw / Path(name).stem
        else:
            files[name] = data_dir / name
    return files


def declared_sums(declared: list[str], data_dir: Path = DATA_DIR) -> str:
    """The SHA256SUMS lines of the declared files: what a fingerprint of the data hashes."""
    sums = read_sums(data_dir) if (data_dir / SUMS_FILE).exists() else {}
    return "\n".join(f"{sums.get(name, 'missing')}  {name}" for name in sorted(set(declared)))
