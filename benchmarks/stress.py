"""Reliability under concurrency: N processes of random episodes against one evaluation cache.

Each process builds ``PrivacySplit-v0`` on the same SQLite cache file and plays random
masked episodes (its own seed), so the processes keep asking for the same plans at the same
time.  Reported:

* ``episodes`` finished, and ``crashes`` (an exception out of ``reset``/``step``, or a
  process that died);
* ``measurements`` (terminal steps that were not cache hits) and ``duplicate measurements``:
  for every plan, the times it was measured beyond the first, over all processes.  With the
  cache's in-progress marks a plan another process is measuring is waited for, so this
  should be 0.  Before the marks (commit 4b87ad4) this benchmark at 4 x 60 smoke episodes
  counted 3 duplicates among 172 measurements; random episodes rarely ask for one plan at
  the same moment, processes that run the same plans collide far more (45 of 60 shared
  measurements were redundant when issue 14 was filed);
* ``lost evaluations``: successful measurements whose row is missing from the cache at the
  end (each is stored the moment it finishes, so this should be 0);
* evaluation errors (reward 0, ``info["error"]``), rewards outside [0, 1], leftover
  in-progress marks, distinct plans and rows in the cache, wall time.

Usage::

    python benchmarks/stress.py --procs 4 --episodes 250 --fidelity smoke --update-results
    python benchmarks/stress.py --procs 2 --episodes 20 --fidelity smoke --out runs/stress-small

Writes ``summary.json`` and ``summary.md`` to ``--out`` (default: a new
``runs/stress-<time>`` folder; ``--update-results`` writes the committed
``benchmarks/results/stress``); the cache lives in a fresh temporary folder unless
``--cache`` names a file.  Every process runs torch with one thread.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from privacysplit.reporting import add_output_arguments, resolve_output

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    """One process: ``--episodes`` random masked episodes; one JSON line per episode."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from privacysplit.envs.privacy_split import PrivacySplitEnv
    from privacysplit.plan import Plan

    rng = np.random.default_rng(1000 + args.worker)
    out = open(args.records, "a", buffering=1)  # noqa: SIM115 - one line per episode, flushed
    env = PrivacySplitEnv(args.base, fidelity=args.fidelity, cache=args.cache, seed=args.seed)
    ev = env.evaluator
    for episode in range(args.episodes):
        record: dict = {"worker": args.worker, "episode": episode}
        t0 = time.perf_counter()
        try:
            env.reset(seed=int(rng.integers(2**31)))
            done = False
            while not done:
                mask = np.asarray(env.action_masks(), dtype=bool)
                action = int(rng.choice(np.flatnonzero(mask)))
                _, reward, terminated, truncated, info = env.step(action)
                done = terminated or truncated
            record.update(
                plan=info.get("plan"), reward=float(reward), cache_hit=bool(info.get("cache_hit")),
                error=info.get("error"), threads=info.get("threads"),
                key=ev.key(Plan.parse(info["plan"])) if info.get("plan") else None,
            )
        except Exception as err:  # noqa: BLE001 - counted as a crash, the run goes on
            record.update(crash=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=5))
        record["seconds"] = time.perf_counter() - t0
        out.write(json.dumps(record) + "\n")
    env.close()
    out.close()


