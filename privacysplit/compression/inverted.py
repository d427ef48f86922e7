"""C2 (MobileNetV2): a convolution becomes an inverted residual block.

Structure (:class:`~.layers.InvertedBottleneck`): 1x1 expand ``in -> t in``, ReLU6, depthwise
``k x k`` with the original stride/padding (3x3 for a 1x1 convolution, as Table 2 says), ReLU6,
1x1 linear projection ``t in -> out``, and the residual link ``x + f(x)`` where shapes allow
(stride 1, ``in == out``, same-padded).  ``t`` is ``CompressionSettings.c2_expansion``.

Initialisation from the trained kernel, whenever ``t in >= 2 in``: the first ``2 in`` hidden
channels are ``+x`` and ``-x``, so ``relu6(x) - relu6(-x) = x`` (for ``|x| <= 6``) carries the
input through the nonlinearities, and depthwise/projection take C1's rank-1 factors of the
kernel (of ``W - I`` when the residual link adds ``x`` back).  The block therefore starts as
C1's approximation of the trained layer; the remaining hidden channels start with a zero
projection and learn in retraining.  With ``t < 2`` the block starts from PyTorch's default
initialisation and relies on distillation.

Parameters: ``t in (in + k^2 + out)`` against ``in out k^2``.  Grows: a layer much wider at its
input than its output (``in > (k^2/t - 1) out``, e.g. any 1x1 convolution: MobileNetV2's
320 -> 1280 grows 2.5x), and MobileNetV2's expansion-1 first block (C2 on an inverted
residual rebuilds its main path with expansion ``t``).  MACs follow the parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from privacysplit.compression.convs import depthwise_kernel, pair
from privacysplit.compression.layers import InvertedBottleneck
from privacysplit.compression.replacement import ConvReplacement
from privacysplit.compression.separable import rank1_factors
from privacysplit.compression.settings import CompressionSettings


class InvertedResidualReplacement(ConvReplacement):
    """C2: MobileNetV2 inverted residual, started from the trained kernel where it can."""

    name = "C2"
    title = "MobileNetV2 inverted residual"

    def build(self, conv: nn.Conv2d, settings: CompressionSettings) -> nn.Module:
        cin, cout = conv.in_channels, conv.out_channels
        hidden = max(1, round(settings.c2_expansion * cin))
        kernel, padding = depthwise_kernel(conv)
        stride = pair(conv.stride)
        same = all(2 * p == k - 1 for k, p in zip(kernel, padding, strict=True))
        residual = stride == (1, 1) and cin == cout and same
        block = InvertedBottleneck(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.Conv2d(hidden, hidden, kernel, stride, padding, groups=hidden, bias=False),
            nn.Conv2d(hidden, cout, 1, bias=conv.bias is not None),
            residual,
        ).to(conv.weight.device)
        if hidden >= 2 * cin:
            _start_from_kernel(block, conv, kernel, residual)
        return block


@torch.no_grad()
def _start_from_kernel(
    block: InvertedBottleneck, conv: nn.Conv2d, kernel: tuple[int, int], residual: bool
) -> None:
    cin = conv.in_channels
    weight = conv.weight.detach().clone()
    if residual:
        ch, cw = weight.shape[2] // 2, weight.shape[3] // 2
        weight[torch.arange(cin), torch.arange(cin), ch, cw] -= 1.0
    dw, pw = rank1_factors(weight, kernel)
    eye = torch.eye(cin, dtype=weight.dtype, device=weight.device).reshape(cin, cin, 1, 1)
    block.expand.weight[:cin] = eye
    block.expand.weight[cin : 2 * cin] = -eye
    block.depthwise.weight[:cin] = dw
    block.depthwise.weight[cin : 2 * cin] = dw
    block.project.weight.zero_()
    block.project.weight[:, :cin] = pw
    block.project.weight[:, cin : 2 * cin] = -pw
    if conv.bias is not None:
        block.project.bias.copy_(conv.bias)
