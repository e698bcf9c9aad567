"""One aiohttp connection pool, with one TLS context, for every azure-core client.

Left to itself, azure-core's aiohttp transport turns ``connection_verify=<CA file>``
into a new ``ssl.SSLContext`` on every request (``AioHttpTransport._build_ssl_config``
in azure-core 1.x loads the CA file each time). aiohttp keys its pooled connections by
that context, so no connection was ever reused: every Key Vault and ARM call made a
new TLS handshake and left another pooled connection and OpenSSL context behind. The
daemon's RSS grew by ~0.3 MB per Key Vault call, about 1 MB per remediation run
(issue 9, measured with ``bench/soak.py``). A fresh credential per token test, the
first suspect, costs ~1 KB per test and was not the cause.

So a :class:`~tenant.connect.TenantSession` opens one ``aiohttp.ClientSession`` whose
connector holds the cloud's TLS context, built once, and every SDK client and
credential of the session gets a transport on it that does not own it (closing a
client leaves the pool to the session).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from azure.core.pipeline.transport import AioHttpTransport

from tenant.endpoints import Cloud

# Transport settings that client_kwargs/credential_kwargs give azure-core; with a
# transport of our own they belong to it (and connection_verify to the connector).
_TRANSPORT_KEYS = ("connection_timeout", "read_timeout")


def azure_session(cloud: Cloud, on_request: RequestHook | None = None) -> aiohttp.ClientSession:
    """The pool the SDK clients share; the caller closes it (inside a running loop).

    Set up as azure-core sets up its own: no cookies, no automatic decompression (the
    pipeline decodes), proxies from the environment. ``on_request`` hears the service of
    every request sent (:func:`azure_service`).
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=cloud.ssl_context()),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=True,
        trace_configs=[_trace(cloud, on_request)] if on_request is not None else None,
    )


def on_session(kwargs: dict[str, Any], session: aiohttp.ClientSession | None) -> dict[str, Any]:
    """``kwargs`` (from client_kwargs/credential_kwargs) with a transport on ``session``
    instead of a CA path; unchanged when there is no session."""
    if session is None:
        return kwargs
    out = dict(kwargs)
    out.pop("connection_verify", None)  # the connector's context verifies
    transport_kwargs = {k: out[k] for k in _TRANSPORT_KEYS if k in out}
    out["transport"] = AioHttpTransport(session=session, session_owner=False, **transport_kwargs)
    return out


# Counting what goes out (issue 16: the request budget). Each HTTP request the session's
# clients send, retries included, is reported as the Azure service it went to; requests
# to anything else (the app's own URLs) are not reported.
RequestHook = Callable[[str], None]
AZURE_SERVICES = ("entra", "graph", "keyvault", "arm")
_ENTRA_PATHS = ("/oauth2/", "/.well-known/", "/discovery/", "/common/", "/organizations/")


def azure_service(url: str, cloud: Cloud) -> str | None:
    """The Azure service ``url`` belongs to in ``cloud`` (entra, graph, keyvault, arm),
    or None. Decided by host and path, so that a cloud serving every service on one
    host (the sandbox) is counted the same way as the public clouds."""
    parts = urlsplit(url)
    path = parts.path
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    graph = urlsplit(cloud.graph_url)
    if origin == f"{graph.scheme}://{graph.netloc}".lower() and path.startswith(
        ("/v1.0/", "/beta/")
    ):
        return "graph"
    if parts.netloc.lower().split(":")[0].endswith(".vault.azure.net") or path == "/secrets":
        return "keyvault"
    if path.startswith("/secrets/"):
        return "keyvault"
    if url.lower().startswith(cloud.arm_url.lower() + "/") and path.startswith(
        ("/subscriptions/", "/providers/", "/tenants")
    ):
        return "arm"
    if url.lower().startswith(cloud.authority.lower() + "/") and any(
        p in path for p in _ENTRA_PATHS
    ):
        return "entra"
    return None


def _trace(cloud: Cloud, hook: RequestHook) -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()

    async def on_request_start(
        _session: aiohttp.ClientSession,
        _context: Any,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        service = azure_service(str(params.url), cloud)
        if service is not None:
            hook(service)

    trace.on_request_start.append(on_request_start)
    return trace


class CountingTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, reporting each request it sends (the innermost layer:
    msgraph's retry middleware wraps it, so each retry is reported too)."""

    def __init__(self, cloud: Cloud, hook: RequestHook | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cloud = cloud
        self._hook = hook

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._hook is not None:
            service = azure_service(str(request.url), self._cloud)
            if service is not None:
                self._hook(service)
        return await super().handle_async_request(request)
