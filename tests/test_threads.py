"""Thread sizing from the CPU affinity: never more threads than cores across a pool."""

from __future__ import annotations

import os

import pytest
import torch

from privacysplit.threads import (
    THREADS_ENV,
    available_cores,
    configure_threads,
    default_threads,
    torch_threads,
)


def test_available_cores_is_the_affinity():
    if hasattr(os, "sched_getaffinity"):
        assert available_cores() == len(os.sched_getaffinity(0))
    assert available_cores() >= 1


def test_default_threads_divides_the_cores_among_workers(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.setattr("privacysplit.threads.available_cores", lambda: 8)
    assert default_threads() == 8
    assert default_threads(workers=2) == 4
    assert default_threads(workers=3) == 2  # 3 x 2 = 6 <= 8
    assert default_threads(workers=16) == 1  # at least one each
    with pytest.raises(ValueError, match="workers"):
        default_threads(workers=0)


def test_environment_overrides_and_is_validated(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert default_threads(workers=4) == 3
    monkeypatch.setenv(THREADS_ENV, "zero")
    with pytest.raises(ValueError, match=THREADS_ENV):
        default_threads()


def test_configure_caps_at_the_available_cores(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(THREADS_ENV, raising=False)
    try:
        assert configure_threads(available_cores() + 5) == available_cores()
        assert torch.get_num_threads() == available_cores()
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="positive"):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_torch_threads_sets_the_count_for_a_block_and_restores_it():
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    with torch_threads(other) as n:
        assert n == other and torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(other):
        raise RuntimeError("restored even when the block fails")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="positive integer"), torch_threads(0):
        pass
