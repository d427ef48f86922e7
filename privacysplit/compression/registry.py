"""The registry: every technique of Table 2 by its short name, plus ``none``.

The order of :data:`COMPRESSORS` (``none, F1, F2, C1, C2, C3, W1, W2``) is the order of the
environment's compression actions; keep it stable.
"""

from __future__ import annotations

from collections.abc import Iterable

from privacysplit.compression.base import Compressor
from privacysplit.compression.filters import FilterPruning
from privacysplit.compression.fire import FireReplacement
from privacysplit.compression.identity import NoCompression
from privacysplit.compression.inverted import InvertedResidualReplacement
from privacysplit.compression.lowrank import LowRank, SparseLowRank
from privacysplit.compression.pruning import MagnitudePruning
from privacysplit.compression.separable import DepthwiseSeparable
from privacysplit.models import LayerSpec

COMPRESSORS: dict[str, Compressor] = {
    c.name: c
    for c in (
        NoCompression(),
        LowRank(),
        SparseLowRank(),
        DepthwiseSeparable(),
        InvertedResidualReplacement(),
        FireReplacement(),
        MagnitudePruning(),
        FilterPruning(),
    )
}

#: Technique names in registry (action) order.
TECHNIQUES: tuple[str, ...] = tuple(COMPRESSORS)


def get(name: str) -> Compressor:
    """The compressor registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if not isinstance(name, str) or name not in COMPRESSORS:
        raise ValueError(f"unknown compression technique {name!r}; valid: {', '.join(TECHNIQUES)}")
    return COMPRESSORS[name]


def applicable(spec: LayerSpec, techniques: Iterable[str] | None = None) -> list[str]:
    """Names of the techniques that apply to a layer described by ``spec``.

    Always starts with ``"none"``; the rest follow registry order, restricted to
    ``techniques`` when given (an environment may offer a subset).

    Raises:
        ValueError: when ``techniques`` names an unknown technique.
    """
    allowed = None
    if techniques is not None:
        allowed = set(techniques)
        unknown = allowed - set(COMPRESSORS)
        if unknown:
            raise ValueError(
                f"unknown compression techniques {sorted(unknown)}; valid: {', '.join(TECHNIQUES)}"
            )
    names = ["none"]
    for name, compressor in COMPRESSORS.items():
        if name == "none" or (allowed is not None and name not in allowed) or not spec.allows(name):
            continue
        if compressor.applies_to(spec):
            names.append(name)
    return names
