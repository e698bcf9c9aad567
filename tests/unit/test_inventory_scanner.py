"""tenant/directory.py against Graph's documented wire format (recorded pages served by
httpx's MockTransport; tests/integration/test_inventory.py runs it against the sandbox):
$select/$top on the list, nextLink paging, deltaLink tracking, @removed, partial delta
objects, 429 with Retry-After, 410 falling back to a full listing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.core.credentials import AccessToken

from tenant.directory import GraphDirectory, Listing, apply_delta, parse_object
from tenant.endpoints import PUBLIC
from tenant.errors import Throttled, Unavailable

GRAPH = PUBLIC.graph_url

APP_A = {
    "id": "00000000-0000-0000-0000-0000000000a1",
    "appId": "11111111-0000-0000-0000-0000000000a1",
    "displayName": "Payroll API",
    "tags": ["team:payments"],
    "passwordCredentials": [
        {
            "customKeyIdentifier": None,
            "displayName": "CI/CD",
            "endDateTime": "2027-01-31T10:00:00.1234567Z",
            "hint": "abc",
            "keyId": "AAAAAAAA-0000-0000-0000-000000000001",
            "secretText": None,
            "startDateTime": "2025-01-31T10:00:00Z",
        }
    ],
    "keyCredentials": [
        {
            "customKeyIdentifier": "52ED9B5038A47B9E2E2190715CC238359D4F8F73",
            "displayName": "CN=payroll",
            "endDateTime": "2026-12-01T00:00:00Z",
            "key": None,
            "keyId": "bbbbbbbb-0000-0000-0000-000000000002",
            "startDateTime": "2025-12-01T00:00:00Z",
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
        }
    ],
}
APP_B = {
    "id": "00000000-0000-0000-0000-0000000000b2",
    "appId": "11111111-0000-0000-0000-0000000000b2",
    "displayName": "No credentials",
    "tags": [],
    "passwordCredentials": [],
    "keyCredentials": [],
}


class FakeCredential:
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == (PUBLIC.graph_scope,)
        return AccessToken("token", 2**31)

    async def close(self) -> None:
        return None


Handler = Callable[[httpx.Request], httpx.Response]


def _page(items: list[dict[str, Any]], **links: str) -> httpx.Response:
    body = {"@odata.context": f"{GRAPH}/$metadata#applications", **links, "value": items}
    return httpx.Response(200, json=body)


def _directory(handler: Handler, seen: list[httpx.Request], **kwargs: Any) -> GraphDirectory:
    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.headers["Authorization"] == "Bearer token"
        return handler(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    waits: list[float] = kwargs.pop("waits", [])

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return GraphDirectory(http, FakeCredential(), PUBLIC, sleep=sleep, **kwargs)  # type: ignore[arg-type]


def _query(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(request.url)).query)


async def test_first_scan_tracks_first_then_lists_every_page_with_select_and_top() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path, q = request.url.path, _query(request)
        if path.endswith("/applications/delta"):
            assert q["$deltatoken"] == ["latest"]
            return _page([], **{"@odata.deltaLink": f"{GRAPH}/applications/delta?$deltatoken=t1"})
        assert path.endswith("/applications")
        assert q["$top"] == ["999"]
        assert q["$select"] == ["id,appId,displayName,tags,passwordCredentials,keyCredentials"]
        if "$skiptoken" not in q:
            nxt = f"{request.url}&$skiptoken=p2"  # Graph keeps the query in nextLink
            return _page([APP_A], **{"@odata.nextLink": nxt})
        return _page([APP_B])

    directory = _directory(handler, seen)
    outcome = await directory.sync("applications", None)
    assert outcome.full
    assert outcome.requests == 3 == directory.requests
    assert [r.url.path.rsplit("/", 1)[-1] for r in seen] == [
        "delta",
        "applications",
        "applications",
    ]
    listing = outcome.listing
    assert listing.delta_link.endswith("$deltatoken=t1")
    a = listing.objects[APP_A["id"]]
    assert a.app_id == APP_A["appId"]
    assert a.display_name == "Payroll API"
    assert a.tags == ("team:payments",)
    assert [(c.kind, c.key_id, c.display_name) for c in a.credentials] == [
        ("password", "aaaaaaaa-0000-0000-0000-000000000001", "CI/CD"),
        ("certificate", "bbbbbbbb-0000-0000-0000-000000000002", "CN=payroll"),
    ]
    assert a.credentials[0].end == pytest.approx(1801389600.123456)
    assert listing.objects[APP_B["id"]].credentials == ()


async def test_an_unchanged_delta_costs_one_request_and_changes_apply() -> None:
    seen: list[httpx.Request] = []
    start = Listing(
        "applications",
        {APP_A["id"]: parse_object(APP_A, None), APP_B["id"]: parse_object(APP_B, None)},
        f"{GRAPH}/applications/delta?$deltatoken=t1",
    )
    pages = {
        "t1": _page([], **{"@odata.deltaLink": f"{GRAPH}/applications/delta?$deltatoken=t2"}),
        "t2": _page(
            [
                # a partial object: only the property that changed
                {"id": APP_A["id"], "passwordCredentials": []},
                {"id": APP_B["id"], "@removed": {"reason": "deleted"}},
            ],
            **{"@odata.deltaLink": f"{GRAPH}/applications/delta?$deltatoken=t3"},
        ),
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Prefer"] == "odata.maxpagesize=999"
        return pages[_query(request)["$deltatoken"][0]]

    directory = _directory(handler, seen)
    unchanged = await directory.sync("applications", start)
    assert (unchanged.full, unchanged.requests, unchanged.changed, unchanged.removed) == (
        False, 1, 0, 0,
    )  # fmt: skip
    assert unchanged.listing.objects == start.objects
    changed = await directory.sync("applications", unchanged.listing)
    assert (changed.requests, changed.changed, changed.removed) == (1, 1, 1)
    objects = changed.listing.objects
    assert list(objects) == [APP_A["id"]]
    # the password went, the certificate (absent from the partial object) stayed
    assert [c.kind for c in objects[APP_A["id"]].credentials] == ["certificate"]
    assert objects[APP_A["id"]].display_name == "Payroll API"
    assert start.objects[APP_B["id"]]  # the old listing was not mutated


async def test_throttling_waits_retry_after_and_asks_the_same_page_again() -> None:
    seen: list[httpx.Request] = []
    answers = iter(
        [
            httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={"error": {"code": "TooManyRequests", "message": "Too many requests"}},
            ),
            httpx.Response(503, json={"error": {"code": "serviceNotAvailable", "message": "x"}}),
            _page([APP_A], **{"@odata.deltaLink": f"{GRAPH}/applications/delta?$deltatoken=t9"}),
        ]
    )
    waits: list[float] = []
    codes: list[int] = []
    directory = _directory(lambda r: next(answers), seen, waits=waits, on_response=codes.append)
    start = Listing("applications", {}, f"{GRAPH}/applications/delta?$deltatoken=t1")
    outcome = await directory.sync("applications", start)
    assert codes == [429, 503, 200]
    assert waits == [7.0, 4.0]  # Retry-After, then 2**attempt without one
    assert len({str(r.url) for r in seen}) == 1
    assert list(outcome.listing.objects) == [APP_A["id"]]


async def test_a_429_storm_gives_up_after_max_attempts_with_a_throttled_error() -> None:
    seen: list[httpx.Request] = []
    storm = httpx.Response(429, headers={"Retry-After": "1"}, json={"error": {"code": "x"}})
    directory = _directory(lambda r: storm, seen, max_attempts=3)
    start = Listing("applications", {}, f"{GRAPH}/applications/delta?$deltatoken=t1")
    with pytest.raises(Throttled) as caught:
        await directory.sync("applications", start)
    assert caught.value.status == 429
    assert caught.value.retry_after == 1.0
    assert len(seen) == 3


async def test_a_refused_delta_token_falls_back_to_a_full_listing() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = _query(request)
        if q.get("$deltatoken") == ["old"]:
            body = {"error": {"code": "resyncRequired", "message": "start again"}}
            return httpx.Response(410, content=json.dumps(body).encode())
        if "$deltatoken" in q:
            return _page([], **{"@odata.deltaLink": f"{GRAPH}/applications/delta?$deltatoken=new"})
        return _page([APP_B])

    directory = _directory(handler, seen)
    stale = Listing(
        "applications",
        {APP_A["id"]: parse_object(APP_A, None)},
        f"{GRAPH}/applications/delta?$deltatoken=old",
    )
    outcome = await directory.sync("applications", stale)
    assert outcome.full
    assert outcome.requests == 3
    assert list(outcome.listing.objects) == [APP_B["id"]]
    assert outcome.removed == 1


def test_apply_delta_drops_removed_and_ignores_unknown_removals() -> None:
    objects = {APP_A["id"]: parse_object(APP_A, None)}
    after, changed, removed = apply_delta(
        objects, [{"id": "nope", "@removed": {"reason": "changed"}}, APP_B]
    )
    assert (changed, removed) == (1, 0)
    assert set(after) == {APP_A["id"], APP_B["id"]}


async def test_a_200_without_json_is_an_error_that_names_the_step() -> None:
    seen: list[httpx.Request] = []
    directory = _directory(lambda r: httpx.Response(200, text="<html>proxy login</html>"), seen)
    with pytest.raises(Unavailable, match=r"start tracking applications.*without JSON"):
        await directory.sync("applications", None)
