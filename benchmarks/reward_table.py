"""Searchers on a measured reward table: true optimum and median regret at small budgets.

Step 1 measures every plan of a small lenet/mnist space once (through the evaluator's
``evaluate_many`` and its SQLite cache) and stores the table as CSV; a rerun into the same folder reads the CSV.
Step 2 runs each searcher over seeds on the real ``PrivacySplitEnv`` driven by that table
(``TableEvaluator``), so a whole comparison costs seconds and the true optimum is known.
Regret = optimum - best reward found within the budget.  Writes ``table.csv``,
``summary.json`` and ``summary.md`` to ``--out`` (default: a new ``runs/reward_table-<time>``
folder, where step 1 measures afresh; ``--update-results`` writes, and rereads the tables of,
the committed ``benchmarks/results/reward_table``).

    python benchmarks/reward_table.py --fidelity smoke --low-fidelities none --seeds 10   # ~2-3 min
    python benchmarks/reward_table.py --update-results --fidelity cpu --workers 2 --low-fidelities smoke  # ~35 min to measure the tables

``--synthetic`` skips step 1 and uses the synthetic table instead (no training).

Multi-fidelity: ``--low-fidelities`` names cheaper fidelities (a preset, or a preset with
fields changed: ``cpu:n_train=500:n_d=2``); each is measured over the same plans, and its
Spearman rank correlation with the target reward (``scipy.stats.spearmanr``) and its cost
ratio (median ``eval_seconds`` over the target's) go to the summary.  The multi-fidelity
searchers (``successive_halving``, ``hyperband``, ``screened_evolution``) screen at ``--screen-fidelity`` (default:
the last low fidelity) through a table env of that fidelity; their budgets count
target-fidelity-equivalent compute, the others' target evaluations.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from privacysplit.agents import AGENTS, agent_name
from privacysplit.reporting import add_output_arguments, csv_or_all, resolve_output

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base", default="lenet", help="base network")
    p.add_argument("--dataset", default="mnist", help="dataset name")
    p.add_argument("--fidelity", default="smoke", help="smoke, cpu or paper")
    p.add_argument("--privacy", default="ssim", help="mse, ssim or property")
    p.add_argument("--resource", default="params", help="params, macs or latency")
    p.add_argument("--techniques", default="W1,W2,C1,F1", help="comma-separated technique subset, or 'all'")
    p.add_argument("--partitions", default="2,5,7,9", help="comma-separated allowed partitions, or 'all'")
    p.add_argument("--searchers", default="random,bilstm,maskable_ppo,ppo,evolution,tpe,successive_halving,hyperband",
                   help="comma-separated agents")
    p.add_argument("--seeds", type=int, default=10, help="seeds per searcher")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds run are first-seed .. first-seed + seeds - 1 (held-out seeds for a setting tuned on 0-9)")
    p.add_argument("--budgets", default="10,25,50",
                   help="comma-separated budgets, in evaluations or as a percentage of the space's plans "
                        "('1%%,5%%,10%%'); the largest is each run's budget")
    p.add_argument("--workers", type=int, default=1, help="process-pool workers that measure the table")
    p.add_argument("--low-fidelities", default="smoke",
                   help="comma-separated cheaper fidelities to rank-correlate (preset or preset:field=value:...); "
                        "'none' for none")
    p.add_argument("--screen-fidelity", default=None,
                   help="low fidelity the multi-fidelity searchers screen at (default: the last of --low-fidelities)")
    p.add_argument("--time-plans", type=int, default=0,
                   help="re-time this many plans at the target and every low fidelity back to back (CPU seconds, one "
                        "thread, no cache) and take cost ratios from that instead of the tables' wall times")
    p.add_argument("--cost-ratio", type=float, default=None,
                   help="compute of a low evaluation in target evaluations (default: the tables' median eval_seconds ratio)")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic table (no training)")
    p.add_argument("--cache", default=None,
                   help="evaluation cache (default: <out>/evals.sqlite); another table's cache answers every plan "
                        "the two spaces share (cache keys hold the settings, not the space)")
    add_output_arguments(p, "reward_table", "benchmarks/results/reward_table", ROOT)
    args = p.parse_args(argv)
    resolve_output(p, args)
    return args


def is_multi_fidelity(name: str) -> bool:
    """Whether searcher spec ``name`` screens at a low fidelity (budget in compute)."""
    from privacysplit.agents.multifidelity import LowFidelitySearcher

    cls = AGENTS.get(agent_name(name))
    return isinstance(cls, type) and issubclass(cls, LowFidelitySearcher)


def is_anytime(name: str) -> bool:
    """Whether one search at the largest budget answers every smaller budget too (false for a
    searcher that plans from its budget, e.g. ``screened_evolution``: one search per budget)."""
    return bool(getattr(AGENTS.get(agent_name(name)), "anytime", True))


def parse_budgets(text: str, plans: int) -> list[int]:
    """Budgets from ``10,25,50`` or ``1%,5%,10%`` (of ``plans``, rounded up), sorted."""
    budgets = set()
    for token in text.split(","):
        token = token.strip()
        try:
            value = math.ceil(float(token[:-1]) / 100 * plans) if token.endswith("%") else int(token)
        except ValueError:
            raise SystemExit(f"--budgets: {token!r} is neither a number of evaluations nor a percentage") from None
        if value < 1:
            raise SystemExit(f"--budgets: {token!r} is less than one evaluation of the {plans}-plan space")
        budgets.add(value)
    return sorted(budgets)


def parse_fidelity(spec: str):
    """A preset name, or ``preset:field=value:...`` (a custom fidelity named after the spec)."""
    from privacysplit.fidelity import fidelity_from_spec

    try:
        return fidelity_from_spec(spec)
    except ValueError as err:
        raise SystemExit(str(err)) from None


def spec_label(spec: str) -> str:
    """A file-name-safe label of a fidelity spec."""
    return spec.replace(":", "-").replace("=", "")


def table_path(args, evaluator, out: Path) -> Path:
    """Where the measured table of these settings lives: the name carries a hash of the
    evaluator's recorded configuration and the space, so a table measured at another
    fidelity, metric or space is never read back for this one."""
    space = evaluator.space
    identity = json.dumps([evaluator.config(), list(space.techniques), list(space.partitions)], sort_keys=True, default=str)
    tag = hashlib.sha256(identity.encode()).hexdigest()[:10]
    return out / f"table_{args.base}_{args.dataset}_{spec_label(args.fidelity)}_{tag}.csv.gz"


def make_evaluator(args, out: Path, spec: str, workers: int = 1):
    """The evaluator of these settings at fidelity ``spec``, on the cache in ``out``."""
    from privacysplit.envs.evaluator import Evaluator

    return Evaluator(args.base, args.dataset, fidelity=parse_fidelity(spec), privacy=args.privacy,
                     resource=args.resource, techniques=csv_or_all(args.techniques),
                     partitions=csv_or_all(args.partitions, int), cache=args.cache or str(out / "evals.sqlite"),
                     executor="process" if workers > 1 else "inprocess", workers=workers)


def load_table(args, out: Path, fidelity: str | None = None):
    """The measured table at ``fidelity`` (default ``--fidelity``): read from its CSV in
    ``out`` or measured now."""
    low = fidelity is not None  # a synthetic low fidelity is the same reward, noisier
    if fidelity is not None:
        args = argparse.Namespace(**{**vars(args), "fidelity": fidelity})
    from privacysplit.agents.table import TABLE_COLUMNS, TableEvaluator

    evaluator = make_evaluator(args, out, args.fidelity, workers=args.workers)
    if args.synthetic:  # the low fidelity: the same synthetic reward with more noise
        return TableEvaluator.synthetic(evaluator.space, noise=0.3 if low else 0.02)
    path = table_path(args, evaluator, out)
    done: dict[str, dict] = {}
    for candidate in (path, path.with_suffix("")):  # tables measured before they were compressed: .csv
        if candidate.exists():
            table = TableEvaluator.from_csv(candidate, evaluator.space)
            try:  # a table of another footing (an older evaluation version...) is measured again, never mixed in
                table.check_footing(evaluator.config())
            except ValueError as err:
                print(f"{err}; measuring it again", flush=True)
                continue
            if len(table) == evaluator.space.count():
                return table
            done = table.rows  # a partial table (an interrupted run): measure only the rest
            print(f"{candidate.name}: {len(done)} of {evaluator.space.count()} plans measured; resuming", flush=True)
    metadata = provenance(evaluator)
    columns = TABLE_COLUMNS + ("eval_seconds",)  # eval_seconds: the fidelities' cost ratios

    def checkpoint(partial) -> None:  # the table file is the checkpoint: written atomically as it grows
        tmp = path.with_name(path.name + ".tmp.gz")
        partial.to_csv(tmp, columns, metadata=metadata)
        tmp.replace(path)

    table = TableEvaluator.from_evaluator(evaluator, progress=True, rows=done, checkpoint=checkpoint)
    checkpoint(table)
    return table


def provenance(evaluator) -> dict:
    """What a table's numbers stand on: the evaluator's whole configuration (fidelity, seed,
    evaluation version, data fingerprint...), the package and torch versions, the command."""
    import torch

    import privacysplit
    from privacysplit.reporting import git_commit

    return {"config": evaluator.config(), "plans": evaluator.space.count(),
            "techniques": list(evaluator.space.techniques), "partitions": list(evaluator.space.partitions),
            "versions": {"privacysplit": privacysplit.__version__, "torch": torch.__version__,
                         "git_commit": git_commit(ROOT)},
            "command": "python benchmarks/reward_table.py " + " ".join(sys.argv[1:]),
            "measured": time.strftime("%Y-%m-%d")}


def rank_correlation(low, table) -> dict:
    """How well the low fidelity ranks the target's plans, and what it costs."""
    from scipy.stats import spearmanr

    plans = sorted(table.rows)
    out = {}
    for key in ("reward", "accuracy", "privacy_loss"):
        a = [float(low.rows[p].get(key, np.nan)) for p in plans]
        b = [float(table.rows[p].get(key, np.nan)) for p in plans]
        out[f"spearman_{key}"] = float(spearmanr(a, b, nan_policy="omit").statistic)
    order = sorted(plans, key=lambda p: -float(low.rows[p]["reward"]))
    best_plan, _ = table.optimum()
    out["optimum_rank_at_low"] = order.index(best_plan) + 1
    low_s, high_s = (_median_seconds(t) for t in (low, table))
    out["median_eval_seconds"] = low_s
    out["cost_ratio"] = None if low_s is None or high_s is None else low_s / high_s
    return out


