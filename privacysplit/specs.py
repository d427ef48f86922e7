"""Spec strings, ``name:key=value:...``: one token that names a thing and what was changed in it.

Why one parser: the command line, the benchmarks and the API name an agent
(``bilstm:entropy_coef=0.01``), a fidelity (``cpu:attack_input=whiten``) and an attack
variant of ``benchmarks/attack_strength.py`` (``prior:n=all``) this way, so a tuned variant is
as easy to compare as a stock one, under a name that says what changed.  Each caller reads the
values its own way (JSON literals for agents, the field's type for fidelities, a key's parser for
variants); what they share is the split, and one error for a change that is not ``key=value``.
"""

from __future__ import annotations


def split_spec(spec: str, what: str) -> tuple[str, list[tuple[str, str]]]:
    """``"bilstm:entropy_coef=0.01"`` -> ``("bilstm", [("entropy_coef", "0.01")])``.

    Keys are stripped of spaces; values are kept as written (a value cannot hold ``:``).

    Raises:
        ValueError: naming ``what`` (``"agent"``, ``"fidelity"``, ...) for a change without
            ``=`` or with an empty key.
    """
    name, *changes = str(spec).split(":")
    pairs = []
    for change in changes:
        key, sep, text = change.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{what} spec {spec!r}: {change!r} is not option=value")
        pairs.append((key, text))
    return name, pairs
