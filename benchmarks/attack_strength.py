"""Attack strength: the attacker the search uses against a slower reference, side by side.

For each network (``lenet``, ``vgg11``) on ``mnist`` at one fidelity (default ``cpu``), at
every convolution's partition point (and LeNet's fully connected layers), this runs
:func:`privacysplit.attacks.evaluate_split` reactively and proactively exactly as the
search does (the measuring attacker starts from the partition's attack prior, a decoder
trained once on the base network's features, and fine-tunes it; see
``privacysplit/attacks/prior.py``) and records SSIM, MSE, task accuracy, every candidate's
held-out score, which candidate won, and the wall time of each phase.  The encoder each
evaluation trained is then attacked again, on the same released features:

* ``legacy_*`` -- the attacker evaluations used before the prior (scratch mirror and
  generic decoders, one warm-up epoch each, the better one finishes N_d epochs on the
  training subset);
* ``ref_*`` -- the *reference* attacker: the whole training split, the scratch mirror and
  generic decoders trained ``--ref-epochs`` epochs each (the reference of earlier runs),
  plus the prior fine-tuned ``--ref-prior-epochs`` epochs, every candidate keeping its best
  held-out epoch, the best of all counting.  It is at least as strong as the earlier
  reference (it contains it).  Under a fidelity whose attacker whitens its input
  (``attack_input=whiten`` or ``both``) the reference runs twice, on standardised and on whitened
  features (with the matching prior), and the better counts.

``ssim_gap`` = ref SSIM - SSIM and ``mse_ratio`` = MSE / ref MSE say how much privacy the
search's attacker over-reports.  Writes ``attack_strength.csv`` and ``attack_strength.md``
to ``--out``.

Timings depend on machine load (``cpu_seconds`` is the process CPU time of one evaluation,
less sensitive to it); run with one thread (the default) to match the search's worker
processes.

``--variants`` re-attacks each encoder with other attackers as well, on the same released
features (``variants.csv`` / ``variants.md``): what the README's replays of a changed attack
come from.  A variant is ``kind:key=value:...``; ``kind`` is ``prior`` (the evaluation's
attack: the prior fine-tuned ``ft`` epochs, then, when the features moved away from it, what
the fidelity's ``shift_attack`` does -- at ``cpu``, full-rate rounds of ``e - ft`` epochs with
up to ``r`` warm restarts) or a scratch decoder (``generic``, ``mirror``: ``e`` epochs, best
held-out epoch); keys ``n`` (auxiliary images, a number or ``all`` for the whole training
split), ``e``, ``ft``, ``r``, ``b`` (batch size), ``lr`` (a factor on the decoder's
learning rate), ``w`` (1: whiten the features, with the prior trained on whitened base
features; 0: standardise; ``privacysplit.attacks.whitening``) and ``t`` (the shift tolerance:
how far under its base score the fine-tuned prior may land before the attacker trains on;
``Fidelity.shift_tolerance``) and ``d`` (the prior's decoder, ``generic`` or ``mirror``:
``Fidelity.prior_decoder``).  Every key left out is the evaluation's own, so a bare ``prior`` repeats the
evaluation's attack.

Example::

    python benchmarks/attack_strength.py --networks lenet --update-results
    python benchmarks/attack_strength.py --networks vgg11 --threats reactive --partitions 0,8,18
    python benchmarks/attack_strength.py --networks lenet --threats proactive --partitions 3,8 \
        --reference --no-legacy --variants prior:n=all:e=3:ft=1:r=4 prior:n=2000:e=6:ft=2:r=4:lr=2
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from pathlib import Path

import torch

from privacysplit.attacks import evaluate_split, invert
from privacysplit.attacks.alignment import alignment_target
from privacysplit.attacks.decoders import DECODERS
from privacysplit.attacks.fitting import release
from privacysplit.attacks.prior import attack_prior
from privacysplit.attacks.whitening import input_kinds, read_as, reference_inputs
from privacysplit.data import load_dataset
from privacysplit.fidelity import PRIOR_DECODERS, get_fidelity
from privacysplit.models import split
from privacysplit.reporting import add_output_arguments, resolve_output
from privacysplit.specs import split_spec
from privacysplit.training import pretrained_base

ROOT = Path(__file__).resolve().parents[1]

FIELDS = [
    "network", "partition", "layer", "feature_shape", "threat", "privacy", "adv_lambda", "accuracy", "ssim", "mse",
    "mse_norm", "attacker", "prior_decoder", "score_prior", "score_prior_tuned", "eval_seconds", "cpu_seconds", "prior_seconds",
    "train_seconds", "attack_seconds", "select_seconds", "fit_seconds", "measure_seconds",
    "legacy_ssim", "legacy_mse", "legacy_attacker", "legacy_seconds",
    "ref_ssim", "ref_mse", "ref_attacker", "ref_input", "ref_score_mirror", "ref_score_generic", "ref_score_prior",
    "ref_score_prior_tuned", "ref_seconds", "ssim_gap", "mse_ratio",
]

#: the subsets every evaluation of one setting shares (as the evaluator's data_seed)
DATA_SEED = 0

#: what a ``--variants`` entry may set (see the module docstring), with its parser
VARIANT_KEYS = {"n": lambda v: None if v == "all" else int(v), "e": int, "ft": int, "r": int, "b": int, "lr": float,
                "w": lambda v: {"0": "standardize", "1": "whiten"}[v], "t": float,
                "d": lambda v: {d: d for d in PRIOR_DECODERS}[v]}
VARIANT_FIELDS = ["network", "partition", "threat", "variant", "images", "ssim", "mse", "attacker", "restarts",
                  "seconds", "ssim_gap", "mse_ratio"]


def parse_variant(spec: str) -> tuple[str, dict]:
    """``"prior:n=all:e=3"`` -> ``("prior", {"n": None, "e": 3})``; a ``ValueError`` naming the
    valid kinds or keys for anything else (a typo must not quietly run the default attack)."""
    kind, pairs = split_spec(spec, "attack variant")
    kinds = ("prior", *DECODERS)
    if kind not in kinds:
        raise ValueError(f"unknown attack variant kind {kind!r} in {spec!r}; valid: {', '.join(kinds)}")
    options = {}
    for key, value in pairs:
        if key not in VARIANT_KEYS:
            raise ValueError(f"bad attack variant option {key!r} in {spec!r}; valid keys: {', '.join(VARIANT_KEYS)}")
        try:
            options[key] = VARIANT_KEYS[key](value)
        except (ValueError, KeyError):
            raise ValueError(f"bad value {value!r} for {key!r} in {spec!r}") from None
    if kind != "prior" and {"ft", "r", "t", "d"} & options.keys():
        raise ValueError(f"'ft', 'r', 't' and 'd' apply to the prior only, in {spec!r}")
    return kind, options


class Priors:
    """The partition's attack priors, trained (or loaded) once each per input the decoder
    reads (``Fidelity.attack_input``), with each one's expected score on the base features."""

    def __init__(self, encoder, data, fid, args) -> None:
        self.encoder, self.data, self.fid, self.args = encoder, data, fid, args
        self._got: dict[str, tuple] = {}

    def get(self, attack_input: str, decoder: str | None = None) -> tuple[dict | None, float | None]:
        """The prior reading ``attack_input``, of ``decoder`` (default: the fidelity's
        ``prior_decoder``), and its expected score."""
        if self.fid.prior_epochs <= 0:
            return None, None
        decoder = decoder or self.fid.prior_decoder
        if (attack_input, decoder) not in self._got:
            self._got[attack_input, decoder] = attack_prior(
                self.encoder, self.data, self.fid, metric=self.args.privacy, seed=DATA_SEED,
                attack_input=attack_input, cache=self.args.cache, decoder=decoder)
        return self._got[attack_input, decoder]


