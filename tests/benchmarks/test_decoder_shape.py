"""benchmarks/decoder_shape.py: the generic prior's shapes, trained as an evaluation trains them."""

from __future__ import annotations

import csv

import pytest


def test_shapes_parse_and_bad_ones_say_the_form(benchmark_module):
    parse = benchmark_module("decoder_shape").parse_shapes
    assert parse("48x2, 128X3,") == [(48, 2), (128, 3)]
    for bad, match in (("48", "WIDTHxDEPTH"), ("48x2x1", "WIDTHxDEPTH"), ("0x2", "positive"), ("", "no shape")):
        with pytest.raises(ValueError, match=match):
            parse(bad)


def test_each_shape_is_its_own_prior_with_a_score_and_a_cost(benchmark_module, tmp_path, cache_root):
    """One row per shape and upsampling; a deeper decoder has more parameters, and every prior
    reconstructs the base features better than the mean digit does (about 0.2 SSIM)."""
    module = benchmark_module("decoder_shape")
    out = tmp_path / "out"
    module.main(["--network", "lenet", "--fidelity", "smoke:prior_epochs=2", "--partitions", "5",
                 "--shapes", "8x1,8x3", "--upsample", "resize", "ladder", "--cache", str(cache_root), "--out", str(out)])
    with open(out / "decoder_shape.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["width"], r["depth"], r["upsample"]) for r in rows] == [
        ("8", "1", "resize"), ("8", "1", "ladder"), ("8", "3", "resize"), ("8", "3", "ladder")]
    assert int(rows[2]["parameters"]) > int(rows[0]["parameters"])
    assert rows[1]["parameters"] == rows[0]["parameters"]  # LeNet's 16x5x5: one rung (5 -> 8), the resize's layers
    assert all(float(r["score"]) > 0.3 and float(r["cpu_seconds_per_epoch"]) > 0 for r in rows)
    assert "| 5 | 16x5x5 |" in (out / "decoder_shape.md").read_text()
    with pytest.raises(SystemExit):
        module.main(["--shapes", "wide", "--out", str(tmp_path / "bad")])
