"""The typed interface the layers above use to reach Azure, in the runbook's terms.

``tenant.connect.open_target`` returns a :class:`TargetClients` backed by the real SDKs.
The Protocols exist so that callers depend on these few methods, not on the SDKs;
tests drive the real implementation against the sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from tenant.models import (
    AppRegistration,
    GraphCallOutcome,
    KeyVaultReference,
    NewPassword,
    SecretValue,
    SecretVersion,
    Site,
    TokenOutcome,
)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the daemon signs in as (the operator identity).

    ``kind`` "default" uses DefaultAzureCredential (managed identity on a VM, the
    environment, the Azure CLI); "client_secret" and "certificate" need
    ``tenant_id`` and ``client_id`` plus the secret or the PEM certificate path.
    """

    kind: Literal["default", "client_secret", "certificate"]
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretValue | None = None
    certificate_path: Path | None = None


@dataclass(frozen=True, slots=True)
class TargetRef:
    """Where one target's pieces live in Azure."""

    tenant_id: str
    app_object_id: str | None  # one of object id or client id (appId) is required
    app_client_id: str | None
    key_vault_url: str
    secret_name: str
    subscription_id: str
    resource_group: str
    site_name: str
    app_setting: str | None = (
        None  # the app setting holding the reference; None: any naming the secret
    )


class AppRegistrations(Protocol):
    """The backend API app registration's client secrets (Graph)."""

    async def get_app(self) -> AppRegistration: ...

    async def client_id(self) -> str:
        """The app's appId: from the target, or read from Graph once (it never changes)."""
        ...

    async def add_password(self, display_name: str, end: datetime | None) -> NewPassword: ...

    async def remove_password(self, key_id: str) -> None: ...


class SecretStore(Protocol):
    """The Key Vault secret (``AzureAdClientSecret``) the App Service references."""

    async def get_current(self) -> SecretVersion: ...

    async def get_version(self, version: str) -> SecretVersion: ...

    async def set_value(self, value: SecretValue, tags: Mapping[str, str]) -> SecretVersion: ...

    async def list_versions(self) -> list[SecretVersion]: ...


class TokenIssuer(Protocol):
    """Entra's token endpoint and Graph, as the app itself uses them."""

    async def try_secret(self, client_id: str, secret: SecretValue) -> TokenOutcome:
        """Client-credentials request for Graph with ``secret``. Never raises for a
        refusal: the refusal is the answer. Raises only on programming errors."""
        ...

    async def call_graph(self, token: SecretValue, url: str) -> GraphCallOutcome:
        """One GET to ``url`` with the bearer token, as the app would make it."""
        ...


class AppService(Protocol):
    """The App Service that reads the secret through a Key Vault reference (ARM)."""

    async def get_site(self) -> Site: ...

    async def key_vault_references(self) -> list[KeyVaultReference]: ...

    async def refresh_key_vault_references(self) -> None: ...

    async def restart(self) -> None: ...

    async def stop(self) -> None: ...

    async def start(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TargetClients:
    ref: TargetRef
    app: AppRegistrations
    vault: SecretStore
    entra: TokenIssuer
    site: AppService
