"""Evaluations per minute with 1 and 2 local workers (and Ray), in one run.

Every configuration evaluates the same distinct plans of a LeNet space with the cache off
(so every plan is really retrained and attacked), after the base network is trained once
and the workers are started and warmed up (so only plan evaluations are timed).  The
in-process run lets torch use both cores for one evaluation at a time; the pool pins each
worker to one thread, so ``process 2`` vs ``process 1`` is the scaling of the pool and
``process 2`` vs ``inprocess`` the gain over the default.  Ratios from one run are what to
read: the machine is shared and noisy.

    python benchmarks/throughput.py --fidelity cpu --plans 12

Writes ``throughput.md`` and ``throughput.json`` to ``--out`` (default: a new
``runs/throughput-<time>`` folder; ``--update-results`` writes the committed
``benchmarks/results/throughput``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from privacysplit.reporting import add_output_arguments, resolve_output

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="lenet", help="base network (default lenet)")
    parser.add_argument("--fidelity", default="cpu", help="fidelity preset (default cpu)")
    parser.add_argument("--plans", type=int, default=12, help="distinct plans per configuration")
    parser.add_argument("--configs", default="inprocess:1,process:1,process:2,ray:2",
                        help="comma-separated executor:workers pairs; ray is skipped when not installed")
    add_output_arguments(parser, "throughput", "benchmarks/results/throughput", ROOT)
    args = parser.parse_args(argv)
    resolve_output(parser, args)

    from privacysplit.envs.evaluator import Evaluator

    torch.set_num_threads(2)
    rows = []
    probe = Evaluator(args.base, fidelity=args.fidelity, cache=False)
    probe.base()  # train (or load) the base network once, outside the timings
    rng = np.random.default_rng(0)
    plans: list[str] = []
    while len(plans) < args.plans + 2:
        p = str(probe.space.sample(rng))
        if p not in plans:
            plans.append(p)
    batch, warmup = plans[: args.plans], plans[args.plans :]
    for spec in args.configs.split(","):
        kind, workers = spec.split(":")
        if kind == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray: not installed (pip install 'privacysplit[ray]'), skipped")
                continue
        ev = Evaluator(args.base, fidelity=args.fidelity, cache=False, executor=kind, workers=int(workers))
        if kind != "inprocess":
            ev.executor().measure_many(warmup[: int(workers)])  # start and warm up the workers, untimed
        t0 = time.perf_counter()
        infos = ev.evaluate_many(batch)
        seconds = time.perf_counter() - t0
        ev.close()
        errors = sum(1 for info in infos if info.get("error"))
        rows.append({"executor": kind, "workers": int(workers), "plans": len(batch), "seconds": seconds,
                     "evals_per_minute": 60 * len(batch) / seconds, "errors": errors})
        print(f"{kind:10s} workers={workers}  {60 * len(batch) / seconds:7.1f} evaluations/min  ({seconds:.1f} s, {errors} errors)")
    def rate(kind: str, workers: int) -> float:
        return next((r["evals_per_minute"] for r in rows if (r["executor"], r["workers"]) == (kind, workers)), float("nan"))

    base, single = rate("inprocess", 1), rate("process", 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| executor | workers | evaluations/min | x in-process | x 1 process worker |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['executor']} | {r['workers']} | {r['evals_per_minute']:.1f} | {r['evals_per_minute'] / base:.2f} "
              f"| {r['evals_per_minute'] / single:.2f} |" for r in rows]
    (out / "throughput.md").write_text("\n".join(lines) + "\n")
    (out / "throughput.json").write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
