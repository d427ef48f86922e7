"""C1-C3 are the structures their papers name: kernels, groups, order of layers, shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privacysplit.compression import CompressionSettings, apply_plan, get
from privacysplit.compression.layers import Fire, InvertedBottleneck
from privacysplit.models import LayerSpec, build, layer_macs

GEOMETRIES = [  # (kernel, stride, padding)
    (3, 1, 1), (3, 2, 1), (5, 1, 0), (5, 1, 2), (5, 2, 2), (7, 2, 3), (1, 1, 0), (1, 2, 0), (2, 2, 0), (4, 1, 1),
]


def _build(technique: str, k: int, s: int, p: int, cin: int = 8, cout: int = 12) -> tuple[nn.Conv2d, nn.Module]:
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, k, s, p)
    spec = LayerSpec("conv", k, s, p, cin, cout)
    return conv, get(technique).transform(conv, spec, CompressionSettings())


def _conv(module: nn.Module) -> nn.Conv2d:
    return module if isinstance(module, nn.Conv2d) else next(m for m in module if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize(("k", "s", "p"), GEOMETRIES)
@pytest.mark.parametrize("technique", ["C1", "C2", "C3"])
def test_output_shape_is_the_replaced_layers(technique, k, s, p):
    if technique == "C3" and k % 2 == 0:
        pytest.skip("C3 applies to odd kernels only")
    conv, new = _build(technique, k, s, p)
    new.eval()
    for size in (13, 16):
        x = torch.randn(2, 8, size, size)
        assert new(x).shape == conv(x).shape, (technique, k, s, p, size)


@pytest.mark.parametrize(("k", "s", "p", "dilation"), [(3, 1, 1, 1), (5, 1, 0, 2), (7, 2, 3, 3), (1, 1, 0, 1)])
def test_c1_is_3x3_depthwise_bn_relu_then_1x1_pointwise_bn_relu(k, s, p, dilation):
    _, new = _build("C1", k, s, p)
    assert list(dict(new.named_children())) == ["depthwise", "bn1", "relu1", "pointwise", "bn2", "relu2"]
    dw, pw = _conv(new.depthwise), new.pointwise
    assert dw.kernel_size == (3, 3) and dw.groups == 8 and dw.in_channels == dw.out_channels == 8
    assert dw.stride == (s, s) and dw.dilation == (dilation, dilation)
    assert pw.kernel_size == (1, 1) and pw.groups == 1 and (pw.in_channels, pw.out_channels) == (8, 12)
    assert isinstance(new.bn1, nn.BatchNorm2d) and new.bn1.num_features == 8
    assert isinstance(new.bn2, nn.BatchNorm2d) and new.bn2.num_features == 12
    assert isinstance(new.relu1, nn.ReLU) and isinstance(new.relu2, nn.ReLU)
    assert dw.bias is None and pw.bias is None  # each batch norm carries the shift


def test_c1_on_an_even_kernel_pads_asymmetrically():
    _, new = _build("C1", 2, 2, 0)
    assert isinstance(new.depthwise, nn.Sequential) and isinstance(new.depthwise[0], nn.ZeroPad2d)
    assert new.depthwise[0].padding == (0, 1, 0, 1)


def test_c2_is_expand_bn_relu6_depthwise_bn_relu6_project_bn_with_residual():
    _, new = _build("C2", 3, 1, 1, cin=8, cout=8)
    assert isinstance(new, InvertedBottleneck) and new.residual
    names = [n for n, _ in new.named_children()]
    assert names == ["expand", "bn1", "depthwise", "bn2", "project", "bn3"]
    hidden = round(CompressionSettings().c2_expansion * 8)
    assert new.expand.kernel_size == (1, 1) and new.expand.out_channels == hidden
    dw = _conv(new.depthwise)
    assert dw.kernel_size == (3, 3) and dw.groups == hidden
    assert new.project.kernel_size == (1, 1) and new.project.out_channels == 8
    assert [new.bn1.num_features, new.bn2.num_features, new.bn3.num_features] == [hidden, hidden, 8]
    # ReLU6 after the first two batch norms, none after the projection (linear bottleneck)
    new.eval()
    with torch.no_grad():
        for bn in (new.bn1, new.bn2, new.bn3):
            bn.bias.fill_(100.0)
        x = torch.zeros(1, 8, 5, 5)
        hidden_out = torch.nn.functional.relu6(new.bn1(new.expand(x)))
        assert float(hidden_out.max()) == 6.0
        assert float(new(x).max()) > 6.0  # the projection's output is not clipped


def test_c2_drops_the_residual_where_shapes_differ():
    assert not _build("C2", 3, 2, 1, cin=8, cout=8)[1].residual
    assert not _build("C2", 3, 1, 1, cin=8, cout=12)[1].residual
    assert not _build("C2", 5, 1, 0, cin=8, cout=8)[1].residual  # "valid" 5x5 shrinks the map


def test_c3_is_squeeze_relu_then_expand_1x1_and_3x3_each_with_relu():
    conv, new = _build("C3", 3, 1, 1, cin=16, cout=16)
    assert isinstance(new, Fire)
    assert new.squeeze.kernel_size == (1, 1) and new.squeeze.out_channels == 2  # 0.125 x 16
    assert _conv(new.expand1x1).kernel_size == (1, 1) and _conv(new.expand3x3).kernel_size == (3, 3)
    assert _conv(new.expand1x1).out_channels + _conv(new.expand3x3).out_channels == 16
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in new.modules())  # SqueezeNet has none
    with torch.no_grad():
        assert float(new(torch.randn(4, 16, 8, 8)).min()) >= 0.0  # every branch ends in a ReLU


def test_replacements_take_the_mode_of_the_layer_they_replace():
    net = build("alexnet", in_channels=1).eval()
    encoder, _ = apply_plan(net, "5 | 0:C1 3:C2")
    assert not any(m.training for m in encoder.body[0].modules())
    assert not any(m.training for m in encoder.body[3].modules())


def test_distillation_leaves_batch_norm_statistics_of_the_calibration_batch():
    net = build("alexnet", in_channels=1).eval()
    x = torch.randn(16, 1, 32, 32)
    encoder, _ = apply_plan(net, "2 | 0:C1", calib=x, distill_steps=3)
    c1 = encoder.body[0]
    with torch.no_grad():
        z = c1.depthwise(x)
    assert torch.allclose(c1.bn1.running_mean, z.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(c1.bn1.running_var, z.var((0, 2, 3)), rtol=1e-3)


def test_cost_model_counts_the_new_layers():
    net = build("alexnet", in_channels=1).eval()
    encoder, _ = apply_plan(net, "5 | 3:C1")
    macs = layer_macs(encoder)
    # conv3: 64 -> 192 at 8x8; C1: depthwise 64 x 9 x 64 + pointwise 64 x 192 x 64 (BN/ReLU: 0)
    assert macs[3] == 64 * 9 * 64 + 64 * 192 * 64
    from privacysplit.models import count_params

    assert count_params(encoder.body[3]) == 64 * 9 + 2 * 64 + 64 * 192 + 2 * 192
