"""Agent fixtures: synthetic reward-table envs (the real env class, table evaluator) and the
real env at smoke fidelity on a small lenet space with a cache shared by the module."""

from __future__ import annotations

import pytest

from privacysplit.agents.table import TableEvaluator, table_env
from privacysplit.envs.space import SearchSpace
from privacysplit.models import build

#: a small real lenet/mnist space: 3 partitions x {none, C1, W1, F1} = 39 plans
SMALL_TECHNIQUES = ["C1", "W1", "F1"]
SMALL_PARTITIONS = [2, 5, 7]


@pytest.fixture
def make_table_env():
    """``make_table_env(base="lenet", techniques=None, partitions=None, seed=0)``: a
    ``PrivacySplitEnv`` whose evaluator is a synthetic reward table."""

    def make(base: str = "lenet", **kwargs):
        return table_env(base, **kwargs)

    return make


@pytest.fixture
def small_table():
    """Synthetic table of the small lenet space (39 plans)."""
    return TableEvaluator.synthetic(SearchSpace(build("lenet").layers, SMALL_TECHNIQUES, SMALL_PARTITIONS))


@pytest.fixture(scope="module")
def real_cache(cache_root, tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("agent-evals") / "evals.sqlite")


@pytest.fixture
def make_real_env(real_cache):
    """The real env at smoke fidelity on lenet/mnist, small space, module-shared cache."""
    from privacysplit.envs.privacy_split import PrivacySplitEnv

    def make(**kwargs):
        kwargs.setdefault("techniques", SMALL_TECHNIQUES)
        kwargs.setdefault("partitions", SMALL_PARTITIONS)
        return PrivacySplitEnv("lenet", "mnist", fidelity="smoke", cache=real_cache, **kwargs)

    return make
