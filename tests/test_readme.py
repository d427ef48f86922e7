"""The README runs as written: every ```python block, and the cheap ```console commands.

Blocks run in order in one namespace (a later block may use the ``env`` of an earlier one),
at ``smoke`` fidelity: every :class:`~privacysplit.envs.evaluator.Evaluator` built while they
run gets ``fidelity="smoke"`` whatever the block asks for, so the whole README costs seconds
instead of the minutes its ``cpu`` defaults take.  Any block added to the README is picked up
here without a change to this file.  Console commands that search or train are skipped by
name (``tests/test_cli.py`` runs those verbs at smoke fidelity).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block of ``language``."""
    return [(README[: m.start()].count("\n") + 2, m.group(1))
            for m in re.finditer(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)]


PYTHON = blocks("python")
COMMANDS = [line[2:].split("  #")[0].strip() for _, code in blocks("console")
            for line in code.splitlines() if line.startswith("$ privacysplit")]
#: console commands cheap enough to run here; the rest train networks
CHEAP = {"privacysplit --help", "privacysplit models", "privacysplit techniques"}


@pytest.fixture
def smoke_everywhere(monkeypatch, tmp_path):
    """Run in an empty folder with a private cache, every evaluator at smoke fidelity."""
    from privacysplit.envs import evaluator

    original = evaluator.Evaluator.__init__

    def smoke_init(self, *args, **kwargs):
        kwargs["fidelity"] = "smoke"
        original(self, *args, **kwargs)

    monkeypatch.setattr(evaluator.Evaluator, "__init__", smoke_init)
    monkeypatch.setenv("PRIVACYSPLIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_python_blocks():
    assert len(PYTHON) >= 5, "the README's python examples were not found"


def test_every_python_block_runs(smoke_everywhere):
    namespace: dict = {"__name__": "__readme__"}
    for line, code in PYTHON:
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)  # noqa: S102 - the README is ours
        except Exception as err:  # noqa: BLE001 - name the block that failed
            raise AssertionError(f"README.md block at line {line} failed: {type(err).__name__}: {err}") from err
    # what the blocks promise
    assert Path("runs/local/history.csv").exists() and Path("runs/bilstm/history.csv").exists()
    assert any(Path("runs/sb3/sb3").glob("events.out.tfevents.*")), "SB3's own metrics are in the search's folder"


@pytest.mark.parametrize("command", COMMANDS)
def test_console_command(command, tmp_path):
    if command not in CHEAP:
        pytest.skip("trains networks or searches: the verb runs at smoke fidelity in tests/test_cli.py")
    args = shlex.split(command)[1:]
    proc = subprocess.run([sys.executable, "-m", "privacysplit.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def test_cheap_commands_are_in_the_readme():
    assert set(COMMANDS) >= CHEAP


def test_quick_start_command_is_the_makefile_one():
    makefile = (ROOT / "Makefile").read_text()
    flags = re.search(r"^QUICKSTART = (.*)$", makefile, flags=re.M).group(1).split()
    quoted = re.search(r"privacysplit search (--base lenet --agent bilstm[^`]*?)--out runs/quickstart", README, flags=re.S)
    assert quoted is not None and quoted.group(1).replace("\\", " ").split() == flags


def test_every_terminal_info_key_is_documented(tmp_path):
    """Each key of a terminal info (reactive SSIM, MSE, property) is named in the README and
    in the env docstring."""
    import gymnasium as gym

    import privacysplit  # noqa: F401
    from privacysplit.envs.privacy_split import PrivacySplitEnv

    keys: set[str] = set()
    for privacy in ("ssim", "mse", "property"):
        env = gym.make("PrivacySplit-v0", base="lenet", fidelity="smoke", privacy=privacy, partitions=[5],
                       techniques=["W1"], cache=str(tmp_path / "evals.sqlite"))
        env.reset(seed=0)
        done = False
        while not done:
            _, _, done, _, info = env.step(int(env.unwrapped.action_masks().argmax()))
        keys |= set(info)
    documented = {re.sub(r"^score_.*", "score_<decoder>", k) for k in keys}
    doc = PrivacySplitEnv.__doc__
    missing_readme = sorted(k for k in documented if f"`{k}`" not in README)
    missing_doc = sorted(k for k in documented if f"``{k}``" not in doc)
    assert not missing_readme, f"terminal info keys missing from the README: {missing_readme}"
    assert not missing_doc, f"terminal info keys missing from the env docstring: {missing_doc}"


#: what the README's TensorBoard paragraph promises each searcher logs (besides search/*)
LOSS_TAGS = {
    "bilstm": {"losses/policy", "losses/partition", "losses/compression", "losses/entropy_partition",
               "losses/entropy_compression"},
    "maskable_ppo": {"losses/policy", "losses/value_loss", "losses/entropy_loss"},
    "random": set(),
    "evolution": set(),
}
SEARCH_TAGS = {"search/reward", "search/accuracy", "search/privacy_loss", "search/resource", "search/best_reward",
               "search/cache_hit"}


@pytest.mark.parametrize("agent", sorted(LOSS_TAGS))
def test_searchers_log_the_tags_the_readme_names(agent, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from privacysplit.agents import make_agent, table_env

    for tag in SEARCH_TAGS | LOSS_TAGS[agent]:
        assert f"`{tag}`" in README, tag
    env = table_env("lenet", techniques=["W1", "F1"], partitions=[5, 7, 9])
    options = {"rollout_episodes": 2, "batch_episodes": 1} if agent == "maskable_ppo" else {}
    make_agent(agent, seed=0, **options).search(env, 12, log_dir=str(tmp_path), progress=False)
    tags = set()
    for event in tmp_path.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert SEARCH_TAGS | LOSS_TAGS[agent] <= tags, sorted(tags)
    assert not {t for t in tags if t.startswith("losses/")} - LOSS_TAGS[agent], "a loss tag the README does not name"
