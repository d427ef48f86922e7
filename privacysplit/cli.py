"""The ``privacysplit`` command line: search, evaluate, export, and what is available.

User mistakes (unknown names, bad plans, missing files) print one line and exit with
status 2; they never show a traceback.

Why the imports sit inside the functions: importing torch and the attacks costs seconds, so
``--help``, ``models``, ``techniques`` and every mistake that can be caught from the
arguments alone answer before anything heavy loads (a test holds each under a second).
The tables below are therefore static; tests check them against the live registries.
"""

from __future__ import annotations

import argparse
import json
import sys

#: ``privacysplit models``: name, layers, parameters, MACs (3x32x32 input, 10 classes);
#: ``tests/test_cli.py`` rebuilds every network and checks these numbers.
MODELS: tuple[tuple[str, int, int, int], ...] = (
    ("lenet", 11, 62_006, 651_720),
    ("alexnet", 20, 4_361_034, 43_837_440),
    ("vgg11", 30, 9_231_114, 152_769_536),
    ("vgg13", 36, 9_416_010, 228_267_008),
    ("vgg16", 45, 14_728_266, 313_201_664),
    ("resnet18", 13, 11_173_962, 555_422_720),
    ("resnet50", 21, 23_520_842, 1_297_829_888),
    ("mobilenet_v2", 26, 2_237_770, 89_025_024),
    ("wide_resnet28_10", 17, 36_489_290, 5_951_117_568),
    ("inception_v3", 21, 21_626_250, 774_718_464),
    ("fcn", 9, 3_837_066, 3_835_136),
)
MODEL_NAMES = tuple(m[0] for m in MODELS)

#: ``privacysplit techniques``: the paper's Table 2 in action order (``none`` first), with
#: the layers each applies to and its default strength (``CompressionSettings``).
TECHNIQUES: tuple[tuple[str, str, str, str], ...] = (
    ("none", "no compression", "every layer", "the layer stays as trained"),
    ("F1", "SVD low-rank factorisation", "fully connected",
     "W (m x n) -> two factors keeping 25% of the singular values (rank_fraction)"),
    ("F2", "K-SVD sparse-coded factorisation", "fully connected",
     "F1's rank in unit-norm atoms, OMP codes with 25% non-zeros per column, 2 K-SVD iterations (f2_sparsity)"),
    ("C1", "MobileNet depthwise-separable convolution", "convolution",
     "3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU, distilled from the trained layer"),
    ("C2", "MobileNetV2 inverted residual", "convolution",
     "1x1 expand (2x input channels) + 3x3 depthwise + 1x1 project, each with BN (c2_expansion)"),
    ("C3", "SqueezeNet Fire module", "convolution with odd kernel, block",
     "1x1 squeeze to 1/8 of the outputs, then 1x1 and 3x3 expand (c3_squeeze_ratio)"),
    ("W1", "magnitude (unstructured) weight pruning", "convolution, fully connected, block",
     "the smallest 50% of weights set to zero and kept there (w1_sparsity)"),
    ("W2", "filter pruning by L1 norm", "convolution, block",
     "30% of the filters with the smallest L1 norm removed, readers shrunk (w2_ratio)"),
)
TECHNIQUE_NAMES = tuple(t[0] for t in TECHNIQUES)

#: searchers of ``privacysplit.agents.AGENTS`` usable from the command line (``sb3`` needs a
#: model object, so it is library-only); a test checks this against the registry.
AGENT_NAMES = ("bilstm", "random", "exhaustive", "evolution", "tpe", "ppo", "a2c", "maskable_ppo",
               "successive_halving", "hyperband", "screened_evolution")

#: datasets that ship with the package; every other dataset reads files under --data-root
EMBEDDED_DATASETS = ("mnist", "digits")
DISK_DATASETS = ("cifar10", "cifar100", "tinyimagenet", "purchase100", "imagefolder")

THREATS = ("reactive", "proactive")
PRIVACY = ("mse", "ssim", "property")
RESOURCES = ("params", "macs", "latency")
FIDELITY_NAMES = ("smoke", "cpu", "paper")


