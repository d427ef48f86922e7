"""The :class:`Network` module: an ordered list of layers with their specs.

A network is a flat sequence of modules, each described by a :class:`LayerSpec`.  Layer
indices count every module (activations and pooling too), and a residual/inception block
counts as one layer, exactly as the paper's tables index them.  Linear layers flatten their
input implicitly, so no separate flatten module shifts the indices (LeNet's fully connected
layers sit at 6, 8, 10 as in the paper).

Splitting (:func:`split`) slices the module list; both halves share the parent's modules and
run the same forward rule, so ``cloud(encoder(x))`` is bit-identical to ``model(x)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from privacysplit.models.spec import LayerSpec


class Network(nn.Module):
    """A sequence of layers described by :class:`LayerSpec` entries.

    Args:
        layers: one spec per module.
        modules: the modules, in order.
        name: the base network's name (e.g. ``"lenet"``).
        input_shape: the per-sample input shape, e.g. ``(1, 32, 32)`` or ``(600,)``.
        num_classes: number of output classes of the full network.
        offset: index of this network's first layer in the full network (non-zero for the
            cloud half of a split), so printed indices always refer to the full network.
    """

    def __init__(
        self,
        layers: Sequence[LayerSpec],
        modules: Sequence[nn.Module],
        *,
        name: str = "network",
        input_shape: tuple[int, ...] = (3, 32, 32),
        num_classes: int = 10,
        offset: int = 0,
    ) -> None:
        super().__init__()
        if len(layers) != len(modules):
            raise ValueError(f"got {len(layers)} specs for {len(modules)} modules")
        self.layers: list[LayerSpec] = list(layers)
        self.body = nn.ModuleList(modules)
        self.name = name
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.offset = offset

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for spec, module in zip(self.layers, self.body, strict=True):
            if spec.type == "linear" and x.dim() > 2:
                x = torch.flatten(x, 1)
            x = module(x)
        return x

    def forward_range(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Run layers ``start .. stop-1`` (local indices) on ``x``."""
        for spec, module in zip(self.layers[start:stop], self.body[start:stop], strict=True):
            if spec.type == "linear" and x.dim() > 2:
                x = torch.flatten(x, 1)
            x = module(x)
        return x

    def sub(self, start: int, stop: int) -> Network:
        """The layers ``start .. stop-1`` as a new :class:`Network` sharing the modules."""
        return Network(
            self.layers[start:stop],
            list(self.body[start:stop]),
            name=self.name,
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            offset=self.offset + start,
        )

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layers={len(self.layers)}, offset={self.offset}"


def valid_partitions(model: Network) -> list[int]:
    """Partition indices ``p`` for which :func:`split` is defined (``0 .. len-1``).

    ``p = len-1`` keeps the whole network on the device (the cloud is the identity).
    """
    return list(range(len(model)))


def split(model: Network, p: int) -> tuple[Network, Network]:
    """Split ``model`` after layer ``p``: the encoder holds layers ``0..p``.

    Both parts share the model's modules (no copy), so training one trains the model.

    Raises:
        ValueError: if ``p`` is not a valid partition index of ``model``.
    """
    if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p < len(model):
        raise ValueError(
            f"partition {p!r} is outside {model.name} (valid: 0..{len(model) - 1})"
        )
    return model.sub(0, p + 1), model.sub(p + 1, len(model))
