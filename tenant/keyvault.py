"""The Key Vault secret the App Service references, through azure-keyvault-secrets.

Every write is a new version. The rotation tags each version with the keyId of the
app credential its value belongs to (:data:`KEY_ID_TAG`), so a reader can tell which
credential a version holds without trying the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.keyvault.secrets import KeyVaultSecret, SecretProperties
from azure.keyvault.secrets.aio import SecretClient

from tenant._azure import map_http_error
from tenant.errors import TenantError
from tenant.models import SecretValue, SecretVersion

SERVICE = "keyvault"
CONTENT_TYPE = "text/plain"


def _version(props: SecretProperties, value: str | None) -> SecretVersion:
    return SecretVersion(
        name=props.name or "",
        version=props.version or "",
        value=SecretValue(value) if value else None,
        enabled=bool(props.enabled) if props.enabled is not None else True,
        created=props.created_on,
        updated=props.updated_on,
        expires=props.expires_on,
        not_before=props.not_before,
        content_type=props.content_type,
        tags=dict(props.tags or {}),
    )


def _from_secret(secret: KeyVaultSecret) -> SecretVersion:
    return _version(secret.properties, secret.value)


class KeyVaultSecretStore:
    """:class:`~tenant.ports.SecretStore` for one secret of one vault."""

    def __init__(
        self,
        client: SecretClient,
        secret_name: str,
        *,
        content_type: str = CONTENT_TYPE,
        page_size: int | None = None,
    ) -> None:
        self._client = client
        self._page_size = page_size
        self._name = secret_name
        self._content_type = content_type
        self._where = f"secret {secret_name} in {client.vault_url}"

    def _error(self, e: Exception, step: str) -> TenantError:
        return map_http_error(e, SERVICE, f"{step} {self._where}")

    async def get_current(self) -> SecretVersion:
        try:
            return _from_secret(await self._client.get_secret(self._name))
        except Exception as e:
            raise self._error(e, "get current version of") from None

    async def get_version(self, version: str) -> SecretVersion:
        try:
            return _from_secret(await self._client.get_secret(self._name, version))
        except Exception as e:
            raise self._error(e, f"get version {version} of") from None

    async def set_value(self, value: SecretValue, tags: Mapping[str, str]) -> SecretVersion:
        """Write ``value`` as a new version with ``tags``; returns it (value included)."""
        kwargs: dict[str, Any] = {"tags": dict(tags), "content_type": self._content_type}
        try:
            secret = await self._client.set_secret(self._name, value.reveal(), **kwargs)
        except Exception as e:
            raise self._error(e, "set new version of") from None
        return _from_secret(secret)

    def _list_kwargs(self) -> dict[str, Any]:
        return {"max_page_size": self._page_size} if self._page_size else {}

    async def list_versions(self) -> list[SecretVersion]:
        """Every version (no values), oldest first; follows every page."""
        try:
            versions = [
                _version(props, None)
                async for props in self._client.list_properties_of_secret_versions(
                    self._name, **self._list_kwargs()
                )
            ]
        except Exception as e:
            raise self._error(e, "list versions of") from None
        return sorted(
            versions,
            key=lambda v: (
                v.created is None,
                v.created.timestamp() if v.created else 0.0,
                v.version,
            ),
        )
