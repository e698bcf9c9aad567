"""The daemon's configuration: a TOML file validated in one pass.

Defaults come first, unknown keys are rejected, and every problem is reported at once
with its dotted path (``targets[0].key_vault_url: ...``). :func:`load_config` raises
:class:`ConfigError` carrying all of them; the CLI prints them and exits 2.

Secrets never live in this file: the operator's client secret and the webhook token
are read from files named here (``client_secret_file``, ``webhook_token_file``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon import config_checks as checks
from daemon.config_checks import DAY, HOUR, SECOND, in_unit
from daemon.logging import REDACTOR
from daemon.webauth import checked_users
from tenant.endpoints import CLOUDS, Cloud, RetryPolicy
from tenant.models import SecretValue
from tenant.ports import Identity, TargetRef

DEFAULT_LISTEN_ADDRESS = "127.0.0.1:9877"
DEFAULT_SECRET_NAME = "AzureAdClientSecret"
PROBE_NAMES = ("expiry", "health", "graph", "reference")


class ConfigError(Exception):
    """The configuration is unusable. ``problems`` lists every one, path first."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# Durations: a bare number in the key's unit, or Prometheus' notation (30d, 12h, 90m, 2w).
PositiveSeconds = Annotated[float, BeforeValidator(in_unit(SECOND)), Field(gt=0)]
Seconds = Annotated[float, BeforeValidator(in_unit(SECOND)), Field(ge=0)]
Hours = Annotated[float, BeforeValidator(in_unit(HOUR)), Field(ge=0)]
PositiveDays = Annotated[float, BeforeValidator(in_unit(DAY)), Field(gt=0)]
# Azure names these by GUID only; a display name or a subscription name is a mistake.
ClientId = Annotated[
    str | None, AfterValidator(checks.guid("the Application (client) ID on its Overview"))
]
ObjectId = Annotated[str | None, AfterValidator(checks.guid("the Object ID on its Overview"))]
SubscriptionId = Annotated[
    str, AfterValidator(checks.guid("the Subscription ID, not the subscription's name"))
]
TenantId = Annotated[str | None, AfterValidator(checks.tenant)]


def _https_url(value: str) -> str:
    if not value.startswith("https://"):
        raise ValueError(f"must be an https:// URL, got {value!r}")
    return value.rstrip("/")


def _listen_address(value: str) -> str:
    _host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be HOST:PORT with a port from 0 to 65535, got {value!r}")
    return value


