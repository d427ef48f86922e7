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
* :class:`GenericDecoder` is independent of the encoder's structure: wide convolutions on
  a coarse grid (large maps folded onto it with ``PixelUnshuffle``, small maps convolved
  at their own resolution and resized, flat vectors through an MLP), batch norm, a
  sub-pixel (``PixelShuffle``) up-convolution to the input's size, sigmoid output;
  tabular inputs are reconstructed by an MLP.

Every decoder ends in ``sigmoid(logits + logit(mean training input))`` (:class:`Decoder`),
so an untrained decoder already answers the mean image.  The attack trains the candidates
and keeps whichever reconstructs better (see :mod:`privacysplit.attacks.inversion`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit.fidelity import DECODER_UPSAMPLES, GENERIC_SHAPE
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
    """``features -> reconstruction`` in ``[0, 1]``: standardiser, body, mean-image offset.

    The body produces logits that are added to the logit of the mean training input before
    the sigmoid, so a fresh decoder already answers the mean image (the MSE_mean baseline)
    and training only has to learn what the features say about the individual input.
    Measured at ``cpu`` fidelity this matters: starting from a grey 0.5 image, the few
    hundred steps an attack gets were partly spent learning MNIST's black background.
    """

    def __init__(
        self, standardizer: FeatureStandardizer, body: nn.Module, targets: torch.Tensor, name: str,
        stem: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.standardizer = standardizer
        self.stem = stem if stem is not None else nn.Identity()
        self.body = body
        mean = targets.detach().float().mean(0, keepdim=True).clamp(0.01, 0.99)
        self.offset = nn.Parameter(torch.log(mean / (1 - mean)))
        self.name = name

    @torch.no_grad()
    def prepare(self, feats: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """The parameter-free front (standardise, pad, fold into channels) of ``feats``.

        Training computes it once per attack instead of once per batch and epoch; on one CPU
        thread ``PixelUnshuffle`` alone cost ~10 % of a step.
        """
        return torch.cat([self.stem(self.standardizer(feats[i : i + batch_size]))
                          for i in range(0, len(feats), batch_size)])

    def head(self, prepared: torch.Tensor) -> torch.Tensor:
        """Reconstructions from :meth:`prepare`'d features."""
        return torch.sigmoid(self.body(prepared) + self.offset)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(self.standardizer(feats)))


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


def mirror_decoder(encoder: Network, feats: torch.Tensor, targets: torch.Tensor) -> Decoder:
    """The encoder read backwards (Dosovitskiy & Brox), ending in a sigmoid.

    Args:
        encoder: the (possibly compressed) encoder whose features are attacked.
        feats: a sample of its features (for the standardiser's statistics).
        targets: the inputs to reconstruct (their shape and mean image are used).
    """
    out_shape = tuple(targets.shape[1:])
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
    return Decoder(FeatureStandardizer(feats), nn.Sequential(*mods), targets, "mirror")


#: channels on the generic decoder's coarse grid unless told otherwise (``Fidelity.decoder_width``)
GENERIC_WIDTH: int = GENERIC_SHAPE["width"]
#: 3x3 convolutions on that grid unless told otherwise (``Fidelity.decoder_depth``)
GENERIC_DEPTH: int = GENERIC_SHAPE["depth"]


class CenterPad(nn.Module):
    """Zero-pad a map symmetrically to ``size`` (undoes a 'valid' convolution's shrinkage)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dh, dw = self.size - x.shape[-2], self.size - x.shape[-1]
        if dh == 0 and dw == 0:
            return x
        return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


class GenericDecoder(nn.Module):
    """Up-convolutional decoder that does not depend on the encoder's structure.

    Image outputs are built on a coarse grid (a quarter of the input's side, 8x8 for 32x32
    inputs) with wide convolutions, then a sub-pixel convolution (1x1 convolution +
    ``PixelShuffle``, the efficient form of a stride-``r`` transposed convolution, Shi et
    al. 2016) lifts the grid to full resolution, where a final 3x3 convolution to the
    input's channels produces logits for the sigmoid:

    * maps at least as large as the grid are zero-padded to a multiple of it (centred, which
      undoes a 'valid' convolution's shrinkage) and folded into channels with
      ``PixelUnshuffle`` -- no information is pooled away;
    * small maps (below the grid, e.g. 5x5 or VGG's 2x2) get a 3x3 convolution at their own
      resolution and a bilinear resize onto the grid (``upsample="resize"``), or a ladder of
      resizes to twice the side (at most the grid's), each followed by a 3x3 convolution
      (``upsample="ladder"``; measured on VGG11's 512x2x2 features at partitions 22 / 25, ``cpu``
      prior, ``benchmarks/decoder_shape.py``: 0.852 / 0.753 against the resize's 0.827 / 0.731,
      in the same time), or that ladder with ``width * 2**k`` channels ``k`` doublings below the
      grid (``upsample="pyramid"``, DCGAN's generator: 0.863 / 0.764, for about 1.8x the
      ladder's CPU per prior epoch; ``benchmarks/results/decoder_shape/vgg11_pyramid``);
    * flat features (linear layers, 1x1 maps) go through a two-layer MLP onto the grid.

    Where the features line up with the output (folded maps, flat vectors) a linear
    shortcut is added to the logits: early-layer features are nearly linearly invertible
    (measured at ``cpu`` fidelity: LeNet conv1 SSIM 0.970 -> 0.978 for ~5 % more time).

    Why this shape: on one CPU thread a 3x3 convolution over a 28x28 map with 16 channels
    costs more time than one with 30x the multiply-accumulates over an 8x8 map with 128, so
    the capacity goes where the CPU computes efficiently.  The same design inverts LeNet's
    first convolution to SSIM ~0.97 at ``cpu`` fidelity, where a full-resolution decoder
    (16 channels at 28x28, then 32x32) took longer and stayed near 0.80.

    Tabular outputs: an MLP with batch norm.

    Args:
        feat_shape: per-sample feature shape.
        out_shape: per-sample input shape to reconstruct.
        width: channels on the coarse grid.
        depth: 3x3 convolutions on the grid.
        scale: the grid is ``ceil(side / scale)``.
        upsample: how a map smaller than the grid reaches it (``DECODER_UPSAMPLES``: one bilinear
            resize, a ladder of doublings with a convolution after each, or a pyramid: the
            ladder with twice the channels per rung below the grid).
    """

    def __init__(
        self,
        feat_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        *,
        width: int = GENERIC_WIDTH,
        depth: int = GENERIC_DEPTH,
        scale: int = 4,
        hidden: int = 256,
        upsample: str = GENERIC_SHAPE["upsample"],
    ) -> None:
        super().__init__()
        if upsample not in DECODER_UPSAMPLES:
            raise ValueError(f"unknown upsample {upsample!r}; valid: {', '.join(DECODER_UPSAMPLES)}")
        feat_shape, out_shape = tuple(feat_shape), tuple(out_shape)
        self.stem: nn.Module = nn.Identity()
        self.skip: nn.Module | None = None
        if not _is_map(out_shape):
            hidden = max(256, min(1024, 2 * _numel(out_shape)))
            self.net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(_numel(feat_shape), hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                nn.Linear(hidden, _numel(out_shape)), Reshape(out_shape),
            )
            return
        c_out, h_out, w_out = out_shape
        grid = max(1, math.ceil(max(h_out, w_out) / scale))
        mods: list[nn.Module] = []
        if _is_map(feat_shape) and min(feat_shape[1:]) >= grid:
            fold = math.ceil(max(feat_shape[1:]) / grid)
            c_in = feat_shape[0] * fold * fold
            self.stem = nn.Sequential(CenterPad(fold * grid), nn.PixelUnshuffle(fold))
            mods += [nn.Conv2d(c_in, width, 3 if c_in <= 256 else 1, 1, 1 if c_in <= 256 else 0)]
            if fold == scale:  # grid cells line up with output cells: a linear shortcut
                self.skip = nn.Sequential(nn.Conv2d(c_in, c_out * scale * scale, 1), nn.PixelShuffle(scale),
                                          Resize((h_out, w_out), "bilinear"))
        elif _is_map(feat_shape) and min(feat_shape[1:]) > 1 and upsample in ("ladder", "pyramid"):
            sides = [max(feat_shape[1:])]
            while sides[-1] < grid:
                sides.append(min(2 * sides[-1], grid))
            # a pyramid doubles the channels per halving of the side below the grid (DCGAN's generator)
            chans = [width << (len(sides) - 1 - i) if upsample == "pyramid" else width for i in range(len(sides))]
            mods += [nn.Conv2d(feat_shape[0], chans[0], 3, 1, 1)]
            for side, c_in, c_next in zip(sides[1:], chans[:-1], chans[1:], strict=True):
                mods += [nn.BatchNorm2d(c_in), nn.ReLU(), Resize((side, side), "nearest"),
                         nn.Conv2d(c_in, c_next, 3, 1, 1)]
        elif _is_map(feat_shape) and min(feat_shape[1:]) > 1:
            mods += [nn.Conv2d(feat_shape[0], width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(),
                     Resize((grid, grid), "bilinear"), nn.Conv2d(width, width, 3, 1, 1)]
        else:
            mods += [nn.Flatten(), nn.Linear(_numel(feat_shape), hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                     nn.Linear(hidden, width * grid * grid), Reshape((width, grid, grid))]
            self.skip = nn.Sequential(nn.Flatten(), nn.Linear(_numel(feat_shape), _numel(out_shape)),
                                      Reshape(out_shape))
        mods += [nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(depth - 1):
            mods += [nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU()]
        # sub-pixel output: a 3x3 convolution on the grid emits scale x scale pixels per cell
        mods += [nn.Conv2d(width, c_out * scale * scale, 3, 1, 1), nn.PixelShuffle(scale),
                 Resize((h_out, w_out), "bilinear")]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out if self.skip is None else out + self.skip(x)


def generic_decoder(feats: torch.Tensor, targets: torch.Tensor, **options) -> Decoder:
    """A :class:`GenericDecoder` behind a standardiser fitted on ``feats``."""
    body = GenericDecoder(tuple(feats.shape[1:]), tuple(targets.shape[1:]), **options)
    stem, body.stem = body.stem, nn.Identity()
    return Decoder(FeatureStandardizer(feats), body, targets, "generic", stem=stem)


def warm_decoder(state: dict[str, torch.Tensor], feats: torch.Tensor, targets: torch.Tensor,
                 kind: str = "generic", encoder: Network | None = None, **options) -> Decoder | None:
    """A decoder of ``kind`` (:data:`DECODERS`; ``"mirror"`` needs the ``encoder`` whose
    features are attacked) for ``feats`` starting from a prior's weights, or ``None`` when the
    prior does not fit (a compression changed the released feature shape or, for a mirror, any
    layer's shape).  ``options``: the generic decoder's (width, depth, upsample), as the prior was built."""
    if kind == "mirror" and encoder is None:
        raise ValueError("a mirror prior needs the encoder it mirrors")
    decoder = build_decoder(kind, encoder, feats, targets, **options)
    own = decoder.state_dict()
    if kind == "mirror" and set(state) != {k for k in own if not k.startswith("standardizer.")}:
        return None  # another layer structure (a compressed plan): not this prior's decoder
    for k, v in state.items():
        if k not in own or own[k].shape != v.shape:
            return None
    decoder.load_state_dict(state, strict=False)
    decoder.standardizer = FeatureStandardizer(feats)
    decoder.name = "prior"
    return decoder.to(feats.device)


def build_decoder(name: str, encoder: Network, feats: torch.Tensor, targets: torch.Tensor, **options) -> Decoder:
    """Build a decoder by name (one of :data:`DECODERS`); ``options`` are the generic
    decoder's (:class:`GenericDecoder`'s width, depth, ...), which the mirror has none of."""
    if name == "mirror":
        return mirror_decoder(encoder, feats, targets)
    if name == "generic":
        return generic_decoder(feats, targets, **options)
    raise ValueError(f"unknown decoder {name!r}; valid decoders: {', '.join(DECODERS)}")
