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

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit.attacks.alignment import fit_aligner
from privacysplit.attacks.alignment import fits as alignment_fits
from privacysplit.attacks.decoders import DECODERS, Decoder, build_decoder, warm_decoder
from privacysplit.attacks.fitting import Fitter
from privacysplit.attacks.metrics import (
    mean_baseline_mse,
    mse,
    normalized_privacy_mse,
    ssim_loss,
    ssim_measure,
    ssim_torch,
)
from privacysplit.fidelity import SHIFT_ATTACKS, SHIFT_TOLERANCE
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
        timings: seconds spent choosing (warm-up epoch, scoring the prior), training, and
            measuring (``select_seconds``, ``fit_seconds``, ``measure_seconds``).
        fallback: the prior no longer fitted the features and scratch decoders were
            trained as well.
        restarts: warm restarts of ``prior_long`` that ran (see :func:`invert`).
        steps: optimiser steps the attack took, every candidate and round together (the
            attacker's compute: ``benchmarks/env_timing.py`` multiplies it by one step's FLOPs).
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
    timings: dict[str, float] = field(default_factory=dict)
    fallback: bool = False
    restarts: int = 0
    steps: int = 0

    @property
    def inv_mse(self) -> float:
        """The paper's P0 = 1/MSE (unbounded; reported, not rewarded)."""
        return 1.0 / max(self.mse, 1e-12)


def _score(metric: str, recon: torch.Tensor, x_val: torch.Tensor) -> float:
    """Held-out score of a reconstruction (higher is better): SSIM, or -MSE."""
    return float(ssim_torch(recon, x_val)) if metric == "ssim" else -mse(recon, x_val)


def _finish(decoder: Decoder, fitter: Fitter, feats_val: torch.Tensor, x_val: torch.Tensor, metric: str,
            track_best: bool) -> tuple[float, torch.Tensor | None, dict | None, bool]:
    """Train the remaining epochs; the best held-out score, its reconstruction and weights.

    With ``track_best`` the decoder is scored on held-out inputs after every epoch and the
    best epoch is kept -- the paper records "the best performance achieved by the decoder";
    otherwise only the last epoch is scored.  Returns NaN and ``None`` on divergence.
    """
    best: tuple[float, torch.Tensor | None, dict | None] = (float("-inf"), None, None)
    while fitter.done < fitter.epochs:
        loss = fitter.run(1 if track_best else None)
        if loss != loss:
            return float("nan"), None, None, True
        if track_best or fitter.done >= fitter.epochs:
            recon = reconstruct(decoder, feats_val)
            score = _score(metric, recon, x_val)
            if score > best[0]:
                state = copy.deepcopy(decoder.state_dict()) if track_best else None
                best = (score, recon, state)
            decoder.train()
    if best[1] is None:  # nothing left to train (e.g. 0 epochs): score as it stands
        recon = reconstruct(decoder, feats_val)
        best = (_score(metric, recon, x_val), recon, None)
    if best[2] is not None:
        decoder.load_state_dict(best[2])
    decoder.eval()
    return best[0], best[1], best[2], False


