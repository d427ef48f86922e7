"""Searchers on a measured reward table: true optimum and median regret at small budgets.

Step 1 measures every plan of a small lenet/mnist space once (through the evaluator's
``evaluate_many`` and its SQLite cache) and stores the table as CSV; a rerun reads the CSV.
Step 2 runs each searcher over seeds on the real ``PrivacySplitEnv`` driven by that table
(``TableEvaluator``), so a whole comparison costs seconds and the true optimum is known.
Regret = optimum - best reward found within the budget.  Writes ``table.csv``,
``summary.json`` and ``summary.md`` to ``--out``.

    python benchmarks/reward_table.py --fidelity smoke --seeds 10          # ~2-3 min
    python benchmarks/reward_table.py --fidelity cpu --seeds 10            # measured once, longer

``--synthetic`` skips step 1 and uses the synthetic table instead (no training).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", default="lenet", help="base network")
    p.add_argument("--dataset", default="mnist", help="dataset name")
    p.add_argument("--fidelity", default="smoke", help="smoke, cpu or paper")
    p.add_argument("--privacy", default="ssim", help="mse, ssim or property")
    p.add_argument("--resource", default="params", help="params, macs or latency")
    p.add_argument("--techniques", default="W1,W2,C1,F1", help="comma-separated technique subset")
    p.add_argument("--partitions", default="2,5,7,9", help="comma-separated allowed partitions")
    p.add_argument("--searchers", default="random,bilstm,maskable_ppo,ppo,evolution,tpe", help="comma-separated agents")
    p.add_argument("--seeds", type=int, default=10, help="seeds per searcher")
    p.add_argument("--budgets", default="10,25,50", help="comma-separated budgets (the largest is each run's budget)")
    p.add_argument("--workers", type=int, default=1, help="process-pool workers that measure the table")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic table (no training)")
    p.add_argument("--out", default="benchmarks/results/reward_table", help="output folder")
    return p.parse_args(argv)


def table_path(args, evaluator, out: Path) -> Path:
    """Where the measured table of these settings lives: the name carries a hash of the
    evaluator's recorded configuration and the space, so a table measured at another
    fidelity, metric or space is never read back for this one."""
    space = evaluator.space
    identity = json.dumps([evaluator.config(), list(space.techniques), list(space.partitions)], sort_keys=True, default=str)
    tag = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return out / f"table_{args.base}_{args.dataset}_{args.fidelity}_{tag}.csv"


def load_table(args, out: Path):
    """The measured table: read from ``out/table.csv`` or measured now."""
    from privacysplit.agents.table import TableEvaluator
    from privacysplit.envs.evaluator import Evaluator

    techniques = args.techniques.split(",")
    partitions = [int(p) for p in args.partitions.split(",")]
    evaluator = Evaluator(args.base, args.dataset, fidelity=args.fidelity, privacy=args.privacy,
                          resource=args.resource, techniques=techniques, partitions=partitions,
                          cache=str(out / "evals.sqlite"), executor="process" if args.workers > 1 else "inprocess",
                          workers=args.workers)
    if args.synthetic:
        return TableEvaluator.synthetic(evaluator.space)
    path = table_path(args, evaluator, out)
    if path.exists():
        table = TableEvaluator.from_csv(path, evaluator.space)
        if len(table) == evaluator.space.count():
            return table
    table = TableEvaluator.from_evaluator(evaluator, progress=True)
    table.to_csv(path)
    return table


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)
    from privacysplit.agents import make_agent
    from privacysplit.agents.table import TableEvaluator, table_env

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = load_table(args, out)
    measure_seconds = time.perf_counter() - t0
    best_plan, optimum = table.optimum()
    budgets = sorted(int(b) for b in args.budgets.split(","))
    summary: dict = {"settings": vars(args), "plans": len(table), "optimum": optimum, "optimum_plan": best_plan,
                     "median_plan_reward": table.quantile(0.5), "table_seconds": measure_seconds, "searchers": {}}
    for name in args.searchers.split(","):
        regrets = {b: [] for b in budgets}
        t1 = time.perf_counter()
        for seed in range(args.seeds):
            env = table_env(args.base, table=TableEvaluator(table.space, table.rows, name=table.name))
            result = make_agent(name, seed=seed).search(env, budgets[-1], progress=False)
            for b in budgets:
                regrets[b].append(optimum - result.best_at(b))
        summary["searchers"][name] = {
            "median_regret": {str(b): float(np.median(r)) for b, r in regrets.items()},
            "found_optimum": {str(b): int(sum(x <= 1e-12 for x in r)) for b, r in regrets.items()},
            "seconds": time.perf_counter() - t1,
        }
        cells = "  ".join(f"@{b}: {np.median(r):.4f} ({sum(x <= 1e-12 for x in r)}/{args.seeds})" for b, r in regrets.items())
        print(f"{name:13s} median regret {cells}", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    header = "| searcher | " + " | ".join(f"regret@{b} (optimum found)" for b in budgets) + " |"
    lines = [f"# Searchers on a {'synthetic' if args.synthetic else 'measured'} reward table: {args.base}/{args.dataset}, "
             f"{args.fidelity} fidelity, P={args.privacy}, S={args.resource}", "",
             f"{len(table)} plans (techniques {args.techniques}, partitions {args.partitions}); optimum "
             f"`{best_plan}` reward {optimum:.4f}, median plan {table.quantile(0.5):.4f}; {args.seeds} seeds.", "",
             header, "|" + "---|" * (len(budgets) + 1)]
    for name, s in summary["searchers"].items():
        lines.append(f"| {name} | " + " | ".join(
            f"{s['median_regret'][str(b)]:.4f} ({s['found_optimum'][str(b)]}/{args.seeds})" for b in budgets) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
