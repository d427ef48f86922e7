"""apply_plan: acceptance plans, validation, copies, W2 propagation, W1 masks, distillation."""

from __future__ import annotations

import time

import pytest
import torch
from _compression_helpers import batch, network

from privacysplit.compression import apply_plan
from privacysplit.models import build, count_params, layer_macs, split
from privacysplit.plan import Plan


def _run(encoder, cloud, x):
    with torch.no_grad():
        return cloud(encoder(x))


def _encoder_params(net, p):
    return count_params(split(net, p)[0])


@pytest.mark.parametrize(
    ("name", "plan"),
    [
        ("alexnet", "13 | 0:C3 8:C3 10:C3"),
        ("vgg11", "28 | 0:W2 4:W2 8:W2 11:W2 15:W2 18:W2 22:W2 25:W2"),
        ("resnet50", "11 | 4:W2 5:W2 6:W2 7:C2 8:C2 10:C2 11:W2"),
        ("resnet18", "11 | 0:W2 3:W2 4:W2 5:W2 6:W2 7:W2 8:W2 9:W2 10:W2"),
        ("wide_resnet28_10", "5 | 0:W1 2:W1 5:W1"),
    ],
)
def test_paper_plans_run_and_shrink_the_encoder(name, plan):
    net = network(name)
    x = batch(net)
    encoder, cloud = apply_plan(net, plan)
    assert len(encoder) + len(cloud) == len(net)
    assert cloud.offset == Plan.parse(plan).partition + 1
    assert _run(encoder, cloud, x).shape == net(x).shape
    assert count_params(encoder) < _encoder_params(net, Plan.parse(plan).partition)


def test_vgg11_w2_plan_also_cuts_macs_and_specs_follow():
    net = network("vgg11")
    encoder, cloud = apply_plan(net, "28 | 0:W2 4:W2 8:W2 11:W2 15:W2 18:W2 22:W2 25:W2")
    assert sum(layer_macs(encoder)) < sum(layer_macs(split(net, 28)[0]))
    for spec, module in zip(encoder.layers, encoder.body, strict=True):
        if spec.type == "conv":
            assert (spec.in_channels, spec.out_channels) == (module.in_channels, module.out_channels)
        if spec.type == "bn":
            assert spec.out_channels == module.num_features
    assert cloud.layers[0].in_channels == cloud.body[0].in_features  # the classifier shrank


def test_base_model_stays_bit_identical():
    net = network("vgg11")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    specs, training = list(net.layers), [m.training for m in net.modules()]
    apply_plan(net, "28 | 0:W2 4:W1 8:C1 11:C2 15:C3 25:W2", calib=batch(net, 4), distill_steps=2)
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net.layers == specs and [m.training for m in net.modules()] == training
    assert not any(hasattr(m, "weight_orig") for m in net.modules())


def test_none_plan_is_the_identity():
    net = network("resnet18")
    x = batch(net)
    encoder, cloud = apply_plan(net, "7 | none")
    assert torch.equal(_run(encoder, cloud, x), net(x).detach())
    assert encoder.body[0] is not net.body[0]  # a copy, not the base modules


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("11 | 0:W1", r"partition 11 is outside lenet \(valid: 0\.\.10\)"),
        ("5 | 1:W1", r"'W1' does not apply to layer 1 \(relu\) of lenet; valid choices for a relu layer: none"),
        ("9 | 6:C1", r"'C1' does not apply to layer 6 \(linear\(400->120\)\).*valid choices for a linear layer: none, F1, F2, W1"),
        ("9 | 0:F1", r"'F1' does not apply to layer 0 \(conv.*valid choices for a conv layer: none, C1, C2, C3, W1, W2"),
        ("9 | 0:X7", r"unknown compression technique 'X7'; valid: none, F1"),
        ("3 | 5:W1", r"layer 5 is on the cloud side of partition 3"),
        ("nonsense", r"cannot parse plan"),
    ],
)
def test_invalid_plans_are_refused_with_the_valid_choices(plan, message):
    with pytest.raises(ValueError, match=message):
        apply_plan(network("lenet"), plan)