def variant_attack(encoder, priors: Priors, data, fid, args, spec: str, threat: str, seed: int) -> dict:
    """One ``--variants`` attacker against the evaluation's encoder, on the same validation images.

    Every option left out is the evaluation's own (``prior`` with no options repeats its attack,
    on each of the fidelity's inputs, the better counting)."""
    kind, o = parse_variant(spec)
    inputs = [o["w"]] if "w" in o else input_kinds(fid.attack_input)
    train = data.train.take(o.get("n", fid.attack_images(threat)), DATA_SEED)
    val = data.val.take(fid.n_val, DATA_SEED)
    t0 = time.perf_counter()
    raw = release(encoder, train.x, data.normalize), release(encoder, val.x, data.normalize)
    n_d, finetune = fid.attack_epochs(threat, len(train.x))  # the evaluation's, for these images
    common = dict(metric=args.privacy, epochs=o.get("e", n_d), batch_size=o.get("b", fid.batch_size),
                  lr=fid.decoder_lr * o.get("lr", 1.0), seed=seed)
    best = None
    for name in inputs:
        _, feats, feats_val = read_as(name, *raw)
        if kind == "prior":
            decoder = o.get("d", fid.prior_decoder)
            prior, expected = priors.get(name, decoder)
            if prior is None:
                raise ValueError("a 'prior' variant needs a fidelity with prior_epochs > 0")
            res = invert(encoder, feats, train.x, feats_val, val.x, **common, prior=prior, prior_decoder=decoder,
                         prior_epochs=o.get("ft", finetune), prior_score=expected, shift_attack=fid.shift_attack,
                         shift_tolerance=o.get("t", fid.shift_tolerance(threat)), restarts=o.get("r", fid.attack_restarts(threat)),
                         generic_options=fid.generic_options(),
                         align_to=alignment_target(priors.encoder, train.x, data.normalize, name)
                         if fid.prior_align != "none" else None, align=fid.prior_align)
        else:
            res = invert(encoder, feats, train.x, feats_val, val.x, **common, decoders=(kind,), selection="full")
        if best is None or res.privacy_loss > best.privacy_loss:
            best = res
    return {"variant": spec, "images": len(train.x), "ssim": best.ssim, "mse": best.mse, "attacker": best.attacker,
            "restarts": best.restarts, "seconds": time.perf_counter() - t0}


