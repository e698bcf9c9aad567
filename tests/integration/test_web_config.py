"""``--web.config.file``: the Prometheus exporter-toolkit web config, parsed and served
for real (TLS, client certificates and their SANs, bcrypt users, headers, the rate
limit), and a new certificate taken on reload without a restart."""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry

from daemon.config import ConfigError
from daemon.web import WebServer
from daemon.webconfig import (
    TLSSettings,
    WebSettings,
    check_web_settings,
    load_web_config_file,
    parse_duration,
)
from sandbox.certs import CA_KEY, ensure_tls

PASSWORD = "right horse"


def bcrypt_hash(password: str = PASSWORD) -> str:
    return "$2y$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()[4:]


def client_cert(ca_dir: Path, name: str, san: str) -> tuple[Path, Path]:
    """A client certificate (clientAuth) for ``san``, signed by the sandbox CA."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "sandbox-ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = ca_dir / f"{name}.pem", ca_dir / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_the_exporter_toolkit_sample_file_reads_as_it_is(tmp_path: Path) -> None:
    # docs/web-config.yml of prometheus/exporter-toolkit, with a file beside it
    (tmp_path / "web.yml").write_text(
        """
# TLS and basic authentication configuration example.
tls_server_config:
  cert_file: server.crt
  key_file: server.key
basic_auth_users:
  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze
  bob: $2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m
rate_limit:
  interval: "1s"
  burst: 20
"""
    )
    settings = load_web_config_file(tmp_path / "web.yml")
    assert settings.tls is not None
    assert settings.tls.cert_file == tmp_path / "server.crt"  # relative to the file
    assert settings.tls.key_file == tmp_path / "server.key"
    assert settings.tls.client_auth == "none"
    assert settings.tls.min_version is ssl.TLSVersion.TLSv1_2
    assert set(settings.users) == {"alice", "bob"}
    assert settings.rate_limit is not None
    assert (settings.rate_limit.interval_seconds, settings.rate_limit.burst) == (1.0, 20)
    # the files do not exist: what `run` and `run --config.check` would say
    problems = check_web_settings(settings, "web config file")
    assert problems == [
        f"web config file: TLS key: cannot read {tmp_path}/server.key: No such file or directory",
        f"web config file: TLS certificate: cannot read {tmp_path}/server.crt: "
        "No such file or directory",
    ]


def test_an_empty_file_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("# nothing\n")
    assert load_web_config_file(tmp_path / "web.yml") == WebSettings(
        source=str(tmp_path / "web.yml")
    )


def test_every_problem_is_reported_at_once_with_its_key(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text(
        """
tls_server_config:
  cert_file: a.crt
  client_auth_type: RequireAnyClientCert
http_server_config:
  headers:
    X-Frame-Options: allow
basic_auth_users:
  alice: hunter2
rate_limit:
  interval: fast
bogus: 1
"""
    )
    with pytest.raises(ConfigError) as err:
        load_web_config_file(tmp_path / "web.yml")
    text = "\n".join(err.value.problems)
    assert "missing key_file" in text
    assert "RequireAnyClientCert accepts certificates nobody verified" in text
    assert "http_server_config.headers: invalid value for X-Frame-Options" in text
    assert "basic_auth_users: user 'alice': expected a bcrypt hash" in text
    assert "rate_limit.interval: not a duration: 'fast'" in text
    assert "bogus: unknown key" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tls_server_config: [1, 2]\n", "tls_server_config: Input should be"),
        (
            "tls_server_config:\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "tls_server_config.cipher_suites: unknown cipher suite(s) TLS_RSA_WITH_RC4_128_SHA",
        ),
        ("- a\n", "the file must be a YAML mapping"),
        ("a: [\n", "not valid YAML at line"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "needs client_ca_file",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
            "client_allowed_sans needs client_auth_type RequireAndVerifyClientCert",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n"
            "  max_version: TLS12\n",
            "min_version TLS13 is above max_version",
        ),
        ("tls_server_config:\n  cert: PEM\n  key: PEM\n", "inline cert/key are not supported"),
        ("basic_auth_users:\n  a: $2y$10$short\n", "user 'a': not a valid bcrypt hash"),
        (
            "basic_auth_users:\n"
            "  a: $2y$99$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n",
            "user 'a': not a valid bcrypt hash",
        ),
    ],
)
def test_bad_files(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "web.yml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_web_config_file(tmp_path / "web.yml")
    assert problem in "\n".join(err.value.problems)


def test_durations() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration("0") == 0.0
    for bad in ("", "1", "s", "1x", "1s2"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


async def test_client_certificates_sans_users_headers_and_rate_limit_served(
    tmp_path: Path,
) -> None:
    ca_dir = tmp_path / "ca"
    tls = ensure_tls(ca_dir, [])
    good_cert = client_cert(ca_dir, "prometheus", "prometheus.example")
    other_cert = client_cert(ca_dir, "intruder", "intruder.example")
    (tmp_path / "web.yml").write_text(
        f"""
