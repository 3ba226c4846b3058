"""Plain-data encoding between the sandboxed student process and the grader.

Only JSON and `.npy` arrays (read with `allow_pickle=False`) ever cross the boundary, so the
grader never unpickles anything a submission produced. This module is standalone (standard
library and numpy only) because a copy of it runs inside the sandbox, next to `runner.py`.
"""
from __future__ import annotations

import base64
import io
import json
import math
from dataclasses import dataclass

import numpy as np

MAX_DEPTH = 8
MAX_ITEMS = 100_000
ARRAY_KEY = "__array__"


@dataclass(frozen=True)
class Array:
    """An array exported by a probe: values plus what the student's object said about itself."""

    values: np.ndarray
    kind: str  # "tensor" or "ndarray"
    dtype: str  # e.g. "torch.int64" or "float32"
    device: str = "cpu"
    requires_grad: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)


def _npy_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, order="C"), allow_pickle=False)  # keeps 0-d arrays 0-d
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encode(value, depth: int = 0):
    """Turn tensors, arrays, numbers, strings and containers of them into JSON-ready data."""
    if depth > MAX_DEPTH:
        raise ValueError("data nested too deeply to export")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, np.generic):
        return encode(value.item(), depth)
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ValueError("object arrays cannot be exported")
        return {ARRAY_KEY: _npy_b64(value), "kind": "ndarray", "dtype": str(value.dtype)}
    torch = _torch_if_loaded()
    if torch is not None and isinstance(value, torch.Tensor):
        device = str(value.device)
        meta = {"kind": "tensor", "dtype": str(value.dtype), "device": device,
                "requires_grad": bool(value.requires_grad)}
        if value.device.type == "meta":
            return {ARRAY_KEY: None, "shape": list(value.shape), **meta}
        data = value.detach().cpu()
        if data.dtype == torch.bfloat16:
            data = data.float()
        return {ARRAY_KEY: _npy_b64(data.numpy()), **meta}
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS:
            raise ValueError("dict too large to export")
        return {"__dict__": [[str(k), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_ITEMS:
            raise ValueError("list too large to export")
        return [encode(v, depth + 1) for v in value]
    return {"__unsupported__": type(value).__name__}


def _torch_if_loaded():
    import sys

    return sys.modules.get("torch")


class WireError(ValueError):
    """Data from the sandbox does not follow the wire format."""


def decode(data, depth: int = 0):
    """Inverse of `encode`, for untrusted input: arrays become `Array`, anything odd raises WireError."""
    if depth > MAX_DEPTH + 1:
        raise WireError("nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [decode(v, depth + 1) for v in data]
    if not isinstance(data, dict):
        raise WireError(f"unexpected {type(data).__name__}")
    if "__float__" in data:
        text = data["__float__"]
        if text not in ("nan", "inf", "-inf"):
            raise WireError("bad float")
        return float(text)
    if "__dict__" in data:
        pairs = data["__dict__"]
        if not isinstance(pairs, list):
            raise WireError("bad dict")
        out = {}
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise WireError("bad dict item")
            out[pair[0]] = decode(pair[1], depth + 1)
        return out
    if "__unsupported__" in data:
        return Unsupported(str(data["__unsupported__"]))
    if ARRAY_KEY in data:
        return _decode_array(data)
    raise WireError("unknown object")


@dataclass(frozen=True)
class Unsupported:
    """A value a probe could not export; `type_name` is what the student's object called itself."""

    type_name: str


def _decode_array(data: dict) -> Array:
    kind, dtype = str(data.get("kind")), str(data.get("dtype"))
    device = str(data.get("device", "cpu"))
    blob = data[ARRAY_KEY]
    if blob is None:  # a meta tensor has a shape but no values
        shape = data.get("shape")
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise WireError("bad shape")
        values = np.empty(shape, dtype=np.float32)
    else:
        if not isinstance(blob, str):
            raise WireError("bad array")
        try:
            values = np.load(io.BytesIO(base64.b64decode(blob, validate=True)), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the sender's fault
            raise WireError(f"bad array data: {exc}") from None
    return Array(values, kind, dtype, device, bool(data.get("requires_grad", False)))


def dumps(message: dict) -> bytes:
    """One protocol message as a single JSON line."""
    return (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")


def loads(line: bytes) -> dict:
    message = json.loads(line.decode("utf-8"))
    if not isinstance(message, dict):
        raise WireError("message is not an object")
    return message