def summarise(records: list[dict], cache: Path, exit_codes: list[int], seconds: float) -> dict:
    measured = collections.Counter()
    measured_ok: dict[str, str] = {}
    for r in records:
        if "crash" in r or r.get("plan") is None:
            continue
        if not r["cache_hit"]:
            measured[r["plan"]] += 1
            if not r.get("error"):
                measured_ok[r["key"]] = r["plan"]
    with sqlite3.connect(cache, timeout=60) as conn:
        stored = {k for (k,) in conn.execute("SELECT key FROM evals")}
        rows = conn.execute("SELECT COUNT(*) FROM evals WHERE plan != 'base'").fetchone()[0]
        try:
            marks = conn.execute("SELECT COUNT(*) FROM inflight").fetchone()[0]
        except sqlite3.OperationalError:  # a cache written before in-progress marks existed
            marks = None
    lost = sorted(plan for key, plan in measured_ok.items() if key not in stored)
    rewards = [r["reward"] for r in records if "reward" in r]
    finished = [r for r in records if "crash" not in r]
    return {
        "processes": len(exit_codes),
        "episodes": len(finished),
        "crashes": sum("crash" in r for r in records) + sum(code != 0 for code in exit_codes),
        "process_exit_codes": exit_codes,
        "measurements": sum(measured.values()),
        "distinct_plans_measured": len(measured),
        "duplicate_measurements": sum(n - 1 for n in measured.values()),
        "lost_evaluations": len(lost),
        "lost_plans": lost[:20],
        "evaluation_errors": sum(bool(r.get("error")) for r in finished),
        "rewards_outside_0_1": sum(not 0.0 <= x <= 1.0 for x in rewards),
        "cache_hits": sum(bool(r.get("cache_hit")) for r in finished),
        "plan_rows_in_cache": rows,
        "leftover_in_progress_marks": marks,
        "threads_per_result": sorted({r.get("threads") for r in finished if r.get("threads") is not None}),
        "wall_seconds": round(seconds, 1),
        "crash_examples": [r["crash"] for r in records if "crash" in r][:5],
    }


def markdown(summary: dict, command: str) -> str:
    keys = ["processes", "episodes", "crashes", "measurements", "distinct_plans_measured",
            "duplicate_measurements", "lost_evaluations", "evaluation_errors", "rewards_outside_0_1",
            "cache_hits", "plan_rows_in_cache", "leftover_in_progress_marks", "threads_per_result",
            "wall_seconds"]
    lines = ["# Stress: concurrent random episodes on one evaluation cache", "",
             f"Command: `{command}`", "", "| quantity | value |", "|---|---:|"]
    lines += [f"| {k.replace('_', ' ')} | {summary[k]} |" for k in keys]
    if summary["crash_examples"]:
        lines += ["", "Crashes:", *[f"- `{c}`" for c in summary["crash_examples"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", type=int, default=4, help="concurrent processes (default 4)")
    parser.add_argument("--episodes", type=int, default=250, help="random episodes per process (default 250)")
    parser.add_argument("--fidelity", default="smoke", help="smoke (default), cpu or paper")
    parser.add_argument("--base", default="lenet", help="base network (default lenet)")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed shared by all processes")
    parser.add_argument("--cache", default=None, help="cache file (default: a fresh temporary folder)")
    add_output_arguments(parser, "stress", "benchmarks/results/stress", ROOT)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--records", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args)
        return 0
    if args.procs < 1 or args.episodes < 1:
        parser.error("--procs and --episodes must be positive")
    resolve_output(parser, args)
    command = "python benchmarks/stress.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    work = Path(tempfile.mkdtemp(prefix="privacysplit-stress-"))
    cache = Path(args.cache) if args.cache else work / "evals.sqlite"
    env = {**os.environ, "PRIVACYSPLIT_CACHE": str(cache.parent), "OMP_NUM_THREADS": "1"}
    base_cmd = [sys.executable, __file__, "--episodes", str(args.episodes), "--fidelity", args.fidelity,
                "--base", args.base, "--seed", str(args.seed), "--cache", str(cache)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([*base_cmd, "--worker", str(i), "--records", str(work / f"records-{i}.jsonl")], env=env)
        for i in range(args.procs)
    ]
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - t0
    records = []
    for i in range(args.procs):
        path = work / f"records-{i}.jsonl"
        if path.exists():
            records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    summary = {"command": command, "fidelity": args.fidelity, "base": args.base,
               **summarise(records, cache, codes, seconds)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary, command)
    (out / "summary.md").write_text(text)
    print(text)
    return 0 if summary["crashes"] == 0 and summary["lost_evaluations"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