tls_server_config:
  cert_file: ca/sandbox-server.pem
  key_file: ca/sandbox-server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca/sandbox-ca.pem
  client_allowed_sans: [prometheus.example]
  min_version: TLS12
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]
http_server_config:
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
basic_auth_users:
  prom: {bcrypt_hash()}
rate_limit:
  interval: 100ms
  burst: 3
"""
    )
    settings = load_web_config_file(tmp_path / "web.yml")
    assert check_web_settings(settings) == []
    server = WebServer(CollectorRegistry(), ready=lambda: True, settings=settings)
    port = await server.start("127.0.0.1", 0)
    url = f"https://127.0.0.1:{port}/metrics"

    def client(cert: tuple[Path, Path] | None) -> httpx.AsyncClient:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file))
        if cert is not None:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        return httpx.AsyncClient(verify=ctx)

    try:
        async with client(good_cert) as http:
            ok = await http.get(url, auth=("prom", PASSWORD))
            assert ok.status_code == 200
            assert ok.headers["X-Frame-Options"] == "deny"
            assert ok.headers["X-Content-Type-Options"] == "nosniff"
            assert (await http.get(url, auth=("prom", "wrong"))).status_code == 401
            # the bucket (3, one more per 100 ms) is spent by now: 429 before any auth
            codes = [(await http.get(url)).status_code for _ in range(6)]
            assert 429 in codes
            await asyncio.sleep(0.5)  # refilled
        async with client(other_cert) as http:  # a verified certificate, the wrong SAN
            assert (await http.get(url, auth=("prom", PASSWORD))).status_code == 403
        async with client(None) as http:  # no certificate: the handshake fails
            with pytest.raises(httpx.HTTPError):
                await http.get(url, auth=("prom", PASSWORD))
    finally:
        await server.stop()


async def test_a_new_certificate_is_served_after_apply_without_a_restart(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path / "ca", [])
    server = WebServer(
        CollectorRegistry(),
        ready=lambda: True,
        settings=WebSettings(tls=TLSSettings(first.cert_file, first.key_file)),
    )
    port = await server.start("127.0.0.1", 0)

    def served_serial() -> int:
        ctx = ssl.create_default_context(cafile=str(first.ca_file))
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock,
        ):
            der = tls_sock.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def file_serial(path: Path) -> int:
        return x509.load_pem_x509_certificate(path.read_bytes()).serial_number

    try:
        before = await asyncio.to_thread(served_serial)
        assert before == file_serial(first.cert_file)
        second = ensure_tls(tmp_path / "ca", ["renewed.example"])  # same paths, a new cert
        assert file_serial(second.cert_file) != before
        later = server.apply(WebSettings(tls=TLSSettings(second.cert_file, second.key_file)))
        assert later == []
        assert await asyncio.to_thread(served_serial) == file_serial(second.cert_file)
        # what cannot change without a restart is said, and the listener keeps its TLS
        later = server.apply(
            WebSettings(
                tls=TLSSettings(
                    second.cert_file, second.key_file, min_version=ssl.TLSVersion.TLSv1_3
                )
            )
        )
        assert later == ["TLS settings other than cert_file/key_file"]
        assert server.settings.tls is not None
        assert server.settings.tls.min_version is ssl.TLSVersion.TLSv1_2
        assert server.apply(WebSettings()) == ["TLS on or off"]
    finally:
        await server.stop()


# -- issue 15: the exporter-toolkit's strictness and Go's YAML ------------------------


def load_text(tmp_path: Path, text: str) -> WebSettings:
    (tmp_path / "web.yml").write_text(text)
    return load_web_config_file(tmp_path / "web.yml")


def problems_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    return "\n".join(err.value.problems)


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        # a second, empty tls_server_config: main served plain HTTP with no auth
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
            "basic_auth_users:\n  prom: $2y$04$" + "a" * 53 + "\ntls_server_config:\n",
            "tls_server_config",
            6,
            1,
        ),
        # a second basic_auth_users: {} turned auth off
        (
            "basic_auth_users:\n  prom: $2y$04$" + "a" * 53 + "\nbasic_auth_users: {}\n",
            "basic_auth_users",
            3,
            1,
        ),
        # a repeated client_auth_type: NoClientCert dropped client certificates
        (
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
            "  client_auth_type: NoClientCert\n",
            "client_auth_type",
            6,
            4,
        ),
        ("basic_auth_users:\n  prom: x\n  prom: y\n", "prom", 3, 2),
        (
            "http_server_config: {headers: {X-Frame-Options: deny, X-Frame-Options: sameorigin}}\n",
            "X-Frame-Options",
            1,
            1,
        ),
    ],
)
def test_a_duplicate_key_is_refused_with_the_key_and_its_line(
    tmp_path: Path, text: str, key: str, line: int, first: int
) -> None:
    assert problems_of(tmp_path, text) == (
        f"duplicate key {key!r} at line {line} (first at line {first}): refused, as the "
        "exporter-toolkit refuses it (the last one would win silently)"
    )


def test_an_empty_client_allowed_sans_is_refused_and_a_missing_one_checks_nothing(
    tmp_path: Path,
) -> None:
    base = (
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
    )
    # main let in every certificate the CA trusts; the exporter-toolkit lets in none
    assert "client_allowed_sans is empty: it would let no client certificate in" in (
        problems_of(tmp_path, base + "  client_allowed_sans: []\n")
    )
    for absent in ("", "  client_allowed_sans:\n"):  # absent, or no value (Go's nil)
        tls = load_text(tmp_path, base + absent).tls
        assert tls is not None
        assert tls.allowed_sans == ()


def test_unquoted_yaml_numbers_are_read_as_go_reads_them(tmp_path: Path) -> None:
    # web/testdata/web_config_headers.good.yml and web_config_rate_limiter_nonblocking.yaml
    settings = load_text(
        tmp_path,
        "http_server_config:\n  headers:\n    X-XSS-Protection: 1\n"
        "    Strict-Transport-Security: max-age=31536000\nrate_limit:\n  interval: 0\n  burst: 0\n",
    )
    assert settings.headers == {
        "X-XSS-Protection": "1",
        "Strict-Transport-Security": "max-age=31536000",
    }
    assert settings.rate_limit is None  # interval 0: no limit
    # a bare number is a time.Duration in nanoseconds for Go, so it is here
    limited = load_text(tmp_path, "rate_limit:\n  interval: 5\n  burst: 3\n").rate_limit
    assert limited is not None
    assert limited.interval_seconds == 5e-9
    assert "not a duration" in problems_of(tmp_path, "rate_limit:\n  interval: true\n")
    assert "not a duration" in problems_of(tmp_path, 'rate_limit:\n  interval: "5"\n')


def test_tls13_suite_names_are_accepted_and_leave_tls13_as_it_is(tmp_path: Path) -> None:
    head = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
    mixed = load_text(
        tmp_path,
        head + "  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,"
        " TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256]\n",
    ).tls
    assert mixed is not None
    assert mixed.ciphers == "ECDHE-ECDSA-AES128-GCM-SHA256"  # TLS 1.2's list
    assert (mixed.min_version, mixed.max_version) == (
        ssl.TLSVersion.TLSv1_2,
        ssl.TLSVersion.TLSv1_3,
    )
    # only TLS 1.3 suites: as in Go, no suite is left for TLS 1.2
    only13 = load_text(tmp_path, head + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n").tls
    assert only13 is not None
    assert only13.min_version is ssl.TLSVersion.TLSv1_3
    assert "no client could connect" in problems_of(
        tmp_path, head + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n  max_version: TLS12\n"
    )


def test_several_curves_are_refused_and_one_is_kept(tmp_path: Path) -> None:
    head = "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n"
    one = load_text(tmp_path, head + "  curve_preferences: [CurveP521]\n").tls
    assert one is not None
    assert one.curve == "secp521r1"
    assert "more than one curve is not supported here" in problems_of(
        tmp_path, head + "  curve_preferences: [CurveP256, X25519]\n"
    )


def test_empty_strings_are_unset_as_in_go(tmp_path: Path) -> None:
    # web/testdata/web_config_noAuth_certPath_empty.bad.yml: main read "" as the
    # file's directory and said "Is a directory"
    text = problems_of(tmp_path, 'tls_server_config:\n  cert_file: ""\n  key_file: "server.key"\n')
    assert text == "tls_server_config: missing cert_file"
    text = problems_of(tmp_path, 'tls_server_config:\n  cert: ""\n  key_file: "server.key"\n')
    assert text == "tls_server_config: missing cert_file"


def pem_client_cert(ca_dir: Path, name: str, san: x509.GeneralName) -> tuple[Path, Path]:
    """A client certificate with one SAN of any kind, signed by the sandbox CA."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "sandbox-ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = ca_dir / f"{name}.pem", ca_dir / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def get_raw(
    port: int, ctx: ssl.SSLContext | None, path: str = "/metrics", auth: str | None = None
) -> tuple[int, dict[str, str], tuple[str, str, int] | None]:
    """(status, headers, negotiated cipher) of one GET, over TLS when ``ctx`` is given."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1" if ctx else None
    )
    sslobj = writer.get_extra_info("ssl_object")
    cipher = sslobj.cipher() if sslobj is not None else None
    extra = f"Authorization: {auth}\r\n" if auth else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.read()).split(b"\r\n\r\n", 1)[0].decode()
    writer.close()
    status_line, *lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, cipher


async def test_configured_headers_are_on_every_answer_401_403_404_429(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    tls = ensure_tls(ca_dir, [])
    other = client_cert(ca_dir, "intruder", "intruder.example")
    (tmp_path / "web.yml").write_text(
        f"""
