"""The web server's TLS and basic auth: from ``[web]`` or a Prometheus web config file.

``secretwarden run --web.config.file FILE`` reads the YAML format every Prometheus
exporter built on the exporter-toolkit reads (node_exporter, blackbox_exporter...):
``tls_server_config``, ``http_server_config``, ``basic_auth_users`` (bcrypt hashes, as
``htpasswd -nB`` writes them) and ``rate_limit``; see docs/configuration.md for what
maps to what. When the flag is given, the file alone decides TLS, basic auth, headers
and the rate limit; ``[web]``'s ``tls_*`` and ``basic_auth_users`` are then ignored
(with a warning). ``web.listen_address`` (or ``--web.listen-address``) still says where
to listen. Paths in the file are relative to the file, as in the exporter-toolkit.
The YAML is read as Go's strict YAML reads it (daemon/goyaml.py: duplicate keys refused,
unquoted numbers kept as text where a string is wanted). What differs from the
exporter-toolkit, on purpose, is listed in docs/security.md with its reason.

Both sources become one :class:`WebSettings`; :func:`check_web_settings` finds what
would stop the server (unreadable files, a key others may read, a key that is not a
key) before anything starts, for ``run`` and ``run --config.check`` alike.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic import model_validator as _model_validator

from daemon import goyaml
from daemon.config import Config, ConfigError, WebSection, format_errors, secret_file_problem
from daemon.goyaml import GoScalar
from daemon.webauth import checked_users

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Go's names (crypto/tls.CipherSuites(), what the exporter-toolkit accepts) -> OpenSSL's.
CIPHER_SUITES = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
# TLS 1.3's suites: Go accepts their names in cipher_suites and ignores them there ("TLS
# 1.3 ciphersuites are not configurable", crypto/tls); so do we. TLS 1.3 connections use
# OpenSSL's three standard suites, the same three Go uses.
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# Go's curve names -> OpenSSL's group names (ssl.SSLContext.set_ecdh_curve).
CURVES = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}
# The headers the exporter-toolkit lets a file set, and their allowed values (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
ClientAuth = Literal["none", "optional", "required"]


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path
    key_file: Path
    client_auth: ClientAuth = "none"
    client_ca_file: Path | None = None
    client_ca_pem: str | None = None
    allowed_sans: tuple[str, ...] = ()
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    ciphers: str | None = None  # OpenSSL cipher list for TLS <= 1.2
    prefer_server_ciphers: bool = True
    curve: str | None = None  # the one key-exchange group allowed (OpenSSL name); None: defaults

    def without_files(self) -> tuple[object, ...]:
        """Everything but the certificate and key: what a reload cannot change."""
        return (
            self.client_auth,
            self.client_ca_file,
            self.client_ca_pem,
            self.allowed_sans,
            self.min_version,
            self.max_version,
            self.ciphers,
            self.prefer_server_ciphers,
            self.curve,
        )


@dataclass(frozen=True)
class RateLimit:
    interval_seconds: float  # one request per interval...
    burst: int  # ...after a burst of this many


@dataclass(frozen=True)
class WebSettings:
    """TLS, basic auth, response headers and the rate limit of the web server."""

    source: str = "[web]"
    tls: TLSSettings | None = None
    users: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None


def from_section(web: WebSection, source: str = "[web]") -> WebSettings:
    tls = None
    if web.tls_cert_file is not None and web.tls_key_file is not None:
        tls = TLSSettings(cert_file=web.tls_cert_file, key_file=web.tls_key_file)
    return WebSettings(source=source, tls=tls, users=dict(web.basic_auth_users))


# -- the exporter-toolkit file -------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go/Prometheus duration (``1s``, ``1m30s``, ``250ms``, ``0``) in seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (want e.g. 1s, 500ms, 1m30s)")
    return sum(float(n) * _UNIT[u] for n, u in parts)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @_model_validator(mode="before")
    @classmethod
    def _go_zero_values(cls, data: Any) -> Any:
        """A key given no value (``key:``) is Go's zero value: false for a bool, the
        default (unset) for anything else."""
        if not isinstance(data, dict):
            return data
        out = {}
        for key, value in data.items():
            if value is None:
                field = cls.model_fields.get(key)
                if field is None or field.annotation is not bool:
                    continue
                value = False
            out[key] = value
        return out


def _text_values(value: Any) -> Any:
    """A name -> string mapping as Go decodes it into map[string]string: an unquoted
    ``1`` is ``"1"``, an empty value ``""``."""
    if not isinstance(value, dict):
        return value
    return {
        str(k): "" if v is None else (str(v) if isinstance(v, str) else v) for k, v in value.items()
    }


class _TLSServerConfig(_Model):
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: Literal[
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    client_ca_file: Path | None = None
    # None (absent): no SAN check; [] is refused (_consistent)
    client_allowed_sans: list[str] | None = None
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[str] = Field(default_factory=list)

    @_model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        """``cert_file: ""`` is unset, as in Go (then "missing cert_file"), not the
        directory the file is in."""
        if not isinstance(data, dict):
            return data
        unset = {"cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file"}
        unset.add("client_auth_type")  # "" is NoClientCert in Go
        return {k: v for k, v in data.items() if not (k in unset and v == "")}

    @field_validator("cipher_suites")
    @classmethod
    def _ciphers(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CIPHER_SUITES and c not in TLS13_SUITES]
        if unknown:
            raise ValueError(
                f"unknown cipher suite(s) {', '.join(unknown)} "
                f"(known: Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)"
            )
        return value

    @field_validator("curve_preferences")
    @classmethod
    def _curves(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CURVES]
        if unknown:
            raise ValueError(f"unknown curve(s) {', '.join(unknown)} (known: {', '.join(CURVES)})")
        if len(set(value)) > 1:
            # Python's ssl module sets one key-exchange group (set_ecdh_curve), not a
            # list: honouring only the first would refuse clients the file allows.
            raise ValueError(
                "more than one curve is not supported here (Python's ssl module can "
                "restrict key exchange to one curve only): list one curve, or remove "
                "curve_preferences for OpenSSL's defaults (X25519, P-256, X448, P-521, P-384)"
            )
        return value

    @_model_validator(mode="after")
    def _consistent(self) -> _TLSServerConfig:
        problems = []
        if self.cert is not None or self.key is not None:
            problems.append(
                "inline cert/key are not supported (the key would need a file to load "
                "from): use cert_file and key_file"
            )
        else:
            problems += [f"missing {n}" for n in ("cert_file", "key_file") if not getattr(self, n)]
        if self.client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
            problems.append(
                f"client_auth_type {self.client_auth_type} accepts certificates nobody "
                "verified; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with "
                "client_ca_file"
            )
        verifying = ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
        has_ca = self.client_ca_file is not None or self.client_ca is not None
        if self.client_auth_type in verifying and not has_ca:
            problems.append(f"client_auth_type {self.client_auth_type} needs client_ca_file")
        if has_ca and self.client_auth_type == "NoClientCert":
            problems.append("client_ca_file is set but client_auth_type is NoClientCert")
        if self.client_allowed_sans == []:
            # The exporter-toolkit starts and then lets no certificate in; a list that
            # locks every client out is never what was meant, so say it before start.
            problems.append(
                "client_allowed_sans is empty: it would let no client certificate in; "
                "list the allowed SANs, or remove the key to allow every certificate "
                "client_ca_file trusts"
            )
        elif (
            self.client_allowed_sans is not None
            and self.client_auth_type != "RequireAndVerifyClientCert"
        ):
            problems.append("client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            problems.append(f"min_version {self.min_version} is above max_version")
        only_tls13 = self.cipher_suites and all(c in TLS13_SUITES for c in self.cipher_suites)
        if only_tls13 and self.max_version != "TLS13":
            # Go: a list of TLS 1.3 suites only leaves TLS <= 1.2 no suite at all
            problems.append(
                "cipher_suites lists only TLS 1.3 suites (not configurable, as in Go), so "
                "no TLS 1.2 suite is left and max_version allows no TLS 1.3: no client "
                "could connect"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def settings(self, base: Path) -> TLSSettings:
        def rel(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else base / p)

        auth: ClientAuth = {
            "VerifyClientCertIfGiven": "optional",
            "RequireAndVerifyClientCert": "required",
        }.get(self.client_auth_type, "none")  # type: ignore[assignment]
        cert, key = rel(self.cert_file), rel(self.key_file)
        assert cert is not None  # checked by _consistent
        assert key is not None
        tls12 = [CIPHER_SUITES[c] for c in self.cipher_suites if c in CIPHER_SUITES]
        min_version = TLS_VERSIONS[self.min_version]
        if self.cipher_suites and not tls12:
            min_version = ssl.TLSVersion.TLSv1_3  # as in Go: no suite left below TLS 1.3
        return TLSSettings(
            cert_file=cert,
            key_file=key,
            client_auth=auth,
            client_ca_file=rel(self.client_ca_file),
            client_ca_pem=self.client_ca,
            allowed_sans=tuple(self.client_allowed_sans or ()),
            min_version=min_version,
            max_version=TLS_VERSIONS[self.max_version],
            ciphers=":".join(tls12) or None,
            prefer_server_ciphers=self.prefer_server_cipher_suites,
            curve=CURVES[self.curve_preferences[0]] if self.curve_preferences else None,
        )


class _HTTPServerConfig(_Model):
    http2: bool = True  # aiohttp speaks HTTP/1.1; Prometheus scrapes over it either way
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers", mode="before")
    @classmethod
    def _header_text(cls, value: Any) -> Any:
        return _text_values(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, v in value.items():
            if name not in HEADERS:
                raise ValueError(f"HTTP header {name!r} can not be configured")
            allowed = HEADERS[name]
            if allowed is not None and v not in allowed:
                raise ValueError(f"invalid value for {name}: {v!r} (expected one of {allowed})")
        return value


class _RateLimit(_Model):
    interval: float = 0.0  # seconds
    burst: int = Field(default=0, ge=0)  # 0 (the default, as in Go): every request is refused

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> float:
        if isinstance(value, GoScalar):
            if isinstance(value.typed, bool) or not isinstance(value.typed, int | float):
                raise ValueError(f"not a duration: {str(value)!r} (want e.g. 1s, 500ms, 1m30s)")
            # Go decodes an unquoted number into a time.Duration as nanoseconds
            return int(value.typed) / 1e9
        if not isinstance(value, str):
            raise ValueError(f"not a duration: {value!r} (want e.g. 1s, 500ms, 1m30s)")
        return parse_duration(value)


class _WebConfigFile(_Model):
    tls_server_config: _TLSServerConfig | None = None
    http_server_config: _HTTPServerConfig = _HTTPServerConfig()
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: _RateLimit | None = None

    @field_validator("basic_auth_users", mode="before")
    @classmethod
    def _hash_text(cls, value: Any) -> Any:
        return _text_values(value)

    @field_validator("basic_auth_users")
    @classmethod
    def _hashes(cls, value: dict[str, str]) -> dict[str, str]:
        return checked_users(value)


def load_web_config_file(path: Path) -> WebSettings:
    """Read a Prometheus web config file; ConfigError lists every problem with its key."""
    source = str(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        cause = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(source, [f"web config file: cannot read {path}: {cause}"]) from None
    try:
        data: Any = goyaml.load(text)
    except goyaml.DuplicateKeyError as exc:
        raise ConfigError(source, [str(exc)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(source, [f"not valid YAML{where}"]) from None
    if data is None:
        data = {}  # an empty file: no TLS, no auth (as the exporter-toolkit reads it)
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must be a YAML mapping"])
    try:
        parsed = _WebConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, format_errors(exc)) from None
    base = path.resolve().parent
    rate = None
    if parsed.rate_limit is not None and parsed.rate_limit.interval > 0:
        rate = RateLimit(parsed.rate_limit.interval, parsed.rate_limit.burst)
    return WebSettings(
        source=source,
        tls=parsed.tls_server_config.settings(base) if parsed.tls_server_config else None,
        users=dict(parsed.basic_auth_users),
        headers=dict(parsed.http_server_config.headers),
        rate_limit=rate,
    )


# -- TLS ------------------------------------------------------------------------------


def ssl_context(tls: TLSSettings) -> ssl.SSLContext:
    """The server context; ConfigError names the file and the cause when it cannot be
    built (unreadable, not PEM, a key that does not match the certificate)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = tls.min_version
    ctx.maximum_version = tls.max_version
    if tls.ciphers:
        ctx.set_ciphers(tls.ciphers)
    # on by default in Python's server contexts: false must clear it, not leave it on
    if tls.prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.curve is not None:
        ctx.set_ecdh_curve(tls.curve)  # OpenSSL 3: the only group, TLS 1.2 and 1.3 alike
    load_cert_chain(ctx, tls)
    if tls.client_auth != "none":
        try:
            if tls.client_ca_file is not None:
                ctx.load_verify_locations(cafile=str(tls.client_ca_file))
            if tls.client_ca_pem is not None:
                ctx.load_verify_locations(cadata=tls.client_ca_pem)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                str(tls.client_ca_file or "client_ca"),
                [f"client CA: cannot load {tls.client_ca_file or 'client_ca'}: {_cause(exc)}"],
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.client_auth == "required" else ssl.CERT_OPTIONAL
    return ctx


