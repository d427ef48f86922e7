"""benchmarks/stress.py: its counts (unit) and a tiny real run (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from privacysplit.envs.cache import EvalCache

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "stress.py"


def test_summary_counts_duplicates_lost_and_crashes(benchmark_module, tmp_path):
    cache = EvalCache(tmp_path / "c.sqlite")
    cache.put("ka", "1 | none", {}, {"accuracy": 0.5})
    cache.claim("kc")  # a mark left behind
    records = [
        {"worker": 0, "plan": "1 | none", "key": "ka", "reward": 0.4, "cache_hit": False, "threads": 1},
        {"worker": 1, "plan": "1 | none", "key": "ka", "reward": 0.4, "cache_hit": False, "threads": 1},
        {"worker": 1, "plan": "1 | none", "key": "ka", "reward": 0.4, "cache_hit": True, "threads": 1},
        {"worker": 2, "plan": "2 | none", "key": "kb", "reward": 0.3, "cache_hit": False, "threads": 1},
        {"worker": 2, "plan": "3 | none", "key": "kc", "reward": 0.0, "cache_hit": False, "error": "boom"},
        {"worker": 3, "crash": "ValueError: x"},
    ]
    s = benchmark_module("stress").summarise(records, tmp_path / "c.sqlite", [0, 0, 0, -9], 1.0)
    assert s["episodes"] == 5 and s["crashes"] == 2  # one episode, one killed process
    assert s["measurements"] == 4 and s["duplicate_measurements"] == 1
    assert s["lost_evaluations"] == 1 and s["lost_plans"] == ["2 | none"]  # the failed one is not lost
    assert s["evaluation_errors"] == 1 and s["cache_hits"] == 1
    assert s["plan_rows_in_cache"] == 1 and s["leftover_in_progress_marks"] == 1


@pytest.mark.slow
def test_two_processes_of_two_episodes(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--procs", "2", "--episodes", "2", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["crashes"] == 0
    assert summary["duplicate_measurements"] == 0 and summary["lost_evaluations"] == 0
