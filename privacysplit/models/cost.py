"""On-device cost of an encoder: parameters, MACs, feature size and latency (section 5.4).

* Parameters count only non-zero entries, so unstructured pruning (W1) really shrinks the
  storage figure, while filter pruning (W2) shrinks the tensors themselves.
* MACs come from :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs / 2), which counts
  every convolution and matrix product PyTorch actually runs, including grouped and
  depthwise ones; tests cross-check it against the paper's Eq. 9-10 on plain layers.
* Latency is ``T_e + T_t`` (Eq. 12): on-device compute time from a :class:`DeviceProfile`
  (MAC rate per layer type, element rate for MAC-free layers, a per-layer overhead) plus the
  time to send the features over the uplink.  ``T(total)`` runs the whole model on the
  device and sends nothing.  The shipped profiles, their sources, and when S3 = 0 is simply
  the physics are in :mod:`privacysplit.models.profiles`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from privacysplit.models.network import Network
from privacysplit.models.profiles import DeviceProfile


def count_params(module: nn.Module, nonzero: bool = True) -> int:
    """Number of parameters of ``module``; with ``nonzero`` only the surviving weights.

    With ``nonzero``, weight tensors (two or more dimensions: kernels and matrices, what
    pruning removes) count their non-zero entries; one-dimensional tensors (biases, batch
    norm) always count in full, since a bias that happens to be zero is still stored.
    Pruning masks registered as buffers (``weight_mask``, as ``torch.nn.utils.prune`` does)
    are honoured through the effective weight, so a W1-pruned layer counts only its
    surviving weights.
    """
    total = 0
    for p in module.parameters():
        total += int(torch.count_nonzero(p).item()) if nonzero and p.dim() > 1 else p.numel()
    if nonzero:
        # torch.nn.utils.prune keeps weight_orig (dense) + weight_mask; count the mask.
        for name, buf in module.named_buffers():
            if name.endswith("_mask"):
                orig = dict(module.named_parameters())[name[: -len("_mask")] + "_orig"]
                total -= int(torch.count_nonzero(orig).item())
                total += int(torch.count_nonzero(buf * orig).item())
    return total


@torch.no_grad()
def layer_shapes(net: Network, input_shape: tuple[int, ...] | None = None) -> list[tuple[int, ...]]:
    """Output shape (without the batch dimension) of every layer of ``net``."""
    shape = input_shape or net.input_shape
    was_training = net.training
    net.eval()
    try:
        x = torch.zeros((1, *shape), device=_device_of(net))
        shapes = []
        for i in range(len(net)):
            x = net.forward_range(x, i, i + 1)
            shapes.append(tuple(x.shape[1:]))
    finally:
        net.train(was_training)
    return shapes


@torch.no_grad()
def layer_macs(net: Network, input_shape: tuple[int, ...] | None = None) -> list[int]:
    """Multiply-accumulates of every layer of ``net`` for one input (FLOPs / 2)."""
    shape = input_shape or net.input_shape
    was_training = net.training
    net.eval()
    try:
        x = torch.zeros((1, *shape), device=_device_of(net))
        macs = []
        for i in range(len(net)):
            with FlopCounterMode(display=False) as counter:
                x = net.forward_range(x, i, i + 1)
            macs.append(int(counter.get_total_flops()) // 2)
    finally:
        net.train(was_training)
    return macs


def _device_of(net: nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


@dataclass(frozen=True)
class EncoderCost:
    """Cost of running layers ``0..p`` of a network on the device."""

    params: int
    macs: int
    feature_bytes: int
    compute_s: float
    transfer_s: float

    @property
    def latency_s(self) -> float:
        return self.compute_s + self.transfer_s


class CostModel:
    """Per-layer costs of one network, computed once and summed per partition.

    ``encoder_cost(p)`` is then a cheap sum, which keeps non-terminal environment steps in
    the microsecond range.

    Args:
        net: the network, or a compressed encoder (a prefix of a longer network).
        profile: device profile for latency.
        dtype_bytes: bytes per feature element sent over the uplink.
        full_length: layers of the full network ``net`` is a prefix of (default: ``net``
            is the full network); features are sent unless the prefix reaches its end.
        nonzero: count only the surviving weights (a compressed encoder: pruned weights are
            not shipped).  ``False`` counts every weight, as an uncompressed network stores
            them: the denominator of S1 is costed on a freshly initialised structure, where a
            weight that happens to be exactly zero (one in about 2^24 draws) still takes its
            slot.  Counting it as absent made the denominator follow the process's global RNG
            state: a resumed search once saw 61,705 where the uninterrupted one saw 61,706.
    """

    def __init__(
        self,
        net: Network,
        profile: DeviceProfile | None = None,
        dtype_bytes: int = 4,
        full_length: int | None = None,
        nonzero: bool = True,
    ) -> None:
        self.net = net
        self.full_length = full_length if full_length is not None else net.offset + len(net)
        self.profile = profile or DeviceProfile()
        self.dtype_bytes = dtype_bytes
        self.shapes = layer_shapes(net)
        self.macs = layer_macs(net)
        self.params = [count_params(m, nonzero=nonzero) for m in net.body]
        self.elems = [int(torch.Size(s).numel()) for s in self.shapes]
        self.types = [spec.type for spec in net.layers]

    def encoder_cost(self, p: int) -> EncoderCost:
        n = p + 1
        last = self.net.offset + n == self.full_length
        feature_bytes = 0 if last else self.elems[p] * self.dtype_bytes
        return EncoderCost(
            params=sum(self.params[:n]),
            macs=sum(self.macs[:n]),
            feature_bytes=feature_bytes,
            compute_s=self.profile.compute_time(self.types[:n], self.macs[:n], self.elems[:n]),
            transfer_s=self.profile.transfer_time(feature_bytes),
        )

    def total(self) -> EncoderCost:
        """The whole model on the device: the denominator of S1-S3."""
        return self.encoder_cost(len(self.net) - 1)


def resource_savings(encoder: EncoderCost, total: EncoderCost) -> dict[str, float]:
    """S1 (params), S2 (MACs) and S3 (latency) of Eq. 8, 11, 12, each clipped to [0, 1]."""

    def saving(part: float, whole: float) -> float:
        return max(0.0, 1.0 - part / whole) if whole > 0 else 0.0

    return {
        "S1": saving(encoder.params, total.params),
        "S2": saving(encoder.macs, total.macs),
        "S3": saving(encoder.latency_s, total.latency_s),
    }
