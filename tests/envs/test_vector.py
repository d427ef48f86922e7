"""Vector environments: Gymnasium's async vector env and SB3 with several environments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import privacysplit  # noqa: F401

KWARGS = {"base": "lenet", "fidelity": "smoke", "partitions": [2, 5], "techniques": ["W1"]}


def test_gymnasium_async_vector_env_steps_to_terminal_rewards(cache_root, tmp_path):
    envs = gym.make_vec("PrivacySplit-v0", num_envs=2, vectorization_mode="async", cache=str(tmp_path / "c.sqlite"), **KWARGS)
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, *envs.single_observation_space.shape)
        rewards = []
        # partition 2, then W1 on layer 0 ends an episode; the third step is the autoreset
        for step in range(12):
            action = [2, 1, 0][step % 3]
            obs, reward, terminated, truncated, info = envs.step(np.array([action, action]))
            rewards.extend(reward[terminated].tolist())
        # both envs play the same plan ("2 | 0:W1"), so every terminal reward is its reward
        expected = gym.make("PrivacySplit-v0", cache=str(tmp_path / "c.sqlite"), **KWARGS).unwrapped.evaluate("2 | 0:W1")
        assert len(rewards) == 8 and rewards == [expected["reward"]] * 8 and expected["reward"] > 0
    finally:
        envs.close()


def test_sb3_trains_on_several_subprocess_envs(cache_root, tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import SubprocVecEnv

    vec = make_vec_env("privacysplit:PrivacySplit-v0", n_envs=2, vec_env_cls=SubprocVecEnv,
                       env_kwargs={**KWARGS, "cache": str(tmp_path / "c.sqlite")})
    try:
        model = PPO("MlpPolicy", vec, n_steps=12, batch_size=24, seed=0, device="cpu")
        before = [p.detach().clone() for p in model.policy.parameters()]
        model.learn(total_timesteps=48)
        assert any(not (a == b).all() for a, b in zip(before, model.policy.parameters(), strict=True))
        # episodes ended in both subprocess envs, each scored with a real evaluation
        assert len(model.ep_info_buffer) >= 4 and all(ep["r"] > 0 for ep in model.ep_info_buffer)
    finally:
        vec.close()
