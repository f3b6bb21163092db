"""Report section of ``weightstats vae compare``: which latent, and what the numbers support.

:func:`vae_section` turns the comparison table (:data:`weightstats.vae.compare.TABLE_COLUMNS`)
and a few recorded latent samples into one :class:`~weightstats.report.model.SectionModel`:
a headline, the table, the learned latents' histograms and pairwise plots against prior draws,
and plain-text statements about the published claims, each worded only as strongly as the
measured differences and their standard errors allow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from .. import figures
from ..model import (
    Column,
    FigureGrid,
    KeyNumber,
    KeyNumbers,
    Prose,
    References,
    SectionModel,
    Table,
)

__all__ = ["LatentView", "claims", "vae_section"]

_COLUMNS = (
    Column("dataset", "data", "text"),
    Column("family", "latent", "text"),
    Column("latent_dim", "d", "int"),
    Column("elbo", "ELBO", "fixed2", "test ELBO, nats per example (higher is better)"),
    Column("kl", "KL", "fixed2", "mean KL(q(z|x) || p(z)) on the test set"),
    Column("iwae_nll", "IWAE NLL", "fixed2", "-log p(x) bound with k importance samples (lower is better)"),
    Column("iwae_nll_se", "+/- se", "fixed2", "standard error over test examples"),
    Column("iwae_gain_vs_gaussian", "gain vs Gaussian", "fixed2",
           "NLL(Gaussian) - NLL(this model), paired over test examples (positive: this model is better)"),
    Column("iwae_gain_se", "+/- se", "fixed2", "paired standard error of the gain"),
    Column("active_units", "AU", "int", "active units: Cov_x(E[z|x]) > 0.01 (Burda et al. 2015)"),
    Column("mmd2", "MMD^2", "sci", "aggregate posterior vs prior draws (Gaussian kernel)"),
    Column("mmd_pvalue", "MMD p", "sci", "permutation p-value"),
    Column("kl_aggregate_mc", "KL(q(z)||p(z))", "fixed3",
           "from the encoder's densities (Hoffman & Johnson 2016), test set"),
    Column("kl_aggregate_knn", "k-NN KL", "fixed3", "k-NN estimate on codes vs prior draws"),
    Column("rayleigh_pvalue", "Rayleigh p", "sci", "uniformity on the sphere (spherical latents)"),
    Column("clustering_accuracy", "cluster acc.", "percent", "Hungarian-matched (mixture prior)"),
    Column("clustering_chance", "chance", "percent", "same cluster sizes assigned at random"),
    Column("clusters_used", "clusters used", "int", "components that receive at least one test digit"),
    Column("test_error", "test error", "percent", "M2 classifier q(y|x)"),
    Column("baseline_error", "labels only", "percent", "same classifier trained on the labelled rows only"),
    Column("n_labels", "labels", "int"),
    Column("train_seconds", "train s", "fixed2"),
)

_REFERENCES = (
    "D. P. Kingma, M. Welling (2013). Auto-encoding variational Bayes. arXiv:1312.6114.",
    "T. R. Davidson, L. Falorsi, N. De Cao, T. Kipf, J. M. Tomczak (2018). Hyperspherical "
    "variational auto-encoders. UAI.",
    "N. De Cao, W. Aziz (2020). The Power Spherical distribution. ICML INNF+ workshop.",
    "Z. Jiang, Y. Zheng, H. Tan, B. Tang, H. Zhou (2017). Variational deep embedding (VaDE). "
    "IJCAI. (Mixture-prior formulation used here; not the GMVAE of Dilokthanakul et al. 2016.)",
    "D. P. Kingma, D. J. Rezende, S. Mohamed, M. Welling (2014). Semi-supervised learning with "
    "deep generative models. NeurIPS.",
    "Y. Burda, R. Grosse, R. Salakhutdinov (2015). Importance weighted autoencoders. "
    "arXiv:1509.00519.",
    "A. Gretton, K. M. Borgwardt, M. J. Rasch, B. Schoelkopf, A. Smola (2012). A kernel "
    "two-sample test. JMLR 13.",
    "M. D. Hoffman, M. J. Johnson (2016). ELBO surgery: yet another way to carve up the "
    "variational evidence lower bound. NIPS Workshop on Advances in Approximate Bayesian Inference.",
    "Q. Wang, S. R. Kulkarni, S. Verdu (2009). Divergence estimation for multidimensional "
    "densities via k-nearest-neighbor distances. IEEE Trans. Inf. Theory 55(5).",
)


@dataclass(frozen=True)
class LatentView:
    """Codes of one trained model and draws from its prior, for the figures.

    Attributes
    ----------
    key : str
        Lowercase identifier, e.g. ``'digits-vmf-d2'``.
    title : str
        Plain-text title.
    z : numpy.ndarray
        Codes z ~ q(z|x) on the test set, shape (n, d).
    prior : numpy.ndarray
        Prior draws, shape (m, d).
    labels : numpy.ndarray or None
        Class of each code (colours the scatter plot), when known.
    """

    key: str
    title: str
    z: np.ndarray
    prior: np.ndarray
    labels: np.ndarray | None = None


# ------------------------------------------------------------------------------ figures


def _hist_figure(view: LatentView, dim: int) -> MplFigure:
    fig = MplFigure(figsize=(3.4, 2.6), dpi=100)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.17, top=0.88)
    ax = fig.add_subplot()
    both = np.r_[view.z[:, dim], view.prior[:, dim]]
    lo, hi = np.quantile(both, [0.002, 0.998])
    bins = np.linspace(lo, hi, 41)
    ax.hist(view.prior[:, dim], bins=bins, density=True, color="0.75", label="prior draws")
    ax.hist(view.z[:, dim], bins=bins, density=True, histtype="step", color="C0", lw=1.5,
            label="q(z) (test codes)")
    ax.set_xlabel(f"z[{dim}]")
    ax.set_ylabel("density")
    ax.set_title(figures.plain(f"{view.title}: z[{dim}]"), fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    return fig


def _pair_figure(view: LatentView) -> MplFigure:
    fig = MplFigure(figsize=(3.4, 3.0), dpi=100)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.15, top=0.9)
    ax = fig.add_subplot()
    ax.scatter(view.prior[:, 0], view.prior[:, 1], s=3, color="0.75", label="prior draws",
               rasterized=True)
    if view.labels is not None:
        ax.scatter(view.z[:, 0], view.z[:, 1], s=4, c=view.labels, cmap="tab10", vmin=0, vmax=9,
                   label="q(z), coloured by class", rasterized=True)
    else:
        ax.scatter(view.z[:, 0], view.z[:, 1], s=4, color="C0", label="q(z)", rasterized=True)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(figures.plain(f"{view.title}: z[0] vs z[1]"), fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper right", markerscale=3)
    return fig


def _grid(view: LatentView) -> FigureGrid:
    figs = [
        figures.encode(_hist_figure(view, j), key=f"{view.key}-hist{j}",
                       title=f"{view.title}: histogram of z[{j}]",
                       caption="Grey: prior draws; blue line: the aggregate posterior.")
        for j in range(min(2, view.z.shape[1]))
    ]
    if view.z.shape[1] >= 2:
        figs.append(figures.encode(_pair_figure(view), key=f"{view.key}-pair",
                                   title=f"{view.title}: z[0] against z[1]",
                                   caption="Grey: prior draws; colour: test codes."))
    return FigureGrid(key=f"vae-{view.key}", title=view.title, figures=tuple(figs))


# ------------------------------------------------------------------------------ claims


def _row(table: pd.DataFrame, dataset: str, family: str, d: int) -> pd.Series | None:
    hit = table[(table["dataset"] == dataset) & (table["family"] == family) & (table["latent_dim"] == d)]
    return None if hit.empty else hit.iloc[0]


def _compare_nll(table: pd.DataFrame, dataset: str, other: str) -> list[tuple[int, float, float]]:
    """(d, NLL_gaussian - NLL_other, se of the difference) for every d with both models.

    The paired gain and its standard error when the table has them; otherwise the unpaired
    difference with the two standard errors combined (larger: conservative).
    """
    out = []
    for d in sorted(table.loc[table["dataset"] == dataset, "latent_dim"].unique()):
        g, o = _row(table, dataset, "gaussian", d), _row(table, dataset, other, d)
        if g is None or o is None:
            continue
        if "iwae_gain_se" in o and np.isfinite(o.get("iwae_gain_se", np.nan)):
            out.append((int(d), float(o["iwae_gain_vs_gaussian"]), float(o["iwae_gain_se"])))
        else:
            out.append((int(d), float(g["iwae_nll"] - o["iwae_nll"]),
                        float(np.hypot(g["iwae_nll_se"], o["iwae_nll_se"]))))
    return out


def _word(delta: float, se: float, name: str) -> str:
    if abs(delta) <= 2 * se:
        return f"no clear difference ({delta:+.2f} +/- {2 * se:.2f} nats)"
    better = name if delta > 0 else "Gaussian"
    return f"{better} better by {abs(delta):.2f} nats (+/- {2 * se:.2f})"


def claims(table: pd.DataFrame) -> list[str]:
    """Plain-text statements about the published claims, as far as `table` supports them.

    Differences of IWAE NLL are called real only beyond two standard errors (paired over the
    test examples when the table has ``iwae_gain_se``). That covers the test-set sampling,
    not training-seed variation: each model is trained once.
    """
    out: list[str] = []
    for dataset, label in (("digits", "On the digits"), ("sphere", "On the circle data")):
        for fam, name in (("vmf", "vMF"), ("power_spherical", "Power Spherical")):
            rows = _compare_nll(table, dataset, fam)
            if not rows:
                continue
            parts = "; ".join(f"d={d}: {_word(delta, se, name)}" for d, delta, se in rows)
            wins = [delta > 2 * se for _, delta, se in rows]
            edge = [delta for _, delta, _ in rows]
            if len(rows) >= 2 and wins[0] and edge[-1] < edge[0] and not wins[-1]:
                verdict = (f"supported here: {name} wins at the lowest dimension and its edge "
                           "shrinks and is gone at the highest")
            elif wins[0] and len(rows) >= 2 and edge[-1] < edge[0]:
                verdict = f"partly supported: {name} wins at low dimension and its edge shrinks"
            elif wins[0]:
                verdict = f"partly supported: {name} wins at the lowest dimension"
            else:
                verdict = f"not supported here: {name} does not beat the Gaussian at the lowest dimension"
            out.append(f"{label}, hyperspherical ({name}) vs Gaussian latent, IWAE NLL "
                       f"(Davidson et al. 2018): {parts}. Claim {verdict}.")
    mix = table[(table["family"] == "mixture") & table["clustering_accuracy"].notna()]
    if not mix.empty:
        parts = "; ".join(
            f"d={int(r.latent_dim)}: {100 * r.clustering_accuracy:.1f} % (chance {100 * r.clustering_chance:.1f} %)"
            for r in mix.itertuples())
        best = mix["clustering_accuracy"].max()
        good = mix[mix["clustering_accuracy"] > mix["clustering_chance"] + 0.2]
        verdict = ("the mixture prior clusters the digits well above chance at d = "
                   + ", ".join(str(int(d)) for d in good["latent_dim"])
                   if len(good) else "the clusters are not far above chance")
        out.append(f"Mixture prior, clustering accuracy with Hungarian matching on the test digits: "
                   f"{parts}; best {100 * best:.1f} %: {verdict}.")
        if "clusters_used" in mix:
            collapsed = mix[mix["clusters_used"] == 1]
            if len(collapsed):
                out.append(
                    "At d = " + ", ".join(str(int(d)) for d in collapsed["latent_dim"])
                    + " every test digit falls in one mixture component: the mixture collapsed "
                    "onto one component there, so its clusters say nothing about the digits.")
    m2 = table[(table["family"] == "m2") & table["test_error"].notna()]
    if not m2.empty:
        parts = "; ".join(
            f"d={int(r.latent_dim)}: {100 * r.test_error:.1f} % vs {100 * r.baseline_error:.1f} % "
            f"for the same classifier on the labels alone"
            for r in m2.itertuples())
        n_lab = int(m2["n_labels"].iloc[0])
        gap = m2["baseline_error"] - m2["test_error"]
        better = int((gap > 0).sum())
        # no standard error for these error rates in the table and one seed per model: report
        # the count and the size of the gaps, not a win
        verdict = (f"M2 has the lower test error at {better} of {len(m2)} dimensions, by at most "
                   f"{100 * gap.max():.1f} points; with one training seed and no standard error "
                   "for these rates, gaps of a point or two may not survive another seed"
                   if better else "M2 does not beat the labels-only classifier here")
        out.append(f"M2 with {n_lab} labelled digits (Kingma et al. 2014), test error: {parts}. "
                   f"{verdict}.")
    t_rows = _compare_nll(table, "digits", "student_t")
    if t_rows:
        parts = "; ".join(f"d={d}: {_word(delta, se, 'Student-t')}" for d, delta, se in t_rows)
        out.append(f"Heavy-tailed latent (Student-t posterior and prior) vs Gaussian, IWAE NLL: {parts}.")
    out.append("Caveats: one training seed per model, 1,347 training digits of 8x8 pixels, and a "
               "Bernoulli likelihood on grey levels (not a normalised density on [0, 1]), so the "
               "NLLs rank models against each other and are not comparable with published MNIST "
               "numbers.")
    return out


# ------------------------------------------------------------------------------ section


def _settings(config: Mapping[str, Any]) -> list[str]:
    """Plain-text lines describing the grid's training and evaluation settings."""
    t, e, o = config["training"], config["evaluation"], config.get("model_options", {})
    lines = [
        f"Training: Adam, lr {t['lr']}, batch {t['batch_size']}, {t['epochs']} epochs, hidden "
        f"layer widths {list(t['hidden'])} (ReLU) in the encoder, mirrored in the decoder, "
        f"Bernoulli likelihood, seed {config['seed']}, CPU.",
        f"Evaluation on the test set: ELBO averaged over {e['elbo_samples']} posterior draws; "
        f"IWAE with k = {e['iwae_k']}; MMD with {e['mmd_permutations']} permutations on up to "
        f"{e['max_samples']} codes; latents recorded every {config['record_every']} epochs.",
    ]
    fam = []
    if "student_t" in o:
        fam.append(f"Student-t df = {o['student_t'].get('df')}")
    if "mixture" in o:
        fam.append(f"mixture prior with K = {o['mixture'].get('n_components')} learned components")
    if "m2" in o:
        fam.append(f"M2 alpha = {o['m2'].get('alpha')} (per-example scale) with "
                   f"{config.get('labels_per_class')} labels per class")
    if fam:
        lines.append("Family settings: " + "; ".join(fam) + ".")
    return lines



