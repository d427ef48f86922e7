"""The command line, run as a user would: in a subprocess, at smoke fidelity."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch


def run(*args: str, cache: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PRIVACYSPLIT_CACHE": cache, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "privacysplit.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_on_every_verb(cache_root):
    for verb in ("search", "evaluate", "export", "models", "techniques", "train-base"):
        out = run(verb, "--help", cache=cache_root).stdout
        assert "usage: privacysplit " + verb in out


def test_models_lists_all_networks_with_counts(cache_root):
    out = run("models", cache=cache_root).stdout
    assert "| lenet | 11 | 62,006 | 651,720 |" in out and "inception_v3" in out and "fcn" in out


def test_techniques_shows_each_technique(cache_root):
    out = run("techniques", "--base", "lenet", "--partition", "7", cache=cache_root).stdout
    for name in ("none", "F1", "F2", "C1", "C2", "C3", "W1", "W2"):
        assert f"| {name} |" in out


def test_train_base_reports_accuracy_and_search_writes_its_folder(cache_root, tmp_path):
    import re

    out = run("train-base", "--base", "lenet", "--fidelity", "smoke", cache=cache_root).stdout
    acc = float(re.search(r"validation accuracy ([0-9.]+)", out).group(1))
    assert 0.2 < acc <= 1.0  # 10 classes (chance 0.1); smoke trains on 128 images only
    folder = tmp_path / "run"
    out = run("search", "--base", "lenet", "--fidelity", "smoke", "--agent", "random", "--budget", "3", "--partitions", "5",
              "--techniques", "W1", "--out", str(folder), "--no-progress", cache=cache_root).stdout
    result = json.loads((folder / "result.json").read_text())
    assert result["best_plan"] in out and len(result["history"]) == 3
    for name in ("run.json", "history.csv", "best_plan.txt", "report.md"):
        assert (folder / name).stat().st_size > 0, name
    assert any((folder / "tb").glob("events.out.tfevents.*"))


def test_evaluate_json_has_the_terminal_info_keys(cache_root):
    out = run("evaluate", "--base", "lenet", "--fidelity", "smoke", "--plan", "5 | 0:W1 3:C3", "--json", cache=cache_root).stdout
    info = json.loads(out)
    assert info["plan"] == "5 | 0:W1 3:C3" and 0 <= info["reward"] <= 1
    for key in ("accuracy", "accuracy_base", "privacy_loss", "resource", "S1", "S2", "S3", "R_A", "R_P", "R_S", "cache_hit", "eval_seconds", "fidelity"):
        assert key in info


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("evaluate", "--base", "vgg19", "--plan", "1 | none"), "valid networks"),
        (("evaluate", "--base", "lenet", "--plan", "3 | 5:W1"), "cloud side"),
        (("evaluate", "--base", "lenet", "--plan", "5 | 1:W1", "--fidelity", "smoke"), "valid choices there: none"),
        (("search", "--agent", "genius", "--fidelity", "smoke", "--budget", "2", "--out", "{tmp}/run"), "valid agents"),
    ],
)
def test_user_mistakes_are_one_line_errors(cache_root, tmp_path, args, match):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    proc = run(*args, "--cache", str(tmp_path / "c.sqlite"), cache=cache_root, check=False)
    assert proc.returncode == 2
    assert not (tmp_path / "run").exists()
    assert match in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_export_round_trip_equals_in_memory_model(cache_root, tmp_path):
    out = tmp_path / "export"
    run("export", "--base", "lenet", "--fidelity", "smoke", "--plan", "7 | 3:W2 6:F1", "--out", str(out), cache=cache_root)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plan"] == "7 | 3:W2 6:F1" and manifest["features"]["shape"] == [120]
    assert manifest["onnx"] == "exported" and {"device_onnx", "cloud_onnx"} <= set(manifest["files"])
    from privacysplit.data import load_dataset
    from privacysplit.envs.evaluator import Evaluator

    device = torch.jit.load(str(out / "device.pt"))
    cloud = torch.jit.load(str(out / "cloud.pt"))
    data = load_dataset("mnist")
    x = data.normalize(data.test.x[:16])
    ev = Evaluator("lenet", fidelity="smoke", cache=False)
    encoder, cloud_mem, _ = ev.train_plan("7 | 3:W2 6:F1")
    encoder.eval()
    cloud_mem.eval()
    with torch.no_grad():
        expected = cloud_mem(encoder(x))
        assert torch.allclose(cloud(device(x)), expected, atol=1e-5)

    import onnxruntime as ort  # the ONNX parts, run outside torch, chain to the same output

    device_onnx = ort.InferenceSession(str(out / "device.onnx"), providers=["CPUExecutionProvider"])
    cloud_onnx = ort.InferenceSession(str(out / "cloud.onnx"), providers=["CPUExecutionProvider"])
    feats = device_onnx.run(None, {"input": x.numpy()})[0]
    assert list(feats.shape[1:]) == manifest["features"]["shape"]
    logits = cloud_onnx.run(None, {"input": feats})[0]
    assert np.allclose(logits, expected.numpy(), atol=1e-4)
