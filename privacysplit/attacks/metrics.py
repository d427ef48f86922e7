"""Privacy metrics of reconstructions: SSIM (train and measure), MSE and their normalisations.

Two SSIM implementations, on purpose:

* :func:`ssim_loss` trains decoders (the objective of the paper's Eq. 4) with
  :func:`ssim_torch`: exactly pytorch-msssim's SSIM (Gaussian window 11, sigma 1.5,
  ``data_range=1``; :func:`ssim_msssim` calls the library and a test pins agreement to
  1e-5), computed ~9x faster on a CPU.
* :func:`ssim_skimage` is scikit-image's reference ``structural_similarity`` with Wang et
  al.'s settings (Gaussian weights, sigma 1.5, population covariance, explicit data
  range): the number other papers report.
* :func:`ssim_measure` *measures* SSIM on held-out images: :func:`ssim_torch` in float64
  over the whole batch at once.  It is the same statistic as scikit-image's to ~1e-15
  (a test pins agreement with :func:`ssim_skimage` to 1e-9), measured ~8x faster: the
  per-image scikit-image loop cost ~0.2-0.5 s of every evaluation on 500 images.

All use the same 11-tap Gaussian and average only the "valid" window positions, so they
agree to float precision; tests pin that.  Images smaller than 11x11 are refused.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from pytorch_msssim import ssim as _torch_ssim
from skimage.metrics import structural_similarity

#: Wang et al.'s Gaussian window: 11 taps, sigma 1.5 (skimage: truncate 3.5 -> radius 5).
SSIM_SIGMA = 1.5
SSIM_WIN = 11


def ssim_window(height: int, width: int) -> int:
    """The SSIM window (11) after checking that the image fits it.

    scikit-image derives its Gaussian window from sigma (always 11 taps at sigma 1.5), so
    a smaller window for small images could not match the reference; such images are
    refused instead of measured differently.
    """
    if min(height, width) < SSIM_WIN:
        raise ValueError(
            f"SSIM with Wang et al.'s 11x11 Gaussian window needs images of at least 11x11 pixels, "
            f"got {height}x{width}; use privacy='mse' for smaller inputs"
        )
    return SSIM_WIN


def _gaussian(win: int, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """pytorch-msssim's and skimage's 1-D Gaussian window (normalised, centred)."""
    coords = torch.arange(win, dtype=torch.float64) - win // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


@lru_cache(maxsize=32)
def _band(size: int, win: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(size - win + 1) x size`` matrix whose rows are the shifted window ("valid" filter)."""
    g = _gaussian(win)
    band = torch.zeros(size - win + 1, size, dtype=torch.float64)
    for i in range(size - win + 1):
        band[i, i : i + win] = g
    return band.to(device=device, dtype=dtype)


def ssim_torch(x: torch.Tensor, y: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Differentiable SSIM of image batches ``N x C x H x W`` in ``[0, 1]``.

    The same statistic as pytorch-msssim's ``ssim(data_range=1, win_size=11,
    win_sigma=1.5)`` (a test pins agreement to 1e-6), computed with the separable Gaussian
    as two banded matrix products over the five stacked moment maps instead of ten grouped
    1-D convolutions: measured on one CPU thread, forward+backward of a 64-image 32x32
    batch takes 1.5 ms instead of 14 ms, which was more than the decoder itself.

    Returns:
        the mean SSIM (``reduce``) or one value per image.
    """
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError(
            f"SSIM needs two image batches of one shape N x C x H x W, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    h, w = x.shape[-2:]
    win = ssim_window(h, w)
    gh = _band(h, win, x.device, x.dtype)
    gw = _band(w, win, x.device, x.dtype)
    c = x.shape[1]
    moments = gh @ torch.cat([x, y, x * x, y * y, x * y], 1) @ gw.T
    mx, my, xx, yy, xy = moments.split(c, 1)
    c1, c2 = 0.01**2, 0.03**2
    mx2, my2, mxy = mx * mx, my * my, mx * my
    cs = (2 * (xy - mxy) + c2) / ((xx - mx2) + (yy - my2) + c2)
    lum = (2 * mxy + c1) / (mx2 + my2 + c1)
    per_image = (lum * cs).flatten(1).mean(1)
    return per_image.mean() if reduce else per_image


def ssim_msssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """pytorch-msssim's SSIM with the same settings (the well-kept reference for tests)."""
    win = ssim_window(x.shape[-2], x.shape[-1])
    return _torch_ssim(x, y, data_range=1.0, size_average=False, win_size=win, win_sigma=SSIM_SIGMA)


