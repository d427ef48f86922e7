"""The :class:`Compressor` protocol shared by every technique of Table 2.

A compressor answers two questions: *may* I compress this layer (:meth:`applies_to`, from
the :class:`LayerSpec` alone, so the environment can mask actions without touching modules)
and *how* (:meth:`transform`, from the trained module).  Techniques that change a layer's
output width (W2) override :meth:`apply`, which sees the whole network so it can shrink the
layers that consume the pruned channels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from torch import nn

from privacysplit.compression.settings import CompressionSettings
from privacysplit.models import LayerSpec, Network


class Compressor(ABC):
    """One compression technique, registered under :attr:`name`.

    Attributes:
        name: the short name used in plans (``"W1"``).
        title: what the technique is, in a few words.
        replaces: True when the technique swaps in a new structure whose weights cannot be
            copied exactly from the trained layer; such layers are refined by distillation
            when :func:`~privacysplit.compression.apply_plan` is given calibration inputs.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    replaces: ClassVar[bool] = False

    @abstractmethod
    def applies_to(self, spec: LayerSpec) -> bool:
        """Whether this technique can compress a layer described by ``spec``."""

    @abstractmethod
    def transform(
        self, module: nn.Module, spec: LayerSpec, settings: CompressionSettings
    ) -> nn.Module:
        """A compressed replacement for the trained ``module``, with the same input and output
        shapes (W2 on a lone convolution scatters its output back to full width).

        May modify ``module`` in place (pruning masks, blocks rebuilt from the inside) and
        return it: :func:`~privacysplit.compression.apply_plan` only calls it on a deep copy.
        """

    def apply(self, net: Network, index: int, settings: CompressionSettings) -> None:
        """Compress layer ``index`` of ``net`` in place (``net`` is already a private copy).

        The default swaps the slot's module for :meth:`transform`'s result and keeps the
        spec, so layer indices and the implicit flatten before linear layers stay put.
        """
        net.body[index] = self.transform(net.body[index], net.layers[index], settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
