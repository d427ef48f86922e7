"""Searchers: the paper's BiLSTM REINFORCE optimizer, baselines and stronger searchers.

Every searcher has ``search(env, budget, *, max_seconds=None, log_dir=None, progress=True)
-> SearchResult``; ``budget`` counts plan evaluations, cache hits included.

.. code-block:: python

    import gymnasium as gym
    import privacysplit
    from privacysplit.agents import make_agent

    env = gym.make("PrivacySplit-v0", base="lenet", fidelity="smoke")
    result = make_agent("bilstm", seed=0).search(env, budget=50, log_dir="runs/bilstm")
    print(result.best_plan, result.best_reward)

A user's own searcher is any object with that ``search`` method (see :class:`Searcher`);
a user's own Stable-Baselines3 model searches through :func:`search_with_sb3` or
``make_agent("sb3", model=model)``.  :func:`register_agent` adds a name to :data:`AGENTS`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator, Mapping

from privacysplit.agents.base import BaseSearcher, Searcher, SearchRun
from privacysplit.agents.result import HISTORY_COLUMNS, SearchResult
from privacysplit.specs import split_spec


class _Registry(Mapping):
    """Agent name -> class, importing each agent's module on first use (SB3 and Optuna are
    slow to import, so ``import privacysplit.agents`` stays cheap)."""

    def __init__(self, entries: dict[str, str | Callable]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, name: str):
        entry = self._entries[name]
        if isinstance(entry, str):
            module, attr = entry.split(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attr)
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def register(self, name: str, factory: Callable) -> None:
        self._entries[name] = factory


#: agent name -> class (or factory) accepted by :func:`make_agent`
AGENTS = _Registry(
    {
        "bilstm": "privacysplit.agents.bilstm:BiLSTMSearcher",
        "random": "privacysplit.agents.random_search:RandomSearcher",
        "exhaustive": "privacysplit.agents.exhaustive:ExhaustiveSearcher",
        "evolution": "privacysplit.agents.evolution:EvolutionSearcher",
        "tpe": "privacysplit.agents.tpe:TPESearcher",
        "ppo": "privacysplit.agents.sb3:PPOSearcher",
        "a2c": "privacysplit.agents.sb3:A2CSearcher",
        "maskable_ppo": "privacysplit.agents.sb3:MaskablePPOSearcher",
        "sb3": "privacysplit.agents.sb3:SB3ModelSearcher",
        "successive_halving": "privacysplit.agents.multifidelity:MultiFidelitySearcher",
        "hyperband": "privacysplit.agents.multifidelity:HyperbandSearcher",
        "screened_evolution": "privacysplit.agents.screening:ScreenedEvolutionSearcher",
    }
)


_PYTHON_LITERALS = {"True": True, "False": False, "None": None}


def agent_name(spec: str) -> str:
    """The registry name of an agent spec: ``"bilstm:entropy_coef=0.01"`` -> ``"bilstm"``."""
    return str(spec).split(":", 1)[0].strip().lower().replace("-", "_")


def agent_options(spec: str) -> dict:
    """The options of an agent spec ``name:option=value:...``, values read as JSON where they
    parse (numbers, ``true``/``false``, ``null``; Python's ``True``/``False``/``None`` too) and
    as strings otherwise.  A value cannot hold ``:`` (a fidelity spec with changes is passed
    as a keyword instead).

    Why a spec string: benchmarks and the command line name searchers by strings
    (``--searchers random,bilstm:entropy_coef=0.01``), and a tuned variant must be as easy to
    compare as a stock one, in the same table, under a name that says what was changed.
    """
    return {key: _literal(text) for key, text in split_spec(spec, "agent")[1]}


def _literal(text: str):
    """``text`` as a JSON or Python literal (number, bool, null/None), else the string itself."""
    if text in _PYTHON_LITERALS:
        return _PYTHON_LITERALS[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def make_agent(name: str, **kwargs) -> Searcher:
    """Build the searcher called ``name`` with its options (``seed``, ``rollouts``, ...).

    ``name`` may carry options as a spec, ``"bilstm:entropy_coef=0.01:patience=1000"``
    (:func:`agent_options`); keyword arguments win over the spec's.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or an unknown option
            (listing that agent's options).
    """
    key = agent_name(name)
    if key not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; valid agents: {', '.join(AGENTS)}")
    return AGENTS[key](**{**agent_options(name), **kwargs})


def register_agent(name: str, factory: Callable) -> None:
    """Make ``make_agent(name, **kwargs)`` call ``factory(**kwargs)``; the factory must
    return an object with a ``search`` method."""
    AGENTS.register(name, factory)


def search_with_sb3(model, env, budget: int, **kwargs) -> SearchResult:
    """Search with a user-built Stable-Baselines3 model (see :mod:`privacysplit.agents.sb3`)."""
    from privacysplit.agents.sb3 import search_with_sb3 as _search

    return _search(model, env, budget, **kwargs)


def __getattr__(name: str):
    lazy = {
        "BiLSTMSearcher": "privacysplit.agents.bilstm",
        "BiLSTMConfig": "privacysplit.agents.bilstm",
        "RandomSearcher": "privacysplit.agents.random_search",
        "ExhaustiveSearcher": "privacysplit.agents.exhaustive",
        "EvolutionSearcher": "privacysplit.agents.evolution",
        "TPESearcher": "privacysplit.agents.tpe",
        "SB3Searcher": "privacysplit.agents.sb3",
        "SB3ModelSearcher": "privacysplit.agents.sb3",
        "MultiFidelitySearcher": "privacysplit.agents.multifidelity",
        "HyperbandSearcher": "privacysplit.agents.multifidelity",
        "MultiFidelityResult": "privacysplit.agents.multifidelity",
        "ScreenedEvolutionSearcher": "privacysplit.agents.screening",
        "TableEvaluator": "privacysplit.agents.table",
        "table_env": "privacysplit.agents.table",
    }
    if name in lazy:
        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'privacysplit.agents' has no attribute {name!r}")


__all__ = [
    "AGENTS",
    "HISTORY_COLUMNS",
    "BaseSearcher",
    "SearchResult",
    "SearchRun",
    "Searcher",
    "agent_name",
    "agent_options",
    "make_agent",
    "register_agent",
    "search_with_sb3",
]
