"""Kill a search with SIGKILL mid-run, resume it, and get the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

ARGS = ["search", "--base", "lenet", "--fidelity", "smoke", "--agent", "bilstm", "--budget", "16",
        "--partitions", "2,5,7", "--techniques", "W1,C3,F1", "--no-progress"]


def cli(*args: str, cache_root: str) -> list[str]:
    return [sys.executable, "-m", "privacysplit.cli", *args]


def rows(path) -> int:
    try:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT COUNT(*) FROM evals WHERE plan != 'base'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume_equals_uninterrupted_run(cache_root, tmp_path):
    env = {**os.environ, "PRIVACYSPLIT_CACHE": cache_root, "OMP_NUM_THREADS": "1"}
    cache, out = tmp_path / "evals.sqlite", tmp_path / "run"
    proc = subprocess.Popen(cli(*ARGS, "--out", str(out), "--cache", str(cache), cache_root=cache_root), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while rows(cache) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "search finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = rows(cache)
    assert 4 <= done_before < 16

    # a new search refuses to overwrite the folder; --resume continues it
    again = subprocess.run(cli(*ARGS, "--out", str(out), "--cache", str(cache), cache_root=cache_root), env=env,
                           capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = subprocess.run(cli(*ARGS, "--out", str(out), "--cache", str(cache), "--resume", cache_root=cache_root),
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr

    reference_out, reference_cache = tmp_path / "ref", tmp_path / "ref.sqlite"
    ref = subprocess.run(cli(*ARGS, "--out", str(reference_out), "--cache", str(reference_cache), cache_root=cache_root),
                         env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr

    a = json.loads((out / "result.json").read_text())
    b = json.loads((reference_out / "result.json").read_text())
    assert [r["plan"] for r in a["history"]] == [r["plan"] for r in b["history"]]
    assert [r["reward"] for r in a["history"]] == [r["reward"] for r in b["history"]]
    assert a["best_plan"] == b["best_plan"] and a["best_reward"] == b["best_reward"]
    # the evaluations finished before the kill came back from the cache
    assert sum(r["cache_hit"] for r in a["history"]) >= done_before
    assert (out / "best_plan.txt").read_text().strip() == a["best_plan"]
    assert "# Search: bilstm on lenet/mnist" in (out / "report.md").read_text()


def test_resume_with_other_settings_is_refused(cache_root, tmp_path):
    env = {**os.environ, "PRIVACYSPLIT_CACHE": cache_root}
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"settings": {"agent": "random"}}))
    proc = subprocess.run(cli(*ARGS, "--out", str(out), "--resume", cache_root=cache_root), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "different settings" in proc.stderr and "agent: 'random' -> 'bilstm'" in proc.stderr
    (out / "run.json").write_text("{broken")
    proc = subprocess.run(cli(*ARGS, "--out", str(out), "--resume", cache_root=cache_root), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "corrupted" in proc.stderr
