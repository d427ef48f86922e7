"""The outcome of a search: the best plan, its metrics, and every evaluation in order.

A :class:`SearchResult` is a replayable record (CompilerGym's convention): one history row per
evaluated plan, with the evaluation number, the plan, its reward and metrics, whether it came
from the cache, and the wall time since the search started.  It round-trips through JSON, and
its history writes as CSV for plotting.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: history columns, in CSV order
HISTORY_COLUMNS: tuple[str, ...] = (
    "step",
    "measurement",
    "new",
    "batch",
    "plan",
    "reward",
    "accuracy",
    "privacy_loss",
    "resource",
    "cache_hit",
    "wall_time",
    "eval_seconds",
    "error",
)


def _jsonable(value):
    """``value`` with non-finite floats turned into ``None`` and unknown objects into strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        as_float = float(value)  # numpy scalars
    except (TypeError, ValueError):
        return str(value)
    return as_float if math.isfinite(as_float) else None


@dataclass
class SearchResult:
    """What a searcher found.

    Attributes:
        best_plan: the best plan as the paper prints it (``"5 | 3:C3"``); ``""`` when nothing
            was evaluated.
        best_reward: its reward (``-inf`` when nothing was evaluated).
        best_metrics: its full evaluation record (accuracy, privacy loss, S1/S2/S3, ...).
        history: one row per proposal handed to the evaluator, in order, with the keys of
            :data:`HISTORY_COLUMNS`.  ``step`` counts those rows from 1, ``measurement`` the
            budget spent so far (distinct plans of this search), ``new`` is false for a plan
            this search had already measured (free), ``batch`` the ``evaluate_many`` call
            the plan was part of, ``wall_time`` is seconds since the search started.
        agent: name of the searcher.
        budget: the budget the search ran under, in measurements (distinct plans).
        proposals: plans proposed, repeats included (also those a searcher answered from
            its own memory pool, which have no history row).
        seconds: wall time of the whole search.
        stop_reason: ``budget``, ``time`` (``max_seconds`` ran out), ``exhausted`` (no plan
            left to propose) or ``converged``/``stopped`` (the agent gave up).
        config: the searcher's configuration.
    """

    best_plan: str
    best_reward: float
    best_metrics: dict
    history: list[dict]
    agent: str = ""
    budget: int | None = None
    proposals: int | None = None
    seconds: float = 0.0
    stop_reason: str = ""
    config: dict = field(default_factory=dict)

    @property
    def evaluations(self) -> int:
        """Budget spent: distinct plans measured by this search (cache hits included)."""
        return self.unique_plans

    @property
    def cache_hits(self) -> int:
        return sum(bool(row.get("cache_hit")) for row in self.history)

    @property
    def unique_plans(self) -> int:
        return len({row["plan"] for row in self.history})

    def best_so_far(self) -> list[float]:
        """Best reward after each measurement (the usual search-progress curve).

        Indexed by budget spent: a repeated plan adds no point (and cannot raise the best).
        """
        curve, best, seen = [], -math.inf, set()
        for row in self.history:
            best = max(best, float(row["reward"]))
            if row["plan"] not in seen:
                seen.add(row["plan"])
                curve.append(best)
        return curve

    def best_at(self, evaluations: int) -> float:
        """Best reward within the first ``evaluations`` measurements (``-inf`` if none)."""
        curve = self.best_so_far()[: max(0, int(evaluations))]
        return curve[-1] if curve else -math.inf

    # -- files ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return _jsonable(asdict(self))

    def to_json(self, path: str | Path) -> Path:
        """Write the whole result (best plan, metrics, history, config) as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> SearchResult:
        data = json.loads(Path(path).read_text())
        if data.get("best_reward") is None:
            data["best_reward"] = -math.inf
        return cls(**data)

    def to_csv(self, path: str | Path) -> Path:
        """Write the history, one row per evaluation, columns :data:`HISTORY_COLUMNS`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, HISTORY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in self.history:
                writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in HISTORY_COLUMNS})
        return path

    def __str__(self) -> str:
        return (
            f"{self.agent or 'search'}: best {self.best_plan!r} reward {self.best_reward:.4f} "
            f"after {self.evaluations} evaluations ({self.proposals or len(self.history)} proposals, "
            f"{self.cache_hits} cache hits, "
            f"{self.seconds:.1f} s, stopped: {self.stop_reason})"
        )
