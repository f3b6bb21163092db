"""The checkpoint report in one call, for ``weightstats analyze CKPT -o report.html``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputDataError
from .model import ReportModel, build_report
from .render import write_report
from .sections.checkpoint import checkpoint_sections

__all__ = ["checkpoint_report", "write_checkpoint_report"]


def _meta(frame: pd.DataFrame) -> dict[str, Any]:
    attrs = dict(frame.attrs)
    meta: dict[str, Any] = {}
    if "checkpoint" in frame.columns and len(frame):
        names = pd.unique(frame["checkpoint"].astype(str))
        meta["checkpoint"] = ", ".join(names[:3]) + (" \u2026" if len(names) > 3 else "")
    for key in ("format", "sha256", "seed"):
        if key in attrs:
            meta[key] = attrs[key]
    versions = dict(attrs.get("versions", {}))
    for key, value in attrs.items():  # "numpy_version": "2.4" -> versions["numpy"]
        if key.endswith("_version"):
            versions[key[: -len("_version")]] = value
    for key, value in attrs.items():  # anything else the analysis recorded, in its order
        if (
            key not in meta
            and not key.endswith("_version")
            and key != "versions"
            and isinstance(value, (str, int, float))
        ):
            meta[key] = value
    if versions:
        meta["versions"] = versions
    return meta


def checkpoint_report(
    frame: pd.DataFrame,
    values: Callable[[str], np.ndarray],
    *,
    title: str | None = None,
    max_tensors: int = 10,
    rng: Any = None,
) -> ReportModel:
    """Build the report model of one checkpoint (see :func:`write_checkpoint_report`)."""
    if not isinstance(frame, pd.DataFrame):
        raise InputDataError(
            f"`frame` must be the DataFrame of analyze_checkpoint; got {type(frame).__name__}."
        )
    meta = _meta(frame)
    if rng is None:
        rng = frame.attrs.get("seed", 0)
    if title is None:
        title = (
            f"Are the weights of {meta['checkpoint']} Gaussian?"
            if "checkpoint" in meta
            else "Are these weights Gaussian?"
        )
    sections = checkpoint_sections(frame, values, max_tensors=max_tensors, rng=rng)
    return build_report(title, sections, meta)


def write_checkpoint_report(
    frame: pd.DataFrame,
    values: Callable[[str], np.ndarray],
    path: Any,
    *,
    force: bool = False,
    json_path: Any = None,
    title: str | None = None,
) -> Path:
    """Write the self-contained HTML report of one checkpoint (and optionally its JSON).

    Parameters
    ----------
    frame : pandas.DataFrame
        The per-tensor frame of :func:`weightstats.analysis.checkpoint.analyze_checkpoint`.
    values : callable
        ``values(tensor_name) -> numpy float64 array``: the tensor's values (e.g.
        ``Checkpoint.load``), called for the few tensors that get figures.
    path : path-like
        HTML file to write. An existing file is never replaced unless `force`.
    force : bool
        Replace existing output files.
    json_path : path-like, optional
        Also write the report model as JSON (``--json-report``).
    title : str, optional
        Defaults to "Are the weights of <checkpoint> Gaussian?".

    Returns
    -------
    pathlib.Path
        The HTML file written.

    Notes
    -----
    Subsampling and mixture fits for the figures are seeded with ``frame.attrs['seed']``
    (0 if absent), so the same frame gives the same report.
    """
    model = checkpoint_report(frame, values, title=title)
    return write_report(model, path, force=force, json_path=json_path)
