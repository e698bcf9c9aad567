"""Small helpers shared by tests in every folder (tests/ is on sys.path through the
root conftest.py; fixtures live there, plain functions here)."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The daemon's existing tests run on the sandbox's documented reload model since the
# workflow reloads the documented way (issue 8): only a configuration change and the
# refresh call (5 s after it answers) re-resolve; Restart and Stop/Start keep the cached
# value. Two kindnesses stay, because these tests assert the old credential is removed
# in the same run: ARM reports activeVersion (the proof), and transitions are not busy.
# The documented defaults for those two (no activeVersion: removal pending for the
# overlap window; 409 while busy) are covered by tests/integration/test_rotation_matrix.py
# and test_rotation_faults.py. Used by tests/conftest.py (``sandbox``/``sb``) and
# tests/e2e/test_end_to_end.py.
KINDER_THAN_AZURE: dict[str, Any] = {
    "active_version": "present",
    "site_busy_seconds": 0.0,
}


def key_and_certificate(path: Path, not_after: datetime) -> None:
    """A PEM file as azure-identity's CertificateCredential takes it: key, then cert."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secretwarden operator")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