def time_fidelities(args, out: Path, specs: list[str], n: int) -> dict[str, float]:
    """Median CPU seconds of one evaluation at ``--fidelity`` and at each of ``specs``, over
    the same ``n`` plans measured back to back in this process (one thread, no cache).

    Why CPU time and not the tables' ``eval_seconds``: those are wall times from whenever each
    table was measured, and on a shared machine the load then sets them, so their ratio is
    not a cost ratio.  Base networks and attack priors are trained (or read) first and not
    counted: they are paid once per table, not per evaluation.
    """
    rng = np.random.default_rng(0)
    evaluators = {spec: make_evaluator(args, out, spec) for spec in [args.fidelity, *specs]}
    space = evaluators[args.fidelity].space
    plans = [space.sample(rng, by="partition") for _ in range(n)]
    seconds: dict[str, list[float]] = {spec: [] for spec in evaluators}
    for ev in evaluators.values():  # warm: base network and every partition's attack prior
        for partition in sorted({p.partition for p in plans}):
            ev.measure(next(p for p in plans if p.partition == partition))
    for plan in plans:
        for spec, ev in evaluators.items():
            t = time.process_time()
            ev.measure(plan)
            seconds[spec].append(time.process_time() - t)
    return {spec: float(np.median(s)) for spec, s in seconds.items()}


