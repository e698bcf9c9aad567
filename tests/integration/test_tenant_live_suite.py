"""The opt-in live suite (tests/live) run against the sandbox as if it were a tenant:
it must run, keep the app's secret, leave the site Running, and name the reload model
the sandbox is set to. This is how the suite itself is kept working."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import PRE_ISSUE_13

from sandbox import SandboxThread
from sandbox.testing import SandboxHandle

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxThread]:
    """A sandbox of its own on real time: the live suite sets lifetimes from this
    machine's clock, as it would against Azure (the shared ``sbp`` is moved forward)."""
    # The suite's reload-model probe waits RELOAD_WAIT (2 s): a settings PUT's re-fetch
    # at once, as before issue 13 (its default, 5 s later, would read as "unknown").
    faults = {"app_sync_interval_seconds": 0.0, "cold_start_seconds": 0.0, **PRE_ISSUE_13}
    with SandboxThread(ca_dir=tmp_path_factory.mktemp("live-ca"), faults=faults) as thread:
        yield thread


@pytest.fixture
def sbp(tenant: SandboxThread) -> Iterator[SandboxHandle]:
    d = tenant.describe()
    with httpx.Client(verify=ssl.create_default_context(cafile=d["ca_file"]), timeout=10) as c:
        handle = SandboxHandle(describe=d, client=c, thread=tenant)
        handle.reset()
        yield handle


def live_env(sbp: Any) -> dict[str, str]:
    d = sbp.describe
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETWARDEN_LIVE_")}
    values = {
        "TENANT_ID": d["tenant_id"],
        "CLIENT_ID": d["operator"]["client_id"],
        "CLIENT_SECRET": d["operator"]["client_secret"],
        "APP_OBJECT_ID": d["app"]["object_id"],
        "KEY_VAULT_URL": d["key_vault_url"],
        "SECRET_NAME": d["secret_name"],
        "SUBSCRIPTION_ID": d["subscription_id"],
        "RESOURCE_GROUP": d["resource_group"],
        "SITE_NAME": d["site_name"],
        "AUTHORITY": d["authority"],
        "GRAPH_URL": d["graph_url"],
        "ARM_URL": d["arm_url"],
        "CA_FILE": d["ca_file"],
        "WRITE": "1",
        "RELOAD_WAIT": "2",
        "POLL": "0.25",
        "STOPPED_SECONDS": "0.2",
        "BUSY_WAIT": "0.5",
    }
    env.update({f"SECRETWARDEN_LIVE_{k}": v for k, v in values.items()})
    return env


@pytest.mark.parametrize(
    ("reload_model", "expected"),
    [
        ("documented", "reload model of {site}: documented"),
        ("runbook", "reload model of {site}: runbook"),
        ("optimistic", "reload model of {site}: optimistic"),
    ],
)
def test_the_live_suite_names_the_sandbox_reload_model(
    sbp: Any, reload_model: str, expected: str
) -> None:
    sbp.faults(
        reload_model=reload_model,
        active_version="present",
        refresh_delay_seconds=0.5,
        site_busy_seconds=0.5,
    )
    value_before = sbp.state()["keyvault"]["versions"][-1]["value"]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/live",
            "-m",
            "live",
            "-s",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=ROOT,
        env=live_env(sbp),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = run.stdout + run.stderr
    print(out)  # the live suite's report (shown with -s)
    assert run.returncode == 0, out[-4000:]
    assert "7 passed" in out, out[-4000:]
    # issue 13: how many instances the site runs, and whether each lever restarted them
    assert re.search(r"runs \d+ instance\(s\)", out), out[-4000:]
    assert re.search(r"restart: (\d+) instance\(s\); worker processes restarted on \1,", out)
    assert expected.format(site=sbp.describe["site_name"]) in out, out[-4000:]
    state = sbp.state()
    assert state["site"]["state"] == "Running"
    assert state["keyvault"]["versions"][-1]["value"] == value_before
