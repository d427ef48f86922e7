"""Regularized (aging) evolution, Real et al. 2019, "Regularized Evolution for Image
Classifier Architecture Search".

A population of plans starts random (one batch to ``evaluate_many``).  Each cycle samples a
few members at random (the tournament), copies the best of them, mutates one gene of the
copy — the partition point or one device layer's technique — and adds the child, removing
the *oldest* member (not the worst), which keeps the population young and robust to lucky
noisy rewards.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from privacysplit.agents.base import BaseSearcher, SearchRun, check_positive
from privacysplit.plan import Plan


@dataclass
class EvolutionConfig:
    seed: int = 0
    """seed of sampling and mutation"""
    population_size: int = 16
    """plans alive at a time (the first ones are uniform random, evaluated as one batch)"""
    tournament_size: int = 4
    """members sampled per cycle; the best of them is the parent"""
    batch_size: int = 1
    """children made (from independent tournaments) and evaluated per cycle"""
    avoid_duplicates: bool = True
    """retry a mutation (up to 20 times) that produces an already evaluated plan"""

    def __post_init__(self) -> None:
        for name in ("population_size", "tournament_size", "batch_size"):
            check_positive(name, getattr(self, name))
        if self.tournament_size > self.population_size:
            raise ValueError(f"tournament_size ({self.tournament_size}) must not exceed population_size ({self.population_size})")


def mutate(space, plan: Plan, rng: np.random.Generator) -> Plan:
    """``plan`` with one gene changed, still valid: the partition (keeping the techniques of
    layers that stay on the device) or the technique of one compressible device layer."""
    genes: list[int | None] = [None] if len(space.partitions) > 1 else []
    genes += [i for i in space.compressible(plan.partition)]
    if not genes:
        return plan
    gene = genes[int(rng.integers(len(genes)))]
    chosen = plan.mapping
    if gene is None:
        others = [p for p in space.partitions if p != plan.partition]
        p = others[int(rng.integers(len(others)))]
        return Plan(p, {i: t for i, t in chosen.items() if i <= p})
    options = [t for t in space.choices(gene) if t != chosen.get(gene, "none")]
    chosen[gene] = options[int(rng.integers(len(options)))]
    return Plan(plan.partition, chosen)


class RegularizedEvolution:
    """Ask/tell regularized evolution over ``space``: :meth:`initial` and :meth:`children`
    propose plans, :meth:`tell` adds a measured one to the population (dropping the oldest).

    Kept apart from :class:`EvolutionSearcher` so that a searcher measuring at another
    fidelity (``screened_evolution``) evolves the same way from the same seed.
    """

    def __init__(self, space, cfg: EvolutionConfig, rng: np.random.Generator) -> None:
        self.space, self.cfg, self.rng = space, cfg, rng
        self.seen: set[str] = set()
        self.population: deque[tuple[Plan, float]] = deque()

    def initial(self, limit: int | None = None) -> list[str]:
        """Up to ``population_size`` (and ``limit``) distinct random plans."""
        size = self.cfg.population_size if limit is None else min(limit, self.cfg.population_size)
        initial: list[str] = []
        for _ in range(20 * self.cfg.population_size):
            if len(initial) >= size or len(self.seen) >= self.space.count():
                break
            plan = str(self.space.sample(self.rng))
            if plan not in self.seen:
                self.seen.add(plan)
                initial.append(plan)
        return initial

    def children(self, n: int) -> list[str]:
        """``n`` mutated copies of tournament winners (independent tournaments)."""
        children = []
        for _ in range(n):
            picks = self.rng.choice(len(self.population), size=min(self.cfg.tournament_size, len(self.population)),
                                    replace=False)
            parent = max((self.population[int(i)] for i in picks), key=lambda m: m[1])[0]
            child = mutate(self.space, parent, self.rng)
            for _ in range(20 if self.cfg.avoid_duplicates else 0):
                if str(child) not in self.seen:
                    break
                child = mutate(self.space, parent, self.rng)
            self.seen.add(str(child))
            children.append(str(child))
        return children

    def tell(self, plan: str, reward: float) -> None:
        self.population.append((Plan.parse(plan), float(reward)))
        if len(self.population) > self.cfg.population_size:
            self.population.popleft()  # age-based removal: the oldest goes


class EvolutionSearcher(BaseSearcher):
    """Regularized evolution with tournament selection and age-based removal."""

    name = "evolution"
    Config = EvolutionConfig

    def run(self, env, run: SearchRun) -> None:
        cfg: EvolutionConfig = self.config
        evolution = RegularizedEvolution(run.space, cfg, np.random.default_rng(cfg.seed))
        for info in run.evaluate(evolution.initial()):
            evolution.tell(info["plan"], info["reward"])
        while not run.done and evolution.population:
            for info in run.evaluate(evolution.children(min(cfg.batch_size, run.remaining))):
                evolution.tell(info["plan"], info["reward"])