def _median_seconds(table) -> float | None:
    seconds = [float(r["eval_seconds"]) for r in table.rows.values() if isinstance(r.get("eval_seconds"), float)]
    return float(np.median(seconds)) if seconds else None


def run_searcher(name: str, seed: int, table, low, args, budget: int):
    """One search on a fresh table env; regret is read per budget with ``best_at``
    (target evaluations) or ``best_within`` (compute, for multi-fidelity searchers)."""
    from privacysplit.agents import make_agent
    from privacysplit.agents.table import TableEvaluator, table_env

    env = table_env(args.base, table=TableEvaluator(table.space, table.rows, name=table.name))
    if is_multi_fidelity(name):
        if low is None:
            raise SystemExit(f"searcher {name} needs a low fidelity (--low-fidelities)")
        agent = make_agent(name, seed=seed, cost_ratio=args.cost_ratio,
                           low_env=TableEvaluator(low.space, low.rows, name=low.name))
        result = agent.search(env, budget, progress=False)
        return result, result.best_within
    result = make_agent(name, seed=seed).search(env, budget, progress=False)
    return result, result.best_at


def main(argv: list[str] | None = None) -> int:
    import torch

    torch.set_num_threads(1)

    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table = load_table(args, out)
    measure_seconds = time.perf_counter() - t0
    lows = {}
    for spec in [] if args.low_fidelities == "none" else args.low_fidelities.split(","):
        t1 = time.perf_counter()
        lows[spec] = load_table(args, out, spec)
        print(f"low fidelity {spec}: {len(lows[spec])} plans ({time.perf_counter() - t1:.0f} s)", flush=True)
    screen = args.screen_fidelity or (list(lows)[-1] if lows else None)
    if screen is not None and screen not in lows:
        lows[screen] = load_table(args, out, screen)
    best_plan, optimum = table.optimum()
    budgets = parse_budgets(args.budgets, len(table))
    correlations = {spec: rank_correlation(low, table) for spec, low in lows.items()}
    cpu_seconds = None
    if args.time_plans > 0 and lows and not args.synthetic:
        cpu_seconds = time_fidelities(args, out, list(lows), args.time_plans)
        for spec, c in correlations.items():
            c["median_eval_cpu_seconds"] = cpu_seconds[spec]
            c["cost_ratio"] = cpu_seconds[spec] / cpu_seconds[args.fidelity]
            c["cost_ratio_from"] = f"CPU seconds, {args.time_plans} plans timed back to back"
    if screen is not None and args.cost_ratio is None:
        args.cost_ratio = correlations[screen]["cost_ratio"] if not args.synthetic else 0.1
    summary: dict = {"settings": vars(args), "plans": len(table), "optimum": optimum, "optimum_plan": best_plan,
                     "median_plan_reward": table.quantile(0.5), "table_seconds": measure_seconds,
                     "target_median_eval_seconds": _median_seconds(table),
                     "target_median_eval_cpu_seconds": None if cpu_seconds is None else cpu_seconds[args.fidelity],
                     "low_fidelities": correlations, "screen_fidelity": screen, "searchers": {}}
    for spec, c in correlations.items():
        print(f"{spec} vs {args.fidelity}: Spearman reward {c['spearman_reward']:.3f} (accuracy "
              f"{c['spearman_accuracy']:.3f}, privacy {c['spearman_privacy_loss']:.3f}); target optimum ranked "
              f"{c['optimum_rank_at_low']} at {spec}; cost ratio {c['cost_ratio']}", flush=True)
    for name in args.searchers.split(","):
        multi, anytime = is_multi_fidelity(name), is_anytime(name)
        regrets = {b: [] for b in budgets}
        counts = []
        t1 = time.perf_counter()
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            if anytime:
                result, best = run_searcher(name, seed, table, lows.get(screen), args, budgets[-1])
                for b in budgets:
                    regrets[b].append(optimum - best(b))
            else:  # one search per budget; the counts below are the largest budget's
                for b in budgets:
                    result, best = run_searcher(name, seed, table, lows.get(screen), args, b)
                    regrets[b].append(optimum - best(b))
            if multi:
                counts.append((result.low_evaluations, result.high_evaluations, result.compute))
        summary["searchers"][name] = {
            "budget_unit": "compute" if multi else "evaluations",
            "median_regret": {str(b): float(np.median(r)) for b, r in regrets.items()},
            "found_optimum": {str(b): int(sum(x <= 1e-12 for x in r)) for b, r in regrets.items()},
            "regrets": {str(b): [float(x) for x in r] for b, r in regrets.items()},  # per seed, in seed order
            "seconds": time.perf_counter() - t1,
        }
        if counts:
            low_n, high_n, compute = (float(np.median(c)) for c in zip(*counts, strict=True))
            summary["searchers"][name].update(median_low_evaluations=low_n, median_high_evaluations=high_n,
                                              median_compute=compute)
        cells = "  ".join(f"@{b}: {np.median(r):.4f} ({sum(x <= 1e-12 for x in r)}/{args.seeds})" for b, r in regrets.items())
        print(f"{name:18s} median regret {cells}", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "summary.md").write_text("\n".join(summary_lines(args, summary, budgets, screen)) + "\n")
    print((out / "summary.md").read_text())
    return 0


