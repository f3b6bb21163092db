"""analyze_tensor / analyze_checkpoint: known truth on simulated tensors, references, plumbing."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from weightstats.analysis._rowwise import ks_distance, prepare, row_shapiro_pass_rate
from weightstats.analysis.checkpoint import (
    COLUMNS,
    analyze_checkpoint,
    analyze_tensor,
    tensor_seed,
)
from weightstats.errors import CheckpointError, InputDataError

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402


def test_ks_distance_against_scipy(rng):
    x = np.sort(rng.normal(0, 0.1, size=3000))
    # reference: scipy.stats.kstest statistic on the same data
    ref_u = stats.kstest(x, "uniform", args=(-0.2, 0.4)).statistic
    ref_n = stats.kstest(x, "norm", args=(0, 0.12)).statistic
    assert ks_distance(x, "uniform", 0.2) == pytest.approx(ref_u, abs=1e-12)
    assert ks_distance(x, "normal", 0.12) == pytest.approx(ref_n, abs=1e-12)
    assert math.isnan(ks_distance(x, "normal", 0.0))


@pytest.mark.parametrize("out_axis", [0, -1])
def test_prepare_rowwise_standardisation(rng, out_axis):
    w = rng.normal(size=(40, 30)) * rng.uniform(0.1, 3, size=(40, 1)) + rng.normal(size=(40, 1))
    if out_axis == -1:
        w = np.ascontiguousarray(w.T)  # (in, out): units are columns
    prep = prepare(
        w.astype(np.float32),
        w.shape,
        out_axis=out_axis,
        max_samples=None,
        rng=np.random.default_rng(0),
    )
    units = w if out_axis == 0 else w.T
    units = units.astype(np.float32).astype(np.float64)
    z = (units - units.mean(axis=1, keepdims=True)) / units.std(axis=1, ddof=1, keepdims=True)
    np.testing.assert_allclose(np.sort(prep.rowwise), np.sort(z.ravel()), rtol=1e-10, atol=1e-12)
    assert prep.n_units == 40 and prep.pooled.size == w.size


def test_streaming_moments_against_scipy(rng):
    w = rng.standard_t(5, size=(300, 700)) * rng.uniform(0.5, 2, size=(300, 1)) + 0.3
    w[3, 4] = np.nan
    prep = prepare(w, w.shape, out_axis=0, max_samples=1000, rng=np.random.default_rng(0))
    x = w[np.isfinite(w)]
    m = prep.moments
    # references: scipy.stats.skew/kurtosis(bias=False) on every finite value
    assert m["skewness"] == pytest.approx(stats.skew(x, bias=False), rel=1e-9)
    assert m["excess_kurtosis"] == pytest.approx(stats.kurtosis(x, bias=False), rel=1e-9)
    assert m["sd"] == pytest.approx(x.std(ddof=1), rel=1e-12)
    z = (x - x.mean()) / x.std(ddof=1)
    assert m["tail_mass_ratio"] == pytest.approx(np.mean(np.abs(z) > 3) / (2 * stats.norm.sf(3)))
    row = _row(w, max_samples=1000)
    assert row["n_used"] < 1000 + 1 and row["excess_kurtosis"] == m["excess_kurtosis"]


def test_prepare_subsample_is_seeded_and_sized(rng):
    w = torch.from_numpy(rng.normal(size=(300, 200))).to(torch.bfloat16)
    a = prepare(w, (300, 200), out_axis=0, max_samples=5000, rng=np.random.default_rng(1))
    b = prepare(w, (300, 200), out_axis=0, max_samples=5000, rng=np.random.default_rng(1))
    assert a.pooled.size == 5000
    np.testing.assert_array_equal(a.pooled, b.pooled)
    assert set(a.pooled) <= set(w.double().numpy().ravel())


def test_row_shapiro_pass_rate_matches_level(rng):
    gauss = rng.normal(size=(400, 200))
    prep = prepare(gauss, gauss.shape, out_axis=0, max_samples=None, rng=rng)
    rate, n = row_shapiro_pass_rate(prep, max_rows=400, alpha=0.05, rng=rng)
    assert n == 400 and 0.91 < rate < 0.99  # 95 % expected, binomial sd ~1.1 %
    heavy = rng.standard_t(2, size=(100, 500))
    prep = prepare(heavy, heavy.shape, out_axis=0, max_samples=None, rng=rng)
    rate, _ = row_shapiro_pass_rate(prep, max_rows=100, alpha=0.05, rng=rng)
    assert rate < 0.1


def _row(values, shape=None, role="linear_weight", seed=0, **kw):
    shape = shape or values.shape
    return analyze_tensor(values, shape, role, rng=np.random.default_rng(seed), **kw)


def test_verdicts_on_known_truth(rng):
    n_out, n_in = 100, 200
    gauss = rng.normal(0, 0.05, size=(n_out, n_in))
    heavy = rng.standard_t(3, size=(n_out, n_in)) * 0.05
    uniform = rng.uniform(-0.05, 0.05, size=(n_out, n_in))
    scales = np.exp(rng.normal(0, 0.8, size=(n_out, 1)))
    scale_mix = rng.normal(size=(n_out, n_in)) * scales
    assert _row(gauss)["verdict"] == "gaussian"
    row = _row(heavy)
    assert row["verdict"] == "heavy-tailed" and row["verdict_rowwise"] == "heavy-tailed"
    assert 2.0 < row["tail_index"] < 5.0  # t(3): survival exponent 3
    assert _row(uniform)["verdict"] == "light-tailed"
    row = _row(scale_mix)
    assert row["verdict_pooled"] == "heavy-tailed"
    assert row["verdict_rowwise"] == "gaussian"
    assert row["verdict"] == "scale-mixture"
    assert "units with different scales" in row["note"]


def test_best_family_and_delta_bic_against_fit_families(rng):
    from weightstats.stats.fit import fit_families

    x = rng.laplace(size=(100, 50))
    row = _row(x, max_samples=None)
    ref = fit_families(
        x.ravel(), ["normal", "laplace", "logistic", "t", "gennorm", "uniform"], rng=0
    )
    bic = dict(zip(ref["family"], ref["bic"]))
    assert row["best_family"] in ("laplace", "gennorm")
    assert row["delta_bic_normal"] == pytest.approx(
        bic["normal"] - bic[row["best_family"]], rel=1e-9
    )
    assert row["excess_kurtosis"] == pytest.approx(stats.kurtosis(x.ravel(), bias=False))
    assert row["n_used"] == x.size


def test_distance_to_init(rng):
    lin = torch.nn.Linear(200, 60)
    row = _row(lin.weight.detach(), role="linear_weight")
    assert row["fan_in"] == 200
    assert row["ks_kaiming_uniform"] < 0.02  # fresh from kaiming_uniform_(a=sqrt(5))
    assert row["ks_normal_init"] > 0.03
    trained_like = rng.normal(0, 0.2, size=(60, 200))
    assert _row(trained_like)["ks_kaiming_uniform"] > 0.3
    emb = _row(rng.normal(size=(200, 16)), role="embedding")
    assert math.isnan(emb["ks_kaiming_uniform"]) and emb["ks_normal_init"] < 0.03


@pytest.mark.parametrize(
    ("values", "note"),
    [
        (np.full((10, 10), np.nan), "all values are NaN"),
        (np.full((10, 10), 0.5), "constant"),
        (np.array([[1.0, 2.0, np.nan], [np.inf, 3.0, 4.0]]), "finite values"),
    ],
)
def test_degenerate_tensors(values, note):
    row = _row(values)
    assert row["verdict"] == "degenerate" and row["status"] == "analysed"
    assert note in row["note"]


def test_nonfinite_values_left_out_with_note(rng):
    x = rng.normal(size=(50, 40))
    x[0, :5] = np.nan
    row = _row(x)
    assert row["n_used"] == x.size - 5 and "5 of 2000 values are NaN" in row["note"]


def test_analyze_tensor_iv():
    with pytest.raises(InputDataError, match="max_samples"):
        _row(np.ones((4, 4)), max_samples=3)


def test_tensor_seed_depends_on_seed_and_name_only():
    a = tensor_seed(3, "layers.0.weight").integers(1 << 30)
    assert a == tensor_seed(3, "layers.0.weight").integers(1 << 30)
    assert a != tensor_seed(4, "layers.0.weight").integers(1 << 30)
    assert a != tensor_seed(3, "layers.1.weight").integers(1 << 30)


# --- checkpoints ------------------------------------------------------------------------------


@pytest.fixture
def ckpt_path(tmp_path):
    g = torch.Generator().manual_seed(0)
    sd = {
        "layers.10.fc.weight": torch.randn(64, 32, generator=g),
        "layers.2.fc.weight": torch.randn(64, 32, generator=g).half(),
        "layers.2.fc.bias": torch.randn(64, generator=g),
        "layers.2.bn.num_batches_tracked": torch.tensor(5),
        "embed.weight": torch.randn(100, 32, generator=g).bfloat16(),
        "head.weight": torch.randn(10, 64, generator=g),
        "tiny.weight": torch.randn(3, 3, generator=g),
    }
    path = tmp_path / "model.safetensors"
    save_file(sd, str(path))
    return path


def test_analyze_checkpoint_frame(ckpt_path):
    frame = analyze_checkpoint(ckpt_path, exclude=["head.*"], max_samples=1000, seed=7)
    assert list(frame.columns) == COLUMNS
    assert list(frame["tensor"]) == [
        "embed.weight",
        "layers.2.fc.bias",
        "layers.2.fc.weight",
        "layers.2.bn.num_batches_tracked",
        "layers.10.fc.weight",
        "head.weight",
        "tiny.weight",
    ]
    status = dict(zip(frame["tensor"], frame["status"]))
    notes = dict(zip(frame["tensor"], frame["note"]))
    assert status["head.weight"] == "skipped" and "--exclude" in notes["head.weight"]
    assert status["tiny.weight"] == "skipped" and "too small" in notes["tiny.weight"]
    assert status["layers.2.bn.num_batches_tracked"] == "skipped"
    assert "int64" in notes["layers.2.bn.num_batches_tracked"]
    analysed = frame[frame["status"] == "analysed"]
    assert set(analysed["n_used"]) == {64, 1000}  # the bias has 64 values, the rest 2048+
    assert dict(zip(frame["tensor"], frame["role"]))["embed.weight"] == "embedding"
    assert dict(zip(frame["tensor"], frame["dtype"]))["embed.weight"] == "bfloat16"
    assert frame.attrs["sha256"] == hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
    assert frame.attrs["seed"] == 7 and frame.attrs["max_samples"] == 1000
    for pkg in ("weightstats", "numpy", "scipy", "torch"):
        assert frame.attrs[f"{pkg}_version"]
    # numbers stay raw
    assert frame["excess_kurtosis"].dtype == np.float64


def test_include_and_state_dict_input(ckpt_path):
    from safetensors.torch import load_file

    sd = load_file(str(ckpt_path))
    a = analyze_checkpoint(sd, include=["layers.*weight"], max_samples=1000)
    b = analyze_checkpoint(ckpt_path, include=["layers.*weight"], max_samples=1000)
    cols = [c for c in COLUMNS if c != "checkpoint"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert (a["status"] == "analysed").sum() == 2


def test_several_checkpoints_one_frame(ckpt_path, tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"w": torch.randn(50, 40)}, other)
    frame = analyze_checkpoint([ckpt_path, other], max_samples=500)
    assert list(frame["checkpoint"].unique()) == [str(ckpt_path), str(other)]
    assert len(frame.attrs["checkpoints"]) == 2


def test_results_do_not_depend_on_order(ckpt_path, tmp_path):
    from safetensors.torch import load_file

    sd = load_file(str(ckpt_path))
    reversed_sd = dict(reversed(list(sd.items())))
    a = analyze_checkpoint(sd, max_samples=800, seed=1).set_index("tensor")
    b = analyze_checkpoint(reversed_sd, max_samples=800, seed=1).set_index("tensor")
    pd.testing.assert_frame_equal(a, b.loc[a.index])


def test_analyze_checkpoint_iv(ckpt_path, tmp_path):
    with pytest.raises(InputDataError, match="min_numel"):
        analyze_checkpoint(ckpt_path, min_numel=0)
    with pytest.raises(InputDataError, match="jobs"):
        analyze_checkpoint(ckpt_path, jobs=0)
    with pytest.raises(CheckpointError, match="no such file"):
        analyze_checkpoint(tmp_path / "missing.pt")


# --- parallel execution -------------------------------------------------------------------


def _frame_for_compare(frame):
    return frame.drop(columns=["checkpoint"]).reset_index(drop=True)


@pytest.mark.slow
def test_jobs_give_identical_frames(ckpt_path, tmp_path):
    torch.save({"model": {"w": torch.randn(80, 40), "v": torch.randn(30, 30)}}, tmp_path / "b.pt")
    paths = [ckpt_path, tmp_path / "b.pt"]
    one = analyze_checkpoint(paths, max_samples=1500, seed=5, jobs=1)
    two = analyze_checkpoint(paths, max_samples=1500, seed=5, jobs=2)
    pd.testing.assert_frame_equal(one, two)


@pytest.mark.slow
def test_dask_local_cluster_gives_same_frame(ckpt_path):
    distributed = pytest.importorskip("distributed")
    one = analyze_checkpoint(ckpt_path, max_samples=1500, seed=2, jobs=1)
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        dask = analyze_checkpoint(
            ckpt_path, max_samples=1500, seed=2, scheduler=cluster.scheduler_address
        )
    pd.testing.assert_frame_equal(one, dask)


@pytest.mark.slow
def test_unreachable_scheduler_is_input_error(ckpt_path):
    pytest.importorskip("distributed")
    with pytest.raises(InputDataError, match="Dask scheduler"):
        analyze_checkpoint(ckpt_path, max_samples=1500, scheduler="tcp://127.0.0.1:9")
