"""Compressed networks stay traceable: no data-dependent Python control flow."""

from __future__ import annotations

import pytest
import torch
from _compression_helpers import batch, network

from privacysplit.compression import apply_plan

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")


@pytest.mark.parametrize(
    ("name", "plan"),
    [
        ("lenet", "9 | 0:C3 3:C1 6:F2 8:F1"),
        ("lenet", "9 | 0:C2 3:W1 6:W1"),
        ("lenet", "9 | 0:W2 3:W2"),
        ("resnet18", "5 | 0:W2 3:C2 4:C3 5:W1"),
        ("mobilenet_v2", "5 | 3:C1 4:W2 5:C3"),
    ],
)
def test_jit_trace_reproduces_the_compressed_network(name, plan):
    net = network(name)
    encoder, cloud = apply_plan(net, plan)
    model = torch.nn.Sequential(encoder, cloud).eval()
    x = batch(net)
    traced = torch.jit.trace(model, x, check_trace=False)
    other = batch(net, 3)
    with torch.no_grad():
        assert torch.allclose(traced(other), model(other), atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_torch_export_keeps_masks_and_replacements():
    net = network("lenet")
    encoder, cloud = apply_plan(net, "9 | 0:C3 3:W2 6:F2 8:W1")
    model = torch.nn.Sequential(encoder, cloud).eval()
    exported = torch.export.export(model, (batch(net),))
    with torch.no_grad():
        assert torch.allclose(exported.module()(batch(net)), model(batch(net)), atol=1e-5)
