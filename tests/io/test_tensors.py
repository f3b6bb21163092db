"""Role inference, fan-in and layer order from names and shapes."""

from __future__ import annotations

import math

import pytest

from weightstats.io.tensors import fan_in, infer_role, layer_order, strip_common_prefix


@pytest.mark.parametrize(
    ("name", "shape", "role"),
    [
        ("fc1.weight", (128, 64), "linear_weight"),
        ("fc1.bias", (128,), "bias"),
        ("features.0.weight", (16, 3, 3, 3), "conv_weight"),
        ("model.embed_tokens.weight", (1000, 64), "embedding"),
        ("transformer.wte.weight", (1000, 64), "embedding"),
        ("model.layers.3.self_attn.q_proj.weight", (64, 64), "attention_query"),
        ("model.layers.3.self_attn.k_proj.weight", (16, 64), "attention_key"),
        ("model.layers.3.self_attn.v_proj.weight", (16, 64), "attention_value"),
        ("model.layers.3.self_attn.o_proj.weight", (64, 64), "attention_output"),
        ("encoder.layer.0.attention.self.query.weight", (64, 64), "attention_query"),
        ("encoder.layer.0.attention.output.dense.weight", (64, 64), "attention_output"),
        ("encoder.layer.0.intermediate.dense.weight", (256, 64), "linear_weight"),
        ("h.0.attn.c_attn.weight", (64, 192), "attention_qkv"),
        ("layers.0.norm.weight", (64,), "norm_scale"),
        ("layers.0.ln_1.bias", (64,), "norm_shift"),
        ("bn1.running_mean", (64,), "buffer"),
        ("model.layers.0.input_layernorm.weight", (64,), "norm_scale"),
        ("dense/kernel:0", (64, 10), "linear_weight"),
        ("dense/bias:0", (10,), "bias"),
        ("logit_scale", (), "scalar"),
    ],
)
def test_infer_role(name, shape, role):
    assert infer_role(name, shape) == role


def test_fan_in_matches_torch_init():
    torch = pytest.importorskip("torch")
    conv = torch.nn.Conv2d(3, 16, 5)
    lin = torch.nn.Linear(20, 7)
    for module in (conv, lin):
        shape = tuple(module.weight.shape)
        expected, _ = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
        role = infer_role("x.weight", shape)
        assert fan_in(shape, role) == expected
    assert fan_in((5, 3, 3, 16), "conv_weight", out_axis=-1) == 45  # Keras (kh, kw, in, out)
    assert math.isnan(fan_in((10,), "bias"))
    assert math.isnan(fan_in((100, 8), "embedding"))


def test_layer_order_natural_and_stable():
    names = [
        "embed.weight",
        "layers.10.b",
        "layers.10.a",
        "layers.2.b",
        "layers.2.a",
        "layers.1.x",
        "final_norm.weight",
        "lm_head.weight",
    ]
    assert layer_order(names) == [
        "embed.weight",
        "layers.1.x",
        "layers.2.b",
        "layers.2.a",
        "layers.10.b",
        "layers.10.a",
        "final_norm.weight",
        "lm_head.weight",
    ]


def test_strip_common_prefix():
    assert strip_common_prefix(["model.a", "model.b"]) == {"model.a": "a", "model.b": "b"}
    assert strip_common_prefix(["module.model.a", "module.model.b"])["module.model.b"] == "b"
    # only when every name has it
    assert strip_common_prefix(["model.a", "head.b"]) == {"model.a": "model.a", "head.b": "head.b"}
    assert strip_common_prefix(["model.", "model.x"])["model."] == "model."
