"""torchvision networks as PrivacySplit bases: layer tables and the cost of a smoke evaluation.

For each of resnet18, mobilenet_v2, vgg11 (3x32x32) and alexnet (3x64x64, its smallest
comfortable input), built with ``weights=None`` and 10 classes, on synthetic learnable
tensors: the number of layers and blocks, the time to build the evaluator (conversion,
trying every technique on every layer, fingerprint, cost model), to train the base network
at ``smoke`` fidelity, and to evaluate two plans (a mid-network split uncompressed, and the
same split with W1 on the first convolution).

    python benchmarks/byo_torchvision.py            # prints a markdown table
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torchvision

from privacysplit.envs.evaluator import Evaluator

MODELS = (("resnet18", 32), ("mobilenet_v2", 32), ("vgg11", 32), ("alexnet", 64))


def tensors(side: int, n: int = 160, nt: int = 40, classes: int = 10):
    g = torch.Generator().manual_seed(0)
    y, ty = torch.arange(n) % classes, torch.arange(nt) % classes
    x = 0.5 * torch.rand(n, 3, side, side, generator=g) + 0.05 * y.view(-1, 1, 1, 1)
    tx = 0.5 * torch.rand(nt, 3, side, side, generator=g) + 0.05 * ty.view(-1, 1, 1, 1)
    return x, y, tx, ty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(m for m, _ in MODELS))
    args = parser.parse_args()
    wanted = args.models.split(",")
    print(f"torch threads: {torch.get_num_threads()}")
    print("| model | input | layers | blocks | build s | base training s | evaluation s (p \\| none) | evaluation s (p \\| 0:W1) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, side in MODELS:
        if name not in wanted:
            continue
        model = getattr(torchvision.models, name)(weights=None, num_classes=10)
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            ev = Evaluator(model, tensors(side), fidelity="smoke", cache=f"{cache}/evals.sqlite")
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            ev.base()
            base = time.perf_counter() - t0
            p = len(ev.structure) // 2
            times = []
            for plan in (f"{p} | none", f"{p} | 0:W1"):
                info = ev.evaluate(plan)
                if info.get("error"):
                    raise SystemExit(f"{name} {plan}: {info['error']}")
                times.append(info["eval_seconds"])
        blocks = sum(s.type == "block" for s in ev.structure.layers)
        print(f"| {name} | 3x{side}x{side} | {len(ev.structure)} | {blocks} | {build:.1f} | {base:.1f} | "
              f"{times[0]:.1f} | {times[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
