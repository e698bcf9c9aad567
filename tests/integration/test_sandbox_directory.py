"""The tenant-wide directory over real HTTP: Graph's application and service principal
lists and their delta, the truth counts, and the admin routes (docs/sandbox.md)."""

from __future__ import annotations

import re
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from sandbox.admin import PREFIX
from sandbox.directory import Directory
from sandbox.directory_admin import DirectoryAdmin
from sandbox.server import SandboxThread
from sandbox.testing import SandboxHandle
from sandbox.wire import parse_time

CREDS = "id,appId,displayName,tags,passwordCredentials,keyCredentials"


def auth(sb: SandboxHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.graph_token()}"}


def pages(
    sb: SandboxHandle, url: str, headers: dict[str, str]
) -> Iterator[tuple[httpx.Response, dict[str, Any]]]:
    """Follow ``@odata.nextLink`` from ``url``; yield each response and its body."""
    next_url: str | None = url
    while next_url:
        resp = sb.client.get(next_url, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        yield resp, body
        next_url = body.get("@odata.nextLink")


def list_all(sb: SandboxHandle, path: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    return [
        v for _, body in pages(sb, sb.describe["graph_url"] + path, headers) for v in body["value"]
    ]


def delta_round(
    sb: SandboxHandle, url: str, headers: dict[str, str]
) -> tuple[list[dict[str, Any]], str, int]:
    """One delta round from ``url``: every item, the deltaLink, and the request count."""
    items: list[dict[str, Any]] = []
    requests = 0
    next_url = url
    while True:
        resp = sb.client.get(next_url, headers=headers)
        requests += 1
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["value"]
        assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)  # never both
        if "@odata.deltaLink" in body:
            return items, body["@odata.deltaLink"], requests
        next_url = body["@odata.nextLink"]


# -- the list routes -------------------------------------------------------------------


def test_paging_lists_every_application_exactly_once(sb: SandboxHandle) -> None:
    truth = sb.directory(2500, seed=1)
    h = auth(sb)
    url = sb.describe["graph_url"] + f"/applications?$top=999&$select={CREDS}"
    seen: list[str] = []
    sizes = []
    for _, body in pages(sb, url, h):
        sizes.append(len(body["value"]))
        seen += [v["id"] for v in body["value"]]
        link = body.get("@odata.nextLink")
        if link is not None:  # on the sandbox's host, the query kept, an opaque skiptoken
            assert link.startswith(sb.describe["graph_url"] + "/applications?")
            assert "$top=999" in link
            assert f"$select={CREDS}" in link
            assert "$skiptoken=" in link
    assert sizes == [999, 999, 503]
    assert len(seen) == len(set(seen)) == truth["applications"] == 2501
    assert sb.describe["app"]["object_id"] in seen  # the portal's app belongs to it


def test_default_page_is_100_and_top_is_bounded_as_graph_does(sb: SandboxHandle) -> None:
    sb.directory(250, seed=2)
    h = auth(sb)
    base = sb.describe["graph_url"] + "/applications"
    first = sb.client.get(base, headers=h).json()
    assert len(first["value"]) == 100
    assert "@odata.nextLink" in first
    assert len(list_all(sb, "/applications?$select=id", h)) == 251
    for bad in ("1000", "0", "-1", "ten"):
        resp = sb.client.get(f"{base}?$top={bad}", headers=h)
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["code"] == "Request_UnsupportedQuery"
        assert error["message"] == (
            f"Invalid page size specified: '{bad}'. Must be between 1 and 999 inclusive."
        )
    assert len(sb.client.get(f"{base}?$top=999", headers=h).json()["value"]) == 251


def test_select_is_honoured_and_unknown_properties_are_refused(sb: SandboxHandle) -> None:
    sb.directory(50, 20, seed=3)
    h = auth(sb)
    body = sb.client.get(
        sb.describe["graph_url"] + "/applications?$select=displayName,PASSWORDCREDENTIALS",
        headers=h,
    ).json()
    assert body["@odata.context"].endswith("#applications(displayName,passwordCredentials)")
    assert {tuple(v) for v in body["value"]} == {("displayName", "passwordCredentials")}
    full = sb.client.get(sb.describe["graph_url"] + "/applications", headers=h).json()["value"]
    assert {"id", "appId", "displayName", "tags", "keyCredentials"} <= set(full[1])
    bad = sb.client.get(sb.describe["graph_url"] + "/applications?$select=secrets", headers=h)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "Request_BadRequest"
    assert "'secrets'" in bad.json()["error"]["message"]
    sps = list_all(sb, "/servicePrincipals?$top=7&$select=id,appId,servicePrincipalType", h)
    assert len(sps) == 20
    assert all(set(v) == {"id", "appId", "servicePrincipalType"} for v in sps)


def test_only_the_operator_may_list(sb: SandboxHandle) -> None:
    url = sb.describe["graph_url"] + "/applications"
    assert sb.client.get(url).status_code == 401
    value = sb.state()["keyvault"]["versions"][-1]["value"]
    d = sb.describe
    tok = sb.client.post(
        f"{d['authority']}/{d['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": d["app"]["client_id"],
            "client_secret": value,
            "scope": "https://graph.microsoft.com/.default",
        },
    ).json()["access_token"]
    resp = sb.client.get(url, headers={"Authorization": f"Bearer {tok}"})
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "Authorization_RequestDenied"


