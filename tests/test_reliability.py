"""Nothing lost, nothing silently wrong: races, locks, paths and bad inputs (issue 14).

Each bad input fails at construction with one line naming it; each concurrent use of one
cache folder or output folder either works or is refused in one line.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from privacysplit import Plan
from privacysplit._fsutil import FolderLock, atomic_write_text, safe_name
from privacysplit.cli import main
from privacysplit.envs.evaluator import Evaluator
from privacysplit.envs.privacy_split import PrivacySplitEnv
from privacysplit.envs.reward import Thresholds
from privacysplit.fidelity import FIDELITIES
from privacysplit.training import pretrained_base

SMOKE = FIDELITIES["smoke"]


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert text and "\n" not in text, text
    return text


# --------------------------------------------------------------------------- item 8: bad inputs


@pytest.mark.parametrize("seed", [None, "abc", 1.5, -1, 2**70, True, float("nan")])
def test_bad_seed_is_refused_at_construction(cache_root, seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 9223372036854775808\)") as err:
        Evaluator("lenet", fidelity="smoke", cache=False, seed=seed)
    assert repr(seed) in _one_line(err)


def test_numpy_integer_seed_is_accepted(cache_root):
    assert Evaluator("lenet", fidelity="smoke", cache=False, seed=np.int64(3)).seed == 3


@pytest.mark.parametrize("noise", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_feature_noise_is_refused(cache_root, noise):
    with pytest.raises(ValueError, match="feature_noise must be a finite number >= 0.0") as err:
        Evaluator("lenet", fidelity="smoke", cache=False, feature_noise=noise)
    _one_line(err)


@pytest.mark.parametrize(
    "thresholds",
    [("0.8", 0, 0), (math.nan, 0, 0), (1.5, 0, 0), (0, math.inf, 0), (0, 0, -0.1), (True, 0, 0), {"A": "x"}],
)
def test_bad_thresholds_are_refused(cache_root, thresholds):
    with pytest.raises(ValueError, match=r"threshold \w+ must be None or a number in \[0, 1\]") as err:
        Evaluator("lenet", fidelity="smoke", cache=False, thresholds=thresholds)
    _one_line(err)


def test_good_thresholds_become_floats():
    assert Thresholds.from_any((0.8, 0, None)) == Thresholds(0.8, 0.0, None)
    assert isinstance(Thresholds.from_any({"A": 1}).accuracy, float)


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"lr": 0}, "Fidelity.lr must be a finite number > 0"),
        ({"lr": math.nan}, "Fidelity.lr must be a finite number > 0"),
        ({"decoder_lr": -1e-3}, "Fidelity.decoder_lr must be a finite number > 0"),
        ({"base_lr": "fast"}, "Fidelity.base_lr must be a finite number > 0"),
        ({"distill_steps": 1.5}, "Fidelity.distill_steps must be a non-negative integer"),
        ({"distill_steps": -1}, "Fidelity.distill_steps must be a non-negative integer"),
        ({"adv_lambda": math.nan}, "Fidelity.adv_lambda must be a finite number >= 0"),
        ({"adv_lambda": -1.0}, "Fidelity.adv_lambda must be a finite number >= 0"),
        ({"n_ec": True}, "Fidelity.n_ec must be a non-negative integer"),
        ({"batch_size": True}, "Fidelity.batch_size must be a positive integer"),
        ({"n_train": False}, "Fidelity.n_train must be a positive integer or None"),
        ({"name": ""}, "Fidelity.name must be a non-empty string"),
    ],
)
def test_bad_fidelity_fields_are_refused(change, pattern):
    with pytest.raises(ValueError, match=pattern) as err:
        SMOKE.with_(**change)
    _one_line(err)


@pytest.mark.parametrize("max_invalid", [0, -3, 1.5, None, True])
def test_bad_max_invalid_is_refused(cache_root, max_invalid):
    with pytest.raises(ValueError, match="max_invalid must be an integer >= 1") as err:
        PrivacySplitEnv(fidelity="smoke", cache="off", max_invalid=max_invalid)
    _one_line(err)


@pytest.mark.parametrize("text", ["3 |", "3 | ", "| none", "³ | none", "3 | 0:W1 |"])
def test_malformed_plan_strings_are_refused(text):
    with pytest.raises(ValueError, match="cannot parse plan") as err:
        Plan.parse(text)
    _one_line(err)


def test_env_step_takes_integer_like_actions_and_refuses_others(cache_root):
    env = PrivacySplitEnv(fidelity="smoke", cache="off")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([3]))  # a one-element array, as vectorised policies give
    assert env.partition == 3 and not info["invalid_action"]
    env.reset(seed=0)
    env.step(np.int64(2))
    assert env.partition == 2
    for bad in (2.5, True, np.array([1, 2]), "3", np.array([1.0])):
        env.reset(seed=0)
        with pytest.raises(ValueError, match=r"action must be an integer in 0\.\.10") as err:
            env.step(bad)
        _one_line(err)


# --------------------------------------------------------------------------- paths


def test_safe_name_never_leaves_its_folder():
    for name in ("../../etc/passwd", "..", ".hidden", "a/b\\c", "", "ok-name_1.0+x"):
        cleaned = safe_name(name)
        assert "/" not in cleaned and "\\" not in cleaned and not cleaned.startswith(".")
        assert cleaned
    assert safe_name("ok-name_1.0+x") == "ok-name_1.0+x"


def test_a_fidelity_name_cannot_write_outside_the_cache(cache_root, tmp_path):
    evil = SMOKE.with_(name="../../escaped")
    cache = tmp_path / "deep" / "cache"
    pretrained_base("lenet", "mnist", fidelity=evil, cache=cache)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.parent == cache / "base" for p in written), written
    # base weights are named after the fields base training reads, never the fidelity's name
    assert any(p.name.startswith("lenet-mnist-fine-e2-n128-s0-") for p in written), written


def test_base_weights_go_beside_the_given_cache(cache_root, tmp_path):
    ev = Evaluator("lenet", fidelity="smoke", cache=str(tmp_path / "mine" / "evals.sqlite"))
    ev.base()
    assert [p.suffix for p in (tmp_path / "mine" / "base").iterdir() if p.suffix == ".pt"] == [".pt"]
    assert ev.worker_kwargs()["weights_cache"] == tmp_path / "mine" / "evals.sqlite"


def test_concurrent_atomic_writes_all_succeed(tmp_path):
    target = tmp_path / "f.txt"
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            for _ in range(20):
                atomic_write_text(target, f"writer {i}\n" * 1000)
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    lines = set(target.read_text().splitlines())
    assert len(lines) == 1 and lines.pop().startswith("writer ")  # whole, from one writer
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left


TRAIN = textwrap.dedent(
    """
    import sys
    from privacysplit.training import pretrained_base
    _, acc = pretrained_base("lenet", "mnist", fidelity="smoke", cache=sys.argv[1], progress=True)
    print("accuracy", acc)
    """
)


def test_two_processes_training_one_base_network_both_succeed(tmp_path):
    """Before: fixed '.tmp' names made one of them fail with FileNotFoundError (1 in 6)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-500:] for _, e in outs]
    accs = {line for out, _ in outs for line in out.splitlines() if line.startswith("accuracy")}
    assert len(accs) == 1  # both hold the same network
    trained = sum(out.count("training base") for out, _ in outs)
    assert trained == 1  # the second waited for the first instead of training again
    assert [p.suffix for p in (tmp_path / "base").iterdir()].count(".pt") == 1


