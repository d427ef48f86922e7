"""Feature inversion (P0, P1): train decoders on released features, keep the best one.

The adversary is the paper's worst case: its auxiliary set is the training images and the
features the frozen encoder releases for them (computed once, so decoder epochs do not pay
for the encoder).  It trains every candidate decoder (:data:`~privacysplit.attacks.decoders.DECODERS`)
with the loss of the metric it attacks (MSE for P0, ``1 - SSIM`` for P1: on MNIST an
MSE-trained decoder loses ~0.13 SSIM to faint background errors and would flatter every
plan), and the privacy loss is the best that any of them achieves on held-out images.

Choosing the decoder cheaply (``selection="warmup"``, what evaluations use): every candidate
trains one epoch on the same batches, and only the one with the lowest training loss
finishes its N_d epochs; the cost is one decoder plus one epoch per extra candidate instead
of one decoder per candidate.  ``selection="full"`` finishes all of them and keeps the best
on held-out images (the reference attacker of ``benchmarks/attack_strength.py``, which
measures how much the shortcut costs).  Candidates are scored on held-out images with the
fast SSIM; the reported SSIM of the winner is scikit-image's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit.attacks.decoders import DECODERS, Decoder, build_decoder
from privacysplit.attacks.fitting import Fitter
from privacysplit.attacks.metrics import (
    mean_baseline_mse,
    mse,
    normalized_privacy_mse,
    ssim_loss,
    ssim_skimage,
    ssim_torch,
)
from privacysplit.models import Network

#: inversion metrics: P0 (MSE) and P1 (SSIM)
INVERSION_METRICS: tuple[str, ...] = ("mse", "ssim")
#: how the attack picks among candidate decoders
SELECTIONS: tuple[str, ...] = ("warmup", "full")


def reconstruction_loss(metric: str, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The loss an attacker of ``metric`` minimises (and the defender, proactively, maximises)."""
    if metric == "ssim":
        return ssim_loss(recon, target)
    if metric == "mse":
        return F.mse_loss(recon, target)
    raise ValueError(f"unknown inversion metric {metric!r}; valid: {', '.join(INVERSION_METRICS)}")


