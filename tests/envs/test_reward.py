"""Eq. 13 and Eq. 18."""

from __future__ import annotations

import pytest

from privacysplit.envs.reward import Reward, Thresholds


def test_eq13_factors():
    f = Reward().factors(accuracy=0.9, accuracy_base=0.95, privacy=0.4, resource=0.7)
    assert f["R_A"] == pytest.approx(0.9 / 0.95)
    assert f["R_P"] == pytest.approx(0.6)
    assert f["R_S"] == pytest.approx(0.7 * 1.3)
    assert f["reward"] == pytest.approx(0.9 / 0.95 * 0.6 * 0.91)


def test_reward_stays_in_unit_interval():
    assert Reward().factors(1.0, 0.5, -0.2, 1.5)["reward"] == pytest.approx(1.0)
    assert Reward().factors(0.0, 0.0, 2.0, -1.0)["reward"] == 0.0


def test_eq18_thresholds_gate_the_reward():
    r = Reward(Thresholds.from_any((0.85, 0.5, 0.8)))
    assert r.factors(0.9, 0.9, 0.4, 0.9)["reward"] > 0
    assert r.factors(0.8, 0.9, 0.4, 0.9)["reward"] == 0  # accuracy too low
    assert r.factors(0.9, 0.9, 0.6, 0.9)["reward"] == 0  # leaks too much
    assert r.factors(0.9, 0.9, 0.4, 0.7)["reward"] == 0  # saves too little


def test_zero_thresholds_mean_no_constraint_as_in_table_12():
    r = Reward(Thresholds.from_any({"A": 0, "P": 0, "S": 0}))
    assert r.factors(0.5, 0.9, 0.9, 0.1)["reward"] == Reward().factors(0.5, 0.9, 0.9, 0.1)["reward"]


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="valid keys: A, P, S"):
        Thresholds.from_any({"accuracyy": 1})
    with pytest.raises(ValueError, match=r"\(A_m, P_m, S_m\)"):
        Thresholds.from_any((1, 2))
