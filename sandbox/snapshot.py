"""The tenant as JSON: the admin view (``GET state``) and the state file that stands in
for Azure across restarts of the sandbox."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox import reload
from sandbox.faults import Faults
from sandbox.portal import (
    SECRET_NAME,
    AppStats,
    Credential,
    Identities,
    Portal,
    SecretVersion,
)
from sandbox.site import Site


def state_json(portal: Portal) -> dict[str, Any]:
    now = portal.now()
    main = portal.vault.get(SECRET_NAME, [])
    return {
        "now": now.isoformat(),
        "tenant_id": portal.ids.tenant_id,
        "credentials": [
            {
                "keyId": c.key_id,
                "hint": c.hint,
                "displayName": c.display_name,
                "startDateTime": c.start.isoformat(),
                "endDateTime": c.end.isoformat(),
                "expired": c.end <= now,
                "propagated": c.propagated_at <= now,
                "in_key_vault": bool(main) and main[-1].value == c.secret_text,
                "in_use_by_app": portal.worker_holds(c.secret_text),
            }
            for c in portal.credentials
        ],
        "keyvault": {
            "secret_name": SECRET_NAME,
            "current_version": main[-1].version if main else None,
            "versions": [
                {
                    "version": v.version,
                    "value": v.value,
                    "tags": v.tags,
                    "contentType": v.content_type,
                    "enabled": v.enabled,
                    "created": v.created,
                }
                for v in main
            ],
            "other_secrets": sorted(n for n in portal.vault if n != SECRET_NAME),
        },
        "site": {
            "state": portal.site.state,
            "phase": portal.app_phase(),
            "resolved_version": portal.site.resolved_version,
            "started_at": portal.site.started_at.isoformat() if portal.site.started_at else None,
            "instances": instances_state(portal),
            "config_due_at": _iso(portal.site.config_due_at),
            "restarts": portal.site.restarts,
            "starts": portal.site.starts,
            "stops": portal.site.stops,
            "refreshes": portal.site.refreshes,
            "config_changes": portal.site.config_changes,
            "settings": portal.site.settings,
            "reference": _reference_state(portal),
            "resolved_at": _iso(portal.site.resolved_at),
            "refresh_due_at": _iso(portal.site.refresh_due_at),
            "busy_until": _iso(portal.site.busy_until),
            "busy_operation": reload.busy(portal),
        },
        "app": asdict(portal.app),
        "signins": signins_by_key(portal),
        "counters": {s: dict(c) for s, c in portal.counters.items()},
        "counters_by_method": {s: dict(c) for s, c in portal.methods.items()},
        "faults": portal.faults.to_json(),
    }


def instances_state(portal: Portal) -> list[dict[str, Any]]:
    """Each worker: its instance id, when its process started (null: not running), the
    Key Vault version and credential its value belongs to, and its token's expiry."""
    return [
        {
            "id": w.id,
            "started_at": _iso(w.started_at),
            "version": w.version if w.running else None,
            "key_id": portal.key_id_of(w.value) if w.running else None,
            "token_expires_at": _iso(w.token_expires_at),
            "user_token_expires_at": _iso(w.user_token_expires_at),
            "recycle_at": _iso(w.recycle_at),
            "ip_address": w.ip,
        }
        for w in portal.site.instances
    ]


def _reference_state(portal: Portal) -> dict[str, Any] | None:
    ref = portal.site.reference()
    if ref is None:
        return None
    return {"secret_name": ref.secret_name, "version": ref.version, "pinned": bool(ref.version)}


def signins_by_key(portal: Portal) -> dict[str, dict[str, Any]]:
    """Per keyId the backend app signed in with: how often, and the last time."""
    return {k: dict(v) for k, v in portal.signin_totals.items()}


def to_file_json(portal: Portal) -> dict[str, Any]:
    return {
        "ids": asdict(portal.ids),
        "credentials": [c.to_json() for c in portal.credentials],
        "vault": {n: [asdict(v) for v in vs] for n, vs in portal.vault.items()},
        "site": {
            "state": portal.site.state,
            "resolved_version": portal.site.resolved_version,
            "resolved_value": portal.site.resolved_value,
            "restarts": portal.site.restarts,
            "starts": portal.site.starts,
            "stops": portal.site.stops,
            "refreshes": portal.site.refreshes,
            "config_changes": portal.site.config_changes,
            "settings": portal.site.settings,
            "instances": [
                {"id": w.id, "version": w.version, "value": w.value, "started": w.running}
                for w in portal.site.instances
            ],
        },
        "faults": {
            k: v
            for k, v in portal.faults.to_json().items()
            if k not in ("inject", "apply_then_fail")
        },
        "app": asdict(portal.app),
    }


def load_file_json(portal: Portal, data: dict[str, Any]) -> None:
    portal.credentials = [Credential.from_json(c) for c in data["credentials"]]
    portal.vault = {n: [SecretVersion(**v) for v in vs] for n, vs in data["vault"].items()}
    s = data["site"]
    portal.site = Site(
        state=s["state"],
        settings=s.get("settings") or portal.initial_settings(),
        resolved_version=s.get("resolved_version"),
        resolved_value=s.get("resolved_value"),
        resolved_at=portal.now(),
        started_at=portal.now() - timedelta(days=1),
        restarts=s.get("restarts", 0),
        starts=s.get("starts", 0),
        stops=s.get("stops", 0),
        refreshes=s.get("refreshes", 0),
    )
    portal.faults = Faults.from_json(data.get("faults", {}))
    portal.app = AppStats(**data.get("app", {}))
    # The sandbox restarted: its workers are the processes the state file describes,
    # started a day ago as far as anyone can tell.
    portal.start_workers(portal.now() - timedelta(days=1))
    for w, saved in zip(portal.site.instances, s.get("instances", []), strict=False):
        w.version, w.value = saved.get("version"), saved.get("value")
        if not saved.get("started", True):
            w.stop()


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def save_state(path: Path, portal: Portal) -> None:
    """Write the tenant atomically; the file stands in for Azure itself (mode 0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(to_file_json(portal), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_ids(path: Path) -> Identities | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return Identities(**data["ids"])
