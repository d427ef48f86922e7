"""Rewards: Eq. 13 and Eq. 18 of the paper as named, pluggable objects (CompilerGym style).

``R = R_A * R_P * R_S`` with ``R_A = min(A / A_base, 1)``, ``R_P = 1 - P`` and
``R_S = S (2 - S)`` (concave: the first savings matter most).  ``R_A`` is capped at 1 so the
reward stays in [0, 1] even when a compressed model happens to beat the base network on the
validation split (the paper's Eq. 13 leaves it uncapped; the cap changes no ranking among
plans that do not beat the base).

Eq. 18 multiplies by ``1{A > A_m, P < P_m, S > S_m}``.  Table 12 of the paper writes
"no constraint" as ``A_m = P_m = S_m = 0``; read literally, ``P < 0`` could never hold, so a
threshold that is ``None`` or (for P) ``<= 0`` is disabled.

A privacy threshold alone (``A_m = 0``) is met by any plan whose network stopped learning:
its features carry nothing, so P is low.  Measured on LeNet (Table 12 in the README), a search
under ``P_m`` alone can settle on such a plan (A 0.10); pair ``P_m`` with an ``A_m``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """User tolerances of Eq. 18; ``None`` disables a threshold."""

    accuracy: float | None = None
    privacy: float | None = None
    resource: float | None = None

    def __post_init__(self) -> None:
        """Each threshold is ``None`` or a finite number in [0, 1]: A, P and S all live in
        [0, 1], so anything else (a string, NaN, 1.5) would silently make Eq. 18's indicator
        always true or always false, and every reward 0."""
        for name in ("accuracy", "privacy", "resource"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                    or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"threshold {name} must be None or a number in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))

    @classmethod
    def from_any(cls, value: Thresholds | dict | tuple | list | None) -> Thresholds | None:
        """Accept ``Thresholds``, ``{"A": .., "P": .., "S": ..}`` or ``(A_m, P_m, S_m)``."""
        if value is None or isinstance(value, Thresholds):
            return value
        if isinstance(value, dict):
            aliases = {"A": "accuracy", "P": "privacy", "S": "resource", "A_m": "accuracy", "P_m": "privacy", "S_m": "resource"}
            unknown = set(value) - set(aliases) - {"accuracy", "privacy", "resource"}
            if unknown:
                raise ValueError(f"unknown threshold keys {sorted(unknown)}; valid keys: A, P, S (or accuracy, privacy, resource)")
            return cls(**{aliases.get(k, k): v for k, v in value.items()})
        if isinstance(value, (tuple, list)) and len(value) == 3:
            return cls(*value)
        raise ValueError(f"thresholds must be (A_m, P_m, S_m), a dict with keys A/P/S, or None; got {value!r}")

    def satisfied(self, accuracy: float, privacy: float, resource: float) -> bool:
        if self.accuracy is not None and self.accuracy > 0 and not accuracy > self.accuracy:
            return False
        if self.privacy is not None and self.privacy > 0 and not privacy < self.privacy:
            return False
        return not (self.resource is not None and self.resource > 0 and not resource > self.resource)


@dataclass(frozen=True)
class Reward:
    """Eq. 13, or Eq. 18 when ``thresholds`` is given."""

    thresholds: Thresholds | None = None

    @property
    def name(self) -> str:
        return "eq18" if self.thresholds is not None else "eq13"

    def factors(self, accuracy: float, accuracy_base: float, privacy: float, resource: float) -> dict[str, float]:
        """``R_A``, ``R_P``, ``R_S`` and their product ``reward``."""
        r_a = min(max(accuracy / accuracy_base, 0.0), 1.0) if accuracy_base > 0 else 0.0
        r_p = min(max(1.0 - privacy, 0.0), 1.0)
        s = min(max(resource, 0.0), 1.0)
        r_s = s * (2.0 - s)
        reward = r_a * r_p * r_s
        if self.thresholds is not None and not self.thresholds.satisfied(accuracy, privacy, resource):
            reward = 0.0
        return {"R_A": r_a, "R_P": r_p, "R_S": r_s, "reward": reward}
