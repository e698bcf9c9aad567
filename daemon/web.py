"""The daemon's HTTP server: ``/metrics``, ``/-/healthy``, ``/-/ready``.

A scrape serialises the registry and nothing else (probes fill it). Optional TLS and
basic auth, like the Prometheus exporters' web config. Other parts of the daemon add
routes through :meth:`WebServer.add_routes` (the remediation webhook is mounted at
``/api/v1/alerts``) before :meth:`start`.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from daemon.webauth import BasicAuth
from exporters.exposition import Exposition

ReadyCheck = Callable[[], bool]
ExpositionSource = Callable[[], Exposition]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Paths that answer without basic auth: the webhook checks its own bearer token.
_OPEN_PREFIXES = ("/api/",)


class WebServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        ready: ReadyCheck,
        basic_auth_users: dict[str, str] | None = None,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
        exposition: ExpositionSource | None = None,
    ) -> None:
        self._registry = registry
        self._exposition = exposition
        self._ready = ready
        self._auth = BasicAuth(basic_auth_users or {})
        self._tls = (tls_cert_file, tls_key_file) if tls_cert_file and tls_key_file else None
        self.app = web.Application(middlewares=[self._auth_middleware])
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/-/healthy", self._healthy)
        self.app.router.add_get("/-/ready", self._ready_handler)
        self.app.router.add_get("/", self._index)
        self._runner: web.AppRunner | None = None

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Add routes (before :meth:`start`), e.g. the remediation webhook."""
        self.app.add_routes(list(routes))

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            self._auth.enabled
            and not request.path.startswith(_OPEN_PREFIXES)
            and not self._auth.check(request.headers.get("Authorization"))
        ):
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="secretwarden"'},
            )
        return await handler(request)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        body = generate_latest(self._registry)
        extra = self._exposition() if self._exposition is not None else Exposition()
        if extra.text:
            return self._with_exposition(request, body, extra)
        response = web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    @staticmethod
    def _with_exposition(request: web.Request, body: bytes, extra: Exposition) -> web.Response:
        """Pre-rendered families (the inventory's tens of thousands of series, rendered
        once per scan), then the registry's text. Compressed, the pre-compressed blocks
        come first and only the registry's part is compressed per scrape, in the same
        gzip stream (:meth:`Exposition.gzip_with`)."""
        headers = {"Content-Type": CONTENT_TYPE_LATEST}
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=extra.gzip_with(body), headers=headers)
        return web.Response(body=extra.plain_with(body), headers=headers)

    async def _healthy(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="Healthy.\n")

    async def _ready_handler(self, request: web.Request) -> web.StreamResponse:
        if self._ready():
            return web.Response(text="Ready.\n")
        return web.Response(status=503, text="Not ready: the first probes have not run.\n")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="secretwarden\n/metrics\n/-/healthy\n/-/ready\n", content_type="text/plain"
        )

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self._tls is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
        return ctx

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl_context())
        await site.start()
        bound: int = self._runner.addresses[0][1]  # (host, port, ...) of the listener
        return bound

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
