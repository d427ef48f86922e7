"""Parallel evaluation: a process pool gives the same numbers as in-process evaluation."""

from __future__ import annotations

import pytest

from privacysplit.envs.evaluator import Evaluator
from privacysplit.envs.executor import make_executor

PLANS = ["2 | 0:W1", "5 | 0:C3 3:W2", "7 | 3:W1 6:F1", "2 | 0:W1"]


def test_process_pool_matches_in_process(cache_root, tmp_path):
    inproc = Evaluator("lenet", fidelity="smoke", cache=str(tmp_path / "a.sqlite"))
    pooled = Evaluator("lenet", fidelity="smoke", cache=str(tmp_path / "b.sqlite"), executor="process", workers=2)
    try:
        expected = inproc.evaluate_many(PLANS)
        got = pooled.evaluate_many(PLANS)
    finally:
        pooled.close()
    for e, g in zip(expected, got, strict=True):
        # every number exactly: the 11th-digit reward gap the CI machine once saw was S1's
        # denominator following the global RNG (README, *What is bit-identical*)
        keys = ("plan", "accuracy", "privacy_loss", "S1", "R_A", "R_P", "R_S", "reward", "cache_hit")
        assert {k: g[k] for k in keys} == {k: e[k] for k in keys}, e["plan"]
    assert [g["cache_hit"] for g in got] == [False, False, False, True]
    plans = sorted(plan for plan, _, _ in pooled.cache.rows() if plan != "base")
    assert plans == sorted(set(PLANS))  # the driver wrote every result (plus its A_base row)


def test_unknown_executor_lists_valid_ones(cache_root):
    with pytest.raises(ValueError, match="valid executors: inprocess, process, ray"):
        Evaluator("lenet", fidelity="smoke", cache=False, executor="dask")
    with pytest.raises(ValueError, match="valid executors"):
        make_executor("threads", None)
    with pytest.raises(ValueError, match="positive integer"):
        Evaluator("lenet", fidelity="smoke", cache=False, workers=0)


def test_a_pool_driver_trains_the_base_on_the_workers_thread_count(monkeypatch, cache_root):
    """The driver trains the base network (and measures A_base) for its workers; on its own
    thread count the cached weights would differ in the last digits from a one-thread run's."""
    import torch

    import privacysplit.envs.evaluator as evaluator_module
    from privacysplit.envs.executor import WORKER_THREADS

    seen: list[int] = []
    real = evaluator_module.pretrained

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator_module, "pretrained", recording)
    monkeypatch.setattr(evaluator_module, "make_executor", lambda *args, **kwargs: object())
    before = torch.get_num_threads()
    torch.set_num_threads(WORKER_THREADS + 1)
    try:
        Evaluator("lenet", fidelity="smoke", cache=False, executor="process", workers=2).executor()
        assert seen == [WORKER_THREADS]
        assert torch.get_num_threads() == WORKER_THREADS + 1  # the driver's own count is back
    finally:
        torch.set_num_threads(before)
