"""The checkpoint report as a person sees it, in headless Chromium with networking disabled.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` by the small
standard-library client in ``_cdp.py``: no port, no driver, no download.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from browser._cdp import Browser
from helpers import skip_unless
from report._synthetic import EVIL, draw_tensors, make_frame

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    skip_unless(shutil.which("chromium") is not None, "needs Debian's chromium in PATH")
    from weightstats.report.checkpoint_report import write_checkpoint_report

    out = tmp_path_factory.mktemp("report")
    tensors = draw_tensors(np.random.default_rng(20261125))
    frame = make_frame(tensors)
    path = write_checkpoint_report(
        frame, tensors.__getitem__, out / "report.html", json_path=out / "report.json"
    )
    with Browser("chromium") as browser:
        browser.open(path.resolve().as_uri())
        browser.pump(0.5)  # let late console messages and image decodes arrive
        yield browser, path, frame


def test_no_console_errors_and_no_network(page):
    browser, path, _ = page
    assert browser.console_errors() == []
    urls = browser.requests()
    assert urls[0] == path.resolve().as_uri()
    assert all(u.startswith("data:image/svg+xml;base64,") for u in urls[1:]), urls
    # offline emulation is active, so an escaped request would also have failed visibly
    assert not [e for e in browser.events if e.get("method") == "Network.loadingFailed"]


def test_every_figure_loaded(page):
    browser, _, _ = page
    status = browser.evaluate(
        "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert len(status) >= 10
    assert all(done and w > 100 and h > 100 for done, w, h in status), status


def test_names_render_as_text(page):
    browser, _, _ = page
    cells = browser.evaluate(
        "Array.from(document.querySelectorAll('#tbl-tensors tbody td:first-child'))"
        ".map(td => td.textContent)"
    )
    assert EVIL in cells
    assert browser.evaluate("document.querySelectorAll('script').length") == 1
    assert browser.evaluate("typeof window.alert") == "function"  # page still intact


def _column(browser, index):
    return browser.evaluate(
        f"Array.from(document.querySelectorAll('#tbl-tensors tbody tr'))"
        f".map(r => r.cells[{index}].getAttribute('data-v'))"
    )


def test_table_sorts_when_a_header_is_clicked(page):
    browser, _, frame = page
    headers = browser.evaluate(
        "Array.from(document.querySelectorAll('#tbl-tensors thead th'))"
        ".map(th => th.textContent.trim())"
    )
    index = headers.index("ex. kurtosis")
    box = browser.evaluate(
        f"(() => {{ const b = document.querySelectorAll('#tbl-tensors thead th button')[{index}];"
        f" b.scrollIntoView({{block: 'center', inline: 'center'}});"
        f" const r = b.getBoundingClientRect();"
        f" return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
    )
    browser.click(*box)
    values = _column(browser, index)
    finite = [float(v) for v in values if v != ""]
    assert finite == sorted(frame["excess_kurtosis"].dropna())  # ascending, raw numbers
    assert values[-1] == ""  # the degenerate tensor's missing kurtosis sorts last
    browser.click(*box)
    finite = [float(v) for v in _column(browser, index) if v != ""]
    assert finite == sorted(frame["excess_kurtosis"].dropna(), reverse=True)
    sort_state = browser.evaluate(
        f"document.querySelectorAll('#tbl-tensors thead th')[{index}].getAttribute('aria-sort')"
    )
    assert sort_state == "descending"


def test_filter_box_hides_rows(page):
    browser, _, _ = page
    browser.evaluate("document.querySelector('input.filter').focus()")
    browser.send("Input.insertText", {"text": "light"})  # typed as a person would
    shown = browser.evaluate(
        "Array.from(document.querySelectorAll('#tbl-tensors tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.cells[0].textContent)"
    )
    assert shown == ["fc3.weight"]
    assert browser.evaluate("document.querySelector('.count').textContent") == "1 of 6 rows"
    browser.evaluate(
        "(() => { const i = document.querySelector('input.filter'); i.value = '';"
        " i.dispatchEvent(new Event('input')); })()"
    )
    assert (
        browser.evaluate("document.querySelectorAll('#tbl-tensors tbody tr:not([hidden])').length")
        == 6
    )


def test_json_report_matches_the_page(page):
    browser, path, frame = page
    data = json.loads(path.with_suffix(".json").read_text())
    records = data["sections"][1]["blocks"][0]["records"]
    assert [r["tensor"] for r in records] == list(frame["tensor"])
    n_rows = browser.evaluate("document.querySelectorAll('#tbl-tensors tbody tr').length")
    assert n_rows == len(records)


def test_screenshot(page, tmp_path):
    browser, _, _ = page
    browser.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "report.png"
    browser.screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_cli_report_of_the_bundled_checkpoint(tmp_path):
    """The README's job: `weightstats analyze data/digits_mlp.safetensors -o report.html`."""
    skip_unless(shutil.which("chromium") is not None, "needs Debian's chromium in PATH")
    from pathlib import Path

    from click.testing import CliRunner

    from weightstats.cli import main

    ckpt = Path(__file__).resolve().parents[2] / "data" / "digits_mlp.safetensors"
    skip_unless(ckpt.exists(), "needs the bundled checkpoint data/digits_mlp.safetensors")
    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["analyze", str(ckpt), "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    with Browser("chromium") as browser:
        browser.open(out.resolve().as_uri())
        browser.pump(0.5)
        assert browser.console_errors() == []
        assert all(u.startswith("data:") for u in browser.requests()[1:])
        status = browser.evaluate(
            "Array.from(document.images).map(i => i.complete && i.naturalWidth > 100)")
        assert status and all(status)
        rows = browser.evaluate("document.querySelectorAll('#tbl-tensors tbody tr').length")
        assert rows == 6  # every tensor of the MLP, skipped ones included
        browser.screenshot(str(tmp_path / "digits_mlp.png"))
    # running it again without --force refuses and keeps the report
    before = out.read_bytes()
    again = CliRunner().invoke(main, ["analyze", str(ckpt), "-q", "-o", str(out)])
    assert again.exit_code == 2 and out.read_bytes() == before
