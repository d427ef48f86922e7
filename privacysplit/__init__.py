"""PrivacySplit: search privacy-preserving splits of a deep network between phone and cloud.

``import privacysplit`` registers the Gymnasium environment ``PrivacySplit-v0``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from privacysplit.fidelity import FIDELITIES, Fidelity, get_fidelity  # noqa: E402

__all__ = ["FIDELITIES", "Fidelity", "__version__", "get_fidelity"]
