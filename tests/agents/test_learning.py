"""The learning check: on a reward table, the learning agents beat random search.

Table: the synthetic reward table of the full lenet space (all 3870 plans of lenet x every
Table 2 technique, ``TableEvaluator.synthetic(space, seed=0)``), through the real
``PrivacySplitEnv``.  Budget: 50 evaluations (cache hits count), 10 seeds each; the median of
the best reward found is compared.  Random search samples uniformly over plans without
repeats.  See the agents' closing note for the numbers at other budgets and tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from privacysplit.agents import make_agent

BUDGET = 50
SEEDS = range(10)


@pytest.fixture(scope="module")
def medians():
    from privacysplit.agents.table import table_env

    out = {}
    for name in ("random", "bilstm", "maskable_ppo"):
        out[name] = float(np.median([
            make_agent(name, seed=seed).search(table_env("lenet", seed=0), BUDGET, progress=False).best_reward
            for seed in SEEDS
        ]))
    return out


@pytest.mark.parametrize("name", ["bilstm", "maskable_ppo"])
def test_learning_agent_beats_random_search(name, medians):
    assert medians[name] > medians["random"], medians


MEASURED_TABLE = Path(__file__).parents[2] / "benchmarks/results/reward_table/table_lenet_mnist_cpu_bf28bb68aa.csv.gz"


@pytest.fixture(scope="module")
def measured_regrets():
    """The same check on the reward table measured by real training (212 plans of lenet/mnist,
    W1/W2/C1/F1, partitions 2/5/7/9, ``cpu`` fidelity; ``benchmarks/reward_table.py``)."""
    from privacysplit.agents.table import TableEvaluator, table_env
    from privacysplit.envs.space import SearchSpace
    from privacysplit.models import build

    space = SearchSpace(build("lenet").layers, ["W1", "W2", "C1", "F1"], [2, 5, 7, 9])
    table = TableEvaluator.from_csv(MEASURED_TABLE, space)
    assert len(table) == space.count() == 212
    optimum = table.optimum()[1]
    out = {}
    for name in ("random", "bilstm", "maskable_ppo"):
        out[name] = float(np.median([
            optimum - make_agent(name, seed=seed).search(
                table_env("lenet", table=TableEvaluator(space, table.rows, name=table.name)), BUDGET, progress=False
            ).best_reward
            for seed in SEEDS
        ]))
    return out


@pytest.mark.parametrize("name", ["bilstm", "maskable_ppo"])
def test_learning_agent_beats_random_search_on_measured_table(name, measured_regrets):
    assert measured_regrets[name] < measured_regrets["random"], measured_regrets
