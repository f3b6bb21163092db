"""open_checkpoint: formats round-trip, bad files fail with one clear error, pickles are safe."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkpoint_factory as cf  # noqa: E402

from weightstats.errors import CheckpointError, UnsafeCheckpointError  # noqa: E402
from weightstats.io.checkpoint import detect_format, open_checkpoint  # noqa: E402

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

FLOAT_NAMES = [
    "embed.weight",
    "layers.0.fc.weight",
    "layers.0.fc.bias",
    "layers.0.norm.weight",
    "layers.1.fc.weight",
    "layers.1.fc.bias",
    "head.weight",
]


def _check_values(ckpt, sd):
    for entry in ckpt.entries:
        x = ckpt.load(entry.name)
        assert x.dtype == np.float64 and x.shape == entry.shape
        np.testing.assert_array_equal(x, sd[entry.name].double().numpy())


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".weird"])
def test_torch_zip_round_trip(tmp_path, suffix):
    sd = cf.state_dict()
    path = tmp_path / f"model{suffix}"
    torch.save(sd, path)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "torch-zip"
        assert [e.name for e in ckpt.entries] == FLOAT_NAMES
        assert ckpt.skipped == [
            ("layers.1.bn.num_batches_tracked", pytest.approx(ckpt.skipped[0][1]))
        ]
        assert "int64" in ckpt.skipped[0][1]
        _check_values(ckpt, sd)


def test_legacy_torch_pickle_round_trip(tmp_path):
    sd = cf.state_dict()
    path = tmp_path / "legacy.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == "torch-pickle"
        _check_values(ckpt, sd)


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "model_state_dict", "module"])
def test_nested_state_dicts_and_prefixes(tmp_path, wrapper):
    sd = cf.state_dict()
    prefixed = {f"model.{k}": v for k, v in sd.items()}
    path = tmp_path / "run.ckpt"
    torch.save({wrapper: prefixed, "epoch": 3, "global_step": 10}, path)
    with open_checkpoint(path) as ckpt:
        assert [e.name for e in ckpt.entries] == FLOAT_NAMES  # `model.` stripped
        assert ("epoch", ckpt.skipped[0][1]) in ckpt.skipped
        assert "layers.1.bn.num_batches_tracked" in dict(ckpt.skipped)
        _check_values(ckpt, sd)


@pytest.mark.parametrize(
    "dtype", ["float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"]
)
def test_safetensors_dtypes_upcast(tmp_path, dtype):
    t = (torch.randn(8, 6) * 0.5).to(getattr(torch, dtype))
    path = tmp_path / "w.safetensors"
    save_file({"w": t}, str(path))
    with open_checkpoint(path) as ckpt:
        assert ckpt.entries[0].dtype == dtype
        np.testing.assert_array_equal(ckpt.load("w"), t.to(torch.float64).numpy())


def test_format_detected_from_bytes_not_extension(tmp_path):
    sd = cf.state_dict()
    path = tmp_path / "lies.pt"  # a safetensors file named like a torch file
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    assert detect_format(str(path)) == "safetensors"
    np_path = tmp_path / "lies.safetensors"
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    (tmp_path / "x.npy").rename(np_path)
    assert detect_format(str(np_path)) == "npy"


def test_sharded_checkpoint_in_layer_order(tmp_path):
    sd = {k: v for k, v in cf.state_dict().items()}
    index = cf.write_sharded(tmp_path / "hf", sd)
    for target in (index, tmp_path / "hf"):
        with open_checkpoint(target) as ckpt:
            assert ckpt.format == "sharded-safetensors"
            names = [e.name for e in ckpt.entries]
            assert names.index("embed.weight") < names.index("layers.0.fc.weight")
            assert names.index("layers.0.fc.weight") < names.index("layers.1.fc.weight")
            assert names[-1] == "head.weight"
            assert len({e.source for e in ckpt.entries}) == 3
            _check_values(ckpt, sd)


def test_sharded_placeholder_is_skipped_with_reason(tmp_path):
    sd = {"a.weight": torch.randn(4, 4), "tied.weight": torch.empty(0)}
    save_file(sd, str(tmp_path / "m.safetensors"))
    with open_checkpoint(tmp_path / "m.safetensors") as ckpt:
        assert [e.name for e in ckpt.entries] == ["a.weight"]
        assert "placeholder" in dict(ckpt.skipped)["tied.weight"]


def test_shard_index_cannot_escape_directory(tmp_path):
    save_file({"a": torch.randn(3)}, str(tmp_path / "outside.safetensors"))
    (tmp_path / "hf").mkdir()
    index = tmp_path / "hf" / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "../outside.safetensors"}}))
    with pytest.raises(CheckpointError, match="outside"):
        open_checkpoint(index)


def test_numpy_files(tmp_path, rng):
    w = rng.normal(size=(5, 4))
    np.savez(tmp_path / "a.npz", w=w, h=w.astype(np.float16), steps=np.arange(3))
    with open_checkpoint(tmp_path / "a.npz") as ckpt:
        assert ckpt.format == "npz"
        assert [e.name for e in ckpt.entries] == ["w", "h"]
        np.testing.assert_array_equal(ckpt.load("w"), w)
        assert "steps" in dict(ckpt.skipped)
    np.save(tmp_path / "b.npy", w.astype(np.float32))
    with open_checkpoint(tmp_path / "b.npy") as ckpt:
        np.testing.assert_array_equal(ckpt.load("array"), w.astype(np.float32))


def test_npz_object_arrays_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(UnsafeCheckpointError, match="--unsafe-allow-pickle"):
        open_checkpoint(tmp_path / "obj.npz")


def test_sha256_and_reopen_by_pickle(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.randn(4, 4)}, str(path))
    with open_checkpoint(path) as ckpt:
        assert ckpt.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
        clone = pickle.loads(pickle.dumps(ckpt))
        np.testing.assert_array_equal(clone.load("w"), ckpt.load("w"))
        clone.close()


# --- untrusted pickles ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zip", "legacy", "plain"])
def test_malicious_pickle_is_not_executed(tmp_path, kind):
    marker = tmp_path / "pwned"
    payload = {"w": torch.randn(3, 3), "evil": cf.Evil(str(marker))}
    path = tmp_path / "evil.pt"
    if kind == "zip":
        torch.save(payload, path)
    elif kind == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)
    with pytest.raises(UnsafeCheckpointError, match="--unsafe-allow-pickle") as info:
        open_checkpoint(path)
    assert "\n" not in str(info.value)
    assert not marker.exists()
    if kind != "plain":
        # the opt-in really is what runs it (this is why it is opt-in)
        with open_checkpoint(path, allow_pickle=True) as ckpt:
            assert marker.exists()
            assert [e.name for e in ckpt.entries] == ["w"]
            assert "evil" in dict(ckpt.skipped)


# --- bad input ------------------------------------------------------------------------------


def _valid_safetensors_bytes():
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    return header, np.arange(4, dtype="<f4").tobytes()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h, d: (h, d[:-4], None), "truncated"),
        (lambda h, d: (h, d, 10**12), "header claims"),
        (lambda h, d: (h, d, 5000), "truncated safetensors"),
        (lambda h, d: ({"a": {**h["a"], "shape": [4, 4]}}, d, None), "header lies"),
        (lambda h, d: ({"a": {**h["a"], "shape": [10**6, 10**6]}}, d, None), "header lies"),
        (lambda h, d: ({"a": {**h["a"], "data_offsets": [0, 10**9]}}, d, None), "ends at byte"),
        (lambda h, d: ({"a": {**h["a"], "dtype": "F99"}}, d, None), "unknown dtype"),
        (lambda h, d: ({"a": {**h["a"], "shape": [-1, 4]}}, d, None), "non-negative"),
        (
            lambda h, d: (
                {"a": h["a"], "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}},
                d + d[:8],
                None,
            ),
            "contiguous",
        ),
        (lambda h, d: (h, d + b"xxxx", None), "trailing"),
    ],
)
def test_safetensors_lying_headers(tmp_path, mutate, message):
    header, data = _valid_safetensors_bytes()
    header, data, length = mutate(header, data)
    path = cf.write_safetensors_raw(tmp_path / "bad.safetensors", header, data, length=length)
    with pytest.raises(CheckpointError, match=message) as info:
        with open_checkpoint(path) as ckpt:
            ckpt.load("a")
    assert "\n" not in str(info.value)


def test_safetensors_header_not_json(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes((12).to_bytes(8, "little") + b"{not json!!}")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        open_checkpoint(path)


def test_truncated_torch_zip(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(cf.state_dict(), path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated|cannot be read"):
        open_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({}, "empty dict"),
        ({"epoch": 3, "lr": 0.1}, "no tensors"),
        ([1, 2, 3], "not a state dict"),
    ],
)
def test_not_a_state_dict(tmp_path, content, message):
    path = tmp_path / "m.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(path)


def test_missing_empty_and_unknown(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        open_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        open_checkpoint(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        open_checkpoint(tmp_path / "empty.pt")
    (tmp_path / "notes.txt").write_text("hello world, not weights")
    with pytest.raises(CheckpointError, match="not a checkpoint format"):
        open_checkpoint(tmp_path / "notes.txt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="neither"):
        open_checkpoint(tmp_path / "other.zip")


def test_sharded_torch_bin_index(tmp_path):
    sd = cf.state_dict()
    names = list(sd)
    torch.save({k: sd[k] for k in names[:4]}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({k: sd[k] for k in names[4:]}, tmp_path / "pytorch_model-00002-of-00002.bin")
    weight_map = {k: "pytorch_model-00001-of-00002.bin" for k in names[:4]}
    weight_map.update({k: "pytorch_model-00002-of-00002.bin" for k in names[4:]})
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with open_checkpoint(tmp_path) as ckpt:
        assert ckpt.format == "sharded-torch-zip"
        assert [e.name for e in ckpt.entries] == FLOAT_NAMES
        _check_values(ckpt, sd)


def test_read_errors_become_checkpoint_errors(tmp_path, monkeypatch):
    from weightstats.io.formats.numpy_files import NumpyReader

    path = tmp_path / "m.npz"
    np.savez(path, w=np.ones((4, 4)))

    def broken(self, key):
        raise RuntimeError("storage is shorter than its declared size")

    monkeypatch.setattr(NumpyReader, "read", broken)
    with open_checkpoint(path) as ckpt:
        with pytest.raises(CheckpointError, match="cannot read tensor 'w'.*shorter"):
            ckpt.load("w")


@pytest.mark.parametrize("fmt", ["torch", "safetensors"])
def test_release_then_read_again(tmp_path, fmt):
    sd = cf.state_dict()
    path = tmp_path / "m.bin"
    if fmt == "torch":
        torch.save(sd, path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with open_checkpoint(path) as ckpt:
        first = ckpt.load("layers.1.fc.weight")
        src = ckpt.row_source("layers.1.fc.weight")
        np.testing.assert_array_equal(src.rows(3, 5).double().numpy(), first[3:5])
        del src
        ckpt.release()
        np.testing.assert_array_equal(ckpt.load("layers.1.fc.weight"), first)
