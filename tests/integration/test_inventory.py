"""The inventory against the sandbox's directory: what it exports equals the sandbox's
truth (``GET directory``), changes arrive with the next delta scan (and removed series
go), throttling and failures keep the last good data, and the daemon serves it all on
/metrics, plain and gzip, without waiting on Azure."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import math
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from daemon.app import Daemon
from daemon.config import load_config
from daemon.sandbox_config import write_sandbox_config
from exporters.inventory import APP_EXPIRY, Inventory
from exporters.inventory_select import ManagedApps
from tenant.connect import TenantSession
from tenant.endpoints import Cloud, RetryPolicy
from tenant.ports import Identity

Series = dict[tuple[str, str, str], tuple[float, dict[str, str]]]


def expiry_series(text: bytes | str) -> Series:
    """(app_id, key_id, kind) -> (timestamp, labels) of the per-credential family."""
    raw = text.decode() if isinstance(text, bytes) else text
    found: Series = {}
    for family in text_string_to_metric_families(raw):
        if family.name != APP_EXPIRY:
            continue
        for s in family.samples:
            key = (s.labels["app_id"], s.labels["key_id"], s.labels["kind"])
            assert key not in found, f"duplicate series {key}"
            found[key] = (s.value, s.labels)
    return found


def counts(series: Series, now: float) -> dict[str, Any]:
    kinds = {"password": 0, "certificate": 0}
    expired = within_7 = within_30 = 0
    for value, labels in series.values():
        kinds[labels["kind"]] += 1
        if value <= now:
            expired += 1
        elif value <= now + 30 * 86400:
            within_30 += 1
            within_7 += value <= now + 7 * 86400
    return {
        "credentials": kinds,
        "expired": expired,
        "expiring_within_7_days": within_7,
        "expiring_within_30_days": within_30,
    }


def the_truth(sb: Any) -> dict[str, Any]:
    truth = sb.admin("GET", "directory")
    truth["now_ts"] = datetime.fromisoformat(truth["now"]).timestamp()
    return dict(truth)


def truth_counts(truth: dict[str, Any]) -> dict[str, Any]:
    keys = ("credentials", "expired", "expiring_within_7_days", "expiring_within_30_days")
    return {k: truth[k] for k in keys}


@pytest.fixture
async def session(sandbox_cloud: Cloud, operator: Identity) -> AsyncIterator[TenantSession]:
    async with TenantSession(operator, sandbox_cloud, RetryPolicy.none()) as s:
        yield s


async def test_the_exported_series_equal_the_sandbox_truth_for_1000_apps(
    sb: Any, session: TenantSession
) -> None:
    sb.admin("POST", "directory", {"applications": 1000, "service_principals": 0, "seed": 10})
    app = sb.describe["app"]
    inventory = Inventory(CollectorRegistry(), managed=ManagedApps.of([app["object_id"]], []))
    report = await inventory.scan(session.directory(on_response=inventory.count_response))
    assert report.ok, report.error
    assert report.full
    # $deltatoken=latest, then 1,001 apps (the portal's and 1,000) in two pages of 999
    assert report.requests == 3
    truth = the_truth(sb)
    series = expiry_series(inventory.exposition.text)
    assert counts(series, truth["now_ts"]) == truth_counts(truth)
    assert inventory.view.applications == truth["applications"] == 1001
    assert dict(inventory.view.credentials) == truth["credentials"]
    managed = {labels["app_id"] for _, labels in series.values() if labels["managed"] == "true"}
    assert managed == {app["client_id"]}
    # the pre-compressed blocks start a single gzip stream that any tail completes
    tail = b"# a registry's text\n"
    packed = inventory.exposition.gzip_with(tail)
    assert gzip.decompress(packed) == inventory.exposition.text + tail
    assert zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(packed) == gzip.decompress(packed)
    # apps without credentials export none: every series' app has credentials
    with_creds = sum(
        1 for o in inventory.listings["applications"].objects.values() if o.credentials
    )
    assert len({app_id for app_id, _, _ in series}) == with_creds < 1001


async def test_service_principals_when_asked_for(sb: Any, session: TenantSession) -> None:
    sb.admin("POST", "directory", {"applications": 40, "service_principals": 1200, "seed": 8})
    registry = CollectorRegistry()
    inventory = Inventory(registry, service_principals=True)
    inventory.enable(True, 3600)
    report = await inventory.scan(session.directory())
    assert report.ok, report.error
    assert report.requests == 2 + 3  # latest + 1 page of apps; latest + 2 pages of SPs
    truth = the_truth(sb)
    assert inventory.view.service_principals == truth["service_principals"] == 1200
    assert dict(inventory.view.sp_credentials) == truth["service_principal_credentials"]
    assert dict(inventory.view.credentials) == truth["credentials"]
    families = {
        f.name: f for f in text_string_to_metric_families(inventory.exposition.text.decode())
    }
    sp_series = families["secretwarden_service_principal_credential_expiry_timestamp_seconds"]
    assert len(sp_series.samples) == sum(truth["service_principal_credentials"].values())
    assert "managed" not in sp_series.samples[0].labels
    sp_creds = {"kind": "certificate"}
    assert (
        registry.get_sample_value("secretwarden_inventory_service_principal_credentials", sp_creds)
        == truth["service_principal_credentials"]["certificate"]
    )


async def test_a_change_shows_after_the_next_delta_scan_and_removed_series_go(
    sb: Any, session: TenantSession
) -> None:
    sb.admin("POST", "directory", {"applications": 60, "service_principals": 0, "seed": 3})
    inventory = Inventory(CollectorRegistry())
    directory = session.directory()
    assert (await inventory.scan(directory)).ok
    before = expiry_series(inventory.exposition.text)
    objects = list(inventory.listings["applications"].objects.values())
    with_creds = [o for o in objects[1:] if o.credentials]
    grows, shrinks, goes = with_creds[0], with_creds[1], with_creds[2]

    unchanged = await inventory.scan(directory)
    assert (unchanged.ok, unchanged.full, unchanged.requests) == (True, False, 1)
    assert expiry_series(inventory.exposition.text) == before

    added = sb.admin(
        "POST",
        f"directory/applications/{grows.object_id}/passwords",
        {"displayName": "new one", "endDateTime": "2099-01-01T00:00:00Z"},
    )
    dropped = shrinks.credentials[0]
    sb.admin("DELETE", f"directory/applications/{shrinks.object_id}/credentials/{dropped.key_id}")
    sb.admin("DELETE", f"directory/applications/{goes.object_id}")

    report = await inventory.scan(directory)
    assert report.ok, report.error
    assert (report.full, report.requests, report.changed, report.removed) == (False, 1, 2, 1)
    after = expiry_series(inventory.exposition.text)
    new_key = (grows.app_id, added["keyId"].lower(), "password")
    assert after[new_key][0] == datetime.fromisoformat("2099-01-01T00:00:00+00:00").timestamp()
    assert after[new_key][1]["credential_name"] == "new one"
    assert (shrinks.app_id, dropped.key_id, dropped.kind) in before
    assert (shrinks.app_id, dropped.key_id, dropped.kind) not in after
    assert not [k for k in after if k[0] == goes.app_id]
    assert [k for k in before if k[0] == goes.app_id]
    assert set(after) == (set(before) | {new_key}) - {
        (shrinks.app_id, dropped.key_id, dropped.kind),
        *(k for k in before if k[0] == goes.app_id),
    }
    truth = the_truth(sb)
    assert counts(after, truth["now_ts"]) == truth_counts(truth)


async def test_a_change_delta_reports_late_still_arrives(sb: Any, session: TenantSession) -> None:
    """Graph's delta lags its writes (replication): the scan that runs too early does not
    see the change, the next one does."""
    sb.faults(graph_delta_lag_seconds=1.0)
    sb.admin("POST", "directory", {"applications": 20, "service_principals": 0, "seed": 6})
    inventory = Inventory(CollectorRegistry())
    directory = session.directory()
    assert (await inventory.scan(directory)).ok
    some = list(inventory.listings["applications"].objects.values())[1]
    added = sb.admin("POST", f"directory/applications/{some.object_id}/passwords", {})
    key = (some.app_id, added["keyId"].lower(), "password")
    early = await inventory.scan(directory)
    assert early.ok
    assert key not in expiry_series(inventory.exposition.text)
    await asyncio.sleep(1.2)
    late = await inventory.scan(directory)
    assert late.ok
    assert not late.full
    assert key in expiry_series(inventory.exposition.text)
    truth = the_truth(sb)
    assert counts(expiry_series(inventory.exposition.text), truth["now_ts"]) == truth_counts(truth)


async def test_429_storms_and_failed_scans_keep_the_last_data(
    sb: Any, session: TenantSession
) -> None:
    sb.admin("POST", "directory", {"applications": 30, "service_principals": 0, "seed": 5})
    registry = CollectorRegistry()
    inventory = Inventory(registry)
    inventory.enable(True, 3600)
    directory = session.directory(on_response=inventory.count_response)
    assert (await inventory.scan(directory)).ok
    kept, last_success = inventory.exposition, inventory.status.last_success
    assert last_success > 0

    # A storm as long as the scanner's patience (8 answers to one page): the scan
    # fails, nothing is dropped.
    storm = {"service": "graph", "status": 429, "count": 8, "retry_after": 0}
    sb.faults(inject=[{**storm, "path_contains": "/delta"}])
    failed = await inventory.scan(directory)
    assert not failed.ok
    assert failed.error is not None
    assert "429" in failed.error
    assert inventory.exposition is kept
    assert inventory.status.last_success == last_success
    assert registry.get_sample_value("secretwarden_inventory_scan_success") == 0
    throttled = {"status_code": "429"}
    assert registry.get_sample_value("secretwarden_inventory_requests_total", throttled) == 8

    # A server error: the same.
    sb.faults(inject=[{"service": "graph", "status": 500, "count": 1}])
    assert not (await inventory.scan(directory)).ok
    assert inventory.exposition is kept
    assert inventory.status.last_success == last_success

    # A short storm only slows the scan down, and a change made meanwhile arrives.
    some = next(iter(inventory.listings["applications"].objects.values()))
    sb.admin("POST", "directory", {"applications": 31, "service_principals": 0, "seed": 5})
    sb.faults(inject=[{**storm, "count": 2}])
    report = await inventory.scan(directory)
    assert report.ok, report.error
    assert not report.full
    assert report.requests == 3  # two 429s, then the delta page
    assert inventory.exposition is not kept
    assert some.object_id in inventory.listings["applications"].objects  # the portal's app
    assert registry.get_sample_value("secretwarden_inventory_scan_success") == 1
    truth = the_truth(sb)
    assert counts(expiry_series(inventory.exposition.text), truth["now_ts"]) == truth_counts(truth)


@pytest.fixture
async def inventory_daemon(sb: Any, tmp_path: Path) -> AsyncIterator[Daemon]:
    path = tmp_path / "secretwarden.toml"
    write_sandbox_config(
        sb.describe,
        path,
        listen_address="127.0.0.1:0",
        retry_total=0,
        inventory={"enabled": True, "interval_seconds": 3600, "exclude_names": ["*(dev)*"]},
    )
    d = Daemon(load_config(path), config_path=path, registry=CollectorRegistry())
    yield d
    await d.stop()


async def test_the_daemon_scans_on_schedule_and_serves_the_inventory(
    sb: Any, inventory_daemon: Daemon
) -> None:
    sb.admin("POST", "directory", {"applications": 200, "service_principals": 0, "seed": 2})
    d = inventory_daemon
    await d.start(schedule=True)
    url = f"http://{d.listen_address}/metrics"
    for _ in range(300):  # the first scan runs at start
        if d.inventory.inventory.status.last_success:
            break
        await asyncio.sleep(0.1)
    assert d.inventory.inventory.status.last_success, "no inventory scan within 30 s"
    async with httpx.AsyncClient() as http:
        plain = await http.get(url, headers={"Accept-Encoding": "identity"})
        packed = await http.get(url, headers={"Accept-Encoding": "gzip"})
    assert plain.status_code == packed.status_code == 200
    assert packed.headers["Content-Encoding"] == "gzip"
    # the same inventory in both (the probes may have changed the registry's part between)
    inventory_text = d.inventory.exposition().text.decode()
    assert packed.text.startswith(inventory_text)
    assert plain.text.startswith(inventory_text)
    assert "secretwarden_probe_success" in packed.text
    assert len(packed.content) > 3 * int(packed.headers["Content-Length"])
    families = {f.name: f for f in text_string_to_metric_families(plain.text)}
    assert "secretwarden_probe_success" in families  # the registry's part is there too
    apps = families["secretwarden_inventory_applications"].samples[0].value
    series = expiry_series(plain.text)
    assert all("(dev)" not in labels["app_name"] for _, labels in series.values())
    assert 0 < apps < 201
    assert families["secretwarden_inventory_last_success_timestamp_seconds"].samples[0].value > 0
    assert not math.isnan(families["secretwarden_inventory_scan_duration_seconds"].samples[0].value)
    portal = [labels for _, labels in series.values() if labels["managed"] == "true"]
    assert portal
    assert {labels["app_id"] for labels in portal} == {sb.describe["app"]["client_id"]}

    # A reload with new filters re-renders at once from what was read; switched off,
    # every inventory series goes.
    assert d.config_path is not None
    text = d.config_path.read_text()
    d.config_path.write_text(text.replace('"*(dev)*"', '"*"'))
    assert await d.reload()
    async with httpx.AsyncClient() as http:
        filtered = (await http.get(url)).text
    assert expiry_series(filtered) == {}
    assert "secretwarden_inventory_applications 0.0" in filtered
    d.config_path.write_text(text.replace("enabled = true", "enabled = false"))
    assert await d.reload()
    async with httpx.AsyncClient() as http:
        off = (await http.get(url)).text
    assert "secretwarden_inventory" not in off
    assert "secretwarden_app_credential" not in off
    assert "secretwarden_probe_success" in off


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_inventory_cli_prints_one_scan(sb: Any, tmp_path: Path) -> None:
    sb.admin("POST", "directory", {"applications": 100, "service_principals": 0, "seed": 4})
    path = tmp_path / "secretwarden.toml"
    # [inventory] need not be enabled for the command; its filters apply
    write_sandbox_config(
        sb.describe, path, retry_total=0, inventory={"exclude_tags": ["team:payments"]}
    )
    config = ["--config.file", str(path), "--log.format", "json"]
    as_json = run_cli("inventory", *config, "--output", "json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    truth = the_truth(sb)
    assert {r["kind"] for r in rows} == {"password", "certificate"}
    assert 0 < len(rows) < sum(truth["credentials"].values())  # the tag filter left some out
    assert [r["days_left"] for r in rows] == sorted(r["days_left"] for r in rows)
    portal = [r for r in rows if r["app_id"] == sb.describe["app"]["client_id"]]
    assert portal
    assert all(r["managed"] for r in portal)

    soon = run_cli("inventory", *config, "--expiring-within", "30d", "--output", "csv")
    assert soon.returncode == 0, soon.stderr
    lines = list(csv.DictReader(io.StringIO(soon.stdout)))
    assert lines
    assert all(float(r["days_left"]) <= 30 for r in lines)
    assert len(lines) == sum(1 for r in rows if r["days_left"] <= 30)

    table = run_cli("inventory", *config)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["APP", "APP_ID", "CREDENTIAL"]
    assert f"{len(rows)} credential(s) shown" in table.stdout
    assert sb.describe["operator"]["client_secret"] not in table.stdout + table.stderr

    bad = run_cli("inventory", *config, "--expiring-within", "soon")
    assert bad.returncode == 2
    assert "--expiring-within" in bad.stderr

    sb.faults(inject=[{"service": "graph", "status": 403, "count": 5, "path_contains": "/delta"}])
    denied = run_cli("inventory", *config)
    assert denied.returncode == 1
    assert "HTTP 403" in denied.stderr


async def test_partial_delta_updates_and_a_lost_sync_state_keep_the_inventory_exact(
    sb: Any, session: TenantSession, sandbox_cloud: Cloud, operator: Identity
) -> None:
    """Graph may send an update with only the properties that changed, and answer an
    expired delta token with 400 syncStateNotFound instead of 410 (issue 13)."""
    sb.faults(graph_delta_partial=True, graph_delta_expired_status=400)
    sb.admin("POST", "directory", {"applications": 30, "service_principals": 0, "seed": 5})
    inventory = Inventory(CollectorRegistry())
    directory = session.directory()
    assert (await inventory.scan(directory)).ok
    objects = list(inventory.listings["applications"].objects.values())
    renamed, grows = [o for o in objects[1:] if o.credentials][:2]
    sb.admin("PATCH", f"directory/applications/{renamed.object_id}", {"displayName": "Renamed"})
    sb.admin(
        "POST",
        f"directory/applications/{grows.object_id}/passwords",
        {"displayName": "partial", "endDateTime": "2099-01-01T00:00:00Z"},
    )
    # What the sandbox sends for those two: only id and the changed property.
    delta_link = inventory.listings["applications"].delta_link
    token = sb.graph_token()
    page = sb.client.get(delta_link, headers={"Authorization": f"Bearer {token}"}).json()
    assert [sorted(i) for i in page["value"]] == [
        ["displayName", "id"],
        ["id", "passwordCredentials"],
    ]
    report = await inventory.scan(directory)
    assert report.ok, report.error
    assert (report.full, report.changed) == (False, 2)
    series = expiry_series(inventory.exposition.text)
    truth = the_truth(sb)
    assert counts(series, truth["now_ts"]) == truth_counts(truth)
    after = inventory.listings["applications"].objects
    assert after[renamed.object_id].display_name == "Renamed"
    assert after[renamed.object_id].credentials == renamed.credentials  # kept, not emptied
    assert len(after[grows.object_id].credentials) == len(grows.credentials) + 1

    # The sync state is lost (the directory starts a new generation): 400, then a full scan.
    sb.reset()
    sb.faults(graph_delta_expired_status=400)
    sb.admin("POST", "directory", {"applications": 30, "service_principals": 0, "seed": 6})
    stale = sb.client.get(delta_link, headers={"Authorization": f"Bearer {sb.graph_token()}"})
    assert (stale.status_code, stale.json()["error"]["code"]) == (400, "syncStateNotFound")
    async with TenantSession(operator, sandbox_cloud, RetryPolicy.none()) as fresh:
        report = await inventory.scan(fresh.directory())  # the reset revoked old tokens
    assert report.ok, report.error
    assert report.full
    truth = the_truth(sb)
    assert counts(expiry_series(inventory.exposition.text), truth["now_ts"]) == truth_counts(truth)
    assert inventory.view.applications == truth["applications"] == 31
