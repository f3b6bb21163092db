"""The public API: `__all__` lists exactly the public names, and each one resolves."""

from __future__ import annotations

import subprocess
import sys

import weightstats


def test_all_names_resolve():
    for name in weightstats.__all__:
        assert getattr(weightstats, name) is not None, name


def test_all_matches_public_names():
    public = {n for n in dir(weightstats) if not n.startswith("_")} - {"annotations", "importlib",
                                                                       "errors", "Any"}
    # submodules that the import of a lazy name brings in are not API names
    public = {n for n in public if not isinstance(getattr(weightstats, n), type(weightstats))}
    assert public == set(weightstats.__all__) - {"__version__"}


def test_unknown_attribute_raises():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        weightstats.nope  # noqa: B018


def test_import_is_light():
    code = "import sys, weightstats; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
