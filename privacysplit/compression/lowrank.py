"""F1 (SVD) and F2 (sparse, K-SVD-style) factorisation of a fully connected layer.

F1: the ``m x n`` matrix ``W`` becomes ``m x k`` times ``k x n`` from its truncated SVD
(``k = ceil(rank_fraction * min(m, n))``), the best rank-``k`` approximation of the trained
matrix, split as ``U_k sqrt(S_k)`` and ``sqrt(S_k) V_k^T``.  Parameters and MACs go from
``m n`` to ``k (m + n)``, fewer for every ``rank_fraction < 0.5``.

F2: the ``k x n`` code factor is then made sparse (``f2_sparsity`` of its smallest entries
zeroed, with a persistent mask) and the dense ``m x k`` dictionary is refitted by least
squares to the sparse codes: one dictionary update of K-SVD (Aharon et al.).  F2 always has
fewer non-zero parameters than F1 at the same rank; its MACs equal F1's (dense kernels do not
skip zeros).

Both apply to linear layers with ``min(m, n) >= 2``: a rank-1 matrix cannot be factorised
into anything smaller.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from privacysplit.compression.base import Compressor
from privacysplit.compression.masks import install_mask, magnitude_mask
from privacysplit.compression.settings import CompressionSettings
from privacysplit.models import LayerSpec


def rank_for(rows: int, cols: int, fraction: float) -> int:
    """Rank kept for an ``rows x cols`` matrix: ``ceil(fraction * min)``, at least 1."""
    return max(1, min(min(rows, cols), math.ceil(fraction * min(rows, cols))))


@torch.no_grad()
def svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes k x n, dictionary m x k)`` with ``dictionary @ codes`` the best rank-k fit."""
    u, s, vh = torch.linalg.svd(weight.float(), full_matrices=False)
    root = s[:rank].sqrt()
    codes = root[:, None] * vh[:rank]
    dictionary = u[:, :rank] * root
    return codes.to(weight.dtype), dictionary.to(weight.dtype)


@torch.no_grad()
def refit_dictionary(weight: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """``argmin_D ||W - D codes||^2`` with a tiny ridge, so codes rows that pruning emptied
    (a rank-deficient system) still give a finite, well-defined dictionary on any device."""
    x, w = codes.float(), weight.float()
    gram = x @ x.t()
    ridge = 1e-6 * gram.diagonal().mean().clamp_min(1e-12)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram + ridge * eye, x @ w.t()).t().to(weight.dtype)


def _factorised(linear: nn.Linear, codes: torch.Tensor, dictionary: torch.Tensor) -> nn.Sequential:
    rank = codes.shape[0]
    first = nn.Linear(linear.in_features, rank, bias=False)
    second = nn.Linear(rank, linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        first.weight.copy_(codes)
        second.weight.copy_(dictionary)
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second).to(linear.weight.device)


class _Factorisation(Compressor):
    def applies_to(self, spec: LayerSpec) -> bool:
        return spec.type == "linear" and min(spec.in_channels, spec.out_channels) >= 2

    @staticmethod
    def _linear(module: nn.Module, name: str) -> nn.Linear:
        if not isinstance(module, nn.Linear):
            raise ValueError(f"{name} factorises an nn.Linear, got {type(module).__name__}")
        return module


class LowRank(_Factorisation):
    """F1: truncated-SVD factorisation of a fully connected layer."""

    name = "F1"
    title = "SVD low-rank factorisation"

    def transform(self, module: nn.Module, spec: LayerSpec, settings: CompressionSettings) -> nn.Module:
        linear = self._linear(module, self.name)
        rank = rank_for(linear.out_features, linear.in_features, settings.rank_fraction)
        codes, dictionary = svd_factors(linear.weight, rank)
        return _factorised(linear, codes, dictionary)


class SparseLowRank(_Factorisation):
    """F2: F1 with sparse codes and a refitted dense dictionary (one K-SVD update)."""

    name = "F2"
    title = "sparse low-rank factorisation (KSVD-style)"

    def transform(self, module: nn.Module, spec: LayerSpec, settings: CompressionSettings) -> nn.Module:
        linear = self._linear(module, self.name)
        rank = rank_for(linear.out_features, linear.in_features, settings.rank_fraction)
        codes, dictionary = svd_factors(linear.weight, rank)
        mask = magnitude_mask(codes, settings.f2_sparsity)
        codes = codes * mask
        with torch.no_grad():
            dictionary = refit_dictionary(linear.weight, codes)
        layer = _factorised(linear, codes, dictionary)
        install_mask(layer[0], mask)
        return layer
