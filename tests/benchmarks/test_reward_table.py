"""benchmarks/reward_table.py: budgets as shares of the space, compressed tables that carry
their provenance, and compare_searchers.py searching a shipped table instead of training."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from privacysplit.envs.evaluator import EVAL_VERSION

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _small_table_argv(out: Path, seeds: int, budgets: str) -> list[str]:
    """reward_table.py on the 6-plan smoke space (lenet, W1, partitions 2 and 5), random search only."""
    return ["--fidelity", "smoke", "--partitions", "2,5", "--techniques", "W1", "--low-fidelities", "none",
            "--searchers", "random", "--seeds", str(seeds), "--budgets", budgets, "--out", str(out)]


def test_budgets_as_percentages_of_the_space(benchmark_module):
    parse = benchmark_module("reward_table").parse_budgets
    assert parse("1%,5%,10%", 3870) == [39, 194, 387]
    assert parse("50,10,25", 212) == [10, 25, 50]
    for bad in ("ten", "0%"):
        with pytest.raises(SystemExit, match="--budgets"):
            parse(bad, 212)


def test_measured_table_is_compressed_with_its_provenance_and_read_back(benchmark_module, cache_root, tmp_path,
                                                                       monkeypatch):
    module = benchmark_module("reward_table")
    out = tmp_path / "rt"
    argv = _small_table_argv(out, seeds=2, budgets="50%,100%")
    assert module.main(argv) == 0
    (path,) = out.glob("table_lenet_mnist_smoke_*.csv.gz")
    with gzip.open(path, "rt") as f:
        metadata = json.loads(f.readline()[1:])
        rows = list(csv.DictReader(f))
    assert metadata["config"]["eval_version"] == EVAL_VERSION and metadata["config"]["fidelity"]["name"] == "smoke"
    assert metadata["plans"] == len(rows) and metadata["command"].startswith("python benchmarks/reward_table.py")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plans"] == len(rows)
    assert sorted(summary["searchers"]["random"]["median_regret"], key=int) == [
        str(math.ceil(len(rows) / 2)), str(len(rows))]
    assert summary["searchers"]["random"]["median_regret"][str(len(rows))] == 0.0  # the whole space: optimum found
    for budget, per_seed in summary["searchers"]["random"]["regrets"].items():  # per seed, for merging and plots
        assert len(per_seed) == 2 and summary["searchers"]["random"]["median_regret"][budget] == statistics.median(per_seed)
    from privacysplit.agents.table import TableEvaluator

    def no_measuring(*args, **kwargs):
        raise AssertionError("a rerun must read the table, not measure it")

    monkeypatch.setattr(TableEvaluator, "from_evaluator", classmethod(no_measuring))
    assert module.main(argv) == 0
    assert module.main(argv + ["--first-seed", "7"]) == 0  # held-out seeds 7 and 8, on the same table
    assert json.loads((out / "summary.json").read_text())["settings"]["first_seed"] == 7
    assert "; 2 seeds (7-8)." in (out / "summary.md").read_text()


def _shipped_table(tmp_path: Path, **config_changes) -> Path:
    from privacysplit.agents.table import TableEvaluator
    from privacysplit.envs.evaluator import Evaluator

    evaluator = Evaluator("lenet", fidelity="smoke", techniques=["W1"], partitions=[2, 5], cache=False)
    table = TableEvaluator.synthetic(evaluator.space, seed=3)
    return table.to_csv(tmp_path / "shipped.csv.gz", metadata={"config": {**evaluator.config(), **config_changes}})


def _compare(cache_root: str, out: Path, table: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRIVACYSPLIT_CACHE": cache_root, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "compare_searchers.py"), "--fidelity", "smoke", "--searchers", "random",
         "--seeds", "2", "--budget", "4", "--partitions", "2,5", "--techniques", "W1", "--table", str(table),
         "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)


def test_compare_searchers_looks_plans_up_in_a_shipped_table(cache_root, tmp_path):
    from privacysplit.agents.table import TableEvaluator
    from privacysplit.envs.space import SearchSpace
    from privacysplit.models import build

    path = _shipped_table(tmp_path)
    proc = _compare(cache_root, tmp_path / "cmp", path)
    assert proc.returncode == 0, proc.stderr
    table = TableEvaluator.from_csv(path, SearchSpace(build("lenet").layers, ["W1"], [2, 5]))
    with open(tmp_path / "cmp" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 4
    for row in rows:  # every reward is the table's, none was trained
        assert float(row["reward"]) == pytest.approx(float(table.rows[row["plan"]]["reward"]), abs=1e-12)


def test_compare_searchers_refuses_a_table_of_another_footing(cache_root, tmp_path):
    proc = _compare(cache_root, tmp_path / "cmp", _shipped_table(tmp_path, eval_version=4))
    assert proc.returncode != 0
    assert "another footing" in proc.stderr and f"eval_version: table 4, here {EVAL_VERSION}" in proc.stderr


def _rerun_cut_table(benchmark_module, tmp_path, monkeypatch, **config_changes):
    """reward_table.py on the 6-plan smoke space; then its table file cut to its first 4 plans
    (``config_changes`` written into its provenance), its cache deleted, and the same command
    run again.  Returns the full table, the kept rows, the plans the second run measured, and
    the table file with its space."""
    from privacysplit.agents.table import TableEvaluator
    from privacysplit.envs.evaluator import Evaluator

    module = benchmark_module("reward_table")
    out = tmp_path / "rt"
    argv = _small_table_argv(out, seeds=1, budgets="2")
    assert module.main(argv) == 0
    (path,) = out.glob("table_*.csv.gz")
    space = Evaluator("lenet", fidelity="smoke", techniques=["W1"], partitions=[2, 5], cache=False).space
    full = TableEvaluator.from_csv(path, space)
    kept = dict(list(full.rows.items())[:4])
    metadata = {**full.metadata, "config": {**full.metadata["config"], **config_changes}}
    TableEvaluator(space, kept, metadata=metadata).to_csv(path, ("plan", *next(iter(kept.values()))))
    (out / "evals.sqlite").unlink()
    measured: list[str] = []
    original = Evaluator.measure

    def counting(self, plan):
        measured.append(str(plan))
        return original(self, plan)

    monkeypatch.setattr(Evaluator, "measure", counting)
    assert module.main(argv) == 0
    return full, kept, measured, TableEvaluator.from_csv(path, space)


def test_an_interrupted_table_resumes_from_its_own_file(benchmark_module, cache_root, tmp_path, monkeypatch):
    """The table file is the checkpoint: a run that stopped part-way (and lost its cache)
    measures only the plans the file lacks."""
    full, kept, measured, resumed = _rerun_cut_table(benchmark_module, tmp_path, monkeypatch)
    assert sorted(measured) == sorted(set(full.rows) - set(kept))
    assert len(resumed) == len(full) and all(resumed.rows[p]["reward"] == kept[p]["reward"] for p in kept)


def test_a_table_of_another_footing_is_measured_again_not_resumed(benchmark_module, cache_root, tmp_path,
                                                                 monkeypatch):
    """A table file left by an older evaluation version (here: a partial one) holds numbers that
    today's code would not produce: reward_table.py measures every plan again instead of
    resuming it, and the rewritten file carries today's footing."""

    full, _, measured, again = _rerun_cut_table(benchmark_module, tmp_path, monkeypatch,
                                                eval_version=EVAL_VERSION - 1)
    assert sorted(measured) == sorted(full.rows)
    assert again.metadata["config"]["eval_version"] == EVAL_VERSION and len(again) == len(full)


