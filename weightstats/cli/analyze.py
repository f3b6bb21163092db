"""``weightstats analyze CHECKPOINT...``: a verdict per tensor and the answer for the checkpoint."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import click

from ..errors import InputDataError
from ._common import EXIT_OK, EXIT_PARTIAL, one_line_errors

__all__ = ["command", "format_table", "answer_paragraph"]

_COLOURS = {
    "gaussian": "green",
    "scale-mixture": "cyan",
    "heavy-tailed": "red",
    "light-tailed": "yellow",
    "skewed": "magenta",
    "mixture": "blue",
    "degenerate": "bright_black",
}


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _num(value: Any, spec: str) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(value):
        return ""
    return format(int(value), spec) if spec == "d" else format(value, spec)


# (header, column, formatter, priority: lower survives narrower terminals)
_COLUMNS: list[tuple[str, str, Callable[[Any], str], int]] = [
    ("tensor", "tensor", str, 0),
    ("shape", "shape", lambda v: _text(v).strip("[]").replace(", ", "x"), 2),
    ("dtype", "dtype", lambda v: _text(v), 6),
    ("role", "role", lambda v: _text(v), 3),
    ("n_used", "n_used", lambda v: _num(v, "d"), 7),
    ("best", "best_family", _text, 4),
    ("dBIC(N)", "delta_bic_normal", lambda v: _num(v, ".4g"), 5),
    ("kurt", "excess_kurtosis", lambda v: _num(v, ".2f"), 3),
    ("skew", "skewness", lambda v: _num(v, ".2f"), 6),
    ("W1", "wasserstein1", lambda v: _num(v, ".3f"), 8),
    ("tail", "tail_index", lambda v: _num(v, ".2f"), 7),
    ("pooled", "verdict_pooled", _text, 5),
    ("per-row", "verdict_rowwise", _text, 4),
    ("rowSW", "row_sw_pass_rate", lambda v: _num(v, ".0%"), 4),
    ("KS(init)", "ks_kaiming_uniform", lambda v: _num(v, ".3f"), 5),
    ("verdict", "verdict", _text, 0),
]


def _ellipsize(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = max(width - 1, 1)
    head = keep // 3
    return text[:head] + "…" + text[len(text) - (keep - head) :]


def format_table(frame, *, width: int | None = None, colour: bool = True) -> list[str]:
    """Lines of the terminal table, fitted to `width` columns (skipped rows show their note)."""
    width = width or shutil.get_terminal_size((160, 24)).columns
    cells = []
    for _, row in frame.iterrows():
        if row["status"] in ("skipped", "failed"):
            cells.append(
                {
                    "tensor": _text(row["tensor"]),
                    "verdict": row["status"],
                    "_note": _text(row["note"]),
                }
            )
        else:
            cells.append({header: fmt(row[col]) for header, col, fmt, _ in _COLUMNS})
    columns = list(_COLUMNS)
    widths = {h: max([len(h)] + [len(c.get(h, "")) for c in cells]) for h, *_ in columns}
    name_cap = 48
    widths["tensor"] = min(widths["tensor"], name_cap)

    def total(cols):
        return sum(widths[h] for h, *_ in cols) + 2 * (len(cols) - 1)

    while total(columns) > width:
        droppable = [c for c in columns if c[3] > 0]
        if droppable:
            columns.remove(max(droppable, key=lambda c: c[3]))
        elif widths["tensor"] > 12:
            widths["tensor"] = max(12, widths["tensor"] - (total(columns) - width))
        else:
            break
    lines = ["  ".join(h.ljust(widths[h]) for h, *_ in columns).rstrip()]
    span = total(columns) - widths["tensor"] - widths["verdict"] - 4
    for c in cells:
        if "_note" in c:  # skipped / failed: the reason spans the middle columns
            verdict = c["verdict"].ljust(widths["verdict"])
            if colour:
                verdict = click.style(verdict, fg="bright_black")
            lines.append(
                "  ".join(
                    [
                        _ellipsize(c["tensor"], widths["tensor"]).ljust(widths["tensor"]),
                        _ellipsize(c["_note"], max(span, 10)).ljust(max(span, 10)),
                        verdict,
                    ]
                ).rstrip()
            )
            continue
        parts = []
        for h, *_ in columns:
            text = _ellipsize(c.get(h, ""), widths[h]).ljust(widths[h])
            if h == "verdict" and colour:
                colour_name = _COLOURS.get(c.get(h, ""), "bright_black")
                text = click.style(text, fg=colour_name, bold=c.get(h) != "degenerate")
            parts.append(text)
        lines.append("  ".join(parts).rstrip())
    return lines


def _roles_summary(frame) -> list[str]:
    analysed = frame[frame["status"] == "analysed"]
    if analysed.empty:
        return []
    counts = analysed.groupby(["role", "verdict"]).size().unstack(fill_value=0)
    verdicts = [v for v in _COLOURS if v in counts.columns]
    role_w = max(len("role"), *(len(str(r)) for r in counts.index))
    widths = {v: max(len(v), 3) for v in verdicts}
    out = ["role".ljust(role_w) + "  " + "  ".join(v.rjust(widths[v]) for v in verdicts)]
    for role, row in counts.iterrows():
        out.append(
            str(role).ljust(role_w)
            + "  "
            + "  ".join(str(int(row[v])).rjust(widths[v]) for v in verdicts)
        )
    return out


def answer_paragraph(frame) -> str:
    """The one-paragraph answer to "are these weights Gaussian?" for an analysed frame."""
    analysed = frame[frame["status"] == "analysed"]
    n_skipped = int((frame["status"] == "skipped").sum())
    n_failed = int((frame["status"] == "failed").sum())
    if analysed.empty:
        return (
            f"No tensor could be analysed ({n_skipped} skipped, {n_failed} failed); "
            "see the notes in the table."
        )
    weights = analysed[analysed["fan_in"].notna() | (analysed["role"] == "embedding")]
    base = weights if not weights.empty else analysed
    counts = base["verdict"].value_counts()
    n = len(base)
    if weights.empty:
        what = "tensor" if n == 1 else "tensors"
    else:
        what = "weight matrix" if n == 1 else "weight matrices"
    parts = [f"{counts[v]} {v}" for v in _COLOURS if v in counts]
    values = int(base["numel"].sum())
    share_gauss = counts.get("gaussian", 0) / n
    share_sm = counts.get("scale-mixture", 0) / n
    if share_gauss >= 0.75:
        head = "Mostly yes"
    elif share_gauss + share_sm >= 0.75:
        head = "Per unit, mostly yes"
    elif share_gauss + share_sm >= 0.4:
        head = "Partly"
    else:
        head = "Mostly no"
    text = [f"{head}: of {n} {what} ({values:,} values), " + ", ".join(parts) + "."]
    kurt = base["excess_kurtosis"].median()
    if math.isfinite(kurt):
        text.append(f"Median excess kurtosis {kurt:.2f} (0 for a Gaussian).")
    if share_sm:
        text.append(
            "Scale mixtures are heavy-tailed only because units have different scales; "
            "standardised per row they are Gaussian."
        )
    rate = base["row_sw_pass_rate"].median()
    if math.isfinite(rate):
        text.append(
            f"Median share of rows passing Shapiro-Wilk: {rate:.0%} (95% expected if Gaussian)."
        )
    ks = base["ks_kaiming_uniform"].median()
    ks_n = base["ks_normal_init"].median()
    if math.isfinite(ks):
        near = (
            "still close to" if min(ks, ks_n if math.isfinite(ks_n) else 1) < 0.05 else "away from"
        )
        text.append(
            f"Median KS distance to PyTorch's default Kaiming-uniform init {ks:.3f} "
            f"(to a normal init of the same sd {ks_n:.3f}): the weights are {near} their init."
        )
    if n_skipped or n_failed:
        skipped = f"{n_skipped} tensor{'' if n_skipped == 1 else 's'} skipped"
        text.append(f"{skipped} and {n_failed} failed (reasons in the table).")
    return " ".join(text)


# --------------------------------------------------------------------------- outputs


def _check_outputs(paths: dict[str, str | None], force: bool) -> None:
    seen = {}
    for option, path in paths.items():
        if not path:
            continue
        real = os.path.abspath(path)
        if real in seen:
            raise InputDataError(f"{option} and {seen[real]} name the same file {path!r}.")
        seen[real] = option
        if os.path.isdir(path):
            raise InputDataError(f"{option} {path!r} is a directory; give a file name.")
        if os.path.exists(path) and not force:
            raise InputDataError(f"{option}: {path!r} exists; pass --force to overwrite it.")
        parent = os.path.dirname(real)
        if not os.path.isdir(parent):
            raise InputDataError(f"{option}: directory {parent!r} does not exist.")


def _atomic_write(path: str, write: Callable[[str], None]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".weightstats-", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _meta(frame) -> dict[str, Any]:
    return json.loads(json.dumps(frame.attrs, default=str))


def write_outputs(frame, *, csv: str | None, json_path: str | None, parquet: str | None) -> None:
    """Write the tidy frame (with its provenance in ``attrs``) to the requested files."""
    meta = _meta(frame)
    if csv:

        def write_csv(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                for key, value in meta.items():
                    fh.write(f"# {key}: {json.dumps(value)}\n")
                frame.to_csv(fh, index=False)

        _atomic_write(csv, write_csv)
    if json_path:

        def write_json(tmp: str) -> None:
            rows = json.loads(frame.to_json(orient="records"))
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"meta": meta, "rows": rows}, fh, indent=1)

        _atomic_write(json_path, write_json)
    if parquet:

        def write_parquet(tmp: str) -> None:
            out = frame.copy()
            out.attrs = meta
            out.to_parquet(tmp, index=False, engine="pyarrow")

        _atomic_write(parquet, write_parquet)


# --------------------------------------------------------------------------- command


@click.command("analyze")
@click.argument("checkpoints", nargs=-1, required=True, metavar="CHECKPOINT...")
@click.option(
    "--include",
    multiple=True,
    metavar="GLOB",
    help="Analyse only tensors matching a glob (repeatable).",
)
@click.option(
    "--exclude", multiple=True, metavar="GLOB", help="Skip tensors matching a glob (repeatable)."
)
@click.option(
    "--min-numel",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Skip tensors with fewer values.",
)
@click.option(
    "--max-samples",
    type=int,
    default=200_000,
    show_default=True,
    help="Fit each tensor on a seeded random subsample of N values (n_used); 0 uses every value.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Global seed (per-tensor seeds derive from it and the name).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes; results do not depend on it.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="Send the work to this Dask distributed scheduler.",
)
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the full tidy frame as CSV."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False),
    help="Write the full tidy frame as JSON.",
)
@click.option(
    "--parquet",
    "parquet_path",
    type=click.Path(dir_okay=False),
    help="Write the full tidy frame as Parquet.",
)
@click.option(
    "-o", "--output", "report_path", type=click.Path(dir_okay=False), help="Write an HTML report."
)
@click.option(
    "--json-report",
    "json_report",
    type=click.Path(dir_okay=False),
    help="Write the HTML report's model as JSON.",
)
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress bar, table or summary (errors still print)."
)
@click.option(
    "--unsafe-allow-pickle",
    is_flag=True,
    help="Load pickles that run code. Only for files you trust.",
)
@one_line_errors
def command(
    checkpoints,
    include,
    exclude,
    min_numel,
    max_samples,
    seed,
    jobs,
    scheduler,
    csv_path,
    json_path,
    parquet_path,
    report_path,
    json_report,
    force,
    quiet,
    unsafe_allow_pickle,
) -> None:
    """Are the weights in CHECKPOINT Gaussian? One verdict per tensor.

    CHECKPOINT is a PyTorch (.pt/.pth/.bin/.ckpt), safetensors, sharded Hugging Face
    (directory or *.index.json), numpy (.npz/.npy), Keras (.keras/.h5) or ONNX file; the
    format is read from the file's bytes. Several checkpoints give one table with a
    `checkpoint` column.

    \b
    Exit codes:
      0  done
      1  finished, but some tensors could not be analysed (status 'failed')
      2  bad input: unreadable or unsafe checkpoint, bad option, existing output file
    """
    from ..analysis.checkpoint import MIN_VALUES, analyze_checkpoint

    if max_samples != 0 and max_samples < MIN_VALUES:
        raise InputDataError(
            f"--max-samples must be 0 (every value) or at least {MIN_VALUES}; got {max_samples}."
        )

    if report_path and len(checkpoints) > 1:
        raise InputDataError("-o/--output makes a report of one checkpoint; give only one.")
    if json_report and not report_path:
        raise InputDataError("--json-report needs -o/--output REPORT.html as well.")
    _check_outputs(
        {
            "--csv": csv_path,
            "--json": json_path,
            "--parquet": parquet_path,
            "--output": report_path,
            "--json-report": json_report,
        },
        force,
    )
    show_progress = not quiet and sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=0, unit="tensor", file=sys.stderr, disable=not show_progress, leave=False)

    def on_total(n: int) -> None:
        bar.reset(total=n)

    try:
        frame = analyze_checkpoint(
            list(checkpoints),
            include=include,
            exclude=exclude,
            min_numel=min_numel,
            max_samples=max_samples or None,
            seed=seed,
            jobs=jobs,
            scheduler=scheduler,
            allow_pickle=unsafe_allow_pickle,
            progress=bar.update,
            on_total=on_total,
        )
    finally:
        bar.close()
    write_outputs(frame, csv=csv_path, json_path=json_path, parquet=parquet_path)
    if report_path:
        _write_report(frame, checkpoints[0], report_path, json_report, force, unsafe_allow_pickle)
    if not quiet:
        colour = sys.stdout.isatty()
        for label, part in frame.groupby("checkpoint", sort=False):
            if frame["checkpoint"].nunique() > 1:
                click.echo(click.style(str(label), bold=True), color=colour)
            for line in format_table(part, colour=colour):
                click.echo(line, color=colour)
            click.echo("")
        summary = _roles_summary(frame)
        if summary:
            click.echo("Verdicts by role:")
            for line in summary:
                click.echo("  " + line)
            click.echo("")
        click.echo(answer_paragraph(frame))
    failed = int((frame["status"] == "failed").sum())
    if failed:
        click.echo(
            f"weightstats: {failed} tensor(s) could not be analysed; see their notes.", err=True
        )
        sys.exit(EXIT_PARTIAL)
    sys.exit(EXIT_OK)


def _write_report(frame, checkpoint, report_path, json_report, force, allow_pickle) -> None:
    try:
        from ..report.checkpoint_report import write_checkpoint_report
    except ImportError:
        raise InputDataError(
            "-o/--output needs weightstats.report, which is not installed."
        ) from None
    from ..io.checkpoint import open_checkpoint

    with open_checkpoint(checkpoint, allow_pickle=allow_pickle) as ckpt:
        write_checkpoint_report(
            frame,
            ckpt.load,
            Path(report_path),
            force=force,
            json_path=Path(json_report) if json_report else None,
        )
