"""How many torch threads an evaluation may use: sized from the cores this process may run on.

Why this matters on a shared machine: torch's intra-op thread pool synchronises its threads
at the end of every operation, and a small network runs thousands of small operations per
second.  When the pool has as many threads as the machine has cores and another CPU-bound
process takes one of them, every operation waits for the thread that lost its core; measured
on a 2-core machine, a ``cpu``-fidelity LeNet evaluation went from 4-5 s alone to 28-270 s
beside other jobs.  A pool no larger than the cores this process owns, and worker pools
whose threads add up to no more than the cores, degrade in proportion to the cores lost
instead.

* :func:`available_cores` -- ``os.sched_getaffinity`` (what ``taskset``, cgroups' cpusets
  and the executor's pinning allow), else ``os.cpu_count()``.
* :func:`default_threads` -- ``$PRIVACYSPLIT_THREADS`` when set, else the available cores
  divided among ``workers`` processes (at least one each).
* :func:`configure_threads` -- applies it to torch (intra-op threads; one inter-op thread,
  since evaluations have no parallel branches to run).
"""

from __future__ import annotations

import contextlib
import os

#: environment variable that fixes the thread count of every evaluation process
THREADS_ENV = "PRIVACYSPLIT_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def default_threads(workers: int = 1) -> int:
    """Threads per process so that ``workers`` processes never exceed the available cores.

    ``$PRIVACYSPLIT_THREADS`` (a positive integer) overrides the computed value.

    Raises:
        ValueError: for ``workers < 1`` or a malformed ``$PRIVACYSPLIT_THREADS``.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"${THREADS_ENV} must be a positive integer, got {env!r}")
        return value
    return max(1, available_cores() // workers)


def configure_threads(threads: int | None = None, workers: int = 1) -> int:
    """Set torch's intra-op threads to ``threads`` (default :func:`default_threads`); the count.

    A request above the available cores is lowered to them: more threads than cores only
    adds waiting.  The inter-op pool is set to one thread where torch still allows it (it
    can only be set before its first parallel use).
    """
    import torch

    if threads is None:
        threads = default_threads(workers)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    threads = min(threads, available_cores())
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already used or already set: keep what it has
        torch.set_num_interop_threads(1)
    return threads


@contextlib.contextmanager
def torch_threads(threads: int):
    """Run a block with torch's intra-op threads set to ``threads``, then restore them.

    Why: work done once in a driver for its workers (the base network, A_base) must run on
    the workers' thread count, or its numbers differ in the last digits from what a worker,
    or an in-process run on as many threads, computes (README "What is bit-identical").
    """
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
