"""The daemon against the sandbox: /metrics parsed, readiness, hooks, reload, check CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from daemon.app import Daemon
from daemon.config import load_config
from daemon.sandbox_config import write_sandbox_config
from exporters.expiry import probe_expiry
from exporters.observations import Observed


@pytest.fixture
def config_file(sb: Any, tmp_path: Path) -> Path:
    path = tmp_path / "secretwarden.toml"
    write_sandbox_config(sb.describe, path, listen_address="127.0.0.1:0", retry_total=0)
    return path


@pytest.fixture
async def daemon(config_file: Path) -> AsyncIterator[Daemon]:
    d = Daemon(load_config(config_file), config_path=config_file, registry=CollectorRegistry())
    await d.start(schedule=False)
    yield d
    await d.stop()


async def scrape(d: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"http://{d.listen_address}/metrics")
    assert resp.status_code == 200
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def k(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


async def test_healthy_portal_exposition(sb: Any, daemon: Daemon) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://{daemon.listen_address}/-/ready")).status_code == 503
        assert (await http.get(f"http://{daemon.listen_address}/-/healthy")).status_code == 200
    seen: list[Observed] = []

    async def hook(o: Observed) -> None:
        seen.append(o)

    daemon.observers.append(hook)
    await daemon.run_all_once()
    assert sorted(o.probe for o in seen) == ["expiry", "graph", "health", "reference"]
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://{daemon.listen_address}/-/ready")).status_code == 200
    s = await scrape(daemon)
    t = "portal"
    key_id = sb.in_use_key_id()
    assert s[k("secretwarden_health_probe_success", target=t)] == 1
    assert s[k("secretwarden_health_probe_status_code", target=t)] == 200
    assert s[k("secretwarden_graph_probe_success", target=t)] == 1
    assert s[k("secretwarden_graph_requests_total", target=t, status_code="200")] == 1
    assert s[k("secretwarden_keyvault_secret_matches_credential", target=t)] == 1
    assert s[k("secretwarden_keyvault_reference_resolved", target=t)] == 1
    assert s[k("secretwarden_keyvault_reference_stale", target=t)] == 0
    expiry = [
        v
        for (name, labels), v in s.items()
        if name == "secretwarden_client_secret_expiry_timestamp_seconds"
        and ("key_id", key_id) in labels
    ]
    assert len(expiry) == 1
    assert s[k("secretwarden_client_secret_in_use_expiry_timestamp_seconds", target=t)] == expiry[0]
    for probe in ("expiry", "health", "graph", "reference"):
        assert s[k("secretwarden_probe_success", target=t, probe=probe)] == 1
    assert s[k("secretwarden_config_last_reload_successful")] == 1


async def test_expired_secret_and_stopped_app_show_in_metrics(sb: Any, daemon: Daemon) -> None:
    sb.admin("POST", f"credentials/{sb.in_use_key_id()}/expire")
    await daemon.clients("portal").site.stop()
    await daemon.run_all_once()
    s = await scrape(daemon)
    t = "portal"
    assert s[k("secretwarden_graph_probe_success", target=t)] == 0
    assert s[k("secretwarden_graph_auth_failures_total", target=t, reason="aadsts_7000222")] == 1
    assert s[k("secretwarden_keyvault_secret_matches_credential", target=t)] == 0
    assert s[k("secretwarden_health_probe_success", target=t)] == 0
    # a scrape never calls Azure: the sandbox's counters do not move while we scrape
    before = sb.state()["counters"]
    await scrape(daemon)
    assert sb.state()["counters"] == before


async def test_reload_keeps_running_config_when_bad(
    sb: Any, daemon: Daemon, config_file: Path
) -> None:
    good = config_file.read_text()
    config_file.write_text(good + "\n[extra]\nbogus = 1\n")
    assert not await daemon.reload()
    s = await scrape(daemon)
    assert s[k("secretwarden_config_last_reload_successful")] == 0
    assert [t.name for t in daemon.config.targets] == ["portal"]
    # A file that parses but names an unreadable secret file is just as bad, and the
    # running clients must still be open and working afterwards.
    config_file.write_text(good.replace(".operator-secret", ".missing-secret"))
    assert not await daemon.reload()
    assert [o.value.ok for o in await daemon.run_all_once()] == [True] * 4
    config_file.write_text(good.replace('name = "portal"', 'name = "portal2"'))
    before = daemon.clients("portal")
    assert await daemon.reload()
    # what was under way with the old clients (a probe, a rotation) can still finish
    assert (await probe_expiry(before, datetime.now(UTC))).ok
    await daemon.run_all_once()
    s = await scrape(daemon)
    assert s[k("secretwarden_config_last_reload_successful")] == 1
    assert s[k("secretwarden_graph_probe_success", target="portal2")] == 1
    assert not [key for key in s if ("target", "portal") in key[1]]


async def test_a_probe_under_way_when_its_target_is_removed_records_nothing(
    sb: Any, daemon: Daemon, config_file: Path
) -> None:
    sb.faults(latency_seconds={"app": 1.0})
    seen: list[str] = []

    async def hook(observed: Observed) -> None:
        seen.append(observed.target)

    daemon.observers.append(hook)
    slow = asyncio.create_task(daemon.run_probe("portal", "health"))
    await asyncio.sleep(0.2)  # the health request is on its way
    config_file.write_text(config_file.read_text().replace('name = "portal"', 'name = "other"'))
    assert await daemon.reload()
    await slow
    s = await scrape(daemon)
    assert not [key for key in s if ("target", "portal") in key[1]]
    assert ("portal", "health") not in daemon.latest
    assert seen == []


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_check_cli_passes_then_fails(sb: Any, config_file: Path) -> None:
    ok = run_cli("check", "--config.file", str(config_file), "--log.format", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "6/6 checks passed" in ok.stdout
    # the daemon's own credential: the sandbox's Graph does not show the operator its app
    [own] = [line.split() for line in ok.stdout.splitlines() if line.startswith("- ")]
    assert own[1:3] == ["operator", "note"]
    assert "expiry of the daemon's own credential unknown" in ok.stdout
    assert "sign-in log readable" in ok.stdout  # said once: the strongest removal proof
    sb.faults(operator_can_read_signins=False)
    note = run_cli("check", "--config.file", str(config_file), "--log.format", "json")
    assert note.returncode == 0, note.stdout + note.stderr  # a note, not a failure
    assert "grant AuditLog.Read.All" in note.stdout
    sb.admin("POST", f"credentials/{sb.in_use_key_id()}/expire")
    bad = run_cli("check", "--config.file", str(config_file), "--log.format", "json")
    assert bad.returncode == 1
    graph_row = next(line for line in bad.stdout.splitlines() if line.startswith("portal  graph"))
    assert "FAIL" in graph_row
    assert "aadsts_7000222" in graph_row
    secret = sb.describe["operator"]["client_secret"]
    assert secret not in bad.stdout + bad.stderr


async def test_scheduler_runs_every_probe_without_overlap(sb: Any, tmp_path: Path) -> None:
    path = tmp_path / "fast.toml"
    intervals = {"expiry": 0.5, "health": 0.2, "graph": 0.5, "reference": 0.5}
    write_sandbox_config(
        sb.describe, path, listen_address="127.0.0.1:0", retry_total=0, intervals=intervals
    )
    d = Daemon(load_config(path), registry=CollectorRegistry())
    runs: list[str] = []

    async def hook(o: Observed) -> None:
        runs.append(o.probe)

    d.observers.append(hook)
    await d.start(serve_web=False)
    assert d._scheduler is not None
    jobs = {job.id: job for job in d._scheduler.get_jobs()}
    # and the daemon's own credential, on the expiry probe's schedule (issue 15)
    assert sorted(jobs) == ["operator", *(f"portal/{p}" for p in sorted(intervals))]
    assert jobs["operator"].trigger.interval.total_seconds() == intervals["expiry"]
    for probe, interval in intervals.items():
        job = jobs[f"portal/{probe}"]
        assert job.max_instances == 1  # never overlaps itself
        assert job.trigger.interval.total_seconds() == interval
        assert job.trigger.jitter == round(interval / 10, 3)
    try:
        for _ in range(100):
            if d.ready() and runs.count("health") >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await d.stop()
    assert d.ready()
    assert runs.count("health") >= 3  # repeated on its interval, not only at start


async def test_one_log_event_per_outcome_change_not_per_run(sb: Any, daemon: Daemon) -> None:
    with capture_logs() as logs:
        for _ in range(3):
            await daemon.run_all_once()
        sb.admin("POST", f"credentials/{sb.in_use_key_id()}/expire")
        for _ in range(2):
            await daemon.run_probe("portal", "graph")
    changes = [e for e in logs if e["event"] == "probe outcome changed"]
    seen = [(e["probe"], e["previous"], e["outcome"]) for e in changes]
    # the first four finish in any order; then only the graph probe's change
    assert sorted(seen[:4]) == [
        ("expiry", "unknown", "ok"),
        ("graph", "unknown", "ok"),
        ("health", "unknown", "ok"),
        ("reference", "unknown", "ok"),
    ]
    assert seen[4:] == [("graph", "ok", "failed:aadsts_7000222")]
    assert changes[-1]["log_level"] == "warning"


async def test_a_probe_that_outlives_its_timeout_is_a_failed_run(sb: Any, tmp_path: Path) -> None:
    path = tmp_path / "slow.toml"
    write_sandbox_config(
        sb.describe, path, listen_address="127.0.0.1:0", retry_total=0, intervals={"expiry": 0.3}
    )
    d = Daemon(load_config(path), registry=CollectorRegistry())
    await d.start(serve_web=False, schedule=False)
    try:
        sb.faults(latency_seconds={"graph": 2})
        started = asyncio.get_running_loop().time()
        observed = await d.run_probe("portal", "expiry")
        took = asyncio.get_running_loop().time() - started
    finally:
        await d.stop()
    assert took < 1.5
    assert not observed.value.ok
    assert observed.value.error == "expiry probe: no answer within 0.3s"
    assert (
        d.registry.get_sample_value(
            "secretwarden_probe_errors_total", {"target": "portal", "probe": "expiry"}
        )
        == 1
    )


async def test_graph_probe_reads_the_app_id_once(sb: Any, daemon: Daemon) -> None:
    # The sandbox config names the app by object id: the first run reads its appId
    # from Graph, later runs only make the probe's own Graph call.
    def graph_gets() -> int:
        return int(sb.state()["counters_by_method"].get("graph", {}).get("GET", 0))

    before = graph_gets()
    for _ in range(3):
        assert (await daemon.run_probe("portal", "graph")).value.ok
    assert graph_gets() - before == 1 + 3


async def test_a_failed_background_task_is_logged(daemon: Daemon) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    with capture_logs() as logs:
        daemon._spawn(broken())
        await asyncio.sleep(0.01)
    [event] = [e for e in logs if e["event"] == "background task failed"]
    assert "broken" in event["task"]
    assert isinstance(event["exc_info"], RuntimeError)


async def test_remediation_can_be_switched_on_by_a_reload(sb: Any, tmp_path: Path) -> None:
    from daemon.remediate_cli import install

    path = tmp_path / "secretwarden.toml"
    write_sandbox_config(sb.describe, path, listen_address="127.0.0.1:0", retry_total=0)
    base = path.read_text()
    due = "rotate_before_days = 400\nsecret_lifetime_days = 730\n"  # the sandbox's: 365
    path.write_text(base + "\n[remediation]\nenabled = false\n" + due)
    d = Daemon(load_config(path), config_path=path, registry=CollectorRegistry())
    install(d)
    await d.start(schedule=False)
    try:
        assert d.remediator is not None
        await d.run_probe("portal", "expiry")
        assert d.remediator.running("portal") is None  # switched off: the policy waits
        path.write_text(base + "\n[remediation]\nenabled = true\n" + due)
        assert await d.reload()
        await d.run_probe("portal", "expiry")
        assert d.remediator.running("portal") == "rotate"
        outcome = await d.remediator.wait("portal")
        assert outcome is not None
        assert outcome.outcome == "success", outcome.detail
    finally:
        await d.stop()
