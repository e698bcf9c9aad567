"""``secretwarden check`` names each common setup mistake with the service's own code
and message and one line saying what to fix (issue 15, point 1): a wrong operator
secret, a secret ID instead of its value, a wrong tenant, a missing role per service,
a vault firewall. The sandbox answers each the way Azure does (sandbox/denials.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from daemon.check import run_check
from daemon.config import load_config
from daemon.sandbox_config import write_sandbox_config


def rows(out: str) -> dict[str, str]:
    """probe -> the row's text, for target portal."""
    got = {}
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] == "portal":
            got[parts[1]] = parts[2]
    return got


async def check(path: Path) -> tuple[int, dict[str, str]]:
    out = io.StringIO()
    code = await run_check(load_config(path), out)
    return code, rows(out.getvalue())


@pytest.fixture
def config_file(sb: Any, tmp_path: Path) -> Path:
    path = tmp_path / "sw.toml"
    write_sandbox_config(sb.describe, path, listen_address="127.0.0.1:0", retry_total=0)
    return path


def operator_secret(path: Path, value: str) -> None:
    secret = path.parent / (path.stem + ".operator-secret")
    secret.write_text(value)


# (what the operator got wrong, how, the code every Azure row shows, the fix's words)
SIGN_IN_MISTAKES = [
    ("wrong secret", "a-wrong-secret-value", "AADSTS7000215", "Value"),
    # A secret ID is a GUID: Entra answers it exactly like any other wrong value.
    (
        "secret ID, not value",
        "0e2f8c4d-7b1a-4e0b-9a55-3c1d2e4f5a6b",
        "AADSTS7000215",
        "not its Secret ID",
    ),
]


@pytest.mark.parametrize(("mistake", "value", "code", "fix"), SIGN_IN_MISTAKES)
async def test_a_bad_operator_secret_names_entras_code_and_the_fix(
    sb: Any, config_file: Path, mistake: str, value: str, code: str, fix: str
) -> None:
    operator_secret(config_file, value)
    status, got = await check(config_file)
    assert status == 1
    for probe in ("expiry", "graph", "reference"):
        assert code in got[probe], (mistake, got[probe])
        assert "client secret value, not the client secret ID" in got[probe]  # Entra's words
        assert "-- fix: identity.client_secret_file" in got[probe]
        assert fix in got[probe]
        assert "Unauthorized" not in got[probe]
    assert value not in "".join(got.values())


async def test_a_wrong_tenant_names_aadsts90002_and_the_fix(sb: Any, config_file: Path) -> None:
    text = config_file.read_text()
    tenant = sb.describe["tenant_id"]
    config_file.write_text(text.replace(tenant, "11111111-2222-4333-8444-555555555555"))
    status, got = await check(config_file)
    assert status == 1
    for probe in ("expiry", "reference"):
        assert "AADSTS90002" in got[probe], got[probe]
        assert "not found" in got[probe]
        assert "-- fix: tenant_id names no tenant" in got[probe]
    assert "Bad Request" not in got["expiry"]
    assert "no error message" not in got["graph"]
    assert "-- fix:" in got["graph"]  # the vault's challenge names the real tenant


# (service refused, injected code, the probe row it shows in, service code, fix's words)
DENIALS = [
    ("graph", None, "expiry", "Authorization_RequestDenied", "Application.ReadWrite.OwnedBy"),
    ("keyvault", "ForbiddenByRbac", "graph", "Forbidden/ForbiddenByRbac", "secret rotator"),
    ("keyvault", "ForbiddenByFirewall", "graph", "Forbidden/ForbiddenByFirewall", "firewall"),
    ("arm", None, "reference", "AuthorizationFailed", "App Service reloader"),
]


@pytest.mark.parametrize(("service", "inject", "probe", "code", "fix"), DENIALS)
async def test_a_missing_role_or_a_closed_firewall_names_the_code_and_the_fix(
    sb: Any, config_file: Path, service: str, inject: str | None, probe: str, code: str, fix: str
) -> None:
    sb.faults(inject=[{"service": service, "status": 403, "code": inject, "count": 20}])
    status, got = await check(config_file)
    assert status == 1
    row = got[probe]
    assert "FAIL" in row
    assert code in row, row
    assert "-- fix:" in row
    assert fix in row.split("-- fix:")[1], row


async def test_the_sign_in_note_does_not_point_at_activeversion(sb: Any, config_file: Path) -> None:
    operator_secret(config_file, "a-wrong-secret-value")
    _, got = await check(config_file)
    assert "activeVersion" not in got["sign_ins"]
    assert "sign-in log not checked" in got["sign_ins"]
    assert "AADSTS7000215" in got["sign_ins"]
