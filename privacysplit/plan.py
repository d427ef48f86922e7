"""A plan: where to split the network and which technique compresses each device layer.

Plans print the way the paper prints them, ``9 | 0:W1 3:W1 6:C3`` (partition layer, then
``layer:technique`` for every compressed layer in index order), and ``9 | none`` when nothing
is compressed.  ``Plan.parse(str(plan)) == plan`` always holds, so the string is the plan's
identity in caches, result files and the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ITEM = re.compile(r"^([0-9]+):([A-Za-z][A-Za-z0-9_]*)$")
_INT = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class Plan:
    """Partition index plus ``{layer index: technique name}`` for compressed layers.

    ``none`` entries are dropped on construction: an uncompressed layer is simply absent.
    """

    partition: int
    techniques: tuple[tuple[int, str], ...] = field(default=())

    def __init__(self, partition: int, techniques: dict[int, str] | tuple | list = ()) -> None:
        if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
            raise ValueError(f"partition must be a non-negative integer, got {partition!r}")
        items = techniques.items() if isinstance(techniques, dict) else techniques
        cleaned: dict[int, str] = {}
        for layer, name in items:
            if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0:
                raise ValueError(f"layer index must be a non-negative integer, got {layer!r}")
            if layer > partition:
                raise ValueError(
                    f"layer {layer} is on the cloud side of partition {partition}; "
                    "only device-side layers (0..partition) can be compressed"
                )
            if layer in cleaned:
                raise ValueError(f"layer {layer} is given two techniques")
            if name != "none":
                cleaned[layer] = str(name)
        object.__setattr__(self, "partition", partition)
        object.__setattr__(self, "techniques", tuple(sorted(cleaned.items())))

    @property
    def mapping(self) -> dict[int, str]:
        return dict(self.techniques)

    def __str__(self) -> str:
        body = " ".join(f"{i}:{t}" for i, t in self.techniques) or "none"
        return f"{self.partition} | {body}"

    @classmethod
    def parse(cls, text: str | Plan) -> Plan:
        """Parse ``"9 | 0:W1 3:W1"`` (or return a :class:`Plan` unchanged).

        Raises:
            ValueError: with the expected format when ``text`` does not parse.
        """
        if isinstance(text, Plan):
            return text
        fmt = "expected 'PARTITION | LAYER:TECHNIQUE ...' such as '9 | 0:W1 3:C3' or '9 | none'"
        if not isinstance(text, str) or text.count("|") != 1:
            raise ValueError(f"cannot parse plan {text!r}: {fmt}")
        head, tail = (s.strip() for s in text.split("|"))
        if not _INT.match(head):
            raise ValueError(f"cannot parse plan {text!r}: partition {head!r} is not an integer; {fmt}")
        if not tail:
            raise ValueError(f"cannot parse plan {text!r}: nothing after '|' (write 'none' for no compression); {fmt}")
        items: list[tuple[int, str]] = []
        if tail != "none":
            for token in tail.split():
                m = _ITEM.match(token)
                if not m:
                    raise ValueError(f"cannot parse plan {text!r}: bad item {token!r}; {fmt}")
                items.append((int(m.group(1)), m.group(2)))
        return cls(int(head), items)
