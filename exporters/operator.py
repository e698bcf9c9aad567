"""The daemon's own credential: ``secretwarden_operator_credential_expiry_timestamp_seconds``.

The daemon signs in with a client secret or a certificate that can expire like the
secret it guards. Its end comes from the certificate file, or from Graph (the
operator's own app registration, when the operator may read it), or else from
``[identity] credential_expires_at`` in the config; the ``source`` label says which.
With none of them (a managed identity: Azure renews its credentials) the series is
absent, never 0, so the expiry alert cannot fire on an unknown.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from tenant.connect import TenantSession
from tenant.operator import OperatorExpiry, operator_credential_expiry


class OperatorCredentialMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.expiry = Gauge(
            "secretwarden_operator_credential_expiry_timestamp_seconds",
            "When the daemon's own credential (its client secret or certificate) expires "
            "(Unix time), by kind and where the date came from (graph, certificate_file, "
            "config); absent when unknown.",
            ["kind", "source"],
            registry=registry,
        )


async def probe_operator_credential(
    session: TenantSession, configured: datetime | None, metrics: OperatorCredentialMetrics
) -> OperatorExpiry:
    """Read the end once and export it; ``configured`` is the config's date, used only
    when neither the certificate nor Graph can say."""
    got = await operator_credential_expiry(session, session.identity)
    if got.end is None and configured is not None:
        got = OperatorExpiry(got.kind, configured, "config", got.why)
    metrics.expiry.clear()
    if got.end is not None:
        metrics.expiry.labels(got.kind, got.source).set(got.end.timestamp())
    return got
