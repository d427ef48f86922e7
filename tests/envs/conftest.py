"""Environment fixtures at smoke fidelity with a per-worker cache."""

from __future__ import annotations

import pytest

from privacysplit.envs.privacy_split import PrivacySplitEnv


@pytest.fixture
def make_env(cache_root, tmp_path):
    """Build an env at smoke fidelity with its own evaluation cache file."""

    def make(**kwargs) -> PrivacySplitEnv:
        kwargs.setdefault("fidelity", "smoke")
        kwargs.setdefault("cache", str(tmp_path / "evals.sqlite"))
        return PrivacySplitEnv(**kwargs)

    return make
