"""The App Service itself: ``/health`` and the portal's Graph-backed "Sync from Intune".

Each request goes to one of the site's workers (round robin, :mod:`sandbox.instances`).
The worker signs in with the secret its process read when it started and calls Graph's
mobileApps, in-process but through the very rules the HTTP endpoints apply
(:func:`sandbox.entra.authenticate` and :meth:`sandbox.graph.Graph.mobile_apps`). Like
MSAL, it caches its token for ``app_token_lifetime_seconds`` (+- the jitter) and signs in
again only when it has none or it expired, so a removed secret shows only then; with
``app_user_flow_signins`` it also redeems a user's sign-in with the secret, as often.
A background loop makes the same call every ``app_sync_interval_seconds``; every 401 any
worker gets counts in ``graph_401_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta
from typing import Any

from aiohttp import web

from sandbox import instances, reload
from sandbox.entra import Caller, Granted, Refused, authenticate
from sandbox.graph import Graph
from sandbox.portal import Portal
from sandbox.signins import USER_IP
from sandbox.site import Worker

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
        worker = instances.pick(portal)
        value = worker.value if worker is not None else None
        if worker is None or value is None:
            stats.last_status, stats.last_error = 500, "KeyVaultReferenceNotResolved"
            return 500, {
                "error": "The app setting's Key Vault reference is not resolved; "
                "the app has no client secret.",
            }
        stats.graph_calls_total += 1
        refused = self._user_signin(worker, value)
        if refused is not None:
            return self._failed(refused.status, refused.error, f"AADSTS{refused.code}")
        token = self._token(worker, value)
        if isinstance(token, Refused):
            return self._failed(token.status, token.error, f"AADSTS{token.code}")
        tok = self.graph.check_token(token)
        resp = tok if isinstance(tok, web.Response) else self.graph.mobile_apps(tok, None, None)
        body = _body_of(resp)
        if resp.status != 200:
            code = str(body.get("error", {}).get("code", "")) if isinstance(body, dict) else ""
            return self._failed(resp.status, code, code)
        stats.graph_ok_total += 1
        stats.last_status, stats.last_error = 200, None
        apps = [a["displayName"] for a in body.get("value", [])]
        return 200, {"synced": len(apps), "apps": apps}

    def _token(self, worker: Worker, value: str) -> str | Refused:
        """The worker's cached Graph token, or a new one if it has none or it expired."""
        portal, now = self.portal, self.portal.now()
        expires = worker.token_expires_at
        if worker.token is not None and expires is not None and now < expires:
            return worker.token
        lifetime = instances.token_lifetime(portal)
        outcome = authenticate(
            portal,
            portal.ids.tenant_id,
            portal.ids.app_client_id,
            value,
            GRAPH_SCOPE,
            Caller(ip_address=worker.ip, lifetime=_lifetime(lifetime)),
        )
        if isinstance(outcome, Refused):
            worker.token = worker.token_expires_at = None
            return outcome
        if lifetime > 0:
            worker.token = outcome.access_token
            worker.token_expires_at = now + timedelta(seconds=outcome.expires_in)
        return outcome.access_token

    def _user_signin(self, worker: Worker, value: str) -> Refused | None:
        """A user signs in to the portal on this worker (when its user session expired):
        the worker redeems the authorization code with its secret."""
        portal, now = self.portal, self.portal.now()
        if not portal.faults.app_user_flow_signins:
            return None
        expires = worker.user_token_expires_at
        if expires is not None and now < expires:
            return None
        lifetime = instances.token_lifetime(portal)
        outcome = authenticate(
            portal,
            portal.ids.tenant_id,
            portal.ids.app_client_id,
            value,
            GRAPH_SCOPE,
            Caller(ip_address=USER_IP, kind="interactiveUser", lifetime=_lifetime(lifetime)),
        )
        if isinstance(outcome, Granted) and lifetime > 0:
            worker.user_token_expires_at = now + timedelta(seconds=outcome.expires_in)
        return outcome if isinstance(outcome, Refused) else None

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


def _lifetime(seconds: float) -> int | None:
    """The issued token's lifetime: the worker's draw, or Entra's default without a cache."""
    return max(1, round(seconds)) if seconds > 0 else None
