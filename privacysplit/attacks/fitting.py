"""The one optimisation loop every attacker and the retraining use, and feature release.

Attackers train with Adam and a cosine-decayed learning rate: at the few hundred steps a
``cpu``-fidelity attack gets, decaying the rate to zero buys a visibly stronger decoder
than a constant rate for the same cost (the last steps polish instead of bouncing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from privacysplit.training import adam, batches


class Fitter:
    """Adam with a cosine-decayed rate over a known total of epochs, runnable in pieces.

    Pieces let an attack warm several decoders up for one epoch, keep the best and finish
    only that one, with its optimiser state and its place in the schedule intact.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        step_loss: Callable[[torch.Tensor], torch.Tensor],
        n: int,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        generator: torch.Generator,
        cosine: bool = True,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.step_loss, self.n, self.epochs = step_loss, n, epochs
        self.batch_size, self.lr, self.generator, self.cosine = batch_size, lr, generator, cosine
        self.opt = adam(self.params, lr) if self.params else None
        self.total_steps = max(1, epochs * math.ceil(max(n, 1) / batch_size))
        self.step = 0
        self.done = 0

    def run(self, epochs: int | None = None) -> float:
        """Train ``epochs`` more epochs (default: all that remain); the last epoch's mean loss.

        Returns NaN as soon as a loss is not finite.
        """
        epochs = self.epochs - self.done if epochs is None else min(epochs, self.epochs - self.done)
        if self.opt is None or epochs <= 0 or self.n == 0:
            return 0.0
        last = 0.0
        for _ in range(epochs):
            total, count = 0.0, 0
            for idx in batches(self.n, self.batch_size, self.generator):
                if self.cosine:
                    for group in self.opt.param_groups:
                        group["lr"] = self.lr * 0.5 * (1.0 + math.cos(math.pi * self.step / self.total_steps))
                self.opt.zero_grad(set_to_none=True)
                loss = self.step_loss(idx)
                if not torch.isfinite(loss):
                    return float("nan")
                loss.backward()
                self.opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                self.step += 1
            last = total / max(count, 1)
            self.done += 1
        return last


def fit(
    params: Iterable[nn.Parameter],
    step_loss: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    cosine: bool = True,
) -> float:
    """Adam over ``epochs`` shuffled passes of ``n`` samples; ``step_loss(idx)`` gives a loss.

    Returns:
        the mean loss of the last epoch, or NaN as soon as a loss is not finite (the caller
        reports divergence instead of raising).
    """
    return Fitter(params, step_loss, n, epochs=epochs, batch_size=batch_size, lr=lr,
                  generator=generator, cosine=cosine).run()


def add_noise(
    feats: torch.Tensor, scale: float, std: torch.Tensor | float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian noise of ``scale`` x the features' standard deviation (Table 7's DP baseline).

    ``std`` fixes the reference deviation (that of the clean training features); by default
    the batch's own, detached so the encoder cannot shrink its features to shrink the noise.
    Seeded noise is drawn on the CPU so the numbers do not depend on the device.
    """
    if scale <= 0:
        return feats
    ref = feats.detach().float().std() if std is None else torch.as_tensor(std)
    if generator is None:
        noise = torch.randn(feats.shape, device=feats.device, dtype=feats.dtype)
    else:
        noise = torch.randn(feats.shape, generator=generator, dtype=feats.dtype).to(feats.device)
    return feats + noise * (scale * ref.to(feats.device, feats.dtype))


@torch.no_grad()
def release(
    encoder: nn.Module,
    x: torch.Tensor,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 256,
) -> torch.Tensor:
    """The features the device releases for ``x``: the encoder in eval mode, no gradients.

    Eval mode and ``no_grad`` leave every weight and batch-norm statistic untouched, which
    is what makes a reactive attack read-only.
    """
    was_training = encoder.training
    encoder.eval()
    try:
        out = [encoder(preprocess(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0)
