"""The base-network pool: CIFAR-style (32x32) networks described layer by layer.

Every builder appends ``(LayerSpec, module)`` pairs, so the indices of the paper's tables
fall out of the construction order: VGG11-BN convolutions at 0, 4, 8, 11, 15, 18, 22, 25;
AlexNet convolutions at 0, 3, 6, 8, 10 and its first fully connected layer at 14; LeNet
convolutions at 0, 3 and fully connected layers at 6, 8, 10; ResNet18 blocks at 3..10;
ResNet50 blocks at 3..18.

Differences from the ImageNet originals, for 32x32 inputs (as in the paper's CIFAR runs):

* ``alexnet`` — 3x3 convolutions (first one stride 2), three 2x2 max-pools, and a
  1024-1024 classifier instead of 4096-4096 so it trains on a CPU.
* ``vgg*`` — batch-normalised features, one linear classifier (512 -> classes).
* ``resnet*`` — 3x3 stem with stride 1 and no max-pool.
* ``mobilenet_v2`` — stem stride 1 and the second stage at stride 1 (CIFAR variant).
* ``inception_v3`` — torchvision's Inception A-E blocks with a two-convolution 3x3 stem and
  one 2x2 max-pool instead of the 299x299 stem, and no auxiliary head.  Block order and
  channel widths otherwise follow the original (A x3, B, C x4, D, E x2).
* ``fcn`` — a five-layer fully connected network for tabular data (Purchase100).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn
from torchvision.models.inception import InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

from privacysplit.models.blocks import BasicBlock, Bottleneck, InvertedResidual, WideBasic
from privacysplit.models.network import Network
from privacysplit.models.spec import LayerSpec


class _Builder:
    """Accumulates ``(spec, module)`` pairs while tracking the current channel count."""

    def __init__(self, channels: int) -> None:
        self.specs: list[LayerSpec] = []
        self.modules: list[nn.Module] = []
        self.c = channels

    def add(self, spec: LayerSpec, module: nn.Module) -> _Builder:
        self.specs.append(spec)
        self.modules.append(module)
        return self

    def conv(self, out: int, k: int = 3, s: int = 1, p: int = 1, bias: bool = True) -> _Builder:
        self.add(LayerSpec("conv", k, s, p, self.c, out), nn.Conv2d(self.c, out, k, s, p, bias=bias))
        self.c = out
        return self

    def bn(self) -> _Builder:
        return self.add(LayerSpec("bn", 0, 0, 0, self.c, self.c), nn.BatchNorm2d(self.c))

    def relu(self, six: bool = False) -> _Builder:
        return self.add(LayerSpec("relu"), nn.ReLU6() if six else nn.ReLU())

    def maxpool(self, k: int = 2, s: int = 2) -> _Builder:
        return self.add(LayerSpec("pool", k, s, 0, self.c, self.c), nn.MaxPool2d(k, s))

    def avgpool(self) -> _Builder:
        return self.add(LayerSpec("pool", 0, 0, 0, self.c, self.c), nn.AdaptiveAvgPool2d(1))

    def dropout(self, p: float = 0.5) -> _Builder:
        return self.add(LayerSpec("dropout"), nn.Dropout(p))

    def linear(self, fin: int, out: int) -> _Builder:
        self.add(LayerSpec("linear", 0, 0, 0, fin, out), nn.Linear(fin, out))
        self.c = out
        return self

    def block(self, module: nn.Module, out: int, k: int = 3, s: int = 1) -> _Builder:
        self.add(LayerSpec("block", k, s, k // 2, self.c, out), module)
        self.c = out
        return self

    def build(self, name: str, input_shape: tuple[int, ...], num_classes: int) -> Network:
        return Network(self.specs, self.modules, name=name, input_shape=input_shape, num_classes=num_classes)


def _lenet(c: int, n: int, size: int) -> _Builder:
    b = _Builder(c).conv(6, 5, 1, 0).relu().maxpool().conv(16, 5, 1, 0).relu().maxpool()
    side = ((size - 4) // 2 - 4) // 2
    return b.linear(16 * side * side, 120).relu().linear(120, 84).relu().linear(84, n)


def _alexnet(c: int, n: int, size: int) -> _Builder:
    b = _Builder(c).conv(64, 3, 2, 1).relu().maxpool().conv(192).relu().maxpool()
    b.conv(384).relu().conv(256).relu().conv(256).relu().maxpool().dropout()
    side = size // 16
    return b.linear(256 * side * side, 1024).relu().dropout().linear(1024, 1024).relu().linear(1024, n)


_VGG = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


def _vgg(cfg: list) -> Callable[[int, int, int], _Builder]:
    def make(c: int, n: int, size: int) -> _Builder:
        b = _Builder(c)
        for v in cfg:
            if v == "M":
                b.maxpool()
            else:
                b.conv(v).bn().relu()
        side = size // 32
        return b.linear(512 * side * side, n)

    return make


def _resnet(block: type, counts: list[int]) -> Callable[[int, int, int], _Builder]:
    def make(c: int, n: int, size: int) -> _Builder:
        b = _Builder(c).conv(64, 3, 1, 1, bias=False).bn().relu()
        for stage, (planes, count) in enumerate(zip([64, 128, 256, 512], counts, strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                out = planes * block.expansion
                b.block(block(b.c, planes, stride), out, 3, stride)
        return b.avgpool().linear(b.c, n)

    return make


def _mobilenet_v2(c: int, n: int, size: int) -> _Builder:
    # (expansion, out_planes, num_blocks, stride) -- CIFAR variant: stage 2 at stride 1
    cfg = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    b = _Builder(c).conv(32, 3, 1, 1, bias=False).bn().relu(six=True)
    for expansion, out, count, stride in cfg:
        for i in range(count):
            s = stride if i == 0 else 1
            b.block(InvertedResidual(b.c, out, expansion, s), out, 3, s)
    b.conv(1280, 1, 1, 0, bias=False).bn().relu(six=True).avgpool().dropout(0.2)
    return b.linear(1280, n)


def _wide_resnet28_10(c: int, n: int, size: int) -> _Builder:
    depth, k = 28, 10
    per_group = (depth - 4) // 6
    b = _Builder(c).conv(16, 3, 1, 1)
    for g, planes in enumerate([16 * k, 32 * k, 64 * k]):
        for i in range(per_group):
            stride = 2 if g > 0 and i == 0 else 1
            b.block(WideBasic(b.c, planes, stride), planes, 3, stride)
    return b.bn().relu().avgpool().linear(b.c, n)


def _inception_v3(c: int, n: int, size: int) -> _Builder:
    b = _Builder(c).conv(32, 3, 1, 1, bias=False).bn().relu()
    b.conv(64, 3, 1, 1, bias=False).bn().relu().maxpool()
    b.block(InceptionA(64, 32), 256).block(InceptionA(256, 64), 288).block(InceptionA(288, 64), 288)
    b.block(InceptionB(288), 768, 3, 2)
    for c7 in (128, 160, 160, 192):
        b.block(InceptionC(768, c7), 768, 7)
    b.block(InceptionD(768), 1280, 3, 2).block(InceptionE(1280), 2048).block(InceptionE(2048), 2048)
    return b.avgpool().dropout().linear(2048, n)


def _fcn(c: int, n: int, size: int) -> _Builder:
    b = _Builder(c)
    b.linear(c * size * size, 1024).relu().linear(1024, 512).relu().linear(512, 256).relu()
    return b.linear(256, 128).relu().linear(128, n)


_POOL: dict[str, Callable[[int, int, int], _Builder]] = {
    "lenet": _lenet,
    "alexnet": _alexnet,
    "vgg11": _vgg(_VGG["vgg11"]),
    "vgg13": _vgg(_VGG["vgg13"]),
    "vgg16": _vgg(_VGG["vgg16"]),
    "resnet18": _resnet(BasicBlock, [2, 2, 2, 2]),
    "resnet50": _resnet(Bottleneck, [3, 4, 6, 3]),
    "mobilenet_v2": _mobilenet_v2,
    "wide_resnet28_10": _wide_resnet28_10,
    "inception_v3": _inception_v3,
    "fcn": _fcn,
}


def list_models() -> list[str]:
    """Names of the networks in the pool, in a stable order."""
    return list(_POOL)


def build(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    input_shape: tuple[int, ...] | None = None,
) -> Network:
    """Build the named network, randomly initialised.

    Args:
        name: one of :func:`list_models`.
        num_classes: outputs of the last layer.
        in_channels: input channels (1 for MNIST, 3 for CIFAR).
        image_size: input side length; the pool is designed for 32.
        input_shape: overrides ``in_channels``/``image_size``; for tabular data pass
            ``(n_features,)`` (only ``fcn`` accepts a flat input).

    Raises:
        ValueError: for an unknown name or an input the network cannot take.
    """
    if name not in _POOL:
        raise ValueError(f"unknown network {name!r}; valid networks: {', '.join(_POOL)}")
    if input_shape is not None:
        if len(input_shape) == 1:
            if name != "fcn":
                raise ValueError(f"{name} needs an image input (C, H, W); only 'fcn' takes a flat {input_shape}")
            in_channels, image_size = int(input_shape[0]), 1
        elif len(input_shape) == 3 and input_shape[1] == input_shape[2]:
            in_channels, image_size = int(input_shape[0]), int(input_shape[1])
        else:
            raise ValueError(f"input_shape must be (features,) or (C, S, S), got {input_shape}")
    if image_size < 32 and name not in ("fcn",):
        raise ValueError(f"{name} needs inputs of at least 32x32, got {image_size}x{image_size}")
    if num_classes < 1 or in_channels < 1:
        raise ValueError("num_classes and in_channels must be positive")
    shape = (in_channels * image_size * image_size,) if image_size == 1 else (in_channels, image_size, image_size)
    if name == "fcn" and image_size == 1:
        builder = _fcn(in_channels, num_classes, 1)
    else:
        builder = _POOL[name](in_channels, num_classes, image_size)
    return builder.build(name, shape, num_classes)