tls_server_config:
  cert_file: ca/sandbox-server.pem
  key_file: ca/sandbox-server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca/sandbox-ca.pem
  client_allowed_sans: [prometheus.example]
http_server_config:
  headers:
    X-Frame-Options: deny
    X-XSS-Protection: 1
basic_auth_users:
  prom: {bcrypt_hash()}
rate_limit:
  interval: 1h
  burst: 2
"""
    )
    settings = load_web_config_file(tmp_path / "web.yml")
    good = client_cert(ca_dir, "prometheus", "prometheus.example")
    server = WebServer(CollectorRegistry(), ready=lambda: True, settings=settings)
    port = await server.start("127.0.0.1", 0)

    def ctx(cert: tuple[Path, Path]) -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=str(tls.ca_file))
        c.load_cert_chain(str(cert[0]), str(cert[1]))
        return c

    want = {"X-Frame-Options": "deny", "X-XSS-Protection": "1"}
    try:
        answers = [
            await get_raw(port, ctx(good)),  # 401: no credentials
            await get_raw(port, ctx(other)),  # 403: SAN not allowed
            await get_raw(port, ctx(good)),  # 429: the bucket of 2 is empty
        ]
    finally:
        await server.stop()
    assert [status for status, _, _ in answers] == [401, 403, 429]
    for _status, headers, _ in answers:
        assert {k: headers.get(k) for k in want} == want
    # aiohttp's own answers (404) carry them too
    server = WebServer(CollectorRegistry(), ready=lambda: True, settings=WebSettings(headers=want))
    port = await server.start("127.0.0.1", 0)
    try:
        status, headers, _ = await get_raw(port, None, "/nowhere")
    finally:
        await server.stop()
    assert status == 404
    assert {k: headers.get(k) for k in want} == want


async def test_burst_0_refuses_every_request_as_the_exporter_toolkit_does(tmp_path: Path) -> None:
    # web/testdata/web_config_rate_limiter_one_second.yaml: main let one through a second
    settings = load_text(tmp_path, 'rate_limit:\n  interval: "1s"\n  burst: 0\n')
    server = WebServer(CollectorRegistry(), ready=lambda: True, settings=settings)
    port = await server.start("127.0.0.1", 0)
    try:
        codes = [(await get_raw(port, None))[0] for _ in range(3)]
    finally:
        await server.stop()
    assert codes == [429, 429, 429]


async def test_an_ipv6_san_written_short_matches(tmp_path: Path) -> None:
    import ipaddress

    ca_dir = tmp_path / "ca"
    tls = ensure_tls(ca_dir, [])
    cert = pem_client_cert(ca_dir, "v6", x509.IPAddress(ipaddress.ip_address("2001:db8::1")))
    other = pem_client_cert(ca_dir, "v6b", x509.IPAddress(ipaddress.ip_address("2001:db8::2")))
    (tmp_path / "web.yml").write_text(
        """
