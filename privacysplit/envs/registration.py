"""Registers ``PrivacySplit-v0`` with Gymnasium (imported by ``import privacysplit``).

Registration only records the entry point; torch and the environment module load when
``gym.make`` is called.
"""

from __future__ import annotations

import gymnasium as gym

ENV_ID = "PrivacySplit-v0"


def register_envs() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="privacysplit.envs.privacy_split:PrivacySplitEnv")


register_envs()
