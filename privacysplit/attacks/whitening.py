"""ZCA whitening of released features: what the measuring attacker reads with ``attack_input="whiten"``.

Why: a decoder standardises its input per channel (:class:`~privacysplit.attacks.decoders.FeatureStandardizer`),
which leaves directions *across* channels of small variance small.  The proactive games
(``dcor``, ``dcor_kd``) decorrelate the features from the input's detail as Euclidean
distances see it, and leave that detail in exactly such directions, so a standardised
decoder has to learn to amplify them and runs out of steps first.  Whitening rescales every
direction to unit variance before the decoder sees it.  It is fair to the paper's adversary:
the whitener is fitted on the attacker's own auxiliary features, as the standardiser is.

Measured (LeNet/mnist, ``cpu`` fidelity, seed 0, lambda 16, one thread;
``benchmarks/attack_strength.py --fidelity cpu:attack_input=whiten``, README *Attack
strength*): against the proactive encoders at partitions 3 / 6 / 8 the evaluation's attacker
went from SSIM 0.896 / 0.474 / 0.467 to 0.941 / 0.659 / 0.673 (the standardised reference:
0.930 / 0.520 / 0.523; the reference on both inputs: 0.957 / 0.747 / 0.717) in about the same
attack time; against reactive encoders from 0.977 / 0.894 / 0.819 to 0.978 / 0.898 / 0.848.
On features with ``feature_noise`` a plain whitener rescales the noise along with the signal:
directions that hold only noise come out at unit variance, as loud as the signal (partition 3,
noise 0.3: 0.716-0.729 against the standardised 0.816-0.821).  The release's noise is isotropic
Gaussian of a variance the attacker knows (the defence is public, the paper's threat model), so
the whitener discounts it (``noise_var``): each direction is kept by its share of signal, the
Wiener gain ``sqrt(s / (s + n))`` on top of whitening, so a direction of signal variance ``s``
comes out at variance ``s / (s + n)`` and one of pure noise is dropped.  Without noise nothing
changes (the same matrix, bit for bit).  Measured (``benchmarks/proactive_tradeoff.py
--partitions 3 --noises 0.3 --fidelity cpu:attack_input=whiten``, seeds 0-5, the same encoders):
``dcor_kd`` at lambda 16 0.804 / 0.829 / 0.808 / 0.765 / 0.778 / 0.814 (the plain whitener 0.716 /
0.791 / 0.721 / 0.661 / 0.682 / 0.731; standardised 0.809 / 0.833 / 0.818 / 0.770 / 0.788 /
0.825), ``dcor`` at lambda 8 0.815 / 0.831 / 0.813 / 0.781 / 0.791 / 0.824 (standardised 0.821 /
0.845 / 0.824 / 0.790 / 0.806 / 0.836).  So on noisy features the standardised attacker is still
the stronger, by 0.004-0.015, and ``attack_input="both"`` (:func:`input_kinds`) keeps the better;
but one whitening attacker is now within 0.015 of it on every inversion encoder measured, at one
attacker's cost, where the standardised one is 0.04-0.27 short of it on noise-free features.  The
property attacker (a classifier) on noisy features is the exception: whitened, even discounting
the noise, it read 0.952 / 0.852 / 0.786 against the standardised 0.966 / 0.866 / 0.834 (partition
3, noise 0.3, reactive and lambda 2 / 16; ``proactive_tradeoff/whiten/property_noise``).

Tried and not shipped: the features and their (plain) whitened copy stacked along channels for
one decoder (``N x 2C``): 0.991 / 0.939 / 0.661 / 0.670 on the proactive encoders above (the
whitener's 0.991 / 0.941 / 0.659 / 0.673), 0.777 on the noisy ``dcor_kd`` encoder of seed 0
(standardised 0.809): the decoder does not learn in its few epochs to ignore the noisy view.

A larger ridge sits between the two (an exploration script, not shipped; one encoder each,
noise drawn by the script): against the lambda-16 encoder at partition 6 without noise and the
lambda-8 encoder at partition 3 with noise 0.3, where the standardised attacker reads 0.474 and
0.818, ridges 1e-3 / 3e-2 / 0.3 / 1 / 3 / 10 read 0.659 / 0.658 / 0.648 / 0.633 / 0.609 / 0.561
and 0.729 / 0.740 / 0.777 / 0.793 / 0.804 / 0.813.  No single ridge matches both inputs at once;
a ridge near 3 keeps most of both (+0.135, -0.014) at one attacker's cost, a candidate for a
cheaper default than ``"both"`` that needs measuring on every table first.
"""