def split_listen_address(value: str) -> tuple[str, int]:
    host, _, port = _listen_address(value).rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class DaemonSection(_Model):
    state_directory: Path = Path("/var/lib/secretwarden")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class WebSection(_Model):
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # username -> a bcrypt hash ($2y$..., `htpasswd -nB`) or
    # "pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>" (see daemon/webauth.py)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)

    @field_validator("listen_address")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        return _listen_address(value)

    @field_validator("basic_auth_users")
    @classmethod
    def _check_hashes(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_users(value)

    @model_validator(mode="after")
    def _tls_pair(self) -> WebSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self


class IdentitySection(_Model):
    kind: Literal["default", "client_secret", "certificate"] = "default"
    tenant_id: TenantId = None
    client_id: ClientId = None
    client_secret_file: Path | None = None
    # The operator's certificate (PEM: the certificate and its private key), e.g. handed
    # over by systemd's LoadCredential= like the secret; ``certificate_file`` is its
    # older name.
    client_certificate_file: Path | None = None
    certificate_file: Path | None = None
    # When the operator's own credential expires, for the expiry metric when neither
    # the certificate file nor Graph can say (a TOML date or date-time, UTC if naive).
    credential_expires_at: datetime | None = None

    @field_validator("credential_expires_at", mode="before")
    @classmethod
    def _when(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="before")
    @classmethod
    def _one_certificate_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "client_certificate_file" in data:
            if "certificate_file" in data:
                raise ValueError("set client_certificate_file or certificate_file, not both")
            data = {**data, "certificate_file": data["client_certificate_file"]}
        return data

    @model_validator(mode="after")
    def _needs(self) -> IdentitySection:
        missing: list[str] = []
        if self.kind != "default":
            missing += [n for n in ("tenant_id", "client_id") if getattr(self, n) is None]
        if self.kind == "client_secret" and self.client_secret_file is None:
            missing.append("client_secret_file")
        if self.kind == "certificate" and self.certificate_file is None:
            missing.append("client_certificate_file")
        if missing:
            raise ValueError(f"kind {self.kind!r} needs {', '.join(missing)}")
        return self


class CloudSection(_Model):
    name: Literal["public", "usgovernment", "china", "custom"] = "public"
    authority: str | None = None
    graph_url: str | None = None
    arm_url: str | None = None
    ca_file: Path | None = None

    @field_validator("authority", "graph_url", "arm_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        return None if value is None else _https_url(value)

    @model_validator(mode="after")
    def _custom(self) -> CloudSection:
        if self.name == "custom":
            missing = [n for n in ("authority", "graph_url", "arm_url") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"name 'custom' needs {', '.join(missing)}")
        return self

    def to_cloud(self) -> Cloud:
        base = CLOUDS["public" if self.name == "custom" else self.name]
        if self.name == "custom" or any((self.authority, self.graph_url, self.arm_url)):
            return base.with_custom(
                authority=self.authority,
                graph_url=self.graph_url,
                arm_url=self.arm_url,
                ca_file=self.ca_file,
            )
        if self.ca_file is not None:
            return Cloud(**{**_cloud_fields(base), "ca_file": self.ca_file})
        return base


def _cloud_fields(cloud: Cloud) -> dict[str, Any]:
    return {name: getattr(cloud, name) for name in Cloud.__slots__}


class ProbeSchedule(_Model):
    """When one probe runs. Each probe has its own defaults (the subclasses)."""

    interval_seconds: PositiveSeconds
    timeout_seconds: PositiveSeconds
    jitter_seconds: Seconds

    @model_validator(mode="after")
    def _timeout_fits(self) -> ProbeSchedule:
        if "timeout_seconds" not in self.model_fields_set:
            # a shorter interval shortens the default timeout with it
            object.__setattr__(
                self, "timeout_seconds", min(self.timeout_seconds, self.interval_seconds)
            )
        if self.timeout_seconds > self.interval_seconds:
            raise ValueError("timeout_seconds must not exceed interval_seconds")
        return self


class ExpirySchedule(ProbeSchedule):
    # 15 min (was 5; issue 16's request budget): an expiry is days away, and a rotation
    # by this daemon makes the shared reads forget (exporters/reads.py).
    interval_seconds: PositiveSeconds = 900
    timeout_seconds: PositiveSeconds = 60
    jitter_seconds: Seconds = 15


class HealthSchedule(ProbeSchedule):
    interval_seconds: PositiveSeconds = 30
    timeout_seconds: PositiveSeconds = 10
    jitter_seconds: Seconds = 3


class GraphSchedule(ProbeSchedule):
    interval_seconds: PositiveSeconds = 60
    timeout_seconds: PositiveSeconds = 30
    jitter_seconds: Seconds = 5


class ReferenceSchedule(ProbeSchedule):
    # 15 min (was 2; issue 16's request budget): remediation verifies its own reloads.
    interval_seconds: PositiveSeconds = 900
    timeout_seconds: PositiveSeconds = 30
    jitter_seconds: Seconds = 10


class ProbesSection(_Model):
    expiry: ExpirySchedule = ExpirySchedule()
    health: HealthSchedule = HealthSchedule()
    graph: GraphSchedule = GraphSchedule()
    reference: ReferenceSchedule = ReferenceSchedule()

    def schedule(self, probe: str) -> ProbeSchedule:
        value: ProbeSchedule = getattr(self, probe)
        return value


class RetrySection(_Model):
    """How hard each Azure call is retried (maps to tenant.endpoints.RetryPolicy)."""

    total: Annotated[int, Field(ge=0)] = 3
    backoff_factor: Annotated[float, Field(ge=0)] = 0.8
    backoff_max: Seconds = 60.0
    timeout_seconds: PositiveSeconds = 30.0

    def to_policy(self) -> RetryPolicy:
        return RetryPolicy(
            total=self.total,
            backoff_factor=self.backoff_factor,
            backoff_max=self.backoff_max,
            timeout_seconds=self.timeout_seconds,
        )


Rung = Literal["refresh", "config_change", "restart", "stop_start"]
RUNGS: tuple[Rung, ...] = ("refresh", "config_change", "restart", "stop_start")


class RemediationSection(_Model):
    """``[remediation]``: see docs/remediation.md. ``enabled = false`` is read-only: the
    daemon writes nothing to Azure (no policy or webhook run, no cleanup, no recovery);
    ``secretwarden rotate`` and ``secretwarden cleanup`` always work. With ``enabled``,
    ``builtin_triggers`` (the policy) and the webhook (``webhook_token_file``) start runs."""

    enabled: bool = False  # false: read-only, nothing written to Azure (docs/remediation.md)
    # The probe-driven policy; false: only the webhook (and the CLI) start runs.
    builtin_triggers: bool = True
    dry_run: bool = False
    rotate_before_days: PositiveDays = 30
    heal_after_failures: Annotated[int, Field(ge=1)] = 3
    max_rotations_per_day: Annotated[int, Field(ge=0)] = 2
    secret_lifetime_days: Annotated[int, BeforeValidator(in_unit(DAY)), Field(ge=1, le=730)] = 180
    grace_period_seconds: Seconds = 0
    webhook_token_file: Path | None = None
    backoff_initial_seconds: PositiveSeconds = 300
    backoff_max_seconds: PositiveSeconds = 21600
    circuit_failures: Annotated[int, Field(ge=1)] = 3
    circuit_reset_seconds: PositiveSeconds = 86400
    display_name_prefix: Annotated[str, Field(min_length=1, max_length=60)] = "secretwarden"
    propagation_timeout_seconds: PositiveSeconds = 180
    propagation_poll_seconds: PositiveSeconds = 2
    refresh_timeout_seconds: PositiveSeconds = 60
    cold_start_timeout_seconds: PositiveSeconds = 300
    verify_poll_seconds: PositiveSeconds = 5
    step_attempts: Annotated[int, Field(ge=1)] = 5
    # The reload ladder (docs/remediation.md), in order; a target may name its own.
    reload_rungs: list[Rung] = Field(default_factory=lambda: list(RUNGS))
    # Without proof the app left the old credential, it stays this long.
    overlap_window_hours: Hours = 24
    # Retries of a site transition answered 409 (busy) or 429.
    transition_attempts: Annotated[int, Field(ge=1)] = 8
    # How long a Graph read may lag a write (addPassword, removePassword).
    graph_read_lag_seconds: Seconds = 30
    # Read the sign-in log for proof (needs AuditLog.Read.All; said once when refused).
    use_sign_ins: bool = True
    # Triggers repeating a run that just ended settled are answered, not run (issue 9).
    duplicate_window_seconds: Seconds = 60
    # Issue 13: after any removal the app is watched one token lifetime (its own action
    # and /health at the interval); the sign-in log's reordering and delay bounds; the
    # clock skew allowed between the daemon, Entra and ARM; how long a recycle of every
    # worker may take when ARM's per-instance view cannot be read.
    post_removal_watch_seconds: Seconds = 5400
    post_removal_watch_interval_seconds: PositiveSeconds = 60
    signin_log_reorder_seconds: Seconds = 300
    signin_log_delay_bound_seconds: PositiveSeconds = 1800
    clock_skew_seconds: Seconds = 300
    recycle_allowance_seconds: Seconds = 600

    @model_validator(mode="after")
    def _lifetime_outlasts_the_rotation_window(self) -> RemediationSection:
        # Otherwise every new secret is due for rotation the moment it is issued, and
        # only the daily cap would stop the daemon rotating again and again.
        if self.secret_lifetime_days <= self.rotate_before_days:
            raise ValueError(
                f"secret_lifetime_days ({self.secret_lifetime_days}) must be longer than "
                f"rotate_before_days ({self.rotate_before_days:g})"
            )
        return self


def _glob_list(values: list[str]) -> list[str]:
    for value in values:
        if not value.strip():
            raise ValueError("an empty pattern matches nothing; remove it")
    return values


class InventorySection(ProbeSchedule):
    """``[inventory]``: every app registration's credentials (docs/inventory.md).
    Off unless ``enabled``; read-only (``Application.Read.All``)."""

    enabled: bool = False
    interval_seconds: PositiveSeconds = 3600
    timeout_seconds: PositiveSeconds = 900
    jitter_seconds: Seconds = 60
    service_principals: bool = False
    # A fresh full listing at least this often, whatever the deltas said (default daily).
    full_scan_interval_seconds: PositiveSeconds = 86400
    # Shell-style patterns (fnmatch, any case): names and tags to keep or leave out.
    include_names: list[str] = Field(default_factory=list)
    exclude_names: list[str] = Field(default_factory=list)
    include_tags: list[str] = Field(default_factory=list)
    exclude_tags: list[str] = Field(default_factory=list)

    @field_validator("include_names", "exclude_names", "include_tags", "exclude_tags")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return _glob_list(value)


class TargetSection(_Model):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    tenant_id: TenantId = None
    app_object_id: ObjectId = None
    app_client_id: ClientId = None
    key_vault_url: str
    secret_name: str = DEFAULT_SECRET_NAME
    subscription_id: SubscriptionId
    resource_group: str
    site_name: str
    app_setting: str | None = None
    health_url: str
    graph_probe_url: str | None = None
    # The app's own Graph-backed action (GET, 2xx = OK), checked after each reload.
    app_action_url: str | None = None
    # The reference names a version: the rotation writes the new one into it.
    pinned_reference: bool = False
    reload_rungs: list[Rung] | None = None  # None: [remediation] reload_rungs
    overlap_window_hours: Hours | None = None
    # The addresses the app's own outbound calls come from when not the site's
    # outbound addresses (a NAT gateway): its sign-ins from them count as the app's.
    app_outbound_addresses: list[str] = Field(default_factory=list)

    @field_validator("app_outbound_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for a in value:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise ValueError(f"not an IP address: {a!r}") from None
        return value

    @field_validator("reload_rungs")
    @classmethod
    def _rungs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a rung is named twice")
        return value

    @field_validator("key_vault_url")
    @classmethod
    def _kv(cls, value: str) -> str:
        return checks.key_vault_url(_https_url(value))

    @field_validator("health_url", "graph_probe_url", "app_action_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        return checks.not_a_portal_url(value)

    @model_validator(mode="after")
    def _app(self) -> TargetSection:
        if self.app_object_id is None and self.app_client_id is None:
            raise ValueError("set app_object_id or app_client_id")
        return self


_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class HaSection(_Model):
    """High availability (docs/ha.md): several daemons, one Azure Blob Storage lease
    per target. ``none`` (the default) is one daemon with its local journal."""

    backend: Literal["none", "azure_blob"] = "none"
    account_url: str | None = None  # https://<account>.blob.core.windows.net
    container: str = "secretwarden"
    lease_seconds: Annotated[int, Field(ge=15, le=60)] = 30  # Azure's lease durations
    renew_deadline_seconds: PositiveSeconds = 20
    retry_seconds: PositiveSeconds = 5
    # Azurite and development: a connection string in a file (checked like the other
    # secret files); unset, the daemon signs in to account_url with its own identity.
    connection_string_file: Path | None = None

    @field_validator("account_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        return None if value is None else _https_url(value)

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        if not _CONTAINER.match(value):
            raise ValueError(
                "3-63 lowercase letters, digits and single hyphens, starting and ending "
                "with a letter or digit (Azure's container names)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HaSection:
        if self.renew_deadline_seconds >= self.lease_seconds:
            raise ValueError(
                f"renew_deadline_seconds ({self.renew_deadline_seconds:g}) must be shorter "
                f"than lease_seconds ({self.lease_seconds}): a daemon cut off from storage "
                "must stop writing before its lease can pass to another"
            )
        if (
            self.backend == "azure_blob"
            and self.account_url is None
            and self.connection_string_file is None
        ):
            raise ValueError('backend "azure_blob" needs account_url or connection_string_file')
        return self


class Config(_Model):
    daemon: DaemonSection = DaemonSection()
    web: WebSection = WebSection()
    identity: IdentitySection = IdentitySection()
    cloud: CloudSection = CloudSection()
    probes: ProbesSection = ProbesSection()
    retry: RetrySection = RetrySection()
    remediation: RemediationSection = RemediationSection()
    inventory: InventorySection = InventorySection()
    ha: HaSection = HaSection()
    targets: Annotated[list[TargetSection], Field(min_length=1)]

    @model_validator(mode="after")
    def _targets(self) -> Config:
        seen: set[str] = set()
        for target in self.targets:
            if target.name in seen:
                raise ValueError(f"target name {target.name!r} is used twice")
            seen.add(target.name)
            if target.tenant_id is None and self.identity.tenant_id is None:
                raise ValueError(
                    f"target {target.name!r} needs tenant_id (or set identity.tenant_id)"
                )
            if (
                host := checks.vault_host_problem(target.key_vault_url, self.cloud.name)
            ) is not None:
                raise ValueError(f"target {target.name!r}: key_vault_url: {host}")
        return self

    # conversions to what tenant/ takes --------------------------------------------

    def cloud_endpoints(self) -> Cloud:
        return self.cloud.to_cloud()

    def target(self, name: str) -> TargetSection:
        for target in self.targets:
            if target.name == name:
                return target
        raise KeyError(name)

    def target_ref(self, target: TargetSection) -> TargetRef:
        tenant_id = target.tenant_id or self.identity.tenant_id
        assert tenant_id is not None  # checked by _targets
        return TargetRef(
            tenant_id=tenant_id,
            app_object_id=target.app_object_id,
            app_client_id=target.app_client_id,
            key_vault_url=target.key_vault_url,
            secret_name=target.secret_name,
            subscription_id=target.subscription_id,
            resource_group=target.resource_group,
            site_name=target.site_name,
            app_setting=target.app_setting,
        )

    def graph_probe_url(self, target: TargetSection) -> str:
        if target.graph_probe_url is not None:
            return target.graph_probe_url
        return f"{self.cloud_endpoints().graph_url}/deviceAppManagement/mobileApps?$top=1"

    def identity_value(self) -> Identity:
        """The operator identity, with its secret read from ``client_secret_file``."""
        section = self.identity
        secret: SecretValue | None = None
        if section.client_secret_file is not None:
            secret = SecretValue(read_secret_file(section.client_secret_file, "identity"))
        return Identity(
            kind=section.kind,
            tenant_id=section.tenant_id,
            client_id=section.client_id,
            client_secret=secret,
            certificate_path=section.certificate_file,
        )

    def retry_policy(self) -> RetryPolicy:
        return self.retry.to_policy()


def secret_file_problem(path: Path, what: str) -> str | None:
    """Why ``path`` must not hold a secret: unreadable, not a regular file, or readable
    by others (group or world). A symlink is judged by the file it points to."""
    try:
        info = path.stat()  # follows a symlink: the target's mode is what protects it
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"{what}: cannot read {path}: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"{what}: {path} is not a regular file"
    if info.st_mode & 0o077:
        link = f" (through the symlink {path})" if path.is_symlink() else ""
        return (
            f"{what}: {path.resolve()} is {open_to(info.st_mode)} (mode "
            f"{info.st_mode & 0o777:o}){link}; chmod 600 it, or let systemd's "
            "LoadCredential= hand it over"
        )
    return None


def open_to(mode: int) -> str:
    """Who besides the owner may use a file, in words: "readable by its group",
    "readable by others", "readable by its group and writable by others"..."""
    said = []
    for who, shift in (("its group", 3), ("others", 0)):
        bits = (mode >> shift) & 0o7
        can = [w for w, b in (("readable", 4), ("writable", 2), ("executable", 1)) if bits & b]
        if can:
            said.append((" and ".join(can), who))
    if len(said) == 2 and said[0][0] == said[1][0]:
        return f"{said[0][0]} by its group and others"
    return " and ".join(f"{can} by {who}" for can, who in said)


def read_secret_file(path: Path, section: str) -> str:
    """Read a secret from a file, refusing files others can read. The value is
    registered with the log redactor on the way out, for every caller."""
    if (problem := secret_file_problem(path, section)) is not None:
        raise ConfigError(str(path), [problem])
    try:
        value = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(str(path), [f"{section}: cannot read {path}: {cause}"]) from None
    if not value:
        raise ConfigError(str(path), [f"{section}: {path} is empty"])
    REDACTOR.register(value)
    return value


def _loc(parts: Iterable[int | str]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def format_errors(exc: ValidationError) -> list[str]:
    """One line per problem: ``dotted.path: message``."""
    lines = []
    for error in exc.errors(include_url=False):
        # pydantic appends the validator kind ("function-after[...]") to model-level locs
        loc = [p for p in error["loc"] if not (isinstance(p, str) and "[" in p)]
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = checks.unknown_key_message(Config, loc)
        elif error["type"] == "list_type" and loc == ["targets"]:
            message = checks.TARGETS_AS_TABLE
        elif error["type"] == "missing":
            message = "required"
        path = _loc(loc)
        lines.append(f"{path}: {message}" if path else message)
    return lines


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_errors(exc)) from None


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    config = parse_config(data, str(path))
    return _resolve_relative(config, path.resolve().parent)


def _resolve_relative(config: Config, base: Path) -> Config:
    """Paths in the file are relative to the file, so a config can travel with its files."""

    def fix(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    updates: dict[str, Any] = {}
    d = config.daemon
    if (sd := fix(d.state_directory)) is not None:
        updates["daemon"] = d.model_copy(update={"state_directory": sd})
    ident = config.identity
    upd = {
        k: v
        for k, v in (
            ("client_secret_file", fix(ident.client_secret_file)),
            ("certificate_file", fix(ident.certificate_file)),
        )
        if v is not None
    }
    if upd:
        updates["identity"] = ident.model_copy(update=upd)
    if (ca := fix(config.cloud.ca_file)) is not None:
        updates["cloud"] = config.cloud.model_copy(update={"ca_file": ca})
    web_upd = {
        k: v
        for k, v in (
            ("tls_cert_file", fix(config.web.tls_cert_file)),
            ("tls_key_file", fix(config.web.tls_key_file)),
        )
        if v is not None
    }
    if web_upd:
        updates["web"] = config.web.model_copy(update=web_upd)
    if (wt := fix(config.remediation.webhook_token_file)) is not None:
        updates["remediation"] = config.remediation.model_copy(update={"webhook_token_file": wt})
    if (cs := fix(config.ha.connection_string_file)) is not None:
        updates["ha"] = config.ha.model_copy(update={"connection_string_file": cs})
    return config.model_copy(update=updates) if updates else config


def unreadable_files(config: Config) -> list[str]:
    """The (non-secret) files the config names that cannot be read, one problem each.

    Checked before anything starts (and before a reload replaces a running config), so
    a missing CA bundle or certificate is a config error, not a traceback at the first
    connection. Secret files: :func:`secret_files`; the web server's files:
    daemon.webconfig.web_settings.
    """
    named = (("cloud.ca_file", config.cloud.ca_file),)
    problems = []
    for key, path in named:
        if path is None:
            continue
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(f"{key}: cannot read {path}: {exc.strerror}")
    return problems


def secret_files(config: Config) -> list[str]:
    """The secret files the config names that ``run`` would refuse: unreadable, empty,
    or readable by others (checked through symlinks). The values are read (and so
    registered with the log redactor), never returned."""
    named = (
        ("identity.client_secret_file", config.identity.client_secret_file),
        ("remediation.webhook_token_file", config.remediation.webhook_token_file),
        ("ha.connection_string_file", config.ha.connection_string_file),
    )
    problems = []
    for key, path in named:
        if path is None:
            continue
        try:
            read_secret_file(path, key)
        except ConfigError as exc:
            problems += exc.problems
    # The operator's certificate file holds its private key: a secret file too.
    if (cert := config.identity.certificate_file) is not None:
        problem = secret_file_problem(cert, "identity.client_certificate_file")
        if problem is not None:
            problems.append(problem)
    return problems


def preflight(config: Config, *, create: bool = True) -> list[str]:
    """Everything :func:`load_config` cannot see: the files and the state directory.
    ``run`` and ``run --config.check`` both stop on these (the web server's TLS files
    are checked by daemon.webconfig.web_settings). ``create=False`` (``--config.check``)
    changes nothing on disk: a missing state directory is judged by its parent."""
    problems = secret_files(config)
    problems += unreadable_files(config)
    problems += state_directory_problems(config, create=create)
    return problems


def load_checked_config(path: Path, *, create: bool = True) -> Config:
    """:func:`load_config` plus :func:`preflight`: what every command that acts needs."""
    config = load_config(path)
    problems = preflight(config, create=create)
    if problems:
        raise ConfigError(str(path), problems)
    return config


def state_directory_problems(config: Config, *, create: bool = True) -> list[str]:
    """The state directory must be creatable, readable, writable and searchable.
    ``create=False``: a missing one is not made, only its nearest existing parent
    checked (so a check run with sudo leaves no root-owned directory behind)."""
    d = config.daemon.state_directory
    if not create and not d.exists():
        parent = next((p for p in d.parents if p.exists()), Path("/"))
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return [f"daemon.state_directory: cannot create {d}: {parent} is not writable"]
        return []
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"daemon.state_directory: cannot create {d}: {exc.strerror}"]
    if not d.is_dir():
        return [f"daemon.state_directory: {d} is not a directory"]
    if not os.access(d, os.R_OK | os.W_OK | os.X_OK):
        return [f"daemon.state_directory: {d} is not readable and writable by this user"]
    return []


def journal_problems(config: Config) -> list[str]:
    """Journal files (or the journal directory) this user cannot read and write.

    ``run`` starts all the same (probes and metrics go on; remediation of the target
    stays off until the owner is fixed), so this is for ``run --config.check``: the
    usual cause, ``sudo secretwarden rotate`` leaving root's files behind, shows before
    it costs a remediation."""
    d = config.daemon.state_directory
    journal = d / "journal"
    fix = f"(root ran `secretwarden rotate`? chown -R the daemon's user {d})"
    try:
        if not journal.exists():
            return []
        # Run as root (as deploy-systemd.md shows), access() says yes to everything:
        # a file whose owner is not the state directory's is the tell then.
        owner = d.stat().st_uid
        problems = []
        for path in [journal, *sorted(journal.iterdir())]:
            is_dir = path.is_dir()
            need = os.R_OK | os.W_OK | (os.X_OK if is_dir else 0)
            what = "the journal" + ("" if is_dir else " file")
            uid = path.stat().st_uid
            if not os.access(path, need):
                problems.append(
                    f"daemon.state_directory: cannot read and write {what} {path} {fix}"
                )
            elif uid != owner:
                problems.append(
                    f"daemon.state_directory: {what} {path} belongs to uid {uid}, the state "
                    f"directory to uid {owner}: the daemon cannot use it {fix}"
                )
            if path is journal and problems:
                break  # its files cannot be judged through it
        return problems
    except PermissionError:
        return [f"daemon.state_directory: cannot look into {d} {fix}"]
