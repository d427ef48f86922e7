"""Time the environment: steps, cache hits, and one evaluation phase by phase.

    python benchmarks/env_timing.py --fidelity cpu
    python benchmarks/env_timing.py --fidelity cpu --shared      # alone vs beside a busy process

Prints the time of each phase of an evaluation -- data, compression and distillation,
retraining, attacker selection, attacker training, measurement (the rest: releasing
features, accuracy, bookkeeping) -- as the median over ``--evaluations`` distinct plans,
their wall and CPU seconds, and the achieved GFLOP/s of retraining against this machine's
measured convolution peak (one large convolution on the same number of threads).  The
attack prior (a decoder trained once per partition on the base network's features, see
``privacysplit/attacks/prior.py``) is trained before the timed evaluations and reported on
its own line: a search pays it once per partition, not per evaluation.

``--shared`` then times the same plans again beside one other CPU-bound process (a numpy
matrix-product loop on one thread), back to back with the alone run, and reports the
slowdown.  ``--json`` writes every number to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

#: a CPU-bound neighbour: one thread of float64 matrix products, forever
BUSY = ("import os; os.environ['OMP_NUM_THREADS']='1'; import numpy as np; a=np.random.rand(400,400)\n"
        "while True: a = (a @ a); a /= np.abs(a).max()")

PHASES = [
    ("data", "data_seconds"),
    ("compression+distillation", "compress_seconds"),
    ("retraining (encoder+cloud)", "train_seconds"),
    ("attacker selection", "select_seconds"),
    ("attacker training", "fit_seconds"),
    ("measurement (SSIM, MSE)", "measure_seconds"),
    ("other (release, accuracy, costs)", "other_seconds"),
]


def conv_peak(threads: int, seconds: float = 1.0) -> float:
    """GFLOP/s of one large 3x3 convolution (forward) on this machine and thread count."""
    import torch

    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(64, 64, 32, 32)
    flops = 2 * 64 * 64 * 64 * 9 * 32 * 32
    with torch.inference_mode():
        conv(x)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            conv(x)
            n += 1
    return flops * n / (time.perf_counter() - t0) / 1e9


def attack_flops(ev, base, row: dict) -> float:
    """FLOPs the measuring attacker spent training on one timed plan (``shift_attack="prior"``).

    One step of the prior's generic decoder at the plan's partition (forward, the attack's
    loss and backward, counted by ``torch.utils.flop_counter``), times the optimiser steps the
    attack reported (``attack_steps``: every fine-tuning and full-rate epoch it ran, so the
    count follows :func:`~privacysplit.attacks.inversion.invert`'s schedule instead of
    restating it).  Counted on the base network's features (a compressed plan releases the
    same shape unless it pruned channels), so it is the attack's size, not a plan-exact
    count.  Divided by the measured (float32) convolution peak it is the floor of the
    attacker's time on this machine: what no float32 implementation of this attacker beats.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from privacysplit.attacks.decoders import generic_decoder
    from privacysplit.attacks.inversion import reconstruction_loss

    fid = ev.fidelity
    part = ev.space.validate(row["plan"]).partition
    n = fid.n_train or len(ev.data.train)
    train = ev.data.train.take(n, ev.seed)
    idx = torch.arange(min(fid.batch_size, n))
    with torch.no_grad():
        feats = base.sub(0, part + 1)(ev.data.normalize(train.x[idx]))
    decoder = generic_decoder(feats, train.x[idx])
    with FlopCounterMode(display=False) as counter:
        reconstruction_loss(ev.privacy, decoder(feats), train.x[idx].float()).backward()
    return counter.get_total_flops() * int(row["attack_steps"])


