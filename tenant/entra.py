"""Entra's token endpoint and Graph, used the way the app itself uses them.

:meth:`EntraTokenIssuer.try_secret` answers "does Entra accept this secret for this
app right now?" with a fresh credential every time (nothing cached across secrets, so
a revoked or rotated secret is never answered from a cache), closed after use.
Refusals are outcomes, classified by HTTP status, the endpoint's ``error`` field and
the AADSTS code; they are never raised.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections.abc import Callable

import aiohttp
import httpx
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity.aio import ClientSecretCredential

from tenant._azure import credential_kwargs
from tenant.endpoints import Cloud, RetryPolicy
from tenant.models import GraphCallOutcome, SecretValue, TokenFailure, TokenOutcome
from tenant.requestid import HEADER, new_request_id
from tenant.transport import on_session

# Inside try_secret a refusal is the answer, not a problem: azure-identity would log
# each one as a WARNING with Entra's whole error body (every propagation poll, every
# probe of a dead secret). The outcome is reported by our callers instead.
_trying_secret: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "_trying_secret", default=False
)


class _RefusalIsTheAnswer(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (_trying_secret.get() and record.levelno <= logging.WARNING)


# A logger's filter sees only records logged on it, so it goes on each module that
# logs token failures (azure-identity 1.x's module loggers).
for _module in ("aio._internal.get_token_mixin", "aio._internal.decorators"):
    logging.getLogger(f"azure.identity.{_module}").addFilter(_RefusalIsTheAnswer())

_AADSTS = re.compile(r"AADSTS(\d+)")
AADSTS_FAILURES: dict[int, TokenFailure] = {
    7000215: TokenFailure.INVALID_SECRET,
    7000222: TokenFailure.EXPIRED_SECRET,
    700016: TokenFailure.APP_NOT_FOUND,
    90002: TokenFailure.TENANT_NOT_FOUND,
}


def _body_of(error: HttpResponseError) -> dict[str, object]:
    response = error.response
    if response is None:
        return {}
    try:
        body = json.loads(response.text())
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def classify_token_error(error: Exception) -> TokenOutcome:
    """Turn what azure-identity raised into a :class:`TokenOutcome`.

    The AADSTS code comes from the response's ``error_codes`` when the body is
    readable, else from the exception text; the text itself is never kept (it would
    be safe, but a reason must not depend on wording).
    """
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        return TokenOutcome(ok=False, failure=TokenFailure.UNAVAILABLE)
    status: int | None = None
    body: dict[str, object] = {}
    if isinstance(error, HttpResponseError):
        status = error.status_code
        body = _body_of(error)
    codes = body.get("error_codes")
    aadsts: int | None = None
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        aadsts = codes[0]
    else:
        match = _AADSTS.search(str(error))
        aadsts = int(match.group(1)) if match else None
    err = body.get("error")
    error_field = err if isinstance(err, str) else None
    if error_field is None:
        named = re.search(r"error '\((\w+)\)", str(error))
        error_field = named.group(1) if named else None

    failure: TokenFailure
    if aadsts in AADSTS_FAILURES:
        failure = AADSTS_FAILURES[aadsts]
    elif status == 429:
        failure = TokenFailure.THROTTLED
    elif status is not None and status >= 500:
        failure = TokenFailure.UNAVAILABLE
    elif error_field in ("invalid_client", "unauthorized_client") or status == 401:
        failure = TokenFailure.INVALID_CLIENT
    elif isinstance(error, ClientAuthenticationError | HttpResponseError):
        failure = TokenFailure.OTHER
    else:
        failure = TokenFailure.UNAVAILABLE
    return TokenOutcome(ok=False, failure=failure, aadsts=aadsts, status=status, error=error_field)


class EntraTokenIssuer:
    """:class:`~tenant.ports.TokenIssuer` for apps in one tenant of one cloud."""

    def __init__(
        self,
        tenant_id: str,
        cloud: Cloud,
        retry: RetryPolicy,
        http: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._tenant_id = tenant_id
        self._session = session  # a fresh credential per test, on the shared pool
        self._cloud = cloud
        self._retry = retry
        self._http = http
        self._clock = clock

    async def try_secret(self, client_id: str, secret: SecretValue) -> TokenOutcome:
        kwargs = on_session(credential_kwargs(self._cloud, self._retry), self._session)
        # Recognizable in the sign-in log as the daemon's own (azure-core's
        # HeadersPolicy sends ``headers`` on every request of this credential).
        kwargs["headers"] = {HEADER: new_request_id()}
        try:
            credential = ClientSecretCredential(
                self._tenant_id, client_id, secret.reveal(), **kwargs
            )
        except ValueError:
            # azure-identity validates the tenant id's characters before any request.
            return TokenOutcome(ok=False, failure=TokenFailure.TENANT_NOT_FOUND)
        quiet = _trying_secret.set(True)
        try:
            async with credential:
                token = await credential.get_token(self._cloud.graph_scope)
        except Exception as e:
            return classify_token_error(e)
        finally:
            _trying_secret.reset(quiet)
        return TokenOutcome(
            ok=True, access_token=SecretValue(token.token), expires_on=token.expires_on
        )

    async def call_graph(self, token: SecretValue, url: str) -> GraphCallOutcome:
        """GET ``url`` with the bearer token. A connection failure is status 0 with
        code ``ConnectionError`` (a probe result, not an exception)."""
        started = self._clock()
        try:
            response = await self._http.get(
                url, headers={"Authorization": f"Bearer {token.reveal()}"}
            )
        except httpx.HTTPError as e:
            return GraphCallOutcome(
                status=0, code=type(e).__name__, duration_seconds=self._clock() - started
            )
        duration = self._clock() - started
        code: str | None = None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                raw = body["error"].get("code")
                code = raw if isinstance(raw, str) else None
        return GraphCallOutcome(status=response.status_code, code=code, duration_seconds=duration)
