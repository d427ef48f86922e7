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
from privacysplit.models.profiles import get_profile, list_profiles


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


def test_a_dense_cost_model_counts_an_initial_weight_that_is_exactly_zero():
    # torch.manual_seed(479) makes lenet's default initialisation draw one weight of exactly 0.0
    torch.manual_seed(479)
    net = build("lenet", in_channels=1)
    assert count_params(net) == 61705
    assert CostModel(net, nonzero=False).total().params == count_params(net, nonzero=False) == 61706
    assert CostModel(net).total().params == 61705


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
    assert DeviceProfile.load(str(path)) == DeviceProfile.load(path)
    path.write_text(json.dumps({"bandwidth": 3}))
    with pytest.raises(ValueError, match="valid keys"):
        DeviceProfile.load(path)


def test_an_old_profile_file_with_one_element_rate_still_loads(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"name": "old", "mac_rate": {"conv": 4e9, "linear": 1e9}, "elem_rate": 1e9,
                                "layer_overhead_s": 2e-5, "uplink_bps": 2e7}))
    p = DeviceProfile.load(path)
    assert p.elem_rate == {"bn": 1e9, "relu": 1e9, "pool": 1e9}
    assert p.mac_rate["block"] == 4e9  # blocks fall back to the convolution rate


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mac_rate": {"conv": 1e9}}, r"needs \['linear'\]"),
        ({"mac_rate": {"conv": 1e9, "linear": 1e9, "lstm": 1e9}}, "unknown mac_rate layer types.*valid: conv, block, linear"),
        ({"elem_rate": {"softmax": 1e9}}, "unknown elem_rate layer types.*valid: bn, relu, pool"),
        ({"mac_rate": {"conv": 0, "linear": 1e9}}, "must be positive"),
        ({"uplink_bps": -1}, "uplink_bps must be positive"),
    ],
)
def test_invalid_profiles_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeviceProfile(**kwargs)


def test_shipped_profiles_load_by_name_and_unknown_names_are_listed():
    assert list_profiles() == ["jetson_tx2", "midrange_phone", "host"]
    assert DeviceProfile.load("jetson_tx2") == DeviceProfile()  # the default is the paper's device
    phone = DeviceProfile.load("midrange_phone")
    assert phone.name == "midrange_phone" and phone.uplink_bps == 20e6
    with pytest.raises(ValueError, match="unknown device profile 'tx3'.*jetson_tx2, midrange_phone, host"):
        DeviceProfile.load("tx3")
    with pytest.raises(ValueError, match="valid: jetson_tx2, midrange_phone, host"):
        get_profile("tx3")


def test_host_is_measured_once_per_process_so_its_cache_key_is_stable():
    a, b = DeviceProfile.load("host"), DeviceProfile.load("host")
    assert a == b and a is not b and a.name == "host"
    assert all(float(f"{v:.2g}") == v for v in a.mac_rate.values())


def _s3_by_partition(name: str, profile: DeviceProfile, channels: int) -> list[float]:
    cm = CostModel(build(name, in_channels=channels), profile)
    total = cm.total()
    return [resource_savings(cm.encoder_cost(p), total)["S3"] for p in range(len(cm.net) - 1)]


@pytest.mark.parametrize("channels", [1, 3])  # mnist (the default data) and CIFAR
@pytest.mark.parametrize("name", ["alexnet", "vgg11"])
def test_default_profile_makes_s3_vary_across_proper_splits(name, channels):
    s3 = _s3_by_partition(name, DeviceProfile(), channels)
    assert max(s3) > 0.05
    assert len({round(v, 6) for v in s3}) > 2


def test_on_a_phone_with_a_cellular_uplink_the_whole_network_is_fastest():
    # The physics, not a bug: sending any feature of alexnet (at least 4 KB) takes longer
    # than the phone needs to finish the network itself.
    phone = get_profile("midrange_phone")
    for name in ("alexnet", "vgg11"):
        assert max(_s3_by_partition(name, phone, 1)) == 0.0
    cm = CostModel(build("alexnet", in_channels=1), phone)
    smallest = min(cm.encoder_cost(p).transfer_s for p in range(len(cm.net) - 1))
    assert smallest == pytest.approx(1024 * 4 * 8 / 20e6)


def test_dropout_costs_nothing_and_every_other_layer_its_overhead():
    p = DeviceProfile(mac_rate={"conv": 1e9, "linear": 1e9}, elem_rate={"relu": 1e9, "pool": 2e9, "bn": 1e9},
                      layer_overhead_s=1e-3, uplink_bps=1e6)
    assert p.layer_time("dropout", 0, 1000) == 0.0
    assert p.layer_time("relu", 0, 1000) == pytest.approx(1e-3 + 1e-6)
    assert p.layer_time("pool", 0, 1000) == pytest.approx(1e-3 + 0.5e-6)
    assert p.layer_time("linear", 2000, 10) == pytest.approx(1e-3 + 2e-6)


def test_measured_profile_has_positive_rates():
    p = DeviceProfile.measure(repeats=2)
    assert p.mac_rate["conv"] > 1e6 and p.mac_rate["linear"] > 1e6 and min(p.elem_rate.values()) > 1e6
