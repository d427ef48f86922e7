"""split(model, p): the two halves compose to the original model exactly."""

from __future__ import annotations

import pytest
import torch

from privacysplit.models import build, list_models, split, valid_partitions


@pytest.mark.parametrize("name", list_models())
def test_cloud_of_encoder_equals_model_for_every_partition(name):
    torch.manual_seed(0)
    shape = (600,) if name == "fcn" else (3, 32, 32)
    net = build(name, input_shape=shape).eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        expected = net(x)
        for p in valid_partitions(net):
            encoder, cloud = split(net, p)
            assert len(encoder) == p + 1 and len(encoder) + len(cloud) == len(net)
            assert cloud.offset == p + 1
            assert torch.equal(cloud(encoder(x)), expected), f"{name} p={p}"


def test_split_shares_modules():
    net = build("lenet")
    encoder, cloud = split(net, 2)
    assert encoder.body[0] is net.body[0] and cloud.body[0] is net.body[3]


@pytest.mark.parametrize("p", [-1, 11, 2.0, True])
def test_invalid_partition_is_refused(p):
    with pytest.raises(ValueError, match="valid: 0..10"):
        split(build("lenet"), p)
