"""A search run with an output folder: what ``privacysplit search`` does.

The folder holds ``run.json`` (settings), ``history.csv``/``result.json`` (every evaluation),
``best_plan.txt``, ``report.md``, ``best_reward.png``/``tradeoff.png``, TensorBoard logs under
``tb/``, and ``best_weights.pt`` (with ``best_weights.json`` and ``best_reconstruction.png``):
the trained encoder and cloud of the best plan the search measured, so that
``privacysplit export --run FOLDER`` writes it without retraining.

Only the best plan's weights are kept: every measured plan's weights land in a staging
folder (``Evaluator(keep_weights=...)``, written by whichever process measured it) and are
moved to ``best_weights.pt`` when the plan beats the best so far, or deleted otherwise.  A
plan answered by the evaluation cache was trained by an earlier run and has no weights
here; exporting it retrains it (same seed, same numbers).

Resume has two layers.  Searchers that can checkpoint (``bilstm``: both policies, both Adam
optimizers, the baseline, the sampler's RNG and the memory pool) write ``checkpoint.pt``
after every episode, together with the history so far; ``--resume`` loads it and goes on from
that episode.  Every finished evaluation is also in the SQLite cache the moment it finishes,
and every searcher is deterministic given its seed and the rewards it sees, so the
evaluations between the last checkpoint and the kill — and the whole search for searchers
without checkpoints (SB3's rollout buffers and Optuna's sampler are not worth pickling) —
are replayed: they come back from the cache in microseconds (``cache_hit`` in the history
says which), the first unfinished one is computed, and the final result equals that of an
uninterrupted run.  A folder is never silently overwritten: starting a new search in a folder
that holds one is an error, and resuming with different settings names the difference.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from privacysplit._fsutil import FolderLock
from privacysplit.reporting import markdown_table

#: settings that must match for --resume to replay the same search
RUN_KEYS = ("base", "dataset", "fidelity", "threat", "privacy", "resource", "thresholds",
            "techniques", "partitions", "seed", "agent", "budget")

#: the best plan's trained weights and their description, in the run folder
WEIGHTS_FILE = "best_weights.pt"
WEIGHTS_INFO = "best_weights.json"
RECONSTRUCTION_FILE = "best_reconstruction.png"
_STAGING = ".weights-staging"


def _settings(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in RUN_KEYS}


#: output folders this process holds the lock of (see :func:`lock_out`)
_LOCKS: dict[Path, FolderLock] = {}


def lock_out(out: str | Path) -> None:
    """Hold the lock of the output folder ``out`` (created if needed) for this process.

    A second search or ``--resume`` on a folder another live process holds is refused with
    one line; the kernel drops the lock when the holder dies, so a killed search can be
    resumed at once.  Taking it again in the holding process is a no-op.
    """
    key = Path(out).absolute()
    if key not in _LOCKS:
        _LOCKS[key] = FolderLock(out, "output folder").acquire()


def unlock_out(out: str | Path) -> None:
    """Release the lock :func:`lock_out` took on ``out`` (no-op if not held)."""
    lock = _LOCKS.pop(Path(out).absolute(), None)
    if lock is not None:
        lock.release()


def prepare_run(args: argparse.Namespace) -> None:
    """Lock and check the output folder before anything is trained.

    Raises:
        FileNotFoundError: ``--resume`` without a previous search in ``--out``.
        ValueError: a new search in a folder that holds one, ``--resume`` with other
            settings than the recorded ones (naming each difference), a folder another
            search is using, or an ``--out`` that cannot be a folder.
    """
    out = Path(args.out)
    run_file = out / "run.json"
    settings = _settings(args)
    if args.resume and not run_file.exists():
        raise FileNotFoundError(f"nothing to resume: {run_file} does not exist (run without --resume first)")
    lock_out(out)
    try:
        _check_run_file(args, run_file, settings)
    except BaseException:
        unlock_out(out)  # a refused run holds nothing
        raise


def _check_run_file(args: argparse.Namespace, run_file: Path, settings: dict) -> None:
    if args.resume:
        if not run_file.exists():
            raise FileNotFoundError(f"nothing to resume: {run_file} does not exist (run without --resume first)")
        try:
            recorded = json.loads(run_file.read_text())["settings"]
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{run_file} is corrupted ({err}); move the folder away and start again") from err
        diff = [f"{k}: {recorded.get(k)!r} -> {settings[k]!r}" for k in RUN_KEYS if recorded.get(k) != settings[k]]
        if diff:
            raise ValueError(f"--resume with different settings than {run_file}: {'; '.join(diff)}")
    elif run_file.exists():
        raise ValueError(f"{run_file.parent} already holds a search; pass --resume to continue it or choose another --out")


class KeepBestWeights:
    """The evaluator, seen through a filter that keeps the best measured plan's weights.

    Everything is delegated to the wrapped :class:`~privacysplit.envs.evaluator.Evaluator`;
    after each ``evaluate_many`` the staged weights of the plans it measured are moved to
    ``best_weights.pt`` (a new best) or deleted.
    """

    def __init__(self, evaluator, out: Path) -> None:
        self.__dict__["_ev"] = evaluator
        self.__dict__["_out"] = out
        self.__dict__["_staging"] = out / _STAGING
        info = out / WEIGHTS_INFO
        best = json.loads(info.read_text())["reward"] if info.exists() else -math.inf
        self.__dict__["_best"] = float(best)
        evaluator.keep_weights = self._staging

    def __getattr__(self, name: str):
        return getattr(self._ev, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._ev, name, value)

    def evaluate(self, plan) -> dict:
        return self.evaluate_many([plan])[0]

    def evaluate_many(self, plans) -> list[dict]:
        from privacysplit.envs.evaluator import weights_file_name

        infos = self._ev.evaluate_many(plans)
        for info in infos:
            staged = self._staging / weights_file_name(info["plan"])
            if not staged.exists():
                continue  # a cache hit, or already handled (the plan repeats in the batch)
            reward = float(info["reward"])
            if reward > self._best and not info.get("error"):
                staged.replace(self._out / WEIGHTS_FILE)
                (self._out / WEIGHTS_INFO).write_text(json.dumps(
                    {"plan": info["plan"], "reward": reward, "key": self._ev.key(info["plan"]),
                     "note": "state_dicts of the encoder and cloud trained when the search measured this plan",
                     "metrics": {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))
                                 and k not in ("reconstruction", "traceback")}},
                    indent=2))
                self.__dict__["_best"] = reward
                if info.get("reconstruction"):
                    from privacysplit.attacks.samples import save_png

                    save_png(info["reconstruction"], self._out / RECONSTRUCTION_FILE)
            else:
                staged.unlink(missing_ok=True)
        return infos

    def finish(self) -> None:
        """Stop staging and remove the staging folder."""
        self._ev.keep_weights = None
        shutil.rmtree(self._staging, ignore_errors=True)


def run_search(args: argparse.Namespace, evaluator):
    """Run ``args.agent`` on ``evaluator`` and write every output into ``args.out``.

    The folder is locked (:func:`lock_out`) from :func:`prepare_run` until this returns.
    """
    try:
        return _run_search(args, evaluator)
    finally:
        unlock_out(args.out)


def _run_search(args: argparse.Namespace, evaluator):
    from privacysplit.agents import make_agent
    from privacysplit.envs.privacy_split import PrivacySplitEnv

    agent = make_agent(args.agent, seed=args.seed)  # a bad name fails before the folder is touched
    prepare_run(args)
    out = Path(args.out)
    settings = _settings(args)
    out.mkdir(parents=True, exist_ok=True)
    cache = None if evaluator.cache.path is None else str(evaluator.cache.path)
    (out / "run.json").write_text(json.dumps({"settings": settings, "cache": cache,
                                              "data_root": args.data_root, "profile": args.profile,
                                              "weights": getattr(args, "weights", None)}, indent=2))
    if not args.resume:
        for name in (WEIGHTS_FILE, WEIGHTS_INFO, RECONSTRUCTION_FILE):
            (out / name).unlink(missing_ok=True)
    keeper = KeepBestWeights(evaluator, out)
    env = PrivacySplitEnv(evaluator=keeper)
    checkpoint = out / "checkpoint.pt" if agent.checkpointable else None
    if checkpoint is not None and not args.resume:
        checkpoint.unlink(missing_ok=True)  # a leftover of a run whose run.json was removed
    try:
        result = agent.search(env, args.budget, max_seconds=args.max_seconds, log_dir=str(out / "tb"),
                              progress=not args.no_progress, checkpoint=checkpoint)
    finally:
        keeper.finish()
        evaluator.close()
    if args.resume:
        restored = f"{agent.resumed_at} evaluations restored from {checkpoint}" if agent.resumed_at is not None \
            else "no checkpoint: replayed from the evaluation cache"
        print(f"resumed: {restored}; {result.cache_hits} evaluations answered by the cache")
    result.to_csv(out / "history.csv")
    result.to_json(out / "result.json")
    (out / "best_plan.txt").write_text(result.best_plan + "\n")
    write_plots(out, result)
    write_report(out / "report.md", result, settings)
    return result


def top_plans(result, n: int) -> list[list]:
    """The ``n`` best distinct plans: plan, R, A, P, S."""
    seen, rows = set(), []
    for r in sorted(result.history, key=lambda r: -float(r["reward"])):
        if r["plan"] in seen:
            continue
        seen.add(r["plan"])
        rows.append([r["plan"], float(r["reward"]), r.get("accuracy"), r.get("privacy_loss"), r.get("resource")])
        if len(rows) == n:
            break
    return rows


def write_plots(out: Path, result) -> None:
    """``best_reward.png`` (best reward so far against evaluations) and ``tradeoff.png``."""
    from privacysplit import reporting

    rewards = [float(r["reward"]) for r in result.history]
    if not rewards:
        return
    title = f"{result.agent}: {len(rewards)} evaluations"
    reporting.plot_curves({result.agent or "search": [reporting.best_so_far(rewards)]}, out / "best_reward.png", title)
    reporting.plot_tradeoff(result.history, out / "tradeoff.png", title)


def write_report(path: Path, result, settings: dict) -> None:
    m = result.best_metrics
    lines = [
        f"# Search: {settings['agent']} on {settings['base']}/{settings['dataset']} ({settings['fidelity']} fidelity)", "",
        f"Best plan `{result.best_plan}`: reward {result.best_reward:.4f}, accuracy {m.get('accuracy', float('nan')):.4f} "
        f"(base {m.get('accuracy_base', float('nan')):.4f}), privacy loss {m.get('privacy_loss', float('nan')):.4f}, "
        f"resource saving {m.get('resource', float('nan')):.4f}.", "",
        f"{result.evaluations} evaluations ({result.cache_hits} from the cache, {result.unique_plans} distinct plans) "
        f"in {result.seconds:.1f} s; stopped by {result.stop_reason or 'budget'}.", "",
        "## Top plans", "", markdown_table(["plan", "reward", "A", "P", "S"], top_plans(result, 10)),
        "![best reward so far](best_reward.png)", "", "![accuracy against privacy loss](tradeoff.png)", "",
        "## Settings", "", "```json", json.dumps(settings, indent=2), "```", "",
    ]
    path.write_text("\n".join(lines))


def summary_text(args: argparse.Namespace, result) -> str:
    """What the terminal shows after a search: best plan, top five, cost, where things are."""
    m = result.best_metrics
    out = Path(args.out)

    def f(key: str) -> str:
        v = m.get(key)
        return f"{float(v):.4f}" if isinstance(v, (int, float)) else "nan"

    rows = top_plans(result, 5)
    width = max([len(r[0]) for r in rows] + [4])
    table = [f"  {'plan':<{width}}  {'R':>6}  {'A':>6}  {'P':>6}  {'S':>6}"]
    table += [f"  {r[0]:<{width}}  " + "  ".join(f"{float(v):6.4f}" for v in r[1:]) for r in rows]
    kept = (out / WEIGHTS_FILE).exists() and json.loads((out / WEIGHTS_INFO).read_text())["plan"] == result.best_plan
    files = [
        ("history.csv", "every evaluation (plan, R, A, P, S, cache hit, time)"),
        ("report.md", "top 10 plans, settings and the plots"),
        ("best_reward.png", "best reward against evaluations"),
        ("tradeoff.png", "accuracy against privacy loss of every plan"),
    ]
    if kept:
        files.append((WEIGHTS_FILE, "the best plan's trained encoder and cloud"))
        if (out / RECONSTRUCTION_FILE).exists():
            files.append((RECONSTRUCTION_FILE, "what the attacker rebuilds from its features (originals on top)"))
    files.append(("tb/", f"TensorBoard: tensorboard --logdir {out}"))
    lines = [
        "",
        f"Best plan  {result.best_plan}",
        f"  R {result.best_reward:.4f} = A {f('accuracy')} (A_base {f('accuracy_base')}), "
        f"privacy loss P {f('privacy_loss')}, resource saving S {f('resource')}",
        f"Top {len(rows)} plans:",
        *table,
        f"{result.evaluations} evaluations ({result.cache_hits} from the cache, {result.unique_plans} distinct plans) "
        f"in {result.seconds:.0f} s at {args.fidelity} fidelity; stopped by {result.stop_reason or 'budget'}.",
        f"Written to {out}/:",
        *[f"  {name:<24} {what}" for name, what in files],
        "Export the best plan" + (" (its kept weights, no retraining):" if kept else " (retrains it):"),
        f"  privacysplit export --run {out} --out {out / 'export'}",
    ]
    return "\n".join(lines)


def print_summary(args: argparse.Namespace, result) -> None:
    print(summary_text(args, result))
