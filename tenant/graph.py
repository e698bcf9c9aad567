"""The backend API app registration's client secrets: Graph's REST API as JSON over httpx.

Reads the app with ``$select`` (only the fields we need), adds and removes passwords,
and turns every Graph error reply (``{"error": {"code", "message"}}``, its status and
Retry-After) into a classified :mod:`tenant.errors` error. The value Graph returns from
addPassword is wrapped in a :class:`~tenant.models.SecretValue` at once and never
formatted anywhere.

The three calls (Graph v1.0, https://learn.microsoft.com/graph/api/application-get,
``application-addpassword``, ``application-removepassword``)::

    GET  /applications/{id}?$select=id,appId,displayName,passwordCredentials
    GET  /applications(appId='{appId}')?$select=...
    POST /applications/{id}/addPassword     {"passwordCredential": {...}}  -> 200 + the credential
    POST /applications/{id}/removePassword  {"keyId": "<guid>"}            -> 204

Why not msgraph-sdk (``GraphServiceClient``): three calls do not need the generated
request builders and models, and importing them costs ~1,250 modules, ~27 MiB of RSS
and ~1.6 s on the first Graph call (issue 16); :mod:`tenant.directory` explains the
per-object parse cost of its models. Azure CLI made the same move for the same reasons:
its role module talks to Graph through a small client of raw REST calls
(``azure/cli/command_modules/role/_msgrpah/_graph_client.py``) instead of an SDK.

The requests still go through msgraph_core's middleware (:func:`graph_http_client`,
kiota's retry, redirect and telemetry handlers) with the operator's token. That
middleware runs only for a request that carries kiota's request options
(``AsyncGraphTransport`` sends any other request straight to the transport), so every
request here carries them (:func:`middleware_options`).

msgraph's retry middleware retries every method, POST included, on 429/503/504. For
addPassword that is unsafe: a first attempt whose reply was lost (503/504 after the
credential was created) would be followed by a second addPassword, leaving a
credential whose value nobody holds. So addPassword and removePassword go out once
(the retry option is switched off for those requests) and the caller's one retry
layer decides; reads keep the middleware's retries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_http.middleware.middleware import REQUEST_OPTIONS_KEY
from kiota_http.middleware.options import RetryHandlerOption
from msgraph_core import GraphClientFactory

from tenant._azure import error_fields, map_http_error, parse_graph_time, retry_after_seconds
from tenant.endpoints import Cloud, RetryPolicy
from tenant.errors import (
    GRAPH,
    ErrorKind,
    NotFound,
    TenantError,
    Unavailable,
    Unsettled,
    classify,
)
from tenant.models import (
    AppRegistration,
    NewPassword,
    PasswordCredential,
    RemoveOutcome,
    SecretValue,
)
from tenant.transport import CountingTransport, RequestHook

SERVICE = GRAPH
APP_FIELDS = ["id", "appId", "displayName", "passwordCredentials"]


def middleware_options(*, single_shot: bool = False) -> dict[str, Any]:
    """httpx request ``extensions`` that send a request through msgraph_core's
    middleware: with the client's own options (reads: retried), or with the retry
    handler off (``single_shot``: one attempt). A fresh dict per request (the
    middleware pops its key from the request's extensions)."""
    options: dict[str, Any] = {}
    if single_shot:
        options[RetryHandlerOption.get_key()] = RetryHandlerOption(
            delay=0, max_retries=0, should_retry=False
        )
    return {REQUEST_OPTIONS_KEY: options}


def graph_http_client(
    cloud: Cloud, retry: RetryPolicy, on_request: RequestHook | None = None
) -> httpx.AsyncClient:
    """An httpx client carrying msgraph's middleware, retrying as ``retry`` says.

    msgraph's retry handler retries 429/503/504 and waits Retry-After when given, for
    requests sent with :func:`middleware_options`. ``on_request`` hears every request
    sent, retries included (tenant.transport).
    """
    client = httpx.AsyncClient(
        base_url=cloud.graph_url,
        transport=CountingTransport(cloud, on_request, verify=cloud.ssl_context()),
        timeout=httpx.Timeout(retry.timeout_seconds),
    )
    options: dict[str, Any] = {
        RetryHandlerOption.get_key(): RetryHandlerOption(
            delay=min(retry.backoff_factor, RetryHandlerOption.MAX_DELAY),
            max_retries=min(retry.total, RetryHandlerOption.MAX_MAX_RETRIES),
            should_retry=retry.total > 0,
        )
    }
    result: httpx.AsyncClient = GraphClientFactory.create_with_default_middleware(
        client=client, options=options
    )
    return result


def map_odata_error(
    error: httpx.Response | Exception, operation: str, *, write: bool = False
) -> TenantError:
    """Classify what a Graph call ended with, with :func:`tenant.errors.classify`:

    - an error reply (``httpx.Response``): its status, Graph's OData error body
      ``{"error": {"code", "message"}}`` and Retry-After;
    - an httpx transport failure: :class:`~tenant.errors.Unavailable`;
    - anything else (the operator's token, from azure-identity): as azure-core's.

    ``write``: a transient failure may have applied (``maybe_applied``)."""
    if isinstance(error, httpx.Response):
        code, message, inner = error_fields(error.text)
        return classify(
            SERVICE,
            operation,
            message or error.reason_phrase or "no error message",
            status=error.status_code,
            code=code,
            inner_code=inner,
            retry_after=retry_after_seconds(error.headers.get("Retry-After")),
            maybe_applied=write,
        )
    if isinstance(error, httpx.TransportError):
        # A request that never connected took no effect; any other transport
        # failure (a read timeout, a dropped connection) may have been applied.
        lost = not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
        return Unavailable(
            SERVICE,
            operation,
            f"connection failed: {type(error).__name__}",
            maybe_applied=write and lost,
        )
    if isinstance(error, httpx.HTTPError):
        # Sent, and the reply could not be used (too many redirects, undecodable).
        return Unavailable(
            SERVICE, operation, f"unusable reply: {type(error).__name__}", maybe_applied=write
        )
    # Token acquisition for Graph goes through azure-core; nothing was sent yet.
    return map_http_error(error, SERVICE, operation)


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value if isinstance(value, str) else None


def _key_id(value: object) -> str:
    """A keyId in its canonical form (lower-case GUID), as the SDK's UUID gave it."""
    if not isinstance(value, str):
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value


def _credential(item: dict[str, Any]) -> PasswordCredential:
    return PasswordCredential(
        key_id=_key_id(item.get("keyId")),
        display_name=_text(item, "displayName"),
        hint=_text(item, "hint"),
        start=parse_graph_time(item.get("startDateTime")),
        end=parse_graph_time(item.get("endDateTime")),
    )


def _graph_time(t: datetime) -> str:
    """A DateTimeOffset for a request body (UTC; a naive time is taken as UTC)."""
    aware = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json(response: httpx.Response, operation: str, *, write: bool = False) -> Any:
    """The reply's JSON; a reply that is not JSON is treated as lost (transient, and
    for a write ``maybe_applied``: Graph said 2xx, so it probably took effect)."""
    try:
        return response.json()
    except ValueError:
        raise Unavailable(
            SERVICE,
            operation,
            f"Graph answered {response.status_code} without JSON",
            maybe_applied=write,
        ) from None


async def send_graph(
    http: httpx.AsyncClient,
    credential: AsyncTokenCredential,
    cloud: Cloud,
    method: str,
    url: str,
    op: str,
    *,
    params: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    """One Graph request with ``credential``'s token, through msgraph_core's middleware
    (:func:`middleware_options`). Writes (``body`` given: the POST actions) go out once;
    reads are retried by the middleware. A failure to get the token or to get a reply
    is raised classified; the reply is returned whatever its status."""
    write = body is not None
    try:
        token = await credential.get_token(cloud.graph_scope)
    except Exception as e:
        raise map_odata_error(e, op) from None  # nothing was sent
    try:
        return await http.request(
            method,
            url,
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {token.token}"},
            extensions=middleware_options(single_shot=write),
        )
    except httpx.HTTPError as e:
        raise map_odata_error(e, op, write=write) from None


class GraphAppRegistrations:
    """:class:`~tenant.ports.AppRegistrations` for one app, by object id or appId.

    ``http`` is a :func:`graph_http_client`; ``credential`` signs the requests in
    (the operator) for ``cloud``'s Graph.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        credential: AsyncTokenCredential,
        cloud: Cloud,
        *,
        object_id: str | None,
        client_id: str | None,
    ) -> None:
        if not object_id and not client_id:
            raise ValueError("an app registration needs an object id or a client id")
        self._http = http
        self._credential = credential
        self._cloud = cloud
        self._object_id = object_id
        self._client_id = client_id

    def _where(self) -> str:
        return f"app {self._object_id or self._client_id}"

    def _app_url(self, object_id: str) -> str:
        return f"{self._cloud.graph_url}/applications/{quote(object_id, safe='')}"

    async def _send(
        self, method: str, url: str, op: str, *, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        """:func:`send_graph`; an error reply is raised classified."""
        response = await send_graph(
            self._http, self._credential, self._cloud, method, url, op, body=body
        )
        if response.status_code >= 400:
            raise map_odata_error(response, op, write=body is not None)
        return response

    async def get_app(self) -> AppRegistration:
        op = f"get {self._where()}"
        query = urlencode({"$select": ",".join(APP_FIELDS)}, safe="$,")
        if self._object_id:
            url = f"{self._app_url(self._object_id)}?{query}"
        else:
            app_id = quote(self._client_id or "", safe="")
            url = f"{self._cloud.graph_url}/applications(appId='{app_id}')?{query}"
        app = _json(await self._send("GET", url, op), op)
        if not isinstance(app, dict):
            raise TenantError(SERVICE, op, "Graph's reply is not a JSON object")
        object_id = _text(app, "id")
        if not object_id:
            raise NotFound(SERVICE, op, "Graph returned no application")
        passwords = app.get("passwordCredentials")
        if passwords is None:
            passwords = []
        if not isinstance(passwords, list) or not all(isinstance(p, dict) for p in passwords):
            # A credential we cannot read could be the one that works: refuse the reply.
            raise TenantError(SERVICE, op, "Graph's passwordCredentials could not be read")
        self._object_id = object_id
        self._client_id = _text(app, "appId") or self._client_id
        return AppRegistration(
            object_id=object_id,
            client_id=self._client_id or "",
            display_name=_text(app, "displayName"),
            credentials=tuple(_credential(pc) for pc in passwords),
        )

    async def list_credentials(self) -> tuple[PasswordCredential, ...]:
        return (await self.get_app()).credentials

    async def find_credentials(self, display_name: str) -> tuple[PasswordCredential, ...]:
        return tuple(c for c in await self.list_credentials() if c.display_name == display_name)

    async def client_id(self) -> str:
        if self._client_id is None:
            await self.get_app()
        if not self._client_id:
            raise NotFound(SERVICE, f"get {self._where()}", "Graph returned no appId")
        return self._client_id

    async def _resolved_object_id(self) -> str:
        if self._object_id is None:
            await self.get_app()
        assert self._object_id is not None  # get_app sets it or raises
        return self._object_id

    async def add_password(self, display_name: str, end: datetime | None) -> NewPassword:
        op = f"addPassword on {self._where()}"
        object_id = await self._resolved_object_id()
        credential: dict[str, Any] = {"displayName": display_name}
        if end is not None:
            credential["endDateTime"] = _graph_time(end)
        response = await self._send(
            "POST",
            f"{self._app_url(object_id)}/addPassword",
            op,
            body={"passwordCredential": credential},
        )
        created = _json(response, op, write=True)
        if not isinstance(created, dict):
            created = {}
        secret = created.pop("secretText", None)  # wrapped at once, kept nowhere else
        value = SecretValue(secret) if isinstance(secret, str) and secret else None
        if value is None or not _key_id(created.get("keyId")):
            raise TenantError(SERVICE, op, "Graph returned no secretText or keyId", permanent=True)
        return NewPassword(credential=_credential(created), value=value)

    async def remove_password(self, key_id: str) -> RemoveOutcome:
        op = f"removePassword {key_id} on {self._where()}"
        object_id = await self._resolved_object_id()
        try:
            body = {"keyId": str(uuid.UUID(key_id))}
        except ValueError:
            raise NotFound(SERVICE, op, "the key id is not a GUID") from None
        try:
            await self._send("POST", f"{self._app_url(object_id)}/removePassword", op, body=body)
        except TenantError as refused:
            if refused.transient or refused.kind is ErrorKind.PERMISSION_DENIED:
                raise
            # Graph's reply for a keyId that is already gone is undocumented: a fresh
            # read decides, not the wording. Absent: gone. Still listed: reads may lag
            # a removal whose reply was lost, so it is not settled yet (transient).
            present = {c.key_id.lower() for c in await self.list_credentials()}
            if key_id.lower() not in present:
                return RemoveOutcome.ALREADY_GONE
            raise Unsettled(
                SERVICE,
                op,
                f"Graph refused it ({refused.detail}) but still lists the credential; "
                "its reads may lag its writes",
                status=refused.status,
                code=refused.code,
            ) from None
        return RemoveOutcome.REMOVED
