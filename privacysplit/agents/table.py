"""Reward tables: every plan of a (small) space scored once, looked up instead of trained.

A :class:`TableEvaluator` stands in for :class:`~privacysplit.envs.evaluator.Evaluator`
wherever one is accepted, in particular ``PrivacySplitEnv(evaluator=table)``: the real
environment class then steps, masks and terminates as usual, but its terminal step (and
``evaluate_many``) answers from the table in microseconds.  That makes searcher comparisons
over many seeds cheap and exactly repeatable.

Two sources of tables:

* :meth:`TableEvaluator.synthetic` — a deterministic, non-trivial stand-in for the real
  reward with the same shape as Eq. 13: per-(layer, technique) effects on accuracy and
  privacy drawn from a seeded generator, privacy loss falling with the partition depth,
  parameter saving S1 computed from the layer specs, and a little plan-hashed noise.  No
  training; built in milliseconds.
* :meth:`TableEvaluator.from_evaluator` — every plan measured by a real evaluator (the
  benchmark ``benchmarks/reward_table.py`` does this), saved with :meth:`to_csv` and read
  back with :meth:`from_csv`.  A name ending in ``.gz`` is gzip-compressed (tables of a
  whole space are shipped that way), and a table can carry its provenance -- fidelity, seed,
  versions, the command that measured it -- as a ``# {json}`` first line
  (:attr:`TableEvaluator.metadata`), so a shipped file says what footing its numbers stand on.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np

from privacysplit.agents.base import UNLOGGED
from privacysplit.envs.reward import Reward
from privacysplit.envs.space import SearchSpace
from privacysplit.models import LayerSpec
from privacysplit.plan import Plan

#: columns written by :meth:`TableEvaluator.to_csv` (``plan`` first, the rest optional)
TABLE_COLUMNS = ("plan", "reward", "accuracy", "accuracy_base", "privacy_loss", "resource", "S1", "R_A", "R_P", "R_S", "error")

#: fraction of a layer's parameters a technique keeps, before per-layer jitter (synthetic)
_KEEP = {"none": 1.0, "F1": 0.25, "F2": 0.15, "C1": 0.15, "C2": 0.3, "C3": 0.25, "W1": 0.5, "W2": 0.6}


def _params(spec: LayerSpec) -> int:
    if spec.type in ("conv", "block"):
        return max(spec.kernel, 1) ** 2 * spec.in_channels * spec.out_channels + spec.out_channels
    if spec.type == "linear":
        return spec.in_channels * spec.out_channels + spec.out_channels
    if spec.type == "bn":
        return 2 * spec.out_channels
    return 0


def _open_table(path: Path, mode: str):
    """A text handle on ``path``; gzip when its name ends in ``.gz`` (written with mtime 0, so
    the same table always compresses to the same bytes and a rerun leaves git clean)."""
    if path.suffix != ".gz":
        return path.open(mode, newline="")
    if mode == "r":
        return io.TextIOWrapper(gzip.open(path, "rb"), newline="")
    return io.TextIOWrapper(gzip.GzipFile(filename="", mode="wb", fileobj=path.open("wb"), mtime=0), newline="")


def _hash_unit(text: str, seed: int) -> float:
    """A deterministic number in [0, 1) from ``text`` and ``seed``."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def synthetic_metrics(space: SearchSpace, plan: Plan, seed: int = 0, noise: float = 0.02) -> dict:
    """Synthetic accuracy / privacy loss / S1 of ``plan`` (see the module docstring)."""
    return _Synthetic(space, seed, noise)(plan)


class _Synthetic:
    def __init__(self, space: SearchSpace, seed: int, noise: float) -> None:
        rng = np.random.default_rng(seed)
        n, techniques = len(space.layers), space.techniques
        self.space, self.seed, self.noise = space, seed, noise
        self.index = {t: i for i, t in enumerate(techniques)}
        self.params = np.array([_params(s) for s in space.layers], float)
        self.total = max(self.params.sum(), 1.0)
        base_keep = np.array([_KEEP.get(t, 0.4) for t in techniques])
        self.keep = np.clip(base_keep[None, :] * np.exp(rng.normal(0, 0.25, (n, len(techniques)))), 0.05, 1.0)
        self.acc_drop = rng.uniform(0.0, 0.08, (n, len(techniques)))
        self.priv_gain = rng.uniform(-0.08, 0.25, (n, len(techniques)))
        self.keep[:, 0] = 1.0
        self.acc_drop[:, 0] = 0.0
        self.priv_gain[:, 0] = 0.0
        depth = (np.arange(n) + 1) / n
        self.priv_base = 0.15 + 0.75 * np.exp(-2.5 * depth) + rng.uniform(-0.03, 0.03, n)
        self.acc_base = 0.95
        self.reward = Reward(None)

    def __call__(self, plan: Plan) -> dict:
        chosen = plan.mapping
        p = plan.partition
        device = sum(self.params[i] * self.keep[i, self.index[chosen.get(i, "none")]] for i in range(p + 1))
        saving = float(1.0 - device / self.total)
        acc, priv = self.acc_base, float(self.priv_base[p])
        for layer, name in chosen.items():
            acc *= 1.0 - self.acc_drop[layer, self.index[name]]
            priv *= 1.0 - self.priv_gain[layer, self.index[name]]
        jitter = 1.0 + self.noise * (2 * _hash_unit(str(plan), self.seed) - 1)
        acc = float(np.clip(acc * jitter, 0.0, 1.0))
        priv = float(np.clip(priv, 0.0, 1.0))
        out = {"accuracy": acc, "accuracy_base": self.acc_base, "privacy_loss": priv, "S1": saving, "resource": saving}
        out.update(self.reward.factors(acc, self.acc_base, priv, saving))
        return out