def test_the_shipped_whole_lenet_table_holds_every_plan_on_the_footing_it_states(cache_root, tmp_path):
    """Issue 16 item 4: every plan of the whole LeNet space, measured once at `cpu` on the
    default data, shipped with its provenance; the README's optimum is the table's.

    It was measured under evaluation version 5 (the standardised attacker); versions 6 and 7
    changed `cpu`'s attacker, so until it is measured again the table must say so, the README must
    say so, and the searchers must refuse it as of another footing rather than mix it with
    today's numbers (when it is measured again, this test checks today's footing instead)."""
    from privacysplit.agents.table import TableEvaluator
    from privacysplit.envs.evaluator import Evaluator

    (path,) = (BENCHMARKS / "results" / "reward_table_full").glob("table_lenet_mnist_cpu_*.csv.gz")
    evaluator = Evaluator("lenet", fidelity="cpu", cache=False)  # every technique, every partition
    table = TableEvaluator.from_csv(path, evaluator.space)
    assert len(table) == evaluator.space.count() == 3870
    assert table.metadata["command"].startswith("python benchmarks/reward_table.py --fidelity cpu --partitions all")
    readme = (BENCHMARKS.parent / "README.md").read_text()
    plan, best = table.optimum()
    assert f"`{plan}` scores {best:.4f}" in readme
    recorded = table.metadata["config"]
    if recorded["eval_version"] == EVAL_VERSION:
        table.check_footing(evaluator.config())
        return
    assert recorded["eval_version"] == 5 and "attack_input" not in recorded["fidelity"]  # standardised
    assert "whole LeNet space** (evaluation version 5" in readme
    with pytest.raises(ValueError, match="another footing"):
        table.check_footing(evaluator.config())
    today = {k: v for k, v in evaluator.config().items() if k not in ("eval_version", "fidelity")}
    assert {k: recorded[k] for k in today} == json.loads(json.dumps(today, default=str))  # all else the same


