"""Random, exhaustive and evolution specifics on reward tables."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from privacysplit.agents import make_agent
from privacysplit.agents.base import MAX_REPEATS
from privacysplit.agents.evolution import mutate
from privacysplit.agents.exhaustive import restricted_plans
from privacysplit.plan import Plan


def test_random_never_repeats_and_stops_when_the_space_is_used_up(make_table_env, small_table):
    env = make_table_env(table=small_table)
    result = make_agent("random", seed=0, batch_size=5).search(env, 100, progress=False)
    plans = [r["plan"] for r in result.history]
    assert len(plans) == len(set(plans)) == len(small_table) == 39
    assert result.stop_reason == "exhausted"


def test_random_repeats_only_when_asked(make_table_env, small_table):
    env = make_table_env(table=small_table)
    result = make_agent("random", seed=0, allow_repeats=True).search(env, 100, progress=False)
    # repeats are free under the budget rule: the 39-plan space is measured once, then the
    # search stops after MAX_REPEATS free repeats in a row
    assert result.evaluations == result.unique_plans == 39 and result.cache_hits > 0
    assert result.stop_reason == "converged" and result.proposals >= 39 + MAX_REPEATS


def test_random_search_draws_partitions_like_the_paper(make_table_env):
    env = make_table_env()  # the full lenet space: 3870 plans over 11 partitions
    space = env.unwrapped.space
    rng = np.random.default_rng(0)
    paper = Counter(space.sample(rng, "partition").partition for _ in range(4000))
    uniform = Counter(space.sample(rng, "plan").partition for _ in range(4000))
    last = space.partitions[-1]
    assert uniform[last] / 4000 > 0.5  # most plans sit on the deepest partition
    assert set(paper) == set(space.partitions)
    expected = 4000 / len(space.partitions)
    assert all(abs(n - expected) < 0.25 * expected for n in paper.values())
    result = make_agent("random", seed=0).search(env, 110, progress=False)
    drawn = Counter(int(r["plan"].split("|")[0]) for r in result.history)
    assert drawn[last] < 30 and len(drawn) == len(space.partitions)


def test_exhaustive_finds_the_optimum_of_the_full_lenet_table(make_table_env):
    env = make_table_env()  # every plan of lenet x all techniques (3870)
    table = env.unwrapped.evaluator
    space = env.unwrapped.space
    brute_best = max(
        (table.rows[str(Plan(p, dict(zip(space.compressible(p), combo, strict=True))))]["reward"]
         for p in space.partitions
         for combo in itertools.product(*(space.choices(i) for i in space.compressible(p)))),
    )
    result = make_agent("exhaustive").search(env, 5000, progress=False)
    assert result.evaluations == len(space) == 3870
    assert result.best_reward == brute_best == table.optimum()[1]


def test_exhaustive_refuses_a_large_space_with_advice(make_table_env):
    with pytest.raises(ValueError, match=r"3870 plans, more than limit=1000; pass limit=None.*restricted=True"):
        make_agent("exhaustive", limit=1000).search(make_table_env(), 10, progress=False)


def test_restricted_exhaustive_is_three_partitions_times_one_technique(make_table_env):
    env = make_table_env("vgg11")  # far too many plans for plain exhaustive search
    space = env.unwrapped.space
    plans = restricted_plans(space)
    assert len({p.partition for p in plans}) == 3
    assert len(plans) <= 3 * len(space.techniques)
    for plan in plans:
        assert len(set(plan.mapping.values())) <= 1  # one technique on every layer it fits
        name = next(iter(plan.mapping.values()), None)
        if name is not None:
            assert set(plan.mapping) == {i for i in space.compressible(plan.partition) if name in space.choices(i)}
    result = make_agent("exhaustive", restricted=True).search(env, 1000, progress=False)
    assert result.evaluations == len(plans) and result.stop_reason == "exhausted"


def test_mutation_changes_one_gene_and_stays_valid(make_table_env):
    space = make_table_env().unwrapped.space
    rng = np.random.default_rng(0)
    for _ in range(300):
        parent = space.sample(rng)
        child = mutate(space, parent, rng)
        space.validate(child)
        assert child != parent
        if child.partition == parent.partition:
            diff = set(parent.mapping.items()) ^ set(child.mapping.items())
            assert len({layer for layer, _ in diff}) == 1


def test_evolution_removes_the_oldest_not_the_worst(make_table_env):
    result = make_agent("evolution", seed=0, population_size=5, tournament_size=2).search(make_table_env(), 40, progress=False)
    assert result.evaluations == 40 and result.unique_plans > 30
