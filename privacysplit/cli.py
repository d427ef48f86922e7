"""The ``privacysplit`` command line: search, evaluate, export, and what is available.

User mistakes (unknown names, bad plans, missing files) print one line and exit with
status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys


def _env_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every verb that builds an evaluator."""
    p.add_argument("--base", default="lenet", help="base network (see `privacysplit models`); default lenet")
    p.add_argument("--dataset", default="mnist", help="dataset; default mnist (embedded, offline)")
    p.add_argument("--data-root", default=None, help="folder holding on-disk datasets")
    p.add_argument("--fidelity", default="cpu", help="smoke, cpu (default) or paper")
    p.add_argument("--threat", default="reactive", help="reactive (default) or proactive")
    p.add_argument("--privacy", default="ssim", help="mse (P0), ssim (P1, default) or property (P2)")
    p.add_argument("--resource", default="params", help="params (S1, default), macs (S2) or latency (S3)")
    p.add_argument("--thresholds", default=None, help="Eq. 18 tolerances 'A_m,P_m,S_m', e.g. 0.85,0,0.8")
    p.add_argument("--techniques", default=None, help="comma-separated subset of Table 2, e.g. W1,W2,C3")
    p.add_argument("--partitions", default=None, help="comma-separated allowed partition layers")
    p.add_argument("--seed", type=int, default=0, help="seed of base training and evaluations")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--cache", default=None, help="evaluation cache file (default under ~/.cache/privacysplit); 'off' disables")


def _csv(text: str | None, cast=str) -> list | None:
    if text is None:
        return None
    try:
        return [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise ValueError(f"cannot read {text!r} as a comma-separated list: {err}") from err


def _evaluator(args: argparse.Namespace, **extra):
    from privacysplit.envs.evaluator import Evaluator

    thresholds = _csv(args.thresholds, float)
    if thresholds is not None and len(thresholds) != 3:
        raise ValueError(f"--thresholds needs three numbers A_m,P_m,S_m, got {args.thresholds!r}")
    return Evaluator(
        args.base, args.dataset, data_root=args.data_root, fidelity=args.fidelity,
        threat=args.threat, privacy=args.privacy, resource=args.resource, thresholds=thresholds,
        techniques=_csv(args.techniques), partitions=_csv(args.partitions, int),
        device=args.device, cache=args.cache, seed=args.seed, **extra,
    )


def _summary(info: dict) -> str:
    err = f"  error: {info['error']}" if info.get("error") else ""
    return (
        f"{info['plan']}  A={info.get('accuracy', float('nan')):.4f} "
        f"P={info.get('privacy_loss', float('nan')):.4f} S={info.get('resource', float('nan')):.4f} "
        f"R={info['reward']:.4f}{err}"
    )


def _models(args: argparse.Namespace) -> int:
    from privacysplit.models import build, count_params, layer_macs, list_models

    print("| network | layers | params | MACs |\n|---|---:|---:|---:|")
    for name in list_models():
        net = build(name, in_channels=3, num_classes=10)
        params, macs = count_params(net, nonzero=False), sum(layer_macs(net))
        print(f"| {name} | {len(net)} | {params:,d} | {macs:,d} |")
    return 0


def _techniques(args: argparse.Namespace) -> int:
    from privacysplit.compression import COMPRESSORS, CompressionSettings, apply_plan
    from privacysplit.envs.space import SearchSpace
    from privacysplit.models import build, count_params, layer_macs
    from privacysplit.plan import Plan

    net = build(args.base, in_channels=3)
    space = SearchSpace(net.layers)
    p = args.partition if args.partition is not None else len(net) - 2
    space.validate(Plan(p))
    print(f"settings: {CompressionSettings()}")
    print(f"effect on {args.base} (3x32x32), each technique alone on every applicable device layer up to layer {p}:")
    print("| technique | layers | encoder params | encoder MACs |\n|---|---|---:|---:|")
    for name in COMPRESSORS:
        layers = [i for i in range(p + 1) if name in space.choices(i) and name != "none"]
        if name != "none" and not layers:
            print(f"| {name} | (none applicable) | | |")
            continue
        encoder, _ = apply_plan(net, Plan(p, {i: name for i in layers}))
        print(f"| {name} | {','.join(map(str, layers)) or '-'} | {count_params(encoder):,d} | {sum(layer_macs(encoder)):,d} |")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    ev = _evaluator(args)
    info = ev.evaluate(args.plan)
    if args.json:
        print(json.dumps({k: v for k, v in info.items() if k != "traceback"}, sort_keys=True))
    else:
        print(_summary(info))
    return 0 if not info.get("error") else 1


def _export(args: argparse.Namespace) -> int:
    from privacysplit.export import export_plan

    manifest = export_plan(_evaluator(args), args.plan, args.out, onnx=not args.no_onnx)
    print(f"wrote {', '.join(manifest['files'].values())} and manifest.json to {args.out}")
    if isinstance(manifest["onnx"], dict):
        for part, why in manifest["onnx"].items():
            print(f"onnx {part}: {why}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from privacysplit.search_run import run_search

    executor = args.executor or ("process" if args.workers > 1 else "inprocess")
    result = run_search(args, _evaluator(args, executor=executor, workers=args.workers))
    print(_summary({**result.best_metrics, "plan": result.best_plan, "reward": result.best_reward}))
    return 0


def _train_base(args: argparse.Namespace) -> int:
    from privacysplit.training import pretrained_base

    _, acc = pretrained_base(
        args.base, args.dataset, fidelity=args.fidelity, seed=args.seed, device=args.device, progress=True
    )
    print(f"{args.base} on {args.dataset} ({args.fidelity}): validation accuracy {acc:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="privacysplit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser("search", help="search for the best plan", description="Run a searcher on PrivacySplit-v0 and write its history, best plan, TensorBoard logs and a report.")
    _env_args(p)
    p.add_argument("--agent", default="bilstm", help="searcher (see privacysplit.agents.AGENTS); default bilstm")
    p.add_argument("--budget", type=int, default=200, help="plan evaluations (cache hits count)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this much wall time")
    p.add_argument("--workers", type=int, default=1, help="parallel evaluation workers")
    p.add_argument("--executor", default=None, help="inprocess, process or ray (default: process when --workers > 1)")
    p.add_argument("--out", default="runs/search", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_search)

    p = sub.add_parser("evaluate", help="evaluate one plan", description="Retrain and attack one plan and print its metrics.")
    _env_args(p)
    p.add_argument("--plan", required=True, help="e.g. '13 | 0:C3 8:C3 10:C3'")
    p.add_argument("--json", action="store_true", help="print one JSON object (terminal info + reward)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("export", help="retrain a plan and write deployable device and cloud parts")
    _env_args(p)
    p.add_argument("--plan", required=True, help="e.g. '7 | 3:W2 6:F1'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-onnx", action="store_true", help="write TorchScript only")
    p.set_defaults(func=_export)

    p = sub.add_parser("models", help="list the base networks with parameter and MAC counts")
    p.set_defaults(func=_models)

    p = sub.add_parser("techniques", help="list the compression techniques and their effect on a network")
    p.add_argument("--base", default="alexnet")
    p.add_argument("--partition", type=int, default=None, help="last device layer (default: all but the last)")
    p.set_defaults(func=_techniques)

    p = sub.add_parser("train-base", help="train (or load from the cache) a base network")
    p.add_argument("--base", default="lenet")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--fidelity", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_train_base)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from privacysplit.envs.cache import CacheError

    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, CacheError) as err:
        print(f"privacysplit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("privacysplit: interrupted; finished evaluations are in the cache (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
