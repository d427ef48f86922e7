"""``none``: the explicit do-nothing entry (Torch-Pruning's convention), valid on every layer."""

from __future__ import annotations

from torch import nn

from privacysplit.compression.base import Compressor
from privacysplit.compression.settings import CompressionSettings
from privacysplit.models import LayerSpec, Network


class NoCompression(Compressor):
    """Leaves the layer exactly as trained (bit-identical outputs)."""

    name = "none"
    title = "no compression"

    def applies_to(self, spec: LayerSpec) -> bool:
        return True

    def transform(self, module: nn.Module, spec: LayerSpec, settings: CompressionSettings) -> nn.Module:
        return module

    def apply(self, net: Network, index: int, settings: CompressionSettings) -> None:
        return None
