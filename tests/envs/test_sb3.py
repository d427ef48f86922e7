"""Stable-Baselines3 and sb3-contrib agents learn on the env unchanged."""

from __future__ import annotations

import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO


@pytest.mark.parametrize("algo", [PPO, A2C, MaskablePPO], ids=["ppo", "a2c", "maskable_ppo"])
def test_sb3_learns_a_few_hundred_steps(make_env, algo):
    # a small space (12 plans) so repeated plans come from the cache and the test stays fast
    env = make_env(base="lenet", partitions=[2, 5], techniques=["W1", "C3"])
    extra = {} if algo is A2C else {"batch_size": 24}
    model = algo("MlpPolicy", env, n_steps=24, seed=0, device="cpu", **extra)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(total_timesteps=240)
    # gradient steps really changed the policy
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    # episodes ended (3 steps each, plus the no-op invalid actions of unmasked agents), and
    # each return is the evaluator's reward of a plan
    returns = [ep["r"] for ep in model.ep_info_buffer]
    assert len(returns) >= 20
    rewards = [env.evaluate(plan)["reward"] for plan in env.space]
    assert all(min(abs(r - x) for x in rewards) < 1e-5 for r in returns)
    assert len({round(r, 5) for r in returns}) >= 2  # more than one plan was tried


def test_one_model_moves_between_networks_with_set_env(make_env):
    # max_layers pads the observation and the action space alike, so the spaces match
    small = make_env(base="lenet", max_layers=45, partitions=[2], techniques=["W1"])
    deep = make_env(base="vgg16", max_layers=45, partitions=[0], techniques=["W1"])
    assert small.action_space == deep.action_space and small.observation_space == deep.observation_space
    model = MaskablePPO("MlpPolicy", small, n_steps=8, batch_size=8, seed=0, device="cpu")
    model.learn(total_timesteps=8)
    model.set_env(deep)
    model.learn(total_timesteps=8, reset_num_timesteps=False)
    plans = {ep["r"] for ep in model.ep_info_buffer}
    assert plans  # episodes ended on both networks
    assert str(deep.evaluator.structure.layers[0].type) == "conv" and len(deep.layers) == 45
