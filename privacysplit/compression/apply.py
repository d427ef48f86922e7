"""Apply a whole plan (partition + per-layer techniques) to a base network in one call."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn

from privacysplit.compression.distill import distill
from privacysplit.compression.registry import applicable, get
from privacysplit.compression.settings import CompressionSettings
from privacysplit.models import Network, split
from privacysplit.plan import Plan


def describe(model: Network, index: int) -> str:
    """``layer 3 (relu) of lenet``: how errors name a layer."""
    return f"layer {index} ({model.layers[index]}) of {model.name}"


def validate_plan(model: Network, plan: Plan | str) -> Plan:
    """Check ``plan`` against ``model`` without building anything; returns the parsed plan.

    Raises:
        ValueError: for a partition outside the network, a layer beyond the partition, an
            unknown technique, or a technique that does not apply to its layer (naming the
            layer, its type and the valid choices).
    """
    plan = Plan.parse(plan)
    last = len(model) - 1
    if not 0 <= plan.partition <= last:
        raise ValueError(
            f"partition {plan.partition} is outside {model.name} (valid: 0..{last}) in plan '{plan}'"
        )
    for index, name in plan.techniques:
        if index > plan.partition:
            raise ValueError(
                f"layer {index} lies beyond partition {plan.partition} in plan '{plan}'; "
                f"only device-side layers 0..{plan.partition} can be compressed"
            )
        compressor = get(name)
        if not compressor.applies_to(model.layers[index]) or not model.layers[index].allows(name):
            raise ValueError(
                f"technique {name!r} does not apply to {describe(model, index)}; "
                f"valid choices for a {model.layers[index].type} layer: "
                f"{', '.join(applicable(model.layers[index]))}"
            )
    return plan


def apply_plan(
    model: Network,
    plan: Plan | str,
    settings: CompressionSettings | None = None,
    *,
    calib: torch.Tensor | None = None,
    distill_steps: int = 0,
) -> tuple[Network, Network]:
    """Compress the device side of ``model`` as ``plan`` says and split it.

    The model is deep-copied first, so ``model`` stays bit-identical.  Techniques are applied
    in layer order; each compressed layer replaces its slot, so indices never move.  W2 also
    shrinks the layers that read the pruned channels, the cloud's first layer included.

    Args:
        model: the trained base network.
        plan: a :class:`~privacysplit.plan.Plan` or its string form ``"9 | 0:W1 3:C3"``.
        settings: technique strengths (defaults: :class:`CompressionSettings`).
        calib: a batch of normalised inputs; with ``distill_steps > 0`` the replaced
            structures (C1-C3) are fitted to the original layers' outputs on it.
        distill_steps: Adam steps per replaced layer (``Fidelity.distill_steps``).

    Returns:
        ``(encoder, cloud)``: layers ``0..partition`` and the rest, new networks sharing the
        compressed copy's modules (``cloud`` offset by ``partition + 1``).

    Raises:
        ValueError: see :func:`validate_plan`; also for a negative ``distill_steps``.
    """
    plan = validate_plan(model, plan)
    settings = settings or CompressionSettings()
    if isinstance(distill_steps, bool) or not isinstance(distill_steps, int) or distill_steps < 0:
        raise ValueError(f"distill_steps must be a non-negative integer, got {distill_steps!r}")
    if calib is not None and (
        not isinstance(calib, torch.Tensor) or tuple(calib.shape[1:]) != tuple(model.input_shape)
    ):
        shape = tuple(calib.shape) if isinstance(calib, torch.Tensor) else type(calib).__name__
        raise ValueError(
            f"calib must be a tensor of shape (N, {', '.join(map(str, model.input_shape))}), got {shape}"
        )
    net = copy.deepcopy(model)
    for index, name in plan.techniques:
        try:
            get(name).apply(net, index, settings)
        except ValueError as err:
            raise ValueError(f"cannot apply {name} to {describe(model, index)}: {err}") from err
    replaced = sorted(i for i, name in plan.techniques if get(name).replaces)
    if replaced and calib is not None and distill_steps > 0:
        calib = calib[: settings.distill_samples]
        _distill(model, net, replaced, calib, distill_steps, settings.distill_lr)
    return split(net, plan.partition)


@contextmanager
def _eval(*modules: nn.Module):
    """Evaluation mode for the duration, restoring every submodule's own flag after."""
    flags = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _distill(
    model: Network, net: Network, replaced: list[int], calib: torch.Tensor, steps: int, lr: float
) -> None:
    targets = set(replaced)
    with _eval(model, net):
        x_orig = x_comp = calib
        for i in range(replaced[-1] + 1):
            with torch.no_grad():
                y_orig = model.forward_range(x_orig, i, i + 1)
            if i in targets:
                inputs = x_comp
                if net.layers[i].type == "linear" and inputs.dim() > 2:
                    inputs = torch.flatten(inputs, 1)
                with torch.enable_grad():
                    distill(net.body[i], inputs, y_orig, steps, lr)
            with torch.no_grad():
                x_comp = net.forward_range(x_comp, i, i + 1)
            x_orig = y_orig
