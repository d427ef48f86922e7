"""benchmarks/env_timing.py: the attacker's FLOP count (the floor of its time on a machine)."""

from __future__ import annotations

import pytest

from privacysplit.envs.privacy_split import PrivacySplitEnv


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = PrivacySplitEnv(base="lenet", fidelity="smoke:prior_epochs=1:prior_finetune=1:n_d=3:shift_attack=prior",
                          cache=str(tmp_path_factory.mktemp("timing") / "evals.sqlite"))
    yield env
    env.close()


def test_attack_flops_are_one_steps_flops_times_the_steps_the_attack_reported(benchmark_module, env):
    """The count follows the attack's own ``attack_steps`` (no restated schedule): a real
    evaluation's steps (fine-tuning 1 epoch of 2 batches, and 2 more epochs per full-rate round
    when the prior no longer fits) times one step's FLOPs."""
    timing = benchmark_module("env_timing")
    base, _ = env.evaluator.base()
    plan = "3 | none"
    one = timing.attack_flops(env.evaluator, base, {"plan": plan, "attack_steps": 1})
    assert one > 0
    m = env.evaluator.measure(env.space.validate(plan))
    expected_steps = 2 + (2 * 2 * (1 + m["attack_restarts"]) if m["attack_fallback"] else 0)
    assert m["attack_steps"] == expected_steps
    assert timing.attack_flops(env.evaluator, base, {"plan": plan, **m}) == pytest.approx(expected_steps * one)
    # a deeper partition releases fewer features: a smaller decoder front, fewer FLOPs
    assert timing.attack_flops(env.evaluator, base, {"plan": "0 | none", "attack_steps": 1}) > timing.attack_flops(
        env.evaluator, base, {"plan": "9 | none", "attack_steps": 1})
