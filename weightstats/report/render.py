"""Render a :class:`~weightstats.report.model.ReportModel` to HTML and JSON, and write it safely.

* HTML: Jinja2 templates from package data (``PackageLoader('weightstats', 'report/templates')``)
  with autoescape on, so tensor names from untrusted checkpoints are always text. CSS and the
  sorting/filtering script are inlined, figures are ``data:`` URIs, and a Content-Security-Policy
  (``default-src 'none'``, script and style allowed only by their SHA-256) guarantees that the
  page makes no request and runs no script but its own, even if an escaping bug slipped in.
* Numbers are formatted here and only here, by the ``fmt`` filter (:func:`format_value`).
* JSON: the same model, numbers raw (NaN -> null), figures as metadata plus the numbers they show.
* :func:`write_report` writes to a temporary file in the target directory and renames it into
  place, so a crash never leaves half a report, and refuses to replace a file unless ``force``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import numbers
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from ..errors import InputDataError
from .model import Figure, ReportModel, Table

__all__ = [
    "VERDICT_CLASSES",
    "format_value",
    "render_html",
    "render_json",
    "report_to_dict",
    "sort_key",
    "write_report",
]

#: verdict label -> CSS class of its badge (anything else gets ``v-other``).
VERDICT_CLASSES = {
    "gaussian": "v-gaussian",
    "heavy-tailed": "v-heavy",
    "scale-mixture": "v-scalemix",
    "light-tailed": "v-light",
    "skewed": "v-skewed",
    "mixture": "v-mixture",
    "degenerate": "v-degenerate",
}

_DASH = "\u2013"


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, np.floating) and np.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def _shape_tuple(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, str):
        parts = [p for p in value.strip("()[] ").replace("x", ",").split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            return None
    if isinstance(value, (tuple, list, np.ndarray)):
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            return None
    return None


def format_value(value: Any, fmt: str = "float") -> str:
    """Format one raw value for display (the ``fmt`` Jinja filter).

    Missing values (None, NaN) show as an en dash. See :data:`weightstats.report.model.FORMATS`.
    """
    if _is_missing(value):
        return _DASH
    if fmt in ("text", "verdict"):
        return str(value)
    if fmt == "shape":
        dims = _shape_tuple(value)
        return str(value) if dims is None else "\u00d7".join(str(d) for d in dims) or "scalar"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if not isinstance(value, numbers.Real):
        return str(value)
    v = float(value)
    if math.isinf(v):
        return "\u221e" if v > 0 else "\u2212\u221e"
    if fmt == "int":
        return f"{int(round(v)):,}"
    if fmt == "params":
        for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(v) >= div:
                return f"{v / div:.3g}\u202f{unit}"
        return f"{int(round(v))}"
    if fmt == "percent":
        return f"{100 * v:.1f}\u202f%"
    if fmt == "fixed2":
        return f"{v:.2f}"
    if fmt == "fixed3":
        return f"{v:.3f}"
    if fmt == "sci":
        return f"{v:.2e}"
    # "float": 4 significant digits, plain notation for moderate magnitudes
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


def sort_key(value: Any, fmt: str = "float") -> str:
    """The ``data-v`` attribute the page's script sorts by: raw number, or text; '' if missing."""
    if _is_missing(value):
        return ""
    if fmt == "shape":
        dims = _shape_tuple(value)
        return "" if dims is None else repr(float(np.prod(dims, dtype=float)))
    if fmt in ("text", "verdict") or not isinstance(value, numbers.Real):
        return str(value)
    return repr(float(value))


def verdict_class(value: Any) -> str:
    """CSS class for a verdict badge (fixed vocabulary; never derived from the text itself)."""
    return VERDICT_CLASSES.get(str(value), "v-other")


def data_uri(figure: Figure) -> str:
    """``data:`` URI of a figure (base64), so the page needs no file next to it."""
    return f"data:{figure.mime};base64," + base64.b64encode(bytes(figure.data)).decode("ascii")


def _table_rows(table: Table) -> list[list[Any]]:
    cols = [c.name for c in table.shown_columns()]
    frame = table.frame[cols]
    return [list(row) for row in frame.itertuples(index=False, name=None)]


