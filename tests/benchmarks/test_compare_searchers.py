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


def _status() -> set[str]:
    root = SCRIPT.parents[1]
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, capture_output=True,
                         text=True, check=True).stdout
    return set(out.splitlines())


def test_default_output_is_a_new_ignored_folder_with_tensorboard_runs(cache_root):
    """Without --out nothing tracked (the README's results) is touched: the run lands in a new
    runs/compare-<time> folder, with TensorBoard scalars and an hparams summary per run."""
    import shutil

    root = SCRIPT.parents[1]
    before = _status()
    env = {**os.environ, "PRIVACYSPLIT_CACHE": cache_root, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--fidelity", "smoke", "--searchers", "random", "--seeds", "2", "--budget", "2",
         "--partitions", "5", "--techniques", "W1"],
        capture_output=True, text=True, env=env, timeout=600, cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    out = Path(proc.stdout.strip().splitlines()[-1].split()[1])
    out = out if out.is_absolute() else root / out  # recorded relative to the working directory
    try:
        assert out.parent == root / "runs" and out.name.startswith("compare-")
        # other work may change the tree meanwhile: look only where this script could write
        new = {line for line in _status() - before if "benchmarks/results/compare" in line or out.name in line}
        assert not new, f"the run changed what git sees: {sorted(new)}"
        assert subprocess.run(["git", "check-ignore", "-q", str(out)], cwd=root).returncode == 0
        for seed in (0, 1):
            run = out / "tb" / f"random-seed{seed}"
            events = list(run.glob("events.out.tfevents.*"))
            assert len(events) >= 2, events  # the search's scalars and the hparams summary
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            tags = set()
            for event in events:
                acc = EventAccumulator(str(event))
                acc.Reload()
                tags |= set(acc.Tags()["scalars"])
            assert {"search/best_reward", "hparam/best_reward"} <= tags, tags
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_readme_figures_only_on_request():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--update-readme-figures", "--out", "x"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "drop --out" in proc.stderr
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--update-readme-figures" in out and "runs/compare-<time>" in out
