"""Reading checkpoints safely, one tensor at a time.

:func:`~weightstats.io.checkpoint.open_checkpoint` is the entry point; format readers live in
:mod:`weightstats.io.formats` (one module each) and role / fan-in / layer-order rules in
:mod:`weightstats.io.tensors`.
"""

from .checkpoint import Checkpoint, detect_format, open_checkpoint
from .tensors import TensorEntry, fan_in, infer_role, layer_order

__all__ = [
    "Checkpoint",
    "TensorEntry",
    "detect_format",
    "fan_in",
    "infer_role",
    "layer_order",
    "open_checkpoint",
]
