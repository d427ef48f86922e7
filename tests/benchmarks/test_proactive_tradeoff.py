"""benchmarks/proactive_tradeoff.py: the lambda x feature-noise sweep (smoke fidelity, in process)."""

from __future__ import annotations

import csv

import pytest


def test_noise_sweep_runs_every_setting_at_every_noise_and_attacks_the_noisy_release(
        benchmark_module, cache_root, tmp_path):
    out = tmp_path / "tradeoff"
    benchmark_module("proactive_tradeoff").main([
        "--fidelity", "smoke", "--partitions", "3", "--lambdas", "4", "--noises", "0,1", "--reference-lambdas", "4",
        "--ref-epochs", "1", "--ref-prior-epochs", "0", "--cache", cache_root, "--out", str(out)])
    with open(out / "proactive_tradeoff.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    settings = [(r["threat"], r["adv_lambda"], float(r["feature_noise"])) for r in rows]
    assert settings == [("reactive", "", 0.0), ("reactive", "", 1.0), ("proactive", "4.0", 0.0),
                        ("proactive", "4.0", 1.0)]
    reactive = {float(r["feature_noise"]): r for r in rows if r["threat"] == "reactive"}
    # noise of one feature std on the release: the same retraining seed, a different measurement
    assert float(reactive[1.0]["ssim"]) != float(reactive[0.0]["ssim"])
    refs = [r["ref_ssim"] for r in rows if r["threat"] == "proactive"]
    assert all(refs) and refs[0] != refs[1]  # the reference attacked each noisy release on its own
    for name in ("proactive_tradeoff.md", "proactive_tradeoff.png", "proactive_grid.png"):
        assert (out / name).stat().st_size > 0
    assert "| 3 | proactive | 4.0 | 1 |" in (out / "proactive_tradeoff.md").read_text()


def test_negative_noise_is_refused(benchmark_module, tmp_path):
    with pytest.raises(SystemExit):
        benchmark_module("proactive_tradeoff").main(["--noises", "0,-0.5", "--out", str(tmp_path / "x")])


def test_the_reference_reads_whitened_features_too_when_the_attacker_does(benchmark_module, cache_root, tmp_path):
    """Under a whitening fidelity the reference attacks the same noisy release standardised and
    whitened (discounting the noise) and keeps the better: never weaker than the standardised
    reference alone, and it names the input that won; under ``both`` the fresh attacker's
    winning input is named too."""
    def ref(fidelity: str) -> dict:
        out = tmp_path / fidelity.replace(":", "_").replace("=", "_")
        benchmark_module("proactive_tradeoff").main([
            "--fidelity", fidelity, "--partitions", "3", "--lambdas", "4", "--noises", "0.5",
            "--reference-lambdas", "4", "--ref-epochs", "1", "--ref-prior-epochs", "0", "--cache", cache_root,
            "--out", str(out)])
        with open(out / "proactive_tradeoff.csv", newline="") as f:
            row = next(r for r in csv.DictReader(f) if r["threat"] == "proactive")
        return {**row, "md": (out / "proactive_tradeoff.md").read_text()}

    plain, white = ref("smoke"), ref("smoke:attack_input=whiten")
    assert plain["ref_input"] == "standardize" and white["ref_input"] in ("standardize", "whiten")
    assert plain["attack_input_won"] == white["attack_input_won"] == ""  # one input: nothing to name
    assert plain["accuracy"] == white["accuracy"]  # the same encoder
    assert float(white["ref_ssim"]) >= float(plain["ref_ssim"])
    assert (white["ref_input"] == "standardize") == (white["ref_ssim"] == plain["ref_ssim"])
    both = ref("smoke:attack_input=both")  # two attackers: the table names the input that won
    assert both["attack_input_won"] in ("standardize", "whiten")
    assert f"{both['attacker']} ({both['attack_input_won']})" in both["md"]