def _meta_items(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten metadata to (label, text) pairs for the header (nested mappings joined)."""
    items: list[tuple[str, str]] = []
    for key, value in meta.items():
        if isinstance(value, Mapping):
            text = ", ".join(f"{k} {v}" for k, v in value.items())
        else:
            text = format_value(value, "text")
        items.append((str(key).replace("_", " "), text))
    return items


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("weightstats", "report/templates"),
        autoescape=True,  # every template, whatever its extension: names are untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    env.filters["sortkey"] = sort_key
    env.filters["verdict_class"] = verdict_class
    env.filters["present"] = lambda value: not _is_missing(value)
    env.filters["datauri"] = data_uri
    env.globals["table_rows"] = _table_rows
    return env


def _asset(env: jinja2.Environment, name: str) -> str:
    source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    return source


def render_html(model: ReportModel) -> str:
    """Render the report as one self-contained HTML page (no external request of any kind)."""
    if not isinstance(model, ReportModel):
        raise InputDataError(f"`model` must be a ReportModel; got {type(model).__name__}.")
    env = _environment()
    style = _asset(env, "report.css")
    script = _asset(env, "report.js")
    csp = (
        "default-src 'none'; img-src data:; "
        f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
        "base-uri 'none'; form-action 'none'"
    )
    return env.get_template("report.html.j2").render(
        model=model,
        meta_items=_meta_items(model.meta),
        style=Markup(style),  # package files, not user data: inlined verbatim
        script=Markup(script),
        csp=csp,
        version=_version(),
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("weightstats")
    except PackageNotFoundError:  # running from a source tree without installing
        return "unknown"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        return v if math.isfinite(v) else (None if math.isnan(v) else str(v))
    if isinstance(value, (_dt.date, _dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (str, int, float)):
        return value
    return str(value)


def _block_to_dict(block: Any) -> dict[str, Any]:
    kind = block.kind
    if kind == "table":
        return {
            "kind": kind,
            "key": block.key,
            "title": block.title,
            "caption": block.caption,
            "columns": [
                {"name": c.name, "label": c.label, "format": c.fmt, "help": c.help}
                for c in block.shown_columns()
            ],
            "records": _jsonable(block.frame.to_dict(orient="records")),
        }
    if kind == "figure":
        return {
            "kind": kind,
            "key": block.key,
            "title": block.title,
            "caption": block.caption,
            "mime": block.mime,
            "bytes": len(block.data),
            "values": _jsonable(block.values),
        }
    if kind == "grid":
        return {
            "kind": kind,
            "key": block.key,
            "title": block.title,
            "caption": block.caption,
            "badge": block.badge,
            "figures": [_block_to_dict(f) for f in block.figures],
        }
    if kind == "numbers":
        return {
            "kind": kind,
            "answer": block.answer,
            "numbers": [
                {
                    "label": n.label,
                    "value": _jsonable(n.value),
                    "format": n.fmt,
                    "detail": n.detail,
                    "detail_value": _jsonable(n.detail_value),
                }
                for n in block.numbers
            ],
        }
    if kind == "prose":
        return {
            "kind": kind,
            "title": block.title,
            "badge": block.badge,
            "paragraphs": list(block.paragraphs),
        }
    if kind == "references":
        return {"kind": kind, "title": block.title, "entries": list(block.entries)}
    raise InputDataError(f"unknown block kind {kind!r}")  # pragma: no cover (model validates)


def report_to_dict(model: ReportModel) -> dict[str, Any]:
    """The report as plain JSON-ready data: the same numbers as the HTML, unformatted."""
    return {
        "title": model.title,
        "generator": {"name": "weightstats", "version": _version()},
        "meta": _jsonable(model.meta),
        "sections": [
            {
                "key": s.key,
                "title": s.title,
                "summary": s.summary,
                "blocks": [_block_to_dict(b) for b in s.blocks],
            }
            for s in model.sections
        ],
    }


def render_json(model: ReportModel) -> str:
    """The report as JSON text (strict JSON: NaN becomes null, infinities the strings 'inf')."""
    return json.dumps(report_to_dict(model), indent=1, allow_nan=False, ensure_ascii=False)


def _check_target(path: Any, name: str, force: bool) -> Path:
    try:
        target = Path(os.fspath(path))
    except TypeError:
        raise InputDataError(f"`{name}` must be a file path; got {type(path).__name__}.") from None
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputDataError(
            f"`{name}`: directory {str(parent)!r} does not exist; create it first."
        )
    if target.is_dir():
        raise InputDataError(f"`{name}` {str(target)!r} is a directory; give a file name.")
    if target.exists() and not force:
        raise InputDataError(
            f"`{name}` {str(target)!r} already exists; "
            "pass force=True (CLI: --force) to replace it."
        )
    return target


def _atomic_write(target: Path, data: bytes, *, force: bool) -> None:
    """Write `data` to a temporary file beside `target`, then move it into place atomically."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        if force:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)  # atomic create-if-absent: never replaces a file that appeared
        except FileExistsError:
            raise InputDataError(
                f"{str(target)!r} appeared while writing; pass force=True to replace it."
            ) from None
        except OSError:  # file system without hard links
            if target.exists():
                raise InputDataError(
                    f"{str(target)!r} already exists; pass force=True to replace it."
                ) from None
            os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_report(
    model: ReportModel, path: Any, *, force: bool = False, json_path: Any = None
) -> Path:
    """Write the report as HTML (and optionally JSON), atomically and without clobbering.

    Parameters
    ----------
    model : ReportModel
        From :func:`weightstats.report.model.build_report`.
    path : path-like
        The HTML file to write.
    force : bool
        Replace existing files; without it an existing `path` or `json_path` raises
        :class:`~weightstats.errors.InputDataError` and nothing is written.
    json_path : path-like, optional
        Also write the report model as JSON (the CLI's ``--json-report``).

    Returns
    -------
    pathlib.Path
        The HTML file written.
    """
    target = _check_target(path, "path", force)
    json_target = None if json_path is None else _check_target(json_path, "json_path", force)
    if json_target is not None and json_target.resolve() == target.resolve():
        raise InputDataError("`json_path` is the same file as `path`; give two different names.")
    html = render_html(model).encode("utf-8")  # render both before touching the disk
    js = None if json_target is None else render_json(model).encode("utf-8")
    if json_target is not None and js is not None:
        _atomic_write(json_target, js, force=force)
    _atomic_write(target, html, force=force)
    return target
