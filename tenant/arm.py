"""ARM's REST API as JSON, through azure-mgmt-core's pipeline (issue 16).

azure-mgmt-web's generated client cost the daemon ~39 MiB and 0.2 s of imports (its
models and operations) for the nine site calls tenant/appservice.py makes. This sends
the same requests as azure-mgmt-web 11 sends them (URL, query, Accept/Content-Type,
body; api-version 2025-05-01) through the pipeline that client builds on
:class:`~azure.mgmt.core.AsyncARMPipelineClient`, policy for policy: request id, the
ARM bearer token (with its claims challenges), the automatic resource-provider
registration, azure-core's retry, the ARM logging allow-list. Its errors are the
generated client's: ``map_error`` with its error map, then ``HttpResponseError`` in
ARM's error format, so :func:`tenant._azure.map_http_error` sees the same exceptions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlparse

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.pipeline import policies
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.core.utils import case_insensitive_dict
from azure.mgmt.core import AsyncARMPipelineClient
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.policies import (
    ARMHttpLoggingPolicy,
    AsyncARMAutoResourceProviderRegistrationPolicy,
    AsyncARMChallengeAuthenticationPolicy,
)

ArmClient = AsyncARMPipelineClient[HttpRequest, AsyncHttpResponse]

# The Microsoft.Web api-version azure-mgmt-web 11 sends (its default; the sandbox's
# compatibility tests hold the sandbox to that SDK).
API_VERSION = "2025-05-01"
# What the User-Agent says in place of azure-mgmt-web's "mgmt-web/<version>".
SDK_MONIKER = "secretwarden-arm"
# The generated operations' error map: these statuses raise these azure-core errors.
ERROR_MAP: Mapping[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}
_JSON = "application/json"


def arm_client(
    credential: AsyncTokenCredential,
    base_url: str,
    credential_scopes: Sequence[str],
    **kwargs: Any,
) -> ArmClient:
    """A pipeline client for ARM at ``base_url`` with the policies, in the order, that
    azure-mgmt-web's ``WebSiteManagementClient`` builds; ``kwargs`` are the same
    keyword arguments (tenant._azure.client_kwargs, a ``transport``, hooks)."""
    kwargs.setdefault("sdk_moniker", SDK_MONIKER)
    redirect = policies.AsyncRedirectPolicy(**kwargs)
    pipeline: list[Any] = [
        policies.RequestIdPolicy(**kwargs),
        policies.HeadersPolicy(**kwargs),
        policies.UserAgentPolicy(**kwargs),
        policies.ProxyPolicy(**kwargs),
        policies.ContentDecodePolicy(**kwargs),
        AsyncARMAutoResourceProviderRegistrationPolicy(),
        redirect,
        policies.AsyncRetryPolicy(**kwargs),
        AsyncARMChallengeAuthenticationPolicy(credential, *credential_scopes, **kwargs),
        policies.CustomHookPolicy(**kwargs),
        policies.NetworkTraceLoggingPolicy(**kwargs),
        policies.DistributedTracingPolicy(**kwargs),
        policies.SensitiveHeaderCleanupPolicy(**kwargs),
        ARMHttpLoggingPolicy(**kwargs),
    ]
    return ArmClient(base_url=base_url, policies=pipeline, **kwargs)


def arm_path(template: str, **names: str) -> str:
    """``template`` with each ``{name}`` replaced by its value quoted as one path
    segment (``/`` too), as the generated request builders quote them."""
    return template.format(**{k: quote(v, safe="") for k, v in names.items()})


def _raise_for(
    response: AsyncHttpResponse, error_map: Mapping[int, type[HttpResponseError]]
) -> None:
    map_error(status_code=response.status_code, response=response, error_map=error_map)
    raise HttpResponseError(response=response, error_format=ARMErrorFormat)


async def send(
    client: ArmClient,
    request: HttpRequest,
    *,
    expected: Collection[int] = (200,),
    error_map: Mapping[int, type[HttpResponseError]] = ERROR_MAP,
    **kwargs: Any,
) -> AsyncHttpResponse:
    """Send ``request``; its response (read) when the status is ``expected``, else the
    generated operations' exception. ``kwargs`` go to the pipeline (``retry_total``).
    A path is joined to the client's base URL, as the generated client formats it."""
    request.url = client.format_url(request.url)
    response = await client.send_request(request, **kwargs)
    if response.status_code not in expected:
        _raise_for(response, error_map)
    return response


def build_request(
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    body: Any = None,
    accept: bool = True,
    api_version: str = API_VERSION,
) -> HttpRequest:
    """A request as azure-mgmt-web builds it: ``api-version`` first, then ``params``;
    ``Accept: application/json`` unless ``accept`` is False (its POST actions send
    none); a JSON ``body`` serialized as ``json.dumps`` does, with its Content-Type."""
    headers: dict[str, str] = {}
    content: str | None = None
    if body is not None:
        content = json.dumps(body)
        headers["Content-Type"] = _JSON
    if accept:
        headers["Accept"] = _JSON
    query = {"api-version": api_version, **(params or {})}
    return HttpRequest(method, path, params=query, headers=headers, content=content)


async def json_body(client: ArmClient, request: HttpRequest, **kwargs: Any) -> dict[str, Any]:
    """The JSON object a 200 answers ``request`` with ({} when it is not an object)."""
    body = (await send(client, request, **kwargs)).json()
    return body if isinstance(body, dict) else {}


async def items(
    client: ArmClient, request: HttpRequest, **kwargs: Any
) -> AsyncIterator[dict[str, Any]]:
    """Every item of a paged list: each page's ``value``, following ``nextLink`` as the
    generated pager does (its query kept, the client's api-version, no headers)."""
    while True:
        page = await json_body(client, request, **kwargs)
        for item in page.get("value") or []:
            if isinstance(item, dict):
                yield item
        next_link = page.get("nextLink")
        if not next_link or not isinstance(next_link, str):
            return
        parsed = urlparse(next_link)
        params = case_insensitive_dict(
            {k: [quote(v) for v in vs] for k, vs in parse_qs(parsed.query).items()}
        )
        params["api-version"] = API_VERSION
        request = HttpRequest("GET", urljoin(next_link, parsed.path), headers={}, params=params)
