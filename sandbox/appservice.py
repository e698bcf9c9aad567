"""The App Service itself: ``/health`` and the portal's Graph-backed "Sync from Intune".

The app signs in with the secret it resolved from its Key Vault reference and calls
Graph's mobileApps, in-process but through the very rules the HTTP endpoints apply
(:func:`sandbox.entra.authenticate` and :meth:`sandbox.graph.Graph.mobile_apps`), so it
fails with a 401 exactly when that secret does not work. It takes a fresh token on every
call (no token cache), so an expired or revoked secret shows at once. A background loop
makes the same call every ``app_sync_interval_seconds`` and counts the 401s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from sandbox import reload
from sandbox.entra import Refused, authenticate
from sandbox.graph import Graph
from sandbox.portal import Portal

GRAPH_SCOPE = "https://graph.microsoft.com/.default"

_STOPPED = (
    "<!DOCTYPE html><html><head><title>Web App - Unavailable</title></head><body>"
    "<h1>Error 403 - This web app is stopped.</h1>"
    "<p>The web app you have attempted to reach is currently stopped and does not accept "
    "any requests.</p></body></html>"
)
_STARTING = (
    "<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>"
    "<h1>Error 503 - The service is unavailable.</h1>"
    "<p>The application is starting.</p></body></html>"
)


def _html(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/html")


class AppService:
    def __init__(self, portal: Portal, graph: Graph) -> None:
        self.portal = portal
        self.graph = graph
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/app/health", self.health),
            web.get("/app/", self.home),
            web.get("/app", self.home),
            web.get("/app/api/catalog/sync", self.sync),
            web.post("/app/api/catalog/sync", self.sync),
        ]

    def _unavailable(self) -> web.Response | None:
        phase = self.portal.app_phase()
        if phase == "stopped":
            return _html(403, _STOPPED)
        if phase == "starting":
            return _html(503, _STARTING)
        return None

    async def home(self, request: web.Request) -> web.Response:
        return self._unavailable() or _html(200, "<h1>App Store for Intune</h1>")

    async def health(self, request: web.Request) -> web.Response:
        down = self._unavailable()
        if down is not None:
            return down
        if self.portal.app_phase() == "unhealthy":
            return web.json_response({"status": "Unhealthy"}, status=503)
        return web.json_response({"status": "Healthy"})

    async def sync(self, request: web.Request) -> web.Response:
        down = self._unavailable()
        if down is not None:
            return down
        status, body = self.sync_once()
        return web.json_response(body, status=status)

    # -- the Graph call --------------------------------------------------------------

    def sync_once(self) -> tuple[int, dict[str, Any]]:
        """One "Sync from Intune": (HTTP status the portal answers, its JSON body)."""
        portal = self.portal
        reload.tick(portal)  # the platform may have re-fetched the reference meanwhile
        stats = portal.app
        stats.last_sync_at = portal.now().isoformat()
        value = portal.site.resolved_value
        if value is None:
            stats.last_status, stats.last_error = 500, "KeyVaultReferenceNotResolved"
            return 500, {
                "error": "The app setting's Key Vault reference is not resolved; "
                "the app has no client secret.",
            }
        stats.graph_calls_total += 1
        outcome = authenticate(
            portal, portal.ids.tenant_id, portal.ids.app_client_id, value, GRAPH_SCOPE
        )
        if isinstance(outcome, Refused):
            return self._failed(outcome.status, outcome.error, f"AADSTS{outcome.code}")
        tok = self.graph.check_token(outcome.access_token)
        resp = tok if isinstance(tok, web.Response) else self.graph.mobile_apps(tok, None, None)
        body = _body_of(resp)
        if resp.status != 200:
            code = str(body.get("error", {}).get("code", "")) if isinstance(body, dict) else ""
            return self._failed(resp.status, code, code)
        stats.graph_ok_total += 1
        stats.last_status, stats.last_error = 200, None
        apps = [a["displayName"] for a in body.get("value", [])]
        return 200, {"synced": len(apps), "apps": apps}

    def _failed(self, status: int, error: str, code: str) -> tuple[int, dict[str, Any]]:
        stats = self.portal.app
        if status == 401:
            stats.graph_401_total += 1
        stats.last_status, stats.last_error = status, code
        return 502, {
            "error": f"Microsoft Graph returned {status} ({error}).",
            "graph_status": status,
            "graph_error": error,
            "code": code,
        }

    # -- background sync -------------------------------------------------------------

    def start_background(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop_background(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            interval = self.portal.faults.app_sync_interval_seconds
            self.wake.clear()
            if interval <= 0:
                await self.wake.wait()
                continue
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=interval)
                continue  # settings changed: start the interval again
            except TimeoutError:
                pass
            if self.portal.faults.app_sync_interval_seconds <= 0 or self.wake.is_set():
                continue  # a reset (or new settings) raced the timeout: no stray sync
            if self.portal.app_phase() in ("running", "unhealthy"):
                self.sync_once()


def _body_of(resp: web.Response) -> Any:
    raw = resp.body
    if isinstance(raw, bytes | bytearray) and raw:
        return json.loads(raw)
    return {}
