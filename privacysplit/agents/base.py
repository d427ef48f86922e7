"""The searcher interface and the bookkeeping every searcher shares.

A *searcher* is any object with

.. code-block:: python

    search(env, budget, *, max_seconds=None, log_dir=None, progress=True) -> SearchResult

``budget`` counts *measurements*: the distinct plans this search has evaluated.  One rule
for every searcher (the memory pool of the paper's section 7.2, made common): the first
time a search proposes a plan it spends one unit of budget, whether the plan is measured
now or found in the evaluation cache; proposing a plan this search already measured costs
nothing (its reward comes from the cache in microseconds).  So bilstm, PPO, A2C, TPE and
random search are compared on the same compute.  A searcher that stops finding new plans is
stopped as ``converged`` after :data:`MAX_REPEATS` proposals in a row that were all
repeats.  Results record both counts: ``evaluations`` (measurements) and ``proposals``.
``max_seconds`` also stops the search, between batches.

The stock searchers derive from :class:`BaseSearcher` and do all their evaluating through a
:class:`SearchRun`, which cuts batches to the remaining budget, calls
``env.unwrapped.evaluate_many`` with the whole batch (so a parallel executor can run it at
once), records the history, keeps the best plan, writes TensorBoard scalars and shows a
progress bar.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from privacysplit.agents.result import SearchResult

#: info keys kept out of the best plan's metrics (bulky; logged as images instead)
UNLOGGED = ("reconstruction",)

#: version of the checkpoint layout written by :meth:`SearchRun.save_checkpoint`
CHECKPOINT_FORMAT = 1

#: a search stops (``converged``) after this many proposals in a row that were all repeats
MAX_REPEATS = 200

#: metrics written to TensorBoard for every evaluation (tag ``search/<name>``)
LOGGED_METRICS = ("reward", "accuracy", "privacy_loss", "resource")


@runtime_checkable
class Searcher(Protocol):
    """Anything that searches plans on a PrivacySplit env under an evaluation budget."""

    def search(
        self,
        env,
        budget: int,
        *,
        max_seconds: float | None = None,
        log_dir: str | None = None,
        progress: bool = True,
    ) -> SearchResult: ...


def unwrap(env):
    """The bare environment (or evaluator-like object) behind Gymnasium wrappers.

    Raises:
        TypeError: when it has no ``space`` and ``evaluate_many`` (not a PrivacySplit env).
    """
    base = getattr(env, "unwrapped", env)
    missing = [a for a in ("space", "evaluate_many") if not hasattr(base, a)]
    if missing:
        raise TypeError(
            f"{type(base).__name__} is not a PrivacySplit environment (it lacks {', '.join(missing)}); "
            "pass gym.make('PrivacySplit-v0', ...) or a PrivacySplitEnv"
        )
    return base


def make_config(cls: type, config: Any, options: dict, agent: str):
    """``config`` itself, or ``cls(**options)`` with unknown options reported by name."""
    if config is not None:
        if options:
            raise ValueError(f"agent {agent!r}: pass either config= or keyword options, not both")
        if not isinstance(config, cls):
            raise ValueError(f"agent {agent!r}: config must be a {cls.__name__}, got {type(config).__name__}")
        return config
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for agent {agent!r}; valid options: {', '.join(valid)}")
    return cls(**options)


def check_positive(name: str, value, *, integer: bool = True, allow_none: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a positive int (or float, or ``None``)."""
    if value is None and allow_none:
        return
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {kind}{' or None' if allow_none else ''}, got {value!r}")


