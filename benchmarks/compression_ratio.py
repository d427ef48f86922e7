"""Compression ratio CR (section 7.3.1) of each technique on AlexNet, beside Table 3.

CR = 1 - #params(compressed DNN) / #params(base DNN), counted over the *whole* network
(non-zero parameters, so W1/F2 sparsity counts).  Two tables:

1. each technique applied alone to every layer of the feature part (partition 13) where it
   applies -- the closing note of issue 3 (F1/F2 apply to no layer there, so they are shown
   on the whole network, i.e. its three fully connected layers);
2. the paper's Table 3 plans, with the paper's CR beside ours.

Our AlexNet is the pool's CIFAR variant (3x3 convolutions, a 1024-1024 classifier), whose
convolutions hold about half the parameters; the paper's AlexNet has a much larger
classifier, so the same plans give it far smaller CRs.

With ``--reconstruction``, also F1 against F2 (K-SVD) on the *trained* AlexNet's first fully
connected layer (layer 14, 1024 x 1024; the ``cpu``-fidelity base on the embedded MNIST,
trained once and cached): relative Frobenius error ``||W - D X|| / ||W||``, non-zero
parameters, and the transform's CPU time.  F2 is shown at the default strength for 1-3
iterations, and at ``f2_sparsity = 0.5`` (the non-zeros the pre-K-SVD F2 kept).

Usage: ``python benchmarks/compression_ratio.py [--json out.json] [--reconstruction]``
"""

from __future__ import annotations

import argparse
import json

import torch

from privacysplit.compression import TECHNIQUES, applicable, apply_plan
from privacysplit.models import build, count_params

PARTITION = 13
#: Table 3 of the paper: plan on AlexNet (CIFAR-10) -> CR.
PAPER_TABLE3 = {
    "10:C1": 0.0224,
    "0:W1 3:W1 6:W1 8:W1 10:W1": 0.0645,
    "0:W1 3:W1 6:W1 8:W1 10:C1": 0.0701,
    "0:W2 3:W2 6:W2 8:W2 10:C1": 0.0743,
    "3:C3 6:C3 8:C3 10:C3": 0.0859,
}


def compression_ratio(net, plan: str) -> float:
    encoder, cloud = apply_plan(net, plan)
    return 1 - (count_params(encoder) + count_params(cloud)) / count_params(net)


def reconstruction(rows: list[dict]) -> None:
    """F1 vs F2 on the trained AlexNet's layer 14 (see the module docstring)."""
    import copy
    import time

    from privacysplit.compression import CompressionSettings, get
    from privacysplit.training import pretrained_base

    net, _ = pretrained_base("alexnet", "mnist", fidelity="cpu", seed=0)
    fc, spec = net.body[14], net.layers[14]
    w = fc.weight.detach()
    print(f"\nAlexNet layer 14 (trained, cpu fidelity): {tuple(w.shape)}, {count_params(fc):,} parameters")
    print(f"{'technique':<10}{'f2_sparsity':>12}{'iterations':>11}{'rel. error':>12}{'non-zeros':>11}{'seconds':>9}")
    defaults = CompressionSettings()
    runs = [("F1", defaults)] + [("F2", defaults.with_(f2_iterations=it)) for it in (1, 2, 3)]
    runs.append(("F2", defaults.with_(f2_sparsity=0.5)))
    for name, settings in runs:
        start = time.process_time()
        layer = get(name).transform(copy.deepcopy(fc), spec, settings)
        seconds = time.process_time() - start
        approx = layer[1].weight.detach() @ layer[0].weight.detach()
        error = float((w - approx).norm() / w.norm())
        nonzeros = count_params(layer)
        sp, it = (settings.f2_sparsity, settings.f2_iterations) if name == "F2" else ("", "")
        rows.append({"table": "reconstruction", "technique": name, "f2_sparsity": sp, "iterations": it,
                     "error": error, "nonzeros": nonzeros, "cpu_seconds": seconds})
        print(f"{name:<10}{sp!s:>12}{it!s:>11}{error:>12.4f}{nonzeros:>11,}{seconds:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--reconstruction", action="store_true",
                        help="also F1 vs F2 reconstruction of the trained AlexNet's first fully connected layer")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build("alexnet").eval()
    rows = []
    print(f"AlexNet (pool variant): {count_params(net):,} parameters; partition {PARTITION}\n")
    print(f"{'technique alone':<18}{'plan':<36}{'CR':>8}")
    # strengths: CompressionSettings() defaults
    for name in TECHNIQUES[1:]:
        partition = PARTITION
        layers = [i for i in range(partition + 1) if name in applicable(net.layers[i])]
        if not layers:  # F1/F2: no linear layer in the feature part; use the classifier
            partition = len(net) - 1
            layers = [i for i in range(partition + 1) if name in applicable(net.layers[i])]
        plan = f"{partition} | " + " ".join(f"{i}:{name}" for i in layers)
        cr = compression_ratio(net, plan)
        rows.append({"table": "alone", "plan": plan, "cr": cr})
        print(f"{name:<18}{plan:<36}{cr:>8.4f}")
    print(f"\n{'Table 3 plan':<36}{'paper CR':>10}{'our CR':>10}")
    for body, paper in PAPER_TABLE3.items():
        cr = compression_ratio(net, f"{PARTITION} | {body}")
        rows.append({"table": "table3", "plan": f"{PARTITION} | {body}", "cr": cr, "paper_cr": paper})
        print(f"{body:<36}{paper:>10.4f}{cr:>10.4f}")
    if args.reconstruction:
        reconstruction(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