from __future__ import annotations

import torch
from torch import nn

#: ridge on the covariance's eigenvalues, relative to their mean: keeps directions of (near)
#: zero variance -- dead channels, more channels than samples -- from being blown up into noise
RIDGE = 1e-3


class FeatureWhitener(nn.Module):
    """ZCA whitening across channels (dimension 1), every other dimension pooled, with a
    mean and matrix fixed from a sample.

    For flat features (``N x D``) that is the full ``D x D`` whitening; for maps (``N x C x
    H x W``) every position is one sample of a ``C``-vector, so the transform is a 1x1
    convolution and keeps the map's shape.  ZCA (``V diag(1/sqrt(e + ridge)) V^T``) rather
    than PCA whitening: it is the whitening closest to the identity, so each output channel
    stays where its input channel was and a decoder's spatial structure still applies.

    ``noise_var``: the variance of isotropic noise the features were released with (known to
    the attacker); each direction is scaled down by its share of signal (the module
    docstring), so noise-only directions are dropped rather than blown up.
    """

    def __init__(self, feats: torch.Tensor, ridge: float = RIDGE, noise_var: float = 0.0) -> None:
        super().__init__()
        flat = self._rows(feats.detach()).double()
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / max(len(flat) - 1, 1)
        values, vectors = torch.linalg.eigh(cov)
        values = values.clamp_min(0.0)
        scale = (values + ridge * values.mean().clamp_min(1e-12)).rsqrt()
        if noise_var > 0:  # the Wiener gain: each direction kept by its share of signal
            signal = (values - noise_var).clamp_min(0.0)
            scale = scale * (signal / (signal + noise_var)).sqrt()
        self.register_buffer("mean", mean.float())
        self.register_buffer("matrix", ((vectors * scale) @ vectors.T).float())

    @staticmethod
    def _rows(x: torch.Tensor) -> torch.Tensor:
        """``N x C x ...`` -> ``(N * ...) x C``."""
        return x.movedim(1, -1).reshape(-1, x.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = (self._rows(x.float()) - self.mean) @ self.matrix
        return rows.reshape(*x.shape[:1], *x.shape[2:], x.shape[1]).movedim(-1, 1)


def input_kinds(attack_input: str, noisy: bool = False) -> tuple[str, ...]:
    """The inputs an attacker of ``Fidelity.attack_input`` trains on, one decoder each:
    ``"both"`` is ``("standardize", "whiten")``, the better of which counts; ``"auto"`` is the
    one measured stronger on such features (``noisy``: released with ``feature_noise``), at one
    attacker's cost: whitened features without noise, standardised ones with it (module
    docstring)."""
    if attack_input == "both":
        return ("standardize", "whiten")
    if attack_input == "auto":
        return ("standardize",) if noisy else ("whiten",)
    return (attack_input,)


def reference_inputs(attack_input: str) -> tuple[str, ...]:
    """The inputs a benchmark's slow reference attacker reads for a fidelity whose measuring
    attacker reads ``attack_input``: standardised features always (the reference of earlier
    runs), whitened ones as well when the measuring attacker whitens; the better counts, so the
    reference stays at least as strong as the attacker it checks."""
    return ("standardize",) if attack_input == "standardize" else ("standardize", "whiten")


def attack_transform(kind: str, feats: torch.Tensor, noise_var: float = 0.0) -> nn.Module | None:
    """The transform ``Fidelity.attack_input`` names, fitted on ``feats`` (``None`` for
    ``"standardize"``: the decoders standardise by themselves); ``noise_var``: the variance of
    the release's own noise (``feature_noise``), which the whitener discounts."""
    if kind == "standardize":
        return None
    if kind == "whiten":
        return FeatureWhitener(feats, noise_var=noise_var)
    raise ValueError(f"unknown attack input {kind!r}; valid: standardize, whiten (what one decoder reads; "
                     "'both' and 'auto' name a choice of them, see input_kinds)")


def read_as(kind: str, feats: torch.Tensor, feats_val: torch.Tensor, noise_var: float = 0.0
            ) -> tuple[nn.Module | None, torch.Tensor, torch.Tensor]:
    """An attacker's auxiliary and held-out features as it reads them on input ``kind``, with
    the transform (:func:`attack_transform`, fitted on ``feats``) it reads them through."""
    transform = attack_transform(kind, feats, noise_var)
    if transform is None:
        return None, feats, feats_val
    return transform, transform(feats), transform(feats_val)
