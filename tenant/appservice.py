"""The App Service that reads the secret through a Key Vault reference, via ARM.

Reading the site and its references, and the reload ladder's three levers: the
reference refresh (no SDK method; sent through the SDK client's own pipeline so it
gets the same authentication, retries and CA), restart, and stop + start.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.web.aio import WebSiteManagementClient

from tenant._azure import map_http_error
from tenant.errors import TenantError
from tenant.models import KeyVaultReference, Site, SiteState
from tenant.ports import TargetRef

SERVICE = "arm"
REFRESH_PATH = "config/configreferences/appsettings/refresh"


def _vault_name(key_vault_url: str) -> str | None:
    """``https://myvault.vault.azure.net/`` -> ``myvault`` (ARM names vaults this way);
    None when the host is an address (a proxy or the sandbox), which names no vault."""
    host = (urlsplit(key_vault_url).hostname or "").lower()
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if host in ("", "localhost"):
        return None
    return host.split(".", 1)[0]


def _reference(item: Any) -> KeyVaultReference:
    props = getattr(item, "properties", None)

    def prop(name: str) -> str | None:
        value = getattr(props, name, None) if props is not None else None
        if isinstance(value, enum.Enum):  # ResolveStatus.RESOLVED -> "Resolved", ARM's word
            value = value.value
        return str(value) if value is not None else None

    key = getattr(item, "name", None) or (getattr(item, "id", None) or "").rsplit("/", 1)[-1]
    return KeyVaultReference(
        key=str(key),
        status=prop("status") or "Unknown",
        vault_name=prop("vault_name"),
        secret_name=prop("secret_name"),
        secret_version=prop("secret_version"),
        active_version=prop("active_version"),
        details=prop("details"),
    )


class ArmAppService:
    """:class:`~tenant.ports.AppService` for the site of one target."""

    def __init__(self, client: WebSiteManagementClient, ref: TargetRef) -> None:
        self._client = client
        self._ref = ref
        self._where = f"site {ref.resource_group}/{ref.site_name}"

    def _error(self, e: Exception, step: str) -> TenantError:
        return map_http_error(e, SERVICE, f"{step} {self._where}")

    async def get_site(self) -> Site:
        try:
            site = await self._client.web_apps.get(self._ref.resource_group, self._ref.site_name)
        except Exception as e:
            raise self._error(e, "get") from None
        try:
            state = SiteState(site.state)
        except ValueError:
            state = SiteState.UNKNOWN
        return Site(
            name=site.name or self._ref.site_name,
            state=state,
            default_host_name=site.default_host_name,
        )

    def _is_ours(self, reference: KeyVaultReference) -> bool:
        if self._ref.app_setting is not None:
            return reference.key == self._ref.app_setting
        if reference.secret_name is None:
            return False
        if reference.secret_name.lower() != self._ref.secret_name.lower():
            return False
        vault = _vault_name(self._ref.key_vault_url)
        return (
            vault is None or reference.vault_name is None or reference.vault_name.lower() == vault
        )

    async def key_vault_references(self) -> list[KeyVaultReference]:
        """The references to the target's secret (or its configured app setting),
        collected across every page ARM returns."""
        try:
            pages = self._client.web_apps.get_app_settings_key_vault_references(
                self._ref.resource_group, self._ref.site_name
            )
            references = [_reference(item) async for item in pages]
        except Exception as e:
            raise self._error(e, "list Key Vault references of") from None
        return [r for r in references if self._is_ours(r)]

    async def refresh_key_vault_references(self) -> None:
        ref = self._ref
        path = (
            f"/subscriptions/{ref.subscription_id}/resourceGroups/{ref.resource_group}"
            f"/providers/Microsoft.Web/sites/{ref.site_name}/{REFRESH_PATH}"
        )
        request = HttpRequest(
            "POST", path, params={"api-version": self._client._config.api_version}
        )
        try:
            response = await self._client.send_request(request)
            if response.status_code >= 400:
                raise HttpResponseError(response=response)
        except Exception as e:
            raise self._error(e, "refresh Key Vault references of") from None

    async def restart(self) -> None:
        # A soft restart only restarts "if necessary" and would keep the resolved value.
        try:
            await self._client.web_apps.restart(
                self._ref.resource_group, self._ref.site_name, soft_restart=False
            )
        except Exception as e:
            raise self._error(e, "restart") from None

    async def stop(self) -> None:
        try:
            await self._client.web_apps.stop(self._ref.resource_group, self._ref.site_name)
        except Exception as e:
            raise self._error(e, "stop") from None

    async def start(self) -> None:
        try:
            await self._client.web_apps.start(self._ref.resource_group, self._ref.site_name)
        except Exception as e:
            raise self._error(e, "start") from None