def vae_section(
    table: pd.DataFrame,
    views: Sequence[LatentView] = (),
    *,
    command: str = "",
    config: Mapping[str, Any] | None = None,
) -> SectionModel:
    """Build the VAE comparison section.

    Parameters
    ----------
    table : pandas.DataFrame
        The comparison table (columns :data:`weightstats.vae.compare.TABLE_COLUMNS`).
    views : sequence of LatentView
        Models whose latents are drawn (histograms and a pairwise plot against prior draws).
    command : str
        The command that produced the numbers, shown in the section.
    config : mapping, optional
        The grid configuration; its training settings are listed under "How this was made".

    Returns
    -------
    SectionModel
    """
    cols = tuple(c for c in _COLUMNS if c.name in table.columns)
    best = table.loc[table.groupby("dataset")["iwae_nll"].idxmin()] if len(table) else table
    answer = "; ".join(
        f"lowest IWAE NLL on {r.dataset}: {r.family} latent, d={int(r.latent_dim)} ({r.iwae_nll:.2f} nats)"
        for r in best.itertuples()
    ) or "No models were trained."
    numbers: list[KeyNumber] = [KeyNumber("models trained", len(table), "int")]
    m2 = table[table["family"] == "m2"]
    if not m2.empty:
        numbers.append(KeyNumber("best M2 test error", float(m2["test_error"].min()), "percent",
                                 f"{int(m2['n_labels'].iloc[0])} labels"))
    mix = table[table["family"] == "mixture"]
    if not mix.empty:
        numbers.append(KeyNumber("best cluster accuracy", float(mix["clustering_accuracy"].max()),
                                 "percent", "mixture prior"))
    blocks: list[Any] = [
        KeyNumbers(answer + ".", tuple(numbers)),
        Table("vae-table", "Every model on its test set", table, cols,
              caption="ELBO and IWAE NLL in nats per example; MMD, KL and Rayleigh compare the "
                      "aggregate posterior of the test codes with the prior.", interactive=True),
        Prose("What the numbers say about the published claims", tuple(claims(table))),
    ]
    blocks.extend(_grid(v) for v in views)
    made = [f"Command: {command}"] if command else []
    if config:
        made.extend(_settings(config))
    if made:
        blocks.append(Prose("How this was made", tuple(made)))
    blocks.append(References(_REFERENCES))
    return SectionModel(
        key="vae",
        title="Which latent? Gaussian, hyperspherical, mixture, M2 and a heavy-tailed VAE",
        summary="Reference VAEs trained on the same data, compared by likelihood bounds, "
                "active units and how close the aggregate posterior is to the prior.",
        blocks=tuple(blocks),
    )
