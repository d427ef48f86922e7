"""SSIM implementations agree; MSE normalisation and chance level behave at their edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privacysplit.attacks.metrics import (
    chance_level,
    mean_baseline_mse,
    normalized_privacy_mse,
    ssim_loss,
    ssim_measure,
    ssim_msssim,
    ssim_skimage,
    ssim_torch,
    ssim_window,
)
from privacysplit.data import load_dataset


def _pairs(channels: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(channels * 100 + size)
    target = torch.rand(6, channels, size, size, generator=g)
    # a range of similarities: from the image itself to pure noise
    mix = torch.linspace(0, 1, 6).view(-1, 1, 1, 1)
    recon = ((1 - mix) * target + mix * torch.rand(target.shape, generator=g)).clamp(0, 1)
    return recon, target


@pytest.mark.parametrize("channels", [1, 3])
def test_fast_ssim_matches_pytorch_msssim_and_skimage(channels):
    recon, target = _pairs(channels)
    ours = ssim_torch(recon, target, reduce=False)
    reference = ssim_msssim(recon, target)
    measured = torch.from_numpy(ssim_skimage(recon, target)).float()
    assert torch.allclose(ours, reference, atol=1e-5)
    assert torch.allclose(ours, measured, atol=1e-4)
    assert float(ours[0]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_measured_ssim_is_skimage_to_float64_precision(channels):
    # what every evaluation reports: the batched torch SSIM must be scikit-image's number
    recon, target = _pairs(channels)
    recon = recon * 1.2 - 0.1  # out of range: both clip the reconstruction to [0, 1]
    measured = ssim_measure(recon, target)
    reference = ssim_skimage(recon, target)
    assert measured.shape == (6,)
    np.testing.assert_allclose(measured, reference, rtol=0, atol=1e-9)
    x = load_dataset("mnist").val.x[:64]
    recon = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    np.testing.assert_allclose(ssim_measure(recon, x, batch_size=16), ssim_skimage(recon, x), rtol=0, atol=1e-9)


def test_ssim_agreement_on_real_digits():
    x = load_dataset("mnist").val.x[:32]
    recon = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    ours = ssim_torch(recon, x, reduce=False)
    measured = torch.from_numpy(ssim_skimage(recon, x)).float()
    assert torch.allclose(ours, ssim_msssim(recon, x), atol=1e-5)
    assert torch.allclose(ours, measured, atol=1e-4)


def test_images_smaller_than_the_window_are_refused():
    assert ssim_window(32, 32) == 11
    with pytest.raises(ValueError, match="11x11"):
        ssim_torch(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))


def test_ssim_loss_is_differentiable_and_rejects_flat_inputs():
    recon, target = _pairs(1)
    recon.requires_grad_(True)
    ssim_loss(recon, target).backward()
    assert recon.grad is not None and torch.isfinite(recon.grad).all()
    with pytest.raises(ValueError, match="N x C x H x W"):
        ssim_torch(torch.rand(4, 10), torch.rand(4, 10))


def test_normalized_mse_edges():
    x = torch.rand(50, 1, 8, 8)
    mse_mean = mean_baseline_mse(x, x)
    assert normalized_privacy_mse(0.0, mse_mean) == 1.0
    assert normalized_privacy_mse(mse_mean, mse_mean) == 0.0
    assert normalized_privacy_mse(2 * mse_mean, mse_mean) == 0.0
    assert normalized_privacy_mse(0.5 * mse_mean, mse_mean) == pytest.approx(0.5)


def test_chance_level_is_the_most_frequent_value():
    assert chance_level(torch.tensor([0, 0, 1, 2])) == 0.5
    assert np.isclose(chance_level(torch.arange(10)), 0.1)
