"""The operator credential: who the daemon signs in as, in a given cloud.

A credential is an async context manager; whoever builds one closes it. It caches
its own tokens, so one credential shared by every client of a session asks Entra
once per scope until the token nears expiry.
"""

from __future__ import annotations

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import (
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
)

from tenant._azure import credential_kwargs
from tenant.endpoints import Cloud, RetryPolicy
from tenant.ports import Identity
from tenant.transport import on_session


class IdentityError(ValueError):
    """The configured identity is incomplete (a configuration error, not Azure's)."""


def operator_credential(
    identity: Identity,
    cloud: Cloud,
    retry: RetryPolicy,
    *,
    session: aiohttp.ClientSession | None = None,
) -> AsyncTokenCredential:
    """Build the daemon's own credential for ``cloud``.

    Raises :class:`IdentityError` naming the missing field when ``identity`` lacks
    what its ``kind`` needs. ``session``: the pool to send on (tenant.transport).
    """
    kwargs = on_session(credential_kwargs(cloud, retry), session)
    if identity.kind == "default":
        if identity.tenant_id:
            kwargs["additionally_allowed_tenants"] = [identity.tenant_id]
        if identity.client_id:
            kwargs["managed_identity_client_id"] = identity.client_id
        return DefaultAzureCredential(**kwargs)
    if not identity.tenant_id or not identity.client_id:
        raise IdentityError(f"identity kind {identity.kind!r} needs tenant_id and client_id")
    if identity.kind == "client_secret":
        if identity.client_secret is None:
            raise IdentityError("identity kind 'client_secret' needs client_secret")
        return ClientSecretCredential(
            identity.tenant_id, identity.client_id, identity.client_secret.reveal(), **kwargs
        )
    if identity.kind == "certificate":
        if identity.certificate_path is None:
            raise IdentityError("identity kind 'certificate' needs certificate_path")
        return CertificateCredential(
            identity.tenant_id,
            identity.client_id,
            certificate_path=str(identity.certificate_path),
            **kwargs,
        )
    raise IdentityError(f"unknown identity kind {identity.kind!r}")
