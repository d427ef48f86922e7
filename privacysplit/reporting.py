"""Summaries and plots of search results: best-so-far curves, Pareto fronts, tables.

Used by the benchmarks and the command line; sits on top of the package (imports from it
only inside :func:`save_reconstruction`), so its functions take plain rows (dicts) and write
plain files.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def best_so_far(rewards: Sequence[float]) -> list[float]:
    out, best = [], -math.inf
    for r in rewards:
        best = max(best, float(r))
        out.append(best)
    return out


def pareto_front(rows: Sequence[dict]) -> list[int]:
    """Indices of rows not dominated in (accuracy up, privacy loss down, resource up)."""
    pts = [(float(r["accuracy"]), -float(r["privacy_loss"]), float(r["resource"])) for r in rows]
    front = []
    for i, p in enumerate(pts):
        dominated = any(
            all(q[k] >= p[k] for k in range(3)) and any(q[k] > p[k] for k in range(3)) for j, q in enumerate(pts) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def median_iqr(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return {"median": float("nan"), "q25": float("nan"), "q75": float("nan"), "n": 0}
    return {"median": float(np.median(arr)), "q25": float(np.percentile(arr, 25)),
            "q75": float(np.percentile(arr, 75)), "n": int(arr.size)}


def evaluations_to_reach(curve: Sequence[float], target: float) -> int | None:
    """First evaluation (1-based) whose best-so-far reaches ``target``; None if never."""
    for i, v in enumerate(curve):
        if v >= target:
            return i + 1
    return None


def git_commit(path: str | Path = ".") -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    def fmt(v) -> str:
        if isinstance(v, float):
            return "nan" if not math.isfinite(v) else f"{v:.4f}"
        return str(v).replace("|", "\\|")  # a plan's '|' must not split the cell

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[str, list[list[float]]], path: str | Path, title: str = "") -> Path:
    """Median best-so-far reward per searcher with its interquartile band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, runs in curves.items():
        n = min(len(r) for r in runs)
        if n == 0:
            continue
        arr = np.array([r[:n] for r in runs])
        x = np.arange(1, n + 1)
        ax.plot(x, np.median(arr, 0), label=name)
        ax.fill_between(x, np.percentile(arr, 25, 0), np.percentile(arr, 75, 0), alpha=0.2)
    ax.set_xlabel("plan evaluations")
    ax.set_ylabel("best reward so far (median, IQR)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_tradeoff(rows: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy vs privacy loss of every evaluated plan, coloured by resource saving,
    with the Pareto front (accuracy up, privacy loss down, resource up) ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if all(_finite(r.get(k)) for k in ("accuracy", "privacy_loss", "resource"))]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    if rows:
        a = [float(r["accuracy"]) for r in rows]
        p = [float(r["privacy_loss"]) for r in rows]
        s = [float(r["resource"]) for r in rows]
        sc = ax.scatter(p, a, c=s, cmap="viridis", s=18, vmin=0, vmax=1)
        fig.colorbar(sc, ax=ax, label="resource saving S")
        front = pareto_front(rows)
        ax.scatter([p[i] for i in front], [a[i] for i in front], facecolors="none", edgecolors="red", s=70, label="Pareto front")
        ax.legend(loc="lower right")
    ax.set_xlabel("privacy loss P (lower is better)")
    ax.set_ylabel("accuracy A")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def save_reconstruction(samples: str, path: str | Path) -> Path:
    """Write an evaluation's packed ``reconstruction`` samples as one PNG: the originals on
    the top row, what the attacker rebuilt from the released features below."""
    from privacysplit.attacks.samples import save_png

    return Path(save_png(samples, path))
