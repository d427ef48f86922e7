"""Layer specifications: the agent-readable description of one layer of a network.

The paper (section 6) describes a network as a list of tuples ``<l, k, s, p, n>`` (type,
kernel, stride, padding, output channels).  :class:`LayerSpec` holds that tuple plus the
input channels, which compression and the cost model need.  Everything downstream
(building, splitting, compressing, costing, the environment's observation) reads this list,
so a network is defined once and described identically everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: Layer types, in the order they are one-hot encoded in observations.  ``block`` is a
#: residual/inception/inverted-residual block that the paper counts as one layer.
LAYER_TYPES: tuple[str, ...] = (
    "conv",
    "linear",
    "block",
    "bn",
    "relu",
    "pool",
    "dropout",
    "flatten",
    "noise",
)


@dataclass(frozen=True)
class LayerSpec:
    """One layer of a network as the searcher sees it.

    Attributes:
        type: short lowercase word, one of :data:`LAYER_TYPES`.
        kernel: kernel size (0 where it does not apply).
        stride: stride (0 where it does not apply).
        padding: padding (0 where it does not apply).
        in_channels: input channels (conv/block/bn) or input features (linear).
        out_channels: output channels (conv/block/bn) or output features (linear).
    """

    type: str
    kernel: int = 0
    stride: int = 0
    padding: int = 0
    in_channels: int = 0
    out_channels: int = 0
    #: Compression techniques known to work on this layer's module, or ``None`` (each
    #: technique decides from the spec, as for the pool's networks).  Set for a user's
    #: network, whose layers are arbitrary modules, after trying every technique on them.
    allowed: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in LAYER_TYPES:
            raise ValueError(
                f"unknown layer type {self.type!r}; valid types: {', '.join(LAYER_TYPES)}"
            )

    def allows(self, technique: str) -> bool:
        """Whether ``technique`` is not ruled out by :attr:`allowed` (``none`` always is)."""
        return technique == "none" or self.allowed is None or technique in self.allowed

    def as_tuple(self) -> tuple[str, int, int, int, int, int]:
        """The paper's tuple ``(l, k, s, p, n)`` extended with the input channels."""
        return (
            self.type,
            self.kernel,
            self.stride,
            self.padding,
            self.in_channels,
            self.out_channels,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        if self.type in ("conv", "block"):
            return (
                f"{self.type}(k={self.kernel}, s={self.stride}, p={self.padding}, "
                f"{self.in_channels}->{self.out_channels})"
            )
        if self.type == "linear":
            return f"linear({self.in_channels}->{self.out_channels})"
        if self.type == "bn":
            return f"bn({self.out_channels})"
        if self.type == "pool":
            return f"pool(k={self.kernel}, s={self.stride})"
        return self.type
