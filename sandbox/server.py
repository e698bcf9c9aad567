"""One HTTPS listener for the whole tenant, routed by path (see docs/sandbox.md).

- ``Sandbox``: runs on the current asyncio loop (the demo runs it beside the daemon).
- ``SandboxThread``: the same in a background thread with its own loop (tests).

``secretwarden sandbox`` (daemon/demo.py) runs a ``Sandbox`` until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from sandbox import reload
from sandbox.admin import PREFIX, Admin
from sandbox.appservice import AppService
from sandbox.arm import Arm
from sandbox.auditlogs import AuditLogs
from sandbox.certs import ensure_tls
from sandbox.denials import forbidden
from sandbox.directory import Directory
from sandbox.directory_admin import DirectoryAdmin
from sandbox.directory_api import DirectoryGraph
from sandbox.entra import Entra
from sandbox.faults import Faults, Injection
from sandbox.graph import MOBILE_APPS_PATH, Graph
from sandbox.keyvault import KeyVault
from sandbox.portal import (
    APP_DISPLAY_NAME,
    APP_SETTING,
    SECRET_NAME,
    Clock,
    Identities,
    Portal,
    utcnow,
)
from sandbox.snapshot import load_file_json, load_ids, save_state
from sandbox.wire import (
    ARM_CODES,
    ENTRA_CODES,
    GRAPH_CODES,
    KEYVAULT_CODES,
    arm_error,
    bearer,
    entra_error,
    graph_error,
    keyvault_error,
    web_error,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def service_of(path: str) -> str:
    """Which Azure service a path belongs to (the sandbox routes by path alone)."""
    if path.startswith(PREFIX + "/") or path == PREFIX:
        return "admin"
    if path.startswith(("/v1.0/", "/beta/")):
        return "graph"
    if path == "/secrets" or path.startswith("/secrets/"):
        return "keyvault"
    if path.startswith("/subscriptions/"):
        return "arm"
    if path == "/app" or path.startswith("/app/"):
        return "app"
    return "entra"


def _default_faults() -> Faults:
    return Faults(app_sync_interval_seconds=5.0)


class Sandbox:
    """The whole tenant on one HTTPS port of this machine.

    ``faults`` (a :class:`Faults` or a JSON-style dict) are the defaults that ``reset``
    returns to; without it the app's background sync runs every 5 s and nothing else is
    switched on. ``state_file`` persists the tenant (ids, credentials, Key Vault, site)
    across restarts; ``ca_dir`` holds the CA (default: beside the state file, else a
    fresh temporary directory).
    """

    def __init__(
        self,
        *,
        state_file: Path | str | None = None,
        ca_dir: Path | str | None = None,
        in_use_expires_in: timedelta = timedelta(days=365),
        faults: Faults | dict[str, Any] | None = None,
        now: Clock = utcnow,
    ) -> None:
        self.state_file = Path(state_file) if state_file is not None else None
        if ca_dir is not None:
            self.ca_dir = Path(ca_dir)
        elif self.state_file is not None:
            self.ca_dir = self.state_file.parent / "sandbox-ca"
        else:
            self.ca_dir = Path(tempfile.mkdtemp(prefix="secretwarden-sandbox-"))
        self._owns_ca_dir = ca_dir is None and self.state_file is None
        if isinstance(faults, dict):
            default_faults = _default_faults()
            default_faults.apply(faults)
        else:
            default_faults = faults or _default_faults()
        ids = load_ids(self.state_file) if self.state_file is not None else None
        self.portal = Portal(
            ids or Identities.generate(),
            now=now,
            in_use_expires_in=in_use_expires_in,
            default_faults=default_faults,
        )
        if ids is not None and self.state_file is not None:
            load_file_json(self.portal, json.loads(self.state_file.read_text()))
        self.base_url = ""
        self.ca_file: Path | None = None
        self._runner: web.AppRunner | None = None
        self._app_service: AppService | None = None
        # Every app registration and service principal (not persisted: POST directory
        # rebuilds the synthetic ones from their seed).
        self.directory = Directory(self.portal.now, self.portal.ids.tenant_id)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"sandbox: cannot listen on {host}:{port}: {exc}") from exc
        bound_port = sock.getsockname()[1]
        url_host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
        if ":" in url_host and not url_host.startswith("["):
            url_host = f"[{url_host}]"
        self.base_url = f"https://{url_host}:{bound_port}"
        self.portal.set_vault_url(self.base_url)
        tls = ensure_tls(self.ca_dir, [host])
        self.ca_file = tls.ca_file

        portal = self.portal
        graph = Graph(portal, self.base_url)
        self._app_service = AppService(portal, graph)
        app_service = self._app_service

        def on_faults(keys: set[str]) -> None:
            if "app_sync_interval_seconds" in keys:
                app_service.wake.set()

        self.directory.portal_app = graph.application_json
        admin = Admin(
            portal,
            on_change=self._persist,
            on_faults=on_faults,
            describe=self.describe,
            on_reset=self.directory.clear,
        )
        app = web.Application(middlewares=[self._middleware], client_max_size=1024**2)
        for part in (
            admin,
            DirectoryAdmin(self.directory),
            Entra(portal, self.base_url),
            # before Graph's catch-all route
            DirectoryGraph(self.directory, graph, portal, self.base_url),
            graph,
            KeyVault(portal, self.base_url),
            Arm(portal, self.base_url),
            AuditLogs(portal, graph, self.base_url),
            app_service,
        ):
            app.add_routes(part.routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=tls.server_context())
        await site.start()
        app_service.start_background()
        self._persist()

    async def stop(self) -> None:
        if self._app_service is not None:
            await self._app_service.stop_background()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._persist()
        if self._owns_ca_dir:
            shutil.rmtree(self.ca_dir, ignore_errors=True)  # a temp CA nobody can reuse

    def _persist(self) -> None:
        if self.state_file is not None:
            save_state(self.state_file, self.portal)

    # -- every request -----------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        service = service_of(request.path)
        reload.tick(self.portal)  # a refresh that came due, the periodic re-fetch
        if service == "admin":
            return await handler(request)
        faults = self.portal.faults
        delay = faults.latency_seconds.get(service, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        injection: Injection | None = None
        # Key Vault's unauthenticated challenge round and Entra's discovery document are
        # protocol plumbing; injections hit the requests that do the work.
        plumbing = (service == "keyvault" and bearer(request) is None) or (
            service == "entra" and request.method == "GET"
        )
        if not plumbing:
            injection = faults.take_injection(service, request.method, request.path)
        if injection is not None:
            await request.read()
            response: web.StreamResponse = self._injected(
                service, injection, request.method, request.path
            )
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self.portal.count(service, request.method, exc.status)
                raise
            if not plumbing and response.status < 400:
                lost = faults.take_apply_then_fail(service, request.method, request.path)
                if lost is not None:
                    self._persist()  # the write took effect; only its reply is lost
                    response = self._injected(service, lost)
        self.portal.count(service, request.method, response.status)
        if request.method != "GET" and response.status < 400:
            self._persist()
        return response

    def _injected(
        self, service: str, inj: Injection, method: str = "GET", path: str = ""
    ) -> web.Response:
        now = self.portal.now()
        headers = {"Retry-After": str(inj.retry_after)} if inj.retry_after is not None else {}
        status = inj.status
        note = "(injected by the sandbox)"
        if status == 403:  # a missing role or a closed firewall, in each service's words
            ids = self.portal.ids
            denied = forbidden(
                service, inj.code, method=method, path=path, now=now, headers=headers,
                operator_client_id=ids.operator_client_id, tenant_id=ids.tenant_id,
                vault_name=f"{ids.site_name}-kv",
            )  # fmt: skip
            if denied is not None:
                return denied
        if service == "graph":
            code = inj.code or GRAPH_CODES.get(status, "UnknownError")
            message = (
                "Too many requests from Identifier:"
                f"{self.portal.ids.app_client_id} under category:throttle.aad.ags. "
                "Please try again later."
                if status == 429
                else f"The service returned {status} {note}."
            )
            return graph_error(status, code, message, now, headers=headers)
        if service == "keyvault":
            code = inj.code or KEYVAULT_CODES.get(status, "InternalServerError")
            message = (
                "Request was not processed because too many requests were received. "
                "Reason: VaultRequestTypeLimitReached"
                if status == 429
                else f"The service returned {status} {note}."
            )
            return keyvault_error(status, code, message, headers=headers)
        if service == "arm" and status == 429:  # ARM's front door throttles
            code = inj.code or ARM_CODES[429]
            wait = inj.retry_after if inj.retry_after is not None else 1
            message = (
                f"Number of 'read' requests for subscription '{self.portal.ids.subscription_id}' "
                f"actor '{self.portal.ids.operator_client_id}' exceeded. Please try again after "
                f"'{wait}' seconds."
            )
            return arm_error(status, code, message, headers=headers)
        if service == "arm":  # anything else comes from Microsoft.Web itself
            code = inj.code or ARM_CODES.get(status, "InternalServerError")
            message = (
                f"Cannot modify this site because another operation is in progress. {note}"
                if status == 409
                else f"The service returned {status} {note}."
            )
            return web_error(status, code, message, headers=headers)
        if service == "entra":
            error, aadsts = ENTRA_CODES.get(status, ("server_error", 90033))
            resp = entra_error(
                status, inj.code or error, aadsts, f"The service returned {status} {note}.", now
            )
            resp.headers.update(headers)
            return resp
        return web.Response(
            status=status, text=f"Error {status} {note}", content_type="text/html", headers=headers
        )

    # -- what clients need -------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        if not self.base_url or self.ca_file is None:
            raise RuntimeError("sandbox: describe() before start()")
        ids = self.portal.ids
        base = self.base_url
        return {
            "base_url": base,
            "ca_file": str(self.ca_file),
            "tenant_id": ids.tenant_id,
            "authority": base,
            "graph_url": f"{base}/v1.0",
            "graph_beta_url": f"{base}/beta",
            "arm_url": base,
            "subscription_id": ids.subscription_id,
            "resource_group": ids.resource_group,
            "site_name": ids.site_name,
            "key_vault_url": base,
            "secret_name": SECRET_NAME,
            "app": {"object_id": ids.app_object_id, "client_id": ids.app_client_id},
            "operator": {
                "client_id": ids.operator_client_id,
                "client_secret": ids.operator_client_secret,
            },
            "display_name": APP_DISPLAY_NAME,
            "app_setting": APP_SETTING,
            "app_service_url": f"{base}/app",
            "health_url": f"{base}/app/health",
            "app_action_url": f"{base}/app/api/catalog/sync",
            "graph_probe_url": f"{base}{MOBILE_APPS_PATH}",
            "admin_url": f"{base}{PREFIX}/",
            "state_file": str(self.state_file) if self.state_file else None,
        }

    def write_describe(self, path: Path | str) -> None:
        """Write :meth:`describe` as JSON (mode 0600: it holds the operator's secret)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.describe(), f, indent=2)
            f.write("\n")
        os.replace(tmp, target)


class SandboxThread:
    """A :class:`Sandbox` on its own event loop in a daemon thread; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> None:
        self.host, self.port = host, port
        self.sandbox = Sandbox(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="sandbox", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.sandbox.start(self.host, self.port))
        except BaseException as exc:  # reported to start() in the caller's thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.sandbox.stop())
        self._loop.close()

    def start(self, timeout: float = 10.0) -> SandboxThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"sandbox: not ready within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the sandbox's loop (e.g. to touch ``portal`` safely)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    @property
    def portal(self) -> Portal:
        return self.sandbox.portal

    def describe(self) -> dict[str, Any]:
        return self.sandbox.describe()

    def write_describe(self, path: Path | str) -> None:
        self.sandbox.write_describe(path)

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
