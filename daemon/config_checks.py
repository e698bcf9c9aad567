"""Checks of single config values that can only be wrong, and the words that explain them.

Kept apart from daemon/config.py (the sections and their defaults): durations in
Prometheus' notation, GUID fields, URL shapes per field (a Key Vault URL that is a
secret identifier, a portal URL, a vault host of another cloud), and "did you mean" for
an unknown key. Each raises ValueError with the message the operator reads, or returns
the problem as text.
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel

# -- durations --------------------------------------------------------------------

# Prometheus' own notation (model.ParseDuration): units largest first, each at most once.
_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
SECOND, HOUR, DAY = 1.0, 3600.0, 86400.0
_UNIT_NAMES = {SECOND: "seconds", HOUR: "hours", DAY: "days"}


def duration_seconds(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w``, ``1h30m``, ``500ms``: seconds. Raises ValueError."""
    match = _DURATION.match(text.strip())
    if match is None or not any(match.groups()):
        raise ValueError(
            f"expected a number or a duration like 90s, 5m, 12h, 30d, 2w; got {text!r}"
        )
    return float(sum(int(n) * unit for n, unit in zip(match.groups(), _UNITS, strict=True) if n))


def in_unit(unit: float) -> Callable[[Any], Any]:
    """A pydantic before-validator: a duration string becomes a number of ``unit``
    (seconds, hours, days); a bare number is left as it is (it keeps its meaning)."""

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return duration_seconds(value) / unit
            except ValueError as exc:
                raise ValueError(f"{exc} (a bare number is {_UNIT_NAMES[unit]})") from None
        return value

    return convert


# -- GUIDs ------------------------------------------------------------------------


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def guid(what: str) -> Callable[[str | None], str | None]:
    """A validator for a field that Azure names by GUID only; ``what`` says where the
    GUID is found."""

    def check(value: str | None) -> str | None:
        if value is not None and not _is_guid(value):
            raise ValueError(f"must be a GUID ({what}), got {value!r}")
        return value

    return check


_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}$", re.IGNORECASE)


def tenant(value: str | None) -> str | None:
    """A tenant is its GUID or one of its verified domains (contoso.onmicrosoft.com)."""
    if value is not None and not _is_guid(value) and not _DOMAIN.match(value):
        raise ValueError(
            "must be the Directory (tenant) ID, a GUID, or a domain of the tenant like "
            f"contoso.onmicrosoft.com, got {value!r}"
        )
    return value


# -- URLs -------------------------------------------------------------------------

PORTAL_HOSTS = ("portal.azure.com", "portal.azure.us", "portal.azure.cn", "entra.microsoft.com")
VAULT_SUFFIX = {
    "public": ".vault.azure.net",
    "usgovernment": ".vault.usgovcloudapi.net",
    "china": ".vault.azure.cn",
}


def not_a_portal_url(value: str | None) -> str | None:
    if value is not None and (urlsplit(value).hostname or "").lower() in PORTAL_HOSTS:
        raise ValueError(
            f"is a portal page, not the service's endpoint: {value!r}; copy the URL the "
            "resource's Overview lists"
        )
    return value


def key_vault_url(value: str) -> str:
    """The vault's URI, ``https://<vault>.vault.azure.net``: no path. The portal's
    "Secret Identifier" (``.../secrets/<name>/<version>``) is the usual mistake."""
    not_a_portal_url(value)
    parts = urlsplit(value)
    path = parts.path.rstrip("/")
    if path:
        name = re.match(r"^/secrets/([^/]+)", path, re.IGNORECASE)
        hint = (
            f"; use https://{parts.netloc} and secret_name = {name.group(1)!r}"
            if name
            else f"; use https://{parts.netloc}"
        )
        raise ValueError(
            f"must be the vault's URI with no path (the Vault URI on the vault's Overview), "
            f"got {value!r}" + hint
        )
    return value


def vault_host_problem(url: str, cloud: str) -> str | None:
    """A vault URL whose host is not a vault of the configured cloud (None: fine, or a
    custom cloud, which may use any host)."""
    suffix = VAULT_SUFFIX.get(cloud)
    host = (urlsplit(url).hostname or "").lower()
    if suffix is None or host.endswith(suffix):
        return None
    other = next((n for n, s in VAULT_SUFFIX.items() if host.endswith(s)), None)
    vault = host.split(".")[0]
    if other is not None:
        why = f"is a vault of cloud {other!r}, and cloud.name is {cloud!r}"
    elif host.endswith((".vault.azure.com", ".vault.azure.org")):
        why = f"is not a Key Vault host (vaults are https://{vault}{suffix})"
    else:
        why = f"is not a Key Vault host of cloud {cloud!r} (https://<vault>{suffix})"
    return f"host {host!r} {why}"


# -- unknown keys and misshapen sections -----------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = get_origin(annotation)
    if origin is not None or isinstance(annotation, type(int | None)) or origin is Union:
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def known_keys(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys the section at ``loc`` (a pydantic error location, list indexes
    included) accepts; [] when ``loc`` leads nowhere known."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return []
        model = _model_of(model.model_fields[part].annotation)
    return [] if model is None else list(model.model_fields)


def unknown_key_message(root: type[BaseModel], loc: Sequence[int | str]) -> str:
    """``unknown key``, with the nearest known key of that section when one is close."""
    key = loc[-1] if loc else ""
    if not isinstance(key, str):
        return "unknown key"
    near = difflib.get_close_matches(key, known_keys(root, loc[:-1]), n=1, cutoff=0.75)
    return f"unknown key; did you mean {near[0]!r}?" if near else "unknown key"


TARGETS_AS_TABLE = (
    "write each target as [[targets]] (double brackets: one table per target, a list), "
    "not [targets]"
)
