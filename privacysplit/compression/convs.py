"""Shared helpers for techniques that rebuild convolutions.

* geometry: which padding (or crop) makes a differently sized kernel produce exactly the
  replaced convolution's output size, for every input size;
* block walking: which convolutions inside a residual/inception block a technique replaces,
  and how to swap one in place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
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


@torch.no_grad()
def densify_(weight: torch.Tensor) -> torch.Tensor:
    """Replace exact zeros of a freshly built, trainable ``weight`` by tiny values (1e-6 of
    its RMS), in place.

    Structured initialisations (an identity depthwise kernel, a zero projection) would
    otherwise look like pruned weights to the non-zero parameter count (S1), although
    retraining fills them in; nudging them keeps the count honest and the function the same
    to within 1e-6.
    """
    zeros = weight == 0
    if zeros.any():
        rms = weight.pow(2).mean().sqrt().clamp_min(1e-3)
        noise = torch.randn(int(zeros.sum()), dtype=weight.dtype, device=weight.device)
        weight[zeros] = noise * (1e-6 * rms) + (noise == 0).to(weight.dtype) * 1e-6 * rms
    return weight


def depthwise_kernel(conv: nn.Conv2d) -> tuple[Pair, Pair]:
    """Kernel and padding of the depthwise convolution that replaces ``conv`` in C1/C2.

    The original kernel where it has spatial extent (a 5x5 stays 5x5, so the output size and
    the rank-1 initialisation both hold exactly); Table 2's 3x3 (same-padded) for a 1x1
    convolution, which has nothing to separate and otherwise would get a useless 1x1
    depthwise scale.
    """
    kernel, padding = pair(conv.kernel_size), pair(conv.padding)
    if kernel == (1, 1):
        return (3, 3), (padding[0] + 1, padding[1] + 1)
    return kernel, padding


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
        return ReplacedPath(build(virtual), block.use_residual)
    targets = block_targets(block)
    if not targets:
        raise ValueError(
            f"{type(block).__name__} has no standard convolution with a spatial kernel to replace"
        )
    for parent, attr, conv in targets:
        setattr(parent, attr, build(conv))
    return block
