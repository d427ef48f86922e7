"""Inversion decoders: the encoder's mirror and a stronger generic up-convolutional decoder.

Both take the released features standardised per channel (:class:`FeatureStandardizer`,
statistics of the attacker's auxiliary features), because raw feature scales differ by
orders of magnitude between layers and between compressed plans; an attacker that trips
over a scale is a weak attacker, and a weak attacker flatters every plan.

* :func:`mirror_decoder` follows Dosovitskiy & Brox and the paper: the encoder read
  backwards, convolution -> transposed convolution, pooling -> upsampling, linear ->
  linear, built from the encoder's :class:`~privacysplit.models.LayerSpec` list and the
  shapes :func:`~privacysplit.models.cost.layer_shapes` measures (so compressed layers whose
  specs changed still mirror correctly), and a final layer to the input's channels where
  the mirror does not already end there.  Its capacity tracks the encoder's: the mirror of
  a one-convolution encoder is a single linear transposed convolution, which cannot undo
  the ReLU and plateaus near SSIM 0.80 on MNIST.
* :class:`GenericDecoder` is independent of the encoder's structure: convolutions at the
  feature resolution, stride-2 transposed convolutions up to the input's size, batch
  norm, sigmoid output.  Flat features (linear layers, 1x1 maps) enter through a linear
  layer onto a small grid; tabular inputs are reconstructed by an MLP.

The attack trains the candidates and keeps whichever reconstructs better (see
:mod:`privacysplit.attacks.inversion`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit.models import Network
from privacysplit.models.cost import layer_shapes

#: decoder names, in the order the attack tries them
DECODERS: tuple[str, ...] = ("mirror", "generic")


class FeatureStandardizer(nn.Module):
    """Standardise features per channel with statistics fixed from a sample.

    Channels are dimension 1; every other dimension is pooled.  Constant channels get a
    floor on their standard deviation so an input-independent encoder yields zeros, not
    NaNs.
    """

    def __init__(self, feats: torch.Tensor, eps: float = 1e-5) -> None:
        super().__init__()
        dims = [0, *range(2, feats.dim())]
        f = feats.detach().float()
        mean = f.mean(dims, keepdim=True)
        std = f.std(dims, keepdim=True, unbiased=False).clamp_min(eps) if len(f) > 1 else torch.ones_like(mean)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Resize(nn.Module):
    """Resize a feature map to a fixed spatial size (``nearest`` for upsampling mirrors)."""

    def __init__(self, size: tuple[int, int], mode: str = "nearest") -> None:
        super().__init__()
        self.size = tuple(size)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        if self.mode == "bilinear":
            return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return F.interpolate(x, size=self.size, mode=self.mode)


class Reshape(nn.Module):
    """View a flat batch as ``N x shape``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


class Decoder(nn.Module):
    """A standardiser in front of a body: ``features -> reconstruction`` in ``[0, 1]``."""

    def __init__(self, standardizer: FeatureStandardizer, body: nn.Module, name: str) -> None:
        super().__init__()
        self.standardizer = standardizer
        self.body = body
        self.name = name

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardizer(feats))


