"""The operator credential is built from Identity + Cloud, and refuses an incomplete one."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.identity.aio import ClientSecretCredential

from tenant.credentials import IdentityError, operator_credential
from tenant.endpoints import PUBLIC, RetryPolicy
from tenant.models import SecretValue
from tenant.ports import Identity

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "11111111-2222-3333-4444-555555555555"


@pytest.mark.parametrize(
    ("identity", "missing"),
    [
        (Identity(kind="client_secret", client_id=CLIENT), "tenant_id and client_id"),
        (Identity(kind="client_secret", tenant_id=TENANT, client_id=CLIENT), "client_secret"),
        (Identity(kind="certificate", tenant_id=TENANT, client_id=CLIENT), "certificate_path"),
    ],
)
def test_an_incomplete_identity_names_what_is_missing(identity: Identity, missing: str) -> None:
    with pytest.raises(IdentityError, match=missing):
        operator_credential(identity, PUBLIC, RetryPolicy.none())


async def test_a_client_secret_identity_uses_the_custom_authority(tmp_path: Path) -> None:
    cloud = PUBLIC.with_custom(authority="https://127.0.0.1:9/", ca_file=tmp_path / "ca.pem")
    secret = SecretValue("s3cr3t-value")
    cred = operator_credential(
        Identity(kind="client_secret", tenant_id=TENANT, client_id=CLIENT, client_secret=secret),
        cloud,
        RetryPolicy.none(),
    )
    assert isinstance(cred, ClientSecretCredential)
    async with cred:
        assert cred._client._authority == "https://127.0.0.1:9"  # no public-cloud default