# -- the truth ---------------------------------------------------------------------------


def independent_truth(apps: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    for app in apps:
        for kind, key in (("password", "passwordCredentials"), ("certificate", "keyCredentials")):
            for cred in app[key]:
                end = parse_time(cred["endDateTime"])
                counts[kind] += 1
                counts["expired"] += end <= now
                counts["7"] += now < end <= now + timedelta(days=7)
                counts["30"] += now < end <= now + timedelta(days=30)
    return {
        "applications": len(apps),
        "credentials": {"password": counts["password"], "certificate": counts["certificate"]},
        "expiring_within_7_days": counts["7"],
        "expiring_within_30_days": counts["30"],
        "expired": counts["expired"],
    }


def test_truth_equals_a_count_over_the_listed_data(sb: SandboxHandle) -> None:
    created = sb.directory(3000, 500, seed=4)
    truth = sb.truth()
    assert {k: truth[k] for k in created if k != "now"} == {
        k: created[k] for k in created if k != "now"
    }
    apps = list_all(sb, f"/applications?$top=999&$select={CREDS}", auth(sb))
    mine = independent_truth(apps, datetime.fromisoformat(truth["now"]))
    assert mine == {k: truth[k] for k in mine}
    assert truth["service_principals"] == 500
    # a spread that exercises every bucket, and a few apps with no credential at all
    assert truth["expired"] > 0
    assert truth["expiring_within_7_days"] > 0
    assert truth["expiring_within_30_days"] > truth["expiring_within_7_days"]
    bare = [a for a in apps if not a["passwordCredentials"] and not a["keyCredentials"]]
    assert 0 < len(bare) < len(apps) // 5
    assert all(len(a["passwordCredentials"]) <= 3 and len(a["keyCredentials"]) <= 2 for a in apps)
    assert any(a["tags"] for a in apps)


def test_the_same_seed_gives_the_same_directory(sb: SandboxHandle) -> None:
    h = auth(sb)

    def snapshot() -> list[Any]:
        apps = list_all(sb, f"/applications?$top=999&$select={CREDS}", h)
        sps = list_all(sb, "/servicePrincipals?$top=999", h)

        def strip(creds: list[dict[str, Any]]) -> list[Any]:
            return [(c["keyId"], c["displayName"], c.get("hint")) for c in creds]

        return [
            (a["id"], a["appId"], a["displayName"], a["tags"],
             strip(a["passwordCredentials"]), strip(a["keyCredentials"]))
            for a in apps
        ] + [(s["id"], s["appId"], s["displayName"]) for s in sps]  # fmt: skip

    first_truth = sb.directory(400, 100, seed=42)
    first = snapshot()
    sb.directory(400, 100, seed=43)
    other = snapshot()
    second_truth = sb.directory(400, 100, seed=42)
    assert snapshot() == first
    assert other != first
    keys = ("credentials", "expired", "expiring_within_7_days", "expiring_within_30_days")
    assert {k: first_truth[k] for k in keys} == {k: second_truth[k] for k in keys}


# -- delta -----------------------------------------------------------------------------


def test_delta_pages_by_maxpagesize_then_reports_exactly_the_changes(sb: SandboxHandle) -> None:
    truth = sb.directory(1200, seed=5)
    h = auth(sb)
    prefer = h | {"Prefer": "odata.maxpagesize=500"}
    url = sb.describe["graph_url"] + f"/applications/delta?$select={CREDS}"
    first = sb.client.get(url, headers=prefer)
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=500"
    assert len(first.json()["value"]) == 500
    items, delta_link, requests = delta_round(sb, url, prefer)
    assert requests == 3
    assert len(items) == len({i["id"] for i in items}) == truth["applications"]
    assert delta_link.startswith(sb.describe["graph_url"] + "/applications/delta?$deltatoken=")

    # nothing changed: one request, nothing in it
    unchanged, delta_link, requests = delta_round(sb, delta_link, prefer)
    assert (unchanged, requests) == ([], 1)

    by_id = {i["id"]: i for i in items}
    synthetic = [i for i in items if i["id"] != sb.describe["app"]["object_id"]]
    gone, purged, gains = synthetic[10], synthetic[11], synthetic[12]
    loses = next(i for i in synthetic[13:] if i["passwordCredentials"])
    added = sb.admin(
        "POST", f"directory/applications/{gains['id']}/passwords", {"displayName": "new one"}
    )
    removed_key = loses["passwordCredentials"][0]["keyId"]
    sb.admin("DELETE", f"directory/applications/{loses['id']}/credentials/{removed_key}")
    sb.admin("DELETE", f"directory/applications/{gone['id']}")
    sb.admin("DELETE", f"directory/applications/{purged['id']}?permanent=true")
    # and the portal's app through Graph itself, as the daemon rotates it
    portal_id = sb.describe["app"]["object_id"]
    resp = sb.client.post(
        sb.describe["graph_url"] + f"/applications/{portal_id}/addPassword",
        headers=h,
        json={"passwordCredential": {"displayName": "rotated"}},
    )
    assert resp.status_code == 200

    changes, delta_link, _ = delta_round(sb, delta_link, prefer)
    got = {c["id"]: c for c in changes}
    assert len(changes) == len(got) == 5
    assert got[gone["id"]] == {"id": gone["id"], "@removed": {"reason": "changed"}}
    assert got[purged["id"]] == {"id": purged["id"], "@removed": {"reason": "deleted"}}
    assert [c["keyId"] for c in got[gains["id"]]["passwordCredentials"]] == [
        c["keyId"] for c in by_id[gains["id"]]["passwordCredentials"]
    ] + [added["keyId"]]
    assert removed_key not in {c["keyId"] for c in got[loses["id"]]["passwordCredentials"]}
    assert set(got[loses["id"]]) == set(CREDS.split(","))  # in full, per $select
    assert "rotated" in {c["displayName"] for c in got[portal_id]["passwordCredentials"]}
    assert sb.truth()["applications"] == truth["applications"] - 2

    # and then quiet again
    assert delta_round(sb, delta_link, prefer)[0] == []


def test_delta_defaults_and_paths(sb: SandboxHandle) -> None:
    sb.directory(150, 30, seed=6)
    h = auth(sb)
    g = sb.describe["graph_url"]
    for path in (
        "/applications/delta",
        "/applications/delta()",
        "/applications/microsoft.graph.delta()",
    ):
        body = sb.client.get(g + path + "?$select=displayName&$top=999", headers=h).json()
        assert len(body["value"]) == 100  # $top is not a delta page size; Prefer is
        assert all(set(v) == {"id", "displayName"} for v in body["value"])  # id always
        assert "@odata.nextLink" in body
    sps, _, requests = delta_round(sb, g + "/servicePrincipals/delta", h)
    assert (len(sps), requests) == (30, 1)
    latest = sb.client.get(g + "/applications/delta?$deltatoken=latest", headers=h).json()
    assert latest["value"] == []
    assert "@odata.deltaLink" in latest
    app = sb.client.get(g + "/applications?$top=2", headers=h).json()["value"][1]
    sb.admin("PATCH", f"directory/applications/{app['id']}", {"displayName": "renamed"})
    changes, _, _ = delta_round(sb, latest["@odata.deltaLink"], h)
    assert [(c["id"], c["displayName"]) for c in changes] == [(app["id"], "renamed")]


def test_an_object_changed_twice_comes_twice_unless_switched_off(sb: SandboxHandle) -> None:
    sb.directory(5, seed=11)
    h = auth(sb)
    url = sb.describe["graph_url"] + "/applications/delta?$select=displayName"
    items, link, _ = delta_round(sb, url, h)
    target = items[1]["id"]
    for name in ("first", "second"):
        sb.admin("PATCH", f"directory/applications/{target}", {"displayName": name})
    changes, link, _ = delta_round(sb, link, h)
    assert changes == [{"id": target, "displayName": "second"}] * 2  # each as it is now
    sb.faults(graph_delta_duplicates=False)
    for name in ("third", "fourth"):
        sb.admin("PATCH", f"directory/applications/{target}", {"displayName": name})
    changes, _, _ = delta_round(sb, link, h)
    assert changes == [{"id": target, "displayName": "fourth"}]


def test_a_partial_delta_update_carries_only_the_changed_properties(sb: SandboxHandle) -> None:
    sb.directory(5, seed=12)
    h = auth(sb)
    url = sb.describe["graph_url"] + f"/applications/delta?$select={CREDS}"
    items, link, _ = delta_round(sb, url, h)
    target = items[1]["id"]
    portal_app = sb.describe["app"]["object_id"]
    sb.faults(graph_delta_partial=True)
    sb.admin("PATCH", f"directory/applications/{target}", {"tags": ["x"]})
    sb.admin("POST", f"directory/applications/{target}/passwords", {"displayName": "p"})
    token = sb.graph_token()
    added = sb.client.post(
        f"{sb.describe['graph_url']}/applications/{portal_app}/addPassword",
        json={"passwordCredential": {"displayName": "n"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert added.status_code == 200
    changes, link, _ = delta_round(sb, link, h)
    assert [sorted(c) for c in changes] == [
        ["id", "tags"],
        ["id", "passwordCredentials"],
        ["id", "passwordCredentials"],  # the portal's app: its new password
    ]
    assert [c["id"] for c in changes] == [target, target, portal_app]
    assert changes[0]["tags"] == ["x"]
    # Switched off: every update in full (within the $select).
    sb.faults(graph_delta_partial=False)
    sb.admin("PATCH", f"directory/applications/{target}", {"displayName": "whole"})
    [whole], _, _ = delta_round(sb, link, h)
    assert set(whole) == set(CREDS.split(","))


def test_unmodelled_query_options_are_refused(sb: SandboxHandle) -> None:
    h = auth(sb)
    g = sb.describe["graph_url"]
    for url in (
        g + "/applications?$filter=startswith(displayName,'a')",
        g + "/applications?$COUNT=true",
        g + "/servicePrincipals/delta?$expand=owners",
    ):
        resp = sb.client.get(url, headers=h)
        assert resp.status_code == 400, url
        assert resp.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_a_delta_token_from_before_a_reset_must_resync(sb: SandboxHandle) -> None:
    sb.directory(10, seed=7)
    h = auth(sb)
    _, delta_link, _ = delta_round(sb, sb.describe["graph_url"] + "/applications/delta", h)
    sb.reset()
    resp = sb.client.get(delta_link, headers=auth(sb))
    assert resp.status_code == 410
    assert resp.json()["error"]["code"] == "resyncRequired"
    garbled = sb.client.get(
        sb.describe["graph_url"] + "/applications/delta?$skiptoken=nonsense", headers=auth(sb)
    )
    assert garbled.status_code == 400


@pytest.fixture
def frozen() -> Iterator[tuple[SandboxHandle, list[datetime]]]:
    """A private sandbox whose clock moves only when the test moves ``clock[0]``."""
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    with SandboxThread(faults={"app_sync_interval_seconds": 0}, now=lambda: clock[0]) as thread:
        d = thread.describe()
        with httpx.Client(verify=ssl.create_default_context(cafile=d["ca_file"])) as client:
            yield SandboxHandle(describe=d, client=client, thread=thread), clock


def test_delta_tokens_expire_after_seven_days(
    frozen: tuple[SandboxHandle, list[datetime]],
) -> None:
    sb, clock = frozen
    sb.directory(3, seed=1)
    _, link, _ = delta_round(sb, sb.describe["graph_url"] + "/applications/delta", auth(sb))
    clock[0] += timedelta(days=6, hours=23)
    assert sb.client.get(link, headers=auth(sb)).status_code == 200
    clock[0] += timedelta(hours=2)
    late = sb.client.get(link, headers=auth(sb))
    # By default as 400 syncStateNotFound (issue 13); graph_delta_expired_status: 410 Gone.
    assert late.status_code == 400, late.text
    assert late.json()["error"]["code"] == "syncStateNotFound"
    sb.faults(graph_delta_expired_status=410)
    gone = sb.client.get(link, headers=auth(sb))
    assert gone.status_code == 410, gone.text
    assert gone.json()["error"]["code"] == "resyncRequired"


def test_delta_lag_defers_a_change_to_a_later_round_and_loses_nothing(
    frozen: tuple[SandboxHandle, list[datetime]],
) -> None:
    sb, clock = frozen
    sb.directory(4, seed=2)
    sb.faults(graph_delta_lag_seconds=60)
    h = auth(sb)
    url = sb.describe["graph_url"] + "/applications/delta?$select=displayName"
    first, link, _ = delta_round(sb, url, h)
    assert first == []  # everything was created just now: not replicated yet
    clock[0] += timedelta(seconds=61)
    first, link, _ = delta_round(sb, link, h)
    assert len(first) == 5
    target = first[2]["id"]
    sb.admin("PATCH", f"directory/applications/{target}", {"displayName": "late"})
    clock[0] += timedelta(seconds=30)
    quiet, link, _ = delta_round(sb, link, h)
    assert quiet == []
    listed = sb.client.get(
        sb.describe["graph_url"] + "/applications?$select=displayName", headers=h
    )
    assert {"displayName": "late"} in listed.json()["value"]  # the list shows it at once
    clock[0] += timedelta(seconds=31)
    late, _, _ = delta_round(sb, link, h)
    assert late == [{"id": target, "displayName": "late"}]


# -- faults ----------------------------------------------------------------------------


def test_throttling_on_the_list_routes(sb: SandboxHandle) -> None:
    sb.directory(20, seed=8)
    h = auth(sb)
    sb.faults(
        inject=[{"service": "graph", "status": 429, "count": 2, "retry_after": 3,
                 "path_contains": "/v1.0/applications"}]
    )  # fmt: skip
    url = sb.describe["graph_url"] + "/applications/delta"
    for _ in range(2):
        resp = sb.client.get(url, headers=h)
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "3"
        assert resp.json()["error"]["code"] == "TooManyRequests"
    assert sb.client.get(url, headers=h).status_code == 200
    assert sb.state()["counters"]["graph"]["429"] == 2


def test_page_latency_and_page_size_cap(sb: SandboxHandle) -> None:
    sb.directory(30, seed=9)
    h = auth(sb)
    sb.faults(graph_page_latency_seconds=0.2, graph_page_size_cap=10)
    started = time.perf_counter()
    bodies = [b for _, b in pages(sb, sb.describe["graph_url"] + "/applications?$top=999", h)]
    assert [len(b["value"]) for b in bodies] == [10, 10, 10, 1]
    assert time.perf_counter() - started >= 4 * 0.2
    delta = sb.client.get(
        sb.describe["graph_url"] + "/applications/delta",
        headers=h | {"Prefer": "odata.maxpagesize=999"},
    ).json()
    assert len(delta["value"]) == 10


# -- admin -------------------------------------------------------------------------------


def test_admin_refuses_bad_input_and_the_portal_app(sb: SandboxHandle) -> None:
    bad = sb.admin("POST", "directory", {"applications": -1, "seed": "x", "color": 1})
    assert bad.status_code == 400
    message = bad.json()["error"]
    assert "applications" in message
    assert "seed" in message
    assert "color" in message
    portal = sb.describe["app"]["object_id"]
    assert sb.admin("DELETE", f"directory/applications/{portal}").status_code == 409
    assert sb.admin("GET", f"directory/applications/{portal}")["id"] == portal
    assert sb.admin("GET", "directory/applications/nope").status_code == 404
    assert sb.admin("GET", "directory/groups/x").status_code == 404
    assert sb.truth()["applications"] == 1  # the portal's own app registration
    sb.directory(1, seed=1)
    app = sb.client.get(
        sb.describe["graph_url"] + "/applications?$select=id,displayName", headers=auth(sb)
    ).json()["value"][1]
    path = f"directory/applications/{app['id']}"
    assert sb.admin("POST", f"{path}/keys", {"usage": "Encrypt"}).status_code == 400
    end_first = {"startDateTime": "2027-01-02T00:00:00Z", "endDateTime": "2026-01-01T00:00:00Z"}
    assert sb.admin("POST", f"{path}/passwords", end_first).status_code == 400
    assert sb.admin("PATCH", path, {"tags": "x", "owner": 1}).status_code == 400
    assert sb.admin("DELETE", f"{path}/credentials/nope").status_code == 404
    key = sb.admin("POST", f"{path}/keys", {"usage": "Sign", "displayName": "CN=signing"})
    assert (key["usage"], key["displayName"], key["type"]) == (
        "Sign",
        "CN=signing",
        "AsymmetricX509Cert",
    )
    assert sb.truth()["credentials"]["certificate"] >= 1


def test_every_directory_admin_route_and_fault_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "sandbox.md").read_text()
    admin_doc = doc.split("## Admin API")[1].split("\n## ")[0]
    admin = DirectoryAdmin(Directory(datetime.now, "tenant"))
    for route in admin.routes():
        assert isinstance(route, web.RouteDef)
        path = route.path.removeprefix(PREFIX + "/")
        path = re.sub(r"\{object_id\}", "{id}", path).replace("{key_id}", "{keyId}")
        assert f"`{route.method} {path}`" in admin_doc, path
    for key in (
        "graph_page_latency_seconds",
        "graph_page_size_cap",
        "graph_delta_duplicates",
        "graph_delta_lag_seconds",
    ):
        assert f"| `{key}` |" in doc


# -- the stock SDK -------------------------------------------------------------------


async def test_msgraph_sdk_pages_the_list_and_the_delta(sb: SandboxHandle) -> None:
    """msgraph-sdk's own request builders and models read every page (``/delta()``
    is the path it sends). Few apps: the SDK's model parsing costs tens of ms per
    application, so an inventory at scale reads the JSON itself."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph.generated.applications.applications_request_builder import (
        ApplicationsRequestBuilder,
    )
    from msgraph.generated.applications.delta.delta_request_builder import DeltaRequestBuilder
    from test_sandbox_sdks import async_credential, graph_client

    truth = sb.directory(20, seed=10)
    d = sb.describe
    op = d["operator"]
    async with async_credential(d, op["client_id"], op["client_secret"]) as cred:
        graph = graph_client(d, cred)
        query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
            select=["id", "displayName", "passwordCredentials", "keyCredentials"], top=8
        )
        page = await graph.applications.get(RequestConfiguration(query_parameters=query))
        assert page is not None
        apps = list(page.value or [])
        while page.odata_next_link:
            page = await graph.applications.with_url(page.odata_next_link).get()
            assert page is not None
            apps += page.value or []
        assert len({a.id for a in apps}) == truth["applications"]
        creds = sum(len(a.password_credentials or []) + len(a.key_credentials or []) for a in apps)
        assert creds == sum(truth["credentials"].values())

        delta_query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=["id", "displayName", "passwordCredentials"]
        )
        config = RequestConfiguration(query_parameters=delta_query)
        config.headers.add("Prefer", "odata.maxpagesize=8")
        resp = await graph.applications.delta.get(config)
        assert resp is not None
        count, requests = len(resp.value or []), 1
        while resp.odata_next_link:
            resp = await graph.applications.delta.with_url(resp.odata_next_link).get(config)
            assert resp is not None
            count, requests = count + len(resp.value or []), requests + 1
        assert (count, requests) == (truth["applications"], 3)
        assert resp.odata_delta_link is not None
        again = await graph.applications.delta.with_url(resp.odata_delta_link).get(config)
        assert again is not None
        assert again.value == []
