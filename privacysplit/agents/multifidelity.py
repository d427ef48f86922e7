"""Multi-fidelity search: screen many plans cheaply, measure only the promising ones fully.

When a plan's reward at a cheap fidelity ranks plans like the reward at the target fidelity,
for a small fraction of its cost, a searcher can look at many more plans by measuring all of
them cheaply and only the best of them at the target fidelity.  Whether it does is a
measurement: ``benchmarks/reward_table.py`` gives the Spearman correlation and the cost
ratio (CPU seconds, plans timed back to back) of two fidelities over a whole space.  On the
212-plan lenet/mnist table at ``cpu`` (evaluation version 7): ``smoke`` (128 images) costs
0.031 of a ``cpu`` evaluation but ranks plans poorly (Spearman 0.302); ``cpu:n_ec=1:n_d=2``
ranks them well (0.944) but costs 0.644, because the attack's fixed costs do not shrink with
its epochs; :data:`SCREEN_FIDELITY` (half the images, one epoch of each) ranks at 0.917 for
0.622, the default.  (Under version 5 it cost 0.350: version 7's attacker reads the whole
training split at full epochs, and at 1,000 retraining images the attack is most of an
evaluation.  The same screen with the cheaper attacker on its retraining images,
``SCREEN_FIDELITY + ":reactive_aux=subset"``, costs 0.207 and ranks at 0.830; at 50 compute
on seeds 0-9 it left hyperband's median regret at 0.0000 (7/10 seeds found the optimum,
against 0.0046, 5/10), successive halving's at 0.0093 (2/10, against 0.0046, 5/10) and
``screened_evolution``'s at 0.0093 (0.0564 at 25 compute, against 0.0230): no better on the
whole, so the default stays.)  Screening pays off only with a low fidelity that ranks well.

The bookkeeping is Optuna's: every plan is a trial whose partition and techniques a sampler
suggests (TPE by default, the same conditional space as :mod:`privacysplit.agents.tpe`); its
low-fidelity reward is reported at step 1 and the pruner decides whether it is promoted to
the target fidelity, whose reward completes the trial.

* ``successive_halving`` — Optuna's (asynchronous) :class:`~optuna.pruners.SuccessiveHalvingPruner`:
  a plan is promoted when its low-fidelity reward is in the top ``1 / reduction_factor`` of
  every plan screened so far (the first ones are promoted when they are the best so far).
* ``hyperband`` — Optuna's :class:`~optuna.pruners.HyperbandPruner`: trials are split
  between a bracket that screens like successive halving and one that measures every plan at
  the target fidelity (a hedge for when the cheap fidelity ranks poorly).

At small budgets :mod:`privacysplit.agents.screening` (``screened_evolution``) finds better
plans with the same compute: it screens with evolution and promotes only at the end.  These
two promote as they go, so every prefix of their search is a smaller search.

**Budget.** ``search(env, budget)`` counts *target-fidelity-equivalent compute*: a target
evaluation costs 1, a low-fidelity evaluation ``cost_ratio`` (its cost over a target
evaluation's).  As for every searcher, a plan this search has already measured at a
fidelity is free at that fidelity.  A new plan is only screened while the compute left pays
for it *and* for its promotion, so the budget is never exceeded.  Each promotion decision is
final: a plan proposed again is answered from this search's memory.

**Results.** A :class:`MultiFidelityResult`: ``history`` holds the target-fidelity
evaluations (each row with the ``compute`` spent when it finished), ``low_history`` the
low-fidelity ones (plan, reward, whether promoted, compute), so both are recorded apart;
``best_within(c)`` is the best target reward found within compute ``c``.

.. code-block:: python

    env = gym.make("PrivacySplit-v0", base="lenet", fidelity="cpu")
    result = make_agent("successive_halving").search(env, budget=25)  # screens at SCREEN_FIDELITY

On reward tables (no training) pass the low-fidelity table as ``low_env``:
``make_agent("hyperband", low_env=table_env(table=smoke_table))``; the cost ratio is then
the ratio of the tables' median ``eval_seconds`` unless ``cost_ratio`` is given.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

from privacysplit.agents.base import BaseSearcher, SearchRun, check_positive, unwrap
from privacysplit.agents.result import SearchResult
from privacysplit.agents.tpe import trial_plan
from privacysplit.fidelity import Fidelity, fidelity_from_spec

#: pruners by name: ``none`` promotes every plan (no screening saving, only the extra cost)
PRUNERS = ("successive_halving", "hyperband", "none")

#: samplers by name
SAMPLERS = ("tpe", "random")

#: the default low fidelity: ``cpu`` on half the images (its base network trains twice the
#: epochs, so as many steps), one retraining and one attacker epoch
SCREEN_FIDELITY = "cpu:n_train=1000:base_epochs=10:n_ec=1:n_d=1"

#: low/target cost ratios measured by ``benchmarks/reward_table.py --time-plans 8`` (lenet/mnist:
#: median CPU seconds of the same 8 plans timed back to back, one thread; see
#: ``benchmarks/results/reward_table/summary.md``); used for real evaluators when no
#: ``cost_ratio`` is given.  Other networks have other ratios: pass ``cost_ratio``.
MEASURED_COST_RATIOS: dict[tuple[str, str], float] = {
    ("smoke", "cpu"): 0.031,
    ("cpu-n_ec1-n_d2", "cpu"): 0.644,
    ("cpu-n_train1000-base_epochs10-n_ec1-n_d1", "cpu"): 0.622,
}

#: columns of ``low_history`` (and of ``low_history.csv``)
LOW_COLUMNS = ("screen", "plan", "reward", "promoted", "compute")

#: slack when comparing compute sums of float cost ratios with a budget
COMPUTE_EPS = 1e-9


@dataclass
class MultiFidelityConfig:
    seed: int = 0
    """seed of the sampler"""
    pruner: str = "successive_halving"
    """``successive_halving``, ``hyperband`` or ``none`` (see the module docstring)"""
    reduction_factor: int = 3
    """a screened plan is promoted when it ranks in the top ``1 / reduction_factor`` (3: on
    the lenet reward table, screening at :data:`SCREEN_FIDELITY` with TPE, 3 beat 2 and 4)"""
    sampler: str = "tpe"
    """``tpe`` (Optuna TPE, fed the target rewards and the pruned trials' low-fidelity
    rewards; on small spaces it soon proposes mostly plans already screened, which are free
    but slow to ask) or ``random`` (partition, then techniques: classic successive halving
    over random plans).  TPE is the default: on the lenet reward table it had the lower
    median regret at 25 compute for every reduction factor (2-4) and both pruners."""
    n_startup_trials: int = 10
    """random trials before TPE starts modelling"""
    low_fidelity: str | Fidelity = SCREEN_FIDELITY
    """fidelity of the low evaluator built from the env's evaluator (when no ``low_env``): a
    preset, ``preset:field=value:...`` (see :func:`fidelity_from_spec`) or a Fidelity"""
    cost_ratio: float | None = None
    """compute of one low-fidelity evaluation in target evaluations; ``None``: the ratio of
    the tables' median ``eval_seconds`` (reward tables), else :data:`MEASURED_COST_RATIOS`"""
    batch_size: int = 1
    """trials asked, screened and promoted together (one ``evaluate_many`` per fidelity)"""

    def __post_init__(self) -> None:
        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r}; valid pruners: {', '.join(PRUNERS)}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
        check_positive("n_startup_trials", self.n_startup_trials)
        check_positive("batch_size", self.batch_size)
        if isinstance(self.reduction_factor, bool) or not isinstance(self.reduction_factor, int) \
                or self.reduction_factor < 2:
            raise ValueError(f"reduction_factor must be an integer >= 2, got {self.reduction_factor!r}")
        check_low_fidelity(self.low_fidelity, self.cost_ratio)


