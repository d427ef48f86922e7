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
    # depthwise 3x3 (dilation 2) 1x9 = 9, BN 2, pointwise 6x1 = 6 (no bias), BN 12 -> 29
    assert _layer(lenet, "0 | 0:C1", 0) == (29, 9 * 784 + 6 * 784)


def test_c2_inverted_residual(lenet):
    # hidden = 2 x 1: expand 1x2 = 2, BN 4, depthwise 3x3 2x9 = 18, BN 4, project 2x6 = 12,
    # BN 12 -> 52 (no conv biases: each convolution is followed by a batch norm)
    params, macs = _layer(lenet, "0 | 0:C2", 0)
    assert params == 52
    assert macs == 2 * 1024 + 18 * 784 + 12 * 784


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


def test_f2_ksvd(lenet):
    # k = 30 atoms of 120 (dense dictionary 3,600), codes 30 x 400 with
    # round(0.25 x 30) = 8 non-zeros per column (3,200), bias 120 -> 6,920 non-zero
    assert _layer(lenet, "6 | 6:F2", 6, nonzero=True) == (6_920, 15_600)
    assert isinstance(apply_plan(lenet, "6 | 6:F2")[0].body[6], nn.Sequential)


def test_c1_on_a_1x1_conv_grows_by_its_depthwise_and_batch_norms():
    conv = nn.Conv2d(8, 32, 1)
    from privacysplit.compression import CompressionSettings, get
    from privacysplit.models import LayerSpec

    new = get("C1").transform(conv, LayerSpec("conv", 1, 1, 0, 8, 32), CompressionSettings())
    assert new(torch.randn(2, 8, 6, 6)).shape == (2, 32, 6, 6)
    # depthwise 9 x 8, BN 2 x 8, pointwise 8 x 32 (no bias), BN 2 x 32
    assert count_params(new) == 72 + 16 + 256 + 64 == count_params(conv) - 32 + 9 * 8 + 2 * 8 + 2 * 32
