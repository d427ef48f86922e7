"""Proactive defence trade-off: accuracy against fresh-attacker leakage as lambda grows.

At a few partition points of a base network (default LeNet on mnist, ``cpu`` fidelity),
this evaluates the reactive plan (no compression) once and the proactive plan at each
lambda of ``--lambdas`` (the weight of the game's bounded leakage; ``--game`` picks the
objective: ``dcor``, the default, weighs distance correlation by ``DCOR_SCALE`` x lambda;
``decoder`` plays restarted in-game decoders; see ``privacysplit/attacks/retraining.py``).
Privacy is always measured by a *fresh* attacker against the final frozen encoder, exactly
as in a search (the partition's attack prior, fine-tuned).  ``--reference-lambdas`` re-attacks the proactive encoders of those lambdas
with the slow reference attacker of ``benchmarks/attack_strength.py`` (whole training
split, scratch decoders and the prior trained for many epochs, best of all; on whitened
features as well under a whitening ``attack_input``, column ``ref_input``), so the
shielding is not an artefact of a weak measuring attacker.  ``--noises`` runs every lambda and
the reactive plan again with Gaussian noise of that many times the clean features' std added
to the released features, in training and at release (the environment's ``feature_noise``):
the game and the noise together shield where neither does alone (README, "Proactive
trade-off").

Writes ``proactive_tradeoff.csv``, ``proactive_tradeoff.md``, ``proactive_tradeoff.png``
(accuracy against fresh-attacker SSIM per partition, the reactive point marked) and
``proactive_grid.png`` (originals, then the fresh attacker's reconstructions of the
reactive plan and of each lambda) to ``--out``.  With ``--privacy property`` (P2) the
x axis is the property attacker's accuracy, with the chance level drawn.

Example::

    OMP_NUM_THREADS=1 python benchmarks/proactive_tradeoff.py --partitions 3,6 --lambdas 4,8,16,32,64,128 \\
        --noises 0,0.3 --reference-lambdas 8,64 --update-results

(without ``--update-results`` or ``--out``: a new ``runs/proactive_tradeoff-<time>`` folder).
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from pathlib import Path

import numpy as np
import torch

from privacysplit.attacks import evaluate_split, invert
from privacysplit.attacks.fitting import add_noise, release
from privacysplit.attacks.prior import prior_state
from privacysplit.attacks.retraining import DCOR_GAMES, DCOR_SCALE, DEFAULT_GAME, GAME_OBJECTIVES
from privacysplit.attacks.whitening import read_as, reference_inputs
from privacysplit.data import load_dataset
from privacysplit.fidelity import get_fidelity
from privacysplit.models import split
from privacysplit.reporting import add_output_arguments, resolve_output
from privacysplit.training import pretrained_base

ROOT = Path(__file__).resolve().parents[1]

FIELDS = ["network", "partition", "layer", "privacy", "threat", "game", "adv_lambda", "feature_noise", "accuracy", "leakage", "ssim",
          "mse", "property_accuracy", "property_chance", "attacker", "attack_input_won", "score_prior",
          "score_prior_tuned", "ref_ssim", "ref_mse", "ref_attacker", "ref_input", "train_seconds", "attack_seconds"]
DATA_SEED = 0
N_IMG = 6


def _noisy(feats: torch.Tensor, noise: float, std: float, generator: torch.Generator) -> torch.Tensor:
    """What the encoder releases with ``noise`` x the clean training features' std added
    (as an evaluation releases them)."""
    return add_noise(feats, noise, std=std, generator=generator) if noise > 0 else feats


def _reference(enc, prior_encoder, data, fid, args, noise: float) -> dict:
    """The slow attacker against ``enc`` (the whole training split, every decoder finished, best
    epoch kept), on what the evaluation released, read as every input of
    :func:`~privacysplit.attacks.whitening.reference_inputs` (the better counting)."""
    train = data.train.take(None, DATA_SEED)
    val = data.val.take(fid.n_val, DATA_SEED)
    clean = release(enc, train.x, data.normalize)
    std, gen = float(clean.float().std()), torch.Generator().manual_seed(args.seed + 1)
    feats = _noisy(clean, noise, std, gen), _noisy(release(enc, val.x, data.normalize), noise, std, gen)
    noise_var = (noise * std) ** 2 if noise > 0 else 0.0
    best, best_input = None, None
    for kind in reference_inputs(fid.attack_input):
        prior = prior_state(prior_encoder, data, metric=args.privacy, epochs=fid.prior_epochs,
                            batch_size=fid.batch_size, lr=fid.decoder_lr, seed=DATA_SEED, cache=args.cache,
                            attack_input=kind) if fid.prior_epochs > 0 else None
        _, f, fv = read_as(kind, *feats, noise_var)
        res = invert(enc, f, train.x, fv, val.x, metric=args.privacy, epochs=args.ref_epochs,
                     batch_size=fid.batch_size, lr=fid.decoder_lr, seed=args.seed, selection="full", prior=prior,
                     prior_epochs=args.ref_prior_epochs)
        if best is None or res.privacy_loss > best.privacy_loss:
            best, best_input = res, kind
    return {"ref_ssim": best.ssim, "ref_mse": best.mse, "ref_attacker": best.attacker, "ref_input": best_input}


def run(args: argparse.Namespace) -> tuple[list[dict], dict]:
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    fid = get_fidelity(args.fidelity)
    labels = "coarse" if args.privacy == "property" else "fine"
    base, acc_base = pretrained_base(args.network, data, labels=labels, fidelity=fid, seed=args.seed,
                                     cache=args.cache)
    print(f"{args.network}: A_base={acc_base:.3f}", flush=True)
    rows: list[dict] = []
    samples: dict = {}
    x_show = data.val.take(fid.n_val, DATA_SEED).x[:N_IMG]
    for p in [int(v) for v in args.partitions.split(",")]:
        prior_encoder = base.sub(0, p + 1)
        settings = [(noise, "reactive", 0.0) for noise in args.noises]
        settings += [(noise, "proactive", float(v)) for noise in args.noises for v in args.lambdas.split(",")]
        for noise, threat, lam in settings:
            enc, cloud = split(copy.deepcopy(base), p)
            t0 = time.perf_counter()
            out = evaluate_split(enc, cloud, data, fidelity=fid, threat=threat, privacy=args.privacy, seed=args.seed,
                                 data_seed=DATA_SEED, prior_encoder=prior_encoder, prior_cache=args.cache,
                                 adv_lambda=lam if threat == "proactive" else None, return_attacker=True,
                                 game=args.game, feature_noise=noise)
            row = {"network": args.network, "partition": p, "layer": str(base.layers[p]), "privacy": args.privacy,
                   "threat": threat, "adv_lambda": lam if threat == "proactive" else "", "feature_noise": noise,
                   "leakage": out.get("privacy_loss"),
                   **{k: out.get(k) for k in FIELDS if k in out and k not in ("adv_lambda", "feature_noise")}}
            if args.privacy != "property" and threat == "proactive" and lam in args.reference_lambdas:
                row.update(_reference(enc, prior_encoder, data, fid, args, noise))
            if args.privacy != "property" and out.get("attacker_model") is not None:
                with torch.no_grad():
                    enc.eval()
                    # the std the evaluation scaled its noise by (no release at all without noise)
                    std = float(release(enc, data.train.take(fid.n_train, DATA_SEED).x, data.normalize).float().std()) \
                        if noise > 0 else 0.0
                    shown = _noisy(release(enc, x_show, data.normalize), noise, std,
                                   torch.Generator().manual_seed(args.seed + 2))
                    samples[(p, threat, lam, noise)] = out["attacker_model"](shown).clamp(0, 1)
            rows.append(row)
            print(f"p={p} {threat:9s} {row.get('game', '')} lambda={lam:<5g} noise={noise:<4g} A={row['accuracy']:.3f} "
                  f"leakage={row['leakage']:.4f} attacker={row.get('attacker')} ref={row.get('ref_ssim', '')} "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    samples["original"] = x_show
    return rows, samples


def _attacker(row: dict) -> str:
    """The winning decoder, and under ``attack_input="both"`` the input it read."""
    won = row.get("attack_input_won")
    return f"{row.get('attacker', '')} ({won})" if won else str(row.get("attacker", ""))


def _tile(x: torch.Tensor) -> np.ndarray:
    imgs = x.detach().cpu().numpy()
    imgs = imgs[:, 0] if imgs.shape[1] == 1 else imgs.mean(1)
    return np.concatenate(list(imgs), axis=1)


def write(rows: list[dict], samples: dict, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "proactive_tradeoff" if args.privacy != "property" else "proactive_tradeoff_property"
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    metric = "property accuracy" if args.privacy == "property" else ("SSIM" if args.privacy == "ssim" else "1-MSE/MSE_mean")
    fid = get_fidelity(args.fidelity)
    weight = f"; dCor weight = {DCOR_SCALE:g} x lambda" if args.game in DCOR_GAMES else ""
    lines = [f"# Proactive trade-off ({args.network}/{args.dataset}, fidelity `{args.fidelity}`, privacy "
             f"`{args.privacy}`, game `{args.game}`, seed {args.seed}, {args.threads} thread(s); N_p={fid.n_p}, "
             f"N_ec={fid.n_ec}, N_d={fid.n_d}{weight})", "",
             f"| p | threat | lambda | noise | accuracy | fresh-attacker {metric} | attacker | reference SSIM | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = f"{r['ref_ssim']:.3f}" if isinstance(r.get("ref_ssim"), float) else ""
        lines.append(f"| {r['partition']} | {r['threat']} | {r['adv_lambda']} | {r['feature_noise']:g} | {r['accuracy']:.3f} "
                     f"| {r['leakage']:.3f} | {_attacker(r)} | {ref} | {r.get('train_seconds', 0):.1f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(6, 4.2))
    parts = sorted({r["partition"] for r in rows})
    noises = sorted({float(r["feature_noise"]) for r in rows})
    for k, p in enumerate(parts):
        color = f"C{k}"
        for j, noise in enumerate(noises):  # one line per feature-noise scale: solid, dotted, dashed
            style, tag = ("-", ":", "--", "-.")[j % 4], f" noise {noise:g}" if len(noises) > 1 else ""
            mine = [r for r in rows if r["partition"] == p and float(r["feature_noise"]) == noise]
            pro = [r for r in mine if r["threat"] == "proactive"]
            ax.plot([r["leakage"] for r in pro], [r["accuracy"] for r in pro], "o" + style, color=color,
                    label=f"p={p} proactive{tag}")
            for r in pro:
                ax.annotate(f"λ={r['adv_lambda']:g}", (r["leakage"], r["accuracy"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
            for r in (r for r in mine if r["threat"] == "reactive"):
                ax.plot(r["leakage"], r["accuracy"], "*" if noise == 0 else "P", color=color,
                        markersize=14 if noise == 0 else 10, markeredgecolor="k", label=f"p={p} reactive{tag}")
    if args.privacy == "property":
        chance = [r["property_chance"] for r in rows if r.get("property_chance") is not None]
        if chance:
            ax.axvline(chance[0], color="gray", ls="--", lw=1, label="chance")
    ax.set_xlabel(f"fresh attacker's {metric} (lower = more private)")
    ax.set_ylabel("task accuracy")
    ax.set_title(f"{args.network}/{args.dataset}: proactive λ sweep ({args.fidelity})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=120)
    plt.close(fig)

    if args.privacy != "property" and len(samples) > 1:
        keys = [k for k in samples if k != "original"]
        fig, axes = plt.subplots(len(keys) + 1, 1, figsize=(0.9 * N_IMG + 1, 0.95 * (len(keys) + 1)))
        axes[0].imshow(_tile(samples["original"]), cmap="gray", vmin=0, vmax=1)
        axes[0].set_ylabel("original", fontsize=7, rotation=0, ha="right")
        by_key = {(r["partition"], r["threat"], float(r["adv_lambda"] or 0.0), float(r["feature_noise"])): r
                  for r in rows}
        for ax, key in zip(axes[1:], keys, strict=True):
            p, threat, lam, noise = key
            r = by_key.get(key, {})
            ax.imshow(_tile(samples[key]), cmap="gray", vmin=0, vmax=1)
            label = f"p={p} {threat}" + (f" λ={lam:g}" if threat == "proactive" else "") \
                + (f" noise {noise:g}" if noise else "")
            ax.set_ylabel(f"{label}\nA {r.get('accuracy', 0):.2f} SSIM {r.get('ssim', 0):.2f}", fontsize=6,
                          rotation=0, ha="right", va="center")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(out / "proactive_grid.png", dpi=120, bbox_inches="tight")  # the long row labels too
        plt.close(fig)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--network", default="lenet", help="base network")
    parser.add_argument("--dataset", default="mnist", help="dataset name")
    parser.add_argument("--fidelity", default="cpu", help="fidelity preset")
    parser.add_argument("--privacy", default="ssim", choices=["ssim", "mse", "property"], help="privacy metric")
    parser.add_argument("--partitions", default="3,5,6", help="comma-separated partition indices")
    parser.add_argument("--lambdas", default="4,8,16,24", help="comma-separated proactive lambdas")
    parser.add_argument("--noises", default="0",
                        help="comma-separated feature-noise scales (x the clean features' std) added to the released "
                             "features, in training and at release; every lambda and the reactive plan run at each")
    parser.add_argument("--game", default=DEFAULT_GAME, choices=list(GAME_OBJECTIVES),
                        help="the proactive game's objective (privacysplit.attacks.retraining)")
    parser.add_argument("--reference-lambdas", default="", help="lambdas whose encoders the reference re-attacks")
    parser.add_argument("--ref-epochs", type=int, default=24, help="epochs of the reference's scratch decoders")
    parser.add_argument("--ref-prior-epochs", type=int, default=8, help="epochs the reference fine-tunes the prior")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--cache", default=None, help="cache folder (base weights, attack priors)")
    add_output_arguments(parser, "proactive_tradeoff", "benchmarks/results/proactive_tradeoff", ROOT)
    args = parser.parse_args(argv)
    resolve_output(parser, args)
    args.reference_lambdas = {float(v) for v in args.reference_lambdas.split(",") if v}
    args.noises = [float(v) for v in args.noises.split(",")]
    if any(not np.isfinite(v) or v < 0 for v in args.noises):
        parser.error(f"--noises must be finite numbers >= 0, got {args.noises}")
    write(*run(args), args)


if __name__ == "__main__":
    main()
