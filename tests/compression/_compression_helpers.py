"""Shared helpers: networks built once per test process, in eval mode, with fixed weights."""

from __future__ import annotations

from functools import cache

import torch

from privacysplit.models import Network, build


@cache
def network(name: str) -> Network:
    torch.manual_seed(0)
    net = build(name, input_shape=(600,) if name == "fcn" else None)
    return net.eval()


def batch(net: Network, n: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randn((n, *net.input_shape), generator=generator)


def pairs(net: Network) -> list[tuple[int, str]]:
    from privacysplit.compression import applicable

    return [(i, t) for i, spec in enumerate(net.layers) for t in applicable(spec)[1:]]


@cache
def reference(name: str) -> tuple[torch.Size, int]:
    """Output shape of the base network on :func:`batch` and its parameter count."""
    from privacysplit.models import count_params

    net = network(name)
    with torch.no_grad():
        return net(batch(net)).shape, count_params(net)
