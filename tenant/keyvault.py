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

from tenant._azure import SINGLE_SHOT, map_http_error
from tenant.errors import KEYVAULT, TenantError
from tenant.models import SecretValue, SecretVersion

SERVICE = KEYVAULT
CONTENT_TYPE = "text/plain"
# Azure Key Vault accepts at most 15 tags on a secret (version).
MAX_TAGS = 15


def merge_tags(existing: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """``existing`` with ``ours`` set on top (ours win on a shared name), or ValueError
    naming the count when the result would exceed :data:`MAX_TAGS`: a user's tag is
    never dropped to make room."""
    merged = {**existing, **ours}
    if len(merged) > MAX_TAGS:
        raise ValueError(
            f"{len(merged)} tags ({len(existing)} present, {len(set(ours) - set(existing))} "
            f"new) exceed Key Vault's limit of {MAX_TAGS}"
        )
    return merged


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

    def _error(self, e: Exception, step: str, *, write: bool = False) -> TenantError:
        return map_http_error(e, SERVICE, f"{step} {self._where}", write=write)

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

    def _check_tags(self, tags: Mapping[str, str], step: str) -> None:
        if len(tags) > MAX_TAGS:
            raise TenantError(
                SERVICE,
                f"{step} {self._where}",
                f"{len(tags)} tags exceed Key Vault's limit of {MAX_TAGS}; nothing was sent",
                code="TooManyTags",
            )

    async def set_value(self, value: SecretValue, tags: Mapping[str, str]) -> SecretVersion:
        """Write ``value`` as a new version with ``tags``; returns it (value included).
        Sent once; a transient failure may have written the version (``maybe_applied``)."""
        step = "set new version of"
        self._check_tags(tags, step)
        kwargs: dict[str, Any] = {
            "tags": dict(tags),
            "content_type": self._content_type,
            **SINGLE_SHOT,
        }
        try:
            secret = await self._client.set_secret(self._name, value.reveal(), **kwargs)
        except Exception as e:
            raise self._error(e, step, write=True) from None
        return _from_secret(secret)

    async def set_tags(self, version: str, tags: Mapping[str, str]) -> SecretVersion:
        """Replace the tags of ``version`` with ``tags`` (use :func:`merge_tags` to keep
        the ones present). Sent once. Returns the version's properties (no value)."""
        step = f"set tags of version {version} of"
        self._check_tags(tags, step)
        try:
            props = await self._client.update_secret_properties(
                self._name, version, tags=dict(tags), **SINGLE_SHOT
            )
        except Exception as e:
            raise self._error(e, step, write=True) from None
        return _version(props, None)

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
