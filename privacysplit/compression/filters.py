"""W2 (Li et al.): filter pruning by L1 norm -- whole filters removed, tensors shrink.

On a convolution layer, the ``w2_ratio`` fraction of filters with the smallest L1 norm
disappears, and so do the matching channels of everything that reads them: the batch norm,
pooling and activations up to the next weighted layer (their specs' channel fields follow),
and the input channels of that layer -- a convolution, a linear layer reading the flattened
map (its matching columns go), or a block (see :data:`~.channels.INPUTS`; an identity
shortcut becomes a :class:`~.layers.ChannelScatter`).  The next weighted layer may sit on the
cloud side: the cloud's first layer shrinks with it, so the halves still fit.  Both the
pruned layer's and the reader's parameters and MACs drop.

Where no reader can shrink (the network ends, or a reader W2 does not know, such as a block
whose input reaches its output through a pooling branch), the pruned convolution is
followed by a :class:`~.layers.ChannelScatter` inside its slot: its own parameters and MACs
still drop, the layer's output shape stays, and nothing downstream changes.

On a block, W2 prunes the channel sets that live inside it (:data:`~.channels.CHAINS`: the
bottleneck's reduced widths, the inverted residual's hidden width, the inception branches'
intermediate widths), which leaves the block's input and output widths -- and the residual
addition -- intact.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from privacysplit.compression import channels as ch
from privacysplit.compression.base import Compressor
from privacysplit.compression.layers import ChannelScatter
from privacysplit.compression.settings import CompressionSettings
from privacysplit.models import LayerSpec, Network

#: Layer types that carry channels through unchanged (bn and pool keep their widths in
#: their specs, which W2 updates).
_THROUGH = ("bn", "relu", "pool", "dropout", "noise", "flatten")


class FilterPruning(Compressor):
    """W2: L1-norm filter pruning that propagates to the layers reading the filters."""

    name = "W2"
    title = "filter pruning by L1 norm"

    def applies_to(self, spec: LayerSpec) -> bool:
        if spec.type == "conv":
            return spec.out_channels >= 2
        return spec.type == "block"

    def transform(self, module: nn.Module, spec: LayerSpec, settings: CompressionSettings) -> nn.Module:
        """Prune inside a block, or prune a convolution and scatter its output back to full
        width (the self-contained form; :meth:`apply` prefers to shrink the readers)."""
        if spec.type == "block":
            chains = ch.chains_of(module)
            if not chains:
                raise ValueError(
                    f"W2 does not know the internal channels of {type(module).__name__}; "
                    f"known blocks: {', '.join(sorted(t.__name__ for t in ch.CHAINS))}"
                )
            for chain in chains:
                ch.prune_chain(module, chain, settings.w2_ratio)
            return module
        conv = _standard_conv(module)
        keep = ch.filter_keep(conv, settings.w2_ratio)
        if len(keep) == conv.out_channels:
            return module
        return nn.Sequential(ch.conv_out(conv, keep), ChannelScatter(keep, conv.out_channels))

    def apply(self, net: Network, index: int, settings: CompressionSettings) -> None:
        spec = net.layers[index]
        if spec.type == "block":
            net.body[index] = self.transform(net.body[index], spec, settings)
            return
        conv = _standard_conv(net.body[index])
        keep = ch.filter_keep(conv, settings.w2_ratio)
        old = conv.out_channels
        if len(keep) == old:
            return
        reader = _reader(net, index, old)
        if reader is None:
            net.body[index] = nn.Sequential(ch.conv_out(conv, keep), ChannelScatter(keep, old))
            return
        n = len(keep)
        net.body[index] = ch.conv_out(conv, keep)
        net.layers[index] = replace(spec, out_channels=n)
        for j in range(index + 1, reader):
            layer = net.layers[j]
            if layer.type == "bn":
                net.body[j] = ch.batch_norm(net.body[j], keep)
            if layer.in_channels == old or layer.out_channels == old:
                net.layers[j] = replace(
                    layer,
                    in_channels=n if layer.in_channels == old else layer.in_channels,
                    out_channels=n if layer.out_channels == old else layer.out_channels,
                )
        module, layer = net.body[reader], net.layers[reader]
        if layer.type == "conv":
            net.body[reader] = ch.conv_in(module, keep)
            net.layers[reader] = replace(layer, in_channels=n)
        elif layer.type == "linear":
            new = ch.linear_in(module, keep, old)
            net.body[reader] = new
            net.layers[reader] = replace(layer, in_channels=new.in_features)
        else:
            ch.shrink_input(module, keep, old)
            net.layers[reader] = replace(layer, in_channels=n)


def _standard_conv(module: nn.Module) -> nn.Conv2d:
    if not isinstance(module, nn.Conv2d) or module.groups != 1 or hasattr(module, "weight_orig"):
        raise ValueError(f"W2 prunes a plain standard nn.Conv2d, got {module!r}")
    return module


def _reader(net: Network, index: int, channels: int) -> int | None:
    """Index of the layer that reads layer ``index``'s channels, if W2 can shrink it and
    everything between; ``None`` where the pruning must stay inside the slot."""
    j = index + 1
    while j < len(net) and net.layers[j].type in _THROUGH:
        module = net.body[j]
        if net.layers[j].type == "bn":
            if not isinstance(module, nn.BatchNorm2d) or module.num_features != channels:
                return None
        elif any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
            return None  # a channel-wise module W2 does not know how to slice
        j += 1
    if j == len(net):
        return None
    module, layer = net.body[j], net.layers[j]
    if layer.type == "conv":
        ok = ch._is_standard(module) and module.in_channels == channels
    elif layer.type == "linear":
        ok = (
            isinstance(module, nn.Linear)
            and not hasattr(module, "weight_orig")
            and module.in_features % channels == 0
        )
    elif layer.type == "block":
        ok = ch.can_shrink_input(module, channels)
    else:
        ok = False
    return j if ok else None