tls_server_config:
  cert_file: ca/sandbox-server.pem
  key_file: ca/sandbox-server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca/sandbox-ca.pem
  client_allowed_sans: ["2001:db8::1"]
"""
    )
    settings = load_web_config_file(tmp_path / "web.yml")
    server = WebServer(CollectorRegistry(), ready=lambda: True, settings=settings)
    port = await server.start("127.0.0.1", 0)

    def ctx(pair: tuple[Path, Path]) -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=str(tls.ca_file))
        c.load_cert_chain(str(pair[0]), str(pair[1]))
        return c

    try:
        # Python shows the SAN as 2001:DB8:0:0:0:0:0:1: main compared text and said 403
        assert (await get_raw(port, ctx(cert)))[0] == 200
        assert (await get_raw(port, ctx(other)))[0] == 403
    finally:
        await server.stop()


@pytest.mark.parametrize(("prefer", "chosen"), [(True, "AES256"), (False, "AES128")])
async def test_prefer_server_cipher_suites_is_honoured_both_ways(
    tmp_path: Path, prefer: bool, chosen: str
) -> None:
    tls = ensure_tls(tmp_path / "ca", [])
    (tmp_path / "web.yml").write_text(
        f"""
tls_server_config:
  cert_file: ca/sandbox-server.pem
  key_file: ca/sandbox-server.key
  cipher_suites:
  - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
  prefer_server_cipher_suites: {str(prefer).lower()}
  max_version: TLS12
