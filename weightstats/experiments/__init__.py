"""Bundled, seeded experiment grids (``weightstats experiment ...``); configs live in ``data/``."""
