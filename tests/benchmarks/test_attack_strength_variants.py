"""benchmarks/attack_strength.py: the ``--variants`` re-attacks (smoke fidelity, in process)."""

from __future__ import annotations

import csv

import pytest

from privacysplit.data import load_dataset


def test_variant_specs_parse_and_typos_are_refused(benchmark_module):
    parse = benchmark_module("attack_strength").parse_variant
    assert parse("prior:n=all:e=3:ft=1:r=4:lr=2") == ("prior", {"n": None, "e": 3, "ft": 1, "r": 4, "lr": 2.0})
    assert parse("generic:n=500:b=32") == ("generic", {"n": 500, "b": 32})
    assert parse("prior:w=1") == ("prior", {"w": "whiten"}) and parse("generic:w=0") == ("generic", {"w": "standardize"})
    assert parse("prior:t=0") == ("prior", {"t": 0.0})
    assert parse("prior:d=mirror") == ("prior", {"d": "mirror"})
    with pytest.raises(ValueError, match="valid: prior, mirror, generic"):
        parse("priors:e=3")
    with pytest.raises(ValueError, match="valid keys: n, e, ft, r, b, lr, w, t, d"):
        parse("prior:epochs=3")
    with pytest.raises(ValueError, match="prior only"):
        parse("mirror:ft=1")
    with pytest.raises(ValueError, match="prior only"):
        parse("generic:t=0")
    with pytest.raises(ValueError, match="bad value"):
        parse("prior:e=three")
    with pytest.raises(ValueError, match="bad value"):
        parse("prior:w=yes")
    with pytest.raises(ValueError, match="bad value"):
        parse("prior:d=unet")
    with pytest.raises(ValueError, match="prior only"):
        parse("generic:d=mirror")


def test_a_bad_variant_is_a_usage_error_before_any_training(benchmark_module, tmp_path):
    with pytest.raises(SystemExit):
        benchmark_module("attack_strength").main(["--variants", "prior:x=1", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_variants_reattack_the_evaluations_encoder_and_the_bare_prior_repeats_its_attack(
        benchmark_module, cache_root, tmp_path):
    out = tmp_path / "strength"
    benchmark_module("attack_strength").main([
        "--networks", "lenet", "--partitions", "3", "--threats", "reactive", "--reference", "--no-legacy",
        "--fidelity", "smoke:prior_epochs=1:n_d=2", "--cache", cache_root, "--out", str(out),
        "--variants", "prior", "prior:n=all", "generic:e=1"])
    with open(out / "attack_strength.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    with open(out / "variants.csv", newline="") as f:
        variants = {r["variant"]: r for r in csv.DictReader(f)}
    assert list(variants) == ["prior", "prior:n=all", "generic:e=1"]
    # no options: the evaluation's own attack, on the same features, to the last digit
    assert float(variants["prior"]["ssim"]) == pytest.approx(float(row["ssim"]), abs=1e-12)
    assert variants["prior"]["images"] == "128"  # smoke's n_train
    assert variants["prior:n=all"]["images"] == str(len(load_dataset("mnist").train))
    assert float(variants["prior:n=all"]["ssim"]) != float(row["ssim"])
    assert variants["generic:e=1"]["attacker"] == "generic"
    md = (out / "variants.md").read_text()
    assert md.count("| lenet | 3 | reactive |") == 4  # the evaluation's own row, then the three variants


def test_a_whitening_fidelity_repeats_its_attack_and_its_reference_takes_the_better_input(
        benchmark_module, cache_root, tmp_path):
    """Under ``attack_input=whiten`` the bare ``prior`` variant repeats the evaluation's
    (whitened) attack, ``prior:w=0`` is the standardised one on the same features, and the
    reference runs on both inputs and reports the one that leaked more."""
    out = tmp_path / "white"
    benchmark_module("attack_strength").main([
        "--networks", "lenet", "--partitions", "3", "--threats", "reactive", "--reference", "reactive", "--no-legacy",
        "--fidelity", "smoke:prior_epochs=1:n_d=2:attack_input=whiten", "--ref-epochs", "1",
        "--ref-prior-epochs", "1", "--cache", cache_root, "--out", str(out), "--variants", "prior", "prior:w=0"])
    with open(out / "attack_strength.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    with open(out / "variants.csv", newline="") as f:
        variants = {r["variant"]: r for r in csv.DictReader(f)}
    assert float(variants["prior"]["ssim"]) == pytest.approx(float(row["ssim"]), abs=1e-12)
    assert float(variants["prior:w=0"]["ssim"]) != float(row["ssim"])
    assert row["ref_input"] in ("standardize", "whiten")
