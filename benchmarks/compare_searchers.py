"""Compare searchers x seeds x budgets on one network, dataset and metric setting.

All searchers share one evaluation cache, so a plan any of them evaluated costs the others
nothing (their budgets still count it: a cache hit is an evaluation).  Writes to ``--out``
(default: a new ``runs/compare-<time>`` folder, so the committed results are never
overwritten by accident; ``--update-results``, also spelled ``--update-readme-figures``,
writes the README's ``benchmarks/results/compare`` instead):

* ``results.csv`` — one row per evaluated plan: searcher, seed, step, plan, reward, A, P, S,
  cache hit, wall time;
* ``summary.json`` / ``summary.md`` — median and interquartile range of the best reward at
  each budget, evaluations to reach 99% of the best known plan, wall time, the package
  version, git commit and every setting;
* ``best_reward.png`` (best reward vs evaluations per searcher) and ``tradeoff.png``
  (accuracy vs privacy loss vs resource of every evaluated plan, Pareto front ringed);
* ``tb/<searcher>-seed<k>/`` — TensorBoard scalars of every run (``search/best_reward`` ...)
  and an hparams summary (searcher, seed, budget, setting -> best reward, evaluations to 99%
  of the best known), so ``tensorboard --logdir <out>/tb`` shows the runs side by side.

Defaults run on a 2-core machine in minutes at ``cpu`` fidelity on lenet/mnist:

    python benchmarks/compare_searchers.py --budget 30 --seeds 3
    python benchmarks/compare_searchers.py --update-results ...   # regenerates the README's figures
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

from privacysplit.reporting import add_output_arguments, resolve_output

ROOT = Path(__file__).resolve().parents[1]
#: the folder the README's figures and table come from (written only on request)
README_RESULTS = ROOT / "benchmarks" / "results" / "compare"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", default="lenet", help="base network")
    p.add_argument("--dataset", default="mnist", help="dataset name")
    p.add_argument("--data-root", default=None, help="folder of on-disk datasets")
    p.add_argument("--fidelity", default="cpu", help="smoke, cpu or paper")
    p.add_argument("--threat", default="reactive", help="reactive or proactive")
    p.add_argument("--privacy", default="ssim", help="mse, ssim or property")
    p.add_argument("--resource", default="params", help="params, macs or latency")
    p.add_argument("--techniques", default=None, help="comma-separated technique subset, or 'all' (the default)")
    p.add_argument("--partitions", default=None, help="comma-separated allowed partitions, or 'all' (the default)")
    p.add_argument("--searchers", default="random,bilstm,evolution,tpe,maskable_ppo", help="comma-separated agent names")
    p.add_argument("--seeds", type=int, default=3, help="seeds per searcher")
    p.add_argument("--budget", type=int, default=30, help="plan evaluations per run")
    p.add_argument("--budgets", default=None, help="comma-separated budgets to report (default: 10,25,50 up to --budget, and --budget)")
    p.add_argument("--workers", type=int, default=1, help="parallel evaluation workers (process pool)")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--cache", default=None, help="shared evaluation cache (default: <out>/evals.sqlite)")
    p.add_argument("--table", default=None,
                   help="a reward table written by benchmarks/reward_table.py (.csv or .csv.gz): every search "
                        "looks its plans up there instead of training (seconds); refused if it was measured on "
                        "another footing than these settings")
    add_output_arguments(p, "compare", README_RESULTS.relative_to(ROOT), ROOT, aliases=["--update-readme-figures"])
    args = p.parse_args(argv)
    resolve_output(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import privacysplit
    from privacysplit import reporting
    from privacysplit.agents import make_agent
    from privacysplit.envs.evaluator import Evaluator
    from privacysplit.envs.privacy_split import PrivacySplitEnv

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator(
        args.base, args.dataset, data_root=args.data_root, fidelity=args.fidelity, threat=args.threat,
        privacy=args.privacy, resource=args.resource, techniques=reporting.csv_or_all(args.techniques),
        partitions=reporting.csv_or_all(args.partitions, int), device=args.device,
        cache=args.cache or str(out / "evals.sqlite"),
        executor="process" if args.workers > 1 else "inprocess", workers=args.workers,
    )
    source = evaluator  # what the environments evaluate with: the evaluator, or a shipped table
    if args.table:
        from privacysplit.agents.table import TableEvaluator

        source = TableEvaluator.from_csv(args.table, evaluator.space)
        try:
            source.check_footing(evaluator.config())
        except ValueError as err:
            raise SystemExit(str(err)) from None
        if len(source) != evaluator.space.count():
            raise SystemExit(f"--table {args.table}: {len(source)} plans, the space has {evaluator.space.count()}")
    searchers = [t for t in args.searchers.split(",") if t]
    for name in searchers:
        make_agent(name)  # fail fast on an unknown name, before any training
    budgets = [int(t) for t in (args.budgets or "").split(",") if t] or sorted({b for b in (10, 25, 50) if b < args.budget} | {args.budget})
    rows, curves, runs, hparams = [], {}, [], []
    t_all = time.perf_counter()
    try:
        for name in searchers:
            for seed in range(args.seeds):
                env = PrivacySplitEnv(evaluator=source)
                t0 = time.perf_counter()
                log_dir = out / "tb" / f"{name}-seed{seed}"
                if log_dir.exists():  # a rerun into the same folder: its event files replace the old ones
                    shutil.rmtree(log_dir)
                result = make_agent(name, seed=seed).search(env, args.budget, progress=False, log_dir=str(log_dir))
                seconds = time.perf_counter() - t0
                curves.setdefault(name, []).append(result.best_so_far())
                hparams.append((log_dir, name, seed, result, seconds))
                runs.append({"searcher": name, "seed": seed, "best_plan": result.best_plan,
                             "best_reward": result.best_reward, "seconds": seconds,
                             "evaluations": result.evaluations, "cache_hits": result.cache_hits})
                for row in result.history:
                    rows.append({"searcher": name, "seed": seed, "step": row["step"], "plan": row["plan"],
                                 "reward": row["reward"], "accuracy": row.get("accuracy"),
                                 "privacy_loss": row.get("privacy_loss"), "resource": row.get("resource"),
                                 "cache_hit": row.get("cache_hit"), "wall_time": row.get("wall_time")})
                print(f"{name:14s} seed {seed}: best {result.best_reward:.4f} {result.best_plan}  ({seconds:.1f} s)", flush=True)
    finally:
        evaluator.close()

    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["searcher"])
        writer.writeheader()
        writer.writerows(rows)
    best_known = max((float(r["reward"]) for r in rows), default=float("nan"))
    summary = {"searchers": {}, "best_known_reward": best_known,
               "best_known_plan": max(rows, key=lambda r: float(r["reward"]))["plan"] if rows else None}
    for name, cs in curves.items():
        reach = [reporting.evaluations_to_reach(c, 0.99 * best_known) for c in cs]
        summary["searchers"][name] = {
            "best_reward_at": {str(b): reporting.median_iqr([c[min(b, len(c)) - 1] for c in cs if c]) for b in budgets},
            "evaluations_to_99pct_best": {"per_seed": reach, "median": reporting.median_iqr([r for r in reach if r is not None])["median"], "reached": sum(r is not None for r in reach)},
            "seconds": reporting.median_iqr([r["seconds"] for r in runs if r["searcher"] == name]),
        }
    summary["runs"] = runs
    summary["settings"] = vars(args)
    summary["fidelity"] = evaluator.fidelity.to_dict()
    summary["version"] = privacysplit.__version__
    summary["git_commit"] = reporting.git_commit(ROOT)
    summary["wall_seconds"] = time.perf_counter() - t_all
    summary["machine"] = {"python": sys.version.split()[0], "platform": sys.platform}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    header = ["searcher"] + [f"best@{b} median [IQR]" for b in budgets] + ["evals to 99% best (median, reached)", "seconds/run"]
    table = []
    for name, s in summary["searchers"].items():
        cells = [name]
        for b in budgets:
            m = s["best_reward_at"][str(b)]
            cells.append(f"{m['median']:.4f} [{m['q25']:.4f}, {m['q75']:.4f}]")
        e = s["evaluations_to_99pct_best"]
        cells.append(f"{e['median']} ({e['reached']}/{len(e['per_seed'])})")
        cells.append(f"{s['seconds']['median']:.1f}")
        table.append(cells)
    title = f"{args.base}/{args.dataset}, {args.fidelity} fidelity, {args.threat}, P={args.privacy}, S={args.resource}"
    md = [f"# Searcher comparison: {title}", "",
          f"{args.seeds} seeds x budget {args.budget}; best known reward {best_known:.4f} ({summary['best_known_plan']}).", "",
          reporting.markdown_table(header, table),
          f"Commit {summary['git_commit'][:10]}, privacysplit {summary['version']}, {summary['wall_seconds']:.0f} s in all.", ""]
    (out / "summary.md").write_text("\n".join(md))
    reporting.plot_curves(curves, out / "best_reward.png", title)
    reporting.plot_tradeoff(rows, out / "tradeoff.png", title)
    write_hparams(hparams, args, best_known)
    print("\n".join(md))
    print(f"wrote {out} (TensorBoard: tensorboard --logdir {out / 'tb'})")
    return 0


def write_hparams(runs: list, args: argparse.Namespace, best_known: float) -> None:
    """One hparams summary per searcher and seed, beside that run's scalars."""
    from torch.utils.tensorboard import SummaryWriter

    from privacysplit import reporting

    setting = {k: str(getattr(args, k)) for k in ("base", "dataset", "fidelity", "threat", "privacy", "resource",
                                                   "techniques", "partitions")}
    for log_dir, name, seed, result, seconds in runs:
        reach = reporting.evaluations_to_reach(result.best_so_far(), 0.99 * best_known)
        writer = SummaryWriter(str(log_dir))
        writer.add_hparams(
            {"searcher": name, "seed": seed, "budget": args.budget, **setting},
            {"hparam/best_reward": result.best_reward,
             "hparam/evaluations_to_99pct_best": float(reach) if reach is not None else float("nan"),
             "hparam/seconds": seconds},
            run_name=".",
        )
        writer.close()


if __name__ == "__main__":
    raise SystemExit(main())
