"""Cost model: parameter and MAC counts, feature size and latency."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from privacysplit.models import (
    CostModel,
    DeviceProfile,
    build,
    count_params,
    layer_macs,
    resource_savings,
)


def test_macs_match_eq_9_and_10_on_plain_layers():
    net = build("lenet", in_channels=1)
    macs = layer_macs(net)
    # Eq. 9: K*K*Cin*Cout*Hout*Wout ; Eq. 10: Cin*Cout
    assert macs[0] == 5 * 5 * 1 * 6 * 28 * 28
    assert macs[3] == 5 * 5 * 6 * 16 * 10 * 10
    assert macs[6] == 400 * 120
    assert macs[8] == 120 * 84
    assert macs[10] == 84 * 10
    assert macs[1] == macs[2] == 0  # relu and pooling multiply nothing


def test_macs_of_grouped_convolution_follow_the_groups():
    from privacysplit.models import LayerSpec, Network

    depthwise = Network([LayerSpec("conv", 3, 1, 1, 8, 8)], [nn.Conv2d(8, 8, 3, 1, 1, groups=8)], input_shape=(8, 16, 16))
    assert layer_macs(depthwise) == [3 * 3 * 1 * 8 * 16 * 16]


def test_lenet_parameter_count_is_exact():
    net = build("lenet", in_channels=1)
    expected = (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert count_params(net) == expected == 61706


def test_zero_weights_do_not_count():
    layer = nn.Linear(10, 10)
    with torch.no_grad():
        layer.weight[:5] = 0
    assert count_params(layer) == 50 + 10
    assert count_params(layer, nonzero=False) == 110


def test_torch_prune_masks_are_honoured():
    layer = nn.Linear(10, 10, bias=False)
    prune.l1_unstructured(layer, "weight", amount=0.3)
    assert count_params(layer) == 70


def test_encoder_cost_grows_with_partition_and_savings_are_bounded():
    cm = CostModel(build("alexnet", in_channels=1))
    costs = [cm.encoder_cost(p) for p in range(len(cm.net))]
    assert all(a.params <= b.params and a.macs <= b.macs for a, b in zip(costs, costs[1:], strict=False))
    total = cm.total()
    assert total.params == count_params(cm.net) and total.feature_bytes == 0
    assert costs[0].feature_bytes == 64 * 16 * 16 * 4
    for c in costs:
        s = resource_savings(c, total)
        assert all(0.0 <= v <= 1.0 for v in s.values())
    assert resource_savings(costs[0], total)["S1"] > 0.99
    assert resource_savings(total, total) == {"S1": 0.0, "S2": 0.0, "S3": 0.0}


def test_latency_is_compute_plus_transfer():
    profile = DeviceProfile(mac_rate={"conv": 1e9, "block": 1e9, "linear": 1e9}, elem_rate=1e9, layer_overhead_s=0.0, uplink_bps=8e6)
    cm = CostModel(build("lenet", in_channels=1), profile)
    c = cm.encoder_cost(0)
    assert c.compute_s == pytest.approx(5 * 5 * 6 * 28 * 28 / 1e9)
    assert c.transfer_s == pytest.approx(6 * 28 * 28 * 4 * 8 / 8e6)
    assert c.latency_s == pytest.approx(c.compute_s + c.transfer_s)


def test_profile_round_trips_through_json_and_rejects_unknown_keys(tmp_path):
    path = tmp_path / "p.json"
    DeviceProfile(uplink_bps=1e6).save(path)
    assert DeviceProfile.load(path).uplink_bps == 1e6
    path.write_text(json.dumps({"bandwidth": 3}))
    with pytest.raises(ValueError, match="valid keys"):
        DeviceProfile.load(path)


def test_measured_profile_has_positive_rates():
    p = DeviceProfile.measure(repeats=2)
    assert p.mac_rate["conv"] > 1e6 and p.mac_rate["linear"] > 1e6 and p.elem_rate > 1e6
