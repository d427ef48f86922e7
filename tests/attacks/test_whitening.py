"""The whitened attacker input: the transform itself, and that it finds what standardising misses."""

from __future__ import annotations

import pytest
import torch

from privacysplit.attacks import invert
from privacysplit.attacks.whitening import RIDGE, FeatureWhitener, attack_transform, input_kinds


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1).reshape(-1, x.shape[1]).double()


def _mixed(n: int, channels: int, *spatial: int, spread: float = 10.0) -> torch.Tensor:
    """Features whose channels mix directions of variances ``1 .. spread**2`` (and an offset)."""
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=g, dtype=torch.float64))
    z = torch.randn(n, channels, *spatial, generator=g, dtype=torch.float64)
    z = z * torch.logspace(0, 1, channels, base=spread, dtype=torch.float64).view(1, channels, *([1] * len(spatial)))
    return (torch.einsum("ij,nj...->ni...", q, z) + 3.0).float()


@pytest.mark.parametrize("shape", [(16, 5, 5), (40,)])
def test_whitened_features_have_zero_mean_and_identity_covariance(shape):
    feats = _mixed(3000, *shape)
    out = FeatureWhitener(feats)(feats)
    assert out.shape == feats.shape
    rows = _rows(out)
    assert rows.mean(0).abs().max() < 1e-4
    # the ridge shrinks the smallest direction (variance 1 of a mean of ~21) by ~2 %, nothing more
    cov = torch.cov(rows.T)
    assert (cov - torch.eye(shape[0], dtype=torch.float64)).abs().max() < 0.03
    assert (torch.cov(_rows(feats).T) - torch.eye(shape[0], dtype=torch.float64)).abs().max() > 10


def test_zca_leaves_white_features_where_they_are():
    """ZCA, not PCA: already white features come back (centred) almost unchanged, so each
    channel keeps its place and a decoder's spatial structure still applies."""
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(4000, 8, 3, 3, generator=g)
    out = FeatureWhitener(feats)(feats)
    assert (out - (feats - feats.mean((0, 2, 3), keepdim=True))).abs().max() < 0.1


def test_near_constant_directions_are_not_blown_up():
    """More channels than samples: the ridge keeps the empty directions near zero."""
    feats = torch.randn(20, 50, generator=torch.Generator().manual_seed(2))
    out = FeatureWhitener(feats)(feats)
    assert torch.isfinite(out).all()
    assert out.abs().max() < 1 / RIDGE ** 0.5


def test_attack_transform_names_its_options():
    feats = torch.randn(64, 4)
    assert attack_transform("standardize", feats) is None
    assert isinstance(attack_transform("whiten", feats), FeatureWhitener)
    with pytest.raises(ValueError, match="valid: standardize, whiten"):
        attack_transform("pca", feats)
    with pytest.raises(ValueError, match="valid: standardize, whiten"):
        attack_transform("both", feats)  # a choice of inputs, not one


def test_auto_reads_noise_free_features_whitened_and_noisy_ones_standardised():
    """``attack_input="auto"`` (``cpu``'s since evaluation version 6) is one attacker, on the input
    measured stronger for the release: whitened without ``feature_noise``, standardised with it."""
    assert input_kinds("auto") == ("whiten",) and input_kinds("auto", noisy=True) == ("standardize",)
    assert input_kinds("both", noisy=True) == ("standardize", "whiten")
    assert input_kinds("whiten", noisy=True) == ("whiten",)


def test_whitening_recovers_detail_hidden_in_small_directions(mnist):
    """The input's detail sits in directions of ~1/2000 the variance of the input-free noise
    that every channel mixes it with (as the dCor game leaves it): a decoder behind whitening
    reads it back, the same decoder behind its per-channel standardiser, with the same steps,
    gets no further than the mean image (measured: SSIM 0.636 against 0.294)."""
    g = torch.Generator().manual_seed(3)
    x, xv = mnist.train.x[:1500], mnist.val.x[:300]
    proj = torch.randn(x[0].numel(), 48, generator=g) / x[0].numel() ** 0.5
    q, _ = torch.linalg.qr(torch.randn(96, 96, generator=g))

    def encode(images: torch.Tensor) -> torch.Tensor:
        detail = images.flatten(1) @ proj * 0.1  # variance ~5e-4 per direction ...
        loud = torch.randn(len(images), 48, generator=g)  # ... beside unit-variance noise
        return torch.cat([detail, loud], 1) @ q  # mixed into every channel

    f, fv = encode(x), encode(xv)
    whitener = FeatureWhitener(f)
    scores = {}
    for name, (ff, ffv) in {"standardized": (f, fv), "whitened": (whitener(f), whitener(fv))}.items():
        res = invert(None, ff, x, ffv, xv, metric="ssim", epochs=3, batch_size=64, lr=3e-3, seed=0,
                     decoders=("generic",), selection="full")
        scores[name] = res.ssim
    assert scores["whitened"] > scores["standardized"] + 0.2, scores


def test_known_noise_keeps_each_direction_by_its_share_of_signal():
    """``noise_var``: a direction of signal variance ``s`` under the release's noise of
    variance ``n`` comes out at variance ``s / (s + n)`` (the Wiener gain on top of whitening),
    so directions of pure noise are dropped instead of blown up to unit variance; without it
    every direction, noise or not, comes out at unit variance."""
    g = torch.Generator().manual_seed(4)
    signal_var, noise_var = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64), 0.25
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    z = torch.randn(20000, 3, generator=g, dtype=torch.float64) * signal_var.sqrt()
    feats = (z @ q[:, :3].T + noise_var ** 0.5 * torch.randn(20000, 8, generator=g, dtype=torch.float64)).float()

    def spectrum(whitener: FeatureWhitener) -> torch.Tensor:
        return torch.linalg.eigvalsh(torch.cov(_rows(whitener(feats)).T)).flip(0)

    expected = torch.cat([signal_var / (signal_var + noise_var), torch.zeros(5, dtype=torch.float64)])
    assert (spectrum(FeatureWhitener(feats, noise_var=noise_var)) - expected).abs().max() < 0.05
    assert (spectrum(FeatureWhitener(feats)) - 1).abs().max() < 0.05
    assert torch.equal(FeatureWhitener(feats, noise_var=0.0).matrix, FeatureWhitener(feats).matrix)


def test_a_prior_refuses_an_input_it_cannot_read(mnist):
    """``"both"`` is two attackers, each with its own prior: asking for one prior under it (or a
    typo) is an error, not the standardised prior's cached file returned under another name."""
    from privacysplit.attacks.prior import prior_key
    from privacysplit.models import build

    net = build("lenet")
    with pytest.raises(ValueError, match="a prior reads one input: standardize, whiten"):
        prior_key(net, mnist, metric="ssim", epochs=1, batch_size=64, lr=1e-3, seed=0, attack_input="both")