def check_low_fidelity(low_fidelity, cost_ratio) -> None:
    """Refuse a bad ``low_fidelity`` spec or ``cost_ratio`` when a searcher is built."""
    check_positive("cost_ratio", cost_ratio, integer=False, allow_none=True)
    fidelity_from_spec(low_fidelity)  # a bad name or field fails now


@dataclass
class HyperbandConfig(MultiFidelityConfig):
    pruner: str = "hyperband"
    """``successive_halving``, ``hyperband`` or ``none`` (see the module docstring)"""


@dataclass
class MultiFidelityResult(SearchResult):
    """A :class:`SearchResult` with the low-fidelity screening kept apart.

    Attributes:
        low_history: one row per plan screened at the low fidelity, in order, with the
            keys of :data:`LOW_COLUMNS` (``compute``: spent once it was screened).
        low_fidelity: name of the low fidelity.
        cost_ratio: compute of one low-fidelity evaluation (a target evaluation is 1).
        compute: target-fidelity-equivalent compute spent (never above ``budget``).
    """

    low_history: list[dict] = field(default_factory=list)
    low_fidelity: str = ""
    cost_ratio: float = 0.0
    compute: float = 0.0

    @property
    def low_evaluations(self) -> int:
        """Plans screened at the low fidelity."""
        return len(self.low_history)

    @property
    def high_evaluations(self) -> int:
        """Plans measured at the target fidelity (the same as :attr:`evaluations`)."""
        return self.evaluations

    def best_within(self, compute: float) -> float:
        """Best target-fidelity reward found within ``compute`` (``-inf`` if none)."""
        rewards = [float(r["reward"]) for r in self.history if float(r.get("compute", math.inf)) <= compute + COMPUTE_EPS]
        return max(rewards, default=-math.inf)

    def low_to_csv(self, path: str | Path) -> Path:
        """Write :attr:`low_history`, one row per screened plan."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, LOW_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.low_history)
        return path


def _table_seconds(evaluator) -> float | None:
    """Median measured ``eval_seconds`` of a reward table's rows (``None``: not a table)."""
    rows = getattr(evaluator, "rows", None)
    if not isinstance(rows, dict):
        return None
    seconds = [float(r["eval_seconds"]) for r in rows.values() if isinstance(r.get("eval_seconds"), (int, float))]
    seconds = [s for s in seconds if math.isfinite(s) and s > 0]
    return float(np.median(seconds)) if seconds else None


