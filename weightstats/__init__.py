"""weightstats: are neural-network weights and VAE latents Gaussian, and why?

The public API is gathered here. Names are imported lazily (PEP 562), so ``import weightstats``
stays fast and pays for torch, matplotlib or statsmodels only when a name that needs them is used.

Statistics on any array or tensor
    :func:`fit`, :func:`fit_families`, :func:`fit_gaussian_mixture`,
    :func:`select_gaussian_mixture`, :func:`compare_fits`, :func:`heldout_loglik`,
    :func:`normality`, :func:`effect_sizes`, :func:`shape_verdict`, :func:`classify_shape`,
    :func:`decide_shape`, :func:`tail_summary`
Checkpoints
    :func:`open_checkpoint`, :func:`analyze_checkpoint`
Training capture
    :class:`WeightRecorder`, :class:`LatentRecorder`, :class:`RunStore`, :func:`watch`,
    :func:`unwatch`
Analyses of runs
    :func:`analyze_clt`, :func:`analyze_clt_arrays`, :func:`analyze_latent`
Reports
    :func:`write_checkpoint_report`, :func:`build_report`, :func:`write_report`
Reference models
    :mod:`weightstats.vae` (VAEs with Gaussian, vMF, Power Spherical, mixture-prior, M2 and
    Student-t latents), :mod:`weightstats.nets` (digits classifiers),
    :mod:`weightstats.datasets`
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    CheckpointError,
    ConvergenceWarning,
    DegenerateDataWarning,
    FitError,
    InputDataError,
    RunStoreError,
    SmallSampleWarning,
    UnsafeCheckpointError,
    WeightstatsError,
    WeightstatsWarning,
)

__version__ = "0.1.0"

#: public name -> module that defines it
_LAZY = {
    # statistics engine
    "FitResult": "weightstats.stats.fit",
    "fit": "weightstats.stats.fit",
    "fit_families": "weightstats.stats.fit",
    "MixtureFit": "weightstats.stats.mixture",
    "GaussianMixtureDist": "weightstats.stats.mixture",
    "fit_gaussian_mixture": "weightstats.stats.mixture",
    "select_gaussian_mixture": "weightstats.stats.mixture",
    "ComparisonResult": "weightstats.stats.compare",
    "compare_fits": "weightstats.stats.compare",
    "heldout_loglik": "weightstats.stats.compare",
    "EffectSizes": "weightstats.stats.normality",
    "effect_sizes": "weightstats.stats.normality",
    "normality": "weightstats.stats.normality",
    "normality_with_effects": "weightstats.stats.normality",
    "ShapeVerdict": "weightstats.stats.verdict",
    "classify_shape": "weightstats.stats.verdict",
    "decide_shape": "weightstats.stats.verdict",
    "shape_verdict": "weightstats.stats.verdict",
    "tail_summary": "weightstats.stats.tails",
    # checkpoints
    "Checkpoint": "weightstats.io.checkpoint",
    "open_checkpoint": "weightstats.io.checkpoint",
    "analyze_checkpoint": "weightstats.analysis.checkpoint",
    "analyze_tensor": "weightstats.analysis.checkpoint",
    # training capture
    "WeightRecorder": "weightstats.capture.hooks",
    "LatentRecorder": "weightstats.capture.latent",
    "RunStore": "weightstats.capture.store",
    "Trajectories": "weightstats.capture.store",
    "watch": "weightstats.capture.hooks",
    "unwatch": "weightstats.capture.hooks",
    # analyses of runs
    "analyze_clt": "weightstats.analysis.clt",
    "CLTAnalysis": "weightstats.analysis.clt",
    "analyze_clt_arrays": "weightstats.analysis.clt",
    "analyze_latent": "weightstats.analysis.latent",
    "run_clt_experiment": "weightstats.experiments.clt",
    "LatentAnalysis": "weightstats.analysis.latent",
    # reports
    "ReportModel": "weightstats.report.model",
    "SectionModel": "weightstats.report.model",
    "build_report": "weightstats.report.model",
    "write_report": "weightstats.report.render",
    "write_checkpoint_report": "weightstats.report.checkpoint_report",
}

__all__ = [
    "__version__",
    "WeightstatsError",
    "InputDataError",
    "CheckpointError",
    "UnsafeCheckpointError",
    "FitError",
    "RunStoreError",
    "WeightstatsWarning",
    "DegenerateDataWarning",
    "SmallSampleWarning",
    "ConvergenceWarning",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'weightstats' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
