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
Maps too large for it (VGG11's before partition 15) are read as released, or
(``prior_align="ridge_conv"``) mapped by a 3x3 convolution fitted the same way
(:class:`ConvAligner`); measured at VGG11 partition 8 it gains little (SSIM 0.9759 -> 0.9772 for
16 s more attack: README *A convolutional map for the early partitions*), because there
fine-tuning already undoes most of the move.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from privacysplit.attacks.fitting import release
from privacysplit.attacks.whitening import read_as
from privacysplit.fidelity import PRIOR_ALIGNS
from privacysplit.models import Network
from privacysplit.models.convert import fingerprint

#: ridge strength, as a share of the Gram matrix's mean eigenvalue (0.001 / 0.01 / 0.1 measured
#: on VGG11 partition 22: held-out relative error 0.114 / 0.105 / 0.118)
ALIGN_RIDGE: float = 1e-2


#: the largest map (released x base dimensions) an aligner is fitted for: 8192 x 8192, VGG11's
#: 512x4x4 at partitions 15-18 (seconds to solve); above it the prior reads the features as
#: released (VGG11's early maps have 16k-64k dimensions)
ALIGN_MAX_WEIGHTS: int = 8192 * 8192


def _kind(src: torch.Tensor, dst: torch.Tensor, mode: str) -> str | None:
    """Which aligner ``mode`` (``Fidelity.prior_align``, :data:`~privacysplit.fidelity.PRIOR_ALIGNS`)
    fits between these shapes: ``"dense"`` within :data:`ALIGN_MAX_WEIGHTS`, else ``"conv"``
    (``"ridge_conv"``, maps of one spatial size), else ``None``."""
    if mode not in PRIOR_ALIGNS:
        raise ValueError(f"unknown alignment {mode!r}; valid: {', '.join(PRIOR_ALIGNS)}")
    if mode == "none":
        return None
    if src[0].numel() * dst[0].numel() <= ALIGN_MAX_WEIGHTS:
        return "dense"
    same_grid = src.dim() == dst.dim() == 4 and src.shape[2:] == dst.shape[2:]
    return "conv" if mode == "ridge_conv" and same_grid else None


def fits(src: torch.Tensor, dst: torch.Tensor, mode: str = "ridge") -> bool:
    """Whether ``mode`` fits an aligner from ``src``'s to ``dst``'s per-sample shape: the dense
    one within :data:`ALIGN_MAX_WEIGHTS`, the convolutional one (``"ridge_conv"``) between
    maps of one spatial size."""
    return _kind(src, dst, mode) is not None


def fit_aligner(src: torch.Tensor, dst: torch.Tensor, mode: str = "ridge") -> nn.Module | None:
    """The aligner ``mode`` fits from ``src`` to ``dst`` (same images): the dense
    :class:`FeatureAligner` where it fits, else (``"ridge_conv"``) the :class:`ConvAligner`, else
    ``None``.  Both carry ``fitted_src``, ``src`` aligned."""
    kind = _kind(src, dst, mode)
    return None if kind is None else FeatureAligner(src, dst) if kind == "dense" else ConvAligner(src, dst)


def _ridge_solve(gram: torch.Tensor, rhs: torch.Tensor, lam: float, rows: Callable[[], tuple[torch.Tensor, torch.Tensor]]
                 ) -> torch.Tensor:
    """``(gram + lam I)^-1 rhs`` in single precision; where rounding broke positive definiteness,
    the system again in double precision from ``rows()`` (its ``(gram, rhs)`` in double)."""
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    chol, info = torch.linalg.cholesky_ex(gram + lam * eye)
    if int(info) == 0:
        return torch.cholesky_solve(rhs, chol)
    gram64, rhs64 = rows()
    chol = torch.linalg.cholesky(gram64 + lam * eye.double())
    return torch.cholesky_solve(rhs64, chol).float()


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

        def double() -> tuple[torch.Tensor, torch.Tensor]:
            s64 = s.double()
            return (s64.T @ s64, s64.T @ d.double()) if self.primal else (s64 @ s64.T, d.double())

        coef = _ridge_solve(gram, s.T @ d if self.primal else d, lam, double)
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


#: the neighbourhood (side) a :class:`ConvAligner` maps from
ALIGN_KERNEL: int = 3
#: images a :class:`ConvAligner` is fitted on at most (a seeded subset): every image gives one
#: row per position, so VGG11's 8x8 maps give 32k rows from 512 images
ALIGN_CONV_IMAGES: int = 512


class ConvAligner(nn.Module):
    """The ridge map from each ``k x k`` neighbourhood of the released map ``src`` (every
    channel) to the base map ``dst``'s channels at its centre, shared across positions: a
    convolution fitted in closed form, for maps too large for the dense
    :class:`FeatureAligner` (VGG11's 16k-64k dimensions at partitions 0-11).  Retraining moves
    an early layer's features, but each position still reads the same patch of the input on
    both networks, so a local map recovers what the dense one would at a fraction of its size:
    ``(C_in k^2 + 1) x C_out`` weights, fitted from the patches' Gram matrix (accumulated over
    chunks of images; cost ``rows x (C_in k^2)^2``).  Zero padding at the border, as the map's
    own convolutions."""

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, kernel: int = ALIGN_KERNEL, ridge: float = ALIGN_RIDGE,
                 max_images: int | None = ALIGN_CONV_IMAGES, chunk: int = 64) -> None:
        super().__init__()
        if src.dim() != 4 or dst.dim() != 4 or src.shape[2:] != dst.shape[2:] or len(src) != len(dst) or len(src) < 2:
            raise ValueError("a convolutional aligner needs maps of one spatial size on the same images (at least 2); "
                             f"got {tuple(src.shape)} and {tuple(dst.shape)}")
        s, d = src.detach(), dst.detach()
        if max_images is not None and len(s) > max_images:
            keep = torch.randperm(len(s), generator=torch.Generator().manual_seed(0))[:max_images].to(s.device)
            s, d = s[keep], d[keep]
        c_in, c_out, pad = s.shape[1], d.shape[1], kernel // 2
        dims = c_in * kernel * kernel

        def patches(i: int) -> tuple[torch.Tensor, torch.Tensor]:  # rows: (image, position)
            p = nn.functional.unfold(s[i:i + chunk].float(), kernel, padding=pad).transpose(1, 2).reshape(-1, dims)
            return p, d[i:i + chunk].float().flatten(2).transpose(1, 2).reshape(-1, c_out)

        def moments(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
            xtx = s.new_zeros(dims, dims, dtype=dtype)
            xty = s.new_zeros(dims, c_out, dtype=dtype)
            sx, sy, n = s.new_zeros(dims, dtype=dtype), s.new_zeros(c_out, dtype=dtype), 0
            for i in range(0, len(s), chunk):
                p, y = (t.to(dtype) for t in patches(i))
                xtx += p.T @ p
                xty += p.T @ y
                sx, sy, n = sx + p.sum(0), sy + y.sum(0), n + len(p)
            mx, my = sx / n, sy / n  # centred: the bias is the means' difference
            return xtx - n * torch.outer(mx, mx), xty - n * torch.outer(mx, my), mx, my, n

        gram, rhs, mx, my, _ = moments(torch.float32)
        lam = ridge * float(torch.trace(gram)) / dims + 1e-12
        w = _ridge_solve(gram, rhs, lam, lambda: moments(torch.float64)[:2])
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=pad).to(s.device)
        with torch.no_grad():
            self.conv.weight.copy_(w.T.reshape(c_out, c_in, kernel, kernel))
            self.conv.bias.copy_(my - mx @ w)
        self.conv.requires_grad_(False)
        #: ``src`` aligned (every image); a caller takes it and sets ``None``
        with torch.no_grad():
            self.fitted_src: torch.Tensor | None = self(src)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x[i:i + 512].float()) for i in range(0, len(x), 512)])


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
