"""What the tenant layer hands back: immutable values in the runbook's words.

Nothing here holds an SDK object; the layers above never see Azure types.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

# The Key Vault tag naming the keyId of the app credential a version's value belongs
# to: written by the rotation, read by the expiry probe to match without a token test.
KEY_ID_TAG = "secretwarden-key-id"


class SecretValue:
    """A client secret value that cannot leak by accident.

    ``str()``, ``repr()`` and formatting all print ``**********``; only
    :meth:`reveal` returns the value, and only the tenant layer calls it, at the
    moment it hands the value to an SDK. Equality compares values in constant time
    so a caller can ask "is this the same secret" without revealing either.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("a secret value cannot be empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def hint(self) -> str:
        """The first three characters, as Graph reports them in ``hint``."""
        return self._value[:3]

    def __repr__(self) -> str:
        return "SecretValue('**********')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        import hmac

        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("SecretValue", len(self._value)))

    def __reduce__(self) -> str | tuple[object, ...]:  # pickling would write it somewhere
        raise TypeError("SecretValue cannot be pickled")


@dataclass(frozen=True, slots=True)
class PasswordCredential:
    """One client secret of the app registration, as Graph lists it (no value)."""

    key_id: str
    display_name: str | None
    hint: str | None
    start: datetime | None
    end: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.end is not None and self.end <= now


@dataclass(frozen=True, slots=True)
class AppRegistration:
    object_id: str
    client_id: str
    display_name: str | None
    credentials: tuple[PasswordCredential, ...]


@dataclass(frozen=True, slots=True)
class NewPassword:
    """The answer to addPassword: the only time Graph shows the value."""

    credential: PasswordCredential
    value: SecretValue


@dataclass(frozen=True, slots=True)
class SecretVersion:
    """One version of the Key Vault secret (``value`` is None in version listings)."""

    name: str
    version: str
    value: SecretValue | None
    enabled: bool
    created: datetime | None
    updated: datetime | None
    expires: datetime | None
    not_before: datetime | None
    content_type: str | None
    tags: dict[str, str] = field(default_factory=dict)


class TokenFailure(enum.Enum):
    """Why Entra refused a client-credentials request, in the runbook's terms."""

    INVALID_SECRET = "invalid_secret"  # AADSTS7000215: no credential has this value
    EXPIRED_SECRET = "expired_secret"  # AADSTS7000222: the credential has expired
    APP_NOT_FOUND = "app_not_found"  # AADSTS700016
    TENANT_NOT_FOUND = "tenant_not_found"  # AADSTS90002
    INVALID_CLIENT = "invalid_client"  # another invalid_client / unauthorized_client
    THROTTLED = "throttled"  # 429
    UNAVAILABLE = "unavailable"  # 5xx, timeouts, connection errors
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class TokenOutcome:
    """The result of trying a secret at the token endpoint.

    ``ok`` is True when Entra issued a token. On failure, ``failure`` classifies it,
    ``aadsts`` is the AADSTS code when Entra gave one, ``status`` the HTTP status when
    known. ``access_token`` is only set on success and is a secret too.
    """

    ok: bool
    failure: TokenFailure | None = None
    aadsts: int | None = None
    status: int | None = None
    error: str | None = None  # the token endpoint's ``error`` field, e.g. invalid_client
    access_token: SecretValue | None = None
    expires_on: int | None = None

    @property
    def secret_rejected(self) -> bool:
        """True when Entra says this secret itself is wrong or expired."""
        return self.failure in (TokenFailure.INVALID_SECRET, TokenFailure.EXPIRED_SECRET)


@dataclass(frozen=True, slots=True)
class GraphCallOutcome:
    """The result of the Graph call the app makes with its own token."""

    status: int
    code: str | None  # Graph's error.code on failure, e.g. InvalidAuthenticationToken
    duration_seconds: float


class SiteState(enum.Enum):
    RUNNING = "Running"
    STOPPED = "Stopped"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Site:
    """The site as ARM reports it. ``outbound_addresses`` is the union of its
    ``outboundIpAddresses`` and ``possibleOutboundIpAddresses`` (comma-separated in
    ARM): the addresses the app's own sign-ins come from (without a NAT gateway)."""

    name: str
    state: SiteState
    default_host_name: str | None
    outbound_addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerProcess:
    """One process of one scale-out instance (ARM ``instances/{id}/processes``)."""

    name: str
    started: datetime | None  # ARM's start_time; None: not reported (never "early")
    scm: bool  # the Kudu (SCM) site's process, not the app's worker


@dataclass(frozen=True, slots=True)
class SiteInstance:
    """One scale-out instance of the site and its processes, as ARM lists them."""

    id: str
    processes: tuple[WorkerProcess, ...]

    @property
    def workers(self) -> tuple[WorkerProcess, ...]:
        """The app's own processes (the SCM site's left out)."""
        return tuple(p for p in self.processes if not p.scm)


@dataclass(frozen=True, slots=True)
class KeyVaultReference:
    """One app setting's Key Vault reference, as ARM's configreferences report it.

    ``status`` is ARM's string (``Resolved``, ``SecretNotFound``,
    ``AccessToKeyVaultDenied``, ...). ``secret_version`` is what the reference names
    (None for a versionless reference, which follows the current version);
    ``active_version`` is the version the app actually resolved and holds.
    """

    key: str
    status: str
    vault_name: str | None
    secret_name: str | None
    secret_version: str | None
    active_version: str | None
    details: str | None

    @property
    def resolved(self) -> bool:
        return self.status == "Resolved"


