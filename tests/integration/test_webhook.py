"""The Alertmanager webhook on the daemon's real web server, against the sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from test_rotation_fixtures import TARGET, Rig, assert_converged

from daemon.web import WebServer
from daemon.webhook import PATH, webhook_routes

pytest_plugins = ("test_rotation_fixtures",)

TOKEN = "webhook-token-for-tests"


def payload(*alerts: dict[str, Any], version: str = "4") -> dict[str, Any]:
    return {
        "version": version,
        "groupKey": '{}:{alertname="SecretwardenGraphAuthFailing"}',
        "status": "firing",
        "receiver": "secretwarden",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
    }


def alert(status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "SecretwardenGraphAuthFailing", **labels},
        "annotations": {},
        "startsAt": "2026-03-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "abc",
    }


async def serve(rig: Rig, token: str | None) -> tuple[WebServer, str]:
    server = WebServer(CollectorRegistry(), ready=lambda: True)
    server.add_routes(webhook_routes(rig.rem, token))
    port = await server.start("127.0.0.1", 0)
    return server, f"http://127.0.0.1:{port}{PATH}"


@pytest.fixture
async def hook(rig: Rig) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    server, url = await serve(rig, TOKEN)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http, url
    await server.stop()


def graph_writes(sb: Any) -> int:
    return int(sb.state()["counters_by_method"].get("graph", {}).get("POST", 0))


async def test_without_a_token_file_the_endpoint_is_disabled(rig: Rig) -> None:
    server, url = await serve(rig, None)
    try:
        async with httpx.AsyncClient() as http:
            r = await http.post(url, json=payload(alert(target=TARGET, remediation="heal")))
        assert r.status_code == 404
        assert "disabled" in r.json()["status"]
        assert rig.rem.running(TARGET) is None
    finally:
        await server.stop()


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x"]
)
async def test_a_missing_or_wrong_token_is_refused(
    sb: Any, rig: Rig, hook: tuple[httpx.AsyncClient, str], header: str | None
) -> None:
    _, url = hook
    headers = {"Authorization": header} if header is not None else {}
    async with httpx.AsyncClient(headers=headers) as http:
        r = await http.post(url, json=payload(alert(target=TARGET, remediation="rotate")))
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert rig.rem.running(TARGET) is None
    assert graph_writes(sb) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "malformed body"),
        (b'["a list"]', "must be a JSON object"),
        (b'{"version": "3", "alerts": []}', "unsupported payload version '3'"),
        (b'{"version": "4"}', "'alerts' must be a list"),
        (b'{"version": "4", "alerts": [{"status": "on fire", "labels": {}}]}', "alerts[0].status"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
async def test_a_malformed_body_is_a_400_and_starts_nothing(
    rig: Rig, hook: tuple[httpx.AsyncClient, str], body: bytes, message: str
) -> None:
    http, url = hook
    r = await http.post(url, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert message in r.json()["status"]
    assert rig.rem.running(TARGET) is None


async def test_a_resolved_alert_is_200_nothing_to_do(
    sb: Any, rig: Rig, hook: tuple[httpx.AsyncClient, str]
) -> None:
    http, url = hook
    r = await http.post(url, json=payload(alert("resolved", target=TARGET, remediation="heal")))
    assert r.status_code == 200
    assert r.json()["status"] == "nothing to do"
    assert rig.rem.running(TARGET) is None
    assert not rig.rem.journal(TARGET).path.exists()


async def test_an_unknown_target_or_missing_label_is_a_422(
    rig: Rig, hook: tuple[httpx.AsyncClient, str]
) -> None:
    http, url = hook
    r = await http.post(url, json=payload(alert(target="nope", remediation="heal")))
    assert r.status_code == 422
    assert "no target named 'nope'" in r.json()["results"][0]["detail"]
    r = await http.post(url, json=payload(alert(target=TARGET, remediation="reboot")))
    assert r.status_code == 422
    r = await http.post(url, json=payload(alert(target=TARGET)))
    assert r.status_code == 422
    assert rig.rem.running(TARGET) is None


async def test_a_firing_alert_heals_the_app(
    sb: Any, rig: Rig, hook: tuple[httpx.AsyncClient, str]
) -> None:
    sb.faults(app_sync_interval_seconds=0)
    old = sb.in_use_key_id()
    sb.admin("POST", f"credentials/{old}/expire")
    http, url = hook
    r = await http.post(url, json=payload(alert(target=TARGET, remediation="heal")))
    assert r.status_code == 202
    assert r.json()["results"][0]["status"] == "started"
    outcome = await rig.rem.wait(TARGET)
    assert outcome is not None
    assert outcome.outcome == "success", outcome.detail
    assert outcome.rotated


async def test_100_identical_firing_alerts_at_once_are_one_run(
    sb: Any, rig: Rig, hook: tuple[httpx.AsyncClient, str]
) -> None:
    rig.rem.settings = dataclasses.replace(rig.rem.settings, rotate_before=timedelta(days=3650))
    sb.faults(latency_seconds={"graph": 0.2})  # the run outlasts the flood
    http, url = hook
    body = payload(alert(target=TARGET, remediation="rotate"))
    responses = await asyncio.gather(*(http.post(url, json=body) for _ in range(100)))
    statuses = [r.json()["results"][0]["status"] for r in responses]
    assert {r.status_code for r in responses} == {202}
    assert statuses.count("started") == 1
    assert statuses.count("coalesced") == 99
    outcome = await rig.rem.wait(TARGET)
    assert outcome is not None
    assert outcome.outcome == "success", outcome.detail
    assert len(rig.rem.journal(TARGET).runs()) == 1
    assert sb.state()["counters_by_method"]["graph"]["POST"] == 2  # one add, one remove
    assert_converged(sb)


async def test_a_guard_or_another_process_on_the_target_is_a_409(
    sb: Any, rig: Rig, hook: tuple[httpx.AsyncClient, str]
) -> None:
    http, url = hook
    before = graph_writes(sb)
    other = rig.rem.journal(TARGET).lock()  # a second holder, as `secretwarden rotate` is
    other.acquire()
    try:
        r = await http.post(url, json=payload(alert(target=TARGET, remediation="heal")))
    finally:
        other.release()
    assert r.status_code == 409
    [result] = r.json()["results"]
    assert result["status"] == "busy"
    assert "another secretwarden process" in result["detail"]

    # A permanent failure in the journal (say, by `secretwarden rotate` in another
    # process) opens the circuit: the guards read the journal, not their own memory.
    journal, now = rig.rem.journal(TARGET), rig.clock.now()
    journal.append(ts=now, run="r-failed", action="rotate", step="run", phase="begin")
    journal.append(
        ts=now,
        run="r-failed",
        action="rotate",
        step="run",
        phase="done",
        data={"outcome": "failed", "rotated": False, "permanent": True},
    )
    r = await http.post(url, json=payload(alert(target=TARGET, remediation="rotate")))
    assert r.status_code == 409
    [result] = r.json()["results"]
    assert result["status"] == "blocked"
    assert "automatic remediation stopped" in result["detail"]
    assert rig.rem.running(TARGET) is None
    assert graph_writes(sb) == before
