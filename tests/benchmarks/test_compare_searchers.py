"""benchmarks/compare_searchers.py runs end to end (smoke fidelity, subprocess)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_searchers.py"


def test_help_documents_every_option():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    for option in ("--base", "--dataset", "--fidelity", "--threat", "--privacy", "--resource", "--techniques",
                   "--partitions", "--searchers", "--seeds", "--budget", "--budgets", "--workers", "--cache", "--out"):
        assert option in out


def test_small_run_writes_every_file(cache_root, tmp_path):
    out = tmp_path / "cmp"
    env = {**os.environ, "PRIVACYSPLIT_CACHE": cache_root, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--fidelity", "smoke", "--searchers", "random,bilstm", "--seeds", "2",
         "--budget", "4", "--partitions", "2,5", "--techniques", "W1", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("results.csv", "summary.json", "summary.md", "best_reward.png", "tradeoff.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["searcher"] for r in rows} == {"random", "bilstm"} and len(rows) <= 2 * 2 * 4
    assert set(rows[0]) >= {"searcher", "seed", "step", "plan", "reward", "accuracy", "privacy_loss", "resource", "cache_hit", "wall_time"}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["searchers"]) == {"random", "bilstm"}
    assert summary["settings"]["budget"] == 4 and summary["version"] and summary["git_commit"]
    assert 0 <= summary["best_known_reward"] <= 1
    assert (out / "best_reward.png").read_bytes()[:4] == b"\x89PNG"
