"""Every app registration (and, opt-in, service principal) of the tenant with the expiry
of its client secrets and certificates: Graph's list and delta routes, read-only.

Why plain httpx and not msgraph-sdk here: a tenant of 10,000 apps is ~11 pages of 999
objects, and msgraph-sdk's kiota layer turns each JSON object into a generated model
object property by property (bench/inventory.py measures both on the same page);
``json.loads`` into the few fields we keep is several times cheaper. The token still
comes from the operator's azure-identity credential, and errors are classified by the
same :func:`tenant.errors.classify` as every other service.

Cost, in Graph requests (see docs/inventory.md):

- first scan: ``GET {coll}/delta?$deltatoken=latest`` (one request: a deltaLink for
  "now", taken *before* listing so nothing that changes during the listing is missed),
  then ``GET {coll}?$select=...&$top=999`` and its ``@odata.nextLink`` pages;
- every later scan: the deltaLink, and its nextLinks only when much changed; an
  unchanged tenant costs one request. ``@removed`` objects are dropped; a delta answer
  of 410 (token expired or resync required) falls back to a full listing.
- 429 and 503/504 are waited out (``Retry-After``, else exponential backoff) and the
  same page is asked again: throttling makes a scan slower, never partial.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
from azure.core.credentials_async import AsyncTokenCredential

from tenant._azure import error_fields, retry_after_seconds
from tenant.endpoints import Cloud
from tenant.errors import TenantError, Unavailable, classify

SERVICE = "graph"
Collection = Literal["applications", "servicePrincipals"]
CredentialKind = Literal["password", "certificate"]
SELECT = ("id", "appId", "displayName", "tags", "passwordCredentials", "keyCredentials")
MAX_PAGE = 999  # the largest $top Graph accepts for directory objects
_RETRY_STATUSES = frozenset({429, 503, 504})

ResponseHook = Callable[[int], None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AppCredential:
    """One passwordCredential (``password``) or keyCredential (``certificate``)."""

    key_id: str
    kind: CredentialKind
    display_name: str | None
    end: float | None  # endDateTime as epoch seconds


@dataclass(frozen=True, slots=True)
class DirectoryObject:
    """An application (or service principal) as the inventory needs it."""

    object_id: str
    app_id: str
    display_name: str
    tags: tuple[str, ...]
    credentials: tuple[AppCredential, ...]


@dataclass(frozen=True, slots=True)
class Listing:
    """One collection as of its ``delta_link``; replaced, never mutated, by a scan."""

    collection: Collection
    objects: Mapping[str, DirectoryObject]
    delta_link: str


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    listing: Listing
    full: bool  # a full listing (first scan, or the delta token was refused)
    requests: int  # Graph requests this sync made, retries included
    changed: int  # objects added or changed (full: all of them)
    removed: int


def _epoch(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        # Graph writes up to 7 fractional digits; fromisoformat (3.11+) takes them.
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _credentials(items: object, kind: CredentialKind) -> tuple[AppCredential, ...]:
    if not isinstance(items, list):
        return ()
    found = []
    for item in items:
        if not isinstance(item, dict) or not item.get("keyId"):
            continue
        name = item.get("displayName")
        found.append(
            AppCredential(
                key_id=str(item["keyId"]).lower(),
                kind=kind,
                display_name=name if isinstance(name, str) else None,
                end=_epoch(item.get("endDateTime")),
            )
        )
    return tuple(found)


def parse_object(item: Mapping[str, Any], previous: DirectoryObject | None) -> DirectoryObject:
    """One object of a list or delta page. A delta may carry only the properties that
    changed: what is absent keeps its previous value (each credential collection is
    replaced whole when present)."""
    object_id = str(item["id"]).lower()
    old_passwords: tuple[AppCredential, ...] = ()
    old_keys: tuple[AppCredential, ...] = ()
    if previous is not None:
        old_passwords = tuple(c for c in previous.credentials if c.kind == "password")
        old_keys = tuple(c for c in previous.credentials if c.kind == "certificate")
    passwords = (
        _credentials(item["passwordCredentials"], "password")
        if "passwordCredentials" in item
        else old_passwords
    )
    keys = (
        _credentials(item["keyCredentials"], "certificate")
        if "keyCredentials" in item
        else old_keys
    )
    name = item.get("displayName", previous.display_name if previous else None)
    tags = item.get("tags", previous.tags if previous else ())
    app_id = item.get("appId", previous.app_id if previous else None)
    return DirectoryObject(
        object_id=object_id,
        app_id=str(app_id or "").lower(),
        display_name=name if isinstance(name, str) else "",
        tags=tuple(t for t in (tags or ()) if isinstance(t, str)),
        credentials=passwords + keys,
    )


def apply_delta(
    objects: Mapping[str, DirectoryObject], items: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, DirectoryObject], int, int]:
    """A new mapping with the delta ``items`` applied: (objects, changed, removed)."""
    result = dict(objects)
    changed = removed = 0
    for item in items:
        object_id = str(item.get("id", "")).lower()
        if not object_id:
            continue
        if "@removed" in item:
            removed += result.pop(object_id, None) is not None
            continue
        result[object_id] = parse_object(item, result.get(object_id))
        changed += 1
    return result, changed, removed


class GraphDirectory:
    """Reads the tenant's directory with ``http`` and tokens from ``credential``.

    ``on_response`` is called with the status of every Graph answer (the inventory's
    ``requests_total{status_code}``); ``max_attempts`` bounds how often one page is
    asked for again after 429/503/504; each wait is Retry-After (at most ``max_wait``).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        credential: AsyncTokenCredential,
        cloud: Cloud,
        *,
        on_response: ResponseHook | None = None,
        max_attempts: int = 8,
        max_wait: float = 120.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._http = http
        self._credential = credential
        self._cloud = cloud
        self._on_response = on_response
        self._max_attempts = max(1, max_attempts)
        self._max_wait = max_wait
        self._sleep = sleep
        self.requests = 0

    def _url(self, path: str, params: Mapping[str, str]) -> str:
        return f"{self._cloud.graph_url}/{path}?{urlencode(params, safe='$,')}"

    async def _get(
        self, url: str, operation: str, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        for attempt in range(1, self._max_attempts + 1):
            token = await self._credential.get_token(self._cloud.graph_scope)
            try:
                response = await self._http.get(
                    url, headers={"Authorization": f"Bearer {token.token}", **(headers or {})}
                )
            except httpx.TransportError as exc:
                raise Unavailable(
                    SERVICE, operation, f"connection failed: {type(exc).__name__}"
                ) from None
            self.requests += 1
            if self._on_response is not None:
                self._on_response(response.status_code)
            if response.status_code == 200:
                try:
                    body = response.json()
                except ValueError:
                    raise Unavailable(
                        SERVICE, operation, "Graph answered 200 without JSON"
                    ) from None
                if not isinstance(body, dict) or not isinstance(body.get("value", []), list):
                    raise TenantError(SERVICE, operation, "Graph answered without a value list")
                return body
            error = _error(response, operation)
            if response.status_code not in _RETRY_STATUSES or attempt == self._max_attempts:
                raise error
            wait = error.retry_after if error.retry_after is not None else 2.0**attempt
            await self._sleep(min(wait, self._max_wait))
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _pages(
        self, url: str, operation: str, headers: Mapping[str, str] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Every item of every page from ``url`` on; and the deltaLink, if one came."""
        items: list[dict[str, Any]] = []
        next_url: str | None = url
        while next_url is not None:
            body = await self._get(next_url, operation, headers)
            items.extend(body.get("value", []))
            if "@odata.deltaLink" in body:
                return items, str(body["@odata.deltaLink"])
            link = body.get("@odata.nextLink")
            next_url = str(link) if link else None
        return items, None

    async def full(self, collection: Collection) -> Listing:
        """The first scan: a deltaLink for now, then every object, 999 per page."""
        select = ",".join(SELECT)
        latest, delta_link = await self._pages(
            self._url(f"{collection}/delta", {"$select": select, "$deltatoken": "latest"}),
            f"start tracking {collection}",
        )
        if delta_link is None:
            raise TenantError(
                SERVICE, f"start tracking {collection}", "Graph returned no @odata.deltaLink"
            )
        items, _ = await self._pages(
            self._url(collection, {"$select": select, "$top": str(MAX_PAGE)}),
            f"list {collection}",
        )
        objects, _, _ = apply_delta({}, latest)  # normally empty; never lost if not
        objects, _, _ = apply_delta(objects, items)
        return Listing(collection, objects, delta_link)

    async def changes(self, listing: Listing) -> tuple[Listing, int, int]:
        """What changed since ``listing``: (the new listing, changed, removed)."""
        items, delta_link = await self._pages(
            listing.delta_link,
            f"track changes of {listing.collection}",
            {"Prefer": f"odata.maxpagesize={MAX_PAGE}"},
        )
        if delta_link is None:
            raise TenantError(
                SERVICE,
                f"track changes of {listing.collection}",
                "Graph returned no @odata.deltaLink",
            )
        objects, changed, removed = apply_delta(listing.objects, items)
        return Listing(listing.collection, objects, delta_link), changed, removed

    async def sync(
        self, collection: Collection, previous: Listing | None, *, full: bool = False
    ) -> SyncOutcome:
        """Bring ``previous`` up to date (or list everything when there is none, or
        when ``full`` asks for a fresh listing)."""
        before = self.requests
        if previous is not None and not full:
            try:
                listing, changed, removed = await self.changes(previous)
            except TenantError as exc:
                if exc.status != 410:
                    raise
                # The token expired or Graph wants a resync: list everything again.
            else:
                return SyncOutcome(listing, False, self.requests - before, changed, removed)
        listing = await self.full(collection)
        removed = len(set(previous.objects) - set(listing.objects)) if previous else 0
        return SyncOutcome(listing, True, self.requests - before, len(listing.objects), removed)


def _error(response: httpx.Response, operation: str) -> TenantError:
    code, message, inner_code = error_fields(response.text)
    return classify(
        SERVICE,
        operation,
        message or f"HTTP {response.status_code}",
        status=response.status_code,
        code=code,
        inner_code=inner_code,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
    )
