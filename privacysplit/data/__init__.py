"""Datasets: embedded defaults (offline) and real ones read from disk.

``load_dataset(name, root=None)`` returns a :class:`Dataset`; results are memoised per
process because the embedded loaders take about a second.  The memo of an on-disk dataset
is keyed on its files' sizes and modification times too, so files replaced under ``root``
are read again (and the new contents reach the cache key through
:meth:`Dataset.fingerprint`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from privacysplit.data.base import Dataset, Split, make_dataset, stats
from privacysplit.data.disk import (
    load_cifar10,
    load_cifar100,
    load_imagefolder,
    load_purchase100,
    load_tinyimagenet,
)
from privacysplit.data.embedded import load_digits, load_mnist

#: name -> loader(root) ; loaders for on-disk formats take the data directory.
DATASETS: dict[str, Callable[[Path | None], Dataset]] = {
    "mnist": lambda root: load_mnist(),
    "digits": lambda root: load_digits(),
    # Official on-disk formats under ``root`` (never downloaded; see privacysplit.data.disk).
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tinyimagenet": load_tinyimagenet,
    "purchase100": load_purchase100,
    "imagefolder": load_imagefolder,
}


def list_datasets() -> list[str]:
    return list(DATASETS)


@lru_cache(maxsize=8)
def _load(name: str, root: str | None, signature: tuple = ()) -> Dataset:
    return DATASETS[name](Path(root) if root is not None else None)


def _signature(root: str | None) -> tuple:
    """(path, size, mtime) of every file under ``root``: what invalidates the memo."""
    if root is None or not os.path.isdir(root):
        return (root, os.stat(root).st_mtime_ns) if root is not None and os.path.exists(root) else ()
    entries = []
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                st = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            entries.append((os.path.relpath(os.path.join(folder, name), root), st.st_size, st.st_mtime_ns))
    return tuple(sorted(entries))


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load a dataset by name.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
        FileNotFoundError: when an on-disk dataset's files are missing (the message says
            which file and where to put it).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    root_text = str(root) if root is not None else None
    return _load(name, root_text, _signature(root_text) if name not in ("mnist", "digits") else ())


__all__ = ["DATASETS", "Dataset", "Split", "list_datasets", "load_dataset", "make_dataset", "stats"]
