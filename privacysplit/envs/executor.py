"""Where plan evaluations run: in this process, in a local process pool, or on Ray.

Evaluating a plan (retraining plus attack) dominates every search, so evaluations of a
batch run in parallel when the user asks for workers.  Workers stay alive between batches
(importing torch and loading the trained base network cost seconds) and each holds its
own :class:`~privacysplit.envs.evaluator.Evaluator` built from the driver's arguments.

Workers only *measure*; the driver owns the SQLite cache and writes every result, so Ray
workers on other machines never need to reach the cache file.

Small networks are overhead-bound on a CPU: two 1-thread workers give close to twice the
evaluations of one 2-thread process, so each local worker gets one thread and is pinned to
its own core when the OS allows it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Protocol

EXECUTORS = ("inprocess", "process", "ray")

_WORKER = None  # the Evaluator of this worker process


def measure_safely(evaluator, plan_text: str) -> dict:
    """Measure one plan; a failure becomes an ``error`` entry, never an exception."""
    from privacysplit.plan import Plan

    try:
        return evaluator.measure(Plan.parse(plan_text))
    except Exception as err:  # noqa: BLE001 - a failing plan must not kill a search
        return {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=3)}


def _init_worker(kwargs: dict, counter, threads: int) -> None:
    global _WORKER
    import torch

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            os.sched_setaffinity(0, {cores[index % len(cores)]})
    torch.set_num_threads(threads)
    from privacysplit.envs.evaluator import Evaluator

    _WORKER = Evaluator(**kwargs)


def _worker_measure(plan_text: str) -> dict:
    return measure_safely(_WORKER, plan_text)


class Executor(Protocol):
    """Measures batches of plans (raw metrics, no cache, no reward)."""

    workers: int

    def measure_many(self, plans: list[str]) -> list[dict]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Measure plans one after another in this process."""

    workers = 1

    def __init__(self, evaluator) -> None:
        self.evaluator = evaluator

    def measure_many(self, plans: list[str]) -> list[dict]:
        return [measure_safely(self.evaluator, p) for p in plans]

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A pool of long-lived local worker processes, one thread and one core each."""

    def __init__(self, worker_kwargs: dict, workers: int, threads: int = 1) -> None:
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
        return list(self._pool.map(_worker_measure, plans))

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

                torch.set_num_threads(1)
                from privacysplit.envs.evaluator import Evaluator

                self.evaluator = Evaluator(**kwargs)

            def measure(self, plan_text: str) -> dict:
                return measure_safely(self.evaluator, plan_text)

        self._ray = ray
        self.workers = workers
        self._actors = [_Actor.remote(worker_kwargs) for _ in range(workers)]

    def measure_many(self, plans: list[str]) -> list[dict]:
        pool = self._ray.util.ActorPool(self._actors)
        return list(pool.map(lambda actor, plan: actor.measure.remote(plan), plans))

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
