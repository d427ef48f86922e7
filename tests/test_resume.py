"""Kill a search with SIGKILL mid-run, resume it, and get the uninterrupted result."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

from privacysplit.cli import build_parser
from privacysplit.search_run import RUN_KEYS

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
    checkpoint = out / "checkpoint.pt"  # bilstm checkpoints after every episode (5 rollouts)
    while not (checkpoint.exists() and rows(cache) >= 6) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "search finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = rows(cache)
    assert 6 <= done_before < 16

    # a new search refuses to overwrite the folder; --resume continues it
    again = subprocess.run(cli(*ARGS, "--out", str(out), "--cache", str(cache), cache_root=cache_root), env=env,
                           capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = subprocess.run(cli(*ARGS, "--out", str(out), "--cache", str(cache), "--resume", cache_root=cache_root),
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    restored = re.search(r"resumed: (\d+) evaluations restored from .*checkpoint.pt; (\d+) evaluations answered", resumed.stdout)
    assert restored, resumed.stdout
    n_restored, n_hits = map(int, restored.groups())
    assert 0 < n_restored <= done_before

    reference_out, reference_cache = tmp_path / "ref", tmp_path / "ref.sqlite"
    ref = subprocess.run(cli(*ARGS, "--out", str(reference_out), "--cache", str(reference_cache), cache_root=cache_root),
                         env=env, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr

    a = json.loads((out / "result.json").read_text())
    b = json.loads((reference_out / "result.json").read_text())
    assert [r["plan"] for r in a["history"]] == [r["plan"] for r in b["history"]]
    # every number to the last bit; the message names the fields that moved.  (The CI machine
    # once saw a reward 5.6e-8 apart, and once S 6e-6 apart: S1's denominator followed the global
    # RNG; README, *What is bit-identical*.)
    for ra, rb in zip(a["history"], b["history"], strict=True):
        moved = {k: (ra[k], rb[k]) for k in ("reward", "accuracy", "privacy_loss", "resource") if ra[k] != rb[k]}
        assert not moved, (ra["plan"], moved)
    assert a["best_plan"] == b["best_plan"] and a["best_reward"] == b["best_reward"]
    # the checkpoint restored the history up to its episode; the evaluations finished after
    # it but before the kill came back from the cache
    assert n_hits >= done_before - n_restored
    assert not any(r["cache_hit"] for r in a["history"][:n_restored])
    assert (out / "best_plan.txt").read_text().strip() == a["best_plan"]
    assert "# Search: bilstm on lenet/mnist" in (out / "report.md").read_text()


def test_resume_with_other_settings_is_refused(cache_root, tmp_path):
    env = {**os.environ, "PRIVACYSPLIT_CACHE": cache_root}
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"settings": {"agent": "random"}}))
    proc = subprocess.run(cli(*ARGS, "--out", str(out), "--resume", cache_root=cache_root), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "different settings" in proc.stderr and "agent: 'random' -> 'bilstm'" in proc.stderr
    args = build_parser().parse_args([*ARGS, "--out", str(out)])
    settings = {k: getattr(args, k) for k in RUN_KEYS}
    (out / "run.json").write_text(json.dumps({"settings": settings}))
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    proc = subprocess.run(cli(*ARGS, "--out", str(out), "--resume", cache_root=cache_root), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "checkpoint.pt is corrupted" in proc.stderr and "move" in proc.stderr
    assert (out / "checkpoint.pt").read_bytes() == b"not a checkpoint"  # reported, never overwritten
    (out / "run.json").write_text("{broken")
    proc = subprocess.run(cli(*ARGS, "--out", str(out), "--resume", cache_root=cache_root), env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "corrupted" in proc.stderr