def ssim_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM``: what a P1 attacker minimises (Eq. 4)."""
    return 1.0 - ssim_torch(recon, target)


def _check_image_batches(recon: torch.Tensor, target: torch.Tensor) -> None:
    """Both per-image SSIM paths take two image batches of one shape ``N x C x H x W``."""
    if recon.shape != target.shape or recon.dim() != 4:
        raise ValueError(
            f"SSIM needs two image batches of one shape N x C x H x W, got "
            f"{tuple(recon.shape)} and {tuple(target.shape)}"
        )


def ssim_skimage(recon: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Per-image SSIM with scikit-image's reference implementation (Wang et al. settings).

    Args:
        recon, target: image batches ``N x C x H x W`` with values in ``[0, 1]``.

    Returns:
        an array of ``N`` SSIM values.
    """
    _check_image_batches(recon, target)
    r = recon.detach().cpu().double().clamp(0, 1).numpy()
    t = target.detach().cpu().double().numpy()
    win = ssim_window(r.shape[-2], r.shape[-1])
    out = np.empty(len(r))
    for i in range(len(r)):
        multichannel = r.shape[1] > 1
        a = np.moveaxis(r[i], 0, -1) if multichannel else r[i, 0]
        b = np.moveaxis(t[i], 0, -1) if multichannel else t[i, 0]
        out[i] = structural_similarity(
            b,
            a,
            win_size=win,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1 if multichannel else None,
        )
    return out


@torch.no_grad()
def ssim_measure(recon: torch.Tensor, target: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Per-image SSIM for reporting: :func:`ssim_torch` in float64, ``recon`` clipped to
    ``[0, 1]`` like :func:`ssim_skimage` (the same numbers to ~1e-15, a test pins it).

    Args:
        recon, target: image batches ``N x C x H x W`` with values in ``[0, 1]``.

    Returns:
        an array of ``N`` SSIM values.
    """
    _check_image_batches(recon, target)
    r = recon.detach().cpu().double().clamp(0, 1)
    t = target.detach().cpu().double()
    parts = [ssim_torch(r[i : i + batch_size], t[i : i + batch_size], reduce=False)
             for i in range(0, len(r), batch_size)]
    return torch.cat(parts).numpy() if parts else np.empty(0)


def mse(recon: torch.Tensor, target: torch.Tensor) -> float:
    """Mean squared error per element (images and feature vectors alike)."""
    return float((recon.detach().float() - target.detach().float()).pow(2).mean())


def mean_baseline_mse(train_x: torch.Tensor, target: torch.Tensor) -> float:
    """MSE_mean: the error of always answering the mean training input.

    The normaliser of P0: an attacker that learned nothing about the individual input can
    still answer the mean, so only error below this level is leakage.
    """
    mean = train_x.float().mean(0, keepdim=True).to(target.device)
    return mse(mean.expand_as(target), target)


def normalized_privacy_mse(mse_value: float, mse_mean: float) -> float:
    """P0 for the reward: ``1 - MSE / MSE_mean`` clipped to ``[0, 1]``.

    The paper's ``1/MSE`` is unbounded, so the reward would be dominated by its scale;
    this form is 0 when the attacker does no better than the mean input and 1 for a
    perfect reconstruction.
    """
    if not np.isfinite(mse_value) or mse_mean <= 0:
        return 0.0 if mse_mean <= 0 else 1.0
    return float(np.clip(1.0 - mse_value / mse_mean, 0.0, 1.0))


def chance_level(labels: torch.Tensor) -> float:
    """Accuracy of always guessing the most frequent value: the floor of property inference."""
    if labels.numel() == 0:
        return 0.0
    return float(torch.bincount(labels.cpu()).max()) / labels.numel()