def _fidelity_spec(text: str) -> str:
    """``--fidelity``: a preset or ``preset:field=value:...``, checked now (argparse reports
    the error with the valid presets and fields) and passed on as written."""
    from privacysplit.fidelity import fidelity_from_spec

    try:
        fidelity_from_spec(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


class UserError(ValueError):
    """A mistake in the arguments: one line on stderr, exit status 2."""


def _env_args(p: argparse.ArgumentParser) -> None:
    """Options shared by every verb that builds an evaluator."""
    p.add_argument("--base", default="lenet",
                   help=f"base network: {', '.join(MODEL_NAMES)}, or your own as file.py:factory; default lenet")
    p.add_argument("--weights", default=None, help="state_dict file to start from instead of training the base network")
    p.add_argument("--dataset", default="mnist",
                   help=f"dataset: {', '.join(EMBEDDED_DATASETS)} (embedded, offline) or "
                        f"{', '.join(DISK_DATASETS)} (read from --data-root); default mnist")
    p.add_argument("--data-root", default=None, help="folder holding an on-disk dataset (only for those)")
    p.add_argument("--fidelity", default="cpu", type=_fidelity_spec,
                   help="training lengths: smoke (tests only; near-chance accuracies), cpu (default) or paper (GPU), "
                        "or preset:field=value:... (e.g. cpu:n_ec=1:shift_attack=scratch)")
    p.add_argument("--threat", default="reactive", choices=THREATS, help="reactive (default) or proactive")
    p.add_argument("--privacy", default="ssim", choices=PRIVACY, help="mse (P0), ssim (P1, default) or property (P2)")
    p.add_argument("--resource", default="params", choices=RESOURCES,
                   help="params (S1, default), macs (S2) or latency (S3)")
    p.add_argument("--profile", default=None,
                   help="device profile for latency (S3): a profile name or a JSON file; default: measured on this host")
    p.add_argument("--thresholds", default=None, help="Eq. 18 tolerances 'A_m,P_m,S_m', e.g. 0.85,0,0.8")
    p.add_argument("--techniques", default=None,
                   help=f"comma-separated subset of Table 2 ({','.join(TECHNIQUE_NAMES[1:])}); default all")
    p.add_argument("--partitions", default=None, help="comma-separated allowed partition layers; default all")
    p.add_argument("--seed", type=int, default=0, help="seed of base training and evaluations")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--cache", default=None,
                   help="evaluation cache file (default under ~/.cache/privacysplit or $PRIVACYSPLIT_CACHE); 'off' disables")


