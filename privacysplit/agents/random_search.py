"""Random search: plans drawn uniformly from the valid ones, each proposed at most once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from privacysplit.agents.base import BaseSearcher, SearchRun, check_positive


@dataclass
class RandomConfig:
    seed: int = 0
    """seed of the plan sampler"""
    batch_size: int = 8
    """plans proposed (and handed to ``evaluate_many``) at a time"""
    allow_repeats: bool = False
    """allow proposing a plan twice (plain i.i.d. sampling); otherwise every plan is new and the
    search stops (``stop_reason="exhausted"``) once the whole space has been proposed"""

    def __post_init__(self) -> None:
        check_positive("batch_size", self.batch_size)


class RandomSearcher(BaseSearcher):
    """Uniform random search over the valid plans (``space.sample``), without repeats."""

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
            batch = [str(space.sample(rng)) for _ in range(n)] if cfg.allow_repeats else self._fresh(space, rng, seen, n, total)
            if not batch:
                run.stop("exhausted")
                break
            run.evaluate(batch)

    @staticmethod
    def _fresh(space, rng: np.random.Generator, seen: set[str], n: int, total: int) -> list[str]:
        """Up to ``n`` unseen plans, uniform over the unseen ones."""
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
            plan = str(space.sample(rng))
            if plan not in seen:
                seen.add(plan)
                batch.append(plan)
        return batch