def test_invalid_arguments_are_refused():
    net = network("lenet")
    with pytest.raises(ValueError, match="distill_steps"):
        apply_plan(net, "3 | 0:C1", distill_steps=-1)
    with pytest.raises(ValueError, match="calib must be a tensor of shape"):
        apply_plan(net, "3 | 0:C1", calib=torch.zeros(2, 1, 28, 28), distill_steps=2)


def test_w2_shrinks_the_clouds_first_layer_across_relu_and_pool():
    net = network("lenet")
    encoder, cloud = apply_plan(net, "2 | 0:W2")
    kept = encoder.body[0].out_channels
    assert kept == round(0.7 * 6) == 4
    assert [s.out_channels for s in encoder.layers] == [4, 0, 4]
    assert cloud.layers[0].in_channels == cloud.body[0].in_channels == 4
    assert _run(encoder, cloud, batch(net)).shape == (2, 10)


def test_w2_keeps_the_filters_with_the_largest_l1_norm():
    net = network("lenet")
    encoder, _ = apply_plan(net, "3 | 0:W2")
    norms = net.body[0].weight.abs().sum((1, 2, 3))
    keep = torch.topk(norms, 4).indices.sort().values
    assert torch.equal(encoder.body[0].weight, net.body[0].weight[keep])
    assert torch.equal(encoder.body[3].weight, net.body[3].weight[:, keep])


def test_w2_before_an_identity_shortcut_scatters_the_residual_back():
    net = network("resnet18")
    encoder, cloud = apply_plan(net, "3 | 0:W2")
    assert encoder.body[0].out_channels == 45 and encoder.layers[3].in_channels == 45
    assert encoder.body[3].conv1.in_channels == 45
    assert type(encoder.body[3].shortcut).__name__ == "ChannelScatter"
    assert _run(encoder, cloud, batch(net)).shape == (2, 10)


def test_w1_zeros_survive_an_optimizer_step_and_count_as_removed():
    net = network("lenet")
    encoder, cloud = apply_plan(net, "9 | 0:W1 3:W1 6:W1 8:W1")
    dense = count_params(split(net, 9)[0])
    assert count_params(encoder) == dense - (225 + 1200 + 24000 + 5040)
    model = torch.nn.Sequential(encoder, cloud).train()
    masks = [m.weight_mask.clone() for m in encoder.modules() if hasattr(m, "weight_mask")]
    assert len(masks) == 4
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        model(batch(net, 8)).square().mean().backward()
        optimizer.step()
    model(batch(net, 2))
    for mask, module in zip(masks, [m for m in encoder.modules() if hasattr(m, "weight_mask")], strict=True):
        assert torch.all(module.weight[mask == 0] == 0)
    assert count_params(encoder) == dense - (225 + 1200 + 24000 + 5040)


def test_cloud_side_layers_are_untouched_except_w2_readers():
    net = network("alexnet")
    encoder, cloud = apply_plan(net, "13 | 0:W1 3:C1 10:W2")
    for i, module in enumerate(cloud.body[1:], start=cloud.offset + 1):
        for a, b in zip(module.state_dict().values(), net.body[i].state_dict().values(), strict=True):
            assert torch.equal(a, b)


def test_distillation_fits_replaced_layers_and_never_hurts():
    net = network("alexnet")
    x = batch(net, 16)
    plain, _ = apply_plan(net, "3 | 0:C3 3:C3", calib=x, distill_steps=0)
    torch.manual_seed(0)
    tuned, _ = apply_plan(net, "3 | 0:C3 3:C3", calib=x, distill_steps=10)
    with torch.no_grad():
        target = net.forward_range(x, 0, 4)
        before = (plain(x) - target).square().mean()
        after = (tuned(x) - target).square().mean()
    assert after < before


def test_apply_plan_is_fast_on_lenet():
    net = build("lenet", in_channels=1)
    x = torch.randn(64, 1, 32, 32)
    plan = "9 | 0:C3 3:C2 6:F1 8:W1"
    apply_plan(net, plan)  # warm-up
    start = time.perf_counter()
    for _ in range(5):
        apply_plan(net, plan)
    assert (time.perf_counter() - start) / 5 < 0.05
    # distillation: ~0.2 s on one idle core (C2's three batch norms fit with batch statistics)
    start = time.perf_counter()
    apply_plan(net, plan, calib=x, distill_steps=20)
    assert time.perf_counter() - start < 1.0