def summary_lines(args, summary: dict, budgets: list[int], screen: str | None) -> list[str]:
    lines = [f"# Searchers on a {'synthetic' if args.synthetic else 'measured'} reward table: {args.base}/{args.dataset}, "
             f"{args.fidelity} fidelity, P={args.privacy}, S={args.resource}", "",
             f"{summary['plans']} plans (techniques {args.techniques}, partitions {args.partitions}); optimum "
             f"`{summary['optimum_plan']}` reward {summary['optimum']:.4f}, median plan "
             f"{summary['median_plan_reward']:.4f}; {args.seeds} seeds"
             f"{f' ({args.first_seed}-{args.first_seed + args.seeds - 1})' if args.first_seed else ''}.", ""]
    if summary["low_fidelities"]:
        lines += ["How well a cheaper fidelity ranks the plans (Spearman rank correlation with the "
                  f"{args.fidelity} table over all plans; cost = "
                  + (f"median CPU seconds of {args.time_plans} plans timed back to back at each fidelity, over "
                     f"{args.fidelity}'s" if args.time_plans else f"median eval_seconds over {args.fidelity}'s") + "):", "",
                  "| fidelity | Spearman reward | Spearman accuracy | Spearman privacy loss | rank of the optimum | cost ratio |",
                  "|---|---|---|---|---|---|"]
        for spec, c in summary["low_fidelities"].items():
            ratio = "-" if c["cost_ratio"] is None else f"{c['cost_ratio']:.3f}"
            lines.append(f"| {spec} | {c['spearman_reward']:.3f} | {c['spearman_accuracy']:.3f} | "
                         f"{c['spearman_privacy_loss']:.3f} | {c['optimum_rank_at_low']} / {summary['plans']} | {ratio} |")
        lines += ["", f"Multi-fidelity searchers screen at `{screen}` with cost ratio {args.cost_ratio:.3f}; their "
                  "budget is target-fidelity-equivalent compute (a target evaluation 1, a screening the cost ratio), "
                  "the others' budget target evaluations.", ""]
    header = "| searcher | " + " | ".join(f"regret@{b} (optimum found)" for b in budgets) + " |"
    lines += [header, "|" + "---|" * (len(budgets) + 1)]
    for name, s in summary["searchers"].items():
        label = f"{name} (compute)" if s["budget_unit"] == "compute" else name
        lines.append(f"| {label} | " + " | ".join(
            f"{s['median_regret'][str(b)]:.4f} ({s['found_optimum'][str(b)]}/{args.seeds})" for b in budgets) + " |")
    multi = {n: s for n, s in summary["searchers"].items() if s["budget_unit"] == "compute"}
    if multi:
        lines.append("")
        for name, s in multi.items():
            lines.append(f"{name} at budget {budgets[-1]}: median {s['median_low_evaluations']:.0f} plans screened, "
                         f"{s['median_high_evaluations']:.0f} measured at {args.fidelity}, compute "
                         f"{s['median_compute']:.2f}.")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
