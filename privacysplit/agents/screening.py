"""Screened evolution: evolve at a cheap fidelity, then measure the best screened plans fully.

A multi-fidelity searcher built from what the reward tables showed about screening
(``benchmarks/reward_table.py``).  With a cheap fidelity that ranks plans well but not
perfectly (Spearman 0.83-0.88 on the lenet tables; the ``cpu`` optimum ranked 8th / 11th
there), what finds the target optimum at a small compute is (1) a *search* at the low
fidelity, not random screening, so that the screened plans are good ones, and (2) spending
the target evaluations only at the end, on the best of everything screened, instead of on
whichever plans were best so far while the search was young.  Optuna's asynchronous
successive halving (:mod:`privacysplit.agents.multifidelity`) does neither -- its TPE
proposals are weaker than evolution at the low fidelity and it promotes a third of the plans
as they come -- and on the whole lenet table it stayed at 0.094 regret with 25 compute where
this searcher reaches 0.031 (README, issue 16 item 3).

The search, for a ``budget`` of target-fidelity-equivalent compute (a target evaluation 1, a
low one ``cost_ratio``):

1. ``k = max(1, round((1 - screen_fraction) * budget))`` target evaluations are set aside;
2. regularized evolution (:class:`~privacysplit.agents.evolution.RegularizedEvolution`, its
   fitness the low-fidelity reward) screens ``floor((budget - k) / cost_ratio)`` distinct
   plans;
3. the best screened plans by low-fidelity reward are measured at the target fidelity, as
   many as the compute left pays for (``k``, or more when the space ran out of new plans).

Because the split depends on the budget, a search is not *anytime*: ``best_within(c)`` of a
search with a larger budget is not what a search with budget ``c`` finds (``anytime`` is
false, and ``benchmarks/reward_table.py`` runs one search per budget).

.. code-block:: python

    env = gym.make("PrivacySplit-v0", base="lenet", fidelity="cpu")
    result = make_agent("screened_evolution").search(env, budget=25)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privacysplit.agents.base import SearchRun, check_positive
from privacysplit.agents.evolution import EvolutionConfig, RegularizedEvolution
from privacysplit.agents.multifidelity import (
    COMPUTE_EPS,
    MAX_FREE,
    SCREEN_FIDELITY,
    LowFidelitySearcher,
    check_low_fidelity,
)
from privacysplit.fidelity import Fidelity


@dataclass
class ScreenedEvolutionConfig:
    seed: int = 0
    """seed of the evolution"""
    screen_fraction: float = 0.75
    """share of the budget spent screening (the rest measures the best screened plans at the
    target fidelity).  0.75 had the lowest regret at 25 compute on seeds 0-9 of both lenet
    reward tables among 0.6-0.8 (``benchmarks/results/reward_table_full/screened_evolution``)"""
    population_size: int = 16
    """plans alive in the low-fidelity evolution"""
    tournament_size: int = 4
    """members sampled per cycle; the best of them is the parent"""
    batch_size: int = 1
    """children screened together (one ``evaluate_many`` at the low fidelity)"""
    low_fidelity: str | Fidelity = SCREEN_FIDELITY
    """fidelity of the low evaluator built from the env's evaluator (when no ``low_env``)"""
    cost_ratio: float | None = None
    """compute of one low-fidelity evaluation in target evaluations (see
    :class:`~privacysplit.agents.multifidelity.MultiFidelityConfig`)"""

    def __post_init__(self) -> None:
        if isinstance(self.screen_fraction, bool) or not isinstance(self.screen_fraction, (int, float)) \
                or not 0 < self.screen_fraction < 1:
            raise ValueError(f"screen_fraction must be a number in (0, 1), got {self.screen_fraction!r}")
        check_positive("batch_size", self.batch_size)
        EvolutionConfig(population_size=self.population_size, tournament_size=self.tournament_size)  # checks
        check_low_fidelity(self.low_fidelity, self.cost_ratio)


def split_budget(budget: float, screen_fraction: float, ratio: float) -> tuple[int, int]:
    """``(screens, promotions)`` a budget pays for (see the module docstring).

    Raises:
        ValueError: when the budget cannot pay for one screening and one promotion.
    """
    promotions = max(1, round((1 - screen_fraction) * budget))
    screens = math.floor((budget - promotions) / ratio + COMPUTE_EPS) if budget >= promotions else 0
    if screens < 1:
        raise ValueError(f"a budget of {budget} compute cannot pay for one screening ({ratio}) and one promotion "
                         f"(1); give at least {1 + ratio:g}")
    return screens, promotions


class ScreenedEvolutionSearcher(LowFidelitySearcher):
    """Regularized evolution at a low fidelity, then its best plans at the env's fidelity
    (``low_env`` and options: see :class:`LowFidelitySearcher`,
    :class:`ScreenedEvolutionConfig`)."""

    name = "screened_evolution"
    Config = ScreenedEvolutionConfig
    anytime = False

    def screen(self, run: SearchRun, low, ratio: float) -> None:
        cfg: ScreenedEvolutionConfig = self.config
        screens, _ = split_budget(run.budget, cfg.screen_fraction, ratio)
        evolution = RegularizedEvolution(run.space, EvolutionConfig(population_size=cfg.population_size,
                                                                    tournament_size=cfg.tournament_size),
                                         np.random.default_rng(cfg.seed))
        rewards: dict[str, float] = {}  # this search's low-fidelity measurements
        batch = evolution.initial(limit=screens)
        free_in_a_row = 0
        while batch and not run.done:
            new = list(dict.fromkeys(p for p in batch if p not in rewards))
            free_in_a_row = 0 if new else free_in_a_row + len(batch)
            if free_in_a_row >= MAX_FREE:  # the evolution keeps proposing screened plans
                break
            for plan, info in zip(new, low.evaluate_many(new), strict=True):
                rewards[plan] = float(info["reward"])
                self.compute = len(rewards) * ratio
                self.low_history.append({"screen": len(rewards), "plan": plan, "reward": rewards[plan],
                                         "promoted": False, "compute": self.compute})
                run.log_scalar("search/low_reward", rewards[plan], len(rewards))
            for plan in batch:
                evolution.tell(plan, rewards[plan])
            left = screens - len(rewards)
            if left <= 0 or len(evolution.seen) >= run.space.count():
                break
            batch = evolution.children(min(cfg.batch_size, left))
        self._promote(run, rewards, ratio)

    def _promote(self, run: SearchRun, rewards: dict[str, float], ratio: float) -> None:
        """Measure the best screened plans at the target fidelity, as many as the compute pays."""
        n = min(len(rewards), math.floor(run.budget - len(rewards) * ratio + COMPUTE_EPS))
        best = sorted(rewards, key=lambda p: -rewards[p])[:n]
        if not best or run.done:
            return
        rows = {r["plan"]: r for r in self.low_history}
        infos = run.evaluate(best)
        rows_now = run.history[len(run.history) - len(infos):]
        for measured, (info, row) in enumerate(zip(infos, rows_now, strict=True), start=1):
            rows[str(info["plan"])]["promoted"] = True
            self.compute = len(rewards) * ratio + measured
            row["compute"] = self.compute
        run.log_scalar("search/compute", self.compute)
        run.stop("budget")
