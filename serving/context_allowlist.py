"""Which part of a request's free-form ``context`` is logged with its decision (``CXPREDICT_CONTEXT_KEYS``).

Only allowlisted keys are kept; the others are dropped silently rather than refused, so a caller sending extra
keys (a CRM passing its whole event) still gets its answer, and nothing unlisted — an e-mail address, free text —
lands in the decision log. Kept apart from :mod:`serving.privacy` so the worker imports nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def allowed_context(context: Mapping[str, Any] | None, keys: Sequence[str]) -> dict[str, Any]:
    """The part of a request's ``context`` that may be logged: only the allowlisted keys (others are dropped)."""
    if not context:
        return {}
    return {k: v for k, v in context.items() if k in keys}
