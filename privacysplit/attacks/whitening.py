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
It is the weaker attacker on features with ``feature_noise``: whitening rescales the noise
along with the signal (partition 3, noise 0.3: 0.716-0.729 against the standardised 0.816-0.821),
which is why ``attack_input="both"`` exists (:func:`input_kinds`).

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
    """

    def __init__(self, feats: torch.Tensor, ridge: float = RIDGE) -> None:
        super().__init__()
        flat = self._rows(feats.detach()).double()
        mean = flat.mean(0)
        centred = flat - mean
        cov = centred.T @ centred / max(len(flat) - 1, 1)
        values, vectors = torch.linalg.eigh(cov)
        values = values.clamp_min(0.0)
        scale = (values + ridge * values.mean().clamp_min(1e-12)).rsqrt()
        self.register_buffer("mean", mean.float())
        self.register_buffer("matrix", ((vectors * scale) @ vectors.T).float())

    @staticmethod
    def _rows(x: torch.Tensor) -> torch.Tensor:
        """``N x C x ...`` -> ``(N * ...) x C``."""
        return x.movedim(1, -1).reshape(-1, x.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = (self._rows(x.float()) - self.mean) @ self.matrix
        return rows.reshape(*x.shape[:1], *x.shape[2:], x.shape[1]).movedim(-1, 1)


def input_kinds(attack_input: str) -> tuple[str, ...]:
    """The inputs an attacker of ``Fidelity.attack_input`` trains on, one decoder each:
    ``"both"`` is ``("standardize", "whiten")``, the better of which counts."""
    return ("standardize", "whiten") if attack_input == "both" else (attack_input,)


def attack_transform(kind: str, feats: torch.Tensor) -> nn.Module | None:
    """The transform ``Fidelity.attack_input`` names, fitted on ``feats`` (``None`` for
    ``"standardize"``: the decoders standardise by themselves)."""
    if kind == "standardize":
        return None
    if kind == "whiten":
        return FeatureWhitener(feats)
    from privacysplit.fidelity import ATTACK_INPUTS

    raise ValueError(f"unknown attack input {kind!r}; valid: {', '.join(ATTACK_INPUTS)}")


def read_as(kind: str, feats: torch.Tensor, feats_val: torch.Tensor
            ) -> tuple[nn.Module | None, torch.Tensor, torch.Tensor]:
    """An attacker's auxiliary and held-out features as it reads them on input ``kind``, with
    the transform (:func:`attack_transform`, fitted on ``feats``) it reads them through."""
    transform = attack_transform(kind, feats)
    if transform is None:
        return None, feats, feats_val
    return transform, transform(feats), transform(feats_val)
