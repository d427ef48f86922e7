"""C1 (MobileNet): a convolution becomes a depthwise convolution plus a 1x1 pointwise one.

Structure: ``depthwise(k x k, stride, padding, groups=in)`` then ``pointwise(1x1, in -> out)``,
with no nonlinearity between them, so the pair is a structured factorisation of the original
kernel: ``W[o, i] ~ P[o, i] * D[i]``.  That lets C1 start from the trained weights: the best
such factorisation is the rank-1 SVD of each input channel's ``out x (k k)`` slice, computed in
one batched SVD.  (MobileNet puts BN + ReLU between the two; here the slot's own BN/ReLU
follow, as they followed the original convolution.)

Parameters: ``in k^2 + in out`` instead of ``in out k^2`` -- about ``k^2`` times fewer.
MACs drop by the same factor.

Grows: a 1x1 convolution, which has nothing to separate.  Table 2's 3x3 depthwise
(same-padded) is put in front of it, starting as the identity so the layer's function is
unchanged, for ``9 in`` extra parameters (+0.7 % on MobileNetV2's 320 -> 1280 layer).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit.compression.convs import densify_, depthwise_kernel, pair
from privacysplit.compression.replacement import ConvReplacement
from privacysplit.compression.settings import CompressionSettings


@torch.no_grad()
def rank1_factors(weight: torch.Tensor, kernel: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise ``(in, 1, kh, kw)`` and pointwise ``(out, in, 1, 1)`` weights whose product
    best approximates ``weight`` (``(out, in, h, w)``, centred inside ``kernel``)."""
    cout, cin, h, w = weight.shape
    dh, dw = (kernel[0] - h) // 2, (kernel[1] - w) // 2
    padded = F.pad(weight.float(), (dw, dw, dh, dh))
    slices = padded.permute(1, 0, 2, 3).reshape(cin, cout, kernel[0] * kernel[1])
    u, s, vh = torch.linalg.svd(slices, full_matrices=False)
    scale = s[:, 0].sqrt()
    pointwise = (u[:, :, 0] * scale[:, None]).t().reshape(cout, cin, 1, 1)
    depthwise = (vh[:, 0, :] * scale[:, None]).reshape(cin, 1, kernel[0], kernel[1])
    return depthwise.to(weight.dtype), pointwise.to(weight.dtype)


class DepthwiseSeparable(ConvReplacement):
    """C1: MobileNet depthwise-separable convolution, initialised from the trained kernel."""

    name = "C1"
    title = "MobileNet depthwise-separable convolution"

    def build(self, conv: nn.Conv2d, settings: CompressionSettings) -> nn.Module:
        kernel, padding = depthwise_kernel(conv)
        cin, cout = conv.in_channels, conv.out_channels
        depthwise = nn.Conv2d(cin, cin, kernel, pair(conv.stride), padding, groups=cin, bias=False)
        pointwise = nn.Conv2d(cin, cout, 1, bias=conv.bias is not None)
        dw, pw = rank1_factors(conv.weight, kernel)
        with torch.no_grad():
            depthwise.weight.copy_(dw)
            pointwise.weight.copy_(pw)
            if conv.bias is not None:
                pointwise.bias.copy_(conv.bias)
            densify_(depthwise.weight)
            densify_(pointwise.weight)
        return nn.Sequential(depthwise, pointwise).to(conv.weight.device)