def test_threads_sharing_a_cache_measure_each_plan_once(cache_root, tmp_path):
    """Two evaluators on one cache file (as two processes would be) split the work."""
    path = str(tmp_path / "shared.sqlite")
    plans = ["2 | 0:W1", "3 | none", "5 | 3:W1", "7 | none"]
    evaluators = [Evaluator("lenet", fidelity="smoke", cache=path) for _ in range(2)]
    for ev in evaluators:
        ev.base()
    results: list[list[dict]] = [[], []]

    def run(i: int) -> None:
        results[i] = evaluators[i].evaluate_many(plans if i == 0 else plans[::-1])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    measured = [info["plan"] for batch in results for info in batch if not info["cache_hit"]]
    assert sorted(measured) == sorted(plans)  # every plan measured exactly once
    assert {i["plan"]: i["reward"] for i in results[0]} == {i["plan"]: i["reward"] for i in results[1]}
    assert evaluators[0].cache.in_progress() == []


# --------------------------------------------------------------------------- the command line


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def _search_args(out: Path, *extra: str) -> list[str]:
    return ["search", "--fidelity", "smoke", "--agent", "random", "--budget", "1", "--no-progress",
            "--out", str(out), *extra]


def test_a_locked_out_folder_is_refused_in_one_line(cache_root, tmp_path, capsys):
    out = tmp_path / "run"
    with FolderLock(out):  # as a running search holds it
        code, err = _cli(capsys, *_search_args(out))
        assert code == 2 and err.count("\n") == 0
        assert f"output folder {out} is in use by pid {os.getpid()}" in err
        (out / "run.json").write_text('{"settings": {}}')
        code, err = _cli(capsys, *_search_args(out, "--resume"))  # a resume while it runs
        assert code == 2 and "is in use by pid" in err and err.count("\n") == 0
    assert (out / "run.json").read_text() == '{"settings": {}}'  # untouched


