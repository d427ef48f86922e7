"""Bayesian optimisation with Optuna's Tree-structured Parzen Estimator (TPE).

Each trial suggests the partition, then one technique per compressible device layer (the
``layer<i>`` parameters exist only in trials whose partition keeps layer ``i`` on the device:
a conditional space, which TPE models per parameter).  Rewards are maximised.  Optuna's own
logging is silenced during the search.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from privacysplit.agents.base import BaseSearcher, SearchRun, check_positive
from privacysplit.plan import Plan


@dataclass
class TPEConfig:
    seed: int = 0
    """seed of the TPE sampler"""
    n_startup_trials: int = 10
    """random trials before TPE starts modelling"""
    multivariate: bool = False
    """model parameters jointly (Optuna's multivariate TPE, with ``group=True`` for the
    conditional space); the default is independent per-parameter TPE"""
    batch_size: int = 1
    """trials asked (and evaluated together) at a time"""

    def __post_init__(self) -> None:
        check_positive("n_startup_trials", self.n_startup_trials)
        check_positive("batch_size", self.batch_size)


def trial_plan(trial, space) -> Plan:
    """The plan an Optuna trial suggests (partition first, then device layers)."""
    partition = trial.suggest_categorical("partition", list(space.partitions))
    chosen = {i: trial.suggest_categorical(f"layer{i}", list(space.choices(i))) for i in space.compressible(partition)}
    return Plan(int(partition), chosen)


class TPESearcher(BaseSearcher):
    """Optuna TPE over the partition and the per-layer technique choices."""

    name = "tpe"
    Config = TPEConfig

    def run(self, env, run: SearchRun) -> None:
        import warnings

        import optuna

        cfg: TPEConfig = self.config
        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = optuna.samplers.TPESampler(
                    seed=cfg.seed, n_startup_trials=cfg.n_startup_trials,
                    multivariate=cfg.multivariate, group=cfg.multivariate,
                )
                self.study = optuna.create_study(direction="maximize", sampler=sampler)
                while not run.done:
                    trials = [self.study.ask() for _ in range(min(cfg.batch_size, run.remaining))]
                    plans = [str(trial_plan(t, run.space)) for t in trials]
                    infos = run.evaluate(plans)
                    for trial, info in zip(trials, infos, strict=False):
                        self.study.tell(trial, float(info["reward"]))
        finally:
            optuna.logging.set_verbosity(level)
