"""Capture during training: weight/update/latent recorders and the crash-safe run store.

See ``docs/capture.md`` for a walk-through. Import from the submodules in library code:
``from weightstats.capture.hooks import WeightRecorder``.
"""

from __future__ import annotations

from .hooks import LatentRecorder, WeightRecorder, unwatch, watch
from .store import RunStore, Trajectories

__all__ = ["LatentRecorder", "RunStore", "Trajectories", "WeightRecorder", "unwatch", "watch"]
