"""The daemon exports when its own credential expires (issue 15, point 6): against the
sandbox, whose Graph (like Azure with Application.ReadWrite.OwnedBy) does not show the
operator its own app registration, so the date comes from the config, or is absent."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemon.app import Daemon
from daemon.config import load_config
from daemon.sandbox_config import write_sandbox_config

METRIC = "secretwarden_operator_credential_expiry_timestamp_seconds"


async def started(sb: Any, tmp_path: Path, extra: str = "") -> Daemon:
    path = tmp_path / "sw.toml"
    write_sandbox_config(sb.describe, path, listen_address="127.0.0.1:0", retry_total=0)
    text = path.read_text()
    if extra:
        text = text.replace("[identity]\n", "[identity]\n" + extra, 1)
    path.write_text(text)
    d = Daemon(load_config(path), registry=CollectorRegistry())
    await d.start(serve_web=False, schedule=False)
    return d


async def test_without_graph_the_configured_date_is_exported(sb: Any, tmp_path: Path) -> None:
    d = await started(sb, tmp_path, "credential_expires_at = 2027-06-01\n")
    try:
        got = await d.check_operator_credential()
        assert got is not None
        assert got.source == "config"
        assert "the operator's own app not read" in got.why
        assert "Request_ResourceNotFound" in got.why
        labels = {"kind": "client_secret", "source": "config"}
        value = d.registry.get_sample_value(METRIC, labels)
        assert value == datetime(2027, 6, 1, tzinfo=UTC).timestamp()
    finally:
        await d.stop()


async def test_unknown_is_absent_never_zero(sb: Any, tmp_path: Path) -> None:
    d = await started(sb, tmp_path)
    try:
        got = await d.check_operator_credential()
        assert got is not None
        assert got.end is None
        assert not [s for m in d.registry.collect() if m.name == METRIC for s in m.samples]
    finally:
        await d.stop()
