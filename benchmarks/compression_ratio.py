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

Usage: ``python benchmarks/compression_ratio.py [--json out.json]``
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the rows to this file")
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
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