def decoder_fitter(
    decoder: nn.Module,
    feats: torch.Tensor,
    targets: torch.Tensor,
    *,
    metric: str,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> Fitter:
    """A :class:`~privacysplit.attacks.fitting.Fitter` that maps ``feats`` to ``targets``.

    A :class:`Decoder`'s parameter-free front is applied to ``feats`` once here.
    """
    prepared = decoder.prepare(feats) if isinstance(decoder, Decoder) else feats
    forward = decoder.head if isinstance(decoder, Decoder) else decoder
    decoder.train()

    def step(idx: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(metric, forward(prepared[idx]), targets[idx])

    return Fitter(decoder.parameters(), step, len(feats), epochs=epochs, batch_size=batch_size, lr=lr,
                  generator=generator)


def train_decoder(
    decoder: nn.Module,
    feats: torch.Tensor,
    targets: torch.Tensor,
    *,
    metric: str,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
) -> float:
    """Fit ``decoder`` to map ``feats`` to ``targets``; the last epoch's mean loss (NaN if diverged)."""
    loss = decoder_fitter(decoder, feats, targets, metric=metric, epochs=epochs, batch_size=batch_size,
                          lr=lr, generator=generator).run()
    decoder.eval()
    return loss


@torch.no_grad()
def reconstruct(decoder: nn.Module, feats: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Reconstructions of ``feats`` in eval mode."""
    decoder.eval()
    return torch.cat([decoder(feats[i : i + batch_size]) for i in range(0, len(feats), batch_size)])


@dataclass
class InversionResult:
    """What an inversion attack measured on held-out inputs.

    Attributes:
        privacy_loss: the reward's value: SSIM clipped at 0 (P1) or ``1 - MSE/MSE_mean``
            clipped to ``[0, 1]`` (P0).
        ssim: mean SSIM (skimage, Wang et al. settings); NaN for non-image inputs.
        mse: mean squared error per element.
        mse_norm: ``MSE / MSE_mean``.
        mse_mean: the error of always answering the mean training input.
        ssim_mean: SSIM of always answering the mean training image (the collapse level).
        attacker: name of the decoder that won.
        scores: each fully trained candidate's score on held-out inputs (SSIM, or -MSE).
        warmup: each candidate's training loss after the warm-up epoch (when selecting).
        decoder: the winning decoder (features -> reconstructions in ``[0, 1]``).
        seconds: wall time of the attack (decoder training and measurement).
        diverged: a decoder's loss went non-finite.
    """

    privacy_loss: float
    ssim: float
    mse: float
    mse_norm: float
    mse_mean: float
    ssim_mean: float
    attacker: str
    scores: dict[str, float] = field(default_factory=dict)
    warmup: dict[str, float] = field(default_factory=dict)
    decoder: Decoder | None = None
    seconds: float = 0.0
    diverged: bool = False

    @property
    def inv_mse(self) -> float:
        """The paper's P0 = 1/MSE (unbounded; reported, not rewarded)."""
        return 1.0 / max(self.mse, 1e-12)


def invert(
    encoder: Network,
    feats_train: torch.Tensor,
    x_train: torch.Tensor,
    feats_val: torch.Tensor,
    x_val: torch.Tensor,
    *,
    metric: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    decoders: Sequence[str] = DECODERS,
    generic_options: dict | None = None,
    selection: str = "warmup",
) -> InversionResult:
    """Train each decoder in ``decoders`` against fixed features and measure the best.

    Args:
        encoder: the frozen encoder (read for the mirror's structure only).
        feats_train, x_train: the auxiliary set: released features and the inputs in ``[0, 1]``.
        feats_val, x_val: held-out features and inputs for measurement.
        metric: ``"ssim"`` (P1) or ``"mse"`` (P0): the training loss and the selection score.
        epochs, batch_size, lr: decoder training (N_d, batch size, decoder learning rate).
        seed: seeds decoder initialisation and batch order.
        decoders: candidate decoder names.
        generic_options: keyword arguments of the generic decoder (width, depth, ...).
        selection: ``"warmup"``: train every candidate one epoch and finish only the one
            with the lowest training loss (the cost of one decoder plus one epoch per
            extra candidate); ``"full"``: finish all and keep the best on held-out inputs
            (the reference attacker).
    """
    if metric not in INVERSION_METRICS:
        raise ValueError(f"unknown inversion metric {metric!r}; valid: {', '.join(INVERSION_METRICS)}")
    is_image = x_train.dim() == 4
    if metric == "ssim" and not is_image:
        raise ValueError("SSIM needs image inputs; for tabular data use privacy='mse' (P0)")
    if not decoders:
        raise ValueError(f"no decoder to attack with; valid decoders: {', '.join(DECODERS)}")
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; valid: {', '.join(SELECTIONS)}")
    t0 = time.perf_counter()
    candidates: dict[str, tuple[Decoder, Fitter]] = {}
    for k, name in enumerate(decoders):
        torch.manual_seed(seed + 7919 * (k + 1))
        options = (generic_options or {}) if name == "generic" else {}
        decoder = build_decoder(name, encoder, feats_train, x_train, **options).to(feats_train.device)
        gen = torch.Generator().manual_seed(seed + 104729 * (k + 1))
        candidates[name] = (decoder, decoder_fitter(decoder, feats_train, x_train, metric=metric, epochs=epochs,
                                                    batch_size=batch_size, lr=lr, generator=gen))
    diverged = False
    warmup: dict[str, float] = {}
    if selection == "warmup" and len(candidates) > 1 and epochs > 1:
        # successive halving in one step: one epoch each, finish only the lowest training loss
        for name, (_, fitter) in candidates.items():
            warmup[name] = fitter.run(1)
        finite = {n: v for n, v in warmup.items() if v == v}
        diverged = len(finite) < len(warmup)
        keep = min(finite, key=finite.get) if finite else None
        candidates = {n: c for n, c in candidates.items() if n == keep}
    best: tuple[float, str, Decoder, torch.Tensor] | None = None
    scores: dict[str, float] = {}
    for name, (decoder, fitter) in candidates.items():
        loss = fitter.run()
        decoder.eval()
        if loss != loss:  # NaN: this decoder diverged
            diverged = True
            scores[name] = float("nan")
            continue
        recon = reconstruct(decoder, feats_val)
        score = float(ssim_torch(recon, x_val)) if metric == "ssim" else -mse(recon, x_val)
        scores[name] = score
        if best is None or score > best[0]:
            best = (score, name, decoder, recon)
    mse_mean = mean_baseline_mse(x_train, x_val)
    mean_image = x_train.float().mean(0, keepdim=True).expand_as(x_val)
    ssim_mean = float(ssim_torch(mean_image.contiguous(), x_val)) if is_image else float("nan")
    if best is None:
        return InversionResult(1.0, 1.0 if is_image else float("nan"), 0.0, 0.0, mse_mean, ssim_mean,
                               "none", scores, warmup, None, time.perf_counter() - t0, True)
    _, name, decoder, recon = best
    err = mse(recon, x_val)
    ssim_value = float(ssim_skimage(recon, x_val).mean()) if is_image else float("nan")
    privacy = max(ssim_value, 0.0) if metric == "ssim" else normalized_privacy_mse(err, mse_mean)
    return InversionResult(
        privacy_loss=privacy,
        ssim=ssim_value,
        mse=err,
        mse_norm=err / mse_mean if mse_mean > 0 else 0.0,
        mse_mean=mse_mean,
        ssim_mean=ssim_mean,
        attacker=name,
        scores=scores,
        warmup=warmup,
        decoder=decoder,
        seconds=time.perf_counter() - t0,
        diverged=diverged,
    )
