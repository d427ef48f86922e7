"""A content-addressed evaluation cache in SQLite (WAL mode), shared across processes.

One row per evaluated plan: the key is a hash of everything that changes the measured
numbers (base network, dataset, fidelity, threat model, privacy metric, compression
settings, seed, plan, code version); the value is the measured metrics as JSON.  The reward
is computed from the metrics on read, so one cached evaluation serves every resource metric
and threshold setting.

WAL mode lets readers proceed while one process writes; every write is its own transaction,
so an interrupted search loses nothing that had finished.  Connections are opened per
process (a forked worker never reuses its parent's connection).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA_VERSION = 1


class CacheError(RuntimeError):
    """The cache file is unreadable or was written by an incompatible version."""


class EvalCache:
    """``get(key)`` / ``put(key, plan, config, metrics)`` over a SQLite file.

    Args:
        path: the database file (created with its folder), or ``None`` for an in-memory
            dictionary that still guarantees no plan is evaluated twice in this process.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: dict[str, dict] = {}
        self._local = threading.local()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._check_schema()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _check_schema(self) -> None:
        try:
            conn = self._conn()
            conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS evals (key TEXT PRIMARY KEY, plan TEXT, config TEXT, "
                "metrics TEXT, created REAL)"
            )
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            (version,) = conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        except sqlite3.DatabaseError as err:
            raise CacheError(
                f"evaluation cache {self.path} is not a readable SQLite database ({err}); "
                "move it away or pass another cache path"
            ) from err
        if int(version) != SCHEMA_VERSION:
            raise CacheError(
                f"evaluation cache {self.path} has schema {version}, this version needs "
                f"{SCHEMA_VERSION}; move it away or pass another cache path"
            )

    def get(self, key: str) -> dict | None:
        if key in self._memory:
            return self._memory[key]
        if self.path is None:
            return None
        row = self._conn().execute("SELECT metrics FROM evals WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        metrics = json.loads(row[0])
        self._memory[key] = metrics
        return metrics

    def put(self, key: str, plan: str, config: dict, metrics: dict) -> None:
        self._memory[key] = metrics
        if self.path is None:
            return
        self._conn().execute(
            "INSERT OR IGNORE INTO evals VALUES (?, ?, ?, ?, ?)",
            (key, plan, json.dumps(config, sort_keys=True), json.dumps(metrics), time.time()),
        )

    def __len__(self) -> int:
        if self.path is None:
            return len(self._memory)
        return int(self._conn().execute("SELECT COUNT(*) FROM evals").fetchone()[0])

    def rows(self) -> list[tuple[str, dict, dict]]:
        """Every ``(plan, config, metrics)`` stored, oldest first."""
        if self.path is None:
            return []
        cur = self._conn().execute("SELECT plan, config, metrics FROM evals ORDER BY created")
        return [(p, json.loads(c), json.loads(m)) for p, c, m in cur]
