"""Small helpers shared by tests in every folder (tests/ is on sys.path through the
root conftest.py; fixtures live there, plain functions here)."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from azure.identity import ClientSecretCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def operator_credential(d: dict[str, Any]) -> ClientSecretCredential:
    """The sandbox operator's credential, from its describe file, as the SDKs take it."""
    return ClientSecretCredential(
        d["tenant_id"],
        d["operator"]["client_id"],
        d["operator"]["client_secret"],
        authority=d["authority"],
        disable_instance_discovery=True,
        connection_verify=d["ca_file"],
    )


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


# The sandbox before issue 13 (one value that both the platform's cache and the running
# app use, no token cache, a prompt, ordered, unthrottled sign-in log, Entra and Graph
# without lag). The sandbox's own defaults are pessimistic (docs/azure-behaviour.md);
# tests written against the old sandbox keep it through these keys. Tests of the new
# behaviours use the defaults (tests/integration/test_sandbox_processes.py).
PRE_ISSUE_13: dict[str, Any] = {
    "process_model": "recycle_on_refetch",
    "instance_recycle_stagger_seconds": 0.0,
    "config_change_delay_seconds": 0.0,
    "app_token_lifetime_seconds": 0.0,
    "app_token_lifetime_jitter_seconds": 0.0,
    "app_user_flow_signins": False,
    "signin_log_delay_seconds": 120.0,
    "signin_log_jitter_seconds": 0.0,
    "signin_log_duplicates": False,
    "signin_reads_per_10s": None,
    "propagation_delay_seconds": 0.0,
    "graph_read_lag_seconds": 0.0,
    "graph_delta_partial": False,
    "graph_delta_expired_status": 410,
}
KINDER_THAN_AZURE.update(PRE_ISSUE_13)
