"""privacysplit.reporting: the benchmarks' output folder (fresh under runs/ unless asked)."""

from __future__ import annotations

import argparse
import re
import time

import pytest

from privacysplit.reporting import add_output_arguments, resolve_output


def _parser(root, **kw) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench")
    add_output_arguments(parser, "bench", "benchmarks/results/bench", root, **kw)
    return parser


def _resolve(root, argv, **kw):
    parser = _parser(root, **kw)
    args = parser.parse_args(argv)
    return resolve_output(parser, args, now=time.mktime((2026, 11, 29, 20, 5, 9, 0, 0, -1))), args


def test_default_is_a_new_timestamped_folder_under_runs(tmp_path):
    out, args = _resolve(tmp_path, [])
    assert out == tmp_path / "runs" / "bench-20261129-200509" and args.out == str(out)
    assert re.fullmatch(r"bench-\d{8}-\d{6}", out.name)
    assert not out.exists()  # resolving creates nothing
    out.mkdir(parents=True)
    again, _ = _resolve(tmp_path, [])
    assert again == tmp_path / "runs" / "bench-20261129-200509-2"  # never an existing folder


def test_update_results_is_the_committed_folder(tmp_path):
    out, args = _resolve(tmp_path, ["--update-results"])
    assert out == tmp_path / "benchmarks" / "results" / "bench" and args.out == str(out)
    alias, _ = _resolve(tmp_path, ["--update-figures"], aliases=["--update-figures"])
    assert alias == out


def test_out_as_given(tmp_path):
    out, args = _resolve(tmp_path, ["--out", "somewhere/else"])
    assert str(out) == "somewhere/else" == args.out


def test_out_and_update_results_together_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        _resolve(tmp_path, ["--update-results", "--out", "x"])
    assert err.value.code == 2
    assert "drop --out" in capsys.readouterr().err


def test_help_names_both_folders(tmp_path):
    text = _parser(tmp_path).format_help()
    assert "runs/bench-<time>" in text and "benchmarks/results/bench" in text
