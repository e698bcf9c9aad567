"""Test helpers for code that drives the sandbox: a handle on its facts and admin API.

``tests/conftest.py`` hands one of these to every test as the ``sb`` fixture.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from sandbox.portal import utcnow
from sandbox.server import SandboxThread


class ShiftedClock:
    """The sandbox's clock: real time plus an offset a test moves forward, so a test
    can let 24 hours pass at once (time never runs backwards, across tests too)."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return utcnow() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)


@dataclass
class SandboxHandle:
    """What a test needs from the sandbox: its facts and its admin API."""

    describe: dict[str, Any]
    client: httpx.Client
    thread: SandboxThread
    clock: ShiftedClock | None = None

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the sandbox's clock (a sandbox built with a clock)."""
        if self.clock is None:
            raise RuntimeError("this sandbox runs on real time; build it with a ShiftedClock")
        self.clock.advance(seconds)

    @property
    def ca_file(self) -> str:
        return str(self.describe["ca_file"])

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        """Call ``admin_url + path``; return the parsed JSON body, or the response if not
        JSON. Raises for a 5xx (a sandbox bug, never a test's intent)."""
        resp = self.client.request(method, self.describe["admin_url"] + path, json=json)
        if resp.status_code >= 500:
            resp.raise_for_status()
        if resp.headers.get("content-type", "").startswith("application/json"):
            if resp.status_code >= 400:
                return resp
            return resp.json()
        return resp

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "state")
        return result

    def faults(self, **faults: Any) -> dict[str, Any]:
        resp = self.client.post(self.describe["admin_url"] + "faults", json=faults)
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    def reset(self) -> None:
        self.client.post(self.describe["admin_url"] + "reset").raise_for_status()

    def in_use_key_id(self) -> str:
        """The keyId of the credential whose value is in Key Vault now."""
        creds = [c for c in self.state()["credentials"] if c["in_key_vault"]]
        assert creds, "no credential matches the Key Vault value"
        return str(creds[0]["keyId"])
