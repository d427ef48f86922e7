"""C3 (SqueezeNet): a convolution becomes a Fire module.

Structure (:class:`~.layers.Fire`), as SqueezeNet's Fig. 1: squeeze 1x1 ``in -> s`` + ReLU,
then expand 1x1 ``s -> e1`` + ReLU and expand 3x3 ``s -> e3`` + ReLU side by side,
concatenated to ``e1 + e3 = out``.  Normalisation as in SqueezeNet (Iandola et al. 2016):
none -- the original network has no batch norm, only a ReLU after every convolution.  Both
expand branches take the original stride and the padding (or crop) that reproduces the
original output size, so a "valid" 5x5 layer (LeNet) keeps its shape.

Widths: ``s = min(in, round(c3_squeeze_ratio * out))`` (SqueezeNet's SR = 0.125, never wider
than the input), ``e3 = round(c3_expand3x3 * out)`` (pct3x3 = 0.5).

Parameters: ``s (in + e1 + 9 e3)`` against ``in out k^2``: a 256 -> 256 3x3 layer shrinks 12x.
Grows: a layer much wider at its output than its input (``5 out > 71 in`` for a 3x3) and most
1x1 convolutions (MobileNetV2's 320 -> 1280 grows 2.6x): the 3x3 expand adds spatial
extent the original did not have.  MACs follow the parameters.

Initialisation: nothing trained maps onto a squeeze + ReLU, so the module starts from
PyTorch's default initialisation and is refined by distillation from the original layer's
outputs when ``apply_plan`` gets calibration inputs.

Applies only to odd kernels (every convolution of the pool): an even kernel's geometry cannot
be matched symmetrically by the 1x1 and 3x3 branches.
"""

from __future__ import annotations

from torch import nn

from privacysplit.compression.convs import geometric_conv, matching_padding, odd_kernel, pair
from privacysplit.compression.layers import Fire
from privacysplit.compression.replacement import ConvReplacement
from privacysplit.compression.settings import CompressionSettings
from privacysplit.models import LayerSpec


class FireReplacement(ConvReplacement):
    """C3: SqueezeNet Fire module with the replaced convolution's geometry."""

    name = "C3"
    title = "SqueezeNet Fire module"

    def applies_to(self, spec: LayerSpec) -> bool:
        if spec.type == "conv":
            return spec.kernel % 2 == 1
        return spec.type == "block"

    def build(self, conv: nn.Conv2d, settings: CompressionSettings) -> nn.Module:
        if not odd_kernel(conv):
            raise ValueError(f"C3 needs an odd kernel, got {conv.kernel_size}")
        cin, cout = conv.in_channels, conv.out_channels
        squeeze = max(1, min(cin, round(settings.c3_squeeze_ratio * cout)))
        e3 = min(cout, max(0, round(settings.c3_expand3x3 * cout)))
        e1 = cout - e3
        kernel, padding, stride = pair(conv.kernel_size), pair(conv.padding), pair(conv.stride)
        bias = conv.bias is not None
        expand1 = expand3 = None
        if e1:
            pad1 = matching_padding(kernel, padding, (1, 1))
            expand1 = geometric_conv(squeeze, e1, (1, 1), stride, pad1, bias=bias)
        if e3:
            pad3 = matching_padding(kernel, padding, (3, 3))
            expand3 = geometric_conv(squeeze, e3, (3, 3), stride, pad3, bias=bias)
        return Fire(nn.Conv2d(cin, squeeze, 1), expand1, expand3).to(conv.weight.device)
