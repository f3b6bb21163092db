"""Rendering: number formats, escaping of untrusted names, self-containment, JSON, safe writes."""

from __future__ import annotations

import base64
import html as html_lib
import json
import math
import os
import re

import numpy as np
import pandas as pd
import pytest
from report._synthetic import EVIL

from weightstats.errors import InputDataError
from weightstats.report import render
from weightstats.report.model import Column, Figure, Prose, SectionModel, Table, build_report
from weightstats.report.render import format_value, render_html, render_json, sort_key, write_report


@pytest.mark.parametrize(
    "value, fmt, expected",
    [
        (1234567, "int", "1,234,567"),
        (0.123456, "float", "0.1235"),
        (1.5e-7, "float", "1.500e-07"),
        (123456.0, "float", "1.235e+05"),
        (0.1234, "percent", "12.3\u202f%"),
        (1_234_567, "params", "1.23\u202fM"),
        (950, "params", "950"),
        (2.0, "fixed3", "2.000"),
        (math.nan, "float", "\u2013"),
        (None, "int", "\u2013"),
        (math.inf, "float", "\u221e"),
        ((256, 784), "shape", "256\u00d7784"),
        ("(3, 4)", "shape", "3\u00d74"),
        (np.float32(0.5), "fixed2", "0.50"),
        ("<b>", "text", "<b>"),  # escaping is the template's job, not the formatter's
    ],
)
def test_format_value(value, fmt, expected):
    assert format_value(value, fmt) == expected


def test_sort_key_is_raw_number():
    assert sort_key(0.1 + 0.2, "fixed2") == repr(0.1 + 0.2)
    assert sort_key((256, 784), "shape") == repr(256.0 * 784)
    assert sort_key(math.nan, "float") == ""
    assert sort_key("fc1.weight", "text") == "fc1.weight"


def _tiny_report(name: str = EVIL) -> object:
    frame = pd.DataFrame({"tensor": [name, "b"], "kurt": [1.25, math.nan], "n": [10, 20]})
    table = Table(
        "t",
        "Tensors",
        frame,
        (
            Column("tensor", "tensor", "text"),
            Column("kurt", "kurt", "fixed2"),
            Column("n", "n", "int"),
        ),
    )
    fig = Figure(
        "f",
        f"title {name}",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        caption=name,
        values={"x": math.nan, "arr": np.arange(2)},
    )
    section = SectionModel("s", f"Section {name}", (table, fig, Prose(name, (name,))), summary=name)
    return build_report(f"Report {name}", [section], {"checkpoint": name, "seed": 3})


def test_untrusted_names_are_text_everywhere():
    html = render_html(_tiny_report())
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # exactly one script element: ours
    assert len(re.findall(r"<script\b", html)) == 1


def _csp(page: str) -> str:
    raw = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    return html_lib.unescape(raw)


def test_page_makes_no_requests():
    html = render_html(_tiny_report("fc1.weight"))
    csp = _csp(html)
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert "unsafe-inline" not in csp
    # every src/href is a data: URI or an in-page anchor
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:", "#")), attr
    assert "@import" not in html and "url(" not in html


def test_csp_hashes_match_inline_script_and_style():
    import hashlib

    html = render_html(_tiny_report("x"))
    script = re.search(r"<script>(.*?)</script>", html, re.DOTALL).group(1)
    style = re.search(r"<style>(.*?)</style>", html, re.DOTALL).group(1)
    for text in (script, style):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in _csp(html)


def test_table_cells_carry_raw_values_and_formatted_text():
    html = render_html(_tiny_report("x"))
    assert '<td data-v="1.25" class="num">1.25</td>' in html
    assert '<td data-v="" class="num">\u2013</td>' in html
    assert '<td data-v="20.0" class="num">20</td>' in html


def test_json_has_raw_numbers_and_is_strict():
    data = json.loads(render_json(_tiny_report()))
    table = data["sections"][0]["blocks"][0]
    assert table["records"][0] == {"tensor": EVIL, "kurt": 1.25, "n": 10}
    assert table["records"][1]["kurt"] is None
    fig = data["sections"][0]["blocks"][1]
    assert fig["values"] == {"x": None, "arr": [0, 1]}
    assert data["meta"] == {"checkpoint": EVIL, "seed": 3}


def test_write_refuses_to_overwrite(tmp_path):
    target = tmp_path / "r.html"
    target.write_text("precious")
    with pytest.raises(InputDataError, match="already exists; pass force=True"):
        write_report(_tiny_report(), target)
    assert target.read_text() == "precious"
    js = tmp_path / "r.json"
    js.write_text("precious json")
    with pytest.raises(InputDataError, match="`json_path`.*already exists"):
        write_report(_tiny_report(), tmp_path / "new.html", json_path=js)
    assert js.read_text() == "precious json"
    assert not (tmp_path / "new.html").exists()  # nothing written when one target is refused
    out = write_report(_tiny_report(), target, force=True, json_path=js)
    assert out == target and "<!doctype html>" in target.read_text()
    assert json.loads(js.read_text())["title"].startswith("Report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json"]


def test_write_iv(tmp_path):
    with pytest.raises(InputDataError, match="does not exist; create it first"):
        write_report(_tiny_report(), tmp_path / "missing" / "r.html")
    with pytest.raises(InputDataError, match="is a directory"):
        write_report(_tiny_report(), tmp_path)
    with pytest.raises(InputDataError, match="same file"):
        write_report(_tiny_report(), tmp_path / "a.html", json_path=tmp_path / "a.html")
    with pytest.raises(InputDataError, match="must be a ReportModel"):
        render_html("not a model")


def test_crash_while_writing_leaves_no_half_file(tmp_path, monkeypatch):
    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(render.os, "fsync", boom)
    target = tmp_path / "r.html"
    with pytest.raises(OSError, match="disk full"):
        write_report(_tiny_report(), target)
    assert list(tmp_path.iterdir()) == []  # neither the report nor a temporary file
    target.write_text("old report")
    with pytest.raises(OSError, match="disk full"):
        write_report(_tiny_report(), target, force=True)
    assert target.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_written_file_has_normal_permissions(tmp_path):
    out = write_report(_tiny_report(), tmp_path / "r.html")
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_attribute_injection_is_escaped():
    name = "w\" onmouseover=\"alert(1)' x='"
    html = render_html(_tiny_report(name))
    assert 'onmouseover="alert(1)' not in html
    assert "w&#34; onmouseover=&#34;alert(1)&#39; x=&#39;" in html  # in data-v and in text
    assert 'data-v="w&#34; onmouseover' in html
