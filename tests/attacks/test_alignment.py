"""Aligning released features onto the base network's before the prior reads them."""

from __future__ import annotations

import copy

import pytest
import torch

from privacysplit.attacks import alignment, invert
from privacysplit.attacks.alignment import ConvAligner, FeatureAligner, fit_aligner
from privacysplit.attacks.fitting import release
from privacysplit.attacks.inversion import reconstruct
from privacysplit.attacks.metrics import ssim_torch
from privacysplit.attacks.prior import prior_state
from privacysplit.fidelity import get_fidelity
from privacysplit.training import pretrained_base


def test_the_aligner_recovers_an_affine_map_in_either_form():
    """More images than dimensions (the primal solve): a held-out affine map is recovered;
    more dimensions than images (the dual solve): the training rows are matched; the output
    takes the target's shape; images that do not pair up are refused."""
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(400, 3, 4, 4, generator=gen)  # 48 dimensions
    mix, shift = torch.randn(48, 20, generator=gen), torch.randn(20, generator=gen)
    dst = (src.flatten(1) @ mix + shift).view(400, 5, 4)
    aligner = FeatureAligner(src[:300], dst[:300], ridge=1e-6)
    held_out = aligner(src[300:])
    assert held_out.shape == (100, 5, 4)
    assert float((held_out - dst[300:]).pow(2).mean() / dst.var()) < 1e-4
    wide = torch.randn(40, 200, generator=gen)
    target = torch.randn(40, 7, generator=gen)
    exact = FeatureAligner(wide, target, ridge=1e-8)
    assert float((exact(wide) - target).pow(2).mean()) < 1e-4
    assert torch.allclose(exact.fitted_src, exact(wide), atol=1e-4)  # the solve's own reading of src
    assert torch.allclose(aligner.fitted_src, aligner(src[:300]), atol=1e-4)
    subset = FeatureAligner(wide, target, ridge=1e-8, max_rows=30)  # the dual on 30 of the 40 images
    assert torch.allclose(subset.fitted_src, subset(wide), atol=1e-4)
    assert subset.basis.shape == (30, 200)
    assert float((subset(wide) - target).pow(2).mean()) > 1e-3  # 10 images it never read
    assert float((FeatureAligner(wide, target)(wide) - target).pow(2).mean()) > 1e-4  # the ridge shrinks
    with pytest.raises(ValueError, match="same images"):
        FeatureAligner(src[:10], dst[:9])


def test_the_convolutional_aligner_recovers_a_local_map():
    """A release that is a 3x3 convolution (with bias) of the base map: the
    :class:`ConvAligner` recovers it on images it never read, including the zero-padded border;
    a map that needs a wider neighbourhood than its kernel is not recovered; maps of different
    spatial sizes are refused.  ``fit_aligner`` picks it only for ``"ridge_conv"`` above the
    dense cap."""
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(300, 4, 6, 6, generator=gen)
    conv = torch.nn.Conv2d(4, 5, 3, padding=1)
    with torch.no_grad():
        dst = conv(src)
    fitted = ConvAligner(src[:200], dst[:200], ridge=1e-7)
    assert fitted(src[200:]).shape == (100, 5, 6, 6)
    assert float((fitted(src[200:]) - dst[200:]).pow(2).mean() / dst.var()) < 1e-4
    assert torch.allclose(fitted.fitted_src, fitted(src[:200]), atol=1e-4)
    assert torch.allclose(fitted.conv.weight, conv.weight, atol=1e-3)
    few = ConvAligner(src[:200], dst[:200], ridge=1e-7, max_images=3)  # 108 rows for 37 unknowns per channel
    assert float((few(src[200:]) - dst[200:]).pow(2).mean() / dst.var()) < 1e-3
    with torch.no_grad():
        wide = torch.nn.Conv2d(4, 5, 5, padding=2)(src)
    assert float((ConvAligner(src[:200], wide[:200])(src[200:]) - wide[200:]).pow(2).mean() / wide.var()) > 0.05
    with pytest.raises(ValueError, match="one spatial size"):
        ConvAligner(src, dst[:, :, :4, :4])
    assert isinstance(fit_aligner(src, dst, "ridge"), FeatureAligner)  # 144 x 180 dimensions: dense
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alignment, "ALIGN_MAX_WEIGHTS", 100)
        assert fit_aligner(src, dst, "ridge") is None and fit_aligner(src, dst, "none") is None
        assert isinstance(fit_aligner(src, dst, "ridge_conv"), ConvAligner)
        assert fit_aligner(src.flatten(1), dst.flatten(1), "ridge_conv") is None  # flat: no convolution
    with pytest.raises(ValueError, match="ridge_conv"):
        fit_aligner(src, dst, "conv")


