"""The search space of one base network: partitions x per-layer technique choices.

Shared by the environment (masks, stepping) and the searchers (sampling, enumeration), so
both agree on exactly which plans exist.  Building it costs a few microseconds per layer and
no training.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from privacysplit.compression import COMPRESSORS, applicable
from privacysplit.models import LayerSpec
from privacysplit.plan import Plan

#: every technique name in registry order; the env's action indices follow this order
ALL_TECHNIQUES: tuple[str, ...] = tuple(COMPRESSORS)


#: how :meth:`SearchSpace.sample` draws: uniform over plans, or the paper's partition first
SAMPLING: tuple[str, ...] = ("plan", "partition")


class SearchSpace:
    """Valid plans of a network for a technique subset and (optionally) fewer partitions.

    Args:
        layers: the base network's layer specs.
        techniques: technique names to search over (``none`` is always included).
        partitions: allowed partition indices (default: every layer).
    """

    def __init__(
        self,
        layers: Sequence[LayerSpec],
        techniques: Sequence[str] | None = None,
        partitions: Sequence[int] | None = None,
    ) -> None:
        self.layers = list(layers)
        names = list(ALL_TECHNIQUES) if techniques is None else list(techniques)
        unknown = [t for t in names if t not in COMPRESSORS]
        if unknown:
            raise ValueError(f"unknown techniques {unknown}; valid techniques: {', '.join(COMPRESSORS)}")
        self.techniques: list[str] = ["none"] + [t for t in ALL_TECHNIQUES if t in names and t != "none"]
        n = len(self.layers)
        if partitions is None:
            self.partitions = list(range(n))
        else:
            bad = [p for p in partitions if not (isinstance(p, (int, np.integer)) and 0 <= p < n)]
            if bad or not partitions:
                raise ValueError(f"partitions {bad or '[]'} outside the network; valid: 0..{n - 1}")
            self.partitions = sorted({int(p) for p in partitions})
        self._choices = [applicable(spec, self.techniques) for spec in self.layers]

    def choices(self, layer: int) -> list[str]:
        """Technique names valid at ``layer`` (``none`` first)."""
        return self._choices[layer]

    def compressible(self, partition: int) -> list[int]:
        """Device-side layers with a real choice (more than ``none``)."""
        return [i for i in range(partition + 1) if len(self._choices[i]) > 1]

    def count(self, partition: int | None = None) -> int:
        """Number of plans (for one partition, or in total)."""
        parts = self.partitions if partition is None else [partition]
        return sum(math.prod(len(self._choices[i]) for i in self.compressible(p)) for p in parts)

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[Plan]:
        """Every plan, partitions ascending, techniques in registry order (deterministic)."""
        for p in self.partitions:
            layers = self.compressible(p)
            for combo in itertools.product(*(self._choices[i] for i in layers)):
                yield Plan(p, dict(zip(layers, combo, strict=True)))

    def sample(self, rng: np.random.Generator, by: str = "plan") -> Plan:
        """A random valid plan.

        ``by="plan"`` draws uniformly from all valid plans (a partition with more
        compressible layers is drawn more often: on lenet and alexnet about 60% of draws
        land on the last partition); ``by="partition"`` draws like the paper's random
        baseline: a partition uniformly from the allowed ones, then a technique uniformly
        for each compressible device layer.
        """
        if by not in SAMPLING:
            raise ValueError(f"unknown sampling {by!r}; valid: {', '.join(SAMPLING)}")
        if by == "partition":
            p = self.partitions[int(rng.integers(len(self.partitions)))]
        else:
            weights = np.array([self.count(p) for p in self.partitions], dtype=float)
            p = self.partitions[int(rng.choice(len(weights), p=weights / weights.sum()))]
        return Plan(p, {i: self._choices[i][int(rng.integers(len(self._choices[i])))] for i in self.compressible(p)})

    def validate(self, plan: Plan | str) -> Plan:
        """Parse ``plan`` and check it lies in this space.

        Raises:
            ValueError: naming the offending partition or layer and the valid choices.
        """
        plan = Plan.parse(plan)
        if plan.partition not in self.partitions:
            raise ValueError(
                f"plan {plan}: partition {plan.partition} is not allowed; valid partitions: "
                f"{_ranges(self.partitions)}"
            )
        for layer, name in plan.techniques:
            if name not in self._choices[layer]:
                raise ValueError(
                    f"plan {plan}: technique {name!r} does not apply to layer {layer} "
                    f"({self.layers[layer]}); valid choices there: {', '.join(self._choices[layer])}"
                )
        return plan


def _ranges(values: list[int]) -> str:
    if values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))
