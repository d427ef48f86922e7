"""A user's nn.Module as a layer table: Sequentials, torch.fx chains, blocks, torchvision."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from privacysplit.models import split
from privacysplit.models.convert import fingerprint, from_module, layer_table


def _cnn(c: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(4, 8, 3, stride=2), nn.ReLU()),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 16),
        nn.ReLU(),
        nn.Linear(16, 3),
    )


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 5, padding=2)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class Chain(nn.Module):
    """A chain written as forward code: functions, x.view(x.size(0), -1), a block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.block = Residual(6)
        self.head = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.block(x)
        x = x.view(x.size(0), -1)
        return self.head(x)


class InlineResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x):
        y = self.conv(x) + x
        return self.fc(torch.flatten(y, 1))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = -x
        return self.fc(x)


def test_sequential_is_flattened_and_indices_follow_the_modules():
    model = _cnn()
    net = from_module(model, (1, 28, 28))
    assert [s.type for s in net.layers] == [
        "conv", "bn", "relu", "pool", "conv", "relu", "flatten", "linear", "relu", "linear"]
    assert net.body[0] is model[0][0] and net.body[4] is model[2][0] and net.body[9] is model[6]
    assert net.layers[4].stride == 2 and net.layers[4].in_channels == 4 and net.layers[4].out_channels == 8
    assert net.layers[7].in_channels == 288 and net.num_classes == 3 and net.input_shape == (1, 28, 28)
    x = torch.rand(5, 1, 28, 28)
    model.eval(), net.eval()
    assert torch.equal(net(x), model(x))


def test_traced_chain_opens_modules_and_keeps_a_residual_as_one_block():
    model = Chain()
    net = from_module(model, (3, 16, 16))
    assert [s.type for s in net.layers] == ["conv", "relu", "block", "flatten", "linear"]
    assert net.body[2] is model.block
    block = net.layers[2]
    assert (block.kernel, block.stride, block.in_channels, block.out_channels) == (5, 1, 6, 6)
    x = torch.rand(3, 3, 16, 16)
    assert torch.allclose(net(x), model(x))


def test_every_split_composes_to_the_original_output():
    model = Chain().eval()
    net = from_module(model, (3, 16, 16)).eval()
    x = torch.rand(4, 3, 16, 16)
    for p in range(len(net)):
        encoder, cloud = split(net, p)
        assert torch.allclose(cloud(encoder(x)), model(x), atol=1e-6)


def test_a_top_level_residual_is_an_error_naming_the_join():
    with pytest.raises(ValueError, match=r"node 'add' .*reads 'conv', 'x'.*Wrap the branching part"):
        from_module(InlineResidual(), (3, 8, 8))


def test_untraceable_top_level_module_is_one_clear_error():
    with pytest.raises(ValueError, match=r"torch.fx cannot trace Branchy.*nn.Sequential"):
        from_module(Branchy(), (12,))


def test_an_untraceable_submodule_counts_as_one_block():
    model = nn.Sequential(nn.Linear(12, 12), Branchy())
    net = from_module(model, (12,))
    assert [s.type for s in net.layers] == ["linear", "block"]


def test_shared_weights_and_non_classifier_outputs_are_refused():
    conv = nn.Conv2d(3, 3, 3, padding=1)
    with pytest.raises(ValueError, match="shared weights"):
        from_module(nn.Sequential(conv, nn.ReLU(), conv, nn.Flatten(), nn.Linear(3 * 64, 2)), (3, 8, 8))
    with pytest.raises(ValueError, match=r"outputs shape \(3, 8, 8\).*\(batch, classes\)"):
        from_module(nn.Sequential(conv), (3, 8, 8))
    with pytest.raises(ValueError, match="fails on an input of shape"):
        from_module(nn.Sequential(nn.Linear(5, 2)), (7,))


def test_torchvision_resnet18_is_a_table_of_blocks():
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    net = from_module(model, (3, 32, 32), name="resnet18")
    assert len(net) == 15
    assert [i for i, s in enumerate(net.layers) if s.type == "block"] == list(range(4, 12))
    assert [net.layers[i].stride for i in range(4, 12)] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert net.layers[14].type == "linear" and net.layers[14].out_channels == 10
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), model(x), atol=1e-5)


def test_torchvision_mobilenet_v2_counts_every_inverted_residual_as_a_block():
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=10)
    net = from_module(model, (3, 32, 32))
    assert len(net) == 27
    # all 17 inverted residuals, with or without an active residual link
    assert [i for i, s in enumerate(net.layers) if s.type == "block"] == list(range(3, 20))
    assert [s.type for s in net.layers[20:]] == ["conv", "bn", "relu", "pool", "flatten", "dropout", "linear"]


def test_torchvision_vgg11_and_alexnet_keep_their_feature_indices():
    vgg = from_module(torchvision.models.vgg11(weights=None, num_classes=10), (3, 32, 32))
    assert len(vgg) == 30
    assert [i for i, s in enumerate(vgg.layers) if s.type == "conv"] == [0, 3, 6, 8, 11, 13, 16, 18]
    alex = from_module(torchvision.models.alexnet(weights=None, num_classes=10), (3, 64, 64))
    assert len(alex) == 22
    assert [i for i, s in enumerate(alex.layers) if s.type == "conv"] == [0, 3, 6, 8, 10]
    assert [i for i, s in enumerate(alex.layers) if s.type == "linear"] == [16, 19, 21]


def test_layer_table_and_fingerprint():
    model = _cnn()
    net = from_module(model, (1, 28, 28))
    rows = layer_table(net)
    assert [r["index"] for r in rows] == list(range(10))
    assert rows[4]["output"] == (8, 6, 6) and rows[0]["params"] == 4 * 9 + 4
    before = fingerprint(net)
    assert fingerprint(from_module(model, (1, 28, 28))) == before
    with torch.no_grad():
        model[6].bias.add_(1.0)
    assert fingerprint(net) != before


class SkipSequential(nn.Sequential):
    """A Sequential subclass whose forward is not the children in order."""

    def forward(self, x):
        return x + super().forward(x)


def test_a_sequential_subclass_with_its_own_forward_is_traced_not_listed():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), SkipSequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU()),
                          nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    net = from_module(model, (2, 6, 6))
    assert [s.type for s in net.layers] == ["conv", "block", "flatten", "linear"]
    x = torch.rand(2, 2, 6, 6)
    assert torch.allclose(net(x), model(x))
