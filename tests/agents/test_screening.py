"""screened_evolution on synthetic reward tables: budget split, evolution at the low fidelity,
promotion of the best screened plans, and its edge cases.

As in test_multifidelity.py, the low-fidelity table is the synthetic reward with much more
noise (a cheap fidelity that ranks plans roughly).
"""

from __future__ import annotations

import pytest

from privacysplit.agents import make_agent
from privacysplit.agents.multifidelity import MultiFidelityResult
from privacysplit.agents.screening import split_budget
from privacysplit.agents.table import TableEvaluator, table_env
from privacysplit.envs.space import SearchSpace
from privacysplit.models import build


@pytest.fixture(scope="module")
def tables():
    """(target, low) synthetic tables of the 212-plan lenet space."""
    space = SearchSpace(build("lenet").layers, ["W1", "W2", "C1", "F1"], [2, 5, 7, 9])
    return TableEvaluator.synthetic(space, noise=0.02), TableEvaluator.synthetic(space, noise=0.3)


def search(tables, budget=20, name="screened_evolution", **options) -> MultiFidelityResult:
    high, low = tables
    env = table_env("lenet", table=TableEvaluator(high.space, high.rows))
    options.setdefault("cost_ratio", 0.25)
    return make_agent(name, low_env=TableEvaluator(low.space, low.rows), **options).search(env, budget, progress=False)


@pytest.mark.parametrize(("budget", "ratio", "fraction", "screens", "promotions"),
                         [(25, 0.35, 0.75, 54, 6), (10, 0.25, 0.5, 20, 5), (3, 0.5, 0.9, 4, 1)])
def test_the_budget_is_split_as_documented(tables, budget, ratio, fraction, screens, promotions):
    assert split_budget(budget, fraction, ratio) == (screens, promotions)
    result = search(tables, budget, cost_ratio=ratio, screen_fraction=fraction, seed=3)
    assert (result.low_evaluations, result.high_evaluations) == (screens, promotions)
    assert result.compute == pytest.approx(screens * ratio + promotions) and result.compute <= budget + 1e-9
    assert result.stop_reason == "budget"
    assert [r["compute"] for r in result.history][-1] == pytest.approx(result.compute)


def test_screens_by_evolution_and_promotes_the_best_screened(tables):
    """The screened plans are exactly what regularized evolution with the same seed proposes
    on the low table, and the promoted ones are the best of them by low reward."""
    high, low = tables
    result = search(tables, 25, seed=5)
    screened = [r["plan"] for r in result.low_history]
    evolution = make_agent("evolution", seed=5).search(
        table_env("lenet", table=TableEvaluator(low.space, low.rows)), len(screened), progress=False)
    assert screened == [r["plan"] for r in evolution.history if r["new"]]
    by_low = sorted(result.low_history, key=lambda r: -r["reward"])
    promoted = {r["plan"] for r in result.low_history if r["promoted"]}
    assert promoted == {r["plan"] for r in by_low[:result.high_evaluations]}
    assert min(low.rows[p]["reward"] for p in promoted) > by_low[result.high_evaluations]["reward"]
    # it reports the target reward of what it promoted, not the low one
    assert {r["plan"] for r in result.history} == promoted
    assert result.best_reward == max(high.rows[p]["reward"] for p in promoted)


def test_a_space_smaller_than_the_screening_is_screened_whole_and_promoted_as_far_as_paid(tables):
    space = SearchSpace(build("lenet").layers, ["W1"], [2, 5])  # 6 plans
    high, low = TableEvaluator.synthetic(space), TableEvaluator.synthetic(space, noise=0.3)
    env = table_env("lenet", table=TableEvaluator(space, high.rows))
    agent = make_agent("screened_evolution", cost_ratio=0.5, low_env=TableEvaluator(space, low.rows))
    result = agent.search(env, 5, progress=False)  # 6 screens = 3 compute; 2 promotions left
    assert result.low_evaluations == 6 and result.high_evaluations == 2 and result.compute == 5
    result = agent.search(env, 20, progress=False)
    assert result.low_evaluations == 6 and result.high_evaluations == 6 and result.best_reward == high.optimum()[1]


def test_mistakes_are_value_errors(tables):
    for bad in (0, 1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="screen_fraction"):
            make_agent("screened_evolution", screen_fraction=bad)
    with pytest.raises(ValueError, match="tournament_size"):
        make_agent("screened_evolution", population_size=2, tournament_size=4)
    with pytest.raises(ValueError, match="valid presets"):
        make_agent("screened_evolution", low_fidelity="fast")
    with pytest.raises(ValueError, match="at least 1.35"):
        search(tables, 1, cost_ratio=0.35)


def test_same_seed_same_search_and_records_round_trip(tables, tmp_path):
    first = search(tables, 12, seed=1)
    high, low = tables
    env = table_env("lenet", table=TableEvaluator(high.space, high.rows))
    agent = make_agent("screened_evolution", cost_ratio=0.25, seed=1, low_env=TableEvaluator(low.space, low.rows))
    second = agent.search(env, 12, progress=False, log_dir=tmp_path)
    assert first.low_history == second.low_history and first.history[0]["plan"] == second.history[0]["plan"]
    back = MultiFidelityResult.from_json(tmp_path / "result.json")
    assert back.low_history == second.low_history and back.compute == second.compute


def test_real_env_builds_its_low_fidelity_evaluator(make_real_env):
    env = make_real_env(techniques=["W1"], partitions=[2, 5])
    result = make_agent("screened_evolution", low_fidelity="smoke", cost_ratio=0.5, population_size=2,
                        tournament_size=2, seed=0).search(env, 2, progress=False)
    # budget 2: 1 promotion (round(0.5) = 0, at least 1) and 2 screens at 0.5
    assert (result.low_fidelity, result.low_evaluations, result.high_evaluations) == ("smoke", 2, 1)
    env.unwrapped.space.validate(result.best_plan)
