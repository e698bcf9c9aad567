"""The tenant the sandbox holds: one portal, as the runbook describes it.

An app registration (the backend API) with its password credentials, the operator
identity the daemon signs in as, a Key Vault holding ``AzureAdClientSecret``, and an App
Service reading it through a Key Vault reference. Plain data plus the rules that every
service of the sandbox shares (which secret is valid, what the app resolved).
"""

from __future__ import annotations

import json
import os
import secrets
import string
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.faults import Faults

SECRET_NAME = "AzureAdClientSecret"
APP_SETTING = "AzureAd__ClientSecret"
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
class Site:
    state: str = "Running"  # Running | Stopped, as ARM reports properties.state
    resolved_version: str | None = None  # the Key Vault version the app holds
    resolved_value: str | None = None  # what the app resolved (never shown in state)
    started_at: datetime | None = None  # the last (re)start; cold start runs from here
    restarts: int = 0
    starts: int = 0
    stops: int = 0
    refreshes: int = 0


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
        self.vault: dict[str, list[SecretVersion]] = {}
        self.site = Site()
        self.faults = self.default_faults.copy()
        self.tokens: dict[str, Token] = {}
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
        self.vault = {}
        self.set_secret(SECRET_NAME, value, tags={}, content_type=None)
        self.site = Site()
        self.resolve_reference()
        self.site.started_at = now - timedelta(days=1)
        self.faults = self.default_faults.copy()
        self.tokens = {}
        self.app = AppStats()
        self.counters.clear()
        self.methods.clear()

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
        )
        self.credentials.append(cred)
        return cred

    def remove_credential(self, key_id: str) -> bool:
        before = len(self.credentials)
        self.credentials = [c for c in self.credentials if c.key_id != key_id]
        return len(self.credentials) != before

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

    # -- App Service -------------------------------------------------------------

    def resolve_reference(self) -> None:
        """The app reads its versionless Key Vault reference: the current version."""
        current = self.current_secret(SECRET_NAME)
        if current is None or not current.enabled:
            self.site.resolved_version = None
            self.site.resolved_value = None
        else:
            self.site.resolved_version = current.version
            self.site.resolved_value = current.value

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

    def begin_start(self, *, re_resolve: bool) -> None:
        self.site.state = "Running"
        if re_resolve:
            self.resolve_reference()
        self.site.started_at = self.now()

    # -- admin view --------------------------------------------------------------

    def count(self, service: str, method: str, status: int) -> None:
        self.counters[service][str(status)] += 1
        self.methods[service][method.upper()] += 1

    def state_json(self) -> dict[str, Any]:
        now = self.now()
        main = self.vault.get(SECRET_NAME, [])
        return {
            "now": now.isoformat(),
            "tenant_id": self.ids.tenant_id,
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
                    "in_use_by_app": self.site.resolved_value == c.secret_text,
                }
                for c in self.credentials
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
                "other_secrets": sorted(n for n in self.vault if n != SECRET_NAME),
            },
            "site": {
                "state": self.site.state,
                "phase": self.app_phase(),
                "resolved_version": self.site.resolved_version,
                "started_at": self.site.started_at.isoformat() if self.site.started_at else None,
                "restarts": self.site.restarts,
                "starts": self.site.starts,
                "stops": self.site.stops,
                "refreshes": self.site.refreshes,
            },
            "app": asdict(self.app),
            "counters": {s: dict(c) for s, c in self.counters.items()},
            "counters_by_method": {s: dict(c) for s, c in self.methods.items()},
            "faults": self.faults.to_json(),
        }

    # -- persistence -------------------------------------------------------------

    def to_file_json(self) -> dict[str, Any]:
        return {
            "ids": asdict(self.ids),
            "credentials": [c.to_json() for c in self.credentials],
            "vault": {n: [asdict(v) for v in vs] for n, vs in self.vault.items()},
            "site": {
                "state": self.site.state,
                "resolved_version": self.site.resolved_version,
                "resolved_value": self.site.resolved_value,
                "restarts": self.site.restarts,
                "starts": self.site.starts,
                "stops": self.site.stops,
                "refreshes": self.site.refreshes,
            },
            "faults": {k: v for k, v in self.faults.to_json().items() if k != "inject"},
            "app": asdict(self.app),
        }

    def load_file_json(self, data: dict[str, Any]) -> None:
        self.credentials = [Credential.from_json(c) for c in data["credentials"]]
        self.vault = {n: [SecretVersion(**v) for v in vs] for n, vs in data["vault"].items()}
        s = data["site"]
        self.site = Site(
            state=s["state"],
            resolved_version=s.get("resolved_version"),
            resolved_value=s.get("resolved_value"),
            started_at=self.now() - timedelta(days=1),
            restarts=s.get("restarts", 0),
            starts=s.get("starts", 0),
            stops=s.get("stops", 0),
            refreshes=s.get("refreshes", 0),
        )
        self.faults = Faults.from_json(data.get("faults", {}))
        self.app = AppStats(**data.get("app", {}))


def save_state(path: Path, portal: Portal) -> None:
    """Write the tenant atomically; the file stands in for Azure itself (mode 0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(portal.to_file_json(), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_ids(path: Path) -> Identities | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return Identities(**data["ids"])