def load_cert_chain(ctx: ssl.SSLContext, tls: TLSSettings) -> None:
    """(Re)load the certificate and key into ``ctx``: new connections get them."""
    try:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            str(tls.key_file),
            [f"TLS: cannot load {tls.cert_file} with {tls.key_file}: {_cause(exc)}"],
        ) from None


def _cause(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        # e.g. "[SSL] PEM lib (_ssl.c:3900)": keep OpenSSL's reason, drop the C location
        reason = exc.reason or str(exc)
        return f"not a usable PEM certificate/key ({reason})"
    return exc.strerror or str(exc)


def check_web_settings(settings: WebSettings, key_prefix: str = "web") -> list[str]:
    """What would stop the server from starting with ``settings``, one line each."""
    tls = settings.tls
    if tls is None:
        return []
    problems = []
    if (key := secret_file_problem(tls.key_file, f"{key_prefix}: TLS key")) is not None:
        problems.append(key)
    for name, path in (("certificate", tls.cert_file), ("client CA", tls.client_ca_file)):
        if path is None:
            continue
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(f"{key_prefix}: TLS {name}: cannot read {path}: {exc.strerror}")
    if not problems:
        try:
            ssl_context(tls)
        except ConfigError as exc:
            problems += [f"{key_prefix}: {p}" for p in exc.problems]
    return problems


def ignored_section_keys(config: Config) -> list[str]:
    """``[web]`` keys a web config file overrides (their values are not used)."""
    web = config.web
    keys = []
    if web.tls_cert_file is not None:
        keys += ["web.tls_cert_file", "web.tls_key_file"]
    if web.basic_auth_users:
        keys.append("web.basic_auth_users")
    return keys


def web_settings(config: Config, web_config_file: Path | None) -> WebSettings:
    """The settings ``run`` uses: the file's when given, else ``[web]``'s; checked."""
    if web_config_file is not None:
        settings = load_web_config_file(web_config_file)
        prefix = "web config file"
    else:
        settings = from_section(config.web)
        prefix = "web"
    problems = check_web_settings(settings, prefix)
    if problems:
        raise ConfigError(settings.source, problems)
    return settings
