"""Attack strength: leakage by partition point, reactive vs proactive, fast vs reference attacker.

For each network (``lenet``, ``vgg11``) on ``mnist`` at one fidelity (default ``cpu``), at
every convolution's partition point (and LeNet's fully connected layers), this runs
:func:`privacysplit.attacks.evaluate_split` reactively and proactively and records SSIM,
MSE, the normalised P0, task accuracy, the decoder that won and the wall time of one
evaluation.  For the threats asked for with ``--reference``, the encoder each fast
evaluation trained is attacked a second time by a slower *reference* attacker (every
decoder fully trained, ``--ref-epochs`` epochs on the whole training split, best on
held-out images): if the fast attacker the search uses is far below the reference, every
plan looks more private than it is.

Writes ``attack_strength.csv`` and ``attack_strength.md`` to ``--out``.  Timings depend on
machine load; run it with one thread (the default) to match the search's worker processes.

Example::

    python benchmarks/attack_strength.py --networks lenet --out runs/attack_strength
    python benchmarks/attack_strength.py --networks vgg11 --threats reactive --partitions 0,8,18
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from pathlib import Path

import torch

from privacysplit.attacks import evaluate_split, invert
from privacysplit.attacks.fitting import release
from privacysplit.data import load_dataset
from privacysplit.fidelity import get_fidelity
from privacysplit.models import split
from privacysplit.training import pretrained_base

FIELDS = [
    "network", "partition", "layer", "feature_shape", "threat", "privacy", "accuracy", "ssim", "mse",
    "mse_norm", "attacker", "eval_seconds", "train_seconds", "attack_seconds", "ref_ssim", "ref_mse",
    "ref_attacker", "ref_seconds",
]


def partitions(net, name: str) -> list[int]:
    """Each convolution's index, plus the hidden fully connected layers for LeNet."""
    points = [i for i, s in enumerate(net.layers) if s.type == "conv"]
    if name == "lenet":
        points += [i for i, s in enumerate(net.layers[:-1]) if s.type == "linear"]
    return points


def reference_attack(encoder, data, fid, args, seed: int) -> dict:
    """The slow attacker: all training images, more epochs, every decoder finished."""
    train = data.train.take(None, seed)
    val = data.val.take(fid.n_val, seed)
    t0 = time.perf_counter()
    feats = release(encoder, train.x, data.normalize)
    feats_val = release(encoder, val.x, data.normalize)
    res = invert(encoder, feats, train.x, feats_val, val.x, metric=args.privacy, epochs=args.ref_epochs,
                 batch_size=fid.batch_size, lr=fid.decoder_lr, seed=seed, selection="full")
    return {"ref_ssim": res.ssim, "ref_mse": res.mse, "ref_attacker": res.attacker,
            "ref_seconds": time.perf_counter() - t0}


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    fid = get_fidelity(args.fidelity)
    rows = []
    for name in args.networks:
        base, acc_base = pretrained_base(name, data, fidelity=fid, seed=args.seed, cache=args.cache,
                                         progress=True)
        points = [int(p) for p in args.partitions.split(",")] if args.partitions else partitions(base, name)
        print(f"{name}: A_base={acc_base:.3f}, partitions {points}", flush=True)
        for p in points:
            for threat in args.threats:
                enc, cloud = split(copy.deepcopy(base), p)
                t0 = time.perf_counter()
                out = evaluate_split(enc, cloud, data, fidelity=fid, threat=threat, privacy=args.privacy,
                                     seed=args.seed)
                row = {
                    "network": name, "partition": p, "layer": str(base.layers[p]),
                    "feature_shape": "x".join(map(str, release(enc, data.val.x[:1], data.normalize).shape[1:])),
                    "threat": threat, "privacy": args.privacy, "eval_seconds": time.perf_counter() - t0,
                    **{k: out.get(k) for k in ("accuracy", "ssim", "mse", "mse_norm", "attacker",
                                               "train_seconds", "attack_seconds")},
                }
                if threat in args.reference and name in args.reference_networks:
                    row.update(reference_attack(enc, data, fid, args, args.seed))
                rows.append(row)
                print(" ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    return rows


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "attack_strength.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    lines = [
        f"# Attack strength ({args.dataset}, fidelity `{args.fidelity}`, privacy `{args.privacy}`, "
        f"{args.threads} thread(s), seed {args.seed})",
        "",
        "| network | p | layer | features | threat | acc | SSIM | MSE | MSE/MSE_mean | attacker | eval s "
        "| ref SSIM | ref MSE | ref s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = (f"{r['ref_ssim']:.3f} | {r['ref_mse']:.4f} | {r['ref_seconds']:.1f}"
               if "ref_ssim" in r else " | | ")
        lines.append(
            f"| {r['network']} | {r['partition']} | {r['layer']} | {r['feature_shape']} | {r['threat']} "
            f"| {r['accuracy']:.3f} | {r['ssim']:.3f} | {r['mse']:.4f} | {r['mse_norm']:.3f} | {r['attacker']} "
            f"| {r['eval_seconds']:.1f} | {ref} |"
        )
    (out / "attack_strength.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["lenet", "vgg11"],
                        help="base networks to attack")
    parser.add_argument("--dataset", default="mnist", help="dataset name")
    parser.add_argument("--fidelity", default="cpu", help="fidelity preset (smoke, cpu, paper)")
    parser.add_argument("--threats", nargs="+", default=["reactive", "proactive"],
                        choices=["reactive", "proactive"], help="threat models to run")
    parser.add_argument("--privacy", default="ssim", choices=["ssim", "mse"],
                        help="inversion metric the attacker optimises")
    parser.add_argument("--partitions", default="",
                        help="comma-separated partition indices (default: every conv, and LeNet's FCs)")
    parser.add_argument("--reference", nargs="*", default=["reactive"],
                        help="threats whose encoders the slow reference attacker re-attacks")
    parser.add_argument("--reference-networks", nargs="*", default=["lenet"],
                        help="networks to run the reference attacker on")
    parser.add_argument("--ref-epochs", type=int, default=24, help="epochs of the reference attacker")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--cache", default=None, help="base-weights cache folder")
    parser.add_argument("--out", default="runs/attack_strength", help="output folder")
    args = parser.parse_args(argv)
    write(run(args), args)


if __name__ == "__main__":
    main()
