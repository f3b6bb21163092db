"""Optional formats: ONNX initializers (external data confined) and Keras weights via h5py."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from helpers import importorskip

from weightstats.errors import CheckpointError
from weightstats.io.checkpoint import open_checkpoint


def _onnx_model(rng, *, external: str | None = None):
    onnx = importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w_gemm = rng.normal(size=(8, 4)).astype(np.float32)  # Gemm transB=1: (out, in)
    w_mm = rng.normal(size=(8, 3)).astype(np.float32)  # MatMul: (in, out)
    b = rng.normal(size=(8,)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w_gemm, "fc1.weight"),
        numpy_helper.from_array(b, "fc1.bias"),
        numpy_helper.from_array(w_mm, "fc2.weight"),
        numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "shape_const"),
    ]
    if external is not None:
        t = inits[2]
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", str(w_mm.nbytes))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
    nodes = [
        helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
        helper.make_node("MatMul", ["h", "fc2.weight"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=inits,
    )
    model = helper.make_model(graph)
    return onnx, model, {"fc1.weight": w_gemm, "fc1.bias": b, "fc2.weight": w_mm}


def test_onnx_initializers(tmp_path, rng):
    onnx, model, arrays = _onnx_model(rng)
    path = tmp_path / "m.bin"  # extension says nothing
    onnx.save(model, str(path))
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "onnx"
        entries = {e.name: e for e in ckpt.entries}
        assert set(entries) == set(arrays)
        assert entries["fc1.weight"].out_axis == 0 and entries["fc2.weight"].out_axis == -1
        for name, arr in arrays.items():
            np.testing.assert_array_equal(ckpt.load(name), arr)
        assert "shape_const" in dict(ckpt.skipped)


def test_onnx_external_data_inside_directory(tmp_path, rng):
    onnx, model, arrays = _onnx_model(rng, external="weights.data")
    (tmp_path / "weights.data").write_bytes(arrays["fc2.weight"].tobytes())
    onnx.save(model, str(tmp_path / "m.onnx"))
    with open_checkpoint(tmp_path / "m.onnx") as ckpt:
        np.testing.assert_array_equal(ckpt.load("fc2.weight"), arrays["fc2.weight"])


@pytest.mark.parametrize("location", ["../secret.data", "/etc/passwd"])
def test_onnx_external_data_outside_directory_refused(tmp_path, rng, location):
    onnx, model, arrays = _onnx_model(rng, external=location)
    (tmp_path / "secret.data").write_bytes(arrays["fc2.weight"].tobytes())
    (tmp_path / "model").mkdir()
    onnx.save(model, str(tmp_path / "model" / "m.onnx"))
    with open_checkpoint(tmp_path / "model" / "m.onnx") as ckpt:
        with pytest.raises(CheckpointError, match="outside the model's directory"):
            ckpt.load("fc2.weight")


def _write_keras2_h5(path, rng):
    h5py = importorskip("h5py")
    kernel = rng.normal(size=(4, 6)).astype(np.float32)
    bias = rng.normal(size=(6,)).astype(np.float32)
    kernel2 = rng.normal(size=(6, 2)).astype(np.float32)
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = [b"dense_1", b"dense"]  # model order, not alphabetical
        g = root.create_group("dense_1/dense_1")
        g["kernel:0"] = kernel
        g["bias:0"] = bias
        root.create_group("dense/dense")["kernel:0"] = kernel2
        f.create_group("optimizer_weights")["iterations:0"] = np.float32(3.0)
    return {
        "dense_1/dense_1/kernel:0": kernel,
        "dense_1/dense_1/bias:0": bias,
        "dense/dense/kernel:0": kernel2,
    }


def test_keras_h5_weights(tmp_path, rng):
    arrays = _write_keras2_h5(tmp_path / "model.h5", rng)
    with open_checkpoint(tmp_path / "model.h5") as ckpt:
        assert ckpt.format == "hdf5"
        names = [e.name for e in ckpt.entries]
        assert names[-1] == "dense/dense/kernel:0"  # Keras' own layer order
        assert all(e.out_axis == -1 for e in ckpt.entries)
        for name, arr in arrays.items():
            np.testing.assert_array_equal(ckpt.load(name), arr)
        assert any("optimizer" in why for _, why in ckpt.skipped)


def test_keras3_zip(tmp_path, rng):
    h5py = importorskip("h5py")
    kernel = rng.normal(size=(5, 3)).astype(np.float32)
    with h5py.File(tmp_path / "model.weights.h5", "w") as f:
        f.create_group("layers/dense/vars")["0"] = kernel
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as zf:
        zf.writestr("config.json", "{}")
        zf.write(tmp_path / "model.weights.h5", "model.weights.h5")
    with open_checkpoint(tmp_path / "m.keras") as ckpt:
        assert ckpt.format == "keras"
        np.testing.assert_array_equal(ckpt.load("layers/dense/vars/0"), kernel)
