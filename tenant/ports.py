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
    AppActionOutcome,
    AppRegistration,
    AppSettings,
    GraphCallOutcome,
    KeyVaultReference,
    NewPassword,
    PasswordCredential,
    ReferenceChange,
    ReferencePoll,
    ReferenceSetting,
    RemoveOutcome,
    SecretValue,
    SecretVersion,
    SignInLog,
    SignInsUnreadable,
    Site,
    SiteInstance,
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
    """The backend API app registration's client secrets (Graph).

    Graph reads lag writes: a read right after addPassword/removePassword may not show
    it yet. Every read here is a fresh GET (nothing is cached but the appId).
    """

    async def get_app(self) -> AppRegistration: ...

    async def list_credentials(self) -> tuple[PasswordCredential, ...]:
        """A fresh read of the app's passwordCredentials."""
        ...

    async def find_credentials(self, display_name: str) -> tuple[PasswordCredential, ...]:
        """The credentials (fresh read) whose displayName is exactly ``display_name``:
        how a run finds what an ambiguous addPassword may have created."""
        ...

    async def client_id(self) -> str:
        """The app's appId: from the target, or read from Graph once (it never changes)."""
        ...

    async def add_password(self, display_name: str, end: datetime | None) -> NewPassword:
        """addPassword, sent once (the SDK's retry is off for it). On a transient
        failure the error has ``maybe_applied``: a credential with ``display_name`` may
        exist whose value nobody holds; find it with :meth:`find_credentials`."""
        ...

    async def remove_password(self, key_id: str) -> RemoveOutcome:
        """removePassword, sent once. When Graph refuses (4xx), a fresh read decides:
        the keyId absent is ALREADY_GONE; still listed raises
        :class:`~tenant.errors.Unsettled` (transient: Graph's reads may lag a removal
        whose reply was lost; retry, and the next fresh read decides)."""
        ...


class SecretStore(Protocol):
    """The Key Vault secret (``AzureAdClientSecret``) the App Service references."""

    async def get_current(self) -> SecretVersion: ...

    async def get_version(self, version: str) -> SecretVersion: ...

    async def set_value(self, value: SecretValue, tags: Mapping[str, str]) -> SecretVersion:
        """Write a new version, sent once. More than 15 tags is refused before any
        request. A transient failure has ``maybe_applied``: read before acting."""
        ...

    async def set_tags(self, version: str, tags: Mapping[str, str]) -> SecretVersion:
        """Replace the tags of ``version`` (at most 15), sent once."""
        ...

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
    """The App Service that reads the secret through a Key Vault reference (ARM).

    Writes and transitions go out once (no SDK retry); Microsoft.Web's 409 "another
    operation is in progress" raises :class:`~tenant.errors.Busy` and 429
    :class:`~tenant.errors.Throttled`, both transient, for the caller's retry layer.
    """

    async def get_site(self) -> Site:
        """The site and its state (Running, Stopped, Unknown)."""
        ...

    async def instances(self) -> tuple[SiteInstance, ...]:
        """Every scale-out instance with its processes and their start times. A site
        whose plan does not serve the per-instance view raises a TenantError."""
        ...

    async def key_vault_references(self) -> list[KeyVaultReference]: ...

    async def refresh_key_vault_references(self) -> None:
        """POST .../config/configreferences/appsettings/refresh with the documented
        api-version 2022-03-01. Its reply is undocumented and the refresh appears to be
        asynchronous: success says nothing about what the app holds. Poll with
        :meth:`wait_for_active_version`."""
        ...

    async def wait_for_active_version(
        self,
        wanted: str,
        *,
        timeout: float,  # noqa: ASYNC109  # a polling deadline, not a call timeout
        interval: float,
    ) -> ReferencePoll:
        """Poll the reference list until it reports ``wanted`` as activeVersion or
        ``timeout`` seconds pass. An absent activeVersion is unknown (None), never a
        match."""
        ...

    async def app_settings(self) -> AppSettings:
        """POST .../config/appsettings/list: every app setting (values included)."""
        ...

    async def update_app_settings(self, changes: Mapping[str, str]) -> AppSettings:
        """Set ``changes`` and PUT .../config/appsettings with every other setting exactly
        as listed. A configuration change: the site restarts and re-fetches its Key
        Vault references at once (the documented trigger). Returns the settings as they
        were before."""
        ...

    async def configuration_change(self, marker: str) -> None:
        """A configuration change that changes nothing else: writes ``marker`` into the
        app setting :data:`tenant.appservice.RELOAD_MARKER_SETTING` (the only reload
        Microsoft documents as immediate)."""
        ...

    async def reference_setting(self) -> ReferenceSetting:
        """The app setting holding the target's reference, parsed (versionless or
        pinned). NotFound when no setting references the target's secret."""
        ...

    async def write_reference(self, version: str | None) -> ReferenceChange:
        """Point the reference setting at ``version`` (None: versionless), keeping its
        vault and secret; one configuration change. Returns what to restore."""
        ...

    async def restore_reference(self, change: ReferenceChange) -> None:
        """Write ``change.before`` back into the setting (one configuration change)."""
        ...

    async def restart(self) -> None: ...

    async def stop(self) -> None: ...

    async def start(self) -> None: ...


class SignInReader(Protocol):
    """The tenant's sign-in log (Graph beta ``auditLogs/signIns``)."""

    async def service_principal_sign_ins(
        self, app_id: str, since: datetime
    ) -> SignInLog | SignInsUnreadable:
        """The app's service-principal sign-ins created at or after ``since``. A 403
        (no AuditLog.Read.All) is :class:`SignInsUnreadable`, not an exception; other
        failures raise classified :class:`~tenant.errors.TenantError`."""
        ...


class AppAction(Protocol):
    """The app's own Graph-backed action, called as a user would (plain HTTPS GET)."""

    async def run(self, url: str) -> AppActionOutcome:
        """GET ``url``; 2xx is ok. Never raises for an HTTP or connection failure."""
        ...


@dataclass(frozen=True, slots=True)
class TargetClients:
    ref: TargetRef
    app: AppRegistrations
    vault: SecretStore
    entra: TokenIssuer
    site: AppService
    signins: SignInReader
    action: AppAction
