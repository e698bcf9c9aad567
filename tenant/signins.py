"""Sign-in evidence: the app's service-principal sign-ins from Graph's sign-in log.

``GET /beta/auditLogs/signIns`` with ``$filter`` on appId, createdDateTime and
``signInEventTypes/any(t: t eq 'servicePrincipal')`` (service-principal sign-ins are
only in the beta endpoint's log). Each record names the credential the app signed in
with (``servicePrincipalCredentialKeyId``), when (``createdDateTime``) and how it
ended (``status.errorCode``, 0 = success). Reading it needs AuditLog.Read.All (and an
Entra ID P1/P2 tenant); a 403 is an answer (:class:`SignInsUnreadable`), not an error.

The log lags the sign-ins by minutes: a missing record proves nothing. A record we
cannot read is an error, never skipped: a dropped record could be the one that shows
the old credential still in use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from tenant._azure import error_fields, parse_graph_time
from tenant.endpoints import Cloud
from tenant.errors import GRAPH, TenantError
from tenant.graph import map_odata_error, send_graph
from tenant.models import SignIn, SignInLog, SignInsUnreadable

SERVICE = GRAPH
SIGNINS_PATH = "/auditLogs/signIns"
PAGE_SIZE = 500
# A safety stop: a log that keeps handing out nextLinks is read this far, then refused.
MAX_PAGES = 40


def beta_url(cloud: Cloud) -> str:
    """The cloud's Graph beta root: ``.../v1.0`` -> ``.../beta``."""
    root = cloud.graph_url.rstrip("/")
    if root.lower().endswith("/v1.0"):
        root = root[: -len("/v1.0")]
    return f"{root}/beta"


def odata_time(t: datetime) -> str:
    """A DateTimeOffset literal for ``$filter`` (UTC, seconds, ``Z``)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_in_filter(app_id: str, since: datetime) -> str:
    return (
        f"appId eq '{app_id}' and createdDateTime ge {odata_time(since)}"
        " and signInEventTypes/any(t: t eq 'servicePrincipal')"
    )


def parse_sign_in(item: object) -> SignIn | None:
    """One record of the log; None when it cannot be read (the caller refuses the
    page rather than skipping it)."""
    if not isinstance(item, dict):
        return None
    created = parse_graph_time(item.get("createdDateTime"))
    if created is None:
        return None
    status = item.get("status")
    status = status if isinstance(status, dict) else {}
    code = status.get("errorCode")
    if not isinstance(code, int) or isinstance(code, bool):
        return None  # success or failure unknown: unreadable, not "succeeded"
    key_id = item.get("servicePrincipalCredentialKeyId")
    reason = status.get("failureReason")
    ip = item.get("ipAddress")
    correlation = item.get("correlationId")
    record_id = item.get("id")
    return SignIn(
        key_id=key_id if isinstance(key_id, str) and key_id else None,
        created=created,
        succeeded=code == 0,
        error_code=code,
        failure_reason=reason if isinstance(reason, str) else None,
        ip_address=ip if isinstance(ip, str) and ip else None,
        correlation_id=correlation if isinstance(correlation, str) and correlation else None,
        id=record_id if isinstance(record_id, str) and record_id else None,
    )


class GraphSignInReader:
    """:class:`~tenant.ports.SignInReader` through an httpx client carrying msgraph's
    middleware (so reads are retried as every Graph read is) and the operator token."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credential: AsyncTokenCredential,
        cloud: Cloud,
        *,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._http = http
        self._credential = credential
        self._cloud = cloud
        self._page_size = page_size
        self._max_pages = max_pages

    async def _get(self, url: str, params: dict[str, str] | None, op: str) -> httpx.Response:
        return await send_graph(
            self._http, self._credential, self._cloud, "GET", url, op, params=params
        )

    async def service_principal_sign_ins(
        self, app_id: str, since: datetime
    ) -> SignInLog | SignInsUnreadable:
        op = f"read the sign-in log of app {app_id}"
        url: str | None = f"{beta_url(self._cloud)}{SIGNINS_PATH}"
        params: dict[str, str] | None = {
            "$filter": sign_in_filter(app_id, since),
            "$top": str(self._page_size),
        }
        found: list[SignIn] = []
        seen: set[str] = set()
        pages = 0
        while url is not None:
            pages += 1
            if pages > self._max_pages:
                raise TenantError(
                    SERVICE, op, f"more than {self._max_pages} pages; refusing to go on"
                )
            response = await self._get(url, params, op)
            params = None  # a nextLink carries its own query
            if response.status_code == 403:
                code, message, _ = error_fields(response.text)
                return SignInsUnreadable(
                    app_id=app_id, reason=message or "403 Forbidden", status=403, code=code
                )
            if response.status_code >= 400:
                raise map_odata_error(response, op)
            body = _json(response)
            items = body.get("value")
            if not isinstance(items, list):
                raise TenantError(SERVICE, op, "the reply has no 'value' list")
            for item in items:
                record = parse_sign_in(item)
                if record is None:
                    raise TenantError(SERVICE, op, "a sign-in record could not be read")
                if record.id is not None:
                    if record.id in seen:
                        continue  # the log may hand out a record twice
                    seen.add(record.id)
                if record.created >= since:
                    found.append(record)
            link = body.get("@odata.nextLink")
            url = link if isinstance(link, str) and link else None
        found.sort(key=lambda s: s.created, reverse=True)
        return SignInLog(app_id=app_id, since=since, sign_ins=tuple(found))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
