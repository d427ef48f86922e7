"""One worked example per technique on LeNet (1 input channel), with exact counts.

LeNet: conv0 1->6 5x5 (156 params, 117,600 MACs), conv3 6->16 5x5 (2,416), fc6 400->120
(48,120), fc8 120->84, fc10 84->10.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privacysplit.compression import apply_plan
from privacysplit.models import build, count_params, layer_macs


@pytest.fixture(scope="module")
def lenet():
    torch.manual_seed(0)
    return build("lenet", in_channels=1).eval()


def _layer(lenet, plan: str, index: int, nonzero: bool = False) -> tuple[int, int]:
    encoder, _ = apply_plan(lenet, plan)
    return count_params(encoder.body[index], nonzero=nonzero), layer_macs(encoder)[index]


def test_base_counts(lenet):
    assert count_params(lenet.body[0]) == 156 and layer_macs(lenet)[0] == 117_600


def test_c1_depthwise_separable(lenet):
    # depthwise 1x5x5 = 25 (no bias) + pointwise 6x1 + 6 bias = 37
    assert _layer(lenet, "0 | 0:C1", 0) == (37, 25 * 784 + 6 * 784)


def test_c2_inverted_residual(lenet):
    # hidden = 2 x 1: expand 1x2 = 2, depthwise 2x25 = 50, project 2x6 + 6 = 18 -> 70
    params, macs = _layer(lenet, "0 | 0:C2", 0)
    assert params == 70
    assert macs == 2 * 1024 + 50 * 784 + 12 * 784


def test_c3_fire(lenet):
    # conv3 6->16: squeeze s = min(6, round(0.125 x 16)) = 2: 6x2 + 2 = 14;
    # expand1x1 2x8 + 8 = 24; expand3x3 2x8x9 + 8 = 152 -> 190 (vs 2,416)
    params, macs = _layer(lenet, "3 | 3:C3", 3)
    assert params == 190
    assert macs == 12 * 196 + 16 * 100 + 144 * 100


def test_w1_magnitude_pruning(lenet):
    # 2,400 conv weights, half pruned, 16 biases kept
    assert _layer(lenet, "3 | 3:W1", 3, nonzero=True) == (1216, 2400 * 100)
    encoder, _ = apply_plan(lenet, "3 | 3:W1")
    kept = encoder.body[3].weight_orig.abs()[encoder.body[3].weight_mask.bool()]
    dropped = encoder.body[3].weight_orig.abs()[~encoder.body[3].weight_mask.bool()]
    assert kept.min() >= dropped.max()


def test_w2_filter_pruning(lenet):
    # 4 of 6 filters stay: conv0 4x25 + 4 = 104; conv3 reads 4 channels: 16x4x25 + 16 = 1,616
    encoder, _ = apply_plan(lenet, "3 | 0:W2")
    assert count_params(encoder.body[0]) == 104 and count_params(encoder.body[3]) == 1616
    assert layer_macs(encoder)[0] == 100 * 784 and layer_macs(encoder)[3] == 1600 * 100


def test_f1_svd(lenet):
    # k = ceil(0.25 x 120) = 30: 400x30 + 30x120 + 120 = 15,720 (vs 48,120)
    assert _layer(lenet, "6 | 6:F1", 6) == (15_720, 15_600)
    encoder, _ = apply_plan(lenet, "6 | 6:F1")
    approx = encoder.body[6][1].weight @ encoder.body[6][0].weight
    u, s, vh = torch.linalg.svd(lenet.body[6].weight.detach())
    best = (u[:, :30] * s[:30]) @ vh[:30]
    assert torch.allclose(approx, best, atol=1e-5)


def test_f2_sparse_svd(lenet):
    # as F1 with half of the 30x400 codes zeroed: 6,000 + 3,600 + 120 = 9,720 non-zero
    assert _layer(lenet, "6 | 6:F2", 6, nonzero=True) == (9_720, 15_600)
    assert isinstance(apply_plan(lenet, "6 | 6:F2")[0].body[6], nn.Sequential)


def test_c1_on_a_1x1_conv_starts_as_the_original_and_grows_by_9_in():
    conv = nn.Conv2d(8, 32, 1)
    from privacysplit.compression import CompressionSettings, get
    from privacysplit.models import LayerSpec

    new = get("C1").transform(conv, LayerSpec("conv", 1, 1, 0, 8, 32), CompressionSettings())
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(new(x), conv(x), atol=1e-4)
    assert count_params(new) == count_params(conv) + 9 * 8