def _aligned(prior: dict[str, torch.Tensor], warm: Decoder | None, feats_train: torch.Tensor,
             feats_val: torch.Tensor, align_to: torch.Tensor, x_train: torch.Tensor, x_val: torch.Tensor, *,
             metric: str, seed: int, prior_decoder: str, encoder: Network, generic_options: dict | None,
             align: str) -> tuple[nn.Module | None, torch.Tensor, torch.Tensor, Decoder | None]:
    """The prior reading the released features through a ridge map (``align``) onto the base
    features, or as it was (no aligner) where that scores no better as it is on the held-out
    images: ``(aligner, prior's training features, prior's held-out features, warm decoder)``."""
    aligner = fit_aligner(feats_train, align_to, align).to(feats_train.device)
    a_train, aligner.fitted_src = aligner.fitted_src, None
    with torch.no_grad():
        a_val = aligner(feats_val)
    torch.manual_seed(seed + 7)
    aligned = warm_decoder(prior, a_train, x_train, prior_decoder, encoder, **(generic_options or {}))
    if aligned is None or (warm is not None and _score(metric, reconstruct(aligned, a_val), x_val)
                           <= _score(metric, reconstruct(warm, feats_val), x_val)):
        return None, feats_train, feats_val, warm
    return aligner, a_train, a_val, aligned


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
    prior: dict[str, torch.Tensor] | None = None,
    prior_decoder: str = "generic",
    prior_epochs: int | None = None,
    prior_lr: float | None = None,
    prior_score: float | None = None,
    shift_tolerance: float = SHIFT_TOLERANCE,
    shift_attack: str = "scratch",
    restarts: int = 0,
    restart_gain: float = 0.01,
    align_to: torch.Tensor | None = None,
    align: str = "ridge",
) -> InversionResult:
    """Train candidate decoders against fixed features and measure the best.

    Args:
        encoder: the frozen encoder (read for the mirror's structure only).
        feats_train, x_train: the auxiliary set: released features and the inputs in ``[0, 1]``.
        feats_val, x_val: held-out features and inputs for measurement.
        metric: ``"ssim"`` (P1) or ``"mse"`` (P0): the training loss and the selection score.
        epochs, batch_size, lr: decoder training (N_d, batch size, decoder learning rate).
        seed: seeds decoder initialisation and batch order.
        decoders: candidate decoder names trained from scratch.
        generic_options: keyword arguments of the generic decoder (width, depth, ...), the
            scratch one's and a generic prior's (which was built with them).
        selection: ``"warmup"`` (what evaluations use): with a ``prior`` that fits, the
            prior as it is (candidate ``prior``) and fine-tuned for ``prior_epochs``
            epochs keeping the best held-out epoch (candidate ``prior_tuned``); no scratch
            decoder is trained.  Without a prior: train every scratch candidate one epoch
            and finish only the one with the lowest training loss.  ``"full"`` (the
            reference attacker): every scratch candidate *and* the prior candidates finish
            all their epochs, the best held-out epoch of each is kept, and the best of all
            wins.
        prior: a prior decoder's weights (:func:`privacysplit.attacks.prior.prior_state`),
            trained on the base network's features at the same partition; ignored when the
            feature shape does not fit it.
        prior_decoder: the decoder the prior is (``Fidelity.prior_decoder``); a ``"mirror"``
            prior is ignored as well when the encoder's mirror has other layer shapes.
        prior_epochs: fine-tuning epochs of the prior (default ``epochs``).
        prior_score: the prior's own held-out score on the base network's features
            (:func:`privacysplit.attacks.prior.prior_score`).  When the fine-tuned prior
            lands more than ``shift_tolerance`` below it (SSIM, or ``MSE / MSE_mean`` for
            P0), the features moved away from what the prior knows -- a proactive encoder, a
            heavy compression -- and the scratch candidates are trained as well (warm-up
            selection), so a prior that no longer fits never makes a plan look private.
            Measured: against a proactive LeNet encoder at partition 3 the fine-tuned prior
            reached SSIM 0.84 and a scratch decoder 0.94.
        prior_lr: fine-tuning learning rate (default ``lr / 3``: measured on LeNet/mnist,
            the full rate partly undoes what the prior knows in the first steps).
        shift_attack: what ``"warmup"`` selection does when the fine-tuned prior no longer
            fits (see ``prior_score``): ``"scratch"`` trains the scratch candidates as well
            (warm-up selection among them); ``"prior"`` keeps training the fine-tuned prior
            at the full rate ``lr`` on a fresh cosine schedule of ``epochs - prior_epochs``
            epochs (candidate ``prior_long``; best held-out epoch).  Why ``"prior"``: a
            decoder that inverts the base features is a better start than a random one even
            for features that moved.  Measured at ``cpu`` fidelity on LeNet/mnist (one
            thread, the same released features attacked both ways), it matched or beat the
            scratch winner on all four shifted encoders tried -- a heavily compressed plan
            (SSIM 0.483 vs 0.472), an untrainable one (0.294 vs 0.293, where the mirror
            won), proactive partitions 3 and 6 (0.818 vs 0.784, 0.470 vs 0.463) -- in 3.8-4.4
            s of CPU against 4.9-5.8 s, because no warm-up epoch is spent on candidates that
            lose.
        restarts: with ``shift_attack="prior"``, up to this many more rounds of
            ``prior_long`` training, each a fresh cosine schedule from its best state (warm
            restarts, Loshchilov & Hutter's SGDR), stopping at the first round that gains
            less than ``restart_gain`` (SSIM, or ``MSE / MSE_mean`` for P0).  Why: against a
            proactive encoder the attacker is short of steps, not of capacity -- measured on
            LeNet partition 3 (lambda 16, ``cpu`` fidelity) the rounds took SSIM 0.818 ->
            0.861 -> 0.882 -> 0.893 -> 0.900 (a 24-epoch reference on twice the images:
            0.930), while on heavily compressed reactive plans a round gained under 0.01.
        align_to: the base network's features of ``x_train``, read as the prior reads them
            (``Fidelity.prior_align="ridge"``).  The prior then reads the released features
            through a closed-form ridge map onto them
            (:class:`~privacysplit.attacks.alignment.FeatureAligner`, fitted on the auxiliary
            set) wherever that scores better as it is than reading them directly; the winning
            decoder keeps the map in front, so it still reads the released features.  Maps
            above :data:`~privacysplit.attacks.alignment.ALIGN_MAX_WEIGHTS` are read directly,
            unless ``align="ridge_conv"``, which maps them with a convolution
            (:class:`~privacysplit.attacks.alignment.ConvAligner`).
        align: which aligner (``Fidelity.prior_align``: :data:`~privacysplit.fidelity.PRIOR_ALIGNS`).
    """
    if metric not in INVERSION_METRICS:
        raise ValueError(f"unknown inversion metric {metric!r}; valid: {', '.join(INVERSION_METRICS)}")
    is_image = x_train.dim() == 4
    if metric == "ssim" and not is_image:
        raise ValueError("SSIM needs image inputs; for tabular data use privacy='mse' (P0)")
    if selection not in SELECTIONS:
        raise ValueError(f"unknown selection {selection!r}; valid: {', '.join(SELECTIONS)}")
    if shift_attack not in SHIFT_ATTACKS:
        raise ValueError(f"unknown shift_attack {shift_attack!r}; valid: {', '.join(SHIFT_ATTACKS)}")
    for name in decoders:
        if name not in DECODERS:
            raise ValueError(f"unknown decoder {name!r}; valid decoders: {', '.join(DECODERS)}")
    t0 = time.perf_counter()
    timings = {"select_seconds": 0.0, "fit_seconds": 0.0, "measure_seconds": 0.0}
    warm, aligner, prior_train, prior_val = None, None, feats_train, feats_val
    if prior is not None:
        torch.manual_seed(seed + 7)
        warm = warm_decoder(prior, feats_train, x_train, prior_decoder, encoder, **(generic_options or {}))
        if align_to is not None and alignment_fits(feats_train, align_to, align):
            t = time.perf_counter()
            aligner, prior_train, prior_val, warm = _aligned(
                prior, warm, feats_train, feats_val, align_to, x_train, x_val, metric=metric, seed=seed,
                prior_decoder=prior_decoder, encoder=encoder, generic_options=generic_options, align=align)
            timings["select_seconds"] += time.perf_counter() - t
    scratch = list(decoders) if (warm is None or selection == "full") else []
    if not scratch and warm is None:
        raise ValueError(f"no decoder to attack with; valid decoders: {', '.join(DECODERS)}")
    finished: dict[str, tuple[float, torch.Tensor, Decoder]] = {}
    fitters: list[Fitter] = []  # every decoder training, for the step count
    scores: dict[str, float] = {}
    warmup: dict[str, float] = {}
    diverged = False
    track = selection == "full" or warm is not None

    if warm is not None:  # the prior: as it is, then fine-tuned (best held-out epoch)
        t = time.perf_counter()
        recon = reconstruct(warm, prior_val)
        scores["prior"] = _score(metric, recon, x_val)
        finished["prior"] = (scores["prior"], recon, copy.deepcopy(warm))
        timings["select_seconds"] += time.perf_counter() - t
        t = time.perf_counter()
        n_ft = epochs if prior_epochs is None else prior_epochs
        gen = torch.Generator().manual_seed(seed + 15485867)
        fitter = decoder_fitter(warm, prior_train, x_train, metric=metric, epochs=n_ft, batch_size=batch_size,
                                lr=lr / 3 if prior_lr is None else prior_lr, generator=gen)
        fitters.append(fitter)
        if n_ft > 0:
            score, recon, _, bad = _finish(warm, fitter, prior_val, x_val, metric, track_best=True)
            diverged |= bad
            scores["prior_tuned"] = score
            if not bad:
                finished["prior_tuned"] = (score, recon, warm)
        timings["fit_seconds"] += time.perf_counter() - t

    fallback, rounds = False, 0
    if warm is not None and not scratch and prior_score is not None and scores:
        best_prior = max(v for v in scores.values() if v == v) if any(v == v for v in scores.values()) else -1e9
        scale = mean_baseline_mse(x_train, x_val) if metric == "mse" else 1.0
        if (prior_score - best_prior) / max(scale, 1e-12) > shift_tolerance:
            fallback = True
            if shift_attack == "scratch":
                scratch = list(decoders)
            elif epochs > n_ft:  # keep training the fine-tuned prior at the full rate
                t = time.perf_counter()
                longer = copy.deepcopy(warm)  # ``prior_tuned`` keeps its own weights

                def full_rate_round(generator_seed: int) -> tuple[float, torch.Tensor | None, dict | None, bool]:
                    """One cosine schedule of ``epochs - n_ft`` epochs at the full rate."""
                    fitter = decoder_fitter(longer, prior_train, x_train, metric=metric, epochs=epochs - n_ft,
                                            batch_size=batch_size, lr=lr,
                                            generator=torch.Generator().manual_seed(generator_seed))
                    fitters.append(fitter)
                    return _finish(longer, fitter, prior_val, x_val, metric, track_best=True)

                score, recon, _, bad = full_rate_round(seed + 32452843)
                diverged |= bad
                for r in range(restarts if not bad else 0):  # warm restarts while they pay
                    kept, before = copy.deepcopy(longer.state_dict()), score
                    again, again_recon, _, bad_again = full_rate_round(seed + 49979687 * (r + 1))
                    rounds += 1
                    if bad_again or again <= before:
                        longer.load_state_dict(kept)
                        longer.eval()
                        break
                    score, recon = again, again_recon
                    if again - before < restart_gain * scale:
                        break
                scores["prior_long"] = score
                if not bad:
                    finished["prior_long"] = (score, recon, longer)
                timings["fit_seconds"] += time.perf_counter() - t
    candidates: dict[str, tuple[Decoder, Fitter]] = {}
    for k, name in enumerate(scratch):
        torch.manual_seed(seed + 7919 * (k + 1))
        decoder = build_decoder(name, encoder, feats_train, x_train, **(generic_options or {})).to(feats_train.device)
        gen = torch.Generator().manual_seed(seed + 104729 * (k + 1))
        candidates[name] = (decoder, decoder_fitter(decoder, feats_train, x_train, metric=metric, epochs=epochs,
                                                    batch_size=batch_size, lr=lr, generator=gen))
        fitters.append(candidates[name][1])
    if selection == "warmup" and len(candidates) > 1 and epochs > 1:
        # successive halving in one step: one epoch each, finish only the lowest training loss
        t = time.perf_counter()
        for name, (_, fitter) in candidates.items():
            warmup[name] = fitter.run(1)
        finite = {n: v for n, v in warmup.items() if v == v}
        diverged |= len(finite) < len(warmup)
        keep = min(finite, key=finite.get) if finite else None
        candidates = {n: c for n, c in candidates.items() if n == keep}
        timings["select_seconds"] += time.perf_counter() - t
    t = time.perf_counter()
    for name, (decoder, fitter) in candidates.items():
        score, recon, _, bad = _finish(decoder, fitter, feats_val, x_val, metric, track_best=track)
        scores[name] = score
        diverged |= bad
        if not bad:
            finished[name] = (score, recon, decoder)
    timings["fit_seconds"] += time.perf_counter() - t

    t = time.perf_counter()
    mse_mean = mean_baseline_mse(x_train, x_val)
    mean_image = x_train.float().mean(0, keepdim=True).expand_as(x_val)
    ssim_mean = float(ssim_measure(mean_image.contiguous(), x_val).mean()) if is_image else float("nan")
    steps = sum(f.step for f in fitters)
    if not finished:
        return InversionResult(1.0, 1.0 if is_image else float("nan"), 0.0, 0.0, mse_mean, ssim_mean,
                               "none", scores, warmup, None, time.perf_counter() - t0, True, timings, fallback,
                               rounds, steps)
    name = max(finished, key=lambda n: finished[n][0])
    _, recon, decoder = finished[name]
    if aligner is not None and name.startswith("prior"):  # it reads the released features again
        decoder.standardizer = nn.Sequential(aligner, decoder.standardizer)
    err = mse(recon, x_val)
    ssim_value = float(ssim_measure(recon, x_val).mean()) if is_image else float("nan")
    privacy = max(ssim_value, 0.0) if metric == "ssim" else normalized_privacy_mse(err, mse_mean)
    timings["measure_seconds"] += time.perf_counter() - t
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
        timings=timings,
        fallback=fallback,
        restarts=rounds,
        steps=steps,
    )
