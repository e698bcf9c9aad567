"""When the daemon's own credential expires: nothing watches the watcher otherwise.

A certificate's end is in the certificate file itself. A client secret's end is in the
operator's own app registration, which Graph shows only when the operator may read it
(``Application.Read.All``, or it owns itself); the secret's first three characters
(Graph's ``hint``) pick it out. A managed identity's credentials are Azure's to renew.
When Graph cannot say, :attr:`OperatorExpiry.why` says why and the caller may fall back
to a configured date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from tenant.connect import TenantSession
from tenant.errors import TenantError
from tenant.graph import GraphAppRegistrations, graph_http_client
from tenant.models import PasswordCredential
from tenant.ports import Identity


@dataclass(frozen=True, slots=True)
class OperatorExpiry:
    """``end`` None: not known, and ``why`` says why."""

    kind: str  # client_secret | certificate | default
    end: datetime | None
    source: str  # certificate_file | graph | "" (unknown)
    why: str = ""


def certificate_end(path: Path) -> datetime:
    """The end of validity of the (first) certificate in a PEM file; the file may hold
    the private key too (as azure-identity's CertificateCredential takes it)."""
    data = path.read_bytes()
    start = data.find(b"-----BEGIN CERTIFICATE-----")
    if start < 0:
        raise ValueError(f"{path} holds no PEM certificate")
    return x509.load_pem_x509_certificate(data[start:]).not_valid_after_utc


def secret_end(credentials: list[PasswordCredential], hint: str) -> datetime | None:
    """The end of the client secret whose hint is ``hint``; when several share it, the
    earliest (an alert too early beats one too late). None when none matches."""
    ends = [c.end for c in credentials if c.hint == hint and c.end is not None]
    return min(ends).astimezone(UTC) if ends else None


async def operator_credential_expiry(session: TenantSession, identity: Identity) -> OperatorExpiry:
    if identity.kind == "certificate" and identity.certificate_path is not None:
        try:
            end = certificate_end(identity.certificate_path)
        except (OSError, ValueError) as e:
            return OperatorExpiry("certificate", None, "", f"certificate not read: {e}")
        return OperatorExpiry("certificate", end, "certificate_file")
    if identity.kind != "client_secret" or identity.client_secret is None:
        return OperatorExpiry(
            identity.kind, None, "", "a managed identity's credentials are renewed by Azure"
        )
    http = graph_http_client(session.cloud, session.retry)
    try:
        app = GraphAppRegistrations(
            http, session.credential, session.cloud, object_id=None, client_id=identity.client_id
        )
        registration = await app.get_app()
    except TenantError as e:
        # Not the targets' advice (tenant.advice): this is the operator's own app.
        said = " ".join(str(p) for p in (e.status and f"HTTP {e.status}", e.code) if p)
        return OperatorExpiry(
            "client_secret",
            None,
            "",
            f"the operator's own app not read ({said or e.detail}): set "
            "identity.credential_expires_at, or let it read its app (Application.Read.All)",
        )
    finally:
        await http.aclose()
    found = secret_end(list(registration.credentials), identity.client_secret.reveal()[:3])
    if found is None:
        return OperatorExpiry(
            "client_secret", None, "", "no client secret of the operator's app matches its hint"
        )
    return OperatorExpiry("client_secret", found, "graph")