"""
    )
    server = WebServer(
        CollectorRegistry(),
        ready=lambda: True,
        settings=load_web_config_file(tmp_path / "web.yml"),
    )
    port = await server.start("127.0.0.1", 0)
    client = ssl.create_default_context(cafile=str(tls.ca_file))
    client.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
    try:
        status, _, cipher = await get_raw(port, client)
    finally:
        await server.stop()
    assert status == 200
    assert cipher is not None
    assert chosen in cipher[0], cipher  # main: AES256 both times


@pytest.mark.parametrize(("client_curve", "ok"), [("secp521r1", True), ("secp384r1", False)])
async def test_one_curve_preference_is_honoured(
    tmp_path: Path, client_curve: str, ok: bool
) -> None:
    tls = ensure_tls(tmp_path / "ca", [])
    (tmp_path / "web.yml").write_text(
        """
tls_server_config:
  cert_file: ca/sandbox-server.pem
  key_file: ca/sandbox-server.key
  curve_preferences: [CurveP521]
"""
    )
    server = WebServer(
        CollectorRegistry(),
        ready=lambda: True,
        settings=load_web_config_file(tmp_path / "web.yml"),
    )
    port = await server.start("127.0.0.1", 0)
    client = ssl.create_default_context(cafile=str(tls.ca_file))
    client.set_ecdh_curve(client_curve)  # the only group the client offers
    try:
        if ok:
            assert (await get_raw(port, client))[0] == 200
        else:  # main ignored the preference and agreed on P-384
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await get_raw(port, client)
    finally:
        await server.stop()
