"""The operator credential is built from Identity + Cloud, and refuses an incomplete one."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.identity.aio import ClientSecretCredential

from tenant.connect import TenantSession
from tenant.credentials import IdentityError, operator_credential
from tenant.endpoints import PUBLIC, RetryPolicy
from tenant.keyvault import KeyVaultSecretStore
from tenant.models import SecretValue
from tenant.ports import Identity, TargetRef

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


@pytest.mark.parametrize(("custom", "verified"), [(False, True), (True, False)])
async def test_the_vault_challenge_resource_is_checked_in_every_real_cloud(
    custom: bool, verified: bool
) -> None:
    cloud = PUBLIC.with_custom(authority="https://127.0.0.1:9") if custom else PUBLIC
    identity = Identity(
        kind="client_secret", tenant_id=TENANT, client_id=CLIENT, client_secret=SecretValue("x")
    )
    ref = TargetRef(
        tenant_id=TENANT,
        app_object_id=None,
        app_client_id=CLIENT,
        key_vault_url="https://myvault.vault.azure.net/",
        secret_name="AzureAdClientSecret",
        subscription_id="00000000-0000-0000-0000-000000000000",
        resource_group="rg",
        site_name="site",
    )
    async with TenantSession(identity, cloud, RetryPolicy.none()) as s, s.target(ref) as c:
        assert isinstance(c.vault, KeyVaultSecretStore)
        policy = c.vault._client._client._config.authentication_policy
        assert policy._verify_challenge_resource is verified