def load_checkpoint(path: str | Path, agent: str) -> dict:
    """Read a checkpoint written by :meth:`SearchRun.save_checkpoint` for searcher ``agent``.

    Raises:
        ValueError: naming the file and what to do, when it is unreadable, of another
            format or written by another searcher.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    advice = f"move {path} away to resume by replaying the search from the evaluation cache instead"
    try:
        state = torch.load(path, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise ValueError(f"checkpoint {path} is corrupted ({type(err).__name__}); {advice}") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint {path} has format {found!r}, this version reads {CHECKPOINT_FORMAT}; {advice}")
    if state.get("agent") != agent:
        raise ValueError(f"checkpoint {path} was written by searcher {state.get('agent')!r}, not {agent!r}; {advice}")
    return state


def _metric(info: dict, key: str) -> float:
    value = info.get(key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class SearchRun:
    """Budget, clock, history, best plan and logs of one search.

    Args:
        env: the bare environment (anything with ``space`` and ``evaluate_many``).
        budget: number of distinct plans this search may measure (a plan found in the
            cache counts the first time; a repeat within the search is free).
        max_seconds: wall-time limit, checked between batches (``None``: no limit).
        log_dir: folder for TensorBoard scalars and the ``history.csv`` / ``result.json``
            written at the end (``None``: no files).
        progress: show a tqdm bar over evaluations.
        agent: searcher name (bar label, result field).
        config: the searcher's configuration, stored in the result.
        checkpoint: file that :meth:`save_checkpoint` writes (``None``: no checkpoints).
    """

    def __init__(
        self,
        env,
        budget: int,
        *,
        max_seconds: float | None = None,
        log_dir: str | Path | None = None,
        progress: bool = True,
        agent: str = "",
        config: dict | None = None,
        checkpoint: str | Path | None = None,
    ) -> None:
        check_positive("budget", budget)
        check_positive("max_seconds", max_seconds, integer=False, allow_none=True)
        self.env = unwrap(env)
        self.space = self.env.space
        self.budget = int(budget)
        self.max_seconds = max_seconds
        self.agent = agent
        self.config = config or {}
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.history: list[dict] = []
        self.seen: set[str] = set()  # plans this search has measured (they cost budget once)
        self.pool_answers = 0  # repeats a searcher answered from its own memory (no history row)
        self._repeats = 0  # proposals in a row that were all repeats
        self.best: dict | None = None
        self.batches = 0
        self.stop_reason: str | None = None
        self._t0 = time.perf_counter()
        self._writer = None
        if self.log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # heavy: only when logging

            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(self.log_dir))
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.budget, desc=agent or "search", unit="eval", disable=not progress, leave=False)
        # the bar moves as each measurement of a batch finishes, not once per batch
        self._evaluator = getattr(self.env, "evaluator", None)
        if self._evaluator is not None and hasattr(self._evaluator, "on_measured"):
            self._evaluator.on_measured = self._tick

    def _tick(self, plan: str) -> None:
        if self._bar.n < self.budget:
            self._bar.update(1)

    # -- state ---------------------------------------------------------------------
    @property
    def evaluations(self) -> int:
        """Budget spent: distinct plans this search has measured."""
        return len(self.seen)

    @property
    def proposals(self) -> int:
        """Plans proposed, repeats included (history rows plus repeats answered by a pool)."""
        return len(self.history) + self.pool_answers

    @property
    def remaining(self) -> int:
        return max(0, self.budget - len(self.seen))

    def note_repeats(self, n: int) -> None:
        """Count ``n`` repeats a searcher answered from its own memory pool (free)."""
        self.pool_answers += int(n)
        self._repeats += int(n)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    @property
    def done(self) -> bool:
        """True once the budget or the time is used up, or :meth:`stop` was called."""
        if self.stop_reason is not None:
            return True
        if self.remaining <= 0:
            self.stop_reason = "budget"
        elif self._repeats >= MAX_REPEATS:
            self.stop_reason = "converged"
        elif self.max_seconds is not None and self.elapsed >= self.max_seconds:
            self.stop_reason = "time"
        return self.stop_reason is not None

    @property
    def best_reward(self) -> float:
        return -math.inf if self.best is None else float(self.best["reward"])

    def stop(self, reason: str) -> None:
        """End the search early (e.g. ``"exhausted"`` when no new plan is left)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    # -- evaluating ----------------------------------------------------------------
    def evaluate(self, plans: list) -> list[dict]:
        """Evaluate ``plans`` as one batch, cut to the remaining budget; their infos in order.

        Plans this search already measured are free; the batch is cut before the first new
        plan the budget cannot pay for, so fewer infos than plans may come back (possibly
        none).
        """
        kept, new = [], set()
        for plan in map(str, plans):
            if plan not in self.seen and plan not in new:
                if len(new) >= self.remaining:
                    break
                new.add(plan)
            kept.append(plan)
        plans = kept
        if not plans:
            return []
        infos = self.env.evaluate_many(plans)
        self.batches += 1
        for info in infos:
            self.record(info)
        return infos

    def record(self, info: dict) -> dict:
        """Add one evaluated plan (an evaluator info dict with ``plan`` and ``reward``)."""
        plan = str(info["plan"])
        new = plan not in self.seen
        self.seen.add(plan)
        self._repeats = 0 if new else self._repeats + 1
        row = {
            "step": len(self.history) + 1,
            "measurement": len(self.seen),
            "new": new,
            "batch": self.batches,
            "plan": str(info["plan"]),
            "reward": float(info["reward"]),
            "accuracy": _metric(info, "accuracy"),
            "privacy_loss": _metric(info, "privacy_loss"),
            "resource": _metric(info, "resource"),
            "cache_hit": bool(info.get("cache_hit", False)),
            "wall_time": self.elapsed,
            "eval_seconds": _metric(info, "eval_seconds"),
            "error": info.get("error"),
        }
        self.history.append(row)
        improved = self.best is None or row["reward"] > self.best_reward
        if improved:
            self.best = {k: v for k, v in info.items()
                         if (isinstance(v, (int, float, str, bool)) or v is None) and k not in UNLOGGED}
            self.best["plan"] = row["plan"]
            self.best["reward"] = row["reward"]
        if self._writer is not None:
            for name in LOGGED_METRICS:
                if math.isfinite(row[name]):
                    self._writer.add_scalar(f"search/{name}", row[name], row["step"])
            self._writer.add_scalar("search/best_reward", self.best_reward, row["step"])
            self._writer.add_scalar("search/cache_hit", float(row["cache_hit"]), row["step"])
            if improved and (info.get("reconstruction") or info.get("reconstruction_png")):
                from privacysplit.attacks.samples import load_png, sample_grid

                # evaluate_many's infos carry the packed samples; the env's terminal info a PNG
                grid = sample_grid(info["reconstruction"]) if info.get("reconstruction") \
                    else load_png(info["reconstruction_png"])
                self._writer.add_image("reconstruction/best", grid, row["step"])
                self._writer.add_text("reconstruction/best_plan", row["plan"], row["step"])
        self._bar.update(max(0, len(self.seen) - self._bar.n))  # catch up: cache hits, restored rows
        self._bar.set_postfix(best=f"{self.best_reward:.4f}", refresh=False)
        return row

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """History, best plan, batch count and elapsed time (``weights_only``-loadable)."""
        return {"history": [dict(r) for r in self.history], "best": None if self.best is None else dict(self.best),
                "batches": self.batches, "elapsed": self.elapsed, "pool_answers": self.pool_answers}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`: the restored evaluations count against the
        budget and the clock goes on from the recorded elapsed time."""
        self.history = [dict(r) for r in state["history"]]
        self.seen = {str(r["plan"]) for r in self.history}
        self.pool_answers = int(state.get("pool_answers", 0))
        self.best = None if state["best"] is None else dict(state["best"])
        self.batches = int(state["batches"])
        self._t0 = time.perf_counter() - float(state["elapsed"])
        self._bar.update(len(self.seen))

    def save_checkpoint(self, agent_state: dict) -> None:
        """Write ``{"agent": agent_state, "run": self.state_dict()}`` to :attr:`checkpoint`.

        Written to a uniquely named temporary file and renamed, so a kill mid-write leaves
        the previous checkpoint intact and two writers never remove each other's temporary
        file; a no-op when the run has no checkpoint file.
        """
        if self.checkpoint is None:
            return
        from privacysplit._fsutil import atomic_torch_save

        atomic_torch_save({"format": CHECKPOINT_FORMAT, "agent": self.agent, "agent_state": agent_state,
                           "run": self.state_dict()}, self.checkpoint)

    def log_scalar(self, tag: str, value: float, step: int | None = None) -> None:
        """Write a TensorBoard scalar (e.g. ``losses/policy``) at ``step`` (default: evaluations)."""
        if self._writer is not None:
            self._writer.add_scalar(tag, float(value), self.evaluations if step is None else step)

    def close(self) -> SearchResult:
        """Finish: the :class:`SearchResult`; writes ``history.csv`` and ``result.json``."""
        self.done  # noqa: B018  (sets stop_reason when the budget or time is used up)
        self._bar.close()
        if self._evaluator is not None and getattr(self._evaluator, "on_measured", None) == self._tick:
            self._evaluator.on_measured = None
        best = self.best or {}
        result = SearchResult(
            best_plan=str(best.get("plan", "")),
            best_reward=self.best_reward,
            best_metrics=dict(best),
            history=self.history,
            agent=self.agent,
            budget=self.budget,
            proposals=self.proposals,
            seconds=self.elapsed,
            stop_reason=self.stop_reason or "stopped",
            config=self.config,
        )
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self.log_dir is not None:
            result.to_csv(self.log_dir / "history.csv")
            result.to_json(self.log_dir / "result.json")
        return result


class BaseSearcher:
    """Shared ``search`` of the stock agents: subclasses implement :meth:`run`.

    Each subclass names a ``Config`` dataclass; ``Agent(**options)`` builds it, unknown
    options are a ``ValueError`` listing the valid ones, and ``agent.config`` holds it.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type]

    def __init__(self, config=None, **options) -> None:
        self.config = make_config(self.Config, config, options, self.name)

    def search(
        self,
        env,
        budget: int,
        *,
        max_seconds: float | None = None,
        log_dir: str | Path | None = None,
        progress: bool = True,
        checkpoint: str | Path | None = None,
    ) -> SearchResult:
        """Search ``env`` with at most ``budget`` plan evaluations (cache hits count).

        Args:
            env: a ``PrivacySplit-v0`` env (wrapped or not).
            budget: evaluations allowed; every plan given to the evaluator counts once,
                measured or answered from the cache.
            max_seconds: also stop after this much wall time (checked between batches).
            log_dir: write TensorBoard scalars, ``history.csv`` and ``result.json`` here.
            progress: show a progress bar over evaluations.
            checkpoint: only for searchers with :attr:`checkpointable` set: the file the
                searcher's whole state and the run's history are written to after every
                episode.  When the file exists the search continues from it (a resume).

        Raises:
            ValueError: ``checkpoint`` given to a searcher that cannot checkpoint, or an
                unreadable checkpoint file.
        """
        config = asdict(self.config) if is_dataclass(self.config) else {}
        if checkpoint is not None and not self.checkpointable:
            raise ValueError(f"searcher {self.name!r} does not checkpoint; resume it by replay from the evaluation cache")
        state = load_checkpoint(checkpoint, self.name) if checkpoint is not None and Path(checkpoint).exists() else None
        run = SearchRun(env, budget, max_seconds=max_seconds, log_dir=log_dir, progress=progress, agent=self.name,
                        config=config, checkpoint=checkpoint)
        try:
            if state is not None:
                self.load_state_dict(state["agent_state"])
                run.load_state_dict(state["run"])
                self.resumed_at = run.evaluations
            else:
                self.reset_search()
                self.resumed_at = None
            self.run(env, run)
        except BaseException:
            run.close()
            raise
        return run.close()

    #: whether :meth:`state_dict` / :meth:`load_state_dict` capture everything a search
    #: needs to continue exactly (those searchers call ``run.save_checkpoint`` per episode)
    checkpointable: ClassVar[bool] = False
    #: evaluations restored from the checkpoint by the last :meth:`search` (``None``: fresh)
    resumed_at: int | None = None

    def reset_search(self) -> None:
        """Forget per-search state (e.g. a memory pool) before a fresh, not resumed, search."""

    def run(self, env, run: SearchRun) -> None:
        """Propose plans and evaluate them through ``run`` until ``run.done``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"
