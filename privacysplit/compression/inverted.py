"""C2 (MobileNetV2): a convolution becomes an inverted residual block.

Structure (:class:`~.layers.InvertedBottleneck`): 1x1 expand ``in -> t in``, ReLU6, depthwise
``k x k`` with the original stride/padding (3x3 for a 1x1 convolution, as Table 2 says), ReLU6,
1x1 linear projection ``t in -> out``, and the residual link ``x + f(x)`` where shapes allow
(stride 1, ``in == out``, same-padded).  ``t`` is ``CompressionSettings.c2_expansion``.

Initialisation: nothing trained maps exactly onto this structure (the ReLU6 after both the
expansion and the depthwise convolution stop a factorisation of the kernel from passing
through), so the block starts from PyTorch's default initialisation and is refined by
distillation from the original layer's outputs when ``apply_plan`` gets calibration inputs.

Parameters: ``t in (in + k^2 + out)`` against ``in out k^2``.  Grows: a layer much wider at its
input than its output (``in > (k^2/t - 1) out``, e.g. any 1x1 convolution: MobileNetV2's
320 -> 1280 grows 2.5x), and MobileNetV2's expansion-1 first block (C2 on an inverted
residual rebuilds its main path with expansion ``t``).  MACs follow the parameters.
"""

from __future__ import annotations

from torch import nn

from privacysplit.compression.convs import depthwise_kernel, pair
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
        return block
