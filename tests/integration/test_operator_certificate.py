"""The operator signs in with a certificate (``[identity] client_certificate_file``),
and the daemon exports that certificate's end (issue 15, point 6): azure-identity's
CertificateCredential against the sandbox's Entra, which checks the client assertion
as Entra does (sandbox/assertions.py)."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from helpers import key_and_certificate
from prometheus_client import CollectorRegistry

from daemon.app import Daemon
from daemon.check import run_check
from daemon.config import load_config
from daemon.sandbox_config import write_sandbox_config

METRIC = "secretwarden_operator_credential_expiry_timestamp_seconds"


def certificate_config(sb: Any, tmp_path: Path, pem: Path) -> Path:
    path = tmp_path / "sw.toml"
    write_sandbox_config(sb.describe, path, listen_address="127.0.0.1:0", retry_total=0)
    text = path.read_text().replace('kind = "client_secret"', 'kind = "certificate"')
    text, n = re.subn(
        r"^client_secret_file = .*$", f'client_certificate_file = "{pem}"', text, flags=re.M
    )
    assert n == 1
    path.write_text(text)
    return path


def register(sb: Any, pem: Path) -> None:
    cert = pem.read_text()
    cert = cert[cert.index("-----BEGIN CERTIFICATE-----") :]
    got = sb.admin("POST", "operator/certificates", {"certificate": cert})
    assert "x5t#S256" in got, got


async def test_a_certificate_signs_in_and_its_end_is_exported(sb: Any, tmp_path: Path) -> None:
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=40)
    pem = tmp_path / "operator.pem"
    key_and_certificate(pem, end)
    pem.chmod(0o600)
    register(sb, pem)
    path = certificate_config(sb, tmp_path, pem)
    out = io.StringIO()
    assert await run_check(load_config(path), out) == 0, out.getvalue()
    assert "6/6 checks passed" in out.getvalue()
    assert "the daemon's own certificate expires in 40.0 days (from certificate_file)" in (
        out.getvalue()
    )
    d = Daemon(load_config(path), registry=CollectorRegistry())
    await d.start(serve_web=False, schedule=False)
    try:
        got = await d.check_operator_credential()
        assert got is not None
        assert (got.kind, got.source, got.end) == ("certificate", "certificate_file", end)
        labels = {"kind": "certificate", "source": "certificate_file"}
        assert d.registry.get_sample_value(METRIC, labels) == end.timestamp()
    finally:
        await d.stop()


async def test_an_unregistered_certificate_names_aadsts700027_and_the_fix(
    sb: Any, tmp_path: Path
) -> None:
    pem = tmp_path / "operator.pem"
    key_and_certificate(pem, datetime.now(UTC) + timedelta(days=40))
    pem.chmod(0o600)
    out = io.StringIO()
    assert await run_check(load_config(certificate_config(sb, tmp_path, pem)), out) == 1
    expiry = next(line for line in out.getvalue().splitlines() if line.startswith("portal  expiry"))
    assert "AADSTS700027" in expiry
    assert "-- fix: the certificate in identity.client_certificate_file" in expiry
    assert "PRIVATE KEY" not in out.getvalue()
