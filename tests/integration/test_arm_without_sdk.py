"""The daemon reads a site without importing azure-mgmt-web (issue 16: its generated
models and operations cost ~22 MiB of RSS and 0.1-0.2 s of start-up; tenant.arm sends
the same calls). A fresh interpreter imports daemon.app, opens a target on the sandbox
through a TenantSession counting its requests, reads the site, its references and its
instances, and reports which modules it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

SCRIPT = r"""
import asyncio, json, sys
from pathlib import Path

import daemon.app  # noqa: F401  # everything the daemon imports at start

from tenant.connect import TenantSession
from tenant.endpoints import PUBLIC, RetryPolicy
from tenant.models import SecretValue
from tenant.ports import Identity, TargetRef

d = json.loads(sys.stdin.read())
cloud = PUBLIC.with_custom(
    authority=d["authority"], graph_url=d["graph_url"], arm_url=d["arm_url"],
    ca_file=Path(d["ca_file"]),
)
identity = Identity(
    kind="client_secret", tenant_id=d["tenant_id"], client_id=d["operator"]["client_id"],
    client_secret=SecretValue(d["operator"]["client_secret"]),
)
ref = TargetRef(
    tenant_id=d["tenant_id"], app_object_id=d["app"]["object_id"],
    app_client_id=d["app"]["client_id"], key_vault_url=d["key_vault_url"],
    secret_name=d["secret_name"], subscription_id=d["subscription_id"],
    resource_group=d["resource_group"], site_name=d["site_name"],
)
sent = []

async def main():
    session = TenantSession(identity, cloud, RetryPolicy.none(), on_request=sent.append)
    async with session, session.target(ref) as clients:
        site = await clients.site.get_site()
        references = await clients.site.key_vault_references()
        instances = await clients.site.instances()
    print(json.dumps({
        "state": site.state.value,
        "references": [r.key for r in references],
        "instances": len(instances),
        "processes": sum(len(i.processes) for i in instances),
        "arm_requests": sent.count("arm"),
        "mgmt_web": sorted(m for m in sys.modules if m.startswith("azure.mgmt.web")),
        "mgmt_core": "azure.mgmt.core" in sys.modules,
    }))

asyncio.run(main())
"""


def test_a_daemon_reads_a_site_without_importing_azure_mgmt_web(sb: Any) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input=json.dumps(sb.describe),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    # the calls answered: the site, our reference, every instance and its processes
    assert seen["state"] == "Running"
    assert seen["references"] == [sb.describe["app_setting"]]
    assert seen["instances"] == sb.state()["faults"]["instances"] >= 1
    assert seen["processes"] >= seen["instances"]
    # each went through the session's pool and was counted as ARM
    # (site + references + instance list + one process list per instance)
    assert seen["arm_requests"] == 3 + seen["instances"]
    assert seen["mgmt_core"] is True
    assert seen["mgmt_web"] == []
