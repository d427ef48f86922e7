"""Distillation: fit a replaced structure to the trained layer's outputs.

C1-C3 swap in a structure whose weights cannot (all) be copied from the trained layer.
Before the plan's retraining starts, a few full-batch Adam steps on a calibration batch fit
the new structure's output to what the original layer produced at the same depth of the
original network.  Its input comes from the compressed network so far, so earlier changes
are compensated too.  The best state seen (the starting one included) is kept, so
distillation never makes a layer worse on the calibration batch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def distill(module: nn.Module, inputs: torch.Tensor, target: torch.Tensor, steps: int, lr: float) -> float:
    """Fit ``module(inputs)`` to ``target`` with ``steps`` full-batch Adam steps, keep the best
    state seen, and return its mean squared error relative to the target's variance."""
    params = [p for p in module.parameters() if p.requires_grad]
    scale = target.detach().var().clamp_min(1e-8)
    if steps <= 0 or not params:
        with torch.no_grad():
            return float(F.mse_loss(module(inputs), target) / scale)
    optimizer = torch.optim.Adam(params, lr=lr)
    best, best_state = float("inf"), None
    for step in range(steps + 1):
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(module(inputs), target) / scale
        value = float(loss.detach())
        if value < best:  # the state that produced this loss is the current one
            best = value
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        if step == steps:
            break
        loss.backward()
        optimizer.step()
    module.load_state_dict(best_state)
    return best
