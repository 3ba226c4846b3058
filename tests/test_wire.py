"""The plain-data channel: round trips, and hostile data never unpickled."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch

from autograder import wire


def test_round_trip_of_tensors_arrays_and_containers():
    """Check that tensors keep values, dtype and device, and containers keep their shape"""
    value = {"w": torch.arange(6, dtype=torch.int64).reshape(2, 3), "a": np.eye(2, dtype=np.float32),
             "xs": [1, 2.5, float("nan"), None, "s", True]}
    decoded = wire.decode(wire.loads(wire.dumps({"v": wire.encode(value)}))["v"])
    assert decoded["w"].kind == "tensor" and decoded["w"].dtype == "torch.int64" and decoded["w"].shape == (2, 3)
    assert np.array_equal(decoded["w"].values, np.arange(6).reshape(2, 3))
    assert decoded["a"].kind == "ndarray" and decoded["a"].dtype == "float32"
    assert decoded["xs"][:2] == [1, 2.5] and np.isnan(decoded["xs"][2]) and decoded["xs"][3:] == [None, "s", True]


def test_scalars_keep_their_shape():
    """Check that 0-d tensors and arrays stay 0-d"""
    assert wire.decode(wire.encode(torch.tensor(2.5))).shape == ()
    assert wire.decode(wire.encode(np.float32(1.0) * np.ones(()))).shape == ()


def test_meta_tensors_keep_shape_and_device():
    """Check that a meta tensor exports its device and shape without values"""
    decoded = wire.decode(wire.encode(torch.empty(3, 4, device="meta")))
    assert decoded.device == "meta" and decoded.shape == (3, 4)


def test_object_arrays_are_refused_both_ways():
    """Check that object (pickled) arrays can neither be exported nor decoded"""
    with pytest.raises(ValueError):
        wire.encode(np.array([object()], dtype=object))
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    forged = {wire.ARRAY_KEY: base64.b64encode(buffer.getvalue()).decode(), "kind": "tensor", "dtype": "x"}
    with pytest.raises(wire.WireError):
        wire.decode(forged)


def test_unknown_objects_are_labelled_not_trusted():
    """Check that arbitrary objects export only their type name"""

    class AlwaysEqual:
        def __eq__(self, other):
            return True

    decoded = wire.decode(wire.encode(AlwaysEqual()))
    assert isinstance(decoded, wire.Unsupported) and decoded.type_name == "AlwaysEqual"
    with pytest.raises(wire.WireError):
        wire.decode({"__class__": "os.system"})
