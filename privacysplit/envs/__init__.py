"""The ``PrivacySplit-v0`` environment, its reward, evaluator, search space and cache."""

from privacysplit.envs.registration import ENV_ID, register_envs

__all__ = ["ENV_ID", "register_envs"]


def __getattr__(name: str):
    # heavy parts (torch, the attacks) load on first use, not on `import privacysplit`
    lazy = {
        "PrivacySplitEnv": "privacysplit.envs.privacy_split",
        "Evaluator": "privacysplit.envs.evaluator",
        "SearchSpace": "privacysplit.envs.space",
        "EvalCache": "privacysplit.envs.cache",
        "Reward": "privacysplit.envs.reward",
        "Thresholds": "privacysplit.envs.reward",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(name)
