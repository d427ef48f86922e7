"""File-system helpers that keep concurrent and killed processes from losing or mixing files.

* :func:`atomic_write` — write to a uniquely named temporary file beside the target, then
  ``os.replace`` it.  A reader sees the old file or the new one, never half of one; two
  processes writing the same file both succeed (the last rename wins, both files are
  whole).  A fixed ``.tmp`` name would let one process rename the other's half-written
  file away (``FileNotFoundError``), which is what two concurrent base trainings did.
* :class:`FolderLock` — an exclusive ``fcntl.flock`` on ``<folder>/.lock`` held for the life
  of a search.  The kernel drops it when the holder dies (even on SIGKILL), so a stale lock
  cannot block the next run; a second search or ``--resume`` on a held folder is refused
  with one line naming the holder.
* :func:`ensure_dir` — ``mkdir -p`` whose failures (a file in the way, no permission) become
  one ``ValueError`` naming the path instead of a traceback.
* :func:`safe_name` — a user-chosen name (a fidelity's, a dataset's) that becomes part of a
  file name cannot climb out of its folder with ``../`` or ``/``.

Only the standard library: ``flock`` is what the platform already offers and needs no
dependency; on systems without ``fcntl`` (Windows) the lock degrades to a no-op.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

try:  # POSIX only; a missing fcntl makes locks advisory no-ops
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9._+-]`` replaced by ``_``.

    Leading dots are replaced too, so ``..`` and hidden names cannot result; the empty
    string becomes ``_``.
    """
    cleaned = _UNSAFE.sub("_", str(name))
    cleaned = re.sub(r"^\.+", lambda m: "_" * len(m.group()), cleaned)
    return cleaned or "_"


def ensure_dir(path: str | Path, what: str = "folder") -> Path:
    """Create ``path`` (and its parents) or raise one ``ValueError`` that names it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        culprit = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        raise ValueError(f"{what} {path} cannot be created: {culprit} exists and is not a folder") from err
    except PermissionError as err:
        culprit = Path(err.filename) if err.filename else path
        raise ValueError(f"{what} {path} cannot be created: permission denied on {culprit}; choose another location") from err
    except OSError as err:
        raise ValueError(f"{what} {path} cannot be created: {err.strerror or err}") from err
    if not path.is_dir():
        raise ValueError(f"{what} {path} exists and is not a folder")
    return path


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(fileobj)`` on a unique temporary file beside ``path``, then rename it.

    The data are flushed and fsynced before the rename, so a crash leaves the previous
    file (or none), never a truncated one.  The temporary file is removed on failure.
    """
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 string."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_torch_save(obj, path: str | Path) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive, blocking ``flock`` on ``path`` (created if needed) for the block.

    Used so that processes needing the same expensive artefact (a base network) produce it
    once: the others wait, then find it on disk.
    """
    path = Path(path)
    ensure_dir(path.parent)
    with open(path, "a+b") as f:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class FolderLock:
    """An exclusive lock on an output folder for as long as this object holds it.

    ``acquire()`` creates the folder, opens ``<folder>/.lock`` and takes a non-blocking
    ``flock``; when another process holds it, it raises ``ValueError`` naming the folder and
    the holder's pid.  The kernel releases the lock when the holding process exits in any
    way, so there is no stale lock to clean up after a kill.
    """

    NAME = ".lock"

    def __init__(self, folder: str | Path, what: str = "output folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._file: IO[str] | None = None

    def acquire(self) -> FolderLock:
        ensure_dir(self.folder, self.what)
        f = open(self.folder / self.NAME, "a+")  # noqa: SIM115 - held open while locked
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise ValueError(
                    f"{self.what} {self.folder} is in use by {holder}; wait for it to finish, "
                    "stop it, or choose another folder"
                ) from err
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
