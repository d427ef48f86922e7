"""A search run with an output folder: what ``privacysplit search`` does.

The folder holds ``run.json`` (settings), ``history.csv``/``result.json`` (every evaluation),
``best_plan.txt``, ``report.md`` and TensorBoard logs under ``tb/``.

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
from pathlib import Path

from privacysplit.reporting import markdown_table

#: settings that must match for --resume to replay the same search
RUN_KEYS = ("base", "dataset", "fidelity", "threat", "privacy", "resource", "thresholds",
            "techniques", "partitions", "seed", "agent", "budget")


def run_search(args: argparse.Namespace, evaluator):
    from privacysplit.agents import make_agent
    from privacysplit.envs.privacy_split import PrivacySplitEnv

    agent = make_agent(args.agent, seed=args.seed)  # a bad name fails before the folder is touched
    out = Path(args.out)
    run_file = out / "run.json"
    settings = {k: getattr(args, k) for k in RUN_KEYS}
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
        raise ValueError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"settings": settings, "cache": str(evaluator.cache.path)}, indent=2))

    env = PrivacySplitEnv(evaluator=evaluator)
    checkpoint = out / "checkpoint.pt" if agent.checkpointable else None
    if checkpoint is not None and not args.resume:
        checkpoint.unlink(missing_ok=True)  # a leftover of a run whose run.json was removed
    try:
        result = agent.search(env, args.budget, max_seconds=args.max_seconds, log_dir=str(out / "tb"),
                              progress=not args.no_progress, checkpoint=checkpoint)
    finally:
        evaluator.close()
    if args.resume:
        restored = f"{agent.resumed_at} evaluations restored from {checkpoint}" if agent.resumed_at is not None \
            else "no checkpoint: replayed from the evaluation cache"
        print(f"resumed: {restored}; {result.cache_hits} evaluations answered by the cache")
    result.to_csv(out / "history.csv")
    result.to_json(out / "result.json")
    (out / "best_plan.txt").write_text(result.best_plan + "\n")
    write_report(out / "report.md", result, settings)
    return result


def write_report(path: Path, result, settings: dict) -> None:
    m = result.best_metrics
    top = sorted(result.history, key=lambda r: -float(r["reward"]))
    seen, rows = set(), []
    for r in top:
        if r["plan"] in seen:
            continue
        seen.add(r["plan"])
        rows.append([r["plan"], float(r["reward"]), r.get("accuracy"), r.get("privacy_loss"), r.get("resource")])
        if len(rows) == 10:
            break
    lines = [
        f"# Search: {settings['agent']} on {settings['base']}/{settings['dataset']}", "",
        f"Best plan `{result.best_plan}`: reward {result.best_reward:.4f}, accuracy {m.get('accuracy', float('nan')):.4f} "
        f"(base {m.get('accuracy_base', float('nan')):.4f}), privacy loss {m.get('privacy_loss', float('nan')):.4f}, "
        f"resource saving {m.get('resource', float('nan')):.4f}.", "",
        f"{result.evaluations} evaluations ({result.cache_hits} from the cache, {result.unique_plans} distinct plans) "
        f"in {result.seconds:.1f} s; stopped by {result.stop_reason or 'budget'}.", "",
        "## Top plans", "", markdown_table(["plan", "reward", "A", "P", "S"], rows),
        "## Settings", "", "```json", json.dumps(settings, indent=2), "```", "",
    ]
    path.write_text("\n".join(lines))
