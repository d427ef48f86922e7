"""Where plan evaluations run: in this process, in a local process pool, or on Ray.

Evaluating a plan (retraining plus attack) dominates every search, so evaluations of a
batch run in parallel when the user asks for workers.  Workers stay alive between batches
(importing torch and loading the trained base network cost seconds) and each holds its
own :class:`~privacysplit.envs.evaluator.Evaluator` built from the driver's arguments.

Workers only *measure*; the driver owns the SQLite cache and writes every result, so Ray
workers on other machines never need to reach the cache file.  Results stream back in the
order they finish (:meth:`Executor.measure_iter`), so the driver stores each one the moment
it exists: a kill part-way through a batch loses only the evaluations still running.

Local workers watch their driver and exit within a second of its death (even a SIGKILL,
which runs no clean-up in the driver), so an interrupted search leaves no process behind.

Small networks are overhead-bound on a CPU: two 1-thread workers give close to twice the
evaluations of one 2-thread process, so each local worker gets one thread and is pinned to
its own core when the OS allows it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Protocol

EXECUTORS = ("inprocess", "process", "ray")

_WORKER = None  # the Evaluator of this worker process


def measure_safely(evaluator, plan_text: str) -> dict:
    """Measure one plan; a failure becomes an ``error`` entry, never an exception.

    The result records ``threads``, the torch intra-op thread count it ran with: reductions
    split across threads sum in another order, so the last digits of a reward depend on it.
    """
    import torch

    from privacysplit.plan import Plan

    try:
        metrics = evaluator.measure(Plan.parse(plan_text))
    except Exception as err:  # noqa: BLE001 - a failing plan must not kill a search
        metrics = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=3)}
    metrics["threads"] = torch.get_num_threads()
    return metrics


def _watch_parent(interval: float = 0.5) -> None:
    """Exit this worker as soon as the process that started it is gone.

    A pool worker blocks reading its task queue, and that read does not fail when the
    driver is SIGKILLed (the pool's other workers keep the pipe open), so without a watcher
    workers of a killed search live on, holding their memory.  ``os._exit`` skips clean-up
    that could block on the dead driver.  The driver's pid comes from multiprocessing (not
    ``os.getppid()`` now), so a driver killed while this worker was still importing is
    noticed too.
    """
    parent_process = mp.parent_process()
    parent = parent_process.pid if parent_process is not None else os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="privacysplit-parent-watch", daemon=True).start()


def _init_worker(kwargs: dict, counter, threads: int) -> None:
    global _WORKER
    _watch_parent()
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[index % len(cores)]})
    from privacysplit.threads import configure_threads

    configure_threads(threads)  # never more than the cores this worker is pinned to
    from privacysplit.envs.evaluator import Evaluator

    _WORKER = Evaluator(**kwargs)


def _worker_measure(plan_text: str) -> dict:
    return measure_safely(_WORKER, plan_text)


class Executor(Protocol):
    """Measures batches of plans (raw metrics, no cache, no reward)."""

    workers: int

    def measure_many(self, plans: list[str]) -> list[dict]: ...

    def measure_iter(self, plans: list[str]) -> Iterator[tuple[int, dict]]:
        """``(index into plans, metrics)`` for each plan, in the order they finish."""
        ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Measure plans one after another in this process."""

    workers = 1

    def __init__(self, evaluator) -> None:
        self.evaluator = evaluator

    def measure_many(self, plans: list[str]) -> list[dict]:
        return [measure_safely(self.evaluator, p) for p in plans]

    def measure_iter(self, plans: list[str]) -> Iterator[tuple[int, dict]]:
        for i, plan in enumerate(plans):
            yield i, measure_safely(self.evaluator, plan)

    def close(self) -> None:
        pass


#: torch threads of every pool worker (process or Ray): one core each
WORKER_THREADS = 1


class ProcessExecutor:
    """A pool of long-lived local worker processes, one thread and one core each."""

    def __init__(self, worker_kwargs: dict, workers: int, threads: int = WORKER_THREADS) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        ctx = mp.get_context("spawn")
        counter = ctx.Value("i", 0)
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init_worker,
            initargs=(worker_kwargs, counter, threads),
        )

    def measure_many(self, plans: list[str]) -> list[dict]:
        out: list[dict] = [{}] * len(plans)
        for i, metrics in self.measure_iter(plans):
            out[i] = metrics
        return out

    def measure_iter(self, plans: list[str]) -> Iterator[tuple[int, dict]]:
        futures = {self._pool.submit(_worker_measure, p): i for i, p in enumerate(plans)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield futures[fut], fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Ray actors, each holding an Evaluator; ``address`` joins an existing cluster."""

    def __init__(self, worker_kwargs: dict, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise ValueError("executor 'ray' needs Ray: pip install 'privacysplit[ray]'") from err
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)

        @ray.remote(num_cpus=1)
        class _Actor:
            def __init__(self, kwargs: dict) -> None:
                import torch

                torch.set_num_threads(WORKER_THREADS)
                from privacysplit.envs.evaluator import Evaluator

                self.evaluator = Evaluator(**kwargs)

            def measure(self, plan_text: str) -> dict:
                return measure_safely(self.evaluator, plan_text)

            def measure_indexed(self, index: int, plan_text: str) -> tuple[int, dict]:
                return index, measure_safely(self.evaluator, plan_text)

        self._ray = ray
        self.workers = workers
        self._actors = [_Actor.remote(worker_kwargs) for _ in range(workers)]

    def measure_many(self, plans: list[str]) -> list[dict]:
        out: list[dict] = [{}] * len(plans)
        for i, metrics in self.measure_iter(plans):
            out[i] = metrics
        return out

    def measure_iter(self, plans: list[str]) -> Iterator[tuple[int, dict]]:
        pool = self._ray.util.ActorPool(self._actors)
        for i, plan in enumerate(plans):
            pool.submit(lambda actor, args: actor.measure_indexed.remote(*args), (i, plan))
        while pool.has_next():
            yield pool.get_next_unordered()

    def close(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []


def make_executor(kind: str, evaluator, workers: int = 1, address: str | None = None) -> Executor:
    """Build the executor named ``kind`` for ``evaluator`` (see :data:`EXECUTORS`)."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; valid executors: {', '.join(EXECUTORS)}")
    if kind == "inprocess":
        return InProcessExecutor(evaluator)
    kwargs = evaluator.worker_kwargs()
    if kind == "process":
        return ProcessExecutor(kwargs, workers)
    return RayExecutor(kwargs, workers, address)