class TableEvaluator:
    """An evaluator that answers from a table ``{plan string: metrics}``.

    Has the evaluator interface the environment and the searchers use (``space``,
    ``evaluate``, ``evaluate_many``, ``close``).  ``cache_hit`` is true for a plan this
    evaluator has already answered, as a real evaluator's cache would report it.

    Args:
        space: the search space the plans come from (plans are validated against it).
        rows: metrics per plan; each needs ``reward`` (plus, ideally, ``accuracy``,
            ``privacy_loss`` and ``resource``).
        name: a label for reports.

    Attributes:
        batch_sizes: size of every ``evaluate_many`` call, in order (to check batching).
    """

    def __init__(self, space: SearchSpace, rows: dict[str, dict], *, name: str = "table", fn=None,
                 metadata: dict | None = None) -> None:
        self.space = space
        self.name = name
        #: provenance written with the table (fidelity, seed, versions, command); ``{}`` if none
        self.metadata = dict(metadata or {})
        self.fn = fn  # computes a missing row on demand (lazy synthetic tables)
        self.rows = {str(Plan.parse(k)): dict(v) for k, v in rows.items()}
        missing = [k for k, v in self.rows.items() if "reward" not in v]
        if missing:
            raise ValueError(f"table rows without a reward: {missing[:3]}")
        self.seen: set[str] = set()
        self.batch_sizes: list[int] = []

    # -- constructors --------------------------------------------------------------
    @classmethod
    def synthetic(cls, space: SearchSpace, seed: int = 0, noise: float = 0.02, *, lazy: bool | None = None) -> TableEvaluator:
        """Every plan of ``space`` scored by the synthetic reward (no training).

        ``lazy`` scores plans on first request instead of all up front (the default for
        spaces of more than 100,000 plans, e.g. VGG's); :meth:`optimum` and the other
        statistics then cover only the plans scored so far.
        """
        fn = _Synthetic(space, seed, noise)
        lazy = space.count() > 100_000 if lazy is None else lazy
        rows = {} if lazy else {str(plan): fn(plan) for plan in space}
        return cls(space, rows, name=f"synthetic(seed={seed})", fn=fn)

    @classmethod
    def from_evaluator(
        cls, evaluator, *, batch_size: int = 8, progress: bool = False, rows: dict[str, dict] | None = None,
        checkpoint=None,
    ) -> TableEvaluator:
        """Measure every plan of ``evaluator.space`` through ``evaluator.evaluate_many``.

        ``evaluator`` may also be an environment (its ``unwrapped`` evaluator is used).
        ``rows`` are plans already measured (a partial table read back): only the others are
        measured.  ``checkpoint(table)`` is called after every batch, so a table of a whole
        space -- hours of measuring -- can be written as it grows and an interrupted run
        loses at most one batch, even where the evaluation cache does not survive.
        """
        evaluator = getattr(evaluator, "unwrapped", evaluator)
        rows = {str(Plan.parse(k)): dict(v) for k, v in (rows or {}).items()}
        plans = [str(p) for p in evaluator.space if str(p) not in rows]
        from tqdm.auto import tqdm

        table = cls(evaluator.space, rows, name="measured")
        with tqdm(total=len(plans) + len(rows), initial=len(rows), desc="reward table", unit="plan",
                  disable=not progress) as bar:
            for start in range(0, len(plans), batch_size):
                batch = plans[start : start + batch_size]
                for plan, info in zip(batch, evaluator.evaluate_many(batch), strict=True):
                    table.rows[plan] = {k: v for k, v in info.items()
                                        if (isinstance(v, (int, float, str, bool)) or v is None) and k not in UNLOGGED}
                if checkpoint is not None:
                    checkpoint(table)
                bar.update(len(batch))
        return table

    @classmethod
    def from_csv(cls, path: str | Path, space: SearchSpace) -> TableEvaluator:
        """Read a table written by :meth:`to_csv` (``.csv`` or ``.csv.gz``; numbers parsed,
        blanks dropped, a ``# {json}`` first line read into :attr:`metadata`)."""
        path = Path(path)
        with _open_table(path, "r") as f:
            lines = f.readlines()
        metadata = json.loads(lines[0][1:]) if lines and lines[0].startswith("#") else {}
        rows: dict[str, dict] = {}
        for record in csv.DictReader(line for line in lines if not line.startswith("#")):
            row = {}
            for key, value in record.items():
                if key == "plan" or value in ("", None):
                    continue
                try:
                    row[key] = float(value)
                except ValueError:
                    row[key] = value
            rows[record["plan"]] = row
        return cls(space, rows, name=str(path), metadata=metadata)

    def to_csv(self, path: str | Path, columns: tuple[str, ...] = TABLE_COLUMNS, metadata: dict | None = None) -> Path:
        """Write the table (gzip when ``path`` ends in ``.gz``), ``metadata`` (default
        :attr:`metadata`) as a ``# {json}`` first line when there is any."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = self.metadata if metadata is None else metadata
        with _open_table(path, "w") as f:
            if metadata:
                f.write("# " + json.dumps(metadata, sort_keys=True, default=str) + "\n")
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            for plan, row in self.rows.items():
                writer.writerow({"plan": plan, **{k: row.get(k, "") for k in columns if k != "plan"}})
        return path

    def check_footing(self, config: dict) -> None:
        """Refuse a table measured on another footing than an evaluator's ``config()``.

        Raises:
            ValueError: naming every configuration key whose value differs (an older
                evaluation version, another fidelity or seed...); a table without recorded
                provenance passes, since nothing says what it stands on.
        """
        recorded = self.metadata.get("config")
        if not recorded:
            return
        recorded, config = json.loads(json.dumps(recorded, default=str)), json.loads(json.dumps(config, default=str))
        differ = sorted(k for k in set(recorded) | set(config) if recorded.get(k) != config.get(k))
        if differ:
            details = "; ".join(f"{k}: table {recorded.get(k)!r}, here {config.get(k)!r}" for k in differ)
            raise ValueError(f"reward table {self.name} was measured on another footing ({details}); "
                             "measure it again with benchmarks/reward_table.py")

    # -- evaluator interface -------------------------------------------------------
    def evaluate(self, plan: Plan | str) -> dict:
        return self.evaluate_many([plan])[0]

    def evaluate_many(self, plans: list[Plan | str]) -> list[dict]:
        parsed = [str(self.space.validate(p)) for p in plans]
        if self.fn is not None:
            for plan in parsed:
                if plan not in self.rows:
                    self.rows[plan] = self.fn(Plan.parse(plan))
        unknown = [p for p in parsed if p not in self.rows]
        if unknown:
            raise ValueError(f"plan {unknown[0]!r} is not in the reward table {self.name} ({len(self.rows)} plans)")
        self.batch_sizes.append(len(parsed))
        out = []
        for plan in parsed:
            info = dict(self.rows[plan])
            info.update(plan=plan, cache_hit=plan in self.seen, eval_seconds=0.0)
            info["reward"] = float(info["reward"])
            self.seen.add(plan)
            out.append(info)
        return out

    def close(self) -> None:
        pass

    # -- analysis ------------------------------------------------------------------
    def __len__(self) -> int:
        """Plans scored so far (all of them unless the table is lazy)."""
        return len(self.rows)

    def __bool__(self) -> bool:  # an empty lazy table is still an evaluator
        return True

    def optimum(self) -> tuple[str, float]:
        """The best plan of the table and its reward."""
        plan = max(self.rows, key=lambda k: float(self.rows[k]["reward"]))
        return plan, float(self.rows[plan]["reward"])

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of the table's rewards (e.g. 0.5 for the median plan)."""
        return float(np.quantile([float(r["reward"]) for r in self.rows.values()], q))

    def rank(self, reward: float) -> float:
        """Fraction of the table's plans whose reward is at least ``reward`` (1 / N is the top)."""
        rewards = np.array([float(r["reward"]) for r in self.rows.values()])
        return float(np.mean(rewards >= reward - 1e-12)) if math.isfinite(reward) else 1.0


def table_env(
    base: str = "lenet",
    *,
    techniques: list[str] | None = None,
    partitions: list[int] | None = None,
    table: TableEvaluator | None = None,
    seed: int = 0,
    **env_kwargs,
):
    """A real :class:`PrivacySplitEnv` whose evaluations come from a reward table.

    Without ``table`` the synthetic table of ``base`` (restricted to ``techniques`` and
    ``partitions``) is built from ``seed``.
    """
    from privacysplit.envs.privacy_split import PrivacySplitEnv
    from privacysplit.models import build

    if table is None:
        space = SearchSpace(build(base).layers, techniques, partitions)
        table = TableEvaluator.synthetic(space, seed=seed)
    return PrivacySplitEnv(base, evaluator=table, **env_kwargs)