def _csv(text: str | None, cast=str, what: str = "list") -> list | None:
    if text is None:
        return None
    try:
        return [cast(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError as err:
        raise UserError(f"cannot read {text!r} as a comma-separated {what}: {err}") from err


def check_args(args: argparse.Namespace) -> None:
    """Every mistake that the arguments alone reveal, before torch is imported.

    Raises:
        UserError: naming the valid options.
    """
    if args.base not in MODEL_NAMES and ":" not in args.base:
        raise UserError(f"unknown base network {args.base!r}; valid networks: {', '.join(MODEL_NAMES)}")
    if args.dataset not in EMBEDDED_DATASETS + DISK_DATASETS and not _user_dataset(args.dataset):
        raise UserError(f"unknown dataset {args.dataset!r}; valid datasets: {', '.join(EMBEDDED_DATASETS + DISK_DATASETS)}")
    if args.data_root is not None and args.dataset in EMBEDDED_DATASETS:
        raise UserError(f"--data-root is only for datasets read from disk ({', '.join(DISK_DATASETS)}); "
                        f"{args.dataset} is embedded in the package: drop --data-root")
    if args.data_root is None and args.dataset in DISK_DATASETS:
        raise UserError(f"dataset {args.dataset} is read from disk: pass --data-root FOLDER "
                        "(see privacysplit.data.disk for the expected files)")
    thresholds = _csv(args.thresholds, float, "list of numbers")
    if thresholds is not None and len(thresholds) != 3:
        raise UserError(f"--thresholds needs three numbers A_m,P_m,S_m, got {args.thresholds!r}")
    techniques = _csv(args.techniques)
    if techniques is not None:
        bad = [t for t in techniques if t not in TECHNIQUE_NAMES]
        if bad or not techniques:
            raise UserError(f"unknown technique(s) {', '.join(bad) or repr(args.techniques)}; "
                            f"valid: {', '.join(TECHNIQUE_NAMES[1:])}")
    partitions = _csv(args.partitions, int, "list of layer indices")
    if partitions is not None and args.base in MODEL_NAMES:
        layers = dict((m[0], m[1]) for m in MODELS)[args.base]
        bad = [p for p in partitions if not 0 <= p < layers]
        if bad or not partitions:
            raise UserError(f"partition(s) {bad or args.partitions!r} out of range; {args.base} has layers 0..{layers - 1}")
    if getattr(args, "plan", None) is not None:
        from privacysplit.plan import Plan

        try:
            Plan.parse(args.plan)
        except ValueError as err:
            raise UserError(str(err)) from err


def _evaluator(args: argparse.Namespace, **extra):
    from privacysplit.envs.evaluator import Evaluator

    return Evaluator(
        args.base, args.dataset, data_root=args.data_root, fidelity=args.fidelity,
        threat=args.threat, privacy=args.privacy, resource=args.resource,
        thresholds=_csv(args.thresholds, float), techniques=_csv(args.techniques),
        partitions=_csv(args.partitions, int), device=args.device, cache=args.cache, seed=args.seed,
        profile=args.profile, weights=getattr(args, "weights", None), **extra,
    )


def _summary(info: dict) -> str:
    err = f"  error: {info['error']}" if info.get("error") else ""
    return (
        f"{info['plan']}  A={info.get('accuracy', float('nan')):.4f} "
        f"(A_base={info.get('accuracy_base', float('nan')):.4f}) "
        f"P={info.get('privacy_loss', float('nan')):.4f} S={info.get('resource', float('nan')):.4f} "
        f"R={info['reward']:.4f}{err}"
    )


def _user_dataset(name: str) -> bool:
    """Your own data: a .pt file of tensors or a torchvision dataset under --data-root."""
    return name.endswith((".pt", ".pth")) or name.startswith("torchvision:")


def _layers(args: argparse.Namespace) -> int:
    from privacysplit.envs.user_base import layers_report

    shape = _csv(args.input_shape, int, "shape")
    if not shape or any(s < 1 for s in shape):
        raise UserError(f"--input-shape needs positive sizes such as 3,32,32, got {args.input_shape!r}")
    print(layers_report(args.base, shape, weights=args.weights))
    return 0


def _models(args: argparse.Namespace) -> int:
    print("| network | layers | params | MACs |\n|---|---:|---:|---:|")
    for name, layers, params, macs in MODELS:
        print(f"| {name} | {layers} | {params:,d} | {macs:,d} |")
    print("\n(3x32x32 input, 10 classes; `privacysplit techniques --base NAME` shows what each technique does to one)")
    return 0


def _techniques(args: argparse.Namespace) -> int:
    if args.base is None:
        print("| technique | what it is (Table 2) | applies to | default strength |\n|---|---|---|---|")
        for name, title, where, strength in TECHNIQUES:
            print(f"| {name} | {title} | {where} | {strength} |")
        print("\nStrengths are privacysplit.compression.CompressionSettings fields. "
              "`privacysplit techniques --base lenet` measures each technique's effect on a network.")
        return 0
    if args.base not in MODEL_NAMES:
        raise UserError(f"unknown base network {args.base!r}; valid networks: {', '.join(MODEL_NAMES)}")
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


def _readable(info: dict, image_path) -> dict:
    """The info without the packed reconstruction string; its image written to a PNG."""
    from privacysplit.reporting import save_reconstruction

    out = {k: v for k, v in info.items() if k not in ("traceback", "reconstruction")}
    if info.get("reconstruction") and image_path is not None:
        out["reconstruction_png"] = str(save_reconstruction(info["reconstruction"], image_path))
    return out


def _evaluate(args: argparse.Namespace) -> int:
    check_args(args)
    ev = _evaluator(args)
    info = ev.evaluate(args.plan)
    image = args.image
    if image is None:
        from privacysplit.training import cache_dir

        image = cache_dir() / "reconstructions" / f"{ev.key(ev.space.validate(args.plan))[:16]}.png"
    info = _readable(info, None if image == "off" else image)
    if args.json:
        print(json.dumps(info, sort_keys=True))
    else:
        print(_summary(info))
        if "reconstruction_png" in info:
            print(f"reconstructions (originals on top): {info['reconstruction_png']}")
    return 0 if not info.get("error") else 1


def _export(args: argparse.Namespace) -> int:
    from privacysplit.export import export_plan, run_settings

    if args.run is not None:
        run_settings(args)  # fills --plan and the evaluator settings from the search's run.json
    if args.plan is None:
        raise UserError("export needs --plan PLAN or --run SEARCH_FOLDER")
    check_args(args)
    manifest = export_plan(_evaluator(args), args.plan, args.out, onnx=not args.no_onnx, run_dir=args.run)
    print(f"wrote {', '.join(manifest['files'].values())} and manifest.json to {args.out}")
    print(f"weights: {manifest['weights']}")
    if isinstance(manifest["onnx"], dict):
        for part, why in manifest["onnx"].items():
            print(f"onnx {part}: {why}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from privacysplit.agents import agent_name
    from privacysplit.search_run import prepare_run, print_summary, run_search

    check_args(args)
    if agent_name(args.agent) not in AGENT_NAMES:
        raise UserError(f"unknown agent {args.agent!r}; valid agents: {', '.join(AGENT_NAMES)} "
                        "(optionally with :option=value changes, e.g. bilstm:entropy_coef=0.01)")
    if args.budget < 1:
        raise UserError(f"--budget must be a positive integer, got {args.budget}")
    if args.workers < 1:
        raise UserError(f"--workers must be a positive integer, got {args.workers}")
    prepare_run(args)  # folder checks before any training
    executor = args.executor or ("process" if args.workers > 1 else "inprocess")
    result = run_search(args, _evaluator(args, executor=executor, workers=args.workers))
    print_summary(args, result)
    return 0


def _train_base(args: argparse.Namespace) -> int:
    if args.base not in MODEL_NAMES:
        raise UserError(f"unknown base network {args.base!r}; valid networks: {', '.join(MODEL_NAMES)}")
    from privacysplit.training import pretrained_base

    _, acc = pretrained_base(
        args.base, args.dataset, fidelity=args.fidelity, seed=args.seed, device=args.device, progress=True
    )
    print(f"{args.base} on {args.dataset} ({args.fidelity}): validation accuracy {acc:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="privacysplit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser(
        "search", help="search for the best plan",
        description="Run a searcher on PrivacySplit-v0 and write its history, best plan (with its trained weights), "
                    "TensorBoard logs, plots and a report into --out.")
    _env_args(p)
    p.add_argument("--agent", default="bilstm", metavar="AGENT",
                   help=f"searcher: {', '.join(AGENT_NAMES)}, optionally with options as name:option=value:... "
                        "(e.g. bilstm:entropy_coef=0.01); default bilstm")
    p.add_argument("--budget", type=int, default=200,
                   help="plan evaluations (cache hits count); default 200 (about 10 min for lenet at cpu fidelity on 2 idle cores)")
    p.add_argument("--max-seconds", type=float, default=None, help="also stop after this much wall time")
    p.add_argument("--workers", type=int, default=1, help="parallel evaluation workers; default 1")
    p.add_argument("--executor", default=None, choices=("inprocess", "process", "ray"),
                   help="default: process when --workers > 1")
    p.add_argument("--out", default="runs/search", help="output folder; default runs/search")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_search)

    p = sub.add_parser("evaluate", help="evaluate one plan", description="Retrain and attack one plan and print its metrics.")
    _env_args(p)
    p.add_argument("--plan", required=True, help="e.g. '13 | 0:C3 8:C3 10:C3'")
    p.add_argument("--json", action="store_true", help="print one JSON object (terminal info + reward)")
    p.add_argument("--image", default=None,
                   help="where to write the attacker's reconstructions (PNG); 'off' writes none; "
                        "default: a file under the cache folder, printed")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "export", help="write deployable device and cloud parts of a plan",
        description="Write a plan's device and cloud parts (TorchScript, ONNX) and a manifest. With --run, the "
                    "search's settings and best plan are used, and its kept weights when the plan is the one it kept "
                    "(no retraining); otherwise the plan is retrained exactly as the search evaluated it.")
    _env_args(p)
    p.add_argument("--run", default=None, help="a search's --out folder: use its settings, best plan and kept weights")
    p.add_argument("--plan", default=None, help="e.g. '7 | 3:W2 6:F1' (default with --run: the search's best plan)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-onnx", action="store_true", help="write TorchScript only")
    p.set_defaults(func=_export)

    p = sub.add_parser("layers", help="the layer table of a network (yours or the pool's): indices for plans",
                       description="Print a network's layers, their indices (what plans refer to), output shapes, "
                                   "parameters and the compression techniques that apply to each.")
    p.add_argument("--base", required=True, help="a pool network, or your own as file.py:factory or package.module:factory")
    p.add_argument("--input-shape", default="3,32,32", help="C,H,W (or F for features); default 3,32,32")
    p.add_argument("--weights", default=None, help="state_dict file to load (checked against the network)")
    p.set_defaults(func=_layers)

    p = sub.add_parser("models", help="list the base networks with parameter and MAC counts")
    p.set_defaults(func=_models)

    p = sub.add_parser("techniques", help="what each compression technique (F1 ... W2) is, or its effect on a network")
    p.add_argument("--base", default=None, help="measure each technique on this network (loads torch)")
    p.add_argument("--partition", type=int, default=None, help="with --base: last device layer (default: all but the last)")
    p.set_defaults(func=_techniques)

    p = sub.add_parser("train-base", help="train (or load from the cache) a base network")
    p.add_argument("--base", default="lenet", help=f"base network: {', '.join(MODEL_NAMES)}")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--fidelity", default="cpu", type=_fidelity_spec,
                   help="smoke, cpu (default), paper, or preset:field=value:...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_train_base)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("privacysplit: interrupted; finished evaluations are in the cache (use --resume)", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - only user mistakes become one line; the rest re-raises
        if isinstance(err, (ValueError, FileNotFoundError)) or type(err).__name__ == "CacheError":
            print(f"privacysplit: error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
