"""Time the environment: a non-terminal step, a cache-hit terminal step, a full evaluation.

    python benchmarks/env_timing.py --fidelity cpu
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="lenet", help="base network")
    parser.add_argument("--fidelity", default="cpu", help="fidelity of the timed evaluations")
    parser.add_argument("--evaluations", type=int, default=5, help="distinct plans to time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from privacysplit.envs.privacy_split import PrivacySplitEnv

    with tempfile.TemporaryDirectory() as tmp:
        env = PrivacySplitEnv(base=args.base, fidelity=args.fidelity, cache=f"{tmp}/evals.sqlite")
        env.evaluator.base()  # base training is paid once per (network, dataset, fidelity, seed)
        rng = np.random.default_rng(0)
        # non-terminal steps: partition + all but the last compression choice
        steps, t_steps = 0, 0.0
        for _ in range(2000):
            env.reset()
            t0 = time.perf_counter()
            env.step(len(env.layers) - 2)
            steps += 1
            while env.cursor_layer is not None and env.cursor < len(env.queue) - 1:
                env.step(0)
                steps += 1
            t_steps += time.perf_counter() - t0
        # full evaluations of distinct plans
        plans = []
        while len(plans) < args.evaluations:
            p = str(env.space.sample(rng))
            if p not in plans:
                plans.append(p)
        secs = []
        for p in plans:
            info = env.evaluate(p)
            secs.append(info["eval_seconds"])
            print(f"  {p:40s} R={info['reward']:.4f} A={info['accuracy']:.3f} P={info['privacy_loss']:.3f} {info['eval_seconds']:.2f} s")
        # cache-hit terminal steps through the env
        hits = []
        for p in plans:
            env.reset()
            plan = env.space.validate(p)
            env.step(plan.partition)
            t0 = time.perf_counter()
            info = {}
            while True:
                layer = env.cursor_layer
                _, _, term, _, info = env.step(env.techniques.index(plan.mapping.get(layer, "none")))
                if term:
                    break
            hits.append(time.perf_counter() - t0)
            assert info["cache_hit"]
    print(f"non-terminal step: {t_steps / steps * 1e6:.1f} us  ({steps} steps)")
    print(f"cache-hit terminal step: {np.median(hits) * 1e3:.3f} ms (median of {len(hits)})")
    print(f"{args.fidelity} evaluation of a {args.base} plan: median {np.median(secs):.2f} s, "
          f"range {min(secs):.2f}-{max(secs):.2f} s ({args.threads} thread(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
