"""Summaries and plots of search results: best-so-far curves, Pareto fronts, tables; and
the benchmarks' output-folder options (:func:`add_output_arguments`).

Used by the benchmarks and the command line; sits on top of the package (imports from it
only inside :func:`save_reconstruction`), so its functions take plain rows (dicts) and write
plain files.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def csv_or_all(text: str | None, cast=str) -> list | None:
    """A benchmark's comma-separated subset option (``--partitions 2,5``), or ``None`` -- every
    one -- for ``all`` or an option left unset."""
    return None if text in (None, "all") else [cast(t) for t in text.split(",") if t]


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


#: where :func:`add_output_arguments` leaves its settings on the parser for :func:`resolve_output`
_OUTPUT_SETTINGS = "_privacysplit_output"


def add_output_arguments(parser: argparse.ArgumentParser, name: str, committed: str | Path, root: str | Path,
                         aliases: Sequence[str] = ()) -> None:
    """Add a benchmark's ``--out`` and ``--update-results`` options.

    The project's rule: benchmarks write to a fresh folder under ``runs/`` unless asked to
    regenerate the committed results.  ``--out`` (default: a new ``<root>/runs/<name>-<time>``
    folder) names any folder; ``--update-results`` writes into ``committed`` (relative to
    ``root``, the repository root: a benchmark passes ``Path(__file__).resolve().parents[1]``)
    and refuses ``--out`` beside it.  ``aliases`` are other spellings of ``--update-results``.
    Call :func:`resolve_output` on the parsed arguments to get the folder.
    """
    root = Path(root)
    committed = Path(committed)
    shown = committed if not committed.is_absolute() else _relative(committed, root)
    setattr(parser, _OUTPUT_SETTINGS, (name, root / committed, root, shown))
    parser.add_argument("--out", default=None, help=f"output folder (default: a new runs/{name}-<time> folder)")
    parser.add_argument("--update-results", *aliases, dest="update_results", action="store_true",
                        help=f"write into {shown} (the committed results) instead of a new runs/ folder")


def resolve_output(parser: argparse.ArgumentParser, args: argparse.Namespace, now: float | None = None) -> Path:
    """The output folder of arguments parsed by a parser given :func:`add_output_arguments`:
    ``--out`` as given, the committed folder with ``--update-results`` (with both, a usage
    error), else ``<root>/runs/<name>-<YYYYmmdd-HHMMSS>`` (local time ``now``, default the
    present), suffixed ``-2``, ``-3`` ... if that already exists.  Also stores it, as a string,
    in ``args.out``; creates nothing."""
    name, committed, root, shown = getattr(parser, _OUTPUT_SETTINGS)
    if args.update_results and args.out is not None:
        parser.error(f"--update-results writes the committed results in {shown}; drop --out")
    if args.update_results:
        out = committed
    elif args.out is not None:
        out = Path(args.out)
    else:
        stem = root / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
        out, k = stem, 1
        while out.exists():
            k += 1
            out = stem.with_name(f"{stem.name}-{k}")
    # relative to the working directory where possible: results record args.out, and a
    # committed result must not name this machine's absolute paths
    out = _relative(Path(os.path.abspath(out)), Path.cwd()) if Path(out).is_absolute() else out
    args.out = str(out)
    return out


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return path


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
