"""The evaluation cache under contention and damage: opening, errors, damaged rows, marks."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import time
import warnings

import pytest

from privacysplit.envs.cache import CacheError, CacheWarning, EvalCache, describe_error


def _open_and_put(path: str, barrier, queue) -> None:
    barrier.wait()
    try:
        EvalCache(path).put(f"k{os.getpid()}", "1 | none", {}, {"a": 1})
        queue.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the parent
        queue.put(repr(err))


def test_four_processes_opening_a_new_cache_all_succeed(tmp_path):
    """Switching a new file to WAL needs an exclusive lock; before the retry, 3 of 108 such
    starts failed with 'database is locked' (6 of 120 when reproduced here)."""
    ctx = mp.get_context("fork")  # the children only touch SQLite
    results = []
    for trial in range(12):
        path = str(tmp_path / f"c{trial}.sqlite")
        barrier, queue = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_and_put, args=(path, barrier, queue)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        results += [queue.get(timeout=5) for _ in procs]
        assert len(EvalCache(path)) == 4
    assert results == ["ok"] * 48


def test_damaged_row_is_a_miss_reported_once_then_replaced(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = EvalCache(path)
    cache.put("good", "1 | none", {}, {"accuracy": 0.5})
    with sqlite3.connect(path) as conn:  # bad UTF-8 in metrics, as a failing disk might leave
        conn.execute("INSERT INTO evals VALUES ('bad', '2 | none', '{}', CAST(X'FFFE7B' AS TEXT), 0)")
        conn.execute("INSERT INTO evals VALUES ('json', '3 | none', '{}', '{not json', 0)")
    fresh = EvalCache(path)
    with pytest.warns(CacheWarning, match=r"row bad\.\.\. is damaged .*treated as a miss") as record:
        assert fresh.get("bad") is None
        assert fresh.get("bad") is None  # reported once
    assert len(record) == 1
    with pytest.warns(CacheWarning, match="row json"):
        assert fresh.get("json") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fresh.get("good") == {"accuracy": 0.5}
        assert [p for p, _, _ in fresh.rows()] == ["1 | none"]  # damaged rows skipped, known
        assert fresh.claim("bad") == "mine"  # a damaged row does not count as done
        fresh.put("bad", "2 | none", {}, {"accuracy": 0.25})
        fresh.release("bad")
    assert EvalCache(path).get("bad") == {"accuracy": 0.25}


def test_errors_name_the_cause_and_the_remedy(tmp_path):
    not_db = tmp_path / "not.sqlite"
    not_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CacheError, match="is not a readable SQLite database .*move it away"):
        EvalCache(not_db)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match=r"cannot be created: .*a-file exists and is not a folder") as err:
        EvalCache(blocker / "sub" / "evals.sqlite")
    assert "\n" not in str(err.value)
    with pytest.raises(CacheError, match="is a folder; pass a file path"):
        EvalCache(tmp_path)
    # a read-only file is not damaged: the message must not tell the user to throw it away
    ro = describe_error(tmp_path / "c.sqlite", sqlite3.OperationalError("attempt to write a readonly database"))
    assert "is read-only" in ro and "move it away" not in ro
    io = describe_error(tmp_path / "c.sqlite", sqlite3.OperationalError("disk I/O error"))
    assert "I/O error" in io and "move it away" not in io


def test_a_lock_held_past_the_timeout_is_named_as_a_lock(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = EvalCache(path, timeout=0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        with pytest.raises(CacheError, match="stayed locked by another process .*wait for that process") as err:
            cache.put("k", "1 | none", {}, {"a": 1})
        assert "move it away" not in str(err.value)
        assert time.monotonic() - t0 < 5
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_claims_mark_work_in_progress(tmp_path):
    path = tmp_path / "c.sqlite"
    first, second = EvalCache(path), EvalCache(path)  # two owners (as two processes would be)
    assert first.claim("k") == "mine"
    assert second.claim("k") == "busy"
    assert [o for _, o in first.in_progress()] == [first.owner]
    first.put("k", "1 | none", {}, {"a": 1})
    first.release("k")
    assert second.claim("k") == "done" and second.get("k") == {"a": 1}
    assert first.in_progress() == []
    assert first.claim("other") == "mine"
    first.release("other")
    assert second.claim("other") == "mine"  # released without a result: free to take


def _exit_now() -> None:
    pass


def test_a_mark_of_a_dead_process_or_a_stale_heartbeat_is_taken_over(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = EvalCache(path)
    proc = mp.get_context("fork").Process(target=_exit_now)
    proc.start()
    proc.join()
    dead_pid = proc.pid
    import socket

    now = time.time()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO inflight VALUES ('dead', 'x:1:a', ?, ?, ?, ?)", (socket.gethostname(), dead_pid, now, now))
        conn.execute("INSERT INTO inflight VALUES ('alive', 'x:2:b', ?, ?, ?, ?)", (socket.gethostname(), os.getppid(), now, now))
        conn.execute("INSERT INTO inflight VALUES ('remote', 'y:3:c', 'elsewhere', 3, ?, ?)", (now, now))
        old = now - EvalCache.STALE_S - 1
        conn.execute("INSERT INTO inflight VALUES ('stale', 'y:4:d', 'elsewhere', 4, ?, ?)", (old, old))
    assert cache.claim("dead") == "mine"
    assert cache.claim("alive") == "busy"
    assert cache.claim("remote") == "busy"  # another host: only its heartbeat can tell
    assert cache.claim("stale") == "mine"


def test_heartbeat_keeps_a_long_measurement_alive(tmp_path, monkeypatch):
    monkeypatch.setattr(EvalCache, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(EvalCache, "STALE_S", 0.5)
    path = tmp_path / "c.sqlite"
    holder, other = EvalCache(path), EvalCache(path)
    assert holder.claim("k") == "mine"
    time.sleep(1.0)  # twice STALE_S: only the heartbeat keeps the mark fresh
    assert other.claim("k") == "busy"
    holder.release("k")
    assert other.claim("k") == "mine"


def test_memory_cache_claims_are_always_mine():
    cache = EvalCache(None)
    assert cache.claim("k") == "mine"
    cache.put("k", "1 | none", {}, {"a": 1})
    assert cache.claim("k") == "done"
    cache.release("k")
