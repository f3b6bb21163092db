"""Numpy kernels for latent spaces: MMD, Rayleigh, k-NN KL, active units, cluster accuracy.

No torch and no pandas here; :mod:`weightstats.analysis.latent` turns these into tables.
Every function takes float64 arrays of shape (n, d) (rows are latent codes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, spatial, special, stats

from .._validation import to_numpy
from ..errors import InputDataError

__all__ = [
    "TwoSampleResult",
    "active_units",
    "as_codes",
    "clustering_accuracy",
    "covariance_summary",
    "gaussian_kl_to_standard",
    "knn_kl_divergence",
    "log_sphere_area",
    "median_bandwidth",
    "mmd_test",
    "rayleigh_test",
    "uniform_sphere_sample",
]


@dataclass(frozen=True)
class TwoSampleResult:
    """A test statistic with its p-value.

    Attributes
    ----------
    statistic : float
        The statistic (MMD^2 unbiased estimate; Rayleigh's d n |mean|^2).
    pvalue : float
        Permutation p-value (MMD) or asymptotic chi-square p-value (Rayleigh).
    method : str
        Which test, with its main setting.
    """

    statistic: float
    pvalue: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        return f"TwoSampleResult(statistic={self.statistic:.6g}, pvalue={self.pvalue:.4g}, method={self.method!r})"


def as_codes(z: Any, *, name: str = "z", min_rows: int = 2) -> np.ndarray:
    """Validate latent codes: a finite float64 matrix (n, d); a vector is one dimension."""
    arr = to_numpy(z, name=name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputDataError(f"`{name}` must be a matrix (n_codes, latent_dim); got shape {arr.shape}.")
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise InputDataError(
            f"`{name}` has {arr.shape[0]} row(s); at least {min_rows} latent codes are needed."
        )
    if not np.isfinite(arr).all():
        raise InputDataError(f"`{name}` has non-finite values; drop those codes first.")
    return arr


def active_units(means: Any, *, threshold: float = 0.01) -> tuple[int, np.ndarray]:
    """Active latent units (Burda et al. 2015): Cov_x(E_q[z|x]) above `threshold`.

    Parameters
    ----------
    means : array_like, shape (n, d)
        Posterior means E_q[z|x] of n examples.
    threshold : float
        A unit is active when the variance of its posterior mean across x exceeds this.

    Returns
    -------
    (int, numpy.ndarray)
        Number of active units and the per-unit variances (ddof=1).
    """
    m = as_codes(means, name="means")
    variances = m.var(axis=0, ddof=1)
    return int(np.count_nonzero(variances > threshold)), variances


def clustering_accuracy(y_true: Any, y_pred: Any) -> float:
    """Accuracy of cluster labels after the best one-to-one matching of clusters to classes.

    The matching maximises the agreement over the contingency table with the Hungarian
    algorithm (``scipy.optimize.linear_sum_assignment``); clusters left unmatched when there
    are more clusters than classes count as errors.
    """
    t = np.asarray(to_numpy(y_true, name="y_true")).astype(np.int64).ravel()
    p = np.asarray(to_numpy(y_pred, name="y_pred")).astype(np.int64).ravel()
    if t.size != p.size or t.size == 0:
        raise InputDataError(
            f"`y_true` and `y_pred` must have the same non-zero length; got {t.size} and {p.size}."
        )
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    table = np.zeros((pi.max() + 1, ti.max() + 1), dtype=np.int64)
    np.add.at(table, (pi, ti), 1)
    rows, cols = optimize.linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / t.size)


def covariance_summary(z: Any) -> dict[str, float]:
    """Covariance of the codes against the identity.

    Returns a dict with ``max_abs_offdiag`` (largest |off-diagonal covariance|),
    ``max_abs_offdiag_corr`` (largest |correlation|), ``eig_min``, ``eig_max``,
    ``eig_spread`` (eig_max / eig_min) and ``frobenius_to_identity`` (||Cov - I||_F).
    """
    x = as_codes(z)
    d = x.shape[1]
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    eig = np.linalg.eigvalsh(cov)
    off = cov[~np.eye(d, dtype=bool)]
    sd = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    off_corr = corr[~np.eye(d, dtype=bool)]
    return {
        "max_abs_offdiag": float(np.abs(off).max()) if off.size else 0.0,
        "max_abs_offdiag_corr": float(np.nanmax(np.abs(off_corr))) if off.size else 0.0,
        "eig_min": float(eig[0]),
        "eig_max": float(eig[-1]),
        "eig_spread": float(eig[-1] / eig[0]) if eig[0] > 0 else float("inf"),
        "frobenius_to_identity": float(np.linalg.norm(cov - np.eye(d))),
    }


def gaussian_kl_to_standard(z: Any) -> float:
    """KL(N(m, S) || N(0, I)) for the Gaussian with the codes' mean m and covariance S.

    A moment-matched summary: it sees only first and second moments, so it is zero for any
    q(z) with zero mean and identity covariance, Gaussian or not.
    """
    x = as_codes(z, min_rows=3)
    d = x.shape[1]
    m = x.mean(axis=0)
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.trace(cov) + m @ m - d - logdet))


def knn_kl_divergence(x: Any, y: Any, *, k: int = 1, intrinsic_dim: int | None = None) -> float:
    """k-nearest-neighbour estimate of KL(P || Q) from samples x ~ P and y ~ Q.

    The estimator of Wang, Kulkarni & Verdu (2009, eq. 5):
    ``d/n sum_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1))``, where rho_k(i) is the distance
    from x_i to its k-th nearest neighbour among the other x and nu_k(i) to its k-th nearest
    neighbour among y. Consistent as n, m grow; biased at small n, more so in high d.
    For samples on a smooth manifold (the sphere S^{d-1} in R^d) pass its `intrinsic_dim`
    (d - 1): small balls are then (d-1)-dimensional and the volume ratio uses that power.
    """
    a = as_codes(x, name="x", min_rows=k + 1)
    b = as_codes(y, name="y", min_rows=k)
    if a.shape[1] != b.shape[1]:
        raise InputDataError(
            f"`x` and `y` must have the same number of columns; got {a.shape[1]} and {b.shape[1]}."
        )
    n, d = a.shape
    d = int(intrinsic_dim) if intrinsic_dim is not None else d
    m = b.shape[0]
    rho = spatial.cKDTree(a).query(a, k=k + 1)[0][:, k]
    nu = spatial.cKDTree(b).query(a, k=k)[0]
    nu = nu[:, k - 1] if k > 1 else nu
    ok = (rho > 0) & (nu > 0)
    if not ok.all():  # duplicated codes: drop them rather than return an infinity
        rho, nu, n = rho[ok], nu[ok], int(ok.sum())
        if n < 2:
            return float("nan")
    return float(d * np.mean(np.log(nu / rho)) + np.log(m / (n - 1)))


def median_bandwidth(x: np.ndarray, y: np.ndarray, *, max_points: int = 1000) -> float:
    """Median heuristic (Gretton et al. 2012): median pairwise distance of the pooled sample."""
    pooled = np.vstack([x, y])[:max_points]
    dist = spatial.distance.pdist(pooled)
    h = float(np.median(dist[dist > 0])) if np.any(dist > 0) else 1.0
    return h


def mmd_test(
    x: Any,
    y: Any,
    *,
    bandwidth: float | None = None,
    n_permutations: int = 200,
    rng: np.random.Generator | int | None = None,
) -> TwoSampleResult:
    """Kernel two-sample test: unbiased MMD^2 with a Gaussian kernel and a permutation p-value.

    ``MMD^2_u = mean_{i!=j} k(x_i,x_j) + mean_{i!=j} k(y_i,y_j) - 2 mean_{i,j} k(x_i,y_j)``
    (Gretton et al. 2012, eq. 3), ``k(a, b) = exp(-|a-b|^2 / (2 h^2))``, h by the median
    heuristic unless given. The p-value is ``(1 + #{perm >= observed}) / (1 + n_permutations)``
    over random relabellings of the pooled sample.

    Parameters
    ----------
    x, y : array_like, shape (n, d) and (m, d)
        The two samples (for example aggregate-posterior codes and prior draws).
    bandwidth : float, optional
        Kernel width h.
    n_permutations : int
        Relabellings for the p-value (0 gives NaN).
    rng : numpy.random.Generator or int, optional
        Source of the permutations.

    Returns
    -------
    TwoSampleResult
    """
    a = as_codes(x, name="x")
    b = as_codes(y, name="y")
    if a.shape[1] != b.shape[1]:
        raise InputDataError(
            f"`x` and `y` must have the same number of columns; got {a.shape[1]} and {b.shape[1]}."
        )
    h = median_bandwidth(a, b) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise InputDataError(f"`bandwidth` must be positive; got {bandwidth!r}.")
    n, m = a.shape[0], b.shape[0]
    pooled = np.vstack([a, b])
    kern = np.exp(-spatial.distance.squareform(spatial.distance.pdist(pooled, "sqeuclidean")) / (2 * h * h))
    np.fill_diagonal(kern, 0.0)

    def stat(labels: np.ndarray) -> np.ndarray:
        # labels: (N, B) boolean, True for the "x" group; returns MMD^2_u for each column.
        ix = labels.astype(np.float64)
        iy = 1.0 - ix
        kx = kern @ ix
        ky = kern @ iy
        sxx = np.einsum("ib,ib->b", ix, kx)
        syy = np.einsum("ib,ib->b", iy, ky)
        sxy = np.einsum("ib,ib->b", ix, ky)
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)

    observed = float(stat(np.r_[np.ones(n, bool), np.zeros(m, bool)][:, None])[0])
    method = f"mmd2_unbiased_gaussian(h={h:.4g})"
    if n_permutations <= 0:
        return TwoSampleResult(observed, float("nan"), method)
    gen = np.random.default_rng(rng)
    base = np.r_[np.ones(n, bool), np.zeros(m, bool)]
    count = 0
    for start in range(0, n_permutations, 100):
        size = min(100, n_permutations - start)
        labels = np.stack([gen.permutation(base) for _ in range(size)], axis=1)
        count += int(np.count_nonzero(stat(labels) >= observed))
    return TwoSampleResult(observed, (1 + count) / (1 + n_permutations), method)


def rayleigh_test(z: Any) -> TwoSampleResult:
    """Rayleigh test of uniformity on the sphere S^{d-1} (rows of `z` are normalised first).

    Statistic ``R = d n |mean(z)|^2``, asymptotically chi-square with d degrees of freedom
    under uniformity (Mardia & Jupp 2000, sec. 10.4.1); large R means a preferred direction.
    It has no power against alternatives with a zero mean resultant (for example antipodal
    clusters), which the MMD to uniform draws covers.
    """
    x = as_codes(z)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InputDataError("`z` has a zero row; points on the sphere need a direction.")
    u = x / norms
    n, d = u.shape
    r = float(d * n * np.sum(u.mean(axis=0) ** 2))
    return TwoSampleResult(r, float(stats.chi2.sf(r, d)), f"rayleigh_chi2(df={d})")


def uniform_sphere_sample(n: int, d: int, *, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """n points uniform on S^{d-1} in R^d (normalised Gaussian draws)."""
    g = np.random.default_rng(rng)
    x = g.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def log_sphere_area(d: int) -> float:
    """log of the surface area of S^{d-1}: log(2 pi^{d/2} / Gamma(d/2))."""
    return float(np.log(2.0) + 0.5 * d * np.log(np.pi) - special.gammaln(0.5 * d))
