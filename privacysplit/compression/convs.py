"""Shared helpers for techniques that rebuild convolutions.

* geometry: which padding (or crop) makes a differently sized kernel produce exactly the
  replaced convolution's output size, for every input size;
* block walking: which convolutions inside a residual/inception block a technique replaces,
  and how to swap one in place.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from privacysplit.compression.layers import Crop, ReplacedPath
from privacysplit.models.blocks import InvertedResidual

Pair = tuple[int, int]


def pair(value: int | tuple[int, ...]) -> Pair:
    if isinstance(value, tuple):
        return (int(value[0]), int(value[1]))
    return (int(value), int(value))


def odd_kernel(conv: nn.Conv2d) -> bool:
    return all(k % 2 == 1 for k in pair(conv.kernel_size))


def matching_padding(kernel: Pair, padding: Pair, new_kernel: Pair) -> Pair:
    """Padding that lets ``new_kernel`` (same stride) reproduce ``kernel``/``padding``'s output
    size: ``2 q - e == 2 p - k`` per dimension.  Negative values mean cropping.

    Raises:
        ValueError: when ``k - e`` is odd (no symmetric padding matches).
    """
    out = []
    for k, p, e in zip(kernel, padding, new_kernel, strict=True):
        if (k - e) % 2:
            raise ValueError(f"a {e}-wide kernel cannot reproduce the geometry of a {k}-wide one")
        out.append(p - (k - e) // 2)
    return (out[0], out[1])


def geometric_conv(
    cin: int, cout: int, kernel: Pair, stride: Pair, padding: Pair, *, groups: int = 1, bias: bool = True
) -> nn.Module:
    """A convolution with possibly negative ``padding``, realised as crop + convolution."""
    crop = (max(0, -padding[0]), max(0, -padding[1]))
    pad = (max(0, padding[0]), max(0, padding[1]))
    conv = nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=bias)
    if crop == (0, 0):
        return conv
    return nn.Sequential(Crop(crop), conv)


def dilated_3x3(conv: nn.Conv2d) -> tuple[Pair, tuple[int, int, int, int]]:
    """Dilation and padding ``(left, right, top, bottom)`` that let a 3x3 kernel with the
    same stride reproduce ``conv``'s output size, for every input size.

    Table 2's C1/C2 use a 3x3 depthwise convolution whatever the replaced kernel.  A larger
    odd kernel ``k`` keeps its receptive field through dilation ``(k - 1) / 2`` (a 5x5 becomes a
    3x3 with dilation 2 and the same padding); a 1x1 gets one more pixel of padding on each
    side; an even kernel (no symmetric match) is padded one pixel more at the right/bottom.
    Negative values crop.
    """
    kernel, padding, dilation = pair(conv.kernel_size), pair(conv.padding), pair(conv.dilation)
    dil, pads = [], []
    for k, p, d in zip(kernel, padding, dilation, strict=True):
        span = d * (k - 1) + 1  # the replaced kernel's effective extent
        new = max(1, (span - 1) // 2)
        total = 2 * p - span + (2 * new + 1)  # padding that keeps (H + 2p - span) fixed
        dil.append(new)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return (dil[0], dil[1]), (left, right, top, bottom)


def conv_3x3(cin: int, cout: int, like: nn.Conv2d, *, groups: int = 1, bias: bool = False) -> nn.Module:
    """A 3x3 convolution (dilated and padded by :func:`dilated_3x3`) with ``like``'s stride and
    output size: a plain ``nn.Conv2d`` where symmetric padding suffices, else
    ``Sequential(ZeroPad2d, Conv2d)``."""
    dilation, (left, right, top, bottom) = dilated_3x3(like)
    stride = pair(like.stride)
    if left == right >= 0 and top == bottom >= 0:
        return nn.Conv2d(cin, cout, 3, stride, (top, left), dilation, groups=groups, bias=bias)
    return nn.Sequential(
        nn.ZeroPad2d((left, right, top, bottom)),
        nn.Conv2d(cin, cout, 3, stride, 0, dilation, groups=groups, bias=bias),
    )


def is_replaceable(conv: nn.Module) -> bool:
    """A standard convolution with spatial extent: what C1-C3 rebuild inside a block."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.groups == 1
        and pair(conv.kernel_size) != (1, 1)
        and pair(conv.dilation) == (1, 1)
    )


def block_targets(block: nn.Module) -> list[tuple[nn.Module, str, nn.Conv2d]]:
    """``(parent, attribute, conv)`` for every convolution of ``block`` that C1-C3 replace:
    standard (non-grouped) convolutions with a kernel larger than 1x1, outside shortcuts.
    1x1 convolutions (bottleneck reduce/expand, projections) stay: rebuilding them would only
    grow them."""
    targets = []
    for name, parent in block.named_modules():
        if "shortcut" in name.split("."):
            continue
        for attr, child in parent.named_children():
            if attr != "shortcut" and is_replaceable(child):
                targets.append((parent, attr, child))
    return targets


def replace_in_block(block: nn.Module, build: Callable[[nn.Conv2d], nn.Module]) -> nn.Module:
    """Rebuild the replaceable convolutions of ``block`` with ``build``, in place.

    A MobileNetV2 inverted residual has none (its 3x3 is already depthwise): its whole main
    path is treated as one 3x3 convolution of the same widths and stride, rebuilt with
    ``build`` from freshly initialised weights (nothing trained maps onto the new structure,
    so distillation does the initialising), and its residual link stays.

    Raises:
        ValueError: for a block with neither.
    """
    if isinstance(block, InvertedResidual):
        virtual = nn.Conv2d(
            block.conv1.in_channels, block.conv3.out_channels, 3, block.stride, 1, bias=False
        ).to(block.conv1.weight.device)
        return ReplacedPath(build(virtual), block.use_residual).train(block.training)
    targets = block_targets(block)
    if not targets:
        raise ValueError(
            f"{type(block).__name__} has no standard convolution with a spatial kernel to replace"
        )
    for parent, attr, conv in targets:
        setattr(parent, attr, build(conv))
    return block
