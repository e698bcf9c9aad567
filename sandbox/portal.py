"""The tenant the sandbox holds: one portal, as the runbook describes it.

An app registration (the backend API) with its password credentials, the operator
identity the daemon signs in as, a Key Vault holding ``AzureAdClientSecret``, and an App
Service reading it through a Key Vault reference. Plain data plus the rules that every
service of the sandbox shares (which secret is valid, what the app resolved).
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sandbox import reload
from sandbox.faults import Faults
from sandbox.signins import SignIn
from sandbox.site import APP_SETTING, Site, rebase_reference, reference_text

SECRET_NAME = "AzureAdClientSecret"
__all__ = ["APP_SETTING", "SECRET_NAME", "Portal", "Site"]
APP_DISPLAY_NAME = "App Store for Intune - API"

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_secret_text() -> str:
    """A value in today's Entra format: 40 characters with ``~`` as the fifth."""
    alphabet = string.ascii_letters + string.digits
    tail = alphabet + "_-.~"
    head = "".join(secrets.choice(alphabet) for _ in range(4))
    return head + "~" + "".join(secrets.choice(tail) for _ in range(35))


def new_version() -> str:
    return uuid.uuid4().hex  # 32 lowercase hex characters, like Key Vault's


@dataclass(slots=True)
class Credential:
    key_id: str
    display_name: str | None
    secret_text: str
    start: datetime
    end: datetime
    propagated_at: datetime  # Entra accepts the secret from this moment
    added_at: datetime | None = None  # when addPassword created it (None: long ago)

    @property
    def hint(self) -> str:
        return self.secret_text[:3]

    def to_json(self) -> dict[str, Any]:
        return {
            "keyId": self.key_id,
            "displayName": self.display_name,
            "hint": self.hint,
            "startDateTime": self.start.isoformat(),
            "endDateTime": self.end.isoformat(),
            "propagatedAt": self.propagated_at.isoformat(),
            "addedAt": self.added_at.isoformat() if self.added_at else None,
            "secretText": self.secret_text,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Credential:
        return cls(
            key_id=d["keyId"],
            display_name=d.get("displayName"),
            secret_text=d["secretText"],
            start=datetime.fromisoformat(d["startDateTime"]),
            end=datetime.fromisoformat(d["endDateTime"]),
            propagated_at=datetime.fromisoformat(d["propagatedAt"]),
            added_at=datetime.fromisoformat(d["addedAt"]) if d.get("addedAt") else None,
        )


@dataclass(slots=True)
class SecretVersion:
    version: str
    value: str
    created: int  # epoch seconds, as Key Vault reports them
    updated: int
    enabled: bool = True
    content_type: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    exp: int | None = None
    nbf: int | None = None


@dataclass(slots=True)
class Identities:
    tenant_id: str
    subscription_id: str
    resource_group: str
    site_name: str
    app_object_id: str
    app_client_id: str
    operator_client_id: str
    operator_client_secret: str

    @classmethod
    def generate(cls) -> Identities:
        return cls(
            tenant_id=str(uuid.uuid4()),
            subscription_id=str(uuid.uuid4()),
            resource_group="rg-appstore",
            site_name="appstore-portal",
            app_object_id=str(uuid.uuid4()),
            app_client_id=str(uuid.uuid4()),
            operator_client_id=str(uuid.uuid4()),
            operator_client_secret=new_secret_text(),
        )


@dataclass(slots=True)
class Token:
    client_id: str
    audience: str
    expires_at: datetime


@dataclass(slots=True)
class AppStats:
    graph_calls_total: int = 0
    graph_401_total: int = 0
    graph_ok_total: int = 0
    last_status: int | None = None
    last_error: str | None = None
    last_sync_at: str | None = None


class Portal:
    """All the tenant's state and the rules the services share."""

    def __init__(
        self,
        ids: Identities,
        *,
        now: Clock = utcnow,
        in_use_expires_in: timedelta = timedelta(days=365),
        default_faults: Faults | None = None,
    ) -> None:
        self.ids = ids
        self.now = now
        self.in_use_expires_in = in_use_expires_in
        self.default_faults = default_faults or Faults()
        self.credentials: list[Credential] = []
        # Removed credentials and when: Graph reads still show them for a while.
        self.removed: list[tuple[Credential, datetime]] = []
        self.signins: list[SignIn] = []
        self.signin_totals: dict[str, dict[str, Any]] = {}
        self.vault_url = "https://127.0.0.1"  # where the vault is; set at start
        self.vault: dict[str, list[SecretVersion]] = {}
        self.site = Site()
        self.faults = self.default_faults.copy()
        self.tokens: dict[str, Token] = {}
        # The operator's certificates (sandbox/assertions.py): thumbprint -> (key, end).
        self.operator_certificates: dict[str, tuple[Any, datetime]] = {}
        self.app = AppStats()
        self.counters: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.methods: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.reset()

    # -- set-up ------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the initial portal: one in-use secret, stored in Key Vault, resolved."""
        now = self.now()
        value = new_secret_text()
        self.credentials = [
            Credential(
                key_id=str(uuid.uuid4()),
                display_name="API Secret",
                secret_text=value,
                start=now - timedelta(days=30),
                end=now + self.in_use_expires_in,
                propagated_at=now - timedelta(days=30),
            )
        ]
        self.removed = []
        self.signins = []
        self.signin_totals = {}
        self.vault = {}
        self.set_secret(SECRET_NAME, value, tags={}, content_type=None)
        self.site = Site(settings=self.initial_settings())
        self.resolve_reference()
        self.site.started_at = now - timedelta(days=1)
        self.faults = self.default_faults.copy()
        self.tokens = {}
        self.app = AppStats()
        self.counters.clear()
        self.methods.clear()

    def initial_settings(self) -> dict[str, str]:
        """The site's app settings: the versionless reference and the app's other facts."""
        return {
            "AzureAd__Instance": "https://login.microsoftonline.com/",
            "AzureAd__TenantId": self.ids.tenant_id,
            "AzureAd__ClientId": self.ids.app_client_id,
            APP_SETTING: reference_text(self.vault_url, SECRET_NAME),
            "WEBSITE_RUN_FROM_PACKAGE": "1",
        }

    def set_vault_url(self, url: str) -> None:
        """The vault is wherever the sandbox listens: move the references there."""
        self.vault_url = url
        self.site.settings = {k: rebase_reference(v, url) for k, v in self.site.settings.items()}

    # -- Entra -------------------------------------------------------------------

    def credential(self, key_id: str) -> Credential | None:
        return next((c for c in self.credentials if c.key_id == key_id), None)

    def add_credential(
        self, display_name: str | None, start: datetime | None, end: datetime | None
    ) -> Credential:
        now = self.now()
        start = start or now
        cred = Credential(
            key_id=str(uuid.uuid4()),
            display_name=display_name,
            secret_text=new_secret_text(),
            start=start,
            end=end or start + timedelta(days=730),
            propagated_at=now + timedelta(seconds=self.faults.propagation_delay_seconds),
            added_at=now,
        )
        self.credentials.append(cred)
        return cred

    def remove_credential(self, key_id: str) -> bool:
        gone = [c for c in self.credentials if c.key_id == key_id]
        self.credentials = [c for c in self.credentials if c.key_id != key_id]
        now = self.now()
        self.removed = [*self.removed, *((c, now) for c in gone)][-50:]
        return bool(gone)

    def visible_credentials(self) -> list[Credential]:
        """What a Graph read shows now: writes appear ``graph_read_lag_seconds`` late."""
        now = self.now()
        lag = timedelta(seconds=self.faults.graph_read_lag_seconds)

        def seen(c: Credential) -> bool:
            return c.added_at is None or c.added_at + lag <= now

        shown = [c for c in self.credentials if seen(c)]
        ghosts = [c for c, removed_at in self.removed if removed_at + lag > now and seen(c)]
        return [*shown, *ghosts]

    def record_signin(
        self, key_id: str | None, error_code: int, reason: str, resource: str
    ) -> None:
        """A token request of the backend app: which credential it used, and how it went."""
        signin = SignIn.new(self, key_id, error_code, reason, resource)
        self.signins = [*self.signins, signin][-5000:]  # the log keeps the newest
        if key_id is not None:
            entry = self.signin_totals.setdefault(key_id, {"count": 0, "failed": 0, "last": None})
            entry["count"] += 1
            entry["failed"] += 1 if error_code != 0 else 0
            entry["last"] = signin.at.isoformat()

    def issue_token(self, client_id: str, audience: str) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        lifetime = self.faults.token_lifetime_seconds
        self.tokens[token] = Token(
            client_id=client_id,
            audience=audience,
            expires_at=self.now() + timedelta(seconds=lifetime),
        )
        return token, lifetime

    def token(self, raw: str) -> Token | None:
        tok = self.tokens.get(raw)
        if tok is None or tok.expires_at <= self.now():
            return None
        return tok

    # -- Key Vault ---------------------------------------------------------------

    def set_secret(
        self,
        name: str,
        value: str,
        *,
        tags: dict[str, str],
        content_type: str | None,
        enabled: bool = True,
        exp: int | None = None,
        nbf: int | None = None,
    ) -> SecretVersion:
        ts = int(self.now().timestamp())
        v = SecretVersion(
            version=new_version(),
            value=value,
            created=ts,
            updated=ts,
            enabled=enabled,
            content_type=content_type,
            tags=dict(tags),
            exp=exp,
            nbf=nbf,
        )
        self.vault.setdefault(name, []).append(v)
        return v

    def current_secret(self, name: str) -> SecretVersion | None:
        versions = self.vault.get(name)
        return versions[-1] if versions else None

    def secret_version(self, name: str, version: str | None) -> SecretVersion | None:
        """A secret's version (case-insensitive name), or its current one for None."""
        versions = next((vs for n, vs in self.vault.items() if n.lower() == name.lower()), [])
        if version is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version == version.lower()), None)

    # -- App Service -------------------------------------------------------------

    def resolve_reference(self) -> None:
        """The platform resolves the app's Key Vault reference now."""
        reload.resolve(self)

    def warm_at(self) -> datetime | None:
        if self.site.started_at is None:
            return None
        return self.site.started_at + timedelta(seconds=self.faults.cold_start_seconds)

    def app_phase(self) -> str:
        """``stopped``, ``starting`` (cold start), ``unhealthy`` or ``running``."""
        if self.site.state != "Running":
            return "stopped"
        warm = self.warm_at()
        if warm is not None and self.now() < warm:
            return "starting"
        if self.faults.never_healthy:
            return "unhealthy"
        return "running"

    # -- admin view --------------------------------------------------------------

    def count(self, service: str, method: str, status: int) -> None:
        self.counters[service][str(status)] += 1
        self.methods[service][method.upper()] += 1
