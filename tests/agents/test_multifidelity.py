"""Multi-fidelity searchers on synthetic reward tables: compute budget, promotions, records.

The target table is the synthetic reward; the low-fidelity table is the same reward with
much more noise (a cheap fidelity that ranks plans roughly), so screening matters.
"""

from __future__ import annotations

import math

import pytest

from privacysplit.agents import make_agent
from privacysplit.agents.multifidelity import MultiFidelityResult
from privacysplit.agents.table import TableEvaluator, table_env
from privacysplit.envs.space import SearchSpace
from privacysplit.models import build

MULTI = ("successive_halving", "hyperband")


@pytest.fixture(scope="module")
def tables():
    """(target, low) synthetic tables of the 212-plan lenet space."""
    space = SearchSpace(build("lenet").layers, ["W1", "W2", "C1", "F1"], [2, 5, 7, 9])
    return TableEvaluator.synthetic(space, noise=0.02), TableEvaluator.synthetic(space, noise=0.3)


def search(tables, name="successive_halving", budget=20, **options):
    high, low = tables
    env = table_env("lenet", table=TableEvaluator(high.space, high.rows))
    options.setdefault("cost_ratio", 0.1)
    agent = make_agent(name, low_env=TableEvaluator(low.space, low.rows), **options)
    return agent.search(env, budget, progress=False)


@pytest.mark.parametrize("name", MULTI)
@pytest.mark.parametrize(("budget", "ratio"), [(5, 0.1), (12, 0.25), (30, 0.05)])
def test_compute_budget_is_respected(tables, name, budget, ratio):
    result = search(tables, name, budget, cost_ratio=ratio, seed=1)
    n_low, n_high = result.low_evaluations, result.high_evaluations
    assert result.compute == pytest.approx(n_low * ratio + n_high)
    assert result.compute <= budget + 1e-9
    # it stops only when the next screening and its promotion no longer fit
    assert result.stop_reason == "budget"
    assert result.compute > budget - (1 + ratio) - 1e-9
    # the target evaluations are exactly the promoted plans, each measured once
    promoted = [r["plan"] for r in result.low_history if r["promoted"]]
    assert [r["plan"] for r in result.history] == promoted
    assert n_high == len(promoted) <= n_low
    if budget >= 12:  # past the first few plans, screening prunes
        assert n_high < n_low
    # compute recorded per evaluation never decreases and never passes the budget
    marks = sorted([(r["compute"], "h") for r in result.history] + [(r["compute"], "l") for r in result.low_history])
    assert marks[-1][0] == pytest.approx(result.compute)
    assert all(r["compute"] <= budget + 1e-9 for r in result.history)


