"""C2 (MobileNetV2, Sandler et al. 2018): a convolution becomes an inverted residual block.

Structure (:class:`~.layers.InvertedBottleneck`), as MobileNetV2's Table 1, in this order:

    1x1 expand (in -> t in) -> BatchNorm -> ReLU6 -> 3x3 depthwise (stride of the replaced
    layer) -> BatchNorm -> ReLU6 -> 1x1 linear projection (t in -> out) -> BatchNorm  (+ x)

The depthwise convolution is 3x3 whatever the replaced kernel, dilated/padded to reproduce
its output size (:func:`~.convs.dilated_3x3`); the projection is linear (no activation), and
the residual link ``x + f(x)`` is used where shapes allow (stride 1, ``in == out``, the
replaced layer same-padded).  ``t`` is ``CompressionSettings.c2_expansion``.  The
convolutions have no bias (each batch norm has one).

Initialisation: nothing trained maps onto this structure (the ReLU6 after the expansion and
the depthwise convolution stop a factorisation of the kernel from passing through), so the
block starts from PyTorch's default initialisation and is refined by distillation from the
original layer's outputs when ``apply_plan`` gets calibration inputs.

Parameters: ``t in (in + 9 + out) + 2 (2 t in + out)`` (batch norms included) against
``in out k^2``.  Grows: a layer much wider at its input than its output (e.g. any 1x1
convolution: MobileNetV2's 320 -> 1280 grows about 2.5x), and MobileNetV2's expansion-1
first block (C2 on an inverted residual rebuilds its main path with expansion ``t``).  MACs
follow the convolutions' parameters.
"""

from __future__ import annotations

from torch import nn

from privacysplit.compression.convs import conv_3x3, pair
from privacysplit.compression.layers import InvertedBottleneck
from privacysplit.compression.replacement import ConvReplacement
from privacysplit.compression.settings import CompressionSettings


class InvertedResidualReplacement(ConvReplacement):
    """C2: MobileNetV2 inverted residual with the replaced convolution's geometry."""

    name = "C2"
    title = "MobileNetV2 inverted residual"

    def build(self, conv: nn.Conv2d, settings: CompressionSettings) -> nn.Module:
        cin, cout = conv.in_channels, conv.out_channels
        hidden = max(1, round(settings.c2_expansion * cin))
        kernel, padding, dilation = pair(conv.kernel_size), pair(conv.padding), pair(conv.dilation)
        same = all(2 * p == d * (k - 1) for k, p, d in zip(kernel, padding, dilation, strict=True))
        residual = pair(conv.stride) == (1, 1) and cin == cout and same
        return InvertedBottleneck(
            nn.Conv2d(cin, hidden, 1, bias=False),
            conv_3x3(hidden, hidden, conv, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            residual,
        ).to(conv.weight.device)
