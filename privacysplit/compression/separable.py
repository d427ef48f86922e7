"""C1 (MobileNet, Howard et al. 2017): a convolution becomes a depthwise-separable block.

Structure, as MobileNet's Fig. 3 (right), in this order:

    3x3 depthwise conv (groups = in) -> BatchNorm -> ReLU -> 1x1 pointwise conv (in -> out)
    -> BatchNorm -> ReLU

Table 2 says 3x3 whatever the replaced kernel, so the depthwise convolution takes the replaced
layer's stride and the dilation/padding that reproduce its output size
(:func:`~.convs.dilated_3x3`): a 5x5 becomes a 3x3 with dilation 2, covering the same field;
a 1x1 gets one more pixel of padding.  The convolutions have no bias (the batch norm after
each has one).

Initialisation: with a ReLU between the two convolutions no factorisation of the trained
kernel maps onto the block, so it starts from PyTorch's default initialisation and is fitted
to the original layer's outputs by distillation when ``apply_plan`` gets calibration inputs
(:mod:`~.distill`, which trains the batch norms with batch statistics, as retraining will).

Parameters: ``9 in + 2 in + in out + 2 out`` (batch-norm scales and shifts included) instead
of ``in out k^2 + out``; MACs ``9 in H W + in out H W`` against ``in out k^2 H W`` (batch norm
and ReLU multiply nothing in Eq. 9-10).  Grows: a 1x1 convolution, which has nothing to
separate (``+11 in + out``).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from privacysplit.compression.convs import conv_3x3
from privacysplit.compression.replacement import ConvReplacement
from privacysplit.compression.settings import CompressionSettings


class DepthwiseSeparable(ConvReplacement):
    """C1: MobileNet depthwise-separable block (3x3 depthwise, BN, ReLU, 1x1, BN, ReLU)."""

    name = "C1"
    title = "MobileNet depthwise-separable convolution"

    def build(self, conv: nn.Conv2d, settings: CompressionSettings) -> nn.Module:
        cin, cout = conv.in_channels, conv.out_channels
        return nn.Sequential(
            OrderedDict(
                depthwise=conv_3x3(cin, cin, conv, groups=cin),
                bn1=nn.BatchNorm2d(cin),
                relu1=nn.ReLU(),
                pointwise=nn.Conv2d(cin, cout, 1, bias=False),
                bn2=nn.BatchNorm2d(cout),
                relu2=nn.ReLU(),
            )
        ).to(conv.weight.device)
