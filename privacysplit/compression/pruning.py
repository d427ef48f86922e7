"""W1 (Han et al.): magnitude pruning of individual weights.

Each weight tensor of the layer (every convolution and matrix inside a block, including
depthwise and shortcut convolutions) loses its ``w1_sparsity`` fraction of smallest-magnitude
entries, layer by layer as Han et al. do.  Tensors keep their shape: the saving is in stored
non-zero parameters (S1), not in MACs, which dense kernels do not skip.  The mask stays
installed (see :mod:`.masks`), so retraining cannot revive a pruned weight.
"""

from __future__ import annotations

from torch import nn

from privacysplit.compression.base import Compressor
from privacysplit.compression.masks import prune_magnitude
from privacysplit.compression.settings import CompressionSettings
from privacysplit.models import LayerSpec


class MagnitudePruning(Compressor):
    """W1: unstructured magnitude pruning with a persistent mask."""

    name = "W1"
    title = "magnitude (unstructured) weight pruning"

    def applies_to(self, spec: LayerSpec) -> bool:
        return spec.type in ("conv", "linear", "block")

    def transform(self, module: nn.Module, spec: LayerSpec, settings: CompressionSettings) -> nn.Module:
        targets = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        if not targets:
            raise ValueError(f"W1 found no convolution or linear weight in {type(module).__name__}")
        for target in targets:
            prune_magnitude(target, settings.w1_sparsity)
        return module