def test_the_whole_space_measured_again_is_on_todays_footing():
    """The 3,870-plan table measured again under today's evaluation version (``v7/``, beside
    the version-5 one until its screening table is measured too): every plan, today's footing,
    and the optimum the README quotes."""
    from privacysplit.agents.table import TableEvaluator
    from privacysplit.envs.evaluator import Evaluator

    (path,) = (BENCHMARKS / "results" / "reward_table_full" / "v7").glob("table_lenet_mnist_cpu_*.csv.gz")
    evaluator = Evaluator("lenet", fidelity="cpu", cache=False)
    table = TableEvaluator.from_csv(path, evaluator.space)
    assert len(table) == evaluator.space.count() == 3870
    assert table.metadata["config"]["eval_version"] == EVAL_VERSION
    table.check_footing(evaluator.config())  # raises on another footing
    plan, best = table.optimum()
    assert f"`{plan}`, now {best:.4f}" in (BENCHMARKS.parent / "README.md").read_text()


def test_screened_evolution_matches_bilstm_at_50_with_half_the_compute_on_the_whole_space():
    """Issue 16 item 3 on the measured whole-space lenet table (evaluation version 5): over seeds
    0-9, screened_evolution with 25 compute (a screening costing 0.350 of a `cpu` evaluation)
    has a median regret no larger than the paper's bilstm after 50 `cpu` evaluations.

    It held on the 212-plan table too under version 5, and no longer does on that table
    measured under versions 6 and 7: under version 7 screened_evolution's median regret is 0.023
    at 25 compute and 0.0093 at 50 (the runner-up, 0/10 seeds found the optimum) against bilstm's
    0 at 50 (7/10), because the screening fidelity ranks the optimum 36th of 212 and costs 0.622
    of an evaluation (README, *Searchers on
    a measured reward table*)."""
    from privacysplit.agents import make_agent
    from privacysplit.agents.table import TableEvaluator, table_env
    from privacysplit.envs.evaluator import Evaluator

    folder = BENCHMARKS / "results" / "reward_table_full"
    # the evaluator's space, as reward_table.py builds it: its layer specs (mnist-shaped) are
    # the BiLSTM's input features, so another lenet's specs would search differently
    space = Evaluator("lenet", fidelity="cpu", cache=False).space
    (high,) = (TableEvaluator.from_csv(p, space) for p in folder.glob("table_lenet_mnist_cpu_*.csv*"))
    (low,) = (TableEvaluator.from_csv(p, space)
              for p in folder.glob("table_lenet_mnist_cpu-n_train1000-base_epochs10-n_ec1-n_d1_*.csv*"))
    optimum = high.optimum()[1]
    bilstm, screened = [], []
    for seed in range(10):
        env = table_env("lenet", table=TableEvaluator(space, high.rows))
        bilstm.append(optimum - make_agent("bilstm", seed=seed).search(env, 50, progress=False).best_reward)
        env = table_env("lenet", table=TableEvaluator(space, high.rows))
        result = make_agent("screened_evolution", seed=seed, cost_ratio=0.350,
                            low_env=TableEvaluator(space, low.rows)).search(env, 25, progress=False)
        assert result.compute <= 25
        screened.append(optimum - result.best_reward)
    assert statistics.median(screened) <= statistics.median(bilstm)


def test_a_searcher_that_plans_from_its_budget_is_run_once_per_budget(benchmark_module, tmp_path, monkeypatch):
    """screened_evolution splits its budget up front, so a budget-10 search is not the first
    10 compute of a budget-20 one: reward_table.py runs it per budget (and successive halving,
    whose every prefix is a smaller search, once)."""
    module = benchmark_module("reward_table")
    budgets_run: list[tuple[str, int]] = []
    original = module.run_searcher

    def counting(name, seed, table, low, args, budget):
        budgets_run.append((name, budget))
        return original(name, seed, table, low, args, budget)

    monkeypatch.setattr(module, "run_searcher", counting)
    out = tmp_path / "syn"
    argv = ["--synthetic", "--fidelity", "cpu", "--low-fidelities", "smoke", "--cost-ratio", "0.25", "--seeds", "2",
            "--searchers", "screened_evolution,successive_halving", "--budgets", "10,20", "--out", str(out)]
    assert module.main(argv) == 0
    assert budgets_run == [("screened_evolution", 10), ("screened_evolution", 20)] * 2 + [("successive_halving", 20)] * 2
    summary = json.loads((out / "summary.json").read_text())["searchers"]["screened_evolution"]
    from privacysplit.agents import make_agent
    from privacysplit.agents.table import TableEvaluator, table_env
    from privacysplit.envs.evaluator import Evaluator

    space = Evaluator("lenet", fidelity="cpu", techniques=["W1", "W2", "C1", "F1"], partitions=[2, 5, 7, 9],
                      cache=False).space
    high, low = TableEvaluator.synthetic(space, noise=0.02), TableEvaluator.synthetic(space, noise=0.3)
    for budget in (10, 20):
        alone = make_agent("screened_evolution", seed=1, cost_ratio=0.25, low_env=low).search(
            table_env("lenet", table=TableEvaluator(space, high.rows)), budget, progress=False)
        assert summary["regrets"][str(budget)][1] == pytest.approx(high.optimum()[1] - alone.best_reward)