def partitions(net, name: str) -> list[int]:
    """Each convolution's index, plus the hidden fully connected layers for LeNet."""
    points = [i for i, s in enumerate(net.layers) if s.type == "conv"]
    if name == "lenet":
        points += [i for i, s in enumerate(net.layers[:-1]) if s.type == "linear"]
    return points


def legacy_attack(encoder, data, fid, args, seed: int) -> dict:
    """The attacker evaluations used before the prior, on the evaluation's own subsets."""
    train = data.train.take(fid.n_train, DATA_SEED)
    val = data.val.take(fid.n_val, DATA_SEED)
    t0 = time.perf_counter()
    res = invert(encoder, release(encoder, train.x, data.normalize), train.x,
                 release(encoder, val.x, data.normalize), val.x, metric=args.privacy, epochs=fid.n_d,
                 batch_size=fid.batch_size, lr=fid.decoder_lr, seed=seed, selection="warmup")
    return {"legacy_ssim": res.ssim, "legacy_mse": res.mse, "legacy_attacker": res.attacker,
            "legacy_seconds": time.perf_counter() - t0}


def reference_attack(encoder, priors: Priors, data, fid, args, seed: int) -> dict:
    """The slow attacker: all training images, every candidate finished, best epoch kept; on
    standardised features, and on whitened ones as well when the fidelity's attacker whitens
    (the better of the two counts: the reference stays at least as strong as the attacker
    it checks)."""
    train = data.train.take(None, DATA_SEED)
    val = data.val.take(fid.n_val, DATA_SEED)
    t0 = time.perf_counter()
    raw = release(encoder, train.x, data.normalize), release(encoder, val.x, data.normalize)
    best, best_input = None, None
    inputs = args.reference_inputs or reference_inputs(fid.attack_input)
    for kind in inputs:
        _, feats, feats_val = read_as(kind, *raw)
        res = invert(encoder, feats, train.x, feats_val, val.x, metric=args.privacy, epochs=args.ref_epochs,
                     batch_size=fid.batch_size, lr=fid.decoder_lr, seed=seed, selection="full",
                     prior=priors.get(kind)[0], prior_decoder=fid.prior_decoder, prior_epochs=args.ref_prior_epochs,
                     generic_options=fid.generic_options())
        if best is None or res.privacy_loss > best.privacy_loss:
            best, best_input = res, kind
    return {"ref_ssim": best.ssim, "ref_mse": best.mse, "ref_attacker": best.attacker, "ref_input": best_input,
            **{f"ref_score_{k}": v for k, v in best.scores.items()},
            "ref_seconds": time.perf_counter() - t0}