def test_a_lock_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from privacysplit._fsutil import FolderLock; "
         "lock = FolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=f"in use by pid {holder.pid}"):
            FolderLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait(30)
    FolderLock(tmp_path).acquire().release()  # SIGKILL left no stale lock


def test_out_or_cache_pointing_at_a_file_is_one_line(cache_root, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, err = _cli(capsys, *_search_args(a_file))
    assert code == 2 and err.count("\n") == 0 and f"{a_file} exists and is not a folder" in err
    code, err = _cli(capsys, "evaluate", "--fidelity", "smoke", "--plan", "2 | none", "--image", "off",
                     "--cache", str(a_file / "evals.sqlite"))
    assert code == 2 and err.count("\n") == 0 and f"{a_file} exists and is not a folder" in err
    monkeypatch.setenv("PRIVACYSPLIT_CACHE", str(a_file))
    code, err = _cli(capsys, "evaluate", "--fidelity", "smoke", "--plan", "2 | none", "--image", "off")
    assert code == 2 and err.count("\n") == 0 and f"{a_file} exists and is not a folder" in err
    code, err = _cli(capsys, "train-base", "--fidelity", "smoke")
    assert code == 2 and err.count("\n") == 0 and f"{a_file} exists and is not a folder" in err


def test_bad_numbers_on_the_command_line_are_one_line(cache_root, tmp_path, capsys):
    common = ["evaluate", "--fidelity", "smoke", "--plan", "2 | none", "--image", "off", "--cache", "off"]
    code, err = _cli(capsys, *common, "--seed", "-1")
    assert code == 2 and err.count("\n") == 0 and "seed must be an integer" in err
    code, err = _cli(capsys, *common, "--thresholds", "nan,0,0")
    assert code == 2 and err.count("\n") == 0 and "threshold accuracy must be None or a number in [0, 1]" in err
    code, err = _cli(capsys, "evaluate", "--fidelity", "smoke", "--plan", "3 |", "--image", "off", "--cache", "off")
    assert code == 2 and err.count("\n") == 0 and "cannot parse plan" in err


def test_budget_zero_writes_nothing(cache_root, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = _cli(capsys, "search", "--fidelity", "smoke", "--budget", "0", "--out", str(out))
    assert code == 2 and "--budget must be a positive integer" in err
    assert not out.exists()


def test_a_refused_run_does_not_keep_its_folder_locked(cache_root, tmp_path, capsys):
    from privacysplit.search_run import _LOCKS

    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"settings": {}}')
    code, err = _cli(capsys, *_search_args(out))  # a new search where one exists: refused
    assert code == 2 and "already holds a search" in err
    assert _LOCKS == {}
    FolderLock(out).acquire().release()  # free for the next process


def test_export_out_at_a_file_is_one_line(cache_root, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    code, err = _cli(capsys, "export", "--fidelity", "smoke", "--plan", "2 | none", "--cache", "off",
                     "--no-onnx", "--out", str(a_file))
    assert code == 2 and err.count("\n") == 0 and f"{a_file} exists and is not a folder" in err


def test_reconstruction_png_is_written_atomically(tmp_path):
    import torch

    from privacysplit.attacks.samples import encode_samples, save_png

    text = encode_samples(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for _ in range(10):
                save_png(text, tmp_path / "r.png")
        except BaseException as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=write) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and [p.name for p in tmp_path.iterdir()] == ["r.png"]
