"""Random search, the paper's baseline: a partition uniformly, then a technique uniformly for
each compressible device layer; each plan proposed at most once.

``draw="plan"`` draws uniformly over all valid plans instead (then most draws land on the
deepest partitions, which have the most technique combinations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privacysplit.agents.base import BaseSearcher, SearchRun, check_positive
from privacysplit.envs.space import SAMPLING


@dataclass
class RandomConfig:
    seed: int = 0
    """seed of the plan sampler"""
    draw: str = "partition"
    """``partition`` (the paper: partition uniformly, then techniques uniformly) or ``plan``
    (uniform over all valid plans)"""
    batch_size: int = 8
    """plans proposed (and handed to ``evaluate_many``) at a time"""
    allow_repeats: bool = False
    """allow proposing a plan twice (plain i.i.d. sampling); otherwise every plan is new and the
    search stops (``stop_reason="exhausted"``) once the whole space has been proposed"""

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size)
        if self.draw not in SAMPLING:
            raise ValueError(f"unknown draw {self.draw!r}; valid: {', '.join(SAMPLING)}")


class RandomSearcher(BaseSearcher):
    """Random search over the valid plans (``space.sample(rng, by=draw)``), without repeats."""

    name = "random"
    Config = RandomConfig

    def run(self, env, run: SearchRun) -> None:
        cfg: RandomConfig = self.config
        space = run.space
        rng = np.random.default_rng(cfg.seed)
        seen: set[str] = set()
        total = space.count()
        while not run.done:
            n = min(cfg.batch_size, run.remaining)
            if cfg.allow_repeats:
                batch = [str(space.sample(rng, cfg.draw)) for _ in range(n)]
            else:
                batch = self._fresh(space, rng, seen, n, total, cfg.draw)
            if not batch:
                run.stop("exhausted")
                break
            run.evaluate(batch)

    @staticmethod
    def _fresh(space, rng: np.random.Generator, seen: set[str], n: int, total: int, draw: str) -> list[str]:
        """Up to ``n`` unseen plans (rejection sampling; uniform over the rest near the end)."""
        batch: list[str] = []
        tries = 0
        while len(batch) < n and len(seen) < total:
            if tries > 20 * n:  # the space is nearly used up: draw from what is left
                left = [str(p) for p in space if str(p) not in seen]
                picks = rng.permutation(len(left))[: n - len(batch)]
                for i in picks:
                    seen.add(left[i])
                    batch.append(left[i])
                break
            tries += 1
            plan = str(space.sample(rng, draw))
            if plan not in seen:
                seen.add(plan)
                batch.append(plan)
        return batch
