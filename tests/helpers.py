"""Small helpers shared by tests in every folder (tests/ is on sys.path through the
root conftest.py; fixtures live there, plain functions here)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