def test_the_prior_reads_mixed_features_through_the_aligner(mnist, cache_root, monkeypatch):
    """A release that mixes the base features linearly (what retraining partly does) leaves the
    prior as it is far from its own score; read through the aligner it comes back within 0.02
    of what it scores on the base features, and the winning decoder still reads the release.
    Above the size cap the prior reads the release directly."""
    lenet = pretrained_base("lenet", mnist, fidelity=get_fidelity("smoke"), cache=cache_root)[0]
    p = next(i for i, s in enumerate(lenet.layers) if s.type == "linear")
    enc = lenet.sub(0, p + 1)
    state = prior_state(enc, mnist, metric="ssim", epochs=4, batch_size=128, lr=3e-3, cache=False)
    x, xv = mnist.train.x[:1500], mnist.val.x[:300]
    base, base_val = release(enc, x, mnist.normalize), release(enc, xv, mnist.normalize)
    q, _ = torch.linalg.qr(torch.randn(base.shape[1], base.shape[1], generator=torch.Generator().manual_seed(1)))
    feats, feats_val = base @ q, base_val @ q
    common = dict(metric="ssim", epochs=1, batch_size=128, lr=3e-3, seed=0, prior=state, prior_epochs=0)
    own = invert(enc, base, x, base_val, xv, **common).scores["prior"]
    plain = invert(enc, feats, x, feats_val, xv, **common)
    aligned = invert(enc, feats, x, feats_val, xv, **common, align_to=base)
    assert own - plain.scores["prior"] > 0.1
    assert abs(aligned.scores["prior"] - own) < 0.02
    assert float(ssim_torch(reconstruct(aligned.decoder, feats_val), xv)) == pytest.approx(aligned.ssim, abs=1e-3)
    monkeypatch.setattr(alignment, "ALIGN_MAX_WEIGHTS", base.shape[1] ** 2 - 1)
    assert invert(enc, feats, x, feats_val, xv, **common, align_to=base).scores == plain.scores


def test_alignment_is_opt_in_and_enters_the_key_only_when_set():
    """``Fidelity.prior_align``: ``"none"`` (every preset) leaves every key written before the
    field; ``"ridge"`` is another evaluation under another key; a typo is refused by name."""
    cpu = get_fidelity("cpu")
    assert cpu.prior_align == "none" and "prior_align" not in cpu.to_dict()
    assert get_fidelity("cpu:prior_align=ridge").key() != cpu.key()
    assert get_fidelity("cpu:prior_align=ridge_conv").key() != get_fidelity("cpu:prior_align=ridge").key()
    with pytest.raises(ValueError, match="none, ridge, ridge_conv"):
        get_fidelity("cpu:prior_align=linear")


def test_an_evaluation_aligns_when_its_fidelity_says_so(mnist, cache_root, monkeypatch):
    """``prior_align="ridge"`` in an evaluation: the same retrained encoder (same accuracy), its
    prior as it is scoring better through the aligner than read directly, and never worse.  With
    the dense map over the cap, ``"ridge"`` reads the release as it is and ``"ridge_conv"``
    aligns with the convolutional map."""
    from privacysplit.attacks import evaluate_split
    from privacysplit.models import split

    lenet = pretrained_base("lenet", mnist, fidelity=get_fidelity("smoke"), cache=cache_root)[0]
    p = 3

    def run(spec: str) -> dict:
        enc, cloud = split(copy.deepcopy(lenet), p)
        return evaluate_split(enc, cloud, mnist, fidelity=get_fidelity(spec), threat="reactive", seed=0,
                              prior_encoder=lenet.sub(0, p + 1), prior_cache=False)

    spec = "smoke:prior_epochs=2:n_d=2:n_train=512"
    plain, aligned = run(spec), run(spec + ":prior_align=ridge")
    assert aligned["accuracy"] == plain["accuracy"]
    assert aligned["score_prior"] > plain["score_prior"]  # equal where the aligner is not used
    assert aligned["privacy_loss"] >= plain["privacy_loss"] - 0.01
    monkeypatch.setattr(alignment, "ALIGN_MAX_WEIGHTS", 1600 ** 2 - 1)  # LeNet's 16x10x10 at partition 3
    assert run(spec + ":prior_align=ridge")["score_prior"] == plain["score_prior"]
    conv = run(spec + ":prior_align=ridge_conv")
    assert conv["accuracy"] == plain["accuracy"] and conv["score_prior"] > plain["score_prior"]


def test_the_base_features_are_computed_once_per_encoder_images_and_input(mnist, cache_root):
    """Every plan at a partition maps onto the same base features: the second call returns the
    remembered tensor; other images, another input or other base weights compute anew."""
    from privacysplit.attacks.alignment import alignment_target

    lenet = pretrained_base("lenet", mnist, fidelity=get_fidelity("smoke"), cache=cache_root)[0]
    enc, x = lenet.sub(0, 4), mnist.train.x[:64]
    first = alignment_target(enc, x, mnist.normalize, "standardize")
    assert alignment_target(enc, x.clone(), mnist.normalize, "standardize") is first
    assert torch.equal(first, release(enc, x, mnist.normalize))
    assert alignment_target(enc, mnist.train.x[1:65], mnist.normalize, "standardize") is not first
    whitened = alignment_target(enc, x, mnist.normalize, "whiten")
    assert whitened is not first and not torch.equal(whitened, first)
    other = copy.deepcopy(enc)  # sub() shares the base network's modules
    with torch.no_grad():
        next(other.parameters()).add_(0.1)
    assert not torch.equal(alignment_target(other, x, mnist.normalize, "standardize"), first)
