"""Adversarial retraining (Algorithm 1) and the measurement of accuracy and privacy loss.

* Reactive: encoder+cloud train N_ec epochs for accuracy; the encoder is frozen; a fresh
  attacker trains N_d epochs on its released features; accuracy and privacy are measured
  on the validation split.
* Proactive: N_p rounds of (an in-game attacker trains N_d epochs against the current
  encoder; encoder+cloud train N_ec epochs on ``CE - lambda * attacker loss``), so the
  encoder learns to shield its input.  Then a *fresh* attacker, trained from scratch against
  the final frozen encoder, measures privacy: the in-game attacker is part of the defence,
  and measuring with it would report how well the encoder fooled its own sparring partner.

Label convention: inversion (``mse``/``ssim``) trains the task on ``fine`` labels; property
inference trains the task on ``coarse`` labels and attacks the ``fine`` one, as the paper's
CIFAR-100 setup (superclass task, fine class private).
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit.attacks.decoders import generic_decoder
from privacysplit.attacks.fitting import add_noise, fit, release
from privacysplit.attacks.inversion import (
    INVERSION_METRICS,
    invert,
    reconstruct,
    reconstruction_loss,
    train_decoder,
)
from privacysplit.attacks.property import (
    PropertyClassifier,
    infer_property,
    property_loss,
    train_property,
)
from privacysplit.attacks.samples import N_SAMPLES, encode_samples
from privacysplit.data import Dataset
from privacysplit.fidelity import Fidelity, get_fidelity
from privacysplit.models import Network
from privacysplit.training import resolve_device

#: threat models of section 6.2
THREATS: tuple[str, ...] = ("reactive", "proactive")
#: privacy metrics: P0 = mse, P1 = ssim, P2 = property
PRIVACY_METRICS: tuple[str, ...] = ("mse", "ssim", "property")


def task_labels(privacy: str) -> tuple[str, str | None]:
    """(task label kind, private attribute kind or None) for a privacy metric."""
    return ("coarse", "fine") if privacy == "property" else ("fine", None)


def check_options(threat: str, privacy: str, data: Dataset | None = None) -> None:
    """Validate ``threat`` and ``privacy`` (and that SSIM gets images), listing valid values."""
    if threat not in THREATS:
        raise ValueError(f"unknown threat {threat!r}; valid threats: {', '.join(THREATS)}")
    if privacy not in PRIVACY_METRICS:
        raise ValueError(
            f"unknown privacy metric {privacy!r}; valid: {', '.join(PRIVACY_METRICS)} "
            "(P0 = mse, P1 = ssim, P2 = property)"
        )
    if data is not None and privacy == "ssim" and not data.is_image:
        raise ValueError(
            f"privacy='ssim' needs image inputs, but {data.name!r} is tabular {data.input_shape}; "
            "use privacy='mse' (P0) or 'property' (P2)"
        )


class _Split(nn.Module):
    """encoder -> (noise) -> cloud, for accuracy measurement."""

    def __init__(self, encoder: nn.Module, cloud: nn.Module, noise: float, generator: torch.Generator | None) -> None:
        super().__init__()
        self.encoder, self.cloud = encoder, cloud
        self.noise, self.generator = noise, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cloud(add_noise(self.encoder(x), self.noise, generator=self.generator))


def train_split(
    encoder: Network,
    cloud: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data: Dataset,
    fidelity: Fidelity,
    generator: torch.Generator,
    feature_noise: float = 0.0,
    adversary: nn.Module | None = None,
    adversary_loss=None,
) -> float:
    """Encoder+cloud epochs (N_ec) on cross-entropy, minus ``lambda`` x the adversary's loss.

    ``adversary_loss(features, idx)`` is the in-game attacker's loss on a batch; the
    adversary is frozen (eval mode, no parameter updates) while the gradient flows through
    it into the encoder.  Returns the last epoch's mean loss, NaN if training diverged.
    """
    encoder.train()
    cloud.train()
    lam = fidelity.adv_lambda

    def step(idx: torch.Tensor) -> torch.Tensor:
        feats = encoder(data.normalize(x[idx]))
        loss = F.cross_entropy(cloud(add_noise(feats, feature_noise)), y[idx])
        if adversary is not None and adversary_loss is not None:
            loss = loss - lam * adversary_loss(add_noise(feats, feature_noise), idx)
        return loss

    params = [*encoder.parameters(), *cloud.parameters()]
    return fit(params, step, len(x), epochs=fidelity.n_ec, batch_size=fidelity.batch_size,
               lr=fidelity.lr, generator=generator, cosine=False)


def _released(encoder: Network, data: Dataset, x: torch.Tensor, noise: float, std: float | None,
              generator: torch.Generator) -> torch.Tensor:
    feats = release(encoder, x, data.normalize)
    return add_noise(feats, noise, std=std, generator=generator) if noise > 0 else feats


def _failure(error: str, privacy: str, t_train: float, t_attack: float) -> dict:
    """Finite numbers for a diverged evaluation: accuracy 0 makes the reward 0."""
    out = {"accuracy": 0.0, "privacy_loss": 1.0, "attacker": "none", "train_seconds": t_train,
           "attack_seconds": t_attack, "error": error}
    if privacy == "property":
        out.update(property_accuracy=1.0, property_chance=0.0)
    else:
        out.update(ssim=1.0, mse=0.0, mse_norm=0.0, inv_mse=0.0)
    return out


def evaluate_split(
    encoder: Network,
    cloud: Network,
    data: Dataset,
    *,
    fidelity: Fidelity | str = "cpu",
    threat: str = "reactive",
    privacy: str = "ssim",
    device: str | torch.device = "cpu",
    seed: int = 0,
    feature_noise: float = 0.0,
    return_attacker: bool = False,
    data_seed: int | None = None,
    attack: bool = True,
) -> dict:
    """Run Algorithm 1 on ``encoder``+``cloud`` (trained in place) and measure A and P.

    Args:
        encoder, cloud: the split (possibly compressed) network, starting from pretrained
            weights; both are retrained in place, so pass copies to keep the originals.
        data: the dataset; training uses ``data.train.take(fidelity.n_train, seed)``,
            measurement ``data.val.take(fidelity.n_val, seed)``.
        fidelity: epochs, sizes and learning rates (a preset name or a :class:`Fidelity`).
        threat: ``"reactive"`` or ``"proactive"``.
        privacy: ``"mse"`` (P0), ``"ssim"`` (P1) or ``"property"`` (P2).
        device: where to train (``"cpu"``, ``"cuda"``, ``"auto"``).
        seed: seeds data subsets, initialisation, batch order and noise.
        feature_noise: Gaussian noise on the released features, in units of the clean
            features' standard deviation (Table 7's differential-privacy baseline); applied
            in retraining, in accuracy measurement and in what the attacker sees.
        return_attacker: also return the measuring attacker under ``attacker_model``
            (features -> reconstructions in ``[0, 1]``, or attribute logits for P2).
        data_seed: picks the training subset and the validation images (default ``seed``).
            The evaluator passes one value for every plan of a setting, so all plans (and
            A_base) train on the same images and are measured on the same images, while
            ``seed`` (per plan) still seeds initialisation, batch order and noise.
        attack: ``False`` stops after retraining and the accuracy measurement (how A_base
            is measured); the result then holds ``accuracy`` and ``train_seconds`` only.

    Returns:
        ``accuracy``, ``privacy_loss`` (in ``[0, 1]``, the reward's P), ``attacker``,
        ``train_seconds``, ``attack_seconds``; for inversion ``ssim``, ``mse``, ``mse_norm``,
        ``mse_mean``, ``ssim_mean`` (the mean image's SSIM), ``inv_mse``, ``score_<decoder>``
        (held-out score of each finished decoder) and ``warmup_loss_<decoder>`` (training
        loss after the warm-up epoch that picked the decoder to finish); ``ssim`` is NaN
        for tabular data;
        for property inference ``property_accuracy`` and ``property_chance``; ``error``
        only when training diverged (then accuracy is 0 and every value finite).

    Raises:
        ValueError: for an unknown threat or privacy metric, or SSIM on tabular data.
    """
    check_options(threat, privacy, data)
    fid = get_fidelity(fidelity)
    if feature_noise < 0 or not math.isfinite(feature_noise):
        raise ValueError(f"feature_noise must be a non-negative number, got {feature_noise!r}")
    dev = resolve_device(device)
    task, private = task_labels(privacy)
    subset_seed = seed if data_seed is None else data_seed
    train = data.train.take(fid.n_train, subset_seed)
    val = data.val.take(fid.n_val, subset_seed)
    x, y = train.x.to(dev), data.labels(train, task).to(dev)
    xv, yv = val.x.to(dev), data.labels(val, task).to(dev)
    encoder.to(dev)
    cloud.to(dev)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    t_attack = 0.0

    # -- Algorithm 1: retraining ---------------------------------------------------------
    if threat == "reactive":
        loss = train_split(encoder, cloud, x, y, data=data, fidelity=fid, generator=gen,
                           feature_noise=feature_noise)
    else:
        loss = _proactive(encoder, cloud, x, y, train, data, fid, gen, privacy, private,
                          feature_noise, seed, dev)
    t_train = time.perf_counter() - t0
    if loss != loss:
        return _failure("encoder+cloud training diverged (non-finite loss)", privacy, t_train, t_attack)

    noise_gen = torch.Generator().manual_seed(seed + 1)
    acc_model = _Split(encoder, cloud, feature_noise, noise_gen).eval()
    with torch.no_grad():
        correct = sum(int((acc_model(data.normalize(xv[i:i + 512])).argmax(1) == yv[i:i + 512]).sum())
                      for i in range(0, len(xv), 512))
    accuracy = correct / max(len(xv), 1)
    encoder.train()
    cloud.train()
    if not attack:
        return {"accuracy": accuracy, "train_seconds": t_train}

    # -- measurement: a fresh attacker against the frozen encoder -------------------------
    t1 = time.perf_counter()
    clean = release(encoder, x, data.normalize)
    std = float(clean.float().std()) if feature_noise > 0 else None
    feats = add_noise(clean, feature_noise, std=std, generator=noise_gen) if feature_noise > 0 else clean
    feats_val = _released(encoder, data, xv, feature_noise, std, noise_gen)
    if not (torch.isfinite(feats).all() and torch.isfinite(feats_val).all()):
        return _failure("the encoder's features are not finite", privacy, t_train, time.perf_counter() - t1)
    result: dict = {"accuracy": accuracy, "train_seconds": t_train}
    if privacy == "property":
        p = infer_property(feats, data.labels(train, private).to(dev), feats_val,
                           data.labels(val, private).to(dev), data.num_classes(private),
                           epochs=fid.n_d, batch_size=fid.batch_size, lr=fid.decoder_lr, seed=seed)
        t_attack = time.perf_counter() - t1
        if p.diverged:
            return _failure("the property attacker diverged", privacy, t_train, t_attack)
        result.update(privacy_loss=p.accuracy, property_accuracy=p.accuracy, property_chance=p.chance,
                      attacker="property_classifier", attack_seconds=t_attack)
        if return_attacker:
            result["attacker_model"] = p.classifier
        return result
    inv = invert(encoder, feats, x, feats_val, xv, metric=privacy, epochs=fid.n_d,
                 batch_size=fid.batch_size, lr=fid.decoder_lr, seed=seed)
    t_attack = time.perf_counter() - t1
    if inv.decoder is None:
        return _failure("every inversion decoder diverged", privacy, t_train, t_attack)
    result.update(
        privacy_loss=inv.privacy_loss, ssim=inv.ssim, mse=inv.mse, mse_norm=inv.mse_norm,
        mse_mean=inv.mse_mean, ssim_mean=inv.ssim_mean, inv_mse=inv.inv_mse, attacker=inv.attacker,
        attack_seconds=t_attack,
        **{f"score_{name}": value for name, value in inv.scores.items()},
        **{f"warmup_loss_{name}": value for name, value in inv.warmup.items()},
    )
    if xv.dim() == 4:  # images: keep a few reconstructions to show (TensorBoard, reports)
        result["reconstruction"] = encode_samples(xv[:N_SAMPLES], reconstruct(inv.decoder, feats_val[:N_SAMPLES]))
    if return_attacker:
        result["attacker_model"] = inv.decoder
    return result


def _proactive(
    encoder: Network, cloud: Network, x: torch.Tensor, y: torch.Tensor, train, data: Dataset,
    fid: Fidelity, gen: torch.Generator, privacy: str, private: str | None, feature_noise: float,
    seed: int, dev: torch.device,
) -> float:
    """N_p rounds of (in-game attacker N_d epochs; encoder+cloud N_ec epochs against it).

    The in-game attacker is rebuilt each round on the current features (its standardiser
    must see the current scale) and keeps training from its previous weights where the
    shapes allow, so the game does not restart from a blank attacker every round.
    """
    attr = data.labels(train, private).to(dev) if private else None
    loss = 0.0
    previous: nn.Module | None = None
    for r in range(fid.n_p):
        feats = release(encoder, x, data.normalize)
        if feature_noise > 0:
            feats = add_noise(feats, feature_noise)
        if not torch.isfinite(feats).all():
            return float("nan")
        torch.manual_seed(seed + 1000 + r)
        if privacy == "property":
            attacker: nn.Module = PropertyClassifier(feats, data.num_classes(private)).to(dev)
        else:
            attacker = generic_decoder(feats, x).to(dev)
        if previous is not None:
            # carry the weights over, with the standardiser refitted to the current features
            state = {k: v for k, v in previous.state_dict().items() if not k.startswith("standardizer.")}
            attacker.load_state_dict(state, strict=False)
        if privacy == "property":
            a_loss = train_property(attacker, feats, attr, epochs=fid.n_d, batch_size=fid.batch_size,
                                    lr=fid.decoder_lr, generator=gen)
        else:
            a_loss = train_decoder(attacker, feats, x, metric=privacy, epochs=fid.n_d,
                                   batch_size=fid.batch_size, lr=fid.decoder_lr, generator=gen)
        if a_loss != a_loss:
            return float("nan")
        attacker.eval()
        for p in attacker.parameters():
            p.requires_grad_(False)
        if privacy == "property":
            ceiling = math.log(data.num_classes(private))

            def adv(feats_b: torch.Tensor, idx: torch.Tensor, a=attacker, c=ceiling) -> torch.Tensor:
                # push the attacker's loss up to chance level, not beyond: a confidently
                # wrong attacker would itself reveal the attribute
                return property_loss(a, feats_b, attr[idx]).clamp(max=c)
        else:

            def adv(feats_b: torch.Tensor, idx: torch.Tensor, a=attacker) -> torch.Tensor:
                return reconstruction_loss(privacy, a(feats_b), x[idx])

        loss = train_split(encoder, cloud, x, y, data=data, fidelity=fid, generator=gen,
                           feature_noise=feature_noise, adversary=attacker, adversary_loss=adv)
        if loss != loss:
            return loss
        previous = attacker
    return loss


__all__ = ["INVERSION_METRICS", "PRIVACY_METRICS", "THREATS", "check_options", "evaluate_split", "task_labels"]
