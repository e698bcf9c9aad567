"""``secretwarden rotate`` says each rung's wait as it happens, and its dry-run plan says
what the real run will do with the old credential (issue 15, point 4)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from daemon.config import load_config
from daemon.remediate_cli import _rotate
from daemon.sandbox_config import write_sandbox_config

FAST = {
    "refresh_timeout_seconds": 1.5,
    "cold_start_timeout_seconds": 7,
    "propagation_poll_seconds": 0.2,
    "verify_poll_seconds": 0.2,
}


@pytest.fixture
def config_file(sb: Any, tmp_path: Path) -> Path:
    # no activeVersion, sign-ins listed late: the refresh rung waits out its timeout
    sb.faults(active_version="absent", signin_log_delay_seconds=3600)
    path = tmp_path / "sw.toml"
    write_sandbox_config(
        sb.describe, path, listen_address="127.0.0.1:0", retry_total=0, remediation=FAST
    )
    return path


def lines(out: str) -> list[str]:
    return [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[")]


async def test_each_rung_s_wait_is_printed_as_it_begins_with_its_timeout(
    sb: Any, config_file: Path
) -> None:
    out = io.StringIO()
    assert await _rotate(load_config(config_file), "portal", False, out) == 0, out.getvalue()
    said = lines(out.getvalue())
    refresh_ok = said.index(next(s for s in said if s.startswith("ok reload.refresh")))
    wait = said[refresh_ok + 1]
    assert wait.startswith(".. reload.refresh"), said
    assert "waiting up to 1.5s for ARM to report the new version as activeVersion" in wait
    waited = said[refresh_ok + 2]
    assert waited.startswith("-- reload.refresh")
    assert "waited 1." in waited  # the whole timeout: no activeVersion to prove it
    after_config = said.index(next(s for s in said if s.startswith("ok reload.config_change")))
    assert "waiting up to 7s for the site's restart" in said[after_config + 1]


async def test_the_dry_run_plan_says_the_old_credential_stays_pending(
    sb: Any, config_file: Path
) -> None:
    old = sb.in_use_key_id()
    out = io.StringIO()
    assert await _rotate(load_config(config_file), "portal", True, out) == 0, out.getvalue()
    plan = [s for s in lines(out.getvalue()) if s.startswith("=> plan")]
    text = "\n".join(plan)
    assert "remove the old credential" not in text
    assert f"keep the old credential(s) ['{old}'] pending removal" in text
    assert "else after the overlap window (24 h)" in text
    assert "refresh (up to 1.5s) -> config_change (up to 7s) -> restart (up to 7s)" in text
    assert old in {c["keyId"] for c in sb.state()["credentials"]}  # a dry run wrote nothing
