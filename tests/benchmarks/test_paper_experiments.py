"""benchmarks/paper_experiments.py: the Table 9 and Table 12 runs end to end (smoke, subprocess)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "paper_experiments.py"


def run(cache_root: str, *args: str) -> None:
    env = {**os.environ, "PRIVACYSPLIT_CACHE": cache_root, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--fidelity", "smoke"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_thresholds_tell_an_infeasible_criterion_apart(cache_root, tmp_path):
    # No smoke-fidelity LeNet reaches accuracy 0.999: the row must say so, not name a plan.
    run(cache_root, "thresholds", "--budget", "4", "--thresholds", "0.999,0,0", "--out", str(tmp_path))
    free, infeasible = rows(tmp_path / "table12_lenet.csv")
    assert float(free["R"]) > 0 and free["plans meeting criteria"].split("/")[0] != "0"
    assert infeasible["best plan"] == "(none met the criteria)" and float(infeasible["R"]) == 0
    assert infeasible["plans meeting criteria"].startswith("0/")


def test_transfer_reports_every_seed_and_the_median(cache_root, tmp_path):
    run(cache_root, "transfer", "--budget", "4", "--target", "lenet", "--target-budget", "4",
        "--episode-evals", "2", "--seeds", "2", "--out", str(tmp_path))
    table = rows(tmp_path / "table9_lenet_to_lenet.csv")
    assert [(r["policy"], r["seed"]) for r in table] == [
        ("pre-trained", "1"), ("scratch", "1"), ("pre-trained", "2"), ("scratch", "2"),
        ("pre-trained", "median"), ("scratch", "median")]
    for r in table[:4]:
        a, p, s, best = (float(r[k]) for k in ("A", "P", "S", "best R"))
        # the row's metrics are the best plan's: R = min(A/A_base, 1) (1 - P) S (2 - S)
        assert 0 < best <= (1 - p) * s * (2 - s) + 1e-4 and a > 0
        assert 1 <= int(r["evals to 99% of best"]) <= 4
    for policy, median in zip(("pre-trained", "scratch"), table[4:], strict=True):
        bests = sorted(float(r["best R"]) for r in table[:4] if r["policy"] == policy)
        assert float(median["best R"]) == pytest.approx(sum(bests) / 2)


def test_fig4_keeps_the_rows_of_networks_it_did_not_measure(benchmark_module, tmp_path):
    """Re-measuring one network replaces its rows and keeps every other network's, in the
    file's order, with their types; a network new to the file goes last."""
    experiments = benchmark_module("paper_experiments")
    path = tmp_path / "fig4_position.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([["network", "position", "partition", "SSIM", "MSE", "A", "seconds"],
                                  ["lenet", "front", 1, 0.99, 0.001, 0.95, 1.0],
                                  ["alexnet", "front", 1, 0.5, 0.05, 0.9, 2.0],
                                  ["vgg11", "front", 2, 0.98, 0.002, 0.91, 3.0]])
    types = [str, str, int] + [float] * 4
    fresh = [["alexnet", "front", 1, 0.6, 0.04, 0.92, 5.0], ["resnet", "front", 3, 0.7, 0.03, 0.8, 6.0]]
    kept = experiments._kept_rows(path, ["alexnet", "resnet"], types, fresh)
    assert kept == [["lenet", "front", 1, 0.99, 0.001, 0.95, 1.0], fresh[0],
                    ["vgg11", "front", 2, 0.98, 0.002, 0.91, 3.0], fresh[1]]
    assert experiments._kept_rows(tmp_path / "absent.csv", ["alexnet"], types, fresh) == fresh
