"""Device profiles for the latency metric S3 (Eq. 12), and the named ones this library ships.

A :class:`DeviceProfile` says how fast a device runs each layer type and how fast it uploads:

* ``T_e`` (on-device time) sums, over the encoder's layers, a fixed ``layer_overhead_s`` plus
  ``MACs / mac_rate[type]`` for layers that multiply (conv, block, linear) or
  ``output elements / elem_rate[type]`` for the others (bn, relu, pool).  Dropout and
  flatten cost nothing: an inference graph has no dropout, and a flatten is a view.
* ``T_t`` (transfer) is the released features' bytes times 8 over ``uplink_bps``.
* ``T(total)`` runs the whole network on the device and sends nothing.

**When S3 = 0 is the physics.**  S3 = max(0, 1 - (T_e + T_t) / T(total)) is 0 whenever
sending a partition's features takes longer than the device would need to finish the whole
network itself.  The pool's networks are small and their inputs 32x32, so a whole network
runs in milliseconds, while even a late, small feature map (AlexNet's 1,024 float32 values
before the classifier, 4 KB) takes 1.6 ms on a 20 Mbit/s phone uplink and 0.3 ms at
100 Mbit/s.  On ``midrange_phone`` (fast CPU, cellular uplink) S3 is therefore 0 at every
split of alexnet and vgg11: there, keeping the whole network on the phone *is* the fastest
plan, and a latency-driven search rightly says so.  S3 only rewards splitting where the
device is slow relative to its link (``jetson_tx2``, the default).

Shipped profiles (:data:`PROFILES`; ``DeviceProfile.load(name)``):

``jetson_tx2`` (default)
    The paper's Table 11 device: NVIDIA Jetson TX2, PyTorch eager on its GPU, float32, one
    image at a time.  Sources: NVIDIA's Jetson TX2 module data sheet (256-core Pascal GPU,
    8 GB LPDDR4 on a 128-bit bus at 58.4-59.7 GB/s, 802.11ac 2x2 Wi-Fi and Gigabit
    Ethernet); peak float32 throughput 256 cores x 2 FLOP per FMA x 1.3-1.47 GHz =
    0.67-0.75 TFLOP/s, i.e. ~333 GMAC/s.  Efficiencies, overhead and link are assumptions,
    written beside each number below; the paper does not publish its profile (its Table 11
    latencies of ~5 s are for a whole evaluation run, not one image).
``midrange_phone``
    A 2023-24 mid-range Android phone (Snapdragon 7-series / Dimensity 7000-series class:
    four Cortex-A78/A710-class performance cores at ~2.4 GHz, LPDDR4X), float32 CPU
    inference through an XNNPACK-style runtime on 4 threads, uploading over cellular.
    Sources: Arm's Cortex-A78 has two 128-bit NEON FMA pipes (8 float32 MACs per cycle per
    core, ~19 GMAC/s at 2.4 GHz); LPDDR4X-4266 on 4x16 bits peaks at 34 GB/s; Ookla's
    Speedtest Intelligence put the global median 5G *upload* at 21.08 Mbit/s (Q3 2021; 4G
    is slower).  Efficiencies and overhead are assumptions, beside each number.
``host``
    This machine, micro-benchmarked at first use (one image: a 3x3 convolution, a
    matrix-vector product, a ReLU and a max-pool, and the cost of one tiny layer call), rounded
    to two significant figures and remembered for the process, so one run keeps one cache
    key.  The uplink is assumed (100 Mbit/s, the same link as ``jetson_tx2``, so the two
    differ only in compute).  Save it (``DeviceProfile.load("host").save("host.json")``)
    and pass the file to reproduce numbers on another day: measurements on a shared machine
    move by tens of percent, and they use torch's thread count -- on this 2-core machine
    under heavy load, two threads measured VGG11's T(total) at 261 ms against 3.5 ms with one.

Limits of the model: one rate per layer type, so a depthwise or grouped convolution (C1, C2)
is credited with its full MAC saving, although real devices run depthwise convolutions far
below their dense rate (memory-bound); energy is not modelled.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

#: layer types whose cost is MACs over a MAC rate
MAC_TYPES: tuple[str, ...] = ("conv", "block", "linear")
#: layer types whose cost is output elements over an element rate
ELEM_TYPES: tuple[str, ...] = ("bn", "relu", "pool")
#: layer types that vanish from an inference graph: no time at all
FREE_TYPES: tuple[str, ...] = ("dropout", "flatten")

# --- jetson_tx2: every number with its source or assumption -----------------------------
_TX2_MAC_RATE = {
    # 15 % of the ~333 GMAC/s float32 peak (256 CUDA cores x 2 FLOP/FMA x 1.3 GHz): an
    # assumption for batch-1 convolutions on <= 64 x 32 x 32 feature maps, which fill the
    # TX2's two SMs poorly.
    "conv": 50e9,
    "block": 50e9,  # residual/inception blocks are convolutions: same rate
    # batch-1 fully connected layers read every float32 weight once: memory-bound at
    # 58.4 GB/s / 4 B = 14.6 GMAC/s; assumed half of that sustained.
    "linear": 7e9,
}
_TX2_ELEM_RATE = {
    # MAC-free layers read and write each element (8 B): 58.4 GB/s / 8 B = 7.3 G elements/s
    # peak; assumed half of that sustained.
    "bn": 3.5e9,
    "relu": 3.5e9,
    "pool": 3.5e9,
}
#: Assumed: eager PyTorch dispatch on the TX2's ARM cores (this 2-core x86 host measures
#: ~2.5 us per module call; an A57/Denver core is several times slower) plus one CUDA kernel
#: launch per layer.
_TX2_LAYER_OVERHEAD_S = 30e-6
#: Assumed: the TX2's 802.11ac 2x2 Wi-Fi (867 Mbit/s PHY) to a lab server at ~100 Mbit/s of
#: TCP goodput; the paper does not state its link.
_TX2_UPLINK_BPS = 100e6


@dataclass
class DeviceProfile:
    """How fast the device computes and uploads, for the latency metric S3.

    The defaults are the ``jetson_tx2`` profile (see the module docstring for every source).

    Attributes:
        name: a label recorded with results.
        mac_rate: MACs per second for each layer type that multiplies (conv, block, linear);
            ``block`` falls back to ``conv`` when absent.
        elem_rate: output elements per second for MAC-free layers (bn, relu, pool), per type;
            a single number applies to all of them (the format of older profile files).
        layer_overhead_s: fixed cost of launching one layer (dropout and flatten excepted).
        uplink_bps: uplink bandwidth in bits per second.

    Raises:
        ValueError: for a missing ``conv``/``linear`` rate, an unknown layer type, or a rate
            or bandwidth that is not positive.
    """

    name: str = "jetson_tx2"
    mac_rate: dict[str, float] = field(default_factory=lambda: dict(_TX2_MAC_RATE))
    elem_rate: dict[str, float] | float = field(default_factory=lambda: dict(_TX2_ELEM_RATE))
    layer_overhead_s: float = _TX2_LAYER_OVERHEAD_S
    uplink_bps: float = _TX2_UPLINK_BPS

    def __post_init__(self) -> None:
        missing = {"conv", "linear"} - set(self.mac_rate)
        if missing:
            raise ValueError(f"device profile {self.name!r}: mac_rate needs {sorted(missing)}; give MACs/s for {', '.join(MAC_TYPES)}")
        self.mac_rate = {k: float(v) for k, v in self.mac_rate.items()}
        self.mac_rate.setdefault("block", self.mac_rate["conv"])
        if isinstance(self.elem_rate, (int, float)):
            self.elem_rate = dict.fromkeys(ELEM_TYPES, float(self.elem_rate))
        self.elem_rate = {k: float(v) for k, v in self.elem_rate.items()}
        slowest = min(self.elem_rate.values(), default=None)
        if slowest is None:
            raise ValueError(f"device profile {self.name!r}: elem_rate is empty; give elements/s for {', '.join(ELEM_TYPES)}")
        for kind in ELEM_TYPES:  # a type left out is charged the slowest given rate
            self.elem_rate.setdefault(kind, slowest)
        for label, rates, valid in (("mac_rate", self.mac_rate, MAC_TYPES), ("elem_rate", self.elem_rate, ELEM_TYPES)):
            unknown = set(rates) - set(valid)
            if unknown:
                raise ValueError(f"device profile {self.name!r}: unknown {label} layer types {sorted(unknown)}; valid: {', '.join(valid)}")
            bad = {k: v for k, v in rates.items() if not (math.isfinite(v) and v > 0)}
            if bad:
                raise ValueError(f"device profile {self.name!r}: {label} must be positive and finite, got {bad}")
        self.layer_overhead_s = float(self.layer_overhead_s)
        self.uplink_bps = float(self.uplink_bps)
        if not (math.isfinite(self.layer_overhead_s) and self.layer_overhead_s >= 0):
            raise ValueError(f"device profile {self.name!r}: layer_overhead_s must be >= 0, got {self.layer_overhead_s}")
        if not (math.isfinite(self.uplink_bps) and self.uplink_bps > 0):
            raise ValueError(f"device profile {self.name!r}: uplink_bps must be positive, got {self.uplink_bps}")

    def layer_time(self, kind: str, macs: int, elems: int) -> float:
        """Seconds for one layer of type ``kind`` with these MACs and output elements."""
        if kind in FREE_TYPES:
            return 0.0
        if macs:
            return self.layer_overhead_s + macs / self.mac_rate.get(kind, self.mac_rate["conv"])
        return self.layer_overhead_s + elems / self.elem_rate.get(kind, min(self.elem_rate.values()))

    def compute_time(self, types: list[str], macs: list[int], elems: list[int]) -> float:
        """Seconds to run layers with these types, MACs and output element counts."""
        return sum(self.layer_time(k, m, e) for k, m, e in zip(types, macs, elems, strict=True))

    def transfer_time(self, nbytes: int) -> float:
        return nbytes * 8 / self.uplink_bps

    def to_dict(self) -> dict:
        """Every field: what a cache key or a result row records."""
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, source: str | Path) -> DeviceProfile:
        """A shipped profile by name (:data:`PROFILES`), or a JSON file written by :meth:`save`.

        A :class:`~pathlib.Path` is always a file; a string is a name when it is one of
        :data:`PROFILES`, else a file.

        Raises:
            ValueError: for a string that is neither a shipped name nor an existing file
                (listing the names), or a file with unknown keys (listing the valid ones).
        """
        if isinstance(source, str) and source in PROFILES:
            return get_profile(source)
        path = Path(source)
        if not path.is_file():
            raise ValueError(
                f"unknown device profile {str(source)!r}: not a shipped profile "
                f"({', '.join(PROFILES)}) nor an existing JSON file"
            )
        data = json.loads(path.read_text())
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"{path}: unknown device-profile keys {sorted(unknown)}; "
                f"valid keys: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**data)

    @classmethod
    def measure(cls, uplink_bps: float = _TX2_UPLINK_BPS, repeats: int = 20) -> DeviceProfile:
        """Micro-benchmark this host for one image, with torch's current thread count.

        A 3x3 convolution 64 -> 64 on 32x32, a 1024 x 1024 matrix-vector product, a ReLU and
        a 2x2 max-pool on 64 x 32 x 32, and one call of a ReLU on 4 numbers (the per-layer
        overhead); each the fastest of ``repeats`` runs, which is the least disturbed by
        other work on a shared machine.  The uplink cannot be measured offline: it is given.
        """

        def best(fn: Callable[[], object]) -> float:
            fn()
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return max(min(times), 1e-9)

        with torch.no_grad():
            x = torch.randn(1, 64, 32, 32)
            conv = nn.Conv2d(64, 64, 3, padding=1)
            conv_rate = 64 * 64 * 9 * 32 * 32 / best(lambda: conv(x))
            fc, v = nn.Linear(1024, 1024), torch.randn(1, 1024)
            lin_rate = 1024 * 1024 / best(lambda: fc(v))
            relu, pool = nn.ReLU(), nn.MaxPool2d(2)
            relu_rate = x.numel() / best(lambda: relu(x))
            pool_rate = x.numel() / 4 / best(lambda: pool(x))
            tiny = torch.randn(1, 4)
            overhead = best(lambda: relu(tiny))
        return cls(
            name="host",
            mac_rate={"conv": conv_rate, "block": conv_rate, "linear": lin_rate},
            elem_rate={"bn": relu_rate, "relu": relu_rate, "pool": pool_rate},
            layer_overhead_s=overhead,
            uplink_bps=uplink_bps,
        )


def _two_figures(x: float) -> float:
    return float(f"{x:.2g}")


@functools.lru_cache(maxsize=1)
def _host() -> DeviceProfile:
    p = DeviceProfile.measure()
    return DeviceProfile(
        name="host",
        mac_rate={k: _two_figures(v) for k, v in p.mac_rate.items()},
        elem_rate={k: _two_figures(v) for k, v in p.elem_rate.items()},
        layer_overhead_s=_two_figures(p.layer_overhead_s),
        uplink_bps=p.uplink_bps,
    )


def _midrange_phone() -> DeviceProfile:
    return DeviceProfile(
        name="midrange_phone",
        mac_rate={
            # 4 cores x 8 float32 MACs/cycle x 2.4 GHz = 77 GMAC/s peak; assumed 25 % on
            # batch-1 convolutions of 32x32 inputs.
            "conv": 20e9,
            "block": 20e9,
            # memory-bound matrix-vector products: LPDDR4X peaks at 34 GB/s, assumed 16 GB/s
            # sustained, / 4 B per float32 weight.
            "linear": 4e9,
        },
        # 16 GB/s sustained / 8 B (read + write) per element
        elem_rate={"bn": 2e9, "relu": 2e9, "pool": 2e9},
        # assumed: runtime dispatch plus a 4-thread pool synchronisation per operator
        layer_overhead_s=10e-6,
        # Ookla: global median 5G upload 21.08 Mbit/s (Q3 2021)
        uplink_bps=20e6,
    )


#: Shipped profiles by name; ``host`` is measured at first use.
PROFILES: dict[str, Callable[[], DeviceProfile]] = {
    "jetson_tx2": DeviceProfile,
    "midrange_phone": _midrange_phone,
    "host": _host,
}

#: The profile an evaluator uses when given none: the paper's device, where S3 varies
#: across the partitions of the pool's networks (see the module docstring).
DEFAULT_PROFILE = "jetson_tx2"


def list_profiles() -> list[str]:
    """Names of the shipped device profiles."""
    return list(PROFILES)


def get_profile(name: str) -> DeviceProfile:
    """A fresh copy of the shipped profile ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown device profile {name!r}; valid: {', '.join(PROFILES)}")
    return DeviceProfile(**PROFILES[name]().to_dict())
