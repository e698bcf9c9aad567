"""The App Service site as data: its state, its app settings, and the Key Vault reference
one of them holds, as App Service parses it.

When the platform re-resolves that reference is :mod:`sandbox.reload`'s business.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

APP_SETTING = "AzureAd__ClientSecret"

_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\((?P<body>[^)]*)\)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class KeyVaultRef:
    """``@Microsoft.KeyVault(SecretUri=https://VAULT/secrets/NAME/[VERSION])`` or
    ``@Microsoft.KeyVault(VaultName=...;SecretName=...;SecretVersion=...)``."""

    vault: str  # the vault's host (SecretUri form) or name (VaultName form)
    secret_name: str
    version: str | None  # None: versionless, the platform takes the current version


def parse_reference(value: str) -> KeyVaultRef | None:
    """The reference in an app setting's value; None when the value is not one."""
    m = _REFERENCE.match(value)
    if m is None:
        return None
    parts: dict[str, str] = {}
    for item in m.group("body").split(";"):
        key, sep, val = item.partition("=")
        if sep:
            parts[key.strip().lower()] = val.strip()
    uri = parts.get("secreturi")
    if uri:
        u = urlsplit(uri)
        segments = [s for s in u.path.split("/") if s]
        if len(segments) < 2 or segments[0].lower() != "secrets" or len(segments) > 3:
            return None
        version = segments[2].lower() if len(segments) == 3 else None
        return KeyVaultRef(u.netloc, segments[1], version)
    if parts.get("vaultname") and parts.get("secretname"):
        version = (parts.get("secretversion") or "").lower() or None
        return KeyVaultRef(parts["vaultname"], parts["secretname"], version)
    return None


def reference_text(vault_url: str, secret_name: str, version: str | None = None) -> str:
    """The SecretUri form: versionless ends in ``/`` (as the docs write it)."""
    return f"@Microsoft.KeyVault(SecretUri={vault_url}/secrets/{secret_name}/{version or ''})"


def rebase_reference(value: str, vault_url: str) -> str:
    """A SecretUri reference moved to ``vault_url`` (the sandbox's vault is wherever it
    listens); anything else unchanged."""
    ref = parse_reference(value)
    if ref is None or "secreturi=" not in value.lower():
        return value
    return reference_text(vault_url, ref.secret_name, ref.version)


@dataclass(slots=True)
class Worker:
    """One instance's worker process (its rules: :mod:`sandbox.instances`)."""

    id: str
    ip: str  # the outbound address its calls leave from
    pid: int
    started_at: datetime | None  # None: not running (site stopped, or not started yet)
    version: str | None = None  # the Key Vault version its process read at start
    value: str | None = None  # that value (never shown in state)
    recycle_at: datetime | None = None  # a scheduled (re)start, not yet done
    token: str | None = None  # its cached Graph token (client credentials)
    token_expires_at: datetime | None = None
    user_token_expires_at: datetime | None = None  # its cached user (OBO) token

    @property
    def running(self) -> bool:
        return self.started_at is not None

    def stop(self) -> None:
        self.started_at = None
        self.recycle_at = None
        self.drop_tokens()

    def drop_tokens(self) -> None:
        self.token = None
        self.token_expires_at = self.user_token_expires_at = None


@dataclass(slots=True)
class Site:
    state: str = "Running"  # Running | Stopped, as ARM reports properties.state
    settings: dict[str, str] = field(default_factory=dict)  # the app settings
    # The platform's cache of the reference (what activeVersion reports); a worker
    # process reads it when it starts (instances).
    resolved_version: str | None = None
    resolved_value: str | None = None  # never shown in state
    resolved_at: datetime | None = None  # the last time the platform resolved it
    started_at: datetime | None = None  # the last (re)start; cold start runs from here
    refresh_due_at: datetime | None = None  # a refresh call's re-resolve, not yet done
    config_due_at: datetime | None = None  # a settings PUT's re-fetch + recycle, not yet done
    instances: list[Worker] = field(default_factory=list)
    next_worker: int = -1  # round robin over the running workers
    busy_since: datetime | None = None  # the last transition began
    busy_until: datetime | None = None  # transitions answer 409 until then
    busy_operation: str | None = None
    restarts: int = 0
    starts: int = 0
    stops: int = 0
    refreshes: int = 0
    config_changes: int = 0

    def reference(self) -> KeyVaultRef | None:
        raw = self.settings.get(APP_SETTING)
        return parse_reference(raw) if raw is not None else None
