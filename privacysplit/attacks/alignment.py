"""Align a plan's released features onto the base network's before the attack prior reads them.

The attack prior (:mod:`privacysplit.attacks.prior`) is a decoder trained on the *base*
network's features at the plan's partition.  Retraining the split model moves the encoder, and
with it the features, away from what the prior knows: on VGG11 at partition 22 (``cpu``
fidelity, ``decoder_upsample=pyramid``) the prior scores SSIM 0.863 on the base features and
0.540 as it is on the retrained plan's.  Much of that move is linear.  An adversary who knows
the architecture and the base network -- the paper's threat model, and what training the prior
already assumes -- can compute both networks' features on its own auxiliary images and fit the
map between them in closed form: ridge regression from the released features to the base
features.  The prior then reads the mapped features and fine-tuning starts close to where the
prior left off.  Measured on that plan (an exploration beside ``benchmarks/attack_strength.py``):
the prior as it is 0.540 -> 0.840, the evaluation's attack 0.836 (prior fine-tuned, then trained
on at the full rate, 34 s) -> 0.845 (fine-tuned only, 16 s).

The map is affine over the flattened features (every position and channel), fitted on the
auxiliary set only; a map per channel (a 1x1 convolution, as the whitener is) left 2x the
held-out error there, because retraining mixes positions as well.  The solve takes the smaller
of the primal (``D x D``) and dual (``N x N``) systems, so its cost is ``min(D, N)^2 max(D, N)``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from privacysplit.attacks.fitting import release
from privacysplit.attacks.whitening import read_as
from privacysplit.models import Network
from privacysplit.models.convert import fingerprint

#: ridge strength, as a share of the Gram matrix's mean eigenvalue (0.001 / 0.01 / 0.1 measured
#: on VGG11 partition 22: held-out relative error 0.114 / 0.105 / 0.118)
ALIGN_RIDGE: float = 1e-2


#: the largest map (released x base dimensions) an aligner is fitted for: 8192 x 8192, VGG11's
#: 512x4x4 at partitions 15-18 (seconds to solve); above it the prior reads the features as
#: released (VGG11's early maps have 16k-64k dimensions)
ALIGN_MAX_WEIGHTS: int = 8192 * 8192


def fits(src: torch.Tensor, dst: torch.Tensor) -> bool:
    """Whether an aligner from ``src``'s to ``dst``'s per-sample shape is within
    :data:`ALIGN_MAX_WEIGHTS`."""
    return src[0].numel() * dst[0].numel() <= ALIGN_MAX_WEIGHTS


#: images the dual solve reads at most (VGG11's 8192 dimensions on 4000 images: the whole set
#: takes about 15 s of an evaluation under load; see the README's *Aligning the features*)
ALIGN_DUAL_ROWS: int = 2048


class FeatureAligner(nn.Module):
    """The affine ridge map from released features ``src`` to base features ``dst`` (same
    images, any shapes): ``forward`` takes ``N x src_shape`` and returns ``N x dst_shape``.

    With at most as many dimensions as images it solves the primal system and keeps the
    ``D_src x D_dst`` weight; with more (VGG11's 8192 on 4000 images) the dual one, and keeps
    the centred images and their coefficients instead, so reading a row costs ``2 N D`` and
    nothing of ``D x D`` size is formed; ``max_rows`` caps the images the dual solve reads (a
    seeded subset; its cost grows with their square).  Single precision (the ridge keeps the
    system's condition number in the hundreds), double where a factorisation fails."""

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, ridge: float = ALIGN_RIDGE,
                 max_rows: int | None = ALIGN_DUAL_ROWS) -> None:
        super().__init__()
        if len(src) != len(dst) or len(src) < 2:
            raise ValueError(f"an aligner needs the same images (at least 2) on both sides; got {len(src)} and {len(dst)}")
        s, d = src.detach().flatten(1).float(), dst.detach().flatten(1).float()
        s_mean, d_mean = s.mean(0), d.mean(0)
        s, d = s - s_mean, d - d_mean
        self.primal = s.shape[1] <= s.shape[0]
        full = s
        if not self.primal and max_rows is not None and len(s) > max_rows:  # the dual on a subset
            keep = torch.randperm(len(s), generator=torch.Generator().manual_seed(0))[:max_rows].to(s.device)
            s, d = s[keep], d[keep]
        gram = s.T @ s if self.primal else s @ s.T
        lam = ridge * float(torch.trace(gram)) / gram.shape[0] + 1e-12
        rhs = s.T @ d if self.primal else d
        eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        chol, info = torch.linalg.cholesky_ex(gram + lam * eye)
        if int(info) == 0:
            coef = torch.cholesky_solve(rhs, chol)
        else:  # rounding broke positive definiteness: the same system in double precision
            s64 = s.double()
            gram = s64.T @ s64 if self.primal else s64 @ s64.T
            chol = torch.linalg.cholesky(gram + lam * eye.double())
            rhs = s64.T @ d.double() if self.primal else d.double()
            coef = torch.cholesky_solve(rhs, chol).float()
        # primal: W = (S^T S + lam I)^-1 S^T D; dual: W = S^T (S S^T + lam I)^-1 D = S^T coef
        self.register_buffer("src_mean", s_mean)
        self.register_buffer("dst_mean", d_mean)
        self.register_buffer("basis", torch.empty(0) if self.primal else s)
        self.register_buffer("coef", coef)
        self.dst_shape = tuple(dst.shape[1:])
        #: ``src`` aligned, from the solve itself (in the dual ``K coef = D - lam coef``; reading
        #: ``src`` again would form the Gram matrix a second time); a caller takes it and sets ``None``
        if self.primal:
            self.fitted_src: torch.Tensor | None = s @ coef + d_mean
        elif full is s:
            self.fitted_src = d - lam * coef + d_mean
        else:
            self.fitted_src = (full @ s.T) @ coef + d_mean
        self.fitted_src = self.fitted_src.view(len(src), *self.dst_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.flatten(1).float() - self.src_mean
        rows = rows @ self.coef if self.primal else (rows @ self.basis.T) @ self.coef
        return (rows + self.dst_mean).view(len(x), *self.dst_shape)


#: the latest targets, by base weights, images and input: every plan evaluated at a partition
#: maps onto the same base features, and on VGG11 computing them costs about as much as the
#: plan's own release (a forward pass over the auxiliary set)
_TARGETS: OrderedDict[str, torch.Tensor] = OrderedDict()
#: what the remembered targets may hold together (the newest is always kept): VGG11's 512x4x4 on
#: 4000 images is 131 MB
_TARGETS_BYTES = 1 << 29


def alignment_target(base_encoder: Network, x: torch.Tensor, normalize: Callable[[torch.Tensor], torch.Tensor],
                     kind: str) -> torch.Tensor:
    """The base network's features of ``x`` read on input ``kind`` (the transform fitted on
    themselves, as the prior's is on its own): what an aligner maps the released features onto.
    Remembered for the latest (base encoder, images, input) in this process, up to 512 MB."""
    h = hashlib.sha256(f"{kind}:{fingerprint(base_encoder)}".encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    key = h.hexdigest()
    if key not in _TARGETS:
        feats = release(base_encoder.to(x.device), x, normalize)
        _TARGETS[key] = read_as(kind, feats, feats[:1])[1]
        while len(_TARGETS) > 1 and sum(t.numel() * t.element_size() for t in _TARGETS.values()) > _TARGETS_BYTES:
            _TARGETS.popitem(last=False)
    _TARGETS.move_to_end(key)
    return _TARGETS[key]
