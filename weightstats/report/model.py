"""The report model: pure data that the HTML and the JSON are both rendered from.

A report is a :class:`ReportModel` (title, metadata, sections). A :class:`SectionModel` is an
ordered list of blocks; each block is one of

* :class:`KeyNumbers` -- a headline: a few labelled numbers and a one-sentence answer,
* :class:`Table` -- a plain DataFrame plus per-column display hints (:class:`Column`),
* :class:`Figure` -- an encoded image (SVG or PNG bytes) with a title and a caption,
* :class:`FigureGrid` -- several figures shown side by side (the per-tensor evidence),
* :class:`Prose` -- a titled list of plain-text paragraphs (never HTML; it is escaped),
* :class:`References` -- a list of literature references.

Numbers stay raw here (floats, ints, NaN); digits are chosen only when rendering, by the Jinja
filters of :mod:`weightstats.report.render`, and the JSON carries the raw values. Nothing in
this module imports matplotlib or Jinja.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import pandas as pd

from ..errors import InputDataError

__all__ = [
    "FORMATS",
    "Block",
    "Column",
    "Figure",
    "FigureGrid",
    "KeyNumber",
    "KeyNumbers",
    "Prose",
    "References",
    "ReportModel",
    "SectionModel",
    "Table",
    "build_report",
]

#: How a value may be shown; the render filter ``fmt`` implements each one.
#: text: as is; int: 1,234,567; float: 4 significant digits; fixed2/fixed3: 2/3 decimals;
#: sci: 1.23e-05; percent: 0.123 -> 12.3 %; shape: (256, 784); params: 1.2 M.
FORMATS = frozenset(
    {"text", "int", "float", "fixed2", "fixed3", "sci", "percent", "shape", "params", "verdict"}
)

_KEY_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


def _check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InputDataError(
            f"`{what}` must be a short lowercase identifier (letters, digits, '-'), "
            f"used as an HTML anchor; got {key!r}."
        )
    return key


def _check_format(fmt: str, what: str) -> str:
    if fmt not in FORMATS:
        raise InputDataError(f"`{what}` must be one of {sorted(FORMATS)}; got {fmt!r}.")
    return fmt


@dataclass(frozen=True)
class Column:
    """How one column of a :class:`Table` is shown.

    Attributes
    ----------
    name : str
        Column of the DataFrame.
    label : str
        Header text.
    fmt : str
        One of :data:`FORMATS`.
    help : str
        Tooltip for the header (what the column measures).
    """

    name: str
    label: str
    fmt: str = "float"
    help: str = ""

    def __post_init__(self) -> None:
        _check_format(self.fmt, f"Column({self.name!r}).fmt")


@dataclass(frozen=True)
class KeyNumber:
    """One labelled number of a headline.

    Shown as ``value`` (formatted with ``fmt``) over ``label``, then an optional smaller line
    ``detail_value detail`` (e.g. ``2`` ``tensors``), ``detail_value`` formatted with
    ``detail_fmt``. Values stay raw.
    """

    label: str
    value: Any
    fmt: str = "int"
    detail: str = ""
    detail_value: Any = None
    detail_fmt: str = "int"

    def __post_init__(self) -> None:
        _check_format(self.fmt, f"KeyNumber({self.label!r}).fmt")
        _check_format(self.detail_fmt, f"KeyNumber({self.label!r}).detail_fmt")


@dataclass(frozen=True)
class KeyNumbers:
    """A headline: one sentence that answers the question, then a row of key numbers."""

    answer: str
    numbers: tuple[KeyNumber, ...] = ()
    kind: str = field(default="numbers", init=False)


@dataclass(frozen=True)
class Table:
    """A plain DataFrame with display hints; rendered sortable and filterable.

    Attributes
    ----------
    key : str
        Identifier (HTML id, JSON key).
    title : str
        Heading shown above the table.
    frame : pandas.DataFrame
        Raw numbers; only the columns listed in `columns` are shown, the JSON carries them all.
    columns : tuple of Column
        Shown columns in order; empty means every column, formatted as ``float``/``text``.
    caption : str
        One or two sentences under the table.
    interactive : bool
        Sortable headers and a filter box (the per-tensor table); off for small summaries.
    """

    key: str
    title: str
    frame: pd.DataFrame
    columns: tuple[Column, ...] = ()
    caption: str = ""
    interactive: bool = True
    kind: str = field(default="table", init=False)

    def __post_init__(self) -> None:
        _check_key(self.key, "Table.key")
        if not isinstance(self.frame, pd.DataFrame):
            raise InputDataError(
                f"`Table.frame` must be a pandas DataFrame; got {type(self.frame).__name__}."
            )
        missing = [c.name for c in self.columns if c.name not in self.frame.columns]
        if missing:
            raise InputDataError(
                f"`Table({self.key!r}).columns` names columns the frame lacks: {missing}."
            )

    def shown_columns(self) -> tuple[Column, ...]:
        """The columns to display: `columns`, or every column of the frame with a default format."""
        if self.columns:
            return self.columns
        return tuple(
            Column(str(c), str(c), "float" if pd.api.types.is_float_dtype(dt) else "text")
            for c, dt in self.frame.dtypes.items()
        )

    def __repr__(self) -> str:
        return (
            f"Table(key={self.key!r}, rows={len(self.frame)}, columns={len(self.shown_columns())})"
        )


@dataclass(frozen=True)
class Figure:
    """An encoded figure.

    Attributes
    ----------
    key : str
        Identifier.
    title : str
        Short title shown above the image (plain text).
    data : bytes
        The encoded image (SVG text or PNG bytes).
    mime : str
        ``'image/svg+xml'`` or ``'image/png'``.
    caption : str
        What to look at in the figure.
    alt : str
        Text alternative for screen readers.
    values : Mapping
        The numbers the figure shows that are not already in a table (fitted parameters, tail
        index...), exported to JSON so no number depends on the picture.
    """

    key: str
    title: str
    data: bytes
    mime: str = "image/svg+xml"
    caption: str = ""
    alt: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)
    kind: str = field(default="figure", init=False)

    def __post_init__(self) -> None:
        _check_key(self.key, "Figure.key")
        if self.mime not in {"image/svg+xml", "image/png"}:
            raise InputDataError(
                f"`Figure.mime` must be 'image/svg+xml' or 'image/png'; got {self.mime!r}."
            )
        if not isinstance(self.data, (bytes, bytearray)) or not self.data:
            raise InputDataError(f"`Figure({self.key!r}).data` must be non-empty bytes.")

    def __repr__(self) -> str:
        return (
            f"Figure(key={self.key!r}, title={self.title!r}, {self.mime}, {len(self.data)} bytes)"
        )


@dataclass(frozen=True)
class FigureGrid:
    """Figures shown side by side under one heading (e.g. the four views of one tensor)."""

    key: str
    title: str
    figures: tuple[Figure, ...]
    caption: str = ""
    badge: str = ""
    kind: str = field(default="grid", init=False)

    def __post_init__(self) -> None:
        _check_key(self.key, "FigureGrid.key")


@dataclass(frozen=True)
class Prose:
    """A titled list of plain-text paragraphs (escaped when rendered; no HTML)."""

    title: str
    paragraphs: tuple[str, ...]
    badge: str = ""
    kind: str = field(default="prose", init=False)


@dataclass(frozen=True)
class References:
    """Literature cited by a section, one plain-text entry each."""

    entries: tuple[str, ...]
    title: str = "References"
    kind: str = field(default="references", init=False)


Block = Union[KeyNumbers, Table, Figure, FigureGrid, Prose, References]
_BLOCK_TYPES = (KeyNumbers, Table, Figure, FigureGrid, Prose, References)


@dataclass(frozen=True)
class SectionModel:
    """One section of a report: a heading, a one-line summary and its blocks in order.

    Attributes
    ----------
    key : str
        HTML anchor and JSON key; unique within a report.
    title : str
        Heading, also used in the table of contents.
    blocks : tuple of Block
        Content in display order.
    summary : str
        One sentence under the heading.
    """

    key: str
    title: str
    blocks: tuple[Block, ...]
    summary: str = ""

    def __post_init__(self) -> None:
        _check_key(self.key, "SectionModel.key")
        for block in self.blocks:
            if not isinstance(block, _BLOCK_TYPES):
                raise InputDataError(
                    f"Section {self.key!r} has a block of type {type(block).__name__}; blocks "
                    "must be KeyNumbers, Table, Figure, FigureGrid, Prose or References."
                )

    def figures(self) -> list[Figure]:
        """Every figure of the section, grids flattened."""
        out: list[Figure] = []
        for block in self.blocks:
            if isinstance(block, Figure):
                out.append(block)
            elif isinstance(block, FigureGrid):
                out.extend(block.figures)
        return out

    def __repr__(self) -> str:
        kinds = ", ".join(type(b).__name__ for b in self.blocks)
        return f"SectionModel(key={self.key!r}, title={self.title!r}, blocks=[{kinds}])"


@dataclass(frozen=True)
class ReportModel:
    """A whole report: title, metadata (plain strings/numbers) and sections in order."""

    title: str
    meta: Mapping[str, Any]
    sections: tuple[SectionModel, ...]

    def figures(self) -> list[Figure]:
        """Every figure of the report in display order."""
        return [f for s in self.sections for f in s.figures()]

    def __repr__(self) -> str:
        keys = ", ".join(s.key for s in self.sections)
        return (
            f"ReportModel(title={self.title!r}, sections=[{keys}], figures={len(self.figures())})"
        )


def build_report(
    title: str, sections: Iterable[SectionModel], meta: Mapping[str, Any] | None = None
) -> ReportModel:
    """Assemble sections into a :class:`ReportModel`, checking that their keys are unique.

    Parameters
    ----------
    title : str
        The report's title (plain text).
    sections : iterable of SectionModel
        In display order, e.g. ``checkpoint_sections(...) + [clt_section(...)]``.
    meta : mapping, optional
        Provenance shown in the header and exported to JSON (versions, seed, SHA-256...).

    Returns
    -------
    ReportModel
    """
    sections = tuple(sections)
    for s in sections:
        if not isinstance(s, SectionModel):
            raise InputDataError(
                f"`sections` must hold SectionModel objects; got {type(s).__name__}."
            )
    keys = [s.key for s in sections]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InputDataError(f"`sections` have duplicate keys {dupes}; each key must be unique.")
    fig_keys = [f.key for s in sections for f in s.figures()]
    dupes = sorted({k for k in fig_keys if fig_keys.count(k) > 1})
    if dupes:
        raise InputDataError(f"figure keys {dupes[:5]} occur twice; each must be unique.")
    return ReportModel(title=str(title), meta=dict(meta or {}), sections=sections)
