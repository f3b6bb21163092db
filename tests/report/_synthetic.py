"""Synthetic per-tensor frames with the columns of analyze_checkpoint (docs/DESIGN.md).

Values are drawn with numpy from known shapes and the frame's numbers are computed from them
with scipy, so the report is tested on real, consistent numbers without running the analysis.
The columns are the analysis's own (:data:`weightstats.analysis.checkpoint.COLUMNS`), so the
frames follow the contract as it changes; statistics not computed here are NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from weightstats.analysis.checkpoint import COLUMNS

EVIL = "<script>alert(1)</script>"

#: The checkpoint report's sections, in order (docs/DESIGN.md).
SECTION_KEYS = ["answer", "tensors", "evidence", "model", "meaning", "methods"]


def draw_tensors(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A small 'model': Gaussian, heavy-tailed, uniform, scale-mixture and constant tensors."""
    scales = np.exp(rng.normal(0.0, 0.6, size=(24, 1)))
    return {
        "fc1.weight": rng.normal(0.0, 0.05, size=(48, 160)),
        "fc1.bias": rng.normal(0.0, 0.02, size=(48,)),
        "fc2.weight": 0.03 * rng.standard_t(3, size=(32, 48)),
        EVIL: scales * rng.normal(0.0, 0.1, size=(24, 96)),
        "fc3.weight": rng.uniform(-0.17, 0.17, size=(10, 32)),
        "fc3.bias": np.zeros(10),
    }


def _row_stats(name: str, x: np.ndarray) -> dict:
    flat = x.reshape(-1)
    role = "bias" if x.ndim == 1 else "linear_weight"
    fan_in = int(np.prod(x.shape[1:])) if x.ndim > 1 else math.nan
    row = {
        "tensor": name,
        "shape": tuple(x.shape),
        "dtype": "float32",
        "numel": flat.size,
        "role": role,
        "fan_in": fan_in,
        "note": "",
    }
    if flat.min() == flat.max():
        row.update(
            status="degenerate",
            verdict="degenerate",
            verdict_pooled="degenerate",
            verdict_rowwise="degenerate",
            n_used=flat.size,
            note="constant",
        )
        return row
    fams = {
        "normal": sps.norm,
        "laplace": sps.laplace,
        "logistic": sps.logistic,
        "uniform": sps.uniform,
    }
    bic = {}
    for fam, dist in fams.items():
        params = dist.fit(flat)
        bic[fam] = -2 * dist.logpdf(flat, *params).sum() + len(params) * math.log(flat.size)
    best = min(bic, key=bic.get)
    kurt = float(sps.kurtosis(flat))
    z = (flat - flat.mean()) / flat.std()
    band = 3 * math.sqrt(24 / flat.size)  # 3 standard errors of the kurtosis under normality
    verdict = "gaussian" if abs(kurt) < band else ("heavy-tailed" if kurt > 0 else "light-tailed")
    rowwise = verdict
    if x.ndim > 1:
        zr = ((x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)).reshape(-1)
        rk = float(sps.kurtosis(zr))
        rowwise = "gaussian" if abs(rk) < band else ("heavy-tailed" if rk > 0 else "light-tailed")
        sw = np.mean([sps.shapiro(r).pvalue > 0.05 for r in x])
    else:
        sw = math.nan
    final = "scale-mixture" if verdict == "heavy-tailed" and rowwise == "gaussian" else verdict
    a = np.sort(np.abs(flat))[::-1]
    k = math.ceil(math.sqrt(a.size))
    bound = 1 / math.sqrt(fan_in) if not math.isnan(fan_in) else 1.0
    row.update(
        status="analyzed",
        n_used=flat.size,
        best_family=best,
        delta_bic_normal=float(bic["normal"] - bic[best]),
        skewness=float(sps.skew(flat)),
        excess_kurtosis=kurt,
        wasserstein1=float(
            sps.wasserstein_distance(z, sps.norm.ppf((np.arange(z.size) + 0.5) / z.size))
        ),
        tail_mass_ratio=float(np.mean(np.abs(z) > 3) / (2 * sps.norm.sf(3))),
        tail_index=float(1 / np.mean(np.log(a[:k] / a[k]))),
        verdict_pooled=verdict,
        verdict_rowwise=rowwise,
        verdict=final,
        row_sw_pass_rate=sw,
        ks_kaiming_uniform=float(sps.kstest(flat, sps.uniform(-bound, 2 * bound).cdf).statistic),
        ks_normal_init=float(sps.kstest(flat, sps.norm(flat.mean(), flat.std()).cdf).statistic),
    )
    return row


def make_frame(tensors: dict[str, np.ndarray], checkpoint: str = "synthetic.safetensors"):
    """The analyze_checkpoint-style frame of `tensors` (computed with scipy)."""
    rows = [_row_stats(name, x) for name, x in tensors.items()]
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    frame["checkpoint"] = checkpoint
    frame.attrs.update(
        seed=0, sha256="0" * 64, versions={"weightstats": "test", "numpy": np.__version__}
    )
    return frame


def big_frame(n: int, rng: np.random.Generator):
    """An `n`-tensor frame (numbers drawn, not computed) and a values() that draws on demand."""
    verdicts = np.array(
        ["gaussian"] * 6 + ["heavy-tailed", "scale-mixture", "light-tailed", "mixture"]
    )
    rows = []
    for i in range(n):
        is_bias = i % 2 == 1
        shape = (256,) if is_bias else (256, 256)
        v = str(rng.choice(verdicts))
        rows.append(
            {
                "checkpoint": "big.safetensors",
                "tensor": f"layers.{i // 2}.{'bias' if is_bias else 'weight'}",
                "shape": shape,
                "dtype": "float32",
                "numel": int(np.prod(shape)),
                "role": "bias" if is_bias else "linear_weight",
                "fan_in": math.nan if is_bias else 256,
                "n_used": int(np.prod(shape)),
                "best_family": "t" if v != "gaussian" else "normal",
                "delta_bic_normal": float(rng.exponential(50)),
                "skewness": float(rng.normal(0, 0.05)),
                "excess_kurtosis": float(rng.normal(0.5, 1.0)),
                "wasserstein1": float(rng.exponential(0.02)),
                "tail_mass_ratio": float(rng.lognormal(0, 0.3)),
                "tail_index": float(rng.uniform(2, 8)),
                "verdict_pooled": v,
                "verdict_rowwise": v,
                "verdict": v,
                "row_sw_pass_rate": float(rng.uniform(0.8, 1)),
                "ks_kaiming_uniform": float(rng.uniform(0, 0.2)),
                "ks_normal_init": float(rng.uniform(0, 0.05)),
                "status": "analyzed",
                "note": "",
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.attrs.update(seed=1, sha256="f" * 64)
    shapes = dict(zip(frame["tensor"], frame["shape"]))

    def values(name: str) -> np.ndarray:
        g = np.random.default_rng(abs(hash(name)) % 2**32)
        return 0.05 * g.standard_t(5, size=shapes[name])

    return frame, values
