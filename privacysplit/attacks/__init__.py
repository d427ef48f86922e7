"""Privacy attacks on released features and adversarial retraining (Algorithm 1).

* :func:`evaluate_split` — retrain a split network reactively or proactively and measure its
  accuracy and privacy loss with a fresh attacker (the environment's one call).
* :mod:`~privacysplit.attacks.decoders` — the mirror and the generic inversion decoders.
* :mod:`~privacysplit.attacks.whitening` — ZCA-whitened features for the attacker
  (``Fidelity.attack_input``).
* :mod:`~privacysplit.attacks.inversion` — feature inversion (P0 = MSE, P1 = SSIM).
* :mod:`~privacysplit.attacks.property` — property inference (P2).
* :mod:`~privacysplit.attacks.metrics` — SSIM (training and reference), MSE, baselines.
"""

from privacysplit.attacks.decoders import (
    DECODERS,
    FeatureStandardizer,
    GenericDecoder,
    build_decoder,
    mirror_decoder,
)
from privacysplit.attacks.inversion import INVERSION_METRICS, InversionResult, invert
from privacysplit.attacks.metrics import ssim_skimage, ssim_torch
from privacysplit.attacks.property import PropertyClassifier, PropertyResult, infer_property
from privacysplit.attacks.retraining import PRIVACY_METRICS, THREATS, evaluate_split, train_split
from privacysplit.attacks.whitening import FeatureWhitener

__all__ = [
    "DECODERS",
    "INVERSION_METRICS",
    "PRIVACY_METRICS",
    "THREATS",
    "FeatureStandardizer",
    "FeatureWhitener",
    "GenericDecoder",
    "InversionResult",
    "PropertyClassifier",
    "PropertyResult",
    "build_decoder",
    "evaluate_split",
    "infer_property",
    "invert",
    "mirror_decoder",
    "ssim_skimage",
    "ssim_torch",
    "train_split",
]
