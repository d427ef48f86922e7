"""Magnitude masks that stay applied: W1 and F2's sparse codes.

Masks are installed with :func:`torch.nn.utils.prune.custom_from_mask`: the module keeps
``weight_orig`` (trained) and a ``weight_mask`` buffer and recomputes ``weight`` before every
forward, so pruned entries stay exactly zero through any later optimiser step, and
:func:`privacysplit.models.count_params` counts only the surviving weights.  The forward
pre-hook is ordinary tensor code, so traced and exported models keep the mask.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


@torch.no_grad()
def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A 0/1 mask keeping the ``1 - sparsity`` largest-magnitude entries of ``weight``
    (exactly ``round(sparsity * numel)`` zeros, ties broken by position)."""
    numel = weight.numel()
    drop = min(numel, max(0, round(sparsity * numel)))
    mask = torch.ones(numel, dtype=weight.dtype, device=weight.device)
    if drop:
        smallest = torch.topk(weight.detach().abs().flatten(), drop, largest=False).indices
        mask[smallest] = 0
    return mask.reshape(weight.shape)


def install_mask(module: nn.Module, mask: torch.Tensor) -> None:
    """Mask ``module.weight`` permanently (combines with a mask already installed)."""
    prune.custom_from_mask(module, "weight", mask)


def prune_magnitude(module: nn.Module, sparsity: float) -> None:
    """Zero the smallest ``sparsity`` fraction of ``module.weight`` and keep it zero."""
    install_mask(module, magnitude_mask(module.weight, sparsity))