def _fidelity_name(evaluator) -> str:
    fid = getattr(evaluator, "fidelity", None)
    return getattr(fid, "name", None) or getattr(evaluator, "name", "") or type(evaluator).__name__


class LowFidelitySearcher(BaseSearcher):
    """What every multi-fidelity searcher shares: its low-fidelity evaluator, the cost ratio,
    the compute count and a :class:`MultiFidelityResult`.  Subclasses implement
    :meth:`screen`; their ``Config`` has ``low_fidelity`` and ``cost_ratio``.

    Args:
        low_env: the low-fidelity env or evaluator (anything with ``space`` and
            ``evaluate_many`` over the same space).  Default: an
            :class:`~privacysplit.envs.evaluator.Evaluator` with the env's settings at
            ``low_fidelity`` (sharing its cache and executor settings), closed afterwards.
        config / options: see the subclass's ``Config``.
    """

    #: whether ``best_within(c)`` of a search with a larger budget is what a search with
    #: budget ``c`` finds (false for searchers that plan their screening from the budget)
    anytime: ClassVar[bool] = True

    def __init__(self, config=None, *, low_env=None, **options) -> None:
        super().__init__(config, **options)
        self.low_env = low_env
        self.low_history: list[dict] = []
        self.compute = 0.0
        self.cost_ratio_used = math.nan
        self.low_fidelity_used = ""

    # -- the low evaluator and its cost --------------------------------------------
    def _low_evaluator(self, target):
        """``(evaluator, built_here)`` for the low fidelity."""
        if self.low_env is not None:
            low = unwrap(self.low_env)
            built = False
        else:
            evaluator = getattr(target, "evaluator", target)
            kwargs = getattr(evaluator, "_init_kwargs", None)
            if kwargs is None:
                raise ValueError(
                    f"searcher {self.name!r} cannot build a low-fidelity evaluator from {type(evaluator).__name__}; "
                    "pass low_env= (e.g. table_env(table=low_table) for reward tables)")
            from privacysplit.envs.evaluator import Evaluator

            cache = evaluator.cache.path if evaluator.cache.path is not None else False
            low = Evaluator(**{**kwargs, "fidelity": fidelity_from_spec(self.config.low_fidelity)}, cache=cache,
                            executor=evaluator.executor_kind, workers=evaluator.workers, address=evaluator.address,
                            weights_cache=evaluator.weights_cache)
            built = True
        if list(map(str, low.space)) != list(map(str, target.space)):
            raise ValueError(f"the low-fidelity evaluator's space ({low.space.count()} plans) is not the env's "
                             f"({target.space.count()} plans); build both with the same techniques and partitions")
        return low, built

    def _cost_ratio(self, low, target) -> float:
        if self.config.cost_ratio is not None:
            return float(self.config.cost_ratio)
        evaluator = getattr(target, "evaluator", target)
        low_s, high_s = _table_seconds(low), _table_seconds(evaluator)
        if low_s is not None and high_s is not None:
            return low_s / high_s
        key = (_fidelity_name(low), _fidelity_name(evaluator))
        if key in MEASURED_COST_RATIOS:
            return MEASURED_COST_RATIOS[key]
        known = ", ".join(f"{a}->{b}" for a, b in MEASURED_COST_RATIOS) or "none"
        raise ValueError(f"searcher {self.name!r}: no measured cost ratio for fidelity {key[0]} -> {key[1]} "
                         f"(measured: {known}); pass cost_ratio= (a low evaluation's time over a target one's)")

    # -- search --------------------------------------------------------------------
    def reset_search(self) -> None:
        self.low_history = []
        self.compute = 0.0

    def search(self, env, budget: int, *, max_seconds=None, log_dir=None, progress=True,
               checkpoint=None) -> MultiFidelityResult:
        """Search with ``budget`` target-fidelity-equivalent compute (see the module docstring)."""
        result = super().search(env, budget, max_seconds=max_seconds, log_dir=log_dir, progress=progress,
                                checkpoint=checkpoint)
        out = MultiFidelityResult(**{f.name: getattr(result, f.name) for f in fields(SearchResult)},
                                  low_history=[dict(r) for r in self.low_history],
                                  low_fidelity=self.low_fidelity_used, cost_ratio=self.cost_ratio_used,
                                  compute=self.compute)
        if log_dir is not None:
            out.to_json(Path(log_dir) / "result.json")
            out.low_to_csv(Path(log_dir) / "low_history.csv")
        return out

    def run(self, env, run: SearchRun) -> None:
        low, built = self._low_evaluator(run.env)
        try:
            ratio = self._cost_ratio(low, run.env)
            self.cost_ratio_used, self.low_fidelity_used = ratio, _fidelity_name(low)
            self.screen(run, low, ratio)
        finally:
            if built:
                low.close()

    def screen(self, run: SearchRun, low, ratio: float) -> None:
        """Search ``run`` with ``low`` (one evaluation costing ``ratio``), keeping
        :attr:`low_history` and :attr:`compute`."""
        raise NotImplementedError


