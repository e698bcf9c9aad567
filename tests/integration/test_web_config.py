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