def test_promotes_only_the_plans_it_ranked_best(tables):
    """Successive halving with reduction factor eta: the i-th screened plan is promoted iff
    its low-fidelity reward is among the top max(1, i // eta) of the i screened so far."""
    high, low = tables
    eta = 3
    result = search(tables, budget=25, reduction_factor=eta, seed=0)
    rewards = []
    for row in result.low_history:
        assert row["reward"] == low.rows[row["plan"]]["reward"]  # ranked by the low fidelity
        rewards.append(row["reward"])
        k = max(1, len(rewards) // eta)
        assert row["promoted"] == (row["reward"] >= sorted(rewards)[-k]), row
    promoted = [r for r in result.low_history if r["promoted"]]
    assert 0 < len(promoted) < len(result.low_history) / 2
    # and it reports the target reward of what it promoted, not the low one
    for row in result.history:
        assert row["reward"] == high.rows[row["plan"]]["reward"]
    assert result.best_reward == max(high.rows[r["plan"]]["reward"] for r in promoted)


def test_screening_beats_target_only_search_at_equal_compute(tables):
    """At a fixed compute, screening cheaply and promoting the best finds better plans than
    spending it all on target evaluations of random plans (the point of the searcher)."""
    high, _ = tables
    optimum = high.optimum()[1]
    multi, plain = [], []
    for seed in range(10):
        multi.append(optimum - search(tables, budget=10, seed=seed).best_within(10))
        env = table_env("lenet", table=TableEvaluator(high.space, high.rows))
        plain.append(optimum - make_agent("random", seed=seed).search(env, 10, progress=False).best_reward)
    assert sum(multi) < 0.5 * sum(plain)
    assert sum(r == 0 for r in multi) > sum(r == 0 for r in plain)


def test_best_within_reads_compute(tables):
    result = search(tables, budget=20, seed=2)
    assert result.best_within(20) == result.best_reward
    assert result.best_within(0.0) == -math.inf
    first = result.history[0]
    assert result.best_within(first["compute"]) == first["reward"]


def test_results_record_low_and_high_apart(tables, tmp_path):
    first = search(tables, budget=10, seed=0)
    again = search(tables, budget=10, seed=0)
    assert [r["plan"] for r in again.low_history] == [r["plan"] for r in first.low_history]  # seeded
    agent = make_agent("successive_halving", cost_ratio=0.1, low_env=TableEvaluator(tables[1].space, tables[1].rows))
    env = table_env("lenet", table=TableEvaluator(tables[0].space, tables[0].rows))
    result = agent.search(env, 10, progress=False, log_dir=tmp_path)
    assert [r["plan"] for r in result.low_history] == [r["plan"] for r in first.low_history]
    back = MultiFidelityResult.from_json(tmp_path / "result.json")
    assert back.low_history == result.low_history and back.compute == result.compute
    assert back.cost_ratio == 0.1 and back.low_fidelity == "table"
    lines = (tmp_path / "low_history.csv").read_text().splitlines()
    assert lines[0] == "screen,plan,reward,promoted,compute" and len(lines) == result.low_evaluations + 1
    assert len((tmp_path / "history.csv").read_text().splitlines()) == result.high_evaluations + 1


def test_cost_ratio_defaults_to_the_tables_eval_seconds(tables):
    high, low = tables
    high_rows = {p: {**r, "eval_seconds": 4.0} for p, r in high.rows.items()}
    low_rows = {p: {**r, "eval_seconds": 0.5} for p, r in low.rows.items()}
    env = table_env("lenet", table=TableEvaluator(high.space, high_rows))
    result = make_agent("hyperband", low_env=TableEvaluator(low.space, low_rows)).search(env, 6, progress=False)
    assert result.cost_ratio == 0.125
    with pytest.raises(ValueError, match="cost_ratio="):
        make_agent("hyperband", low_env=TableEvaluator(low.space, low.rows)).search(
            table_env("lenet", table=TableEvaluator(high.space, high.rows)), 6, progress=False)


def test_mistakes_are_value_errors(tables):
    high, low = tables
    env = table_env("lenet", table=TableEvaluator(high.space, high.rows))
    with pytest.raises(ValueError, match="low_env="):
        make_agent("successive_halving", cost_ratio=0.1).search(env, 5, progress=False)
    with pytest.raises(ValueError, match="successive_halving, hyperband, none"):
        make_agent("successive_halving", pruner="median")
    with pytest.raises(ValueError, match="tpe, random"):
        make_agent("hyperband", sampler="cmaes")
    with pytest.raises(ValueError, match="reduction_factor"):
        make_agent("hyperband", reduction_factor=1)
    with pytest.raises(ValueError, match="valid presets"):
        make_agent("hyperband", low_fidelity="fast")
    other = TableEvaluator.synthetic(SearchSpace(build("lenet").layers, ["W1"], [2, 5]))
    with pytest.raises(ValueError, match="space"):
        make_agent("successive_halving", cost_ratio=0.1, low_env=other).search(env, 5, progress=False)


def test_tpe_sampler_and_batches(tables):
    result = search(tables, budget=8, sampler="tpe", n_startup_trials=3, batch_size=3, seed=0)
    assert result.compute <= 8 + 1e-9 and result.high_evaluations >= 1
    assert result.proposals >= result.low_evaluations


def test_real_env_builds_its_low_fidelity_evaluator(make_real_env):
    """Without low_env the searcher builds an evaluator at low_fidelity from the env's."""
    env = make_real_env(techniques=["W1"], partitions=[2, 5])
    result = make_agent("successive_halving", low_fidelity="smoke", cost_ratio=0.5, seed=0).search(
        env, 2, progress=False)
    assert result.low_fidelity == "smoke" and result.low_evaluations >= 1 and result.high_evaluations >= 1
    assert result.compute <= 2 + 1e-9
    env.unwrapped.space.validate(result.best_plan)


def test_low_fidelity_specs():
    from privacysplit.agents.multifidelity import fidelity_from_spec
    from privacysplit.fidelity import FIDELITIES

    assert fidelity_from_spec("smoke") is FIDELITIES["smoke"]
    mid = fidelity_from_spec("cpu:n_ec=1:n_val=250")
    assert (mid.name, mid.n_ec, mid.n_val, mid.n_d) == ("cpu-n_ec1-n_val250", 1, 250, FIDELITIES["cpu"].n_d)
    assert mid.key() != FIDELITIES["cpu"].key()
    for bad, match in (("fast", "valid presets"), ("cpu:n_x=1", "valid fields"), ("cpu:n_ec=a", "needs a number")):
        with pytest.raises(ValueError, match=match):
            make_agent("hyperband", low_fidelity=bad)


def test_real_env_without_a_measured_cost_ratio_says_what_to_pass(make_real_env):
    with pytest.raises(ValueError, match="no measured cost ratio for fidelity smoke -> smoke.*cost_ratio="):
        make_agent("successive_halving", low_fidelity="smoke").search(make_real_env(), 3, progress=False)


@pytest.mark.parametrize("name", MULTI)
def test_same_seed_same_search(tables, name):
    """Hyperband assigns brackets by a hash of the study's name: it must not be a fresh UUID per run."""
    first, second = (search(tables, name, 12, cost_ratio=0.25, seed=1) for _ in range(2))
    assert first.low_history == second.low_history
    assert [r["plan"] for r in first.history] == [r["plan"] for r in second.history]
