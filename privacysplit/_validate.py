"""Argument checks shared by the constructors: a bad value fails at construction, in one line.

A seed of ``1.5`` silently truncated, a NaN noise level or learning rate, a threshold of
``"0.8"``: each used to be accepted and then either change what was measured or make every
evaluation fail with reward 0, so a search would spend its whole budget on nothing.  These
helpers raise ``ValueError`` naming the argument, the value and what is allowed.
"""

from __future__ import annotations

import math
import numbers

#: seeds are passed to torch and numpy generators, which take 64-bit values
SEED_LIMIT = 2**63


def check_int(name: str, value, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an ``int`` if it is an integer (not a bool) in ``[minimum, maximum)``."""
    bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum})"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value >= maximum):
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return value


def check_seed(value, name: str = "seed") -> int:
    """A seed: an integer in ``[0, 2**63)``."""
    return check_int(name, value, minimum=0, maximum=SEED_LIMIT)


def check_float(
    name: str, value, *, minimum: float | None = None, maximum: float | None = None,
    strict_minimum: bool = False,
) -> float:
    """``value`` as a finite ``float`` within the bounds (a bool or a string is refused).

    ``strict_minimum`` excludes ``minimum`` itself (learning rates must be positive).
    """
    lo = "" if minimum is None else (f"> {minimum}" if strict_minimum else f">= {minimum}")
    hi = "" if maximum is None else f"<= {maximum}"
    allowed = "a finite number" + (f" {lo}" if lo else "") + (f"{' and' if lo else ''} {hi}" if hi else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if minimum is not None and (value < minimum or (strict_minimum and value == minimum)):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value
