"""The daemon's own token requests, recognizable in the sign-in log.

Entra records a token request's ``client-request-id`` header as the sign-in's
``correlationId``. Every token request the daemon makes with the app's secret (the
Graph probe, the token test of a candidate secret) sends an id of this scheme, so the
removal proof can leave the daemon's own sign-ins out: they show that the log has
caught up, never that the app moved.

The id is a GUID (Entra expects one) whose first 48 bits are fixed: recognizable
without state, across restarts and several daemons. A random GUID of someone else
carries the prefix with probability 2**-48.
"""

from __future__ import annotations

import uuid

PREFIX = "5ec1e7a0-de70"  # "secretwarden" in hex-ish: fixed, 48 bits
HEADER = "client-request-id"


def new_request_id() -> str:
    """A fresh client-request-id of the daemon's scheme (a version-4-shaped GUID)."""
    tail = uuid.uuid4().hex  # 32 hex digits; the last 19 are used
    return f"{PREFIX}-4{tail[:3]}-{'89ab'[int(tail[3], 16) % 4]}{tail[4:7]}-{tail[7:19]}"


def is_own(correlation_id: str | None) -> bool:
    """Was the sign-in with this correlationId one of the daemon's own?"""
    return correlation_id is not None and correlation_id.lower().startswith(PREFIX)
