"""The paper's BiLSTM REINFORCE optimizer: checkpoints, transfer, resume, masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privacysplit.agents import make_agent
from privacysplit.agents.bilstm import BiLSTMSearcher, layer_features


def _trained(make_table_env, **options) -> tuple[BiLSTMSearcher, object]:
    env = make_table_env()
    agent = make_agent("bilstm", seed=1, hidden_size=16, **options)
    agent.search(env, 20, progress=False)
    return agent, env


def test_save_load_reproduces_action_probabilities(make_table_env, tmp_path):
    agent, env = _trained(make_table_env)
    before = agent.action_probabilities(env)
    path = agent.save(tmp_path / "policy.pt")
    torch.load(path, weights_only=True)  # plain tensors and containers only
    loaded = make_agent("bilstm", hidden_size=16).load(path)
    after = loaded.action_probabilities(env)
    np.testing.assert_allclose(after["partition"], before["partition"], rtol=1e-6)
    assert before["compression"].keys() == after["compression"].keys() and before["compression"]
    for layer, probs in before["compression"].items():
        np.testing.assert_allclose(after["compression"][layer], probs, rtol=1e-6)
    assert loaded.greedy_plan(env) == agent.greedy_plan(env)
    fresh = make_agent("bilstm", hidden_size=16, seed=1).action_probabilities(env)
    assert not np.allclose(fresh["partition"], before["partition"])  # training changed the policy


def test_masked_actions_have_zero_probability(make_table_env):
    env = make_table_env(partitions=[2, 5, 7])
    agent = make_agent("bilstm")
    probs = agent.action_probabilities(env)
    allowed = np.zeros(len(env.unwrapped.layers), bool)
    allowed[[2, 5, 7]] = True
    assert probs["partition"][~allowed].max() < 1e-12 and abs(probs["partition"].sum() - 1) < 1e-6
    space = env.unwrapped.space
    for layer, p in probs["compression"].items():
        valid = [t in space.choices(layer) for t in agent.techniques]
        assert p[~np.array(valid)].max() < 1e-12


def test_resume_from_state_dict_continues_identically(make_table_env):
    agent, _ = _trained(make_table_env)
    copy = make_agent("bilstm", seed=1, hidden_size=16)
    copy.load_state_dict(agent.state_dict())
    a = agent.search(make_table_env(), 15, progress=False)
    b = copy.search(make_table_env(), 15, progress=False)
    assert [r["plan"] for r in a.history] == [r["plan"] for r in b.history]


def test_transfer_from_vgg11_to_vgg13(make_table_env, tmp_path):
    vgg11 = make_table_env("vgg11")
    agent = make_agent("bilstm", seed=0, hidden_size=16)
    agent.search(vgg11, 10, progress=False)
    path = agent.save(tmp_path / "vgg11.pt")
    vgg13 = make_table_env("vgg13")
    assert len(vgg13.unwrapped.layers) != len(vgg11.unwrapped.layers)
    assert layer_features(vgg13.unwrapped.layers).shape[1] == layer_features(vgg11.unwrapped.layers).shape[1]
    transferred = BiLSTMSearcher.from_file(path, policy_only=True, seed=5)
    np.testing.assert_allclose(
        transferred.partition_policy.head.weight.detach().numpy(), agent.partition_policy.head.weight.detach().numpy()
    )
    result = transferred.search(vgg13, 10, progress=False)
    assert result.evaluations == 10
    vgg13.unwrapped.space.validate(result.best_plan)
    vgg13.unwrapped.space.validate(transferred.greedy_plan(vgg13))


def test_technique_mismatch_and_architecture_mismatch_are_explained(make_table_env, tmp_path):
    agent, _ = _trained(make_table_env)
    with pytest.raises(ValueError, match="techniques"):
        agent.search(make_table_env(techniques=["W1"]), 5, progress=False)
    path = agent.save(tmp_path / "p.pt")
    with pytest.raises(ValueError, match="hidden_size"):
        make_agent("bilstm", hidden_size=32).load(path)


def test_memory_pool_spends_budget_only_on_new_plans(make_table_env, small_table):
    env = make_table_env(table=small_table)
    result = make_agent("bilstm", seed=0, rollouts=10, lr_partition=0.3, lr_compression=0.1).search(env, 39, progress=False)
    assert result.cache_hits == 0 and result.unique_plans == result.evaluations
    no_memory = make_agent("bilstm", seed=0, memory=False).search(make_table_env(table=small_table.__class__(small_table.space, small_table.rows)), 60, progress=False)
    # without its own pool, bilstm's repeats reach the evaluator (cache hits) and are free too
    assert no_memory.cache_hits > 0 and no_memory.proposals > no_memory.evaluations
    assert no_memory.evaluations == no_memory.unique_plans
    assert result.proposals > result.evaluations  # the pool answered repeats without a row


class _Interrupt(Exception):
    pass


def test_checkpoint_every_episode_and_resume_equals_uninterrupted(make_table_env, tmp_path):
    reference = make_agent("bilstm", seed=3, hidden_size=16).search(make_table_env(), 40, progress=False)

    env = make_table_env()
    inner = env.unwrapped.evaluate_many
    calls = {"n": 0}

    def flaky(plans):  # dies in the 4th episode, after three checkpoints
        calls["n"] += 1
        if calls["n"] == 4:
            raise _Interrupt
        return inner(plans)

    env.unwrapped.evaluate_many = flaky
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(_Interrupt):
        make_agent("bilstm", seed=3, hidden_size=16).search(env, 40, progress=False, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["agent"] == "bilstm" and state["agent_state"]["episodes"] == 3
    assert len(state["run"]["history"]) == len(state["agent_state"]["pool"])  # memory pool: one evaluation per new plan

    agent = make_agent("bilstm", seed=3, hidden_size=16)
    resumed = agent.search(make_table_env(), 40, progress=False, checkpoint=ckpt)
    assert agent.resumed_at == len(state["run"]["history"]) > 0
    assert [r["plan"] for r in resumed.history] == [r["plan"] for r in reference.history]
    assert [r["reward"] for r in resumed.history] == [r["reward"] for r in reference.history]
    assert resumed.best_plan == reference.best_plan
    assert torch.load(ckpt, weights_only=True)["agent_state"]["episodes"] == agent.episodes


def test_checkpoint_errors_name_the_file(make_table_env, tmp_path):
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checkpoint.pt is corrupted"):
        make_agent("bilstm").search(make_table_env(), 5, progress=False, checkpoint=ckpt)
    assert ckpt.read_bytes() == b"garbage"  # reported, not overwritten
    torch.save({"format": 99, "agent": "bilstm"}, ckpt)
    with pytest.raises(ValueError, match="has format 99"):
        make_agent("bilstm").search(make_table_env(), 5, progress=False, checkpoint=ckpt)
    torch.save({"format": 1, "agent": "evolution"}, ckpt)
    with pytest.raises(ValueError, match="written by searcher 'evolution'"):
        make_agent("bilstm").search(make_table_env(), 5, progress=False, checkpoint=ckpt)
    with pytest.raises(ValueError, match="'random' does not checkpoint"):
        make_agent("random").search(make_table_env(), 5, progress=False, checkpoint=tmp_path / "x.pt")


def test_one_reinforce_update_moves_probability_toward_the_rewarded_action():
    """A two-armed bandit for each policy: one update must favour the arm that paid."""
    from privacysplit.envs.space import SearchSpace
    from privacysplit.models import build

    space = SearchSpace(build("lenet").layers, ["W1"], [2, 5])
    agent = make_agent("bilstm", seed=0, lr_partition=0.05, lr_compression=0.05)
    p_before = agent.action_probabilities(space, partition=2)
    # partition policy: partition 2 pays 1, partition 5 pays 0
    rollouts = [agent.rollout(space, partition=p) for p in (2, 5) for _ in range(3)]
    agent.update(space, rollouts, [1.0 if ro.partition == 2 else 0.0 for ro in rollouts])
    p_after = agent.action_probabilities(space, partition=2)
    assert p_after["partition"][2] > p_before["partition"][2] + 1e-3
    assert p_after["partition"][5] < p_before["partition"][5] - 1e-3
    # compression policy at partition 2 (a fresh agent): W1 on layer 0 pays 1, none pays 0
    agent = make_agent("bilstm", seed=0, lr_partition=0.05, lr_compression=0.05)
    agent.rollout(space, partition=2)
    w1 = agent.techniques.index("W1")
    rollouts = [agent.rollout(space, partition=2) for _ in range(12)]
    arms = {ro.actions[0] for ro in rollouts}
    assert arms == {0, w1}  # both arms were pulled
    before = agent.action_probabilities(space, partition=2)["compression"][0][w1]
    agent.update(space, rollouts, [1.0 if ro.actions[0] == w1 else 0.0 for ro in rollouts])
    after = agent.action_probabilities(space, partition=2)["compression"][0][w1]
    assert after > before + 1e-3
