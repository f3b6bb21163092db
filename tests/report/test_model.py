"""The report model: validation of keys, formats and blocks; readable reprs."""

from __future__ import annotations

import pandas as pd
import pytest

from weightstats.errors import InputDataError
from weightstats.report.model import (
    Column,
    Figure,
    FigureGrid,
    KeyNumber,
    Prose,
    SectionModel,
    Table,
    build_report,
)

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>'


def test_table_iv():
    with pytest.raises(InputDataError, match="must be a pandas DataFrame"):
        Table("t", "T", [[1, 2]])
    with pytest.raises(InputDataError, match=r"lacks: \['b'\]"):
        Table("t", "T", pd.DataFrame({"a": [1.0]}), (Column("b", "B"),))
    with pytest.raises(InputDataError, match="lowercase identifier"):
        Table("Bad Key", "T", pd.DataFrame({"a": [1.0]}))


def test_formats_iv():
    with pytest.raises(InputDataError, match=r"`Column\('a'\).fmt` must be one of"):
        Column("a", "A", "money")
    with pytest.raises(InputDataError, match="detail_fmt"):
        KeyNumber("n", 1, "int", detail_fmt="nope")


def test_figure_iv():
    with pytest.raises(InputDataError, match="mime"):
        Figure("f", "F", SVG, mime="text/html")
    with pytest.raises(InputDataError, match="non-empty bytes"):
        Figure("f", "F", b"")
    with pytest.raises(InputDataError, match="lowercase identifier"):
        Figure('f"><script>', "F", SVG)


def test_section_rejects_foreign_blocks():
    with pytest.raises(InputDataError, match="has a block of type str"):
        SectionModel("s", "S", ("<b>html</b>",))


def test_build_report_unique_keys():
    a = SectionModel("a", "A", (Prose("p", ("x",)),))
    fig = Figure("f", "F", SVG)
    with pytest.raises(InputDataError, match=r"duplicate keys \['a'\]"):
        build_report("r", [a, a])
    b = SectionModel("b", "B", (FigureGrid("g", "G", (fig,)),))
    c = SectionModel("c", "C", (fig,))
    with pytest.raises(InputDataError, match=r"figure keys \['f'\]"):
        build_report("r", [b, c])
    with pytest.raises(InputDataError, match="SectionModel objects"):
        build_report("r", [object()])


def test_reprs_are_short_and_informative():
    fig = Figure("f", "F", SVG)
    s = SectionModel("s", "S", (Table("t", "T", pd.DataFrame({"a": [1.0, 2.0]})), fig))
    model = build_report("R", [s], {"seed": 1})
    assert repr(fig) == f"Figure(key='f', title='F', image/svg+xml, {len(SVG)} bytes)"
    assert repr(s) == "SectionModel(key='s', title='S', blocks=[Table, Figure])"
    assert repr(model) == "ReportModel(title='R', sections=[s], figures=1)"
    assert "rows=2" in repr(s.blocks[0])


def test_table_default_columns():
    t = Table("t", "T", pd.DataFrame({"name": ["a"], "x": [1.5]}))
    assert [(c.name, c.fmt) for c in t.shown_columns()] == [("name", "text"), ("x", "float")]