def run(args: argparse.Namespace, variants: list[dict] | None = None) -> list[dict]:
    """The rows of ``attack_strength.csv``; each ``--variants`` attack's row goes to ``variants``."""
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    fid = get_fidelity(args.fidelity)
    if args.adv_lambda is not None:
        fid = fid.with_(name=fid.name, adv_lambda=args.adv_lambda)
    rows = []
    for name in args.networks:
        base, acc_base = pretrained_base(name, data, fidelity=fid, seed=args.seed, cache=args.cache,
                                         progress=True)
        points = [int(p) for p in args.partitions.split(",")] if args.partitions else partitions(base, name)
        print(f"{name}: A_base={acc_base:.3f}, partitions {points}", flush=True)
        for p in points:
            prior_encoder = base.sub(0, p + 1)
            priors = Priors(prior_encoder, data, fid, args)
            # the evaluation's prior, trained (or loaded) before the timed evaluation: it is paid
            # once per partition
            for kind in input_kinds(fid.attack_input):
                priors.get(kind)
            for threat in args.threats:
                if fid.prior_align != "none":  # the base features the plan's are mapped onto: like
                    aux = data.train.take(fid.attack_images(threat), DATA_SEED).x  # the prior, once a partition
                    for kind in input_kinds(fid.attack_input):
                        alignment_target(prior_encoder, aux, data.normalize, kind)
                enc, cloud = split(copy.deepcopy(base), p)
                t0, c0 = time.perf_counter(), time.process_time()
                out = evaluate_split(enc, cloud, data, fidelity=fid, threat=threat, privacy=args.privacy,
                                     seed=args.seed, data_seed=DATA_SEED, prior_encoder=prior_encoder,
                                     prior_cache=args.cache)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                row = {
                    "network": name, "partition": p, "layer": str(base.layers[p]),
                    "feature_shape": "x".join(map(str, release(enc, data.val.x[:1], data.normalize).shape[1:])),
                    "threat": threat, "privacy": args.privacy, "adv_lambda": fid.adv_lambda,
                    "eval_seconds": wall - out.get("prior_seconds", 0.0),
                    "cpu_seconds": cpu - out.get("prior_seconds", 0.0),
                    **{k: out.get(k) for k in ("accuracy", "ssim", "mse", "mse_norm", "attacker", "prior_decoder", "score_prior",
                                               "score_prior_tuned", "prior_seconds", "train_seconds",
                                               "attack_seconds", "select_seconds", "fit_seconds",
                                               "measure_seconds", "attack_images", "attack_restarts")},
                }
                if args.legacy:
                    row.update(legacy_attack(enc, data, fid, args, args.seed))
                if threat in args.reference and name in args.reference_networks:
                    row.update(reference_attack(enc, priors, data, fid, args, args.seed))
                    row["ssim_gap"] = row["ref_ssim"] - row["ssim"]
                    row["mse_ratio"] = row["mse"] / max(row["ref_mse"], 1e-12)
                for spec in args.variants:
                    v = {"network": name, "partition": p, "threat": threat,
                         **variant_attack(enc, priors, data, fid, args, spec, threat, args.seed)}
                    if row.get("ref_ssim") is not None:
                        v["ssim_gap"] = row["ref_ssim"] - v["ssim"]
                        v["mse_ratio"] = v["mse"] / max(row["ref_mse"], 1e-12)
                    print("  variant " + " ".join(f"{k}={_fmt(x)}" for k, x in v.items()), flush=True)
                    if variants is not None:
                        variants.append(v)
                rows.append(row)
                print(" ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
    return rows


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _cell(row: dict, key: str, fmt: str = ".3f") -> str:
    v = row.get(key)
    return "" if v is None or v == "" else (f"{v:{fmt}}" if isinstance(v, float) else str(v))


def write(rows: list[dict], args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "attack_strength.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    fid = get_fidelity(args.fidelity)
    lines = [
        f"# Attack strength ({args.dataset}, fidelity `{args.fidelity}`, privacy `{args.privacy}`, "
        f"{args.threads} thread(s), seed {args.seed}; reference: {args.ref_epochs} scratch epochs, "
        f"prior fine-tuned {args.ref_prior_epochs} epochs, whole training split; prior "
        f"{fid.prior_epochs} epochs, fine-tuned {fid.prior_finetune} in the evaluation)",
        "",
        "| network | p | layer | features | threat | acc | SSIM | MSE | attacker | eval s | cpu s "
        "| legacy SSIM | legacy MSE | legacy s | ref SSIM | ref MSE | ref attacker | ref s | SSIM gap | MSE/ref |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['partition']} | {r['layer']} | {r['feature_shape']} | {r['threat']} "
            f"| {_cell(r, 'accuracy')} | {_cell(r, 'ssim')} | {_cell(r, 'mse', '.4f')} | {r['attacker']} "
            f"| {_cell(r, 'eval_seconds', '.1f')} | {_cell(r, 'cpu_seconds', '.1f')} "
            f"| {_cell(r, 'legacy_ssim')} | {_cell(r, 'legacy_mse', '.4f')} | {_cell(r, 'legacy_seconds', '.1f')} "
            f"| {_cell(r, 'ref_ssim')} | {_cell(r, 'ref_mse', '.4f')} | {_cell(r, 'ref_attacker')} "
            f"| {_cell(r, 'ref_seconds', '.0f')} | {_cell(r, 'ssim_gap', '+.3f')} | {_cell(r, 'mse_ratio', '.2f')} |"
        )
    (out / "attack_strength.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_variants(variants: list[dict], rows: list[dict], args: argparse.Namespace) -> None:
    """``variants.csv`` and ``variants.md``: each variant beside the evaluation's own attacker."""
    out = Path(args.out)
    with open(out / "variants.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=VARIANT_FIELDS)
        w.writeheader()
        for r in variants:
            w.writerow({k: r.get(k, "") for k in VARIANT_FIELDS})
    lines = [
        f"# Attack variants ({args.dataset}, fidelity `{args.fidelity}`, privacy `{args.privacy}`, "
        f"{args.threads} thread(s), seed {args.seed}; the same released features as `attack_strength.md`)",
        "",
        "| network | p | threat | attacker | images | SSIM | MSE | winner | restarts | attack s | SSIM gap | MSE/ref |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        own = {"variant": f"the evaluation's (`{args.fidelity}`)", "images": r.get("attack_images", ""),
               "seconds": r.get("attack_seconds"), "restarts": r.get("attack_restarts", ""), **r}
        for v in [own] + [v for v in variants if (v["network"], v["partition"], v["threat"])
                          == (r["network"], r["partition"], r["threat"])]:
            lines.append(
                f"| {r['network']} | {r['partition']} | {r['threat']} | {v['variant']} | {v['images']} "
                f"| {_cell(v, 'ssim')} | {_cell(v, 'mse', '.4f')} | {v['attacker']} | {v['restarts']} "
                f"| {_cell(v, 'seconds', '.1f')} | {_cell(v, 'ssim_gap', '+.3f')} | {_cell(v, 'mse_ratio', '.2f')} |")
    (out / "variants.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["lenet", "vgg11"],
                        help="base networks to attack")
    parser.add_argument("--dataset", default="mnist", help="dataset name")
    parser.add_argument("--fidelity", default="cpu", help="fidelity preset (smoke, cpu, paper), or preset:field=value:... (e.g. cpu:prior_epochs=32)")
    parser.add_argument("--threats", nargs="+", default=["reactive", "proactive"],
                        choices=["reactive", "proactive"], help="threat models to run")
    parser.add_argument("--privacy", default="ssim", choices=["ssim", "mse"],
                        help="inversion metric the attacker optimises")
    parser.add_argument("--partitions", default="",
                        help="comma-separated partition indices (default: every conv, and LeNet's FCs)")
    parser.add_argument("--reference", nargs="*", default=["reactive", "proactive"],
                        help="threats whose encoders the slow reference attacker re-attacks")
    parser.add_argument("--reference-networks", nargs="*", default=["lenet", "vgg11"],
                        help="networks to run the reference attacker on")
    parser.add_argument("--ref-epochs", type=int, default=24, help="epochs of the reference's scratch decoders")
    parser.add_argument("--ref-prior-epochs", type=int, default=8,
                        help="epochs the reference fine-tunes the prior")
    parser.add_argument("--reference-inputs", nargs="+", default=None, choices=["standardize", "whiten"],
                        help="the inputs the reference attacks, the better counting (default: standardised, and "
                             "whitened as well when the fidelity's attacker whitens)")
    parser.add_argument("--no-legacy", dest="legacy", action="store_false",
                        help="skip the pre-prior attacker (the 'before' columns)")
    parser.add_argument("--adv-lambda", type=float, default=None, help="proactive lambda (default: the fidelity's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--cache", default=None, help="cache folder (base weights, attack priors)")
    parser.add_argument("--variants", nargs="*", default=[],
                        help="other attackers to re-attack every encoder with, e.g. prior:n=all:e=3:ft=1 "
                             "generic:e=12 (module docstring); written to variants.csv / variants.md")
    add_output_arguments(parser, "attack_strength", "benchmarks/results/attack_strength", ROOT)
    args = parser.parse_args(argv)
    for spec in args.variants:
        try:
            parse_variant(spec)
        except ValueError as err:
            parser.error(str(err))
    resolve_output(parser, args)
    variants: list[dict] = []
    rows = run(args, variants)
    write(rows, args)
    if args.variants:
        write_variants(variants, rows, args)


if __name__ == "__main__":
    main()
