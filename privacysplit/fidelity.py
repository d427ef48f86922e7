"""How long and on how much data an evaluation trains: one named, recorded setting.

Every training length, data size and learning rate that affects a reward lives in one
:class:`Fidelity`; its :meth:`key` enters every cache key and result row, so numbers from
different fidelities never mix.

Presets:

* ``smoke`` — for tests: 128 training and 64 validation images, one epoch of everything;
  about 0.3 s per evaluation of a LeNet plan on one core.
* ``cpu`` — the default: a few seconds per LeNet evaluation on a 2-core machine, with the
  attack close to a slow reference attacker's strength (``benchmarks/attack_strength.py``):
  a 32-epoch prior fine-tuned two epochs, trained on at the full rate when a plan's
  features moved away from it, with warm restarts against proactive encoders.
* ``paper`` — section 7.2: N_ec = 10, N_d = 10, N_p = 5 on the full training split; meant
  for a GPU.

Anywhere a fidelity is accepted, ``"preset:field=value:..."`` names a preset with some fields
changed (:func:`fidelity_from_spec`), e.g. ``"cpu:n_ec=1:shift_attack=scratch"``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, fields, replace

from privacysplit.specs import split_spec

#: how far the fine-tuned prior may land under its base score before the attacker trains on
#: (the reactive threat's, and ``Fidelity.proactive_shift_tolerance``'s default)
SHIFT_TOLERANCE = 0.03
#: the generic decoder's shape where a fidelity leaves ``decoder_width``, ``decoder_depth`` and
#: ``decoder_upsample`` alone: :class:`~privacysplit.attacks.decoders.GenericDecoder`'s defaults
#: too, kept here (the module below ``attacks``) so the two cannot drift apart
GENERIC_SHAPE: dict[str, int | str] = {"width": 48, "depth": 2, "upsample": "resize"}


@dataclass(frozen=True)
class Fidelity:
    """Training lengths, data sizes and learning rates of one evaluation.

    Attributes:
        name: preset name, or ``"custom"``.
        n_train: training images used for retraining and for the attacker's auxiliary set
            (``None`` = the whole training split; see also ``proactive_aux``).
        n_val: held-out images for accuracy and privacy measurement (``None`` = all).
        batch_size: mini-batch size for every optimiser.
        base_epochs: epochs to train the uncompressed base network (once, then cached).
        n_ec: N_ec, epochs of encoder+cloud retraining (Algorithm 1).
        n_d: N_d, epochs of attacker training.
        n_p: N_p, rounds of the proactive game.
        lr: learning rate of encoder+cloud retraining (Adam).
        base_lr: learning rate of base training (Adam).
        decoder_lr: learning rate of the attacker (Adam).
        adv_lambda: lambda, weight of the in-game attackers' bounded leakage (in
            ``[0, 1]``) in proactive training.
        distill_steps: optimisation steps that initialise replaced layers (C1-C3) by
            matching the original layer's outputs (0 disables distillation).
        prior_epochs: epochs of the attack prior, a decoder trained once per partition on
            the base network's features over the whole training split, from which the
            measuring attacker starts (0: every attacker starts from scratch).
        prior_finetune: epochs the measuring attacker fine-tunes the prior on the plan's
            features (the best held-out epoch counts).
        game_attackers: in-game attackers restarted each proactive round.
        shift_attack: what the measuring attacker does when the fine-tuned prior no longer
            fits a plan's features (a heavy compression, a proactive encoder):
            ``"scratch"`` trains every scratch decoder as well (warm-up selection), or
            ``"prior"`` keeps training the prior at the full rate for the rest of the N_d
            epochs (:func:`privacysplit.attacks.inversion.invert`).
        proactive_restarts: under the proactive threat, with ``shift_attack="prior"``, up to
            this many warm restarts of that training while each gains at least 0.01 SSIM:
            against a proactive encoder the measuring attacker is short of steps, and an
            attacker cut short reports privacy that a patient adversary would not find.
        proactive_aux: the measuring attacker's auxiliary set under the proactive threat:
            ``"subset"`` (the ``n_train`` retraining images, as under the reactive threat) or
            ``"split"`` (the whole training split, which the threat model grants: the
            adversary knows the data distribution).  Why: against a proactive encoder the
            attacker is short of data as well as of steps.  Measured on LeNet/mnist at
            ``cpu`` fidelity (seed 0, lambda 16, one thread; ``benchmarks/attack_strength.py``
            reference 0.930 / 0.520 / 0.523 at partitions 3 / 6 / 8), ``"split"`` reached
            0.921 / 0.529 / 0.520 against ``"subset"``'s 0.896 / 0.475 / 0.467, for 21 / 28 /
            22 s of attack instead of 13 / 9 / 7; on the subset the same compute does not get
            there (partition 8: 22 scratch epochs of the generic decoder, 0.485; the warm
            restarts stop gaining), and batches of 128 on the split did no better (partition
            3: 0.908).  ``"split_steps"``: the whole split for the subset's optimiser steps
            (``n_d`` and ``prior_finetune`` scaled by ``n_train`` / the split's size, rounded
            up; :meth:`attack_epochs`): more distinct images at the same compute.  With the
            whitened input (``attack_input="whiten"``), the same encoders: 0.946 / 0.719 /
            0.705 against the subset's 0.941 / 0.659 / 0.673 and the whitened reference's
            0.957 / 0.747 / 0.717, at 1-1.2x the subset's attack time (the same steps per
            round; one more warm restart where it still gains) (``"split"``: 0.955 / 0.730 /
            0.706 at 1.5-2x).  ``cpu`` used ``"split_steps"`` in evaluation version 6 and uses
            ``"split"`` since version 7 (with ``proactive_shift_tolerance=0``; MSE within 10 %
            of the reference's at every depth, where ``"split_steps"`` was 15-30 % over).
        attack_input: how the measuring attacker (and its prior) prepares the released
            features before its decoder: ``"standardize"`` (per channel), ``"whiten"``
            (ZCA across channels, :class:`privacysplit.attacks.whitening.FeatureWhitener`,
            fitted on the attacker's own auxiliary features), ``"both"`` (one attacker on
            each, the better counts; twice the attack time) or ``"auto"`` (the one measured
            stronger, at one attacker's cost: whitened features without ``feature_noise``,
            standardised ones with it; :func:`privacysplit.attacks.whitening.input_kinds`).  Why: the proactive games
            leave the input's detail in directions of small variance, which a per-channel
            standardiser leaves small and a decoder must learn to amplify; whitening hands them
            to it at full scale.  Measured on LeNet/mnist at ``cpu`` fidelity against the
            lambda-16 proactive encoders of ``benchmarks/attack_strength.py`` (README *Attack
            strength*): SSIM 0.896 / 0.474 / 0.467 -> 0.941 / 0.659 / 0.673 at partitions
            3 / 6 / 8, in about the same time.  On noisy features (``feature_noise``) the
            whitener discounts the release's known noise (a Wiener gain per direction), and
            is then within 0.004-0.015 of the standardised attacker, which stays the stronger
            there (partition 3, noise 0.3, six seeds; without the gain it was 0.08-0.11
            short): hence ``"auto"``, which reads noisy features standardised, and ``"both"``,
            the better of the two at twice the cost.  ``cpu`` uses ``"auto"`` since evaluation
            version 6 (``"cpu:attack_input=standardize:proactive_aux=subset:reactive_aux=subset:"``
            ``"proactive_shift_tolerance=0.03"`` is version 5's attacker).
        reactive_aux: the measuring attacker's auxiliary set under the reactive threat, with
            ``proactive_aux``'s choices; ``cpu`` uses ``"split"`` since evaluation version 7.
            Measured on LeNet/mnist at
            ``cpu`` fidelity against the reactive encoders of ``benchmarks/attack_strength.py``
            (README *Attack strength*), ``"split"`` (4,000 images, the prior fine-tuned its two
            epochs on all of them) brings the MSE to 1.07 / 1.01 / 1.04 / 1.08 of the
            reference's at partitions 0 / 3 / 6 / 8 (``"subset"``: 1.08 / 1.02 / 1.08 / 1.12) for
            1.7-2x the reactive attack's time; ``"split_steps"`` (one epoch) stays at 1.11 at
            partition 8.
        proactive_shift_tolerance: under the proactive threat, how far below its score on the
            base features the fine-tuned prior may land before the attacker decides the
            features moved and trains on (``shift_attack``; the reactive threat keeps 0.03).
            Why a knob: against a proactive encoder the fine-tuned prior can land inside the
            tolerance and stop there.  Measured on LeNet/mnist partition 0 (lambda 16, ``cpu``
            fidelity's encoder): the prior fine-tuned two epochs on the whole split read
            0.974 (MSE 4.4x the reference's), 0.021 under its base score, so it stopped; the
            same attacker trained on, as ``cpu``'s does, reads 0.991.  ``0`` trains on
            whenever the fine-tuned prior is short of its base score at all (``cpu``'s since
            evaluation version 7).
        prior_decoder: the decoder the attack prior is: ``"generic"`` (every preset) or
            ``"mirror"`` (the encoder read backwards, :func:`privacysplit.attacks.decoders.mirror_decoder`,
            trained on the base network's features at the partition like the generic one).  Why
            a choice: at VGG11's last convolutions the reference attacker's winner is the
            mirror decoder trained 24 epochs on the whole split, which no generic-prior
            schedule at an evaluation's budget matched (README *Attack strength*).  A mirror
            prior fits only plans whose encoder mirrors into the same layer shapes as the base
            network's; for any other plan the attacker starts from the generic prior.
            Measured on VGG11/mnist against version 7's reactive encoders (README *A mirror
            prior*): within 0.02 SSIM of the reference at every depth (0.067 / 0.061 with the
            generic prior at partitions 22 / 25), MSE 0.82-1.14x the reference's (generic
            1.26-1.65x), for 1.1-4.3x an evaluation's CPU time and 3-23 minutes per prior, so
            no preset uses it (a GPU's attacker).
        decoder_width, decoder_depth: the generic decoder's channels on its coarse grid and
            its 3x3 convolutions there (:class:`~privacysplit.attacks.decoders.GenericDecoder`),
            for the attack prior and every scratch generic decoder the measuring attacker
            trains (the proactive game's in-game decoders keep the defaults, 48 and 2).  Why
            knobs: at VGG11's deepest partitions (512 channels on a 4x4 or 2x2 map) the default
            decoder is what keeps the generic prior short of the reference (README *The generic
            prior's shape*).  Depth is the cheap one: each grid convolution adds about a
            quarter of the default decoder's time, where width costs about its square.
        decoder_upsample: how that decoder lifts a map smaller than its grid (VGG11's 4x4 and
            2x2, LeNet's 5x5) onto it: ``"resize"`` (one bilinear resize; every preset) or
            ``"ladder"`` (doublings, each followed by a convolution) or ``"pyramid"`` (the
            ladder with twice the channels per rung below the grid).  Measured in the same
            README paragraph: the ladder takes nearly half of VGG11's gap to the reference at
            its 2x2 partitions in the same attack time; depth 4 takes less for more.
        prior_align: how the attack prior reads a plan's features: ``"none"`` (as released;
            every preset) or ``"ridge"``: through a closed-form ridge map onto the base
            network's features of the same auxiliary images
            (:mod:`privacysplit.attacks.alignment`), where that scores better.  Retraining
            moves the features away from what the prior knows, and much of the move is linear
            (README *Aligning the features onto the base network's*).  ``"ridge"`` maps up to
            8192 x 8192 dimensions (VGG11's partitions 15-25); ``"ridge_conv"`` maps larger
            maps too, with a 3x3 convolution fitted the same way (partitions 0-11).
    """

    name: str = "custom"
    n_train: int | None = 2000
    n_val: int | None = 500
    batch_size: int = 64
    base_epochs: int = 5
    n_ec: int = 2
    n_d: int = 6
    n_p: int = 2
    lr: float = 1e-3
    base_lr: float = 2e-3
    decoder_lr: float = 3e-3
    adv_lambda: float = 16.0
    distill_steps: int = 20
    prior_epochs: int = 16
    prior_finetune: int = 1
    game_attackers: int = 1
    shift_attack: str = "scratch"
    proactive_restarts: int = 0
    proactive_aux: str = "subset"
    attack_input: str = "standardize"
    reactive_aux: str = "subset"
    proactive_shift_tolerance: float = SHIFT_TOLERANCE
    prior_decoder: str = "generic"
    decoder_width: int = GENERIC_SHAPE["width"]
    decoder_depth: int = GENERIC_SHAPE["depth"]
    decoder_upsample: str = GENERIC_SHAPE["upsample"]
    prior_align: str = "none"

    def __post_init__(self) -> None:
        """Refuse a value that would change meaning silently (``True`` as 1 epoch, a NaN
        learning rate that makes every evaluation fail) or escape a file name."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Fidelity.name must be a non-empty string, got {self.name!r}")
        for field_name in ("batch_size", "base_epochs", "n_ec", "n_d", "n_p", "distill_steps", "prior_epochs",
                           "prior_finetune", "game_attackers", "proactive_restarts", "decoder_width", "decoder_depth"):
            value = getattr(self, field_name)
            minimum = 1 if field_name in ("batch_size", "n_p", "game_attackers", "decoder_width", "decoder_depth") \
                else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                kind = "a positive integer" if minimum else "a non-negative integer"
                raise ValueError(f"Fidelity.{field_name} must be {kind}, got {value!r}")
        for field_name in ("n_train", "n_val"):
            value = getattr(self, field_name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Fidelity.{field_name} must be a positive integer or None, got {value!r}")
        for field_name in ("lr", "base_lr", "decoder_lr"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"Fidelity.{field_name} must be a finite number > 0, got {value!r}")
        if self.shift_attack not in SHIFT_ATTACKS:
            raise ValueError(f"Fidelity.shift_attack must be one of {', '.join(SHIFT_ATTACKS)}, "
                             f"got {self.shift_attack!r}")
        for field_name in ("proactive_aux", "reactive_aux"):
            if getattr(self, field_name) not in ATTACK_AUX:
                raise ValueError(f"Fidelity.{field_name} must be one of {', '.join(ATTACK_AUX)}, "
                                 f"got {getattr(self, field_name)!r}")
        if self.attack_input not in ATTACK_INPUTS:
            raise ValueError(f"Fidelity.attack_input must be one of {', '.join(ATTACK_INPUTS)}, "
                             f"got {self.attack_input!r}")
        if self.decoder_upsample not in DECODER_UPSAMPLES:
            raise ValueError(f"Fidelity.decoder_upsample must be one of {', '.join(DECODER_UPSAMPLES)}, "
                             f"got {self.decoder_upsample!r}")
        if self.prior_align not in PRIOR_ALIGNS:
            raise ValueError(f"Fidelity.prior_align must be one of {', '.join(PRIOR_ALIGNS)}, "
                             f"got {self.prior_align!r}")
        if self.prior_decoder not in PRIOR_DECODERS:
            raise ValueError(f"Fidelity.prior_decoder must be one of {', '.join(PRIOR_DECODERS)}, "
                             f"got {self.prior_decoder!r}")
        for field_name in ("adv_lambda", "proactive_shift_tolerance"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Fidelity.{field_name} must be a finite number >= 0, got {value!r}")

    def generic_options(self) -> dict[str, int]:
        """The measuring attacker's generic decoder: ``decoder_width``, ``decoder_depth`` and
        ``decoder_upsample`` as :class:`~privacysplit.attacks.decoders.GenericDecoder`'s keyword
        arguments."""
        return {"width": self.decoder_width, "depth": self.decoder_depth, "upsample": self.decoder_upsample}

    def key(self) -> str:
        """A short stable hash of every field; part of every cache key.

        Fields added after the key's format was fixed (:data:`_LATE_DEFAULTS`) enter it only
        when they differ from their defaults, so every number cached before they existed
        keeps its key (their defaults reproduce the old behaviour exactly)."""
        blob = json.dumps(self.to_dict(), sort_keys=True)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"

    def to_dict(self) -> dict:
        """Every field, less the late ones at their defaults (see :meth:`key`): this dict is
        hashed into cache keys and per-plan seeds, so a new field must not change it."""
        return {k: v for k, v in asdict(self).items() if _LATE_DEFAULTS.get(k, _UNSET) != v}

    def attack_aux(self, threat: str) -> str:
        """The measuring attacker's auxiliary set under ``threat``: ``proactive_aux`` or
        ``reactive_aux``."""
        return self.proactive_aux if threat == "proactive" else self.reactive_aux

    def shift_tolerance(self, threat: str) -> float:
        """The measuring attacker's ``shift_tolerance`` under ``threat``
        (:func:`privacysplit.attacks.inversion.invert`): ``proactive_shift_tolerance``, or the
        reactive threat's fixed 0.03."""
        return self.proactive_shift_tolerance if threat == "proactive" else SHIFT_TOLERANCE

    def attack_restarts(self, threat: str) -> int:
        """The measuring attacker's warm restarts under ``threat``: ``proactive_restarts``, or
        none against a reactive encoder."""
        return self.proactive_restarts if threat == "proactive" else 0

    def attack_images(self, threat: str) -> int | None:
        """How many training images the measuring attacker gets under ``threat`` (the size
        ``Dataset.take`` is called with; ``None`` = the whole split): ``n_train``, or the
        whole split when that threat's auxiliary set (:meth:`attack_aux`) is ``"split"`` or
        ``"split_steps"``.  One rule for the evaluation and for the benchmarks that repeat
        its attack."""
        return None if self.attack_aux(threat) != "subset" else self.n_train

    def attack_epochs(self, threat: str, n_images: int) -> tuple[int, int]:
        """The measuring attacker's ``(n_d, prior_finetune)`` on ``n_images`` auxiliary images
        under ``threat``: the fields themselves, or where that threat's auxiliary set is
        ``"split_steps"`` both scaled by ``n_train / n_images`` (rounded up,
        leaving at least one epoch past the fine-tune), so the whole split costs the
        subset's optimiser steps.  One rule for the evaluation and the benchmarks that
        repeat its attack."""
        if self.attack_aux(threat) != "split_steps" or not self.n_train \
                or n_images <= self.n_train:
            return self.n_d, self.prior_finetune
        scale = self.n_train / n_images
        finetune = math.ceil(self.prior_finetune * scale)
        epochs = math.ceil(self.n_d * scale)
        return (max(epochs, finetune + 1) if self.n_d > self.prior_finetune else epochs), finetune

    def with_(self, **changes) -> Fidelity:
        """A copy with some fields changed (named ``custom`` unless ``name`` is given)."""
        changes.setdefault("name", "custom")
        return replace(self, **changes)


#: the fields base training reads (:func:`privacysplit.training.pretrained_base`)
BASE_FIELDS: tuple[str, ...] = ("n_train", "n_val", "batch_size", "base_epochs", "base_lr")
#: fields the retraining of a plan reads under the reactive threat: the base network's, plus
#: its own epochs, rate and distillation (the per-plan seed hashes these and nothing else of
#: the fidelity, :func:`retraining_fields`)
RETRAIN_FIELDS: tuple[str, ...] = BASE_FIELDS + ("n_ec", "lr", "distill_steps")
#: fields the proactive game reads as well (its schedule and its in-game attackers)
GAME_FIELDS: tuple[str, ...] = ("n_d", "n_p", "adv_lambda", "decoder_lr", "game_attackers")


def base_fields(fidelity: Fidelity) -> dict:
    """The fidelity's :data:`BASE_FIELDS`: what base weights are keyed on, not the whole
    fidelity, so two fidelities that differ only in their attack or retraining settings share
    one base network, and comparing them compares what they change and nothing else."""
    return {k: getattr(fidelity, k) for k in BASE_FIELDS}


def retraining_fields(fidelity: Fidelity, threat: str = "reactive") -> dict:
    """The fields that shape a plan's retrained network under ``threat``: what the per-plan
    seed derives from (:meth:`privacysplit.envs.evaluator.Evaluator.plan_seed`).

    Why not the whole fidelity: two fidelities that differ only in how the measuring attacker
    works (its epochs, its prior, its restarts) or in their name must retrain a plan into the
    same network, so their privacy numbers differ by the attacker and nothing else.  Before
    (evaluation version 4) the seed came from the whole cache key and one plan scored
    A = 0.856 under ``cpu`` and 0.792 under a fidelity that changed only attack fields.
    """
    names = RETRAIN_FIELDS + (GAME_FIELDS if threat == "proactive" else ())
    return {k: getattr(fidelity, k) for k in names}


#: what the measuring attacker can do when the prior no longer fits (see ``Fidelity.shift_attack``)
SHIFT_ATTACKS: tuple[str, ...] = ("scratch", "prior")
#: the measuring attacker's auxiliary set (see ``Fidelity.proactive_aux`` and ``reactive_aux``)
ATTACK_AUX: tuple[str, ...] = ("subset", "split", "split_steps")
#: how the measuring attacker prepares the released features (see ``Fidelity.attack_input``)
ATTACK_INPUTS: tuple[str, ...] = ("standardize", "whiten", "both", "auto")
#: the decoder an attack prior is (see ``Fidelity.prior_decoder``)
PRIOR_DECODERS: tuple[str, ...] = ("generic", "mirror")
#: how the generic decoder reaches its grid from a smaller map (see ``Fidelity.decoder_upsample``)
DECODER_UPSAMPLES: tuple[str, ...] = ("resize", "ladder", "pyramid")
#: how the attack prior reads a plan's features (see ``Fidelity.prior_align``)
PRIOR_ALIGNS: tuple[str, ...] = ("none", "ridge", "ridge_conv")
_UNSET = object()
#: fields added after cache keys were first written, with the defaults that leave them out
_LATE_DEFAULTS: dict[str, object] = {"shift_attack": "scratch", "proactive_restarts": 0, "proactive_aux": "subset",
                                     "attack_input": "standardize", "reactive_aux": "subset",
                                     "proactive_shift_tolerance": SHIFT_TOLERANCE, "prior_decoder": "generic", "prior_align": "none",
                                     **{f"decoder_{k}": v for k, v in GENERIC_SHAPE.items()}}

FIDELITIES: dict[str, Fidelity] = {
    "smoke": Fidelity(
        name="smoke", n_train=128, n_val=64, batch_size=64, base_epochs=2,
        n_ec=1, n_d=1, n_p=1, distill_steps=2, prior_epochs=0,
    ),
    # the patient attacker (evaluation version 5): a prior trained twice as long, fine-tuned two
    # epochs, kept training at the full rate when a plan's features moved, warm restarts
    # against proactive encoders; version 6: it reads whitened features where they are not
    # noisy, and proactive encoders on the whole split for the subset's steps (README "Attack
    # strength"; measured against a slow reference in benchmarks/results/attack_strength);
    # version 7: the whole split at the full epochs against every encoder, and against
    # proactive ones it trains on whenever the fine-tuned prior is short of its base score
    "cpu": Fidelity(name="cpu", prior_epochs=32, prior_finetune=2, shift_attack="prior", proactive_restarts=4,
                    proactive_aux="split", attack_input="auto", reactive_aux="split", proactive_shift_tolerance=0.0),
    "paper": Fidelity(
        name="paper", n_train=None, n_val=None, batch_size=128, base_epochs=30,
        n_ec=10, n_d=10, n_p=5, distill_steps=100, prior_epochs=30, prior_finetune=3,
    ),
}


def _parse_field(field_name: str, annotation: str, text: str, spec: str) -> object:
    """``text`` as the value of a field whose annotation is ``annotation``."""
    if annotation == "str":
        return text
    if text == "None" and "None" in annotation:
        return None
    try:
        return float(text) if annotation.startswith("float") else int(text)
    except ValueError:
        raise ValueError(f"fidelity field {field_name!r} in {spec!r} needs a number, got {text!r}") from None


def fidelity_from_spec(spec: str | Fidelity) -> Fidelity:
    """A preset name, or ``preset:field=value:...`` (e.g. ``cpu:n_ec=1:prior_finetune=0``): the
    preset with those fields changed, named after the spec (``cpu-n_ec1-prior_finetune0``) so
    its cache rows and weights never mix with the preset's.

    Raises:
        ValueError: an unknown preset or field, or a value the field refuses.
    """
    if isinstance(spec, Fidelity):
        return spec
    preset, changes = split_spec(spec, "fidelity")
    if preset not in FIDELITIES:
        raise ValueError(f"unknown fidelity {preset!r}; valid presets: {', '.join(FIDELITIES)} "
                         "(optionally with :field=value changes, or pass a privacysplit.Fidelity)")
    if not changes:
        return FIDELITIES[preset]
    annotations = {f.name: str(f.type) for f in fields(Fidelity) if f.name != "name"}
    values: dict = {}
    for key, text in changes:
        if key not in annotations:
            raise ValueError(f"unknown fidelity field {key!r} in {spec!r}; valid fields: {', '.join(annotations)}")
        values[key] = _parse_field(key, annotations[key], text, spec)
    name = preset + "-" + "-".join(f"{k}{v}" for k, v in values.items())
    return FIDELITIES[preset].with_(name=name, **values)


def get_fidelity(fidelity: str | Fidelity | dict) -> Fidelity:
    """Resolve a preset name, a ``preset:field=value:...`` spec (:func:`fidelity_from_spec`),
    a :class:`Fidelity` or a dict of its fields."""
    if isinstance(fidelity, Fidelity):
        return fidelity
    if isinstance(fidelity, dict):
        return Fidelity(**fidelity)
    if isinstance(fidelity, str) and ":" in fidelity:
        return fidelity_from_spec(fidelity)
    if fidelity not in FIDELITIES:
        raise ValueError(
            f"unknown fidelity {fidelity!r}; valid presets: {', '.join(FIDELITIES)} "
            "(or pass a privacysplit.Fidelity)"
        )
    if fidelity == "smoke":
        warn_smoke()
    return FIDELITIES[fidelity]


#: set once the smoke warning was shown; worker processes inherit it and stay quiet
_SMOKE_WARNED = "PRIVACYSPLIT_SMOKE_WARNED"


def warn_smoke() -> None:
    """One line on stderr the first time ``smoke`` is used outside the tests.

    Why: ``smoke`` trains on 128 images for one epoch, so its accuracies sit near chance and
    its rewards rank plans poorly; a number from it looks like a result but is not one.
    Silent under pytest (``PYTEST_CURRENT_TEST``) and after the first warning of a process
    tree.
    """
    if os.environ.get("PYTEST_CURRENT_TEST") or os.environ.get(_SMOKE_WARNED):
        return
    os.environ[_SMOKE_WARNED] = "1"
    print("privacysplit: warning: 'smoke' fidelity is for tests: its accuracies are near chance and its rewards "
          "rank plans poorly; use 'cpu' (default) or 'paper' for results", file=sys.stderr)
