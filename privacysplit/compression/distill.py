"""Distillation: fit a replaced structure to the trained layer's outputs.

C1-C3 swap in a structure whose weights cannot (all) be copied from the trained layer.
Before the plan's retraining starts, a few full-batch Adam steps on a calibration batch fit
the new structure's output to what the original layer produced at the same depth of the
original network.  Its input comes from the compressed network so far, so earlier changes
are compensated too.  The best state seen (the starting one included) is kept, so
distillation never makes a layer worse on the calibration batch.

Batch norms inside the structure (C1, C2) are fitted as retraining will use them, with batch
statistics; afterwards their running statistics are set to the calibration batch's, so the
module computes the same function in evaluation mode as it did in the fit.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

from privacysplit.training import adam


def _norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def _batch_statistics(norms: list[nn.modules.batchnorm._BatchNorm]):
    """Batch norms in training mode (batch statistics) for the duration, flags restored."""
    flags = [n.training for n in norms]
    for n in norms:
        n.train()
    try:
        yield
    finally:
        for n, flag in zip(norms, flags, strict=True):
            n.train(flag)


@torch.no_grad()
def calibrate_norms(module: nn.Module, inputs: torch.Tensor) -> None:
    """Set every batch norm's running mean/variance to its statistics on ``inputs``."""
    norms = _norms(module)
    if not norms:
        return
    momenta = [n.momentum for n in norms]
    for n in norms:
        n.reset_running_stats()
        n.momentum = None  # cumulative average: one batch gives exactly its statistics
    with _batch_statistics(norms):
        module(inputs)
    for n, momentum in zip(norms, momenta, strict=True):
        n.momentum = momentum


def distill(module: nn.Module, inputs: torch.Tensor, target: torch.Tensor, steps: int, lr: float) -> float:
    """Fit ``module(inputs)`` to ``target`` with ``steps`` full-batch Adam steps, keep the best
    state seen, and return its mean squared error relative to the target's variance."""
    params = [p for p in module.parameters() if p.requires_grad]
    scale = target.detach().var().clamp_min(1e-8)
    norms = _norms(module)
    if steps <= 0 or not params:
        with torch.no_grad(), _batch_statistics(norms):
            loss = float(F.mse_loss(module(inputs), target) / scale)
        calibrate_norms(module, inputs)
        return loss
    optimizer = adam(params, lr)
    best, best_state = float("inf"), None
    with _batch_statistics(norms):
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
    calibrate_norms(module, inputs)
    return best
