"""PrivacySplit: search privacy-preserving splits of a deep network between phone and cloud.

``import privacysplit`` registers the Gymnasium environment ``PrivacySplit-v0``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from privacysplit import envs as _envs  # noqa: E402,F401  (registers PrivacySplit-v0)
from privacysplit.fidelity import FIDELITIES, Fidelity, get_fidelity  # noqa: E402
from privacysplit.plan import Plan  # noqa: E402

__all__ = ["FIDELITIES", "Fidelity", "Plan", "__version__", "get_fidelity"]
