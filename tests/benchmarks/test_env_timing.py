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


def test_attack_flops_count_every_epoch_the_attack_trained(benchmark_module, env):
    """Fine-tuning alone trains ``prior_finetune`` epochs; a fallback adds ``n_d -
    prior_finetune`` per full-rate round (the first and each restart): 1 + 2 * 2 = 5 epochs."""
    timing = benchmark_module("env_timing")
    base, _ = env.evaluator.base()
    plan = "3 | none"
    tuned = timing.attack_flops(env.evaluator, base, {"plan": plan, "attack_fallback": 0})
    restarted = timing.attack_flops(env.evaluator, base, {"plan": plan, "attack_fallback": 1, "attack_restarts": 1})
    assert tuned > 0
    assert restarted == pytest.approx(5 * tuned)
    # a deeper partition releases fewer features: a smaller decoder front, fewer FLOPs
    assert timing.attack_flops(env.evaluator, base, {"plan": "0 | none"}) > timing.attack_flops(
        env.evaluator, base, {"plan": "9 | none"})
