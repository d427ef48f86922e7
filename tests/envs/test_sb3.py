"""Stable-Baselines3 and sb3-contrib agents learn on the env unchanged."""

from __future__ import annotations

import pytest
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO


@pytest.mark.parametrize("algo", [PPO, A2C, MaskablePPO], ids=["ppo", "a2c", "maskable_ppo"])
def test_sb3_learns_a_few_hundred_steps(make_env, algo):
    # a small space (12 plans) so repeated plans come from the cache and the test stays fast
    env = make_env(base="lenet", partitions=[2, 5], techniques=["W1", "C3"])
    extra = {} if algo is A2C else {"batch_size": 24}
    model = algo("MlpPolicy", env, n_steps=24, seed=0, device="cpu", **extra)
    model.learn(total_timesteps=240)
    assert model.num_timesteps >= 240
    assert len(env.evaluator.cache) >= 3  # it really finished episodes and evaluated plans
