"""PrivacySplit-v0: registration, spaces, masks, stepping, checkers, determinism, cache."""

from __future__ import annotations

import time
import warnings

import gymnasium as gym
import numpy as np
import pytest

import privacysplit  # noqa: F401  (registers the env)
from privacysplit.envs.privacy_split import PrivacySplitEnv


def test_gym_make_alexnet_with_defaults_works_offline(cache_root):
    env = gym.make("PrivacySplit-v0", base="alexnet")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.evaluator.fidelity.name == "cpu"
    assert info["techniques"][0] == "none"
    obs, reward, terminated, truncated, info = env.step(0)  # keep only the first conv on device
    assert not terminated and reward == 0.0 and info["phase"] == "compress"


def test_namespaced_id_works(cache_root):
    env = gym.make("privacysplit:PrivacySplit-v0", fidelity="smoke")
    assert isinstance(env.unwrapped, PrivacySplitEnv)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base": "vgg19"}, "valid networks"),
        ({"dataset": "imagenet"}, "valid datasets"),
        ({"fidelity": "fast"}, "valid presets"),
        ({"threat": "passive"}, "valid: reactive, proactive"),
        ({"privacy": "psnr"}, "valid: mse, ssim, property"),
        ({"resource": "energy"}, "valid: params, macs, latency"),
        ({"techniques": ["W3"]}, "valid techniques"),
        ({"partitions": [99]}, "valid: 0..10"),
        ({"device": "tpu"}, "use 'cpu'"),
        ({"thresholds": (1, 2)}, "A_m, P_m, S_m"),
    ],
)
def test_bad_arguments_name_the_valid_ones(make_env, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_env(**kwargs)


def test_episode_walks_partition_then_compressible_layers(make_env):
    env = make_env(base="lenet")
    env.reset(seed=0)
    mask = env.action_masks()
    assert mask[:11].all() and env.action_space.n == 11
    _, _, terminated, _, info = env.step(7)  # device: conv, relu, pool, conv, relu, pool, fc, relu
    assert not terminated and env.cursor_layer == 0
    assert [env.techniques[i] for i in np.flatnonzero(env.action_masks())] == ["none", "C1", "C2", "C3", "W1", "W2"]
    env.step(env.techniques.index("W1"))
    assert env.cursor_layer == 3  # relu and pool are passed over
    env.step(env.techniques.index("W2"))
    assert env.cursor_layer == 6
    assert [env.techniques[i] for i in np.flatnonzero(env.action_masks())] == ["none", "F1", "F2", "W1"]
    _, reward, terminated, _, info = env.step(env.techniques.index("F1"))
    assert terminated and info["plan"] == "7 | 0:W1 3:W2 6:F1"
    assert 0.0 <= reward <= 1.0 and reward == info["reward"]
    for key in ("accuracy", "accuracy_base", "privacy_loss", "ssim", "mse", "resource", "S1", "S2", "S3",
                "R_A", "R_P", "R_S", "cache_hit", "eval_seconds", "fidelity"):
        assert key in info, key


def test_invalid_actions_are_reported_no_ops(make_env):
    env = make_env(base="lenet", partitions=[2, 5])
    env.reset(seed=0)
    obs0 = env._obs()
    _, reward, terminated, truncated, info = env.step(4)
    assert info["invalid_action"] and not terminated and not truncated and reward == 0
    assert np.array_equal(env._obs(), obs0)
    env.step(2)
    _, _, terminated, _, info = env.step(env.techniques.index("F1"))  # F1 on a conv: no-op
    assert info["invalid_action"] and terminated and info["plan"] == "2 | none"


def test_too_many_invalid_actions_truncate(make_env):
    env = make_env(base="lenet", partitions=[2], max_invalid=3)
    env.reset()
    results = [env.step(0) for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True] and results[-1][1] == 0.0


def test_non_terminal_steps_cost_microseconds(make_env):
    env = make_env(base="vgg16")
    env.reset(seed=0)
    t0 = time.perf_counter()
    n = 0
    for _ in range(200):
        env.reset()
        env.step(39)
        n += 1
        for _ in range(5):
            env.step(0)
            n += 1
    per_step = (time.perf_counter() - t0) / n
    assert per_step < 200e-6, per_step


def test_gymnasium_env_checker_passes_without_warnings(make_env):
    from gymnasium.utils.env_checker import check_env

    env = make_env(base="lenet", partitions=[2, 5], techniques=["W1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


def test_sb3_env_checker_passes_without_warnings(make_env):
    from stable_baselines3.common.env_checker import check_env

    env = make_env(base="lenet", partitions=[2, 5], techniques=["W1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, warn=True)


def test_same_plan_same_reward_second_time_from_cache(make_env, tmp_path):
    env = make_env(base="lenet")
    first = env.unwrapped.evaluate("5 | 0:W1 3:C1")
    second = env.unwrapped.evaluate("5 | 0:W1 3:C1")
    assert not first["cache_hit"] and second["cache_hit"]
    assert second["reward"] == first["reward"] and second["accuracy"] == first["accuracy"]
    fresh = make_env(base="lenet")  # a new process would see the same SQLite file
    third = fresh.evaluate("5 | 0:W1 3:C1")
    assert third["cache_hit"] and third["reward"] == first["reward"]
    t0 = time.perf_counter()
    fresh.evaluate("5 | 0:W1 3:C1")
    assert time.perf_counter() - t0 < 5e-3


def test_same_plan_same_numbers_without_cache(make_env):
    a = make_env(base="lenet", cache="off").evaluate("2 | 0:C3")
    b = make_env(base="lenet", cache="off").evaluate("2 | 0:C3")
    for key in ("accuracy", "privacy_loss", "reward", "S1"):
        assert a[key] == b[key], key


def test_evaluate_rejects_plans_outside_the_space(make_env):
    env = make_env(base="lenet", techniques=["W1"])
    with pytest.raises(ValueError, match="valid choices there: none, W1"):
        env.evaluate("5 | 3:C1")
    with pytest.raises(ValueError, match="valid partitions"):
        env.evaluate("11 | none")


def test_resource_metric_changes_only_the_reward(make_env, tmp_path):
    path = str(tmp_path / "shared.sqlite")
    by_params = make_env(base="lenet", resource="params", cache=path).evaluate("3 | none")
    by_macs = make_env(base="lenet", resource="macs", cache=path).evaluate("3 | none")
    assert by_macs["cache_hit"] and by_macs["resource"] == by_macs["S2"] and by_params["resource"] == by_params["S1"]


def test_failed_evaluation_gives_zero_reward_with_error(make_env, monkeypatch):
    env = make_env(base="lenet", cache="off")

    def boom(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("privacysplit.envs.evaluator.evaluate_split", boom)
    info = env.evaluate("2 | none")
    assert info["reward"] == 0.0 and "out of memory" in info["error"]


def test_render_ansi_shows_the_table(make_env):
    env = make_env(base="lenet", render_mode="ansi")
    env.reset()
    env.step(4)
    text = env.render()
    assert ">  0 device" in text and "cloud" in text
    image = make_env(base="lenet", render_mode="rgb_array")
    image.reset()
    image.step(4)
    frame = image.render()
    assert frame.shape == (88, 64, 3) and frame.dtype == np.uint8 and (frame[0, 30] == 255).all()


def test_step_after_the_episode_ended_needs_a_reset(make_env):
    env = make_env(partitions=[2], techniques=["W1"])
    env.reset(seed=0)
    env.step(2)
    *_, terminated, truncated, info = env.step(1)
    assert terminated and info["plan"] == "2 | 0:W1"
    with pytest.raises(gym.error.ResetNeeded, match="call reset"):
        env.step(2)
    env.reset()
    assert env.step(2)[2] is False  # a fresh episode steps again


def test_documented_masked_sampling_runs_as_written(make_env):
    env = gym.wrappers.OrderEnforcing(make_env(partitions=[2, 5], techniques=["W1", "C3"]))
    env.reset(seed=0)
    env.action_space.seed(0)
    done = False
    while not done:
        mask = env.unwrapped.action_masks()
        assert mask.dtype == np.int8
        action = env.action_space.sample(mask=mask)
        assert mask[action] == 1
        _, _, done, _, info = env.step(action)
    assert env.unwrapped.space.validate(info["plan"])
