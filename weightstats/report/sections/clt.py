"""The CLT sections: is a trained weight Gaussian by accumulation, by inheritance, or neither?

* :func:`clt_section` -- one analysed run or checkpoint pair
  (:class:`~weightstats.analysis.clt.CLTAnalysis`): the per-tensor table and the log-log plot
  of the accumulated update's excess kurtosis against the number of steps, with ``kappa_1/n``.
* :func:`experiment_sections` -- the ``weightstats experiment clt`` grid
  (:class:`~weightstats.experiments.clt.ExperimentResult`): the answer the numbers support,
  summaries by initialisation, optimizer, learning rate and width, figures and the full table.
* :func:`write_clt_report` -- build and write the experiment report (never clobbering).
* :func:`write_analysis_report` -- the same for one analysis (``weightstats clt -o``).

Every sentence of the answer is computed from the results table; nothing is hard-coded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure

from .. import figures as F
from ..model import (
    Column,
    FigureGrid,
    KeyNumber,
    KeyNumbers,
    Prose,
    References,
    SectionModel,
    Table,
    build_report,
)

__all__ = [
    "clt_section",
    "experiment_sections",
    "kurtosis_decay_figure",
    "write_analysis_report",
    "write_clt_report",
]

_LABELS = ("inherited-from-init", "clt-accumulation", "heavy-tailed-updates", "structured",
           "undetermined")

TENSOR_COLUMNS = (
    Column("tensor", "tensor", "text", "Parameter name"),
    Column("numel", "numel", "int", "Entries"),
    Column("relative_change", "|dW|/|W0|", "float", "Frobenius norm of the update over the init's"),
    Column("init_variance_share", "W0 share", "percent", "corr(W0, WT)^2"),
    Column("shape_distance", "shape KS", "fixed3", "KS distance of standardised W0 and WT"),
    Column("excess_kurtosis_init", "kurt W0", "fixed2", "Excess kurtosis of W0"),
    Column("frozen_share_update", "frozen", "percent", "Share of exactly zero updates "
           "(no gradient ever); dW's shape is described without them"),
    Column("excess_kurtosis_update", "kurt dW", "fixed2", "Excess kurtosis of dW"),
    Column("excess_kurtosis_final", "kurt WT", "fixed2", "Excess kurtosis of WT"),
    Column("acf_lag1", "acf(1)", "fixed2", "Lag-1 autocorrelation of step-standardised updates"),
    Column("n_eff_ratio", "n_eff/T", "fixed2", "Effective independent steps over recorded steps"),
    Column("spread_ratio", "spread last/first", "fixed2", "Update variance, last vs first quarter"),
    Column("max_step_share", "max step share", "fixed3", "Median largest single-step share"),
    Column("scale_persistence", "scale persistence", "fixed2", "Spearman of per-coordinate scales, halves"),
    Column("tail_index", "tail index", "float", "Hill index of single updates"),
    Column("decay_kappa1", "kappa1", "float", "Mean single-step excess kurtosis"),
    Column("decay_slope", "slope", "fixed2", "log|kurtosis| vs log n (CLT: -1)"),
    Column("decay_final_kurtosis", "kurt S_T", "fixed3", "Accumulated update's kurtosis at the end"),
    Column("verdict", "verdict", "text", "CLT verdict"),
    Column("reason", "reason", "text", "Why"),
)


def kurtosis_decay_figure(curves: pd.DataFrame, *, title: str, max_lines: int = 6) -> MplFigure:
    """|excess kurtosis| of the accumulated update against n, log-log, with kappa_1/n dashed.

    `curves` is long format (``label``, ``n``, ``kurtosis``, ``predicted_iid``, ``noise_floor``).
    """
    fig = MplFigure(figsize=(5.2, 3.6))
    ax = fig.subplots()
    colors = [f"C{i}" for i in range(10)]
    floor = np.nan
    for i, (label, g) in enumerate(list(curves.groupby("label", sort=False))[:max_lines]):
        c = colors[i % 10]
        ax.loglog(g["n"], np.abs(g["kurtosis"]), color=c, lw=1.2, label=F.plain(label, 40))
        ax.loglog(g["n"], np.abs(g["predicted_iid"]), color=c, lw=0.9, ls="--")
        floor = np.nanmax([floor, float(g["noise_floor"].iloc[0])])
    if np.isfinite(floor):
        ax.axhline(3 * floor, color="0.5", lw=0.8, ls=":")
        ax.text(1, 3 * floor, " 3 x sqrt(24/C)", va="bottom", fontsize=7, color="0.4")
    ax.set_xlabel("optimizer steps summed, n")
    ax.set_ylabel("|excess kurtosis| of accumulated update")
    ax.set_title(F.plain(title, 70), fontsize=9)
    ax.legend(fontsize=6, loc="lower left")
    return fig


def _decay_figure_block(curves: pd.DataFrame, *, key: str, title: str) -> Any:
    fig = kurtosis_decay_figure(curves, title=title)
    return F.encode(fig, key=key, title=title,
                    caption="Solid: observed |excess kurtosis| of S_n = sum of the first n "
                            "updates across the sampled coordinates. Dashed: the CLT's kappa_1/n "
                            "for independent, identically distributed updates. Dotted: 3 x the "
                            "noise floor sqrt(24/C); the slope is fitted only above it.")


def clt_section(analysis: Any) -> SectionModel:
    """One run (or checkpoint pair) as a report section."""
    summary = analysis.summary
    cols = tuple(c for c in TENSOR_COLUMNS if c.name in summary.columns)
    counts = summary["verdict"].value_counts()
    blocks: list[Any] = [
        KeyNumbers(
            f"{len(summary)} tensors: " + ", ".join(f"{n} {lab}" for lab, n in counts.items()),
            tuple(KeyNumber(lab, int(counts.get(lab, 0)), "int") for lab in _LABELS),
        ),
        Table("clt-tensors", "Per tensor", summary, cols),
    ]
    if len(analysis.curves):
        cur = analysis.curves.assign(label=analysis.curves["tensor"])
        blocks.append(FigureGrid("clt-decay-grid", "Does the update become Gaussian at the CLT's "
                                 "rate?", (_decay_figure_block(cur, key="clt-decay",
                                                               title=analysis.source),)))
    else:
        blocks.append(Prose("Trajectory tests", ("Unavailable: only two checkpoints were given, "
                            "so independence, identical spread and the kurtosis decay are not "
                            "tested.",)))
    return SectionModel("clt", "Is it the central limit theorem?", tuple(blocks),
                        summary=f"CLT analysis of {analysis.source}")


# --------------------------------------------------------------------------- experiment


def _opt(results: pd.DataFrame) -> str:
    """The optimizer column to group by: ``optimizer_label`` (``sgd-m0.9``) when present."""
    return "optimizer_label" if "optimizer_label" in results.columns else "optimizer"


def _median_table(results: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = results.groupby(by, sort=True)
    aggs = dict(
        tensors=("tensor", "size"),
        relative_change=("relative_change", "median"),
        init_variance_share=("init_variance_share", "median"),
        kurtosis_init=("excess_kurtosis_init", "median"),
        kurtosis_final=("excess_kurtosis_final", "median"),
        shape_distance=("shape_distance", "median"),
        acf_lag1=("acf_lag1", "median"),
        n_eff_ratio=("n_eff_ratio", "median"),
        decay_slope=("decay_slope", "median"),
        test_accuracy=("test_accuracy", "median"),
    )
    if "test_neg_elbo" in results.columns:
        aggs["test_neg_elbo"] = ("test_neg_elbo", "median")
    out = g.agg(**aggs).reset_index()
    for lab in _LABELS:
        out[f"share_{lab}"] = g["verdict"].apply(lambda v, lab=lab: float((v == lab).mean())).values
    return out


_SUMMARY_COLS = (
    Column("tensors", "tensors", "int"),
    Column("relative_change", "|dW|/|W0|", "float"),
    Column("init_variance_share", "W0 share", "percent"),
    Column("kurtosis_init", "kurt W0", "fixed2"),
    Column("kurtosis_final", "kurt WT", "fixed2"),
    Column("shape_distance", "shape KS", "fixed3"),
    Column("acf_lag1", "acf(1)", "fixed2"),
    Column("n_eff_ratio", "n_eff/T", "fixed2"),
    Column("decay_slope", "slope", "fixed2"),
    Column("test_accuracy", "accuracy", "fixed3", "Test accuracy (classifiers)"),
    Column("test_neg_elbo", "test -ELBO", "fixed2", "Test negative ELBO, nats per image (VAE)"),
) + tuple(Column(f"share_{lab}", lab, "percent") for lab in _LABELS)

#: classifiers below this test accuracy count as undertrained in the answer.
UNDERTRAINED_ACCURACY = 0.5


def _pct(n: int, total: int) -> str:
    return f"{n} ({n / total:.0%})" if total else "0"


def _answer(results: pd.DataFrame) -> list[str]:
    """Sentences computed from the results table; each states only what its numbers show.

    The first is the headline (tensor counts by verdict); the second is the answer to the
    question (how many of the tensors the updates dominate accumulate at the CLT's rate); the
    rest break it down (lazy vs rich, initialisation, width, the updates, the VAE, caveats).
    """
    out = []
    n = len(results)
    n_runs = results["run_id"].nunique()
    counts = results["verdict"].value_counts()
    out.append(f"{n} weight tensors in {n_runs} runs: " + ", ".join(
        f"{int(k)} {lab} ({k / n:.0%})" for lab, k in counts.items()) + ".")
    c = {lab: int(counts.get(lab, 0)) for lab in _LABELS}
    moved = n - c["inherited-from-init"]
    if moved:
        slope = results.loc[results["verdict"] != "inherited-from-init", "decay_slope"].median()
        rate = ("close to" if -1.25 <= slope <= -0.75 else
                "slower than" if slope > -0.75 else "faster than")
        out.append(
            f"Answer: {_pct(c['inherited-from-init'], n)} tensors keep their initialisation "
            f"(W_0 explains at least 80% of W_T's variance). Of the {moved} tensors whose "
            f"update dominates, {_pct(c['clt-accumulation'], moved)} accumulate it at the CLT's "
            f"rate, {_pct(c['structured'], moved)} are structured (persistent per-coordinate "
            f"update scales or a mixture: dW tends to a scale mixture, not a Gaussian), "
            f"{_pct(c['heavy-tailed-updates'], moved)} have heavy-tailed updates and "
            f"{_pct(c['undetermined'], moved)} are undetermined. Their median kurtosis-decay "
            f"slope is {slope:.2f}, {rate} the CLT's -1."
        )
    else:
        out.append(f"Answer: all {n} tensors keep their initialisation (W_0 explains at least "
                   "80% of W_T's variance); the updates never dominate, so the CLT is not what "
                   "shapes these weights.")
    if "frozen_share_update" in results.columns:
        fz = results["frozen_share_update"]
        k = int((fz > 0).sum())
        if k:
            out.append(
                f"Frozen coordinates: {_pct(k, n)} tensors have weights whose update is exactly 0 "
                f"(median {fz[fz > 0].median():.1%} of such a tensor, at most {fz.max():.1%}): "
                "no gradient ever reached them (in a first layer, input pixels that are 0 in "
                "every image; deeper, presumably units that never activate). They are counted in the 'frozen' column and "
                "left out of dW's shape and of the trajectory tests."
            )
    opt = _opt(results)
    parts = []
    for (o, lr), g in results.groupby([opt, "lr"], sort=True):
        inh = float((g["verdict"] == "inherited-from-init").mean())
        acc = g.loc[g["model"] != "vae", "test_accuracy"].median() if "model" in g else np.nan
        acc_txt = f", accuracy {acc:.2f}" if np.isfinite(acc) else ""
        parts.append(f"{o} lr {lr:g}: {inh:.0%} inherited (W_0 share "
                     f"{g['init_variance_share'].median():.0%}{acc_txt})")
    out.append("Lazy vs rich training, by optimizer and learning rate (share of tensors "
               "inherited-from-init; median W_0 share; median test accuracy of the "
               "classifiers): " + "; ".join(parts) + ".")
    for init, g in results.groupby("init", sort=False):
        k0 = g["excess_kurtosis_init"].median()
        after = ", ".join(f"{o} {v:.2f}" for o, v in
                          g.groupby(opt)["excess_kurtosis_final"].median().items())
        line = (f"{init} initialisation: median excess kurtosis {k0:.2f} at init; after "
                f"training {after} (Gaussian: 0).")
        if init == "kaiming-uniform":
            stays = float((g["excess_kurtosis_final"] < -0.6).mean())
            line += (f" {stays:.0%} of these tensors still have kurtosis below -0.6, i.e. "
                     "closer to the uniform's -1.2 than to a Gaussian.")
        out.append(line)
    mlp = results[results["model"] == "mlp"] if "model" in results else results.iloc[:0]
    if mlp["width"].nunique() > 1:
        by_w = mlp.groupby("n_hidden_units").agg(width=("width", "first"),
                                                 rel=("relative_change", "median"),
                                                 share=("init_variance_share", "median"))
        out.append("MLP width (median ||dW||/||W_0||, W_0 share): " + ", ".join(
            f"{r.width}: {r.rel:.3g}, {r.share:.0%}" for r in by_w.itertuples()) + ".")
    by_opt = results.groupby(opt)[["acf_lag1", "n_eff_ratio", "decay_slope"]].median()
    if len(by_opt) > 1:
        out.append("Updates: " + "; ".join(
            f"{o} lag-1 autocorrelation {r.acf_lag1:.2f}, n_eff/T {r.n_eff_ratio:.2f}, "
            f"kurtosis decay slope {r.decay_slope:.2f}" for o, r in by_opt.iterrows())
            + " (independent updates: 0, 1 and -1).")
    vae = results[results["model"] == "vae"] if "model" in results else results.iloc[:0]
    if len(vae):
        vc = vae["verdict"].value_counts()
        out.append(f"Gaussian VAE ({len(vae)} encoder/decoder weight tensors): " + ", ".join(
            f"{int(k)} {lab}" for lab, k in vc.items()) + f"; median W_0 share "
            f"{vae['init_variance_share'].median():.0%}, median test negative ELBO "
            f"{vae['test_neg_elbo'].median():.2f} nats per image.")
    clf = results[results["model"] != "vae"] if "model" in results else results
    low = clf.groupby("run_id")["test_accuracy"].first()
    low = low[low < UNDERTRAINED_ACCURACY]
    if len(low):
        share = float((clf.loc[clf["run_id"].isin(low.index), "verdict"]
                       == "inherited-from-init").mean())
        out.append(f"Caveat: {len(low)} classifier runs reached less than "
                   f"{UNDERTRAINED_ACCURACY:.0%} test accuracy, so they are undertrained; "
                   f"{share:.0%} of their tensors are inherited-from-init, which for them "
                   "reflects too little training rather than lazy training of a network that "
                   "fits the data.")
    return out


def experiment_sections(result: Any) -> list[SectionModel]:
    """The experiment grid as report sections (answer, summaries, figures, full table)."""
    res = result.results
    cfg = result.config
    opt = _opt(res)
    answer = _answer(res)
    counts = res["verdict"].value_counts()
    head = SectionModel(
        "clt-answer", "CLT experiment: what the numbers support",
        (KeyNumbers(answer[1], tuple(KeyNumber(lab, int(counts.get(lab, 0)), "int")
                                     for lab in _LABELS)),
         Prose("Findings (medians over tensors)", (answer[0], *answer[2:])),
         Prose("Grid", (str(cfg.get("description", "")),
                        f"Config {cfg.get('name')}: {cfg.get('epochs')} epochs, batch "
                        f"{cfg.get('batch_size')}, seed {cfg.get('seed', 0)}, "
                        f"{cfg.get('record', {}).get('coords')} sampled coordinates per tensor, "
                        "every optimizer step recorded.",))),
        summary="Is a trained weight Gaussian because it is a sum of many updates (CLT), "
                "because of its initialisation, or not at all?",
    )
    tables = SectionModel(
        "clt-summaries", "By initialisation, optimizer, learning rate and width",
        (Table("clt-by-init-opt", "By initialisation and optimizer",
               _median_table(res, ["init", opt]),
               (Column("init", "init", "text"), Column(opt, "optimizer", "text"))
               + _SUMMARY_COLS, interactive=False),
         Table("clt-by-lr", "By optimizer and learning rate",
               _median_table(res, [opt, "lr"]),
               (Column(opt, "optimizer", "text"), Column("lr", "lr", "float"))
               + _SUMMARY_COLS, interactive=False),
         Table("clt-by-width", "By model and width", _median_table(res, ["model", "width"]),
               (Column("model", "model", "text"), Column("width", "width", "text"))
               + _SUMMARY_COLS, interactive=False)),
        summary="Medians over tensors; shares are of tensors with each verdict.",
    )
    figs = []
    if len(result.curves):
        cur = result.curves.merge(res[["run_id", "tensor", "init", opt, "lr", "width",
                                       "model"]], on=["run_id", "tensor"])
        first_tensor = cur.groupby("run_id")["tensor"].transform("first")
        cur = cur[cur["tensor"] == first_tensor]
        for o, g in cur.groupby(opt):
            g = g.assign(label=g["run_id"])
            key = "clt-decay-" + "".join(ch if ch.isalnum() else "-" for ch in str(o).lower())
            figs.append(_decay_figure_block(g, key=key, title=f"{o}: first layer, accumulated "
                                                              "update"))
    figs.append(_share_figure(res, opt))
    figs.append(_kurtosis_figure(res))
    fig_section = SectionModel("clt-figures", "Figures", (FigureGrid("clt-grid", "Evidence",
                                                                     tuple(figs)),))
    full = SectionModel(
        "clt-table", "Every run and tensor",
        (Table("clt-results", "One row per run and tensor", res,
               tuple(Column(c, c, "text") for c in ("run_id",))
               + tuple(c for c in TENSOR_COLUMNS if c.name in res.columns)),),
        summary="The same numbers as OUT/results.csv.",
    )
    meth = SectionModel(
        "clt-methods", "Methods",
        (Prose("How the verdict is reached", (
            "W_0 is the first snapshot, W_T the last, dW = W_T - W_0. 'W0 share' is "
            "corr(W_0, W_T)^2; at 80% or more the tensor is inherited-from-init.",
            "The kurtosis curve is the cross-sectional excess kurtosis of S_n, the sum of the "
            "first n recorded updates of the sampled coordinates. For independent updates "
            "with excess kurtosis kappa_1 it is kappa_1/n. The slope of log|kurtosis| on log n "
            "is fitted at log-spaced n while |kurtosis| exceeds 3 sqrt(24/C), the noise floor "
            "of a sample kurtosis of C values.",
            "Independence: pooled autocorrelation of updates standardised per step; "
            "n_eff = T/tau with Geyer's initial positive sequence. Identical spread: update "
            "variance in the last vs first quarter. Lindeberg: median over coordinates of the "
            "largest single step's share of the summed squares. Structure: Spearman "
            "correlation of per-coordinate mean-square updates between the two halves of the "
            "run, and the excess kurtosis 3 cov/mean^2 those persistent scales imply. Tail: "
            "Hill index of the top 0.2% of step-standardised updates; below 4 the fourth "
            "moment is infinite and the 1/n law does not apply.",
        )),
         References(("C. J. Geyer (1992). Practical Markov chain Monte Carlo. Statistical "
                     "Science 7(4), 473-483.",
                     "B. M. Hill (1975). A simple general approach to inference about the tail "
                     "of a distribution. Annals of Statistics 3(5), 1163-1174.",
                     "L. Chizat, E. Oyallon, F. Bach (2019). On lazy training in "
                     "differentiable programming. NeurIPS."))),
    )
    return [head, tables, fig_section, full, meth]


def _share_figure(res: pd.DataFrame, opt: str = "optimizer") -> Any:
    fig = MplFigure(figsize=(5.2, 3.6))
    ax = fig.subplots()
    for i, (o, g) in enumerate(res.groupby(opt)):
        m = g.groupby("lr")["init_variance_share"].median()
        ax.semilogx(m.index, m.values, marker="o", color=f"C{i}", label=str(o))
        ax.scatter(g["lr"], g["init_variance_share"], s=6, alpha=0.35, color=f"C{i}")
    ax.axhline(0.8, color="0.5", ls=":", lw=0.8)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("share of W_T variance explained by W_0")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return F.encode(fig, key="clt-share-lr", title="Lazy vs rich: W_0's share against learning "
                    "rate", caption="Dots: tensors; line: median. Dotted: the 80% inheritance "
                    "threshold.")


def _kurtosis_figure(res: pd.DataFrame) -> Any:
    fig = MplFigure(figsize=(5.2, 3.6))
    ax = fig.subplots()
    inits = list(dict.fromkeys(res["init"]))
    for i, init in enumerate(inits):
        g = res[res["init"] == init]
        ax.scatter(g["excess_kurtosis_init"], g["excess_kurtosis_final"], s=10, color=f"C{i}",
                   label=init, alpha=0.7)
    lo = float(np.nanmin(res[["excess_kurtosis_init", "excess_kurtosis_final"]].to_numpy()))
    hi = float(np.nanmax(res[["excess_kurtosis_init", "excess_kurtosis_final"]].to_numpy()))
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, ls="--")
    ax.axhline(0, color="0.5", lw=0.6, ls=":")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("excess kurtosis of W_0")
    ax.set_ylabel("excess kurtosis of W_T")
    ax.legend(fontsize=7)
    return F.encode(fig, key="clt-kurtosis-init-final", title="Does the init's shape survive?",
                    caption="On the dashed diagonal W_T keeps W_0's kurtosis (inheritance); on "
                            "the dotted line W_T is Gaussian-like. Symlog axes.")


def write_clt_report(result: Any, path: Any, *, overwrite: bool = False,
                     json_path: Any = None) -> Any:
    """Build the experiment report and write it to `path` (and the report model as JSON to
    `json_path`); refuses to replace an existing file unless `overwrite`."""
    from ..render import write_report

    cfg = result.config
    meta = {"config": str(cfg.get("name")), "runs": int(result.results["run_id"].nunique()),
            "tensors": len(result.results), "seed": int(cfg.get("seed", 0))}
    model = build_report("weightstats: the CLT experiment", experiment_sections(result), meta)
    return write_report(model, path, force=overwrite, json_path=json_path)


def write_analysis_report(analysis: Any, path: Any, *, force: bool = False,
                          json_path: Any = None) -> Any:
    """Write one run's (or checkpoint pair's) CLT analysis as a report: :func:`clt_section`.

    Refuses to replace an existing `path` or `json_path` unless `force`.
    """
    from ..render import write_report

    s = analysis.summary
    meta = {"source": str(analysis.source), "tensors": len(s),
            "trajectories": "recorded" if analysis.trajectories_available else "unavailable"}
    model = build_report(f"weightstats clt: {analysis.source}", [clt_section(analysis)], meta)
    return write_report(model, path, force=force, json_path=json_path)
