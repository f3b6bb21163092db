"""What a tensor is, from its name and shape: role, fan-in and layer order.

Nothing here opens files. :class:`TensorEntry` describes one tensor of a checkpoint;
:func:`infer_role` and :func:`fan_in` read a tensor's purpose from its name and shape, and
:func:`layer_order` sorts names the way the layers run rather than the way a file stores them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = [
    "ROLES",
    "TensorEntry",
    "infer_role",
    "fan_in",
    "layer_order",
    "strip_common_prefix",
]

#: Every role :func:`infer_role` can return.
ROLES = (
    "linear_weight",
    "conv_weight",
    "embedding",
    "attention_query",
    "attention_key",
    "attention_value",
    "attention_qkv",
    "attention_output",
    "bias",
    "norm_scale",
    "norm_shift",
    "buffer",
    "scalar",
    "other",
)

# Roles whose values were drawn at initialisation from a fan-in scaled distribution.
_FAN_IN_ROLES = frozenset(
    {
        "linear_weight",
        "conv_weight",
        "attention_query",
        "attention_key",
        "attention_value",
        "attention_qkv",
        "attention_output",
    }
)

# Prefixes that wrappers add to every name: Lightning (`model.`), DataParallel (`module.`),
# torch.compile (`_orig_mod.`).
_WRAPPER_PREFIXES = ("model.", "module.", "_orig_mod.")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a checkpoint, described without loading its values.

    Attributes
    ----------
    name : str
        Name shown to the user (wrapper prefixes such as ``model.`` stripped).
    shape : tuple of int
        The tensor's shape.
    dtype : str
        Storage dtype as torch names it (``float16``, ``bfloat16``, ``float8_e4m3fn``, ...).
    numel : int
        Number of values.
    source : str
        File that holds the values (a shard, for sharded checkpoints).
    key : str
        Name inside that file (before prefix stripping).
    out_axis : int
        Axis that indexes output units: 0 for PyTorch/safetensors/ONNX-Gemm layouts (out, in,
        ...), -1 for Keras and ONNX MatMul kernels (..., in, out).
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    source: str
    key: str = ""
    out_axis: int = 0

    def __repr__(self) -> str:
        return f"TensorEntry({self.name!r}, shape={self.shape}, dtype={self.dtype})"


_ATTENTION_PATTERNS = (
    (
        "attention_qkv",
        re.compile(r"(^|[._])(qkv|c_attn|in_proj|query_key_value|wqkv|Wqkv)([._]|$)"),
    ),
    ("attention_query", re.compile(r"(^|[._])(q_proj|query|wq|q_lin|q)([._]|$)")),
    ("attention_key", re.compile(r"(^|[._])(k_proj|key|wk|k_lin|k)([._]|$)")),
    ("attention_value", re.compile(r"(^|[._])(v_proj|value|wv|v_lin|v)([._]|$)")),
    (
        "attention_output",
        re.compile(r"(^|[._])(o_proj|out_proj|wo|out_lin|dense|c_proj|o)([._]|$)"),
    ),
)
_ATTENTION_CONTEXT = re.compile(
    r"attn|attention|self_attn|mha|(^|[._])(wq|wk|wv|wo|q_proj|k_proj|v_proj|o_proj|out_proj|qkv|query|key|value)([._]|$)",
    re.I,
)
_NORM = re.compile(
    r"norm|(^|[._/])(ln|ln_\w+|bn\d*|gn|layer_?norm|batch_?norm|rms)([._/\d]|$)", re.I
)
_EMBED = re.compile(
    r"embed|(^|[._/])(wte|wpe|tok_embeddings|word_embeddings|position_embeddings|token_type_embeddings|shared)([._/]|$)",
    re.I,
)
_HEAD = re.compile(
    r"head|classifier|pooler|final|(^|[._/])(fc|out|output|norm|ln_f|logits)([._/]|$)", re.I
)
_BUFFER = re.compile(r"running_(mean|var)|num_batches_tracked|moving_(mean|variance)", re.I)


def _last_component(name: str) -> str:
    return re.split(r"[./]", name.rstrip("./"))[-1].split(":")[0]


def infer_role(name: str, shape: Sequence[int]) -> str:
    """Guess a tensor's role from its name and shape.

    Parameters
    ----------
    name : str
        Tensor name, e.g. ``"model.layers.3.self_attn.q_proj.weight"``.
    shape : sequence of int
        Its shape.

    Returns
    -------
    str
        One of :data:`ROLES`. Attention roles are returned only when the name shows them;
        otherwise a 2-D weight is ``linear_weight`` and a 3-D or higher one ``conv_weight``.

    Examples
    --------
    >>> infer_role("encoder.layer.0.attention.self.query.weight", (768, 768))
    'attention_query'
    >>> infer_role("fc1.bias", (128,))
    'bias'
    """
    ndim = len(shape)
    last = _last_component(name).lower()
    if _BUFFER.search(name):
        return "buffer"
    if ndim == 0 or (ndim == 1 and int(shape[0]) == 1 and last not in {"bias", "weight"}):
        return "scalar"
    if ndim == 1:
        if _NORM.search(name):
            return "norm_shift" if last in {"bias", "beta", "shift"} else "norm_scale"
        if last in {"bias", "b", "beta"} or last.endswith("bias"):
            return "bias"
        if last in {"weight", "gamma", "scale", "g"}:
            return "norm_scale"
        return "bias" if re.fullmatch(r"\d+", last) and ndim == 1 else "other"
    if _EMBED.search(name):
        return "embedding"
    if ndim == 2:
        if _ATTENTION_CONTEXT.search(name):
            for role, pattern in _ATTENTION_PATTERNS:
                if pattern.search(name):
                    return role
        return "linear_weight"
    return "conv_weight"


def fan_in(shape: Sequence[int], role: str, *, out_axis: int = 0) -> float:
    """Number of inputs feeding one output unit, as PyTorch's initialisers compute it.

    Parameters
    ----------
    shape : sequence of int
        The weight's shape.
    role : str
        Its role from :func:`infer_role`.
    out_axis : int
        0 for (out, in, *kernel) layouts (PyTorch), -1 for (*kernel, in, out) layouts (Keras).

    Returns
    -------
    float
        ``numel / shape[out_axis]`` for linear, attention and convolution weights (so a Conv2d
        weight ``(out, in, kh, kw)`` has fan-in ``in * kh * kw``); NaN for other roles, whose
        initialisation does not depend on a fan-in visible in their own shape.
    """
    if role not in _FAN_IN_ROLES or len(shape) < 2:
        return math.nan
    n_out = int(shape[out_axis])
    total = math.prod(int(s) for s in shape)
    if n_out == 0:
        return math.nan
    return float(total // n_out)


def _numbers(name: str) -> tuple[int, ...]:
    return tuple(int(m) for m in re.findall(r"\d+", re.sub(r":\d+$", "", name)))


def layer_order(names: Iterable[str]) -> list[str]:
    """Sort tensor names in layer order.

    Names are ordered by the numbers they contain (``layers.2`` before ``layers.10``), keeping
    their order of appearance among names with the same numbers. Names without numbers go first
    when they look like embeddings, or appear before every numbered name and do not look like an
    output head or final norm; otherwise last. So shard order does not matter.

    Examples
    --------
    >>> layer_order(["head.weight", "layers.10.w", "embed.weight", "layers.2.w"])
    ['embed.weight', 'layers.2.w', 'layers.10.w', 'head.weight']
    """
    names = list(names)
    first_numbered = next((i for i, n in enumerate(names) if _numbers(n)), len(names))
    keyed = []
    for i, n in enumerate(names):
        nums = _numbers(n)
        if nums:
            group = (1, nums)
        elif _EMBED.search(n) or (i < first_numbered and not _HEAD.search(n)):
            group = (0, ())
        else:
            group = (2, ())
        keyed.append((group, i, n))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [n for _, _, n in keyed]


def strip_common_prefix(names: Sequence[str]) -> dict[str, str]:
    """Map each name to itself without the wrapper prefix all names share.

    Only the prefixes wrappers add (``model.``, ``module.``, ``_orig_mod.``, repeatedly, as in
    ``module.model.``) are removed, and only when every name has them.

    Returns
    -------
    dict
        ``{original_name: shown_name}``.
    """
    shown = {n: n for n in names}
    if not names:
        return shown
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            values = list(shown.values())
            if all(v.startswith(prefix) and len(v) > len(prefix) for v in values):
                shown = {k: v[len(prefix) :] for k, v in shown.items()}
                changed = True
    return shown
