"""Compression techniques of the paper's Table 2, registered by name, plus ``none``.

=======  =============================================  =====================
name     technique                                      applies to
=======  =============================================  =====================
``F1``   SVD low-rank factorisation                     linear
``F2``   sparse low-rank factorisation (K-SVD-style)    linear
``C1``   MobileNet depthwise-separable convolution      conv, block
``C2``   MobileNetV2 inverted residual                  conv, block
``C3``   SqueezeNet Fire module                         conv (odd kernel), block
``W1``   magnitude (unstructured) weight pruning        conv, linear, block
``W2``   filter pruning by L1 norm (Li et al.)          conv, block
=======  =============================================  =====================

On a block (residual, inverted-residual, inception), which the paper counts as one layer,
a technique acts on the convolutions inside it.  :func:`apply_plan` applies a whole
:class:`~privacysplit.plan.Plan` to a deep copy of a base network and splits it; strengths
come from :class:`CompressionSettings`.

>>> import privacysplit.compression as c
>>> sorted(c.COMPRESSORS)
['C1', 'C2', 'C3', 'F1', 'F2', 'W1', 'W2', 'none']
"""

from __future__ import annotations

from privacysplit.compression.apply import apply_plan, validate_plan
from privacysplit.compression.base import Compressor
from privacysplit.compression.registry import COMPRESSORS, TECHNIQUES, applicable, get
from privacysplit.compression.settings import CompressionSettings

__all__ = [
    "COMPRESSORS",
    "TECHNIQUES",
    "CompressionSettings",
    "Compressor",
    "applicable",
    "apply_plan",
    "get",
    "validate_plan",
]
