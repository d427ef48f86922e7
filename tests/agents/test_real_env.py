"""Every agent on the real env: lenet/mnist at smoke fidelity (a small space, shared cache)."""

from __future__ import annotations

import itertools

import pytest
from _agent_options import STOCK

from privacysplit.agents import make_agent, search_with_sb3


@pytest.mark.parametrize("name", list(STOCK))
def test_each_agent_returns_a_valid_best_plan(name, make_real_env):
    env = make_real_env()
    result = make_agent(name, seed=0, **STOCK[name]).search(env, 3, progress=False)
    assert result.evaluations == 3
    env.unwrapped.space.validate(result.best_plan)
    assert result.best_reward == result.best_metrics["reward"]
    assert {"accuracy", "privacy_loss", "resource"} <= set(result.best_metrics)
    assert all(0.0 <= r["reward"] <= 1.0 for r in result.history)


def test_exhaustive_finds_the_true_optimum_of_a_small_real_space(make_real_env):
    env = make_real_env(techniques=["W1"], partitions=[2, 5])  # 2 + 4 plans
    space = env.unwrapped.space
    brute = []  # the test's own enumeration
    for p in space.partitions:
        layers = [i for i in range(p + 1) if len(space.choices(i)) > 1]
        for combo in itertools.product(*(space.choices(i) for i in layers)):
            brute.append(" ".join([f"{p} |"] + [f"{i}:{t}" for i, t in zip(layers, combo, strict=True) if t != "none"]))
    brute = [b if b[-1] != "|" else b + " none" for b in brute]
    rewards = {info["plan"]: info["reward"] for info in env.unwrapped.evaluate_many(brute)}
    result = make_agent("exhaustive").search(env, 100, progress=False)
    assert result.evaluations == len(brute) == 6 and result.stop_reason == "exhausted"
    assert result.best_reward == max(rewards.values())
    assert rewards[result.best_plan] == result.best_reward


def test_a_users_sb3_model_searches(make_real_env):
    from sb3_contrib import MaskablePPO

    env = make_real_env()
    model = MaskablePPO("MlpPolicy", env, n_steps=8, batch_size=8, seed=0, device="cpu")
    result = search_with_sb3(model, env, 2, progress=False)
    assert result.evaluations == 2
    env.unwrapped.space.validate(result.best_plan)


def test_search_logs_reconstructions_of_each_new_best_plan(make_real_env, tmp_path):
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    result = make_agent("random", seed=1).search(make_real_env(), 4, log_dir=str(tmp_path), progress=False)
    assert "reconstruction" not in result.best_metrics  # bulky: logged as an image, not kept
    acc = EventAccumulator(str(tmp_path), size_guidance={IMAGES: 0})
    acc.Reload()
    images = acc.Images("reconstruction/best")
    improvements = sum(1 for i, r in enumerate(result.history)
                       if r["reward"] > max([-np.inf] + [h["reward"] for h in result.history[:i]]))
    assert len(images) == improvements >= 1
    assert (images[0].height, images[0].width) == (2 * 32, 4 * 32)  # originals over reconstructions (32x32 MNIST)
