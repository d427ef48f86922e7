"""Export reuses the weights a search kept for its best plan instead of retraining it."""

from __future__ import annotations

import json

import pytest
import torch

from privacysplit import cli
from privacysplit.envs.evaluator import Evaluator

SEARCH = ["--base", "lenet", "--fidelity", "smoke", "--partitions", "5,7", "--techniques", "W1,F1"]


@pytest.fixture
def searched(cache_root, tmp_path):
    """A finished smoke search (random, 4 plans) in ``tmp_path / 'run'``."""
    run = tmp_path / "run"
    assert cli.main(["search", *SEARCH, "--agent", "random", "--budget", "4", "--out", str(run), "--no-progress",
                     "--cache", str(tmp_path / "evals.sqlite")]) == 0
    return run


def test_export_of_the_searched_plan_does_not_retrain(searched, tmp_path, monkeypatch, capsys):
    kept = json.loads((searched / "best_weights.json").read_text())
    assert kept["plan"] == (searched / "best_plan.txt").read_text().strip()
    calls = []
    original = Evaluator.train_plan

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "train_plan", counting)
    out = tmp_path / "export"
    assert cli.main(["export", "--run", str(searched), "--out", str(out)]) == 0
    assert calls == []  # nothing was trained
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plan"] == kept["plan"] and "not retrained" in manifest["weights"]
    assert "not retrained" in capsys.readouterr().out
    assert "reconstruction" not in manifest["metrics"] and manifest["files"]["reconstruction_png"] == "reconstruction.png"
    assert (out / "reconstruction.png").read_bytes()[:4] == b"\x89PNG"
    assert manifest["input"]["steps"][0].startswith("a 28x28 grayscale digit")
    assert manifest["metrics"]["reward"] == pytest.approx(kept["reward"])

    # the kept weights are the ones the search trained: retraining with the same seed gives them back
    ev = Evaluator("lenet", fidelity="smoke", partitions=[5, 7], techniques=["W1", "F1"],
                   cache=str(tmp_path / "evals.sqlite"))
    encoder, cloud, _ = original(ev, kept["plan"])
    device = torch.jit.load(str(out / "device.pt"))
    cloud_ts = torch.jit.load(str(out / "cloud.pt"))
    x = ev.data.normalize(ev.data.test.x[:16])
    with torch.no_grad():
        assert torch.allclose(cloud_ts(device(x)), cloud.eval()(encoder.eval()(x)), atol=1e-5)


def test_export_of_another_plan_retrains_it(searched, tmp_path, monkeypatch):
    kept = json.loads((searched / "best_weights.json").read_text())
    other = "5 | none" if kept["plan"] != "5 | none" else "5 | 3:W1"
    calls = []
    original = Evaluator.train_plan

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Evaluator, "train_plan", counting)
    out = tmp_path / "export"
    assert cli.main(["export", "--run", str(searched), "--plan", other, "--out", str(out), "--no-onnx"]) == 0
    assert len(calls) == 1
    assert "retrained" in json.loads((out / "manifest.json").read_text())["weights"]


def test_export_prints_no_deprecation_warnings(searched, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-W", "default", "-m", "privacysplit.cli", "export", "--run", str(searched),
                           "--out", str(tmp_path / "export")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Deprecat" not in proc.stderr and "FutureWarning" not in proc.stderr, proc.stderr