# -- App Service: app settings and the reference they hold -----------------------------


@dataclass(frozen=True, slots=True)
class AppSettings:
    """Every app setting of the site, exactly as ARM listed them.

    The values are the user's configuration and may hold other secrets (connection
    strings): they are never shown by ``repr`` and never logged by tenant/.
    """

    values: Mapping[str, str] = field(repr=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    def get(self, name: str) -> str | None:
        return self.values.get(name)


@dataclass(frozen=True, slots=True)
class SecretReference:
    """What a ``@Microsoft.KeyVault(...)`` app setting names.

    ``version`` None is a versionless reference (follows the current version, re-fetched
    by the platform); a version pins the setting to that one version. The vault is
    ``vault_url`` (``https://<host>/``, from the ``SecretUri`` form) or ``vault_name``
    (the ``VaultName=`` form); :meth:`setting_value` writes the same form back.
    """

    vault_url: str | None
    vault_name: str | None
    secret_name: str
    version: str | None

    @property
    def pinned(self) -> bool:
        return self.version is not None

    def with_version(self, version: str | None) -> SecretReference:
        return SecretReference(self.vault_url, self.vault_name, self.secret_name, version)

    def setting_value(self) -> str:
        """The app setting value naming this reference, in the form it was read in."""
        if self.vault_url is not None:
            base = f"{self.vault_url.rstrip('/')}/secrets/{self.secret_name}/"
            return f"@Microsoft.KeyVault(SecretUri={base}{self.version or ''})"
        version = f";SecretVersion={self.version}" if self.version else ""
        return (
            f"@Microsoft.KeyVault(VaultName={self.vault_name};"
            f"SecretName={self.secret_name}{version})"
        )


@dataclass(frozen=True, slots=True)
class ReferenceSetting:
    """The app setting that holds the target's Key Vault reference: its name, its raw
    value (a reference, not a secret) and what that value names."""

    name: str
    raw: str
    reference: SecretReference


@dataclass(frozen=True, slots=True)
class ReferenceChange:
    """One write of the reference setting (a configuration change of the site):
    enough to put ``before`` back exactly."""

    setting: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class ReferencePoll:
    """What polling the reference status found.

    ``active_version`` is the last ``activeVersion`` ARM reported, None when it never
    reported one: None means UNKNOWN (real ARM may leave the field out), never "the
    app is on the wanted version". ``matched`` is True only when ARM reported exactly
    the wanted version.
    """

    wanted: str
    active_version: str | None
    status: str | None  # the reference's last status (Resolved, SecretNotFound, ...)
    matched: bool
    polls: int


# -- Graph: credentials ------------------------------------------------------------------


class RemoveOutcome(enum.Enum):
    """How a removePassword ended. ALREADY_GONE is decided by a fresh read of the app
    after Graph refused, never by the wording of Graph's reply."""

    REMOVED = "removed"
    ALREADY_GONE = "already_gone"


# -- Sign-in evidence (Graph beta auditLogs/signIns) -------------------------------------


@dataclass(frozen=True, slots=True)
class SignIn:
    """One service-principal sign-in of the app, as the sign-in log records it.

    ``key_id`` is ``servicePrincipalCredentialKeyId``: the keyId of the client secret
    (or certificate) the app signed in with; None when the log did not say.
    """

    key_id: str | None
    created: datetime
    succeeded: bool
    error_code: int | None
    failure_reason: str | None
    ip_address: str | None = None  # where the token request came from
    # Entra's correlationId: the token request's client-request-id header when one
    # was sent (the daemon sends its own recognizable ones; see tenant.requestid)
    correlation_id: str | None = None
    id: str | None = None  # the record's id (the log may hand out duplicates)


@dataclass(frozen=True, slots=True)
class SignInLog:
    """The app's service-principal sign-ins since ``since``, newest first.

    The log lags the sign-ins (minutes, more under load): absence from it proves only
    that nothing was recorded *yet*.
    """

    app_id: str
    since: datetime
    sign_ins: tuple[SignIn, ...]

    def successful(self, key_id: str) -> tuple[SignIn, ...]:
        wanted = key_id.lower()
        return tuple(s for s in self.sign_ins if s.succeeded and (s.key_id or "").lower() == wanted)

    def last_success(self, key_id: str) -> datetime | None:
        """When the app last signed in successfully with ``key_id``, or None."""
        times = [s.created for s in self.successful(key_id)]
        return max(times) if times else None


@dataclass(frozen=True, slots=True)
class SignInsUnreadable:
    """The sign-in log could not be read (typically 403: the operator lacks
    AuditLog.Read.All, or the tenant has no Entra ID P1/P2 licence). Not an error
    for the caller: sign-in evidence is simply not available."""

    app_id: str
    reason: str
    status: int | None
    code: str | None


# -- The app's own Graph-backed action ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppActionOutcome:
    """The result of one call to the app's own Graph-backed action (e.g. "Sync from
    Intune"). ``ok`` is a 2xx; ``status`` 0 means no HTTP reply (``detail`` says why)."""

    url: str
    ok: bool
    status: int
    duration_seconds: float
    detail: str | None
