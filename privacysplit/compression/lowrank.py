"""F1 (SVD) and F2 (K-SVD, Aharon et al. 2006) factorisation of a fully connected layer.

Both turn the ``m x n`` weight ``W`` into a dictionary ``D`` (``m x k``, the second linear
layer) times codes ``X`` (``k x n``, the first), with ``k = ceil(rank_fraction * min(m, n))``.

F1: ``D X`` is the truncated SVD, the best rank-``k`` approximation of the trained matrix,
split as ``U_k sqrt(S_k)`` and ``sqrt(S_k) V_k^T``.  Parameters and MACs go from ``m n`` to
``k (m + n)``, fewer for every ``rank_fraction < 0.5``.

F2: a real K-SVD with sparse codes: every column of ``X`` has at most
``s = max(1, round((1 - f2_sparsity) k))`` non-zeros, and the ``k`` atoms (columns of ``D``)
have unit norm.  It starts from the trained matrix's SVD (``D_0 = U_k``) and runs
``f2_iterations`` iterations of

1. sparse coding by orthogonal matching pursuit (:func:`sklearn.linear_model.orthogonal_mp`)
   of every column of ``W`` over ``D``; on the orthonormal start ``D_0`` OMP reduces exactly
   to keeping each column's ``s`` largest coefficients of ``U_k^T W``, computed in closed form
   (a test checks it against ``orthogonal_mp``);
2. the dictionary update, atom by atom: the residual of the columns that use atom ``l``,
   with the atom's own contribution added back, is replaced by its best rank-one
   approximation (leading singular pair by power iteration started from the current atom),
   giving the new unit-norm atom and its codes on the same support.

OMP is greedy: on a non-orthogonal dictionary it can return a worse code for a column than
the one the previous dictionary update left, so each column keeps the better of the two.
Every step therefore keeps or lowers ``||W - D X||_F``: the error never rises across
iterations (plain K-SVD only usually falls).  The code's zero pattern is installed as a
persistent mask, so retraining keeps it sparse.  Non-zero parameters are ``m k + s n`` (plus
the bias) against F1's ``k (m + n)``; MACs equal F1's (dense kernels do not skip zeros).

Cost, since it runs in every evaluation that uses F2: OMP is ``n`` small solves of ``s``
steps each, in scikit-learn's Python loop.  On AlexNet's 1024 x 1024 layer (``k = 256``,
``s = 64``, two iterations: one OMP) the transform took 2-4 s of CPU on this shared 2-core
machine (OMP ~2 s of it; ``s = 128`` would cost ~7 s, hence ``f2_sparsity = 0.75``);
LeNet's 400 -> 120 layer well under 0.1 s.  Each process remembers its last few
factorisations (:func:`cached_ksvd`), so a search pays once per layer, not once per plan.

Both apply to linear layers with ``min(m, n) >= 2``: a rank-1 matrix cannot be factorised
into anything smaller.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from privacysplit.compression.base import Compressor
from privacysplit.compression.masks import install_mask
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


def nonzeros_for(rank: int, sparsity: float) -> int:
    """Non-zeros kept per code column by F2: ``round((1 - sparsity) * rank)``, at least 1."""
    return max(1, min(rank, round((1.0 - sparsity) * rank)))


@dataclass(frozen=True)
class KSVDResult:
    """A K-SVD factorisation ``weight ~ dictionary @ codes``.

    Attributes:
        codes: ``k x n``, at most ``nonzeros`` non-zeros per column.
        dictionary: ``m x k``, unit-norm columns (atoms).
        errors: relative Frobenius error ``||W - D X|| / ||W||`` at the start (SVD dictionary,
            first sparse coding) and after each iteration; never increasing.
    """

    codes: torch.Tensor
    dictionary: torch.Tensor
    errors: tuple[float, ...]


def _keep_largest(coefs: np.ndarray, nonzeros: int) -> np.ndarray:
    """Each column's ``nonzeros`` largest-magnitude entries (OMP on an orthonormal dictionary)."""
    if nonzeros >= coefs.shape[0]:
        return coefs.copy()
    top = np.argpartition(-np.abs(coefs), nonzeros - 1, axis=0)[:nonzeros]
    codes = np.zeros_like(coefs)
    np.put_along_axis(codes, top, np.take_along_axis(coefs, top, axis=0), axis=0)
    return codes


def _omp(dictionary: np.ndarray, signals: np.ndarray, nonzeros: int) -> np.ndarray:
    from sklearn.linear_model import orthogonal_mp

    with warnings.catch_warnings():  # "ended prematurely": a column already fitted exactly
        warnings.simplefilter("ignore", RuntimeWarning)
        codes = orthogonal_mp(dictionary, signals, n_nonzero_coefs=nonzeros, precompute=True)
    return np.asarray(codes, dtype=signals.dtype).reshape(dictionary.shape[1], signals.shape[1])


