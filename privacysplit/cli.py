"""The ``privacysplit`` command line."""

from __future__ import annotations

import argparse
import sys


def _models(args: argparse.Namespace) -> int:
    from privacysplit.models import build, count_params, layer_macs, list_models

    print("| network | layers | params | MACs |\n|---|---:|---:|---:|")
    for name in list_models():
        net = build(name, in_channels=3, num_classes=10)
        params, macs = count_params(net, nonzero=False), sum(layer_macs(net))
        print(f"| {name} | {len(net)} | {params:,d} | {macs:,d} |")
    return 0


def _train_base(args: argparse.Namespace) -> int:
    from privacysplit.training import pretrained_base

    _, acc = pretrained_base(
        args.base, args.dataset, fidelity=args.fidelity, seed=args.seed, device=args.device, progress=True
    )
    print(f"{args.base} on {args.dataset} ({args.fidelity}): validation accuracy {acc:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="privacysplit", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("models", help="list the base networks with parameter and MAC counts")
    p.set_defaults(func=_models)
    p = sub.add_parser("train-base", help="train (or load from cache) a base network")
    p.add_argument("--base", default="lenet")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--fidelity", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_train_base)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"privacysplit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
