"""Kill safety of batch evaluation: finished work reaches the cache, workers die with their driver.

Each test runs a driver in a subprocess at smoke fidelity, SIGKILLs it part-way through an
8-plan batch and inspects what it left behind.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from privacysplit.envs.evaluator import Evaluator
from privacysplit.envs.executor import InProcessExecutor, measure_safely

PLANS = [f"{k} | none" for k in range(8)]

DRIVER = textwrap.dedent(
    """
    import sys
    from privacysplit.envs.evaluator import Evaluator

    cache, executor = sys.argv[1], sys.argv[2]
    ev = Evaluator("lenet", fidelity="smoke", cache=cache, executor=executor, workers=2)
    if executor == "inprocess":  # announce each measurement as it ends, before it is stored
        measure = ev.measure

        def announced(plan):
            metrics = measure(plan)
            print("measured", plan, flush=True)
            return metrics

        ev.measure = announced
    ev.base()
    print("ready", flush=True)
    ev.evaluate_many(PLANS)
    print("batch done", flush=True)
    """
).replace("PLANS", repr(PLANS))


def _plan_rows(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path, timeout=30) as conn:
        return {p for (p,) in conn.execute("SELECT plan FROM evals") if p != "base"}


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        children = {c for c, p in parents.items() if p in frontier}
        frontier = children - found
        found |= children
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def _start(tmp_path: Path, executor: str) -> subprocess.Popen:
    env = {**os.environ, "PRIVACYSPLIT_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "evals.sqlite"), executor],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_kill_mid_batch_keeps_every_finished_evaluation(tmp_path):
    """Before the fix, results were stored only when the whole batch had finished."""
    proc = _start(tmp_path, "inprocess")
    measured: list[str] = []
    try:
        for line in proc.stdout:
            if line.startswith("measured "):
                measured.append(line.split(" ", 1)[1].strip())
                if len(measured) == 3:
                    break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert len(measured) == 3, "the driver ended before three plans were measured"
    stored = _plan_rows(tmp_path / "evals.sqlite")
    assert set(measured[:2]) <= stored  # finished before the third ended: must be stored
    assert stored < set(PLANS)  # the kill really came part-way


POOL_DRIVER = textwrap.dedent(
    """
    import multiprocessing as mp
    import os
    import sys
    import time
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    from privacysplit.envs.executor import _watch_parent

    def init(folder):
        _watch_parent()
        (Path(folder) / f"ready-{os.getpid()}").touch()

    if __name__ == "__main__":
        folder = Path(sys.argv[1])
        pool = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=init, initargs=(str(folder),))
        busy = [pool.submit(time.sleep, 0.2) for _ in range(2)]  # the pool starts a worker per task
        deadline = time.monotonic() + 120
        while len(list(folder.glob("ready-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        print(*sorted(int(f.name[6:]) for f in folder.glob("ready-*")), flush=True)
        time.sleep(600)
    """
)


def _wait_gone(pids: set[int], seconds: float) -> list[int]:
    t0 = time.monotonic()
    while any(_alive(c) for c in pids) and time.monotonic() - t0 < seconds:
        time.sleep(0.1)
    survivors = [c for c in pids if _alive(c)]
    for c in survivors:  # do not leak them into the rest of the suite
        os.kill(c, signal.SIGKILL)
    return survivors


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_pool_workers_exit_within_5_s_of_a_killed_driver(tmp_path):
    """Before the watcher, both workers (about 0.8 GB each) and the resource tracker lived on."""
    script = tmp_path / "driver.py"
    script.write_text(POOL_DRIVER)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        workers = {int(p) for p in proc.stdout.readline().split()}
        children = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert len(workers) == 2 and workers <= children
    assert _wait_gone(children, 5) == [], "processes outlived their killed driver by 5 s"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_killed_driver_leaves_no_worker_and_keeps_streamed_results(tmp_path):
    proc = _start(tmp_path, "process")
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 120
        stored: set[str] = set()
        while len(stored) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            stored = _plan_rows(tmp_path / "evals.sqlite")
        children = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert 2 <= len(stored) < len(PLANS), f"results did not stream in: {len(stored)} stored at the kill"
    assert len(children) >= 2, children  # the two workers (and multiprocessing's resource tracker)
    assert _wait_gone(children, 5) == [], "worker processes outlived their killed driver by 5 s"
    assert stored <= _plan_rows(tmp_path / "evals.sqlite")


def test_each_result_records_its_thread_count(cache_root, tmp_path):
    ev = Evaluator("lenet", fidelity="smoke", cache=str(tmp_path / "c.sqlite"))
    info = ev.evaluate("2 | 0:W1")
    assert info["threads"] == torch.get_num_threads()
    assert ev.cache.get(ev.key(ev.space.validate("2 | 0:W1")))["threads"] == torch.get_num_threads()
    failed = measure_safely(ev, "99 | none")  # an invalid plan: an error entry, still stamped
    assert "error" in failed and failed["threads"] == torch.get_num_threads()


def test_in_process_results_stream_in_order(cache_root):
    ev = Evaluator("lenet", fidelity="smoke", cache=False)
    seen = []
    for i, metrics in InProcessExecutor(ev).measure_iter(["2 | none", "3 | none"]):
        seen.append((i, "accuracy" in metrics))
    assert seen == [(0, True), (1, True)]
