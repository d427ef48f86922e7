"""Exhaustive search: every valid plan in the space's deterministic order.

``restricted=True`` gives the paper's restricted baseline (section 7.3.3): three
representative partition points (front, middle, rear) times one technique applied to every
device layer it fits, so a few dozen plans however large the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from privacysplit.agents.base import BaseSearcher, SearchRun, check_positive
from privacysplit.plan import Plan


@dataclass
class ExhaustiveConfig:
    restricted: bool = False
    """search the paper's restricted space (front/middle/rear partition x one technique on
    every applicable device layer) instead of every plan"""
    partitions: list[int] | None = None
    """partition points of the restricted space (default: the middle of the first, middle
    and last third of the allowed partitions)"""
    limit: int | None = 5000
    """refuse a space with more plans than this (``None``: no limit)"""
    batch_size: int = 16
    """plans handed to ``evaluate_many`` at a time"""
    seed: int = 0
    """unused (the order is deterministic); kept so every agent takes a seed"""

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size)
        check_positive("limit", self.limit, allow_none=True)


def restricted_partitions(space) -> list[int]:
    """Front, middle and rear partition points: centres of the thirds of the allowed ones."""
    parts = space.partitions
    picks = [parts[min(len(parts) - 1, int(q * len(parts)))] for q in (1 / 6, 1 / 2, 5 / 6)]
    return sorted(set(picks))


def restricted_plans(space, partitions: list[int] | None = None) -> list[Plan]:
    """The restricted space: each partition x each technique on every layer it fits."""
    partitions = restricted_partitions(space) if partitions is None else partitions
    bad = [p for p in partitions if p not in space.partitions]
    if bad:
        raise ValueError(f"restricted partitions {bad} are not allowed; valid partitions: {space.partitions}")
    plans, seen = [], set()
    for p in partitions:
        for name in space.techniques:
            plan = Plan(p, {i: name for i in space.compressible(p) if name in space.choices(i)})
            if str(plan) not in seen:
                seen.add(str(plan))
                plans.append(plan)
    return plans


class ExhaustiveSearcher(BaseSearcher):
    """Evaluate every plan (or the paper's restricted set), in a deterministic order."""

    name = "exhaustive"
    Config = ExhaustiveConfig

    def plans(self, space) -> list[Plan]:
        """The plans this searcher will evaluate, in order.

        Raises:
            ValueError: when the space has more plans than ``limit``.
        """
        cfg: ExhaustiveConfig = self.config
        if cfg.restricted:
            return restricted_plans(space, cfg.partitions)
        size = space.count()
        if cfg.limit is not None and size > cfg.limit:
            raise ValueError(
                f"the search space has {size} plans, more than limit={cfg.limit}; pass limit=None "
                "to search it all anyway, use restricted=True (the paper's restricted baseline), or "
                "narrow the env's techniques= / partitions="
            )
        return list(space)

    def run(self, env, run: SearchRun) -> None:
        plans = self.plans(run.space)
        for start in range(0, len(plans), self.config.batch_size):
            if run.done:
                return
            run.evaluate(plans[start : start + self.config.batch_size])
        if not run.done:
            run.stop("exhausted")