class MultiFidelitySearcher(LowFidelitySearcher):
    """Successive halving (Optuna's pruner) from a low fidelity to the env's fidelity
    (``low_env`` and options: see :class:`LowFidelitySearcher`, :class:`MultiFidelityConfig`)."""

    name = "successive_halving"
    Config = MultiFidelityConfig

    def screen(self, run: SearchRun, low, ratio: float) -> None:
        import warnings

        import optuna
        from optuna.trial import TrialState

        level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study = self._study()
                self._loop(run, low, ratio, TrialState)
        finally:
            optuna.logging.set_verbosity(level)

    def _study(self):
        import optuna

        cfg: MultiFidelityConfig = self.config
        if cfg.sampler == "tpe":
            sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.n_startup_trials)
        else:
            sampler = optuna.samplers.RandomSampler(seed=cfg.seed)
        eta = cfg.reduction_factor
        if cfg.pruner == "successive_halving":
            pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=eta,
                                                            min_early_stopping_rate=0)
        elif cfg.pruner == "hyperband":
            # two rungs (low at step 1, target at step eta): two brackets, one screening
            pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=eta, reduction_factor=eta)
        else:
            pruner = optuna.pruners.NopPruner()
        # a fixed name: Hyperband assigns brackets by crc32(study name, trial number), and an
        # unnamed study gets a random UUID, which made the same seed search differently per run
        return optuna.create_study(study_name=f"privacysplit-{self.name}-seed{cfg.seed}", direction="maximize",
                                   sampler=sampler, pruner=pruner)

    def _loop(self, run: SearchRun, low, ratio: float, TrialState) -> None:
        cfg: MultiFidelityConfig = self.config
        budget = float(run.budget)
        low_reward: dict[str, float] = {}  # this search's low-fidelity measurements
        promoted: dict[str, bool] = {}  # the pruner's (final) decision per screened plan
        high_reward: dict[str, float] = {}
        free_in_a_row = 0
        while not run.done:
            batch, new, reserved = [], [], 0.0
            for _ in range(cfg.batch_size):
                trial = self.study.ask()
                plan = str(trial_plan(trial, run.space))
                if plan not in low_reward and plan not in new:
                    # screen only what the budget pays for, with its promotion
                    if len(self.low_history) * ratio + len(high_reward) + reserved + ratio + 1.0 > budget + COMPUTE_EPS:
                        self.study.tell(trial, state=TrialState.FAIL)
                        run.stop("budget")
                        break
                    reserved += ratio + 1.0
                    new.append(plan)
                batch.append((trial, plan))
            if new:
                for plan, info in zip(new, low.evaluate_many(new), strict=True):
                    low_reward[plan] = float(info["reward"])
            to_promote: list[tuple] = []
            for trial, plan in batch:
                trial.report(low_reward[plan], step=1)
                if plan not in promoted:
                    promoted[plan] = not trial.should_prune()  # Optuna's pruner decides
                    self.compute = (len(self.low_history) + 1) * ratio + len(high_reward)
                    self.low_history.append({"screen": len(self.low_history) + 1, "plan": plan,
                                             "reward": low_reward[plan], "promoted": promoted[plan],
                                             "compute": self.compute})
                    run.log_scalar("search/low_reward", low_reward[plan], len(self.low_history))
                if promoted[plan]:
                    to_promote.append((trial, plan))
                else:
                    self.study.tell(trial, state=TrialState.PRUNED)
            measure = list(dict.fromkeys(p for _, p in to_promote if p not in high_reward))
            rows_before = len(run.history)
            if measure:
                infos = run.evaluate(measure)
                for info, row in zip(infos, run.history[len(run.history) - len(infos):], strict=True):
                    plan = str(info["plan"])
                    high_reward[plan] = float(info["reward"])
                    self.compute = len(self.low_history) * ratio + len(high_reward)
                    row["compute"] = self.compute
                run.log_scalar("search/compute", self.compute)
            for trial, plan in to_promote:
                if plan in high_reward:
                    self.study.tell(trial, high_reward[plan])
                else:  # cut by the run (time): no value to give
                    self.study.tell(trial, state=TrialState.FAIL)
            # proposals = trials: those without a target row now were answered from memory
            run.pool_answers += len(batch) - (len(run.history) - rows_before)
            free_in_a_row = 0 if new else free_in_a_row + len(batch)
            if free_in_a_row >= MAX_FREE:
                run.stop("converged")
            if len(promoted) == run.space.count() and all(p in high_reward for p, up in promoted.items() if up):
                run.stop("exhausted")


#: a search stops (``converged``) after this many trials in a row that cost nothing
MAX_FREE = 100


class HyperbandSearcher(MultiFidelitySearcher):
    """:class:`MultiFidelitySearcher` with Optuna's Hyperband pruner (two brackets)."""

    name = "hyperband"
    Config = HyperbandConfig