def time_plans(env, plans: list[str]) -> list[dict]:
    """Evaluate each plan uncached; phase seconds, wall and CPU seconds."""
    from privacysplit.compression import apply_plan

    ev = env.evaluator
    base, _ = ev.base()
    out = []
    for p in plans:
        plan = ev.space.validate(p)
        calib = ev.data.normalize(ev.data.train.take(min(256, len(ev.data.train)), ev.seed).x)
        t0 = time.perf_counter()
        apply_plan(base, plan, ev.settings, calib=calib, distill_steps=ev.fidelity.distill_steps)
        compress = time.perf_counter() - t0
        w0, c0 = time.perf_counter(), time.process_time()
        m = ev.measure(plan)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if m.get("error"):
            raise RuntimeError(f"{p}: {m['error']}")
        row = {"plan": p, "wall_seconds": wall, "cpu_seconds": cpu, "compress_seconds": compress,
               "accuracy": m["accuracy"], "privacy_loss": m["privacy_loss"], "attacker": m.get("attacker"),
               "macs_total": m.get("macs_total"), "prior_seconds": m.get("prior_seconds", 0.0),
               "attack_fallback": m.get("attack_fallback", 0), "attack_restarts": m.get("attack_restarts", 0),
               "attack_steps": m.get("attack_steps", 0)}
        for _, key in PHASES:
            if key not in ("compress_seconds", "other_seconds"):
                row[key] = float(m.get(key, 0.0))
        known = sum(row[k] for _, k in PHASES if k != "other_seconds")
        row["other_seconds"] = max(wall - known - row["prior_seconds"], 0.0)
        out.append(row)
        print(f"  {p:36s} A={row['accuracy']:.3f} P={row['privacy_loss']:.3f} ({row['attacker']}) "
              f"{wall:.2f} s wall, {cpu:.2f} s cpu", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="lenet", help="base network")
    parser.add_argument("--fidelity", default="cpu", help="fidelity of the timed evaluations")
    parser.add_argument("--evaluations", type=int, default=5, help="distinct plans to time")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: privacysplit.threads.default_threads())")
    parser.add_argument("--shared", action="store_true",
                        help="also time the plans beside one CPU-bound process and report the slowdown")
    parser.add_argument("--repeats", type=int, default=1, help="alone/shared pairs when --shared")
    parser.add_argument("--json", default=None, help="write every number to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from privacysplit.threads import configure_threads

    threads = configure_threads(args.threads)
    from privacysplit.attacks.prior import prior_state
    from privacysplit.attacks.whitening import input_kinds
    from privacysplit.envs.privacy_split import PrivacySplitEnv

    report: dict = {"base": args.base, "fidelity": args.fidelity, "threads": threads,
                    "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        env = PrivacySplitEnv(base=args.base, fidelity=args.fidelity, cache=f"{tmp}/evals.sqlite")
        ev = env.evaluator
        t0 = time.perf_counter()
        base, _ = ev.base()  # base training is paid once per (network, dataset, fidelity, seed)
        report["base_seconds"] = time.perf_counter() - t0
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
        plans: list[str] = []
        while len(plans) < args.evaluations:
            p = str(env.space.sample(rng))
            if p not in plans:
                plans.append(p)
        # the attack priors of these plans' partitions (once per partition, then cached)
        fid = ev.fidelity
        prior_times = []
        if fid.prior_epochs > 0 and ev.privacy != "property":
            for part in sorted({ev.space.validate(p).partition for p in plans}):
                t0 = time.perf_counter()
                for kind in input_kinds(fid.attack_input):  # one prior per input the attacker reads
                    prior_state(base.sub(0, part + 1), ev.data, metric=ev.privacy, epochs=fid.prior_epochs,
                                batch_size=fid.batch_size, lr=fid.decoder_lr, seed=ev.seed, cache=ev.weights_cache,
                                attack_input=kind)
                prior_times.append(time.perf_counter() - t0)
        report["prior_seconds"] = prior_times
        print(f"attack priors: {len(prior_times)} partitions, {sum(prior_times):.1f} s in all "
              f"(once per partition per setting)", flush=True)
        rows = time_plans(env, plans)
        # cache-hit terminal steps through the env
        for p in plans:
            env.evaluate(p)
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
        shared_rows: list[list[dict]] = []
        alone_rows: list[list[dict]] = [rows]
        if args.shared:
            for r in range(args.repeats):
                if r:
                    print("alone again:", flush=True)
                    alone_rows.append(time_plans(env, plans))
                busy = subprocess.Popen([sys.executable, "-c", BUSY])
                try:
                    time.sleep(1.0)
                    print("beside one CPU-bound process:", flush=True)
                    shared_rows.append(time_plans(env, plans))
                finally:
                    busy.terminate()
                    busy.wait()
        env.close()

    peak = conv_peak(threads)
    med = {key: float(np.median([r[key] for r in rows])) for _, key in PHASES}
    wall = float(np.median([r["wall_seconds"] for r in rows]))
    cpu = float(np.median([r["cpu_seconds"] for r in rows]))
    macs = float(np.median([r["macs_total"] for r in rows if r["macs_total"]] or [0]))
    # training FLOPs ~ 3 x forward (forward + backward), forward = 2 x MACs per image
    train_flops = 6 * macs * (fid.n_train or len(ev.data.train)) * fid.n_ec
    gflops = train_flops / max(med["train_seconds"], 1e-9) / 1e9
    print(f"\nnon-terminal step: {t_steps / steps * 1e6:.1f} us  ({steps} steps)")
    print(f"cache-hit terminal step: {np.median(hits) * 1e3:.3f} ms (median of {len(hits)})")
    print(f"\n{args.fidelity} evaluation of a {args.base} plan, median of {len(rows)} ({threads} thread(s)):")
    for label, key in PHASES:
        print(f"  {label:34s} {med[key]:6.3f} s")
    print(f"  {'total (wall)':34s} {wall:6.3f} s   (range {min(r['wall_seconds'] for r in rows):.2f}-"
          f"{max(r['wall_seconds'] for r in rows):.2f} s)")
    print(f"  {'total (process CPU time)':34s} {cpu:6.3f} s")
    print(f"retraining: {gflops:.1f} GFLOP/s achieved vs {peak:.1f} GFLOP/s measured conv peak "
          f"({100 * gflops / peak:.1f} %)")
    attack_gflop = gflop_attack = None
    if fid.shift_attack == "prior" and fid.prior_epochs > 0 and ev.privacy in ("ssim", "mse"):
        for r in rows:
            r["attack_gflop"] = attack_flops(ev, base, r) / 1e9
        attack_gflop = float(np.median([r["attack_gflop"] for r in rows]))
        gflop_attack = float(np.median([r["attack_gflop"] / max(r["fit_seconds"], 1e-9) for r in rows]))
        print(f"attacker training: {attack_gflop:.0f} GFLOP per evaluation (median), {gflop_attack:.1f} GFLOP/s "
              f"achieved ({100 * gflop_attack / peak:.1f} % of the peak); at the peak it would still take "
              f"{attack_gflop / peak:.2f} s")
    report.update(phases=med, wall_seconds=wall, cpu_seconds=cpu, retrain_gflops=gflops, conv_peak_gflops=peak,
                  attack_gflop=attack_gflop, attack_gflops=gflop_attack,
                  plans=rows, step_us=t_steps / steps * 1e6, cache_hit_ms=float(np.median(hits) * 1e3))
    if args.shared:
        pairs = []
        for alone, shared in zip(alone_rows, shared_rows, strict=True):
            a = float(np.median([r["wall_seconds"] for r in alone]))
            s = float(np.median([r["wall_seconds"] for r in shared]))
            pairs.append({"alone": a, "shared": s, "slowdown": s / a})
            print(f"alone {a:.2f} s, beside one CPU-bound process {s:.2f} s: slowdown {s / a:.2f}x")
        report["shared"] = pairs
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
