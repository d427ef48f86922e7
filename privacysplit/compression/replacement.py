"""Common ground of C1-C3: techniques that rebuild a convolution as a new structure."""

from __future__ import annotations

from abc import abstractmethod

from torch import nn

from privacysplit.compression.base import Compressor
from privacysplit.compression.convs import replace_in_block
from privacysplit.compression.settings import CompressionSettings
from privacysplit.models import LayerSpec


class ConvReplacement(Compressor):
    """Rebuilds a convolution layer, or the spatial convolutions inside a block.

    A block counts as one layer (the paper's ResNet50 plan puts C2 on bottleneck blocks), so
    the technique reaches into it: every standard convolution with a spatial kernel outside
    the shortcut is rebuilt (see :func:`~.convs.block_targets`); the block's input and output
    widths, stride and residual link are unchanged.  The new structure takes the replaced
    module's train/eval mode, so its batch norms behave like the network around them.
    """

    replaces = True

    def applies_to(self, spec: LayerSpec) -> bool:
        return spec.type in ("conv", "block")

    @abstractmethod
    def build(self, conv: nn.Conv2d, settings: CompressionSettings) -> nn.Module:
        """The replacement of one trained, standard convolution (same in/out shapes)."""

    def transform(self, module: nn.Module, spec: LayerSpec, settings: CompressionSettings) -> nn.Module:
        if spec.type == "conv":
            if not isinstance(module, nn.Conv2d) or module.groups != 1:
                raise ValueError(
                    f"{self.name} rebuilds a standard nn.Conv2d, got {type(module).__name__}"
                    + (f" with groups={module.groups}" if isinstance(module, nn.Conv2d) else "")
                )
            return self.build(module, settings).train(module.training)
        return replace_in_block(module, lambda conv: self.build(conv, settings).train(conv.training))
