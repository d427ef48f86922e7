"""The generic attack prior's shape: its held-out score on the base features against its cost.

    OMP_NUM_THREADS=1 python benchmarks/decoder_shape.py --network vgg11 --partitions 22,25 \\
        --shapes 48x2,96x2,128x2,48x3,48x4,48x6

For each partition, each ``WIDTHxDEPTH`` (``Fidelity.decoder_width`` x ``decoder_depth``) and
each ``--upsample`` (``Fidelity.decoder_upsample``)
it trains the attack prior exactly as an evaluation does (``privacysplit.attacks.prior``: the
fidelity's prior epochs on the whole training split, reading the features the fidelity's
attacker reads) and records its held-out score on the base network's features
(:func:`~privacysplit.attacks.prior.prior_score`) and the CPU seconds per training epoch.
Nothing is cached, so every shape is trained from the same start.  The score is what the
prior knows before any plan moves the features; an evaluation then fine-tunes it on the
plan's features (``benchmarks/attack_strength.py --fidelity cpu:decoder_depth=4`` measures
that against the reference attacker).

Writes ``decoder_shape.csv`` and ``decoder_shape.md`` to ``--out`` (default: a new
``runs/decoder_shape-<time>`` folder).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

import torch

from privacysplit.attacks.fitting import release
from privacysplit.attacks.prior import prior_score, prior_state
from privacysplit.attacks.whitening import input_kinds
from privacysplit.data import load_dataset
from privacysplit.fidelity import DECODER_UPSAMPLES, get_fidelity
from privacysplit.reporting import add_output_arguments, markdown_table, resolve_output
from privacysplit.training import pretrained_base

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ["network", "partition", "feature_shape", "input", "width", "depth", "upsample", "parameters", "score",
          "cpu_seconds_per_epoch"]


def parse_shapes(spec: str) -> list[tuple[int, int]]:
    """``"48x2,128x2"`` -> ``[(48, 2), (128, 2)]``; a ``ValueError`` naming the form otherwise."""
    shapes = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            width, depth = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"a shape is WIDTHxDEPTH, e.g. 48x2; got {item!r}") from None
        if width < 1 or depth < 1:
            raise ValueError(f"a shape's width and depth are positive; got {item!r}")
        shapes.append((width, depth))
    if not shapes:
        raise ValueError("no shape given; e.g. --shapes 48x2,48x4")
    return shapes


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    fid = get_fidelity(args.fidelity)
    base, _ = pretrained_base(args.network, data, fidelity=fid, seed=args.seed, cache=args.cache, progress=True)
    kind = input_kinds(fid.attack_input)[-1]  # noise-free features: the whitened input where the attacker whitens
    rows = []
    for p in (int(v) for v in args.partitions.split(",")):
        enc = base.sub(0, p + 1)
        shape = "x".join(map(str, release(enc, data.val.x[:1], data.normalize).shape[1:]))
        for (width, depth), upsample in itertools.product(parse_shapes(args.shapes), args.upsample):
            generic = {"width": width, "depth": depth, "upsample": upsample}
            t = time.process_time()
            state = prior_state(enc, data, metric=args.privacy, epochs=fid.prior_epochs, batch_size=fid.batch_size,
                                lr=fid.decoder_lr, seed=args.seed, cache=False, attack_input=kind, generic=generic)
            seconds = (time.process_time() - t) / max(fid.prior_epochs, 1)
            score = prior_score(enc, data, state, metric=args.privacy, n_val=fid.n_val, seed=args.seed,
                                attack_input=kind, generic=generic)
            row = {"network": args.network, "partition": p, "feature_shape": shape, "input": kind, "width": width,
                   "depth": depth, "upsample": upsample, "parameters": sum(v.numel() for v in state.values() if v.is_floating_point()),
                   "score": score, "cpu_seconds_per_epoch": seconds}
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            rows.append(row)
    return rows


def write(rows: list[dict], args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "decoder_shape.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    text = (f"# Generic prior shape ({args.network} on {args.dataset}, fidelity `{args.fidelity}`, privacy "
            f"`{args.privacy}`, {args.threads} thread(s), seed {args.seed}; score on the base features)\n\n"
            + markdown_table(["p", "features", "input", "width x depth", "upsample", "parameters", "score",
                              "CPU s / epoch"],
                             [[r["partition"], r["feature_shape"], r["input"], f"{r['width']}x{r['depth']}",
                               r["upsample"], r["parameters"], f"{r['score']:.3f}", f"{r['cpu_seconds_per_epoch']:.2f}"]
                              for r in rows]))
    (out / "decoder_shape.md").write_text(text)
    print(text, end="")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--network", default="vgg11", help="base network")
    parser.add_argument("--dataset", default="mnist", help="dataset name")
    parser.add_argument("--fidelity", default="cpu", help="fidelity preset or preset:field=value:...")
    parser.add_argument("--privacy", default="ssim", choices=["ssim", "mse"], help="the prior's metric")
    parser.add_argument("--partitions", default="22,25", help="comma-separated partition indices")
    parser.add_argument("--shapes", default="48x2,48x4", help="comma-separated WIDTHxDEPTH of the generic decoder")
    parser.add_argument("--upsample", nargs="+", default=["resize"], choices=DECODER_UPSAMPLES,
                        help="how the decoder reaches its grid from a smaller map; each with every shape")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the base network and the prior")
    parser.add_argument("--cache", default=None, help="cache folder (base weights)")
    add_output_arguments(parser, "decoder_shape", "benchmarks/results/decoder_shape", ROOT)
    args = parser.parse_args(argv)
    try:
        parse_shapes(args.shapes)
    except ValueError as err:
        parser.error(str(err))
    resolve_output(parser, args)
    write(run(args), args)


if __name__ == "__main__":
    main()
