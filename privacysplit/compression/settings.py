"""How hard each technique compresses: one frozen, recorded :class:`CompressionSettings`.

The strengths live in one dataclass (not scattered over the compressors) so that an
environment can set them once, and so that :meth:`CompressionSettings.key` can enter every
cache key: two plans compressed with different strengths are different models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace


@dataclass(frozen=True)
class CompressionSettings:
    """Strength of every technique of Table 2.

    The defaults compress every typical layer of the pool (fewer parameters than the
    original layer); the exceptions are named in each technique's docstring.

    Attributes:
        rank_fraction: F1/F2 keep ``k = ceil(rank_fraction * min(m, n))`` singular values of
            an ``m x n`` matrix.  Any value below 0.5 compresses every matrix, since
            ``k (m + n) < m n``; 0.25 keeps the dominant spectrum of a trained layer (the
            classic choice for SVD of fully connected layers, Denton et al.) at about half the
            parameters of a square layer.
        f2_sparsity: fraction of each K-SVD code column (F2's ``k x n`` factor, ``k`` from
            ``rank_fraction``) that is zero: every column keeps at most
            ``round((1 - f2_sparsity) k)`` non-zeros, chosen by orthogonal matching pursuit.
        f2_iterations: K-SVD iterations of F2 (sparse coding, then the atom-by-atom
            dictionary update), started from the SVD.  The first coding is closed-form
            (the SVD dictionary is orthonormal); each further iteration runs one OMP over
            every column, the cost that matters (see :mod:`~privacysplit.compression.lowrank`).
        w1_sparsity: W1 zeroes this fraction of each weight tensor, smallest magnitudes first
            (Han et al. prune about 50-65 % of convolution weights without loss after
            retraining; 0.5 stays recoverable within the ``cpu`` fidelity's short retraining).
        w2_ratio: W2 removes this fraction of the filters of a convolution, smallest L1 norm
            first (Li et al.).  0.3 removes about half of the parameters of a layer between
            two pruned layers ((1 - 0.3)^2 = 0.49) and stays recoverable by short retraining.
        c2_expansion: C2 hidden width as a multiple of the input channels (MobileNetV2's
            ``t``).  MobileNetV2 uses 6, which *grows* a 3x3 convolution with equal input and
            output widths by about 33 %; 2 compresses it to about 45 % of the original.
        c3_squeeze_ratio: C3 squeeze width as a fraction of the output channels (SqueezeNet's
            SR = 0.125), capped at the input channels (a squeeze never widens its input).
        c3_expand3x3: fraction of the Fire output channels produced by the 3x3 expand branch
            (SqueezeNet's pct3x3 = 0.5); the rest come from the 1x1 branch.
        distill_lr: Adam learning rate of the optional distillation that initialises
            replaced structures (C1-C3) from the original layer's outputs (1e-2 fitted
            AlexNet's C1-C3 layers best in 20 steps among 3e-3, 1e-2, 3e-2).
        distill_samples: at most this many calibration inputs are used by distillation.
            The fit is per output pixel, so 16 images already give thousands of regression
            targets per channel, and the cost stays within the environment's budget (LeNet,
            20 steps: a few hundred milliseconds on one core).
    """

    rank_fraction: float = 0.25
    f2_sparsity: float = 0.75
    f2_iterations: int = 2
    w1_sparsity: float = 0.5
    w2_ratio: float = 0.3
    c2_expansion: float = 2.0
    c3_squeeze_ratio: float = 0.125
    c3_expand3x3: float = 0.5
    distill_lr: float = 1e-2
    distill_samples: int = 16

    def __post_init__(self) -> None:
        open_unit = ("rank_fraction", "c3_squeeze_ratio", "distill_lr")
        half_open = ("f2_sparsity", "w1_sparsity", "w2_ratio")
        for name in open_unit:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"CompressionSettings.{name} must lie in (0, 1], got {value!r}")
        for name in half_open:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"CompressionSettings.{name} must lie in [0, 1), got {value!r}")
        if not isinstance(self.c3_expand3x3, (int, float)) or not 0 <= self.c3_expand3x3 <= 1:
            raise ValueError(
                f"CompressionSettings.c3_expand3x3 must lie in [0, 1], got {self.c3_expand3x3!r}"
            )
        if isinstance(self.distill_samples, bool) or not isinstance(self.distill_samples, int) or self.distill_samples < 1:
            raise ValueError(
                f"CompressionSettings.distill_samples must be a positive integer, got {self.distill_samples!r}"
            )
        if isinstance(self.f2_iterations, bool) or not isinstance(self.f2_iterations, int) or self.f2_iterations < 0:
            raise ValueError(
                f"CompressionSettings.f2_iterations must be a non-negative integer, got {self.f2_iterations!r}"
            )
        if not isinstance(self.c2_expansion, (int, float)) or self.c2_expansion <= 0:
            raise ValueError(
                f"CompressionSettings.c2_expansion must be positive, got {self.c2_expansion!r}"
            )

    def key(self) -> str:
        """A short stable string for cache keys: ``cs-`` plus a hash of every field."""
        blob = json.dumps(asdict(self), sort_keys=True)
        return f"cs-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes: float | int) -> CompressionSettings:
        """A copy with some strengths changed; unknown names raise a ValueError."""
        valid = {f.name for f in fields(self)}
        unknown = set(changes) - valid
        if unknown:
            raise ValueError(
                f"unknown compression settings {sorted(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        return replace(self, **changes)
