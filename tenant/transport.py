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

from typing import Any

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport

from tenant.endpoints import Cloud

# Transport settings that client_kwargs/credential_kwargs give azure-core; with a
# transport of our own they belong to it (and connection_verify to the connector).
_TRANSPORT_KEYS = ("connection_timeout", "read_timeout")


def azure_session(cloud: Cloud) -> aiohttp.ClientSession:
    """The pool the SDK clients share; the caller closes it (inside a running loop).

    Set up as azure-core sets up its own: no cookies, no automatic decompression (the
    pipeline decodes), proxies from the environment.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=cloud.ssl_context()),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=True,
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
