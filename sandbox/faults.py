"""Faults the sandbox can be told to show, switchable while it runs (``POST faults``).

Every key is documented in docs/sandbox.md. Unknown keys and wrong types are rejected
as a whole, listing every problem, so a test never runs against a half-applied fault.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

SERVICES = ("entra", "graph", "keyvault", "arm", "app")
# How the App Service re-resolves its Key Vault reference (see docs/azure-behaviour.md).
RELOAD_MODELS = ("documented", "runbook", "optimistic")
ACTIVE_VERSION = ("absent", "present")
# What a worker process holds (see docs/azure-behaviour.md): it reads the platform's
# cache when it starts ("start_only"), or a re-fetch that changes the cache also recycles
# the workers ("recycle_on_refetch").
PROCESS_MODELS = ("start_only", "recycle_on_refetch")


@dataclass(slots=True)
class Injection:
    """Answer the next ``count`` matching requests of ``service`` with ``status``."""

    service: str
    status: int
    count: int = 1
    retry_after: int | None = None
    code: str | None = None  # override the service's error code for this status
    method: str | None = None  # only requests with this HTTP method (e.g. PUT)
    path_contains: str | None = None  # only requests whose path contains this

    def matches(self, service: str, method: str, path: str) -> bool:
        return (
            self.count > 0
            and self.service == service
            and (self.method is None or self.method.upper() == method.upper())
            and (self.path_contains is None or self.path_contains in path)
        )


@dataclass(slots=True)
class Faults:
    cold_start_seconds: float = 0.0
    sticky_cache: bool = False
    # A new secret is refused (7000215) this long after addPassword (reports: 4-18 s).
    propagation_delay_seconds: float = 20.0
    never_healthy: bool = False
    latency_seconds: dict[str, float] = field(default_factory=dict)
    app_sync_interval_seconds: float = 0.0
    # App management policy: the longest lifetime addPassword accepts (None: no policy).
    max_password_lifetime_days: float | None = None
    # How many password credentials the app may hold (None: no cap).
    max_password_credentials: int | None = None
    # Validity of tokens the sandbox issues.
    token_lifetime_seconds: int = 3599
    # ARM's Key Vault reference list: items per page (None: one page), and how many other
    # app settings with references (to other secrets) the site has, listed before ours.
    arm_page_size: int | None = None
    extra_key_vault_references: int = 0
    # The tenant-wide Graph lists (applications, servicePrincipals, their delta): a delay
    # before each page, and at most this many items per page whatever the client asks.
    graph_page_latency_seconds: float = 0.0
    graph_page_size_cap: int | None = None
    # A delta round lists an object once per change (Graph documents that an entity may
    # come several times); false: once, at its last change.
    graph_delta_duplicates: bool = True
    # A change reaches delta rounds only this long after it was made (replication).
    graph_delta_lag_seconds: float = 0.0
    inject: list[Injection] = field(default_factory=list)
    # What App Service does with a Key Vault reference (docs/azure-behaviour.md):
    # "documented": only a configuration change and the refresh call (after
    # refresh_delay_seconds) re-resolve; "runbook": also Stop+Start; "optimistic": every
    # Restart (unless sticky_cache or softRestart) and Start, and refresh at once.
    reload_model: str = "documented"
    refresh_delay_seconds: float = 5.0
    refetch_interval_seconds: float = 86400.0
    # Whether the reference status carries activeVersion (no public example has it).
    active_version: str = "absent"
    # After a restart, stop, start or configuration change, further transitions answer
    # site_busy_status (409 Conflict, or 429) in Microsoft.Web's shape for this long.
    site_busy_seconds: float = 3.0
    site_busy_status: int = 409
    # Graph GETs of the application show addPassword/removePassword this long after, and
    # a removePassword of a keyId younger than this answers as for a missing keyId.
    graph_read_lag_seconds: float = 10.0
    # Matching requests take effect, then the reply is the status (the reply is lost).
    apply_then_fail: list[Injection] = field(default_factory=list)
    # Sign-in logs: a sign-in is listed this long after it happens; the operator may read
    # them (AuditLog.Read.All) unless this is false.
    signin_log_delay_seconds: float = 300.0
    operator_can_read_signins: bool = True
    # Each record arrives up to this much later again (so out of order), and with
    # signin_log_duplicates every other record arrives twice.
    signin_log_jitter_seconds: float = 120.0
    signin_log_duplicates: bool = True
    # Sign-in reads per caller per 10 s before 429 + Retry-After (None: unthrottled).
    signin_reads_per_10s: int | None = 5
    # Every Nth sign-in read answers 403 Authentication_RequestFromNonPremiumTenantOrB2CTenant
    # (None: never), as reported intermittently for tenants without P1/P2.
    signin_nonpremium_403_every: int | None = None
    # The app also redeems user sign-ins (authorization code, on-behalf-of) with its
    # secret: logged as user sign-ins without a service-principal keyId.
    app_user_flow_signins: bool = True
    # The site's workers (docs/azure-behaviour.md, "The running process").
    process_model: str = "start_only"
    instances: int = 2
    instance_recycle_stagger_seconds: float = 5.0
    config_change_delay_seconds: float = 5.0
    # Each worker caches its Graph token for lifetime +- jitter (0: no cache).
    app_token_lifetime_seconds: float = 4500.0
    app_token_lifetime_jitter_seconds: float = 900.0
    # How many password credentials addPassword allows (None: no cap; 2 models the apps
    # that allow personal Microsoft accounts). The lower of this and
    # max_password_credentials applies.
    password_credential_limit: int | None = None
    # A delta round may carry only the properties that changed (with the id).
    graph_delta_partial: bool = True
    # An expired or unknown delta token: 400 syncStateNotFound, or 410 Gone.
    graph_delta_expired_status: int = 400

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def copy(self) -> Faults:
        return copy.deepcopy(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Faults:
        f = cls()
        f.apply(data)
        return f

    def apply(self, data: object) -> None:
        """Merge ``data`` into these faults; ``inject`` entries are appended.

        Raises ValueError naming every bad key at once; nothing is applied then.
        """
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        problems: list[str] = []
        known = {f for f in self.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            problems.append("unknown fault keys: " + ", ".join(unknown))
        staged = self.copy() if data.keys() & known else None
        if staged is not None:
            for key in sorted(data.keys() & known):
                try:
                    _set(staged, key, data[key])
                except (TypeError, ValueError) as exc:
                    problems.append(f"{key}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        if staged is not None:
            for key in self.__dataclass_fields__:
                setattr(self, key, getattr(staged, key))

    def credential_cap(self) -> int | None:
        """The most password credentials addPassword allows (None: no cap)."""
        caps = [c for c in (self.max_password_credentials, self.password_credential_limit) if c]
        return min(caps) if caps else None

    def take_injection(self, service: str, method: str, path: str) -> Injection | None:
        """Consume one matching injection, if any, and return a copy of it."""
        taken, self.inject = _take(self.inject, service, method, path)
        return taken

    def take_apply_then_fail(self, service: str, method: str, path: str) -> Injection | None:
        """Consume one matching ``apply_then_fail`` entry, if any, and return a copy."""
        taken, self.apply_then_fail = _take(self.apply_then_fail, service, method, path)
        return taken

    def would_apply_then_fail(self, service: str, method: str, path: str) -> bool:
        return any(i.matches(service, method, path) for i in self.apply_then_fail)


def _take(
    entries: list[Injection], service: str, method: str, path: str
) -> tuple[Injection | None, list[Injection]]:
    for inj in entries:
        if inj.matches(service, method, path):
            inj.count -= 1
            return Injection(**asdict(inj)), [i for i in entries if i.count > 0]
    return None, entries


def _number(value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"must be >= {minimum}")
    return float(value)


def _integer(value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"must be >= {minimum}")
    return value


def _choice(value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"expected one of {list(choices)}, got {value!r}")
    return value


_SECONDS = (
    "cold_start_seconds",
    "propagation_delay_seconds",
    "app_sync_interval_seconds",
    "refresh_delay_seconds",
    "site_busy_seconds",
    "graph_read_lag_seconds",
    "signin_log_delay_seconds",
    "signin_log_jitter_seconds",
    "instance_recycle_stagger_seconds",
    "config_change_delay_seconds",
    "app_token_lifetime_seconds",
    "app_token_lifetime_jitter_seconds",
)
_FLAGS = (
    "sticky_cache",
    "never_healthy",
    "operator_can_read_signins",
    "graph_delta_duplicates",
    "signin_log_duplicates",
    "app_user_flow_signins",
    "graph_delta_partial",
)


def _set(f: Faults, key: str, value: object) -> None:
    if key in _FLAGS:
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        setattr(f, key, value)
    elif key in _SECONDS:
        setattr(f, key, _number(value))
    elif key == "refetch_interval_seconds":
        f.refetch_interval_seconds = _number(value, minimum=1.0)
    elif key == "reload_model":
        f.reload_model = _choice(value, RELOAD_MODELS)
    elif key == "active_version":
        f.active_version = _choice(value, ACTIVE_VERSION)
    elif key == "site_busy_status":
        status = _integer(value, minimum=0)
        if status not in (409, 429):
            raise ValueError("expected 409 or 429")
        f.site_busy_status = status
    elif key == "max_password_lifetime_days":
        f.max_password_lifetime_days = None if value is None else _number(value)
    elif key == "max_password_credentials":
        f.max_password_credentials = None if value is None else int(_number(value, minimum=1))
    elif key == "token_lifetime_seconds":
        f.token_lifetime_seconds = int(_number(value, minimum=1))
    elif key == "arm_page_size":
        f.arm_page_size = None if value is None else _integer(value, minimum=1)
    elif key == "extra_key_vault_references":
        f.extra_key_vault_references = _integer(value, minimum=0)
    elif key in ("graph_page_latency_seconds", "graph_delta_lag_seconds"):
        setattr(f, key, _number(value))
    elif key == "graph_page_size_cap":
        f.graph_page_size_cap = None if value is None else _integer(value, minimum=1)
    elif key == "process_model":
        f.process_model = _choice(value, PROCESS_MODELS)
    elif key == "instances":
        f.instances = _integer(value, minimum=1)
        if f.instances > 20:
            raise ValueError("must be <= 20")
    elif key in ("signin_reads_per_10s", "signin_nonpremium_403_every"):
        setattr(f, key, None if value is None else _integer(value, minimum=1))
    elif key == "password_credential_limit":
        f.password_credential_limit = None if value is None else _integer(value, minimum=1)
    elif key == "graph_delta_expired_status":
        status = _integer(value, minimum=0)
        if status not in (400, 410):
            raise ValueError("expected 400 or 410")
        f.graph_delta_expired_status = status
    elif key == "latency_seconds":
        if not isinstance(value, dict):
            raise TypeError("expected an object {service: seconds}")
        bad = sorted(set(value) - set(SERVICES))
        if bad:
            raise ValueError(f"unknown services {bad}; known: {list(SERVICES)}")
        f.latency_seconds = {**f.latency_seconds, **{k: _number(v) for k, v in value.items()}}
    elif key == "inject":
        if not isinstance(value, list):
            raise TypeError("expected a list of injections")
        f.inject = [*f.inject, *(_injection(item) for item in value)]
    elif key == "apply_then_fail":
        if not isinstance(value, list):
            raise TypeError("expected a list of {service, method, path_contains, status, count}")
        f.apply_then_fail = [*f.apply_then_fail, *(_injection(item) for item in value)]


def _injection(item: object) -> Injection:
    if not isinstance(item, dict):
        raise TypeError("each injection must be an object")
    allowed = set(Injection.__dataclass_fields__)
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ValueError(f"unknown injection keys {unknown}; known: {sorted(allowed)}")
    service = item.get("service")
    if service not in SERVICES:
        raise ValueError(f"service must be one of {list(SERVICES)}, got {service!r}")
    status = item.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise ValueError("status must be an integer HTTP error status (400-599)")
    count = item.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be a positive integer")
    retry_after = item.get("retry_after")
    if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
        raise ValueError("retry_after must be a non-negative integer (seconds)")
    for key in ("code", "method", "path_contains"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise TypeError(f"{key} must be a string")
    return Injection(
        service=service,
        status=status,
        count=count,
        retry_after=retry_after,
        code=item.get("code"),
        method=item.get("method"),
        path_contains=item.get("path_contains"),
    )
