"""The small modules that compressed layers are made of.

Every ``forward`` here is straight-line tensor code: the only branches test attributes fixed
at construction (never tensor values), so compressed networks stay traceable by
``torch.jit.trace`` and exportable.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ChannelScatter(nn.Module):
    """Put ``len(index)`` channels back at their original positions among ``channels``.

    W2 uses it where a pruned channel set meets a connection that cannot shrink (an identity
    shortcut): the removed channels read as zeros, exactly what a removed filter produces.
    It has no parameters and multiplies nothing.
    """

    def __init__(self, index: torch.Tensor, channels: int) -> None:
        super().__init__()
        self.channels = int(channels)
        self.register_buffer("index", index.clone().long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = list(x.shape)
        shape[1] = self.channels
        return x.new_zeros(shape).index_copy(1, self.index, x)

    def extra_repr(self) -> str:
        return f"{self.index.numel()} -> {self.channels}"


class Crop(nn.Module):
    """Remove ``(top/bottom, left/right)`` border pixels: a convolution's negative padding."""

    def __init__(self, crop: tuple[int, int]) -> None:
        super().__init__()
        self.crop = (int(crop[0]), int(crop[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ch, cw = self.crop
        return F.pad(x, (-cw, -cw, -ch, -ch))

    def extra_repr(self) -> str:
        return f"crop={self.crop}"


class InvertedBottleneck(nn.Module):
    """C2's structure, MobileNetV2's inverted residual: 1x1 expand, BN, ReLU6, 3x3 depthwise,
    BN, ReLU6, 1x1 linear projection, BN (+ x).

    The batch norms are MobileNetV2's: each convolution is followed by one, and the
    projection has no activation (the "linear bottleneck").  ``depthwise`` may be a
    ``Sequential(ZeroPad2d, Conv2d)`` where the replaced geometry needs asymmetric padding.
    """

    def __init__(self, expand: nn.Conv2d, depthwise: nn.Module, project: nn.Conv2d, residual: bool) -> None:
        super().__init__()
        self.expand = expand
        self.bn1 = nn.BatchNorm2d(expand.out_channels)
        self.depthwise = depthwise
        self.bn2 = nn.BatchNorm2d(expand.out_channels)
        self.project = project
        self.bn3 = nn.BatchNorm2d(project.out_channels)
        self.residual = bool(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.depthwise(y)))
        y = self.bn3(self.project(y))
        return x + y if self.residual else y

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class Fire(nn.Module):
    """C3's structure, SqueezeNet's Fire module: squeeze 1x1 + ReLU, then expand 1x1 + ReLU
    and expand 3x3 + ReLU side by side, concatenated along channels.

    As in SqueezeNet (Iandola et al. 2016), every convolution is followed by a ReLU and there
    is no batch normalisation: the original network has none.  Stride and any negative
    padding (a "valid" 5x5 layer such as LeNet's must lose 2 border pixels) sit in the
    expand branches, so the output has exactly the replaced convolution's shape.
    """

    def __init__(
        self,
        squeeze: nn.Conv2d,
        expand1x1: nn.Module | None,
        expand3x3: nn.Module | None,
    ) -> None:
        super().__init__()
        self.squeeze = squeeze
        self.expand1x1 = expand1x1 if expand1x1 is not None else nn.Identity()
        self.expand3x3 = expand3x3 if expand3x3 is not None else nn.Identity()
        self.branches = (expand1x1 is not None, expand3x3 is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze(x))
        if not self.branches[0]:
            return F.relu(self.expand3x3(s))
        if not self.branches[1]:
            return F.relu(self.expand1x1(s))
        return torch.cat([F.relu(self.expand1x1(s)), F.relu(self.expand3x3(s))], 1)


class ReplacedPath(nn.Module):
    """A residual block whose main path was swapped for a compressed structure.

    Used where a technique of Table 2 meets a block that has no standard spatial convolution
    to replace (MobileNetV2's inverted residual is already depthwise + pointwise): the whole
    main path becomes the technique's structure and the residual link stays.
    """

    def __init__(self, path: nn.Module, residual: bool) -> None:
        super().__init__()
        self.path = path
        self.residual = bool(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.path(x)
        return x + y if self.residual else y
