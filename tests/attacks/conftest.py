"""Helpers for attack tests: tiny hand-made encoders and small fidelities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from privacysplit.fidelity import get_fidelity
from privacysplit.models import LayerSpec, Network

#: a short but meaningful attack: ~1-2 s per LeNet evaluation on one thread
QUICK = get_fidelity("cpu").with_(name="quick", n_train=1000, n_val=300, n_ec=1, n_d=4)


class Constant(nn.Module):
    """An encoder layer whose output ignores its input (a learnable constant vector)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.randn(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], -1)


def identity_split(input_shape=(1, 32, 32), classes: int = 10) -> tuple[Network, Network]:
    """An encoder that releases its (normalised) input unchanged, and a linear cloud."""
    flat = int(torch.tensor(input_shape).prod())
    enc = Network([LayerSpec("dropout")], [nn.Identity()], name="identity", input_shape=input_shape)
    cloud = Network([LayerSpec("linear", 0, 0, 0, flat, classes)], [nn.Linear(flat, classes)],
                    name="identity", input_shape=input_shape, offset=1)
    return enc, cloud


def constant_split(input_shape=(1, 32, 32), classes: int = 10, features: int = 16) -> tuple[Network, Network]:
    """An encoder whose features do not depend on the input at all."""
    flat = int(torch.tensor(input_shape).prod())
    enc = Network([LayerSpec("linear", 0, 0, 0, flat, features)], [Constant(features)], name="constant",
                  input_shape=input_shape)
    cloud = Network([LayerSpec("linear", 0, 0, 0, features, classes)], [nn.Linear(features, classes)],
                    name="constant", input_shape=input_shape, offset=1)
    return enc, cloud


@pytest.fixture(scope="session")
def mnist():
    from privacysplit.data import load_dataset

    return load_dataset("mnist")
