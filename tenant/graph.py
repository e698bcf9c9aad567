"""The backend API app registration's client secrets, through msgraph-sdk.

Reads the app with ``$select`` (only the fields we need), adds and removes
passwords, and turns every ``ODataError`` into a classified :mod:`tenant.errors`
error. The value Graph returns from addPassword is wrapped in a
:class:`~tenant.models.SecretValue` at once and never formatted anywhere.

msgraph's retry middleware retries every method, POST included, on 429/503/504. For
addPassword that is unsafe: a first attempt whose reply was lost (503/504 after the
credential was created) would be followed by a second addPassword, leaving a
credential whose value nobody holds. So addPassword and removePassword go out once
(the retry option is switched off for those requests) and the caller's one retry
layer decides; reads keep the middleware's retries.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
    AddPasswordPostRequestBody,
)
from msgraph.generated.applications.item.application_item_request_builder import (
    ApplicationItemRequestBuilder,
)
from msgraph.generated.applications.item.remove_password.remove_password_post_request_body import (
    RemovePasswordPostRequestBody,
)
from msgraph.generated.applications_with_app_id.applications_with_app_id_request_builder import (
    ApplicationsWithAppIdRequestBuilder,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_credential import (
    PasswordCredential as GraphPasswordCredential,
)
from msgraph_core import GraphClientFactory

from tenant._azure import map_http_error, retry_after_seconds
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

_ByIdQuery = ApplicationItemRequestBuilder.ApplicationItemRequestBuilderGetQueryParameters
_ByAppIdQuery = (
    ApplicationsWithAppIdRequestBuilder.ApplicationsWithAppIdRequestBuilderGetQueryParameters
)

SERVICE = GRAPH
APP_FIELDS = ["id", "appId", "displayName", "passwordCredentials"]


def single_shot() -> RequestConfiguration[Any]:
    """A request configuration with msgraph's retry middleware off (one attempt)."""
    return RequestConfiguration(
        options=[RetryHandlerOption(delay=0, max_retries=0, should_retry=False)]
    )


def graph_http_client(
    cloud: Cloud, retry: RetryPolicy, on_request: RequestHook | None = None
) -> httpx.AsyncClient:
    """An httpx client carrying msgraph's middleware, retrying as ``retry`` says.

    msgraph's retry handler retries 429/503/504 and waits Retry-After when given.
    ``on_request`` hears every request sent, retries included (tenant.transport).
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


def graph_service_client(
    credential: AsyncTokenCredential, http_client: httpx.AsyncClient, cloud: Cloud
) -> GraphServiceClient:
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[cloud.graph_scope])
    adapter = GraphRequestAdapter(auth, client=http_client)
    adapter.base_url = cloud.graph_url
    return GraphServiceClient(request_adapter=adapter)


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key in list(headers.keys()):
        if str(key).lower() == name.lower():
            value = headers[key]
            if isinstance(value, set | list | tuple):
                return next(iter(value), None)
            return str(value)
    return None


def map_odata_error(error: Exception, operation: str, *, write: bool = False) -> TenantError:
    """Classify an msgraph exception by HTTP status and Graph's ``error.code`` with
    :func:`tenant.errors.classify`. ``write``: a transient failure may have applied."""
    if not isinstance(error, ODataError):
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
        # Token acquisition for Graph goes through azure-core.
        return map_http_error(error, SERVICE, operation)
    status = error.response_status_code
    main = error.error
    code = main.code if main is not None else None
    message = (main.message if main is not None else None) or "no error message"
    retry_after = retry_after_seconds(_header(error.response_headers, "Retry-After"))
    return classify(
        SERVICE,
        operation,
        message,
        status=status,
        code=code,
        retry_after=retry_after,
        maybe_applied=write,
    )


def _credential(pc: GraphPasswordCredential) -> PasswordCredential:
    return PasswordCredential(
        key_id=str(pc.key_id) if pc.key_id is not None else "",
        display_name=pc.display_name,
        hint=pc.hint,
        start=pc.start_date_time,
        end=pc.end_date_time,
    )


class GraphAppRegistrations:
    """:class:`~tenant.ports.AppRegistrations` for one app, by object id or appId."""

    def __init__(
        self, client: GraphServiceClient, *, object_id: str | None, client_id: str | None
    ) -> None:
        if not object_id and not client_id:
            raise ValueError("an app registration needs an object id or a client id")
        self._client = client
        self._object_id = object_id
        self._client_id = client_id

    def _where(self) -> str:
        return f"app {self._object_id or self._client_id}"

    async def get_app(self) -> AppRegistration:
        op = f"get {self._where()}"
        try:
            if self._object_id:
                by_id = _ByIdQuery(select=APP_FIELDS)
                app = await self._client.applications.by_application_id(self._object_id).get(
                    RequestConfiguration(query_parameters=by_id)
                )
            else:
                by_app_id = _ByAppIdQuery(select=APP_FIELDS)
                app = await self._client.applications_with_app_id(self._client_id).get(
                    RequestConfiguration(query_parameters=by_app_id)
                )
        except Exception as e:
            raise map_odata_error(e, op) from None
        if app is None or not app.id:
            raise NotFound(SERVICE, op, "Graph returned no application")
        self._object_id = app.id
        self._client_id = app.app_id or self._client_id
        return AppRegistration(
            object_id=app.id,
            client_id=app.app_id or (self._client_id or ""),
            display_name=app.display_name,
            credentials=tuple(_credential(pc) for pc in app.password_credentials or []),
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
        body = AddPasswordPostRequestBody(
            password_credential=GraphPasswordCredential(
                display_name=display_name, end_date_time=end
            )
        )
        try:
            created = await self._client.applications.by_application_id(
                object_id
            ).add_password.post(body, single_shot())
        except Exception as e:
            raise map_odata_error(e, op, write=True) from None
        if created is None or not created.secret_text or created.key_id is None:
            raise TenantError(SERVICE, op, "Graph returned no secretText or keyId", permanent=True)
        return NewPassword(credential=_credential(created), value=SecretValue(created.secret_text))

    async def remove_password(self, key_id: str) -> RemoveOutcome:
        op = f"removePassword {key_id} on {self._where()}"
        object_id = await self._resolved_object_id()
        try:
            body = RemovePasswordPostRequestBody(key_id=uuid.UUID(key_id))
        except ValueError:
            raise NotFound(SERVICE, op, "the key id is not a GUID") from None
        try:
            await self._client.applications.by_application_id(object_id).remove_password.post(
                body, single_shot()
            )
        except Exception as e:
            refused = map_odata_error(e, op, write=True)
            if refused.transient or refused.kind is ErrorKind.PERMISSION_DENIED:
                raise refused from None
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
