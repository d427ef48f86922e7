"""The SQLite evaluation cache."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from privacysplit.envs.cache import CacheError, EvalCache


def test_put_get_survives_reopening(tmp_path):
    path = tmp_path / "c.sqlite"
    EvalCache(path).put("k", "2 | none", {"a": 1}, {"accuracy": 0.5})
    again = EvalCache(path)
    assert again.get("k") == {"accuracy": 0.5}
    assert again.get("missing") is None and len(again) == 1
    assert again.rows() == [("2 | none", {"a": 1}, {"accuracy": 0.5})]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _writer(path, start):
    cache = EvalCache(path)
    for i in range(start, start + 50):
        cache.put(f"k{i}", f"{i} | none", {}, {"i": i})


def test_processes_share_the_cache(tmp_path):
    path = tmp_path / "c.sqlite"
    EvalCache(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, s)) for s in (0, 50)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert len(EvalCache(path)) == 100


def test_corrupt_file_is_reported_not_overwritten(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheError, match="not a readable SQLite database"):
        EvalCache(path)
    assert path.read_bytes().startswith(b"this is not sqlite")


def test_memory_cache_without_a_path():
    cache = EvalCache(None)
    cache.put("k", "1 | none", {}, {"x": 1})
    assert cache.get("k") == {"x": 1} and len(cache) == 1