def _rank_one(residual_t: np.ndarray, atom: np.ndarray, steps: int = 30, tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Leading singular pair of ``E`` (given as ``E^T``, ``q x m``): unit ``d`` and ``x = E^T d``.

    Power iteration started from the current atom; every step lowers ``||E - d x^T||``, so
    even an unconverged pair never fits worse than the atom it started from."""
    x = residual_t @ atom
    value = float(np.linalg.norm(x))
    for _ in range(steps):
        y = residual_t.T @ x
        norm = float(np.linalg.norm(y))
        if norm == 0.0:
            break
        atom = y / norm
        x = residual_t @ atom
        new = float(np.linalg.norm(x))
        if new - value <= tol * new:
            break
        value = new
    return atom, x


@torch.no_grad()
def ksvd(weight: torch.Tensor, rank: int, nonzeros: int, iterations: int) -> KSVDResult:
    """K-SVD of ``weight`` (``m x n``) with ``rank`` unit-norm atoms and ``nonzeros`` per code
    column, started from the SVD; see the module docstring.

    Raises:
        ValueError: for ``rank`` outside ``1..min(m, n)``, ``nonzeros`` outside ``1..rank``,
            or a negative ``iterations``.
    """
    m, n = weight.shape
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank must lie in 1..{min(m, n)} for a {m} x {n} matrix, got {rank}")
    if not 1 <= nonzeros <= rank:
        raise ValueError(f"nonzeros must lie in 1..{rank} (the rank), got {nonzeros}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    w = weight.detach().double().cpu().numpy()
    scale = float(np.linalg.norm(w)) or 1.0
    u, _, _ = np.linalg.svd(w, full_matrices=False)
    atoms = np.ascontiguousarray(u[:, :rank])  # D_0 = U_k: orthonormal, unit-norm atoms
    codes = _keep_largest(atoms.T @ w, nonzeros)  # = OMP over an orthonormal dictionary
    residual_t = np.ascontiguousarray((w - atoms @ codes).T)  # n x m: rows gather fast
    errors = [float(np.linalg.norm(residual_t)) / scale]
    for it in range(iterations):
        if it > 0:  # sparse coding by OMP; each column keeps the better of old and new
            proposal = _omp(atoms, w, nonzeros)
            new_residual_t = (w - atoms @ proposal).T
            better = np.einsum("ij,ij->i", new_residual_t, new_residual_t) < np.einsum("ij,ij->i", residual_t, residual_t)
            codes[:, better] = proposal[:, better]
            residual_t[better] = new_residual_t[better]
        for atom in range(rank):  # dictionary update, atom by atom
            users = np.flatnonzero(codes[atom])
            if users.size == 0:
                continue
            local_t = residual_t[users] + np.outer(codes[atom, users], atoms[:, atom])
            d, x = _rank_one(local_t, atoms[:, atom])
            atoms[:, atom] = d
            codes[atom, users] = x
            residual_t[users] = local_t - np.outer(x, d)
        errors.append(float(np.linalg.norm(residual_t)) / scale)
    return KSVDResult(
        codes=torch.from_numpy(codes).to(weight.dtype),
        dictionary=torch.from_numpy(atoms).to(weight.dtype),
        errors=tuple(errors),
    )


_MEMO: OrderedDict[tuple, KSVDResult] = OrderedDict()
_MEMO_SIZE = 16


def cached_ksvd(weight: torch.Tensor, rank: int, nonzeros: int, iterations: int) -> KSVDResult:
    """:func:`ksvd`, remembered per process for the last few distinct inputs.

    A search applies F2 to the same trained layer in many plans; the factorisation depends
    only on the weight's bytes and the three numbers, so it is computed once per worker.
    """
    w = weight.detach().float().cpu().contiguous()
    key = (hashlib.sha256(w.numpy().tobytes()).hexdigest(), tuple(w.shape), rank, nonzeros, iterations)
    hit = _MEMO.get(key)
    if hit is None:
        hit = _MEMO[key] = ksvd(w, rank, nonzeros, iterations)
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    _MEMO.move_to_end(key)
    return KSVDResult(hit.codes.clone(), hit.dictionary.clone(), hit.errors)


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
    """F2: K-SVD (Aharon et al.): unit-norm atoms and OMP-sparse codes, from the SVD."""

    name = "F2"
    title = "K-SVD sparse-coded factorisation"

    def transform(self, module: nn.Module, spec: LayerSpec, settings: CompressionSettings) -> nn.Module:
        linear = self._linear(module, self.name)
        rank = rank_for(linear.out_features, linear.in_features, settings.rank_fraction)
        result = cached_ksvd(linear.weight, rank, nonzeros_for(rank, settings.f2_sparsity), settings.f2_iterations)
        codes, dictionary = (t.to(linear.weight.device, linear.weight.dtype) for t in (result.codes, result.dictionary))
        layer = _factorised(linear, codes, dictionary)
        install_mask(layer[0], (layer[0].weight != 0).to(layer[0].weight.dtype))
        return layer
