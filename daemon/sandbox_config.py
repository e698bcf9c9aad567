"""A daemon config that targets a running sandbox, built from its describe file.

The operator's secret goes to a file of its own (mode 0600) that the TOML names by
path: a config file is something people paste into tickets; a secret file is not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _q(value: object) -> str:
    # JSON string escaping is a subset of TOML basic-string escaping.
    return json.dumps(str(value))


def sandbox_config_toml(
    describe: dict[str, Any],
    *,
    state_directory: Path,
    secret_file: Path,
    listen_address: str = "127.0.0.1:9877",
    target_name: str = "portal",
    intervals: dict[str, float] | None = None,
    retry_total: int = 1,
    remediation: dict[str, bool | int | float] | None = None,
    inventory: dict[str, bool | int | float | list[str]] | None = None,
) -> str:
    d = describe
    health_url = d.get("health_url") or d["app_service_url"].rstrip("/") + "/health"
    lines = [
        "# Written by `secretwarden sandbox --write-config`: the daemon against the sandbox.",
        "[daemon]",
        f"state_directory = {_q(state_directory)}",
        "",
        "[web]",
        f"listen_address = {_q(listen_address)}",
        "",
        "[identity]",
        'kind = "client_secret"',
        f"tenant_id = {_q(d['tenant_id'])}",
        f"client_id = {_q(d['operator']['client_id'])}",
        f"client_secret_file = {_q(secret_file)}",
        "",
        "[cloud]",
        'name = "custom"',
        f"authority = {_q(d['authority'])}",
        f"graph_url = {_q(d['graph_url'])}",
        f"arm_url = {_q(d['arm_url'])}",
        f"ca_file = {_q(d['ca_file'])}",
        "",
        "[retry]",
        f"total = {retry_total}",
        "backoff_factor = 0.2",
        "timeout_seconds = 10",
        "",
    ]
    for probe, interval in (intervals or {}).items():
        timeout = min(interval, 10.0)
        lines += [
            f"[probes.{probe}]",
            f"interval_seconds = {interval}",
            f"timeout_seconds = {timeout}",
            f"jitter_seconds = {round(interval / 10, 3)}",
            "",
        ]
    if remediation:
        lines.append("[remediation]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in remediation.items()]
        lines.append("")
    if inventory:
        lines.append("[inventory]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in inventory.items()]
        lines.append("")
    lines += [
        "[[targets]]",
        f"name = {_q(target_name)}",
        f"app_object_id = {_q(d['app']['object_id'])}",
        f"key_vault_url = {_q(d['key_vault_url'])}",
        f"secret_name = {_q(d['secret_name'])}",
        f"subscription_id = {_q(d['subscription_id'])}",
        f"resource_group = {_q(d['resource_group'])}",
        f"site_name = {_q(d['site_name'])}",
        f"health_url = {_q(health_url)}",
    ]
    if d.get("graph_probe_url"):
        lines.append(f"graph_probe_url = {_q(d['graph_probe_url'])}")
    if d.get("app_setting"):
        lines.append(f"app_setting = {_q(d['app_setting'])}")
    lines.append("")
    return "\n".join(lines)


def write_secret_file(path: Path, value: str) -> None:
    """Create ``path`` with mode 0600 from the start (no window where others can read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: fix it first
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")


def write_sandbox_config(
    describe: dict[str, Any],
    config_file: Path,
    *,
    listen_address: str = "127.0.0.1:9877",
    intervals: dict[str, float] | None = None,
    retry_total: int = 1,
    remediation: dict[str, bool | int | float] | None = None,
    inventory: dict[str, bool | int | float | list[str]] | None = None,
) -> Path:
    """Write the TOML and its secret file beside it; returns the secret file's path."""
    config_file = config_file.resolve()
    base = config_file.parent
    secret_file = base / (config_file.stem + ".operator-secret")
    write_secret_file(secret_file, describe["operator"]["client_secret"])
    config_file.write_text(
        sandbox_config_toml(
            describe,
            state_directory=base / (config_file.stem + "-state"),
            secret_file=secret_file,
            listen_address=listen_address,
            intervals=intervals,
            retry_total=retry_total,
            remediation=remediation,
            inventory=inventory,
        )
    )
    return secret_file