def _numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _is_map(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3


def _adapter(src: tuple[int, ...], dst: tuple[int, ...]) -> list[nn.Module]:
    """Map any shape to any shape: 1x1 convolution + resize for maps, else linear."""
    if _is_map(src) and _is_map(dst):
        mods: list[nn.Module] = []
        if src[0] != dst[0]:
            mods.append(nn.Conv2d(src[0], dst[0], 1))
        if src[1:] != dst[1:]:
            mods.append(Resize(dst[1:], "bilinear"))
        return mods
    return [nn.Flatten(), nn.Linear(_numel(src), _numel(dst)), Reshape(dst)]


def _transposed(spec_kernel: int, spec_stride: int, spec_padding: int, src: tuple[int, ...], dst: tuple[int, ...]) -> list[nn.Module]:
    """A transposed convolution taking map ``src`` back to map ``dst`` (resize if the geometry
    of the forward layer cannot be inverted exactly, e.g. odd sizes with stride 2)."""
    k = max(spec_kernel, 1)
    s = max(spec_stride, 1)
    p = spec_padding
    base = (src[1] - 1) * s - 2 * p + k
    op = dst[1] - base
    if 0 <= op < s and p >= 0 and src[1] == src[2] and dst[1] == dst[2]:
        return [nn.ConvTranspose2d(src[0], dst[0], k, s, p, output_padding=op)]
    return [nn.ConvTranspose2d(src[0], dst[0], 3, 1, 1), Resize(dst[1:], "bilinear")]


def mirror_decoder(encoder: Network, feats: torch.Tensor, out_shape: tuple[int, ...]) -> Decoder:
    """The encoder read backwards (Dosovitskiy & Brox), ending in a sigmoid.

    Args:
        encoder: the (possibly compressed) encoder whose features are attacked.
        feats: a sample of its features (for the standardiser's statistics).
        out_shape: the shape to reconstruct (the encoder's input shape).
    """
    shapes = [tuple(out_shape), *layer_shapes(encoder, tuple(out_shape))]
    mods: list[nn.Module] = []
    learned = [i for i, spec in enumerate(encoder.layers) if spec.type in ("conv", "block", "linear")]
    first_learned = learned[0] if learned else None
    for i in reversed(range(len(encoder.layers))):
        spec, src, dst = encoder.layers[i], shapes[i + 1], shapes[i]
        last = i == first_learned
        if spec.type in ("conv", "block") and _is_map(src) and _is_map(dst):
            mods += _transposed(spec.kernel, spec.stride, spec.padding, src, dst)
            if not last:
                mods += [nn.BatchNorm2d(dst[0]), nn.ReLU()]
        elif spec.type == "linear":
            mods += [nn.Flatten(), nn.Linear(_numel(src), _numel(dst)), Reshape(dst)]
            if not last:
                mods.append(nn.ReLU())
        elif spec.type == "pool" and _is_map(src) and _is_map(dst):
            mods.append(Resize(dst[1:], "nearest"))
        elif src != dst:
            # an unfamiliar shape-changing layer (e.g. from a compression technique)
            mods += _adapter(src, dst)
        # bn, relu, dropout, noise, flatten: shape-preserving; the learned mirrors carry the
        # nonlinearity and normalisation
    if first_learned is None:
        # nothing learned to invert (identity-like encoder): a final layer to the input
        src = shapes[-1]
        if _is_map(src) and _is_map(tuple(out_shape)):
            mods += [nn.Conv2d(src[0], out_shape[0], 3, 1, 1), Resize(tuple(out_shape[1:]), "bilinear")]
        else:
            mods += [nn.Flatten(), nn.Linear(_numel(src), _numel(tuple(out_shape))), Reshape(tuple(out_shape))]
    mods.append(nn.Sigmoid())
    return Decoder(FeatureStandardizer(feats), nn.Sequential(*mods), "mirror")


def _up_stages(size: int, target: int) -> int:
    """Stride-2 up-convolutions that bring ``size`` closest to ``target`` (0 at full size)."""
    if size >= target:
        return 0
    return max(0, round(math.log2(target / size)))


class GenericDecoder(nn.Module):
    """Up-convolutional decoder that does not depend on the encoder's structure.

    Image outputs: features standardised per channel; spatial maps get ``depth``
    convolutions (3x3, batch norm, ReLU) at their own resolution, flat features a linear
    layer onto a ``grid x grid`` map; then stride-2 transposed convolutions (halving the
    width, never below ``min_width``) until the map is about the input's size, a bilinear
    resize to the exact size, a 3x3 convolution to the input's channels and a sigmoid.
    Tabular outputs: an MLP with batch norm.

    The width at the feature resolution is chosen from a budget of multiply-accumulates per
    position, so a 28x28 map gets a narrow decoder and a 2x2 map a wide one: the attack's
    cost stays near-constant across partition points while its capacity goes where the
    information is.

    Args:
        feat_shape: per-sample feature shape.
        out_shape: per-sample input shape to reconstruct.
        width: channels at the feature resolution for small maps (scaled down for large ones).
        min_width: the narrowest layer.
        depth: convolutions at the feature resolution.
    """

    def __init__(
        self,
        feat_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        *,
        width: int = 64,
        min_width: int = 16,
        depth: int = 1,
    ) -> None:
        super().__init__()
        feat_shape, out_shape = tuple(feat_shape), tuple(out_shape)
        if not _is_map(out_shape):
            hidden = max(256, min(1024, 2 * _numel(out_shape)))
            self.net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(_numel(feat_shape), hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                nn.Linear(hidden, _numel(out_shape)), Reshape(out_shape), nn.Sigmoid(),
            )
            return
        c_out, h_out, w_out = out_shape
        target = max(h_out, w_out)
        mods: list[nn.Module] = []
        if _is_map(feat_shape) and min(feat_shape[1:]) > 1:
            c, side = feat_shape[0], max(feat_shape[1:])
            stages = _up_stages(side, target)
            w = max(min_width, min(width, min_width * 2**stages))
            mods += [nn.Conv2d(c, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU()]
            for _ in range(depth - 1):
                mods += [nn.Conv2d(w, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU()]
        else:
            grid = max(2, math.ceil(target / 8))
            stages = _up_stages(grid, target)
            w = max(min_width, min(width, min_width * 2**stages))
            mods += [nn.Flatten(), nn.Linear(_numel(feat_shape), w * grid * grid), Reshape((w, grid, grid)),
                     nn.BatchNorm2d(w), nn.ReLU()]
            for _ in range(depth - 1):
                mods += [nn.Conv2d(w, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU()]
        for _ in range(stages):
            nxt = max(min_width, w // 2)
            mods += [nn.ConvTranspose2d(w, nxt, 4, 2, 1), nn.BatchNorm2d(nxt), nn.ReLU()]
            w = nxt
        mods += [Resize((h_out, w_out), "bilinear"), nn.Conv2d(w, c_out, 3, 1, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def generic_decoder(
    feats: torch.Tensor, out_shape: tuple[int, ...], *, width: int = 64, min_width: int = 16, depth: int = 1
) -> Decoder:
    """A :class:`GenericDecoder` behind a standardiser fitted on ``feats``."""
    body = GenericDecoder(tuple(feats.shape[1:]), tuple(out_shape), width=width, min_width=min_width, depth=depth)
    return Decoder(FeatureStandardizer(feats), body, "generic")


def build_decoder(
    name: str, encoder: Network, feats: torch.Tensor, out_shape: tuple[int, ...], **options
) -> Decoder:
    """Build a decoder by name (one of :data:`DECODERS`)."""
    if name == "mirror":
        return mirror_decoder(encoder, feats, out_shape)
    if name == "generic":
        return generic_decoder(feats, out_shape, **options)
    raise ValueError(f"unknown decoder {name!r}; valid decoders: {', '.join(DECODERS)}")
