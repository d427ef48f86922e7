"""Hundreds of random episodes, masked and unmasked, every plan really evaluated (smoke)."""

from __future__ import annotations

import math

import numpy as np
import pytest

# (base, dataset, privacy, episodes): 200 masked and 200 unmasked episodes in all
SETTINGS = [("lenet", "mnist", "ssim", 120), ("fcn", "mnist", "mse", 40), ("lenet", "digits", "property", 40)]


def play(env, rng: np.random.Generator, masked: bool) -> tuple[float, dict, int]:
    env.reset(seed=int(rng.integers(1 << 30)))
    invalid = 0
    while True:
        if masked:
            action = int(rng.choice(np.flatnonzero(env.action_masks())))
        else:
            action = int(rng.integers(env.action_space.n))
        _, reward, terminated, truncated, info = env.step(action)
        invalid += info.get("invalid_action", False)
        if terminated or truncated:
            return reward, info, invalid


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
def test_random_episodes_finish_with_rewards_in_unit_interval(make_env, masked):
    rng = np.random.default_rng(0 if masked else 1)
    episodes, invalid_total, evaluated = 0, 0, set()
    for base, dataset, privacy, n in SETTINGS:
        env = make_env(base=base, dataset=dataset, privacy=privacy)
        for _ in range(n):
            reward, info, invalid = play(env, rng, masked)
            assert math.isfinite(reward) and 0.0 <= reward <= 1.0
            assert "error" not in info, info.get("error")
            assert 0.0 <= info["accuracy"] <= 1.0 and 0.0 <= info["privacy_loss"] <= 1.0
            evaluated.add((base, dataset, info["plan"]))
            invalid_total += invalid
            episodes += 1
    assert episodes == 200
    assert len(evaluated) > 100  # mostly distinct plans, each really built and trained
    if masked:
        assert invalid_total == 0
    else:
        assert invalid_total > 0  # unmasked agents hit inapplicable techniques and get no-ops
