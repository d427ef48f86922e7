"""Channel surgery for W2: slicing filters out of convolutions, batch norms and matrices, and
the tables saying which convolutions inside each block of the pool share a channel set.

Every function returns a *new* module holding copies of the kept slices, so shapes (and
therefore MACs) really shrink.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.inception import InceptionA, InceptionB, InceptionC, InceptionD, InceptionE

from privacysplit.compression.layers import ChannelScatter
from privacysplit.models.blocks import BasicBlock, Bottleneck, InvertedResidual, WideBasic


def _plain(module: nn.Module) -> None:
    if hasattr(module, "weight_orig"):
        raise ValueError(f"cannot slice channels of a masked (W1-pruned) {type(module).__name__}")


@torch.no_grad()
def filter_keep(conv: nn.Conv2d, ratio: float) -> torch.Tensor:
    """Sorted indices of the filters W2 keeps: the ``1 - ratio`` largest by L1 norm
    (Li et al.), at least one."""
    norms = conv.weight.detach().abs().flatten(1).sum(1)
    keep = max(1, round((1 - ratio) * conv.out_channels))
    return torch.topk(norms, keep).indices.sort().values


def _new_conv(conv: nn.Conv2d, cin: int, cout: int, groups: int) -> nn.Conv2d:
    return nn.Conv2d(
        cin, cout, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups,
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)


@torch.no_grad()
def conv_out(conv: nn.Conv2d, keep: torch.Tensor) -> nn.Conv2d:
    """``conv`` with only the filters ``keep`` (a standard convolution)."""
    _plain(conv)
    new = _new_conv(conv, conv.in_channels, len(keep), 1)
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    return new


@torch.no_grad()
def conv_in(conv: nn.Conv2d, keep: torch.Tensor) -> nn.Conv2d:
    """``conv`` reading only the input channels ``keep`` (a standard convolution)."""
    _plain(conv)
    new = _new_conv(conv, len(keep), conv.out_channels, 1)
    new.weight.copy_(conv.weight[:, keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias)
    return new


@torch.no_grad()
def depthwise(conv: nn.Conv2d, keep: torch.Tensor) -> nn.Conv2d:
    """A depthwise ``conv`` restricted to the channels ``keep`` (input and output)."""
    _plain(conv)
    new = _new_conv(conv, len(keep), len(keep), len(keep))
    new.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[keep])
    return new


@torch.no_grad()
def batch_norm(bn: nn.BatchNorm2d, keep: torch.Tensor) -> nn.BatchNorm2d:
    """``bn`` over the channels ``keep`` only (affine parameters and running statistics)."""
    new = nn.BatchNorm2d(
        len(keep), bn.eps, bn.momentum, bn.affine, bn.track_running_stats
    ).to(device=keep.device if bn.weight is None else bn.weight.device)
    if bn.affine:
        new.weight.copy_(bn.weight[keep])
        new.bias.copy_(bn.bias[keep])
    if bn.track_running_stats:
        new.running_mean.copy_(bn.running_mean[keep])
        new.running_var.copy_(bn.running_var[keep])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    new.train(bn.training)
    return new


@torch.no_grad()
def linear_in(linear: nn.Linear, keep: torch.Tensor, channels: int) -> nn.Linear:
    """``linear`` reading a flattened ``(channels, H, W)`` map of which only ``keep`` remain."""
    _plain(linear)
    spatial = linear.in_features // channels
    weight = linear.weight.reshape(linear.out_features, channels, spatial)[:, keep]
    new = nn.Linear(len(keep) * spatial, linear.out_features, bias=linear.bias is not None).to(
        device=linear.weight.device, dtype=linear.weight.dtype
    )
    new.weight.copy_(weight.reshape(linear.out_features, -1))
    if linear.bias is not None:
        new.bias.copy_(linear.bias)
    return new


def get_path(root: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        root = getattr(root, part)
    return root


def set_path(root: nn.Module, path: str, module: nn.Module) -> None:
    *parents, last = path.split(".")
    for part in parents:
        root = getattr(root, part)
    setattr(root, last, module)


@dataclass(frozen=True)
class Chain:
    """A channel set produced inside a block: ``producer`` makes it, ``norm`` normalises it,
    each ``(depthwise, norm)`` in ``through`` carries it, ``consumers`` read it."""

    producer: str
    norm: str | None
    consumers: tuple[str, ...]
    through: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Inputs:
    """Who reads a block's input: batch norms, standard convolutions, and the shortcut
    attribute (an identity ``nn.Sequential()`` or ``Sequential(conv, bn)``), if any."""

    consumers: tuple[str, ...]
    norms: tuple[str, ...] = ()
    shortcut: str | None = None


def _bc(a: str, *b: str) -> Chain:
    return Chain(f"{a}.conv", f"{a}.bn", tuple(f"{x}.conv" for x in b))


#: W2 inside a block: every channel set that does not reach the block's output, so pruning
#: it leaves the block's input/output widths (and any residual addition) untouched.
CHAINS: dict[type, tuple[Chain, ...]] = {
    BasicBlock: (Chain("conv1", "bn1", ("conv2",)),),
    Bottleneck: (Chain("conv1", "bn1", ("conv2",)), Chain("conv2", "bn2", ("conv3",))),
    WideBasic: (Chain("conv1", "bn2", ("conv2",)),),
    InvertedResidual: (Chain("conv1", "bn1", ("conv3",), (("conv2", "bn2"),)),),
    InceptionA: (
        _bc("branch5x5_1", "branch5x5_2"),
        _bc("branch3x3dbl_1", "branch3x3dbl_2"),
        _bc("branch3x3dbl_2", "branch3x3dbl_3"),
    ),
    InceptionB: (_bc("branch3x3dbl_1", "branch3x3dbl_2"), _bc("branch3x3dbl_2", "branch3x3dbl_3")),
    InceptionC: (
        _bc("branch7x7_1", "branch7x7_2"),
        _bc("branch7x7_2", "branch7x7_3"),
        _bc("branch7x7dbl_1", "branch7x7dbl_2"),
        _bc("branch7x7dbl_2", "branch7x7dbl_3"),
        _bc("branch7x7dbl_3", "branch7x7dbl_4"),
        _bc("branch7x7dbl_4", "branch7x7dbl_5"),
    ),
    InceptionD: (
        _bc("branch3x3_1", "branch3x3_2"),
        _bc("branch7x7x3_1", "branch7x7x3_2"),
        _bc("branch7x7x3_2", "branch7x7x3_3"),
        _bc("branch7x7x3_3", "branch7x7x3_4"),
    ),
    InceptionE: (
        _bc("branch3x3_1", "branch3x3_2a", "branch3x3_2b"),
        _bc("branch3x3dbl_1", "branch3x3dbl_2"),
        _bc("branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b"),
    ),
}

_BRANCH_INPUTS = ("branch1x1", "branch_pool")
#: Readers of a block's input, for W2 on the convolution before it.  InceptionB/D are
#: absent on purpose: their max-pool branch copies the input channels to the output, so a
#: pruned input would change the block's output width.
INPUTS: dict[type, Inputs] = {
    BasicBlock: Inputs(("conv1",), shortcut="shortcut"),
    Bottleneck: Inputs(("conv1",), shortcut="shortcut"),
    WideBasic: Inputs(("conv1",), norms=("bn1",), shortcut="shortcut"),
    InvertedResidual: Inputs(("conv1",)),  # only without its residual link: see can_shrink_input
    InceptionA: Inputs(tuple(f"{b}.conv" for b in ("branch1x1", "branch5x5_1", "branch3x3dbl_1", "branch_pool"))),
    InceptionC: Inputs(tuple(f"{b}.conv" for b in ("branch1x1", "branch7x7_1", "branch7x7dbl_1", "branch_pool"))),
    InceptionE: Inputs(tuple(f"{b}.conv" for b in ("branch1x1", "branch3x3_1", "branch3x3dbl_1", "branch_pool"))),
}


def _is_standard(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups == 1 and not hasattr(module, "weight_orig")


def chains_of(block: nn.Module) -> tuple[Chain, ...]:
    """The internal channel sets of ``block`` that W2 may prune (empty if unknown)."""
    return CHAINS.get(type(block), ())


def prune_chain(block: nn.Module, chain: Chain, ratio: float) -> None:
    """Remove the weakest filters of one internal channel set of ``block``, in place."""
    producer = get_path(block, chain.producer)
    if not _is_standard(producer):
        raise ValueError(f"W2 cannot prune {chain.producer} of {type(block).__name__}: not a plain convolution")
    keep = filter_keep(producer, ratio)
    if len(keep) == producer.out_channels:
        return
    set_path(block, chain.producer, conv_out(producer, keep))
    if chain.norm is not None:
        set_path(block, chain.norm, batch_norm(get_path(block, chain.norm), keep))
    for conv_name, norm_name in chain.through:
        set_path(block, conv_name, depthwise(get_path(block, conv_name), keep))
        set_path(block, norm_name, batch_norm(get_path(block, norm_name), keep))
    for name in chain.consumers:
        set_path(block, name, conv_in(get_path(block, name), keep))


def can_shrink_input(block: nn.Module, channels: int) -> bool:
    """Whether :func:`shrink_input` can make ``block`` read a pruned ``channels``-wide input."""
    spec = INPUTS.get(type(block))
    if spec is None:
        return False
    if isinstance(block, InvertedResidual) and block.use_residual:
        return False
    convs = [get_path(block, name) for name in spec.consumers]
    if not all(_is_standard(c) and c.in_channels == channels for c in convs):
        return False
    if spec.shortcut is not None:
        shortcut = get_path(block, spec.shortcut)
        if len(shortcut) and not (_is_standard(shortcut[0]) and shortcut[0].in_channels == channels):
            return False
    return True


def shrink_input(block: nn.Module, keep: torch.Tensor, channels: int) -> None:
    """Make ``block`` read only input channels ``keep`` of ``channels``, in place.

    An identity shortcut cannot shrink (it adds the input to the output), so it becomes a
    :class:`~.layers.ChannelScatter` that puts the surviving channels back in place: the
    removed channels contribute zeros, as removed filters do.
    """
    spec = INPUTS[type(block)]
    for name in spec.norms:
        set_path(block, name, batch_norm(get_path(block, name), keep))
    for name in spec.consumers:
        set_path(block, name, conv_in(get_path(block, name), keep))
    if spec.shortcut is not None:
        shortcut = get_path(block, spec.shortcut)
        if len(shortcut):
            shortcut[0] = conv_in(shortcut[0], keep)
        else:
            set_path(block, spec.shortcut, ChannelScatter(keep, channels))
