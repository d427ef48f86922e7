"""The search space: counting, enumeration, sampling, validation."""

from __future__ import annotations

import itertools

import numpy as np

from privacysplit.envs.space import SearchSpace
from privacysplit.models import build


def brute_force(space: SearchSpace) -> set[str]:
    plans = set()
    for p in space.partitions:
        layers = [i for i in range(p + 1) if len(space.choices(i)) > 1]
        for combo in itertools.product(*(space.choices(i) for i in layers)):
            body = " ".join(f"{i}:{t}" for i, t in zip(layers, combo, strict=True) if t != "none") or "none"
            plans.add(f"{p} | {body}")
    return plans


def test_enumeration_matches_brute_force_and_count():
    space = SearchSpace(build("lenet").layers, ["W1", "F1", "C1"], [2, 5, 7])
    plans = [str(p) for p in space]
    assert len(plans) == len(set(plans)) == len(space) == space.count()
    assert set(plans) == brute_force(space)


def test_full_lenet_space_has_thousands_of_plans():
    assert 1000 < len(SearchSpace(build("lenet").layers)) < 20000


def test_sampling_is_uniform_over_plans():
    space = SearchSpace(build("lenet").layers, ["W1"], [0, 7])  # 2 plans at p=0, 8 at p=7
    rng = np.random.default_rng(0)
    draws = [space.sample(rng).partition for _ in range(4000)]
    assert abs(draws.count(0) / 4000 - 0.2) < 0.03
