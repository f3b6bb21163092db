"""The top-level command: usage errors anywhere are one stderr line and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "No such command 'nope'. (see 'weightstats --help')"),
        (["analyze", "--jobs", "0", "x.pt"], "Invalid value for '--jobs'"),
        (["analyze", "--bogus"], "No such option '--bogus'"),
        (["analyze", "--bogus"], "(see 'weightstats analyze --help')"),
        (["clt"], "give one run directory"),
    ],
)
def test_usage_errors_are_one_line(args, message):
    out = subprocess.run([sys.executable, "-m", "weightstats", *args], capture_output=True,
                         text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("weightstats: error: ")
    assert message in lines[0]
    assert "Traceback" not in out.stderr


def test_help_and_version_exit_zero():
    for args in (["--help"], ["--version"], ["analyze", "--help"]):
        out = subprocess.run([sys.executable, "-m", "weightstats", *args], capture_output=True,
                             text=True)
        assert out.returncode == 0 and out.stdout and not out.stderr
