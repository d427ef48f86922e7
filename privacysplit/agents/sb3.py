"""Stable-Baselines3 adapters: PPO, A2C and sb3-contrib's MaskablePPO as searchers.

The model trains on the env step by step (one evaluation per finished episode); a callback
records every terminal ``info`` (the evaluated plan and its metrics) and stops training once
the evaluation budget or the time is used up.  Rollout sizes (``n_steps``) are a multiple of
the longest episode (1 partition step + one step per compressible device layer of the
deepest partition), so a rollout always holds whole episodes' worth of steps.

Defaults that differ from SB3's, and why: ``gamma = 1`` (the reward comes only at the end and
episodes get longer with deeper partitions, so discounting would favour shallow splits);
smaller rollouts and minibatches (evaluations are expensive, so many small updates beat a few
big ones at a budget of tens to hundreds of episodes).

Any SB3 model a user builds is a searcher too: :func:`search_with_sb3` (or
``make_agent("sb3", model=model)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from privacysplit.agents.base import BaseSearcher, SearchRun, check_positive, unwrap

#: algorithm name -> (module, class)
ALGORITHMS = {
    "ppo": ("stable_baselines3", "PPO"),
    "a2c": ("stable_baselines3", "A2C"),
    "maskable_ppo": ("sb3_contrib", "MaskablePPO"),
}

#: SB3 logger keys holding the policy loss of the last update
_POLICY_LOSS_KEYS = ("train/policy_gradient_loss", "train/policy_loss")


def max_episode_length(space) -> int:
    """Steps of the longest episode: the partition step plus one per compressible layer."""
    return 1 + max(len(space.compressible(p)) for p in space.partitions)


def _algorithm(name: str):
    import importlib

    if name not in ALGORITHMS:
        raise ValueError(f"unknown SB3 algorithm {name!r}; valid: {', '.join(ALGORITHMS)}")
    module, cls = ALGORITHMS[name]
    return getattr(importlib.import_module(module), cls)


def _recorder_callback(run: SearchRun):
    """An SB3 callback that records terminal infos into ``run`` and stops when it is done."""
    from stable_baselines3.common.callbacks import BaseCallback

    class RecordPlans(BaseCallback):
        def _on_rollout_start(self) -> None:
            values = self.model.logger.name_to_value
            for key in _POLICY_LOSS_KEYS:
                if key in values:
                    run.log_scalar("losses/policy", values[key])
                    break
            for key in ("train/value_loss", "train/entropy_loss"):
                if key in values:
                    run.log_scalar(key.replace("train/", "losses/"), values[key])

        def _on_step(self) -> bool:
            for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
                if done and "plan" in info:
                    run.batches += 1
                    run.record(info)
                    if run.done:
                        return False
            return not run.done

    return RecordPlans()


def learn_until_budget(model, run: SearchRun, episode_length: int) -> None:
    """Train ``model`` until ``run`` is done (budget or time).

    With a ``log_dir``, SB3's own metrics (``train/*``, ``rollout/*``, ``time/*``) are written
    to ``<log_dir>/sb3`` as TensorBoard events, beside the search's ``search/*`` scalars, so
    one ``tensorboard --logdir`` shows both.
    """
    if run.log_dir is not None:
        from stable_baselines3.common.logger import configure

        model.set_logger(configure(str(run.log_dir / "sb3"), ["tensorboard"]))
    # an upper bound only: the callback stops training at the budget
    total = max(run.remaining, 1) * episode_length * 50
    model.learn(total_timesteps=total, callback=_recorder_callback(run), progress_bar=False, reset_num_timesteps=False)
    if not run.done:
        run.stop("stopped")


@dataclass
class SB3Config:
    seed: int = 0
    """seed of the model (SB3 seeds Python, NumPy and torch globally) and of the env"""
    policy: str = "MlpPolicy"
    """SB3 policy name"""
    rollout_episodes: int = 4
    """``n_steps`` = this x the longest episode's length"""
    learning_rate: float = 1e-3
    """optimizer learning rate"""
    gamma: float = 1.0
    """discount factor (1: reward only at the end, episodes of varying length)"""
    ent_coef: float = 0.0
    """entropy bonus"""
    batch_episodes: int = 2
    """PPO minibatch size in longest-episode lengths (ignored by A2C)"""
    n_epochs: int = 10
    """PPO epochs per rollout (ignored by A2C)"""
    device: str = "cpu"
    """torch device of the policy (the MLP is tiny: CPU is faster)"""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """extra keyword arguments for the SB3 model (override the fields above)"""

    def __post_init__(self) -> None:
        for name in ("rollout_episodes", "batch_episodes", "n_epochs"):
            check_positive(name, getattr(self, name))
        check_positive("learning_rate", self.learning_rate, integer=False)


