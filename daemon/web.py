"""The daemon's HTTP server: ``/metrics``, ``/-/healthy``, ``/-/ready``.

A scrape serialises the registry and nothing else (probes fill it); families that come
pre-rendered (the probes' metrics, re-rendered when probes finish, and the inventory's,
once per scan) are copied, and only the rest of the registry is rendered per scrape. Optional TLS,
client certificates, basic auth, response headers and a rate limit, as the Prometheus
exporters' web config has them (daemon/webconfig.py). Basic auth is verified off the
event loop (daemon/webauth.py), so no request can stall the probes or the watchdog.
Other parts of the daemon add routes through :meth:`WebServer.add_routes` (the
remediation webhook is mounted at ``/api/v1/alerts``) before :meth:`start`.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from daemon.config import ConfigError
from daemon.logging import get_logger
from daemon.webauth import AuthLimits, BasicAuth, TokenBucket, Verdict
from daemon.webconfig import TLSSettings, WebSettings, load_cert_chain, ssl_context
from exporters.exposition import Exposition, prerendered_served

ReadyCheck = Callable[[], bool]
ExpositionSource = Callable[[], Exposition]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Paths that answer without basic auth: the webhook checks its own bearer token.
_OPEN_PREFIXES = ("/api/",)
log = get_logger("secretwarden.web")


# The SAN kinds the exporter-toolkit compares (DNS names, e-mail addresses, IP addresses,
# URIs), as Python's getpeercert() names them.
_SAN_KINDS = ("DNS", "email", "IP Address", "URI")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def san_allowed(sans: Iterable[tuple[str, object]], allowed: Iterable[str]) -> bool:
    """Whether a certificate's ``subjectAltName`` entries (as getpeercert() gives them)
    include an allowed one. IP addresses compare as addresses: Python writes an IPv6
    SAN ``2001:DB8:0:0:0:0:0:1``, the file ``2001:db8::1``; other kinds compare exactly."""
    allowed = list(allowed)
    allowed_ips = {ip for a in allowed if (ip := _ip(a)) is not None}
    for kind, value in sans:
        if kind not in _SAN_KINDS or not isinstance(value, str):
            continue
        if kind == "IP Address":
            if _ip(value) in allowed_ips:
                return True
        elif value in allowed:
            return True
    return False


class StartError(Exception):
    """The server cannot listen; the message is one line for the operator."""


def _plain(status: int, text: str, **headers: str) -> web.Response:
    return web.Response(status=status, text=text, headers=headers)


class WebServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        ready: ReadyCheck,
        settings: WebSettings | None = None,
        basic_auth_users: dict[str, str] | None = None,
        auth_limits: AuthLimits | None = None,
        exposition: ExpositionSource | None = None,
        prerendered: ExpositionSource | None = None,
    ) -> None:
        """``basic_auth_users`` is shorthand for ``settings=WebSettings(users=...)``.
        ``exposition``: the inventory's text; ``prerendered``: the text of registry
        families whose collectors yield nothing inside
        :func:`~exporters.exposition.prerendered_served` (exporters.metrics.Metrics)."""
        if settings is None:
            settings = WebSettings(users=dict(basic_auth_users or {}))
        self._registry = registry
        self._exposition = exposition
        self._prerendered = prerendered
        self._ready = ready
        self.settings = settings
        self._auth = BasicAuth(settings.users, auth_limits)
        self._limiter = self._bucket(settings)
        self._ssl: ssl.SSLContext | None = None
        self.app = web.Application(middlewares=[self._guard_middleware])
        self.app.router.add_get("/metrics", self._metrics)
        self.app.router.add_get("/-/healthy", self._healthy)
        self.app.router.add_get("/-/ready", self._ready_handler)
        self.app.router.add_get("/", self._index)
        self._runner: web.AppRunner | None = None

    @staticmethod
    def _bucket(settings: WebSettings) -> TokenBucket | None:
        rate = settings.rate_limit
        if rate is None:
            return None
        return TokenBucket(rate.burst, 1 / rate.interval_seconds, time.monotonic())

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Add routes (before :meth:`start`), e.g. the remediation webhook."""
        self.app.add_routes(list(routes))

    @web.middleware
    async def _guard_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every answer carries the configured headers: refusals (401, 403, 429, 503) and
        aiohttp's own (404, 405) as much as the endpoints' (the exporter-toolkit sets
        them before its 401 too)."""
        try:
            response = await self._guard(request, handler)
        except web.HTTPException as exc:
            exc.headers.update(self.settings.headers)
            raise
        response.headers.update(self.settings.headers)
        return response

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._limiter is not None and not self._limiter.take(time.monotonic()):
            return _plain(429, "Too Many Requests\n")
        tls = self.settings.tls
        if tls is not None and tls.allowed_sans and not self._san_allowed(request, tls):
            return _plain(403, "Forbidden: client certificate SAN not allowed\n")
        if self._auth.enabled and not request.path.startswith(_OPEN_PREFIXES):
            verdict = await self._auth.check(request.headers.get("Authorization"), request.remote)
            if verdict is Verdict.THROTTLED:
                wait = str(math.ceil(60 / self._auth.limits.failures_per_minute))
                return _plain(429, "Too many failed logins; try later\n", **{"Retry-After": wait})
            if verdict is Verdict.BUSY:
                return _plain(503, "Busy verifying logins; try later\n", **{"Retry-After": "5"})
            if verdict is not Verdict.OK:
                auth = 'Basic realm="secretwarden"'
                return _plain(401, "Unauthorized\n", **{"WWW-Authenticate": auth})
        return await handler(request)

    @staticmethod
    def _san_allowed(request: web.Request, tls: TLSSettings) -> bool:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        return san_allowed((peer or {}).get("subjectAltName", ()), tls.allowed_sans)

    async def _metrics(self, request: web.Request) -> web.StreamResponse:
        extra = self._exposition() if self._exposition is not None else Exposition()
        if self._prerendered is not None:
            cached = self._prerendered()
            with prerendered_served():
                body = generate_latest(self._registry)
            if not extra.text:
                return self._with_exposition(request, body, cached)
            body = cached.text + body  # the inventory's stays the pre-compressed part
        else:
            body = generate_latest(self._registry)
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

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0). :class:`StartError`
        says in one line why it cannot (port in use, unknown host, bad TLS files)."""
        where = f"{host}:{port}"
        try:
            self._ssl = ssl_context(self.settings.tls) if self.settings.tls else None
        except ConfigError as exc:
            raise StartError(f"cannot serve TLS on {where}: {'; '.join(exc.problems)}") from None
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl)
        try:
            await site.start()
        except socket.gaierror as exc:
            await self.stop()
            raise StartError(f"cannot listen on {where}: unknown host ({exc.strerror})") from None
        except OSError as exc:
            await self.stop()
            cause = exc.strerror or str(exc)
            if exc.errno == errno.EADDRINUSE:
                cause = "the address is already in use (another secretwarden or exporter?)"
            raise StartError(f"cannot listen on {where}: {cause}") from None
        bound: int = self._runner.addresses[0][1]  # (host, port, ...) of the listener
        return bound

    def apply(self, new: WebSettings) -> list[str]:
        """Take new settings on a reload: users, headers and the rate limit at once, a
        new certificate and key for the next connections. Returns what needs a restart."""
        old = self.settings
        later = []
        tls = old.tls
        if (old.tls is None) != (new.tls is None):
            later.append("TLS on or off")
        elif old.tls is not None and new.tls is not None:
            tls = new.tls
            if old.tls.without_files() != new.tls.without_files():
                later.append("TLS settings other than cert_file/key_file")
                tls = replace(old.tls, cert_file=new.tls.cert_file, key_file=new.tls.key_file)
            if self._ssl is not None:
                load_cert_chain(self._ssl, tls)  # checked before: raises only on a race
        self._auth.set_users(new.users)
        self._limiter = self._bucket(new)
        # keep the TLS the listener really has; the rest is the new file's
        self.settings = WebSettings(
            source=new.source,
            tls=tls,
            users=new.users,
            headers=new.headers,
            rate_limit=new.rate_limit,
        )
        return later

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls else "http"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._auth.close()
