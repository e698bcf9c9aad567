"""Small helpers shared by tests in every folder (tests/ is on sys.path through the
root conftest.py; fixtures live there, plain functions here)."""

from __future__ import annotations

import socket
from typing import Any


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# KINDER THAN AZURE, pinned for the daemon's existing tests until the daemon copes with
# the pessimistic defaults (issue 8; the workflow branch flips these): every Restart and
# Start re-resolves and the refresh call before it answers, the reference status
# carries activeVersion, transitions never answer 409 busy. The sandbox's own tests of
# these behaviours use ``sbp`` (the documented defaults) instead. Used by
# tests/conftest.py (the ``sandbox``/``sb`` fixtures) and tests/e2e/test_end_to_end.py.
KINDER_THAN_AZURE: dict[str, Any] = {
    "reload_model": "optimistic",
    "active_version": "present",
    "site_busy_seconds": 0.0,
}