class SB3Searcher(BaseSearcher):
    """Train a fresh SB3 model of ``algorithm`` on the env and record the plans it evaluates."""

    name = "sb3"
    algorithm = "ppo"
    Config = SB3Config

    def make_model(self, env, space):
        """The SB3 model this searcher trains (built fresh on every search)."""
        cfg: SB3Config = self.config
        length = max_episode_length(space)
        kwargs: dict[str, Any] = {
            "n_steps": cfg.rollout_episodes * length, "learning_rate": cfg.learning_rate, "gamma": cfg.gamma,
            "ent_coef": cfg.ent_coef, "seed": cfg.seed, "device": cfg.device, "verbose": 0,
        }
        if self.algorithm != "a2c":
            kwargs.update(batch_size=max(2, cfg.batch_episodes * length), n_epochs=cfg.n_epochs)
        kwargs.update(cfg.model_kwargs)
        return _algorithm(self.algorithm)(cfg.policy, env, **kwargs)

    def run(self, env, run: SearchRun) -> None:
        self.model = self.make_model(env, run.space)
        learn_until_budget(self.model, run, max_episode_length(run.space))


class PPOSearcher(SB3Searcher):
    """Stable-Baselines3 PPO (invalid actions are no-ops the env reports)."""

    name = "ppo"
    algorithm = "ppo"


class A2CSearcher(SB3Searcher):
    """Stable-Baselines3 A2C (``n_steps`` = one longest episode by default)."""

    name = "a2c"
    algorithm = "a2c"

    def __init__(self, config: SB3Config | None = None, **options) -> None:
        options.setdefault("rollout_episodes", 1)
        options.setdefault("learning_rate", 1e-3)
        super().__init__(config, **options)


class MaskablePPOSearcher(SB3Searcher):
    """sb3-contrib MaskablePPO, using the env's ``action_masks()``."""

    name = "maskable_ppo"
    algorithm = "maskable_ppo"


@dataclass
class UserModelConfig:
    seed: int = 0
    """unused: the user's model carries its own seed"""


class SB3ModelSearcher(BaseSearcher):
    """Wrap a user-built SB3 model as a searcher: it keeps training on the env until the
    budget of evaluations is used; every evaluated plan is recorded.

    Args:
        model: any Stable-Baselines3 (or sb3-contrib) model; its env is replaced by the one
            given to :meth:`search` (the spaces must match).
    """

    name = "sb3"
    Config = UserModelConfig

    def __init__(self, model=None, config: UserModelConfig | None = None, **options) -> None:
        if model is None or not hasattr(model, "learn"):
            raise ValueError("agent 'sb3' needs model=<a Stable-Baselines3 model>, e.g. make_agent('sb3', model=PPO('MlpPolicy', env))")
        super().__init__(config, **options)
        self.model = model

    def run(self, env, run: SearchRun) -> None:
        self.model.set_env(env)
        learn_until_budget(self.model, run, max_episode_length(run.space))


def search_with_sb3(model, env, budget: int, **kwargs):
    """Use a user-built SB3 model as a searcher: ``search_with_sb3(MaskablePPO("MlpPolicy",
    env), env, budget=100)`` returns a :class:`~privacysplit.agents.SearchResult`."""
    unwrap(env)
    return SB3ModelSearcher(model).search(env, budget, **kwargs)
