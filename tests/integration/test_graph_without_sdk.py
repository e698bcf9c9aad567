"""The daemon talks to Graph without msgraph-sdk's generated package (issue 16).

``msgraph`` (the generated request builders and models: ~1,250 modules, ~27 MiB) was
imported only for the app registration's three calls; tenant/graph.py now sends them as
JSON over msgraph_core's middleware. A fresh interpreter imports ``daemon.app``, runs a
whole rotation against the sandbox (read the app, addPassword, Key Vault, the reload)
the way ``secretwarden rotate`` does, reads the app by its appId, adds and removes a
credential of its own and asks for the operator's own app, then reports which
``msgraph`` modules it ever loaded: none may be. msgraph_core and kiota's middleware
may stay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from daemon.sandbox_config import write_sandbox_config

ROOT = Path(__file__).parents[2]

SCRIPT = r"""
import asyncio, dataclasses, io, json, sys
from pathlib import Path

import daemon.app  # everything the daemon imports at start

from daemon.config import load_config
from daemon.remediate_cli import _rotate
from tenant.connect import TenantSession
from tenant.endpoints import PUBLIC
from tenant.models import SecretValue
from tenant.operator import operator_credential_expiry
from tenant.ports import Identity, TargetRef


async def main(config_file: str, d: dict) -> dict:
    out = io.StringIO()
    rotated = await _rotate(load_config(Path(config_file)), "portal", False, out)
    cloud = PUBLIC.with_custom(
        authority=d["authority"], graph_url=d["graph_url"], arm_url=d["arm_url"],
        ca_file=Path(d["ca_file"]),
    )
    identity = Identity(
        kind="client_secret", tenant_id=d["tenant_id"],
        client_id=d["operator"]["client_id"],
        client_secret=SecretValue(d["operator"]["client_secret"]),
    )
    ref = TargetRef(
        tenant_id=d["tenant_id"], app_object_id=None, app_client_id=d["app"]["client_id"],
        key_vault_url=d["key_vault_url"], secret_name=d["secret_name"],
        subscription_id=d["subscription_id"], resource_group=d["resource_group"],
        site_name=d["site_name"],
    )
    async with TenantSession(identity, cloud) as session:
        async with session.target(ref) as clients:
            app = await clients.app.get_app()  # by appId
            extra = await clients.app.add_password("secretwarden no-sdk check", None)
            removed = await clients.app.remove_password(extra.credential.key_id)
        expiry = await operator_credential_expiry(session, identity)
    return {
        "rotated": rotated,
        "rotation_log": out.getvalue()[-2000:],
        "credentials": len(app.credentials),
        "removed": removed.name,
        "operator_expiry_why": expiry.why,
        "msgraph": sorted(m for m in sys.modules if m == "msgraph" or m.startswith("msgraph.")),
        "msgraph_core": "msgraph_core" in sys.modules,
    }


print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(Path(sys.argv[2]).read_text())))))
"""


def test_a_rotation_and_every_graph_call_load_no_msgraph_module(sb: Any, tmp_path: Path) -> None:
    config = tmp_path / "sw.toml"
    write_sandbox_config(sb.describe, config, listen_address="127.0.0.1:0", retry_total=0)
    describe = tmp_path / "describe.json"
    describe.write_text(json.dumps(sb.describe))
    before = sb.state()["counters_by_method"].get("graph", {})
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(config), str(describe)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rotated"] == 0, report["rotation_log"]
    assert report["removed"] == "REMOVED", report
    # the sandbox does not know the operator's own app: Graph's 404, read and classified
    assert "Request_ResourceNotFound" in report["operator_expiry_why"], report
    after = sb.state()["counters_by_method"]["graph"]
    # the calls really went to Graph: the rotation's addPassword, then add and remove
    assert after.get("POST", 0) - before.get("POST", 0) >= 3
    assert after.get("GET", 0) - before.get("GET", 0) >= 3
    assert report["msgraph_core"]  # the middleware is still what carries the requests
    assert report["msgraph"] == []
