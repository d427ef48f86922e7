"""Registry, applicability, settings and plan strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import privacysplit.compression as c
from privacysplit.models import LayerSpec
from privacysplit.plan import Plan

ORDER = ["none", "F1", "F2", "C1", "C2", "C3", "W1", "W2"]


def test_registry_holds_the_seven_techniques_plus_none_in_action_order():
    assert list(c.COMPRESSORS) == ORDER
    assert sorted(c.COMPRESSORS) == ["C1", "C2", "C3", "F1", "F2", "W1", "W2", "none"]
    for name, compressor in c.COMPRESSORS.items():
        assert compressor.name == name
        assert c.get(name) is compressor


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: none, F1, F2, C1, C2, C3, W1, W2"):
        c.get("W3")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (LayerSpec("conv", 3, 1, 1, 64, 128), ["none", "C1", "C2", "C3", "W1", "W2"]),
        (LayerSpec("conv", 1, 1, 0, 320, 1280), ["none", "C1", "C2", "C3", "W1", "W2"]),
        (LayerSpec("conv", 2, 2, 0, 8, 8), ["none", "C1", "C2", "W1", "W2"]),  # even kernel: no Fire
        (LayerSpec("conv", 3, 1, 1, 3, 1), ["none", "C1", "C2", "C3", "W1"]),  # one filter: no W2
        (LayerSpec("linear", 0, 0, 0, 400, 120), ["none", "F1", "F2", "W1"]),
        (LayerSpec("linear", 0, 0, 0, 400, 1), ["none", "W1"]),  # rank 1: nothing to factorise
        (LayerSpec("block", 3, 1, 1, 64, 64), ["none", "C1", "C2", "C3", "W1", "W2"]),
        (LayerSpec("bn", 0, 0, 0, 64, 64), ["none"]),
        (LayerSpec("relu"), ["none"]),
        (LayerSpec("pool", 2, 2, 0, 64, 64), ["none"]),
        (LayerSpec("dropout"), ["none"]),
        (LayerSpec("flatten"), ["none"]),
        (LayerSpec("noise"), ["none"]),
    ],
)
def test_applicable_by_layer_type(spec, expected):
    assert c.applicable(spec) == expected


def test_applicable_filters_by_offered_techniques_in_registry_order():
    spec = LayerSpec("conv", 3, 1, 1, 64, 128)
    assert c.applicable(spec, ["W2", "C1", "F1"]) == ["none", "C1", "W2"]
    assert c.applicable(spec, []) == ["none"]
    with pytest.raises(ValueError, match="unknown compression techniques"):
        c.applicable(spec, ["C9"])


def test_settings_defaults_key_and_validation():
    default = c.CompressionSettings()
    assert default.key() == c.CompressionSettings().key()
    assert default.key().startswith("cs-") and len(default.key()) == 13
    stronger = default.with_(w1_sparsity=0.8)
    assert stronger.w1_sparsity == 0.8 and stronger.key() != default.key()
    with pytest.raises(ValueError, match="valid:"):
        default.with_(sparsity=0.5)
    with pytest.raises(ValueError, match="w2_ratio"):
        c.CompressionSettings(w2_ratio=1.0)
    with pytest.raises(ValueError, match="rank_fraction"):
        c.CompressionSettings(rank_fraction=0)
    with pytest.raises(ValueError, match="distill_samples"):
        c.CompressionSettings(distill_samples=0)


@st.composite
def plans(draw) -> Plan:
    partition = draw(st.integers(0, 60))
    layers = draw(st.lists(st.integers(0, partition), unique=True, max_size=8))
    names = draw(st.lists(st.sampled_from(ORDER), min_size=len(layers), max_size=len(layers)))
    return Plan(partition, dict(zip(layers, names, strict=True)))


@settings(max_examples=60, deadline=None)
@given(plans())
def test_plan_string_round_trip(plan):
    assert Plan.parse(str(plan)) == plan
    assert str(Plan.parse(str(plan))) == str(plan)
