"""The searcher interface: registry, options, results, budget, logging, determinism."""

from __future__ import annotations

import json
import math

import pytest
from _agent_options import MULTI_FIDELITY, STOCK

from privacysplit.agents import AGENTS, SearchResult, make_agent, register_agent
from privacysplit.agents.base import BaseSearcher


def test_registry_lists_every_agent():
    assert set(STOCK) | set(MULTI_FIDELITY) | {"sb3"} == set(AGENTS)


def test_unknown_agent_lists_valid_names():
    with pytest.raises(ValueError, match="unknown agent 'genius'") as err:
        make_agent("genius")
    for name in STOCK:
        assert name in str(err.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match="rollouts"):
        make_agent("bilstm", rolouts=3)
    with pytest.raises(ValueError, match="batch_size"):
        make_agent("random", bogus=1)
    with pytest.raises(ValueError, match="positive"):
        make_agent("bilstm", rollouts=0)


def test_names_are_normalised():
    assert make_agent("Maskable-PPO").name == "maskable_ppo"


def test_an_agent_spec_carries_options_and_keywords_win():
    agent = make_agent("bilstm:entropy_coef=0.01:patience=1000:max_grad_norm=None:normalize_advantages=true", seed=4)
    cfg = agent.config
    assert (cfg.entropy_coef, cfg.patience, cfg.max_grad_norm, cfg.normalize_advantages, cfg.seed) == (
        0.01, 1000, None, True, 4)
    assert make_agent("bilstm:seed=1", seed=2).config.seed == 2
    assert make_agent("successive_halving:low_fidelity=smoke").config.low_fidelity == "smoke"  # a string
    with pytest.raises(ValueError, match="not option=value"):
        make_agent("bilstm:entropy_coef")
    with pytest.raises(ValueError, match="valid options: seed, rollouts"):
        make_agent("bilstm:entropy=0.1")
    with pytest.raises(ValueError, match="entropy_coef must be >= 0"):
        make_agent("bilstm:entropy_coef=-1")


@pytest.mark.parametrize("name", list(STOCK))
def test_budget_is_respected_and_same_seed_same_history(name, make_table_env, small_table):
    runs = []
    for _ in range(2):
        env = make_table_env(table=small_table.__class__(small_table.space, small_table.rows))
        result = make_agent(name, seed=3, **STOCK[name]).search(env, 7, progress=False)
        assert result.evaluations == 7 and result.stop_reason == "budget"
        # one budget rule: only plans new to this search cost; repeats are free rows
        assert [r["measurement"] for r in result.history if r["new"]] == list(range(1, 8))
        assert [r["step"] for r in result.history] == list(range(1, len(result.history) + 1))
        assert result.proposals >= len(result.history) >= 7
        assert result.best_reward == max(r["reward"] for r in result.history)
        env.unwrapped.space.validate(result.best_plan)
        runs.append([(r["plan"], r["reward"]) for r in result.history])
    assert runs[0] == runs[1]


def test_bad_budget_is_a_value_error(make_table_env):
    for budget in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="budget"):
            make_agent("random").search(make_table_env(), budget, progress=False)


def test_batched_searchers_hand_over_whole_batches(make_table_env):
    for name, options, size in (("random", {"batch_size": 6}, 6), ("bilstm", {"rollouts": 4, "memory": False}, 4),
                                ("evolution", {"population_size": 8}, 8)):
        env = make_table_env()
        make_agent(name, **options).search(env, 20, progress=False)
        assert env.unwrapped.evaluator.batch_sizes[0] == size, name


def test_max_seconds_stops_the_search(make_table_env):
    result = make_agent("random", batch_size=1).search(make_table_env(), 10_000, max_seconds=0.05, progress=False)
    assert result.stop_reason == "time" and 0 < result.evaluations < 10_000


def test_result_files_round_trip(make_table_env, tmp_path):
    result = make_agent("random", seed=1).search(make_table_env(), 12, progress=False)
    curve = result.best_so_far()
    assert len(curve) == 12 and curve == sorted(curve) and curve[-1] == result.best_reward
    assert result.best_at(5) == curve[4]
    back = SearchResult.from_json(result.to_json(tmp_path / "r.json"))
    assert back.best_plan == result.best_plan and back.history == result.history
    lines = result.to_csv(tmp_path / "h.csv").read_text().splitlines()
    assert lines[0].startswith("step,measurement,new,batch,plan,reward,accuracy,privacy_loss,resource,cache_hit,wall_time,eval_seconds")
    assert len(lines) == 13
    assert set(result.best_metrics) >= {"plan", "reward", "accuracy", "privacy_loss", "resource"}


def test_log_dir_gets_tensorboard_scalars_and_history(make_table_env, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_agent("bilstm", rollouts=3, seed=0).search(make_table_env(), 9, log_dir=str(tmp_path), progress=False)
    assert (tmp_path / "history.csv").exists()
    assert json.loads((tmp_path / "result.json").read_text())["agent"] == "bilstm"
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    expected = {"search/best_reward", "search/reward", "search/accuracy", "search/privacy_loss", "search/resource", "losses/policy"}
    assert expected <= tags
    assert len(acc.Scalars("search/reward")) == 9


def test_a_users_own_searcher_plugs_in(make_table_env):
    class Greedy(BaseSearcher):
        name = "greedy-first"

        from dataclasses import dataclass as _dc

        @_dc
        class Config:
            seed: int = 0

        def run(self, env, run):
            run.evaluate([next(iter(run.space))])

    register_agent("mine", Greedy)
    agent = make_agent("mine")
    result = agent.search(make_table_env(), 5, progress=False)
    assert result.evaluations == 1 and result.stop_reason == "stopped"
    AGENTS._entries.pop("mine")


def test_empty_result_reports_minus_infinity():
    result = SearchResult("", -math.inf, {}, [])
    assert result.best_at(3) == -math.inf and result.best_so_far() == []
