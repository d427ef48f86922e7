"""A content-addressed evaluation cache in SQLite (WAL mode), shared across processes.

One row per evaluated plan: the key is a hash of everything that changes the measured
numbers (base network, dataset, fidelity, threat model, privacy metric, compression
settings, seed, plan, code version); the value is the measured metrics as JSON.  The reward
is computed from the metrics on read, so one cached evaluation serves every resource metric
and threshold setting.

WAL mode lets readers proceed while one process writes; every write is its own transaction,
so an interrupted search loses nothing that had finished.  Connections are opened per
process and thread (a forked worker never reuses its parent's connection).

Several processes may share one file.  Three things keep that safe and cheap:

* **Opening under contention.**  Switching a new file to WAL needs an exclusive lock that
  SQLite's busy handler does not always wait for, so four processes creating one cache at
  once used to fail with ``database is locked``; opening retries for up to
  :attr:`EvalCache.timeout` seconds.
* **In-progress marks.**  :meth:`EvalCache.claim` records "this process is measuring this
  key" in the ``inflight`` table; another process that needs the same plan waits for the
  result instead of measuring it again.  A mark whose process died (same host, pid gone) or
  whose heartbeat (refreshed every :attr:`HEARTBEAT_S` seconds by a daemon thread while the
  process holds marks) is older than :attr:`STALE_S` seconds is taken over.
* **Errors that say what happened.**  A locked, read-only, unopenable, full or damaged file
  each gets its own message and remedy (only a file that is not a database is worth moving
  away); a damaged row is a cache miss reported once, and the fresh measurement replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
import warnings
from pathlib import Path

from privacysplit._fsutil import ensure_dir

SCHEMA_VERSION = 1


class CacheError(RuntimeError):
    """The cache file cannot be used (locked, read-only, not a database, wrong version)."""


class CacheWarning(UserWarning):
    """A damaged row was read as a cache miss."""


def describe_error(path: Path | None, err: BaseException) -> str:
    """One line naming what went wrong with the cache file and what to do about it."""
    text = str(err)
    low = text.lower()
    where = f"evaluation cache {path}"
    if "locked" in low or "busy" in low:
        return (f"{where} stayed locked by another process ({text}); wait for that process to "
                "finish, or pass another cache path")
    if "readonly" in low or "read-only" in low:
        return (f"{where} is read-only ({text}); make the file and its folder writable (SQLite "
                "writes a -wal file beside it) or pass another cache path")
    if "unable to open" in low:
        return (f"{where} cannot be opened ({text}); check that its folder exists and is "
                "writable, or pass another cache path")
    if "disk is full" in low or "disk i/o" in low:
        return (f"{where} hit an I/O error ({text}); check the disk (full? a network file "
                "system without locking?) or pass a cache path on a local disk")
    if "not a database" in low or "malformed" in low or "encrypted" in low:
        return (f"{where} is not a readable SQLite database ({text}); move it away or pass "
                "another cache path")
    return f"{where} failed ({type(err).__name__}: {text}); pass another cache path to go on"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


class EvalCache:
    """``get(key)`` / ``put(key, plan, config, metrics)`` over a SQLite file.

    Args:
        path: the database file (created with its folder), or ``None`` for an in-memory
            dictionary that still guarantees no plan is evaluated twice in this process.
        timeout: seconds to wait for another process's lock before giving up.
    """

    #: a mark older than this without a heartbeat belongs to a dead or stuck process
    STALE_S = 60.0
    #: how often a process refreshes the heartbeat of the marks it holds
    HEARTBEAT_S = 10.0

    def __init__(self, path: str | Path | None, timeout: float = 60.0) -> None:
        self.path = Path(path) if path is not None else None
        self.timeout = timeout
        self._memory: dict[str, dict] = {}
        self._local = threading.local()
        self._damaged: set[str] = set()
        self._claims: set[str] = set()
        self._claims_lock = threading.Lock()
        self._owner_pid = -1
        self._owner_id = ""
        self._heartbeat: threading.Thread | None = None
        if self.path is not None:
            if self.path.is_dir():
                raise CacheError(f"evaluation cache {self.path} is a folder; pass a file path such as {self.path / 'evals.sqlite'}")
            try:
                ensure_dir(self.path.parent, "cache folder")
            except ValueError as err:
                raise CacheError(str(err)) from err
            if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
                raise CacheError(describe_error(self.path, sqlite3.OperationalError("attempt to write a readonly database")))
            self._retry(self._check_schema)

    # -- connections -------------------------------------------------------------------
    def _retry(self, fn):
        """Run ``fn`` again while SQLite reports a lock, up to :attr:`timeout` seconds."""
        deadline = time.monotonic() + self.timeout
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as err:
                low = str(err).lower()
                if ("locked" not in low and "busy" not in low) or time.monotonic() > deadline:
                    raise CacheError(describe_error(self.path, err)) from err
                self._drop_conn()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except sqlite3.DatabaseError as err:
                raise CacheError(describe_error(self.path, err)) from err

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local.conn = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _execute(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Run one statement (its own transaction) and fetch every row, retrying on a lock."""
        return self._retry(lambda: self._conn().execute(sql, args).fetchall())

    def _check_schema(self) -> None:
        conn = self._conn()
        conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS evals (key TEXT PRIMARY KEY, plan TEXT, config TEXT, "
            "metrics TEXT, created REAL)"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS inflight (key TEXT PRIMARY KEY, owner TEXT, host TEXT, "
            "pid INTEGER, started REAL, heartbeat REAL)"
        )
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        (version,) = conn.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
        if str(version) != str(SCHEMA_VERSION):
            raise CacheError(
                f"evaluation cache {self.path} has schema {version}, this version needs "
                f"{SCHEMA_VERSION}; move it away or pass another cache path"
            )

    # -- rows --------------------------------------------------------------------------
    def _report_damaged(self, key: str, err: BaseException) -> None:
        if key not in self._damaged:
            self._damaged.add(key)
            warnings.warn(
                f"evaluation cache {self.path}: row {key[:16]}... is damaged ({type(err).__name__}: "
                f"{str(err)[:80]}); treated as a miss, a new measurement will replace it",
                CacheWarning, stacklevel=3,
            )

    def _read_row(self, sql: str, args: tuple) -> tuple | BaseException | None:
        """One row, or the decoding error of a damaged one (a lock is retried by the caller)."""
        try:
            return self._conn().execute(sql, args).fetchone()
        except sqlite3.OperationalError as err:
            if "decode" in str(err).lower():  # bad UTF-8 in a text column
                return err
            raise

    def _read_all(self, sql: str) -> list[tuple] | None:
        """Every row, or ``None`` when one of them is damaged (bad UTF-8)."""
        try:
            return self._conn().execute(sql).fetchall()
        except sqlite3.OperationalError as err:
            if "decode" in str(err).lower():
                return None
            raise

    def get(self, key: str) -> dict | None:
        if key in self._memory:
            return self._memory[key]
        if self.path is None:
            return None
        row = self._retry(lambda: self._read_row("SELECT metrics FROM evals WHERE key=?", (key,)))
        if row is None:
            return None
        try:
            if isinstance(row, BaseException):
                raise row
            metrics = json.loads(row[0])
            if not isinstance(metrics, dict):
                raise ValueError(f"metrics are a {type(metrics).__name__}, not an object")
        except (sqlite3.OperationalError, ValueError, TypeError) as err:  # bad UTF-8 or JSON, NULL
            self._report_damaged(key, err)
            return None
        self._memory[key] = metrics
        return metrics

    def put(self, key: str, plan: str, config: dict, metrics: dict) -> None:
        self._memory[key] = metrics
        if self.path is None:
            return
        verb = "INSERT OR REPLACE" if key in self._damaged else "INSERT OR IGNORE"
        self._execute(
            f"{verb} INTO evals VALUES (?, ?, ?, ?, ?)",
            (key, plan, json.dumps(config, sort_keys=True), json.dumps(metrics), time.time()),
        )
        self._damaged.discard(key)

    def __len__(self) -> int:
        if self.path is None:
            return len(self._memory)
        return int(self._execute("SELECT COUNT(*) FROM evals")[0][0])

    def rows(self) -> list[tuple[str, dict, dict]]:
        """Every readable ``(plan, config, metrics)`` stored, oldest first (damaged rows are
        reported once and skipped)."""
        if self.path is None:
            return []
        whole = self._retry(lambda: self._read_all("SELECT plan, config, metrics FROM evals ORDER BY created, rowid"))
        if whole is not None:  # the common case: one query, every row readable
            try:
                return [(p, json.loads(c), json.loads(m)) for p, c, m in whole]
            except (ValueError, TypeError):
                pass
        out = []
        keys = [k for (k,) in self._execute("SELECT key FROM evals ORDER BY created, rowid")]
        for key in keys:
            row = self._retry(lambda k=key: self._read_row("SELECT plan, config, metrics FROM evals WHERE key=?", (k,)))
            try:
                if isinstance(row, BaseException):
                    raise row
                if row is not None:
                    out.append((row[0], json.loads(row[1]), json.loads(row[2])))
            except (sqlite3.OperationalError, ValueError, TypeError) as err:
                self._report_damaged(key, err)
        return out

    # -- in-progress marks -------------------------------------------------------------
    @property
    def owner(self) -> str:
        """This process's identity in the ``inflight`` table (new after a fork)."""
        if self._owner_pid != os.getpid():
            self._owner_pid = os.getpid()
            self._owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            self._claims = set()
            self._heartbeat = None
        return self._owner_id

    def _stale(self, host: str, pid: int, heartbeat: float) -> bool:
        if time.time() - heartbeat > self.STALE_S:
            return True
        return host == socket.gethostname() and pid != os.getpid() and not _pid_alive(pid)

    def claim(self, key: str) -> str:
        """Mark ``key`` as being measured by this process.

        Returns ``"mine"`` (go ahead and measure, then :meth:`put` and :meth:`release`),
        ``"done"`` (the result is already stored: :meth:`get` it) or ``"busy"`` (another live
        process is measuring it: wait and ask again).  A mark left by a dead process is taken
        over.  Without a file every claim is ``"mine"``.
        """
        if self.path is None:
            return "done" if key in self._memory else "mine"
        owner = self.owner

        def attempt() -> str:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM evals WHERE key=?", (key,)).fetchone() is not None \
                        and key not in self._damaged:
                    result = "done"
                else:
                    row = conn.execute("SELECT owner, host, pid, heartbeat FROM inflight WHERE key=?", (key,)).fetchone()
                    if row is not None and row[0] != owner and not self._stale(row[1], int(row[2]), float(row[3])):
                        result = "busy"
                    else:
                        now = time.time()
                        conn.execute("INSERT OR REPLACE INTO inflight VALUES (?, ?, ?, ?, ?, ?)",
                                     (key, owner, socket.gethostname(), os.getpid(), now, now))
                        result = "mine"
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            return result

        result = self._retry(attempt)
        if result == "mine":
            with self._claims_lock:
                self._claims.add(key)
            self._start_heartbeat()
        return result

    def release(self, key: str) -> None:
        """Drop this process's mark on ``key`` (after storing its result, or on failure)."""
        if self.path is None:
            return
        with self._claims_lock:
            self._claims.discard(key)
        self._execute("DELETE FROM inflight WHERE key=? AND owner=?", (key, self.owner))

    def in_progress(self) -> list[tuple[str, str]]:
        """``(key, owner)`` of every mark in the file (stale ones included)."""
        if self.path is None:
            return []
        return [(k, o) for k, o in self._execute("SELECT key, owner FROM inflight")]

    def _start_heartbeat(self) -> None:
        if self._heartbeat is not None and self._heartbeat.is_alive():
            return
        owner = self.owner
        thread = threading.Thread(target=self._beat, args=(owner,), name="privacysplit-cache-heartbeat", daemon=True)
        self._heartbeat = thread
        thread.start()

    def _beat(self, owner: str) -> None:
        """Refresh this process's marks until it holds none (then the thread ends)."""
        while True:
            time.sleep(self.HEARTBEAT_S)
            if os.getpid() != self._owner_pid:
                return
            with self._claims_lock:
                if not self._claims:
                    self._heartbeat = None
                    return
            with contextlib.suppress(sqlite3.Error, CacheError):
                self._execute("UPDATE inflight SET heartbeat=? WHERE owner=?", (time.time(), owner))
