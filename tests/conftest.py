"""Shared fixtures: a private cache folder and one torch thread per test worker.

The suite runs with ``pytest -n 2`` on a 2-core machine, so each worker gets one thread;
more would oversubscribe the cores and slow everything down.
"""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory) -> str:
    """One cache folder per test worker, shared by its tests (base weights train once)."""
    path = tmp_path_factory.mktemp("privacysplit-cache")
    os.environ["PRIVACYSPLIT_CACHE"] = str(path)
    return str(path)
