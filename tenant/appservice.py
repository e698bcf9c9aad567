"""The App Service that reads the secret through a Key Vault reference, via ARM.

Reading the site, its references and its app settings, and the reload ladder's levers:
the reference refresh (no SDK method; sent through the SDK client's own pipeline so it
gets the same authentication and CA, with the documented api-version 2022-03-01), a
configuration change (the app settings PUT: the only documented immediate re-fetch),
restart, and stop + start; plus pinning the reference to one version and back.

Reads keep the SDK's retries; writes and transitions go out once (``SINGLE_SHOT``) so
the caller's one retry layer decides, on :class:`~tenant.errors.Busy` (409) and
:class:`~tenant.errors.Throttled` (429) alike.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.web.aio import WebSiteManagementClient
from azure.mgmt.web.models import StringDictionary

from tenant._azure import SINGLE_SHOT, map_http_error
from tenant.errors import ARM, NotFound, TenantError
from tenant.models import (
    AppSettings,
    KeyVaultReference,
    ReferenceChange,
    ReferencePoll,
    ReferenceSetting,
    SecretReference,
    Site,
    SiteInstance,
    SiteState,
    WorkerProcess,
)
from tenant.ports import TargetRef
from tenant.references import parse_reference

SERVICE = ARM
REFRESH_PATH = "config/configreferences/appsettings/refresh"
# The api-version Microsoft's documentation shows for the refresh (the operation is in
# no REST spec; the SDK's default api-version is not known to serve it).
REFRESH_API_VERSION = "2022-03-01"
# The app setting a reload by configuration change writes (a timestamp or run id): a
# change of the site's configuration that changes nothing the app reads.
RELOAD_MARKER_SETTING = "SECRETWARDEN_RELOAD_MARKER"


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


def _addresses(*lists: str | None) -> tuple[str, ...]:
    """ARM's comma-separated address lists, merged (order kept, no repeats)."""
    out: list[str] = []
    for raw in lists:
        for a in (raw or "").split(","):
            a = a.strip()
            if a and a not in out:
                out.append(a)
    return tuple(out)


def _aware(t: object) -> datetime | None:
    if not isinstance(t, datetime):
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


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
    """:class:`~tenant.ports.AppService` for the site of one target.

    ``sleep`` and ``clock`` drive :meth:`wait_for_active_version` (tests inject them).
    """

    def __init__(
        self,
        client: WebSiteManagementClient,
        ref: TargetRef,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ref = ref
        self._sleep = sleep
        self._clock = clock
        self._where = f"site {ref.resource_group}/{ref.site_name}"

    def _error(self, e: Exception, step: str, *, write: bool = False) -> TenantError:
        return map_http_error(e, SERVICE, f"{step} {self._where}", write=write)

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
            outbound_addresses=_addresses(
                getattr(site, "outbound_ip_addresses", None),
                getattr(site, "possible_outbound_ip_addresses", None),
            ),
        )

    async def instances(self) -> tuple[SiteInstance, ...]:
        """Every scale-out instance and its processes with their start times
        (``WebApps_ListInstanceIdentifiers``, ``WebApps_ListInstanceProcesses``)."""
        rg, name = self._ref.resource_group, self._ref.site_name
        found: list[SiteInstance] = []
        try:
            ids = [
                str(i.name or (i.id or "").rsplit("/", 1)[-1])
                async for i in self._client.web_apps.list_instance_identifiers(rg, name)
            ]
            for instance_id in ids:
                processes = [
                    WorkerProcess(
                        name=str(p.name or p.id or "?").rsplit("/", 1)[-1],
                        started=_aware(getattr(p, "start_time", None)),
                        scm=bool(getattr(p, "is_scm_site", False)),
                    )
                    async for p in self._client.web_apps.list_instance_processes(
                        rg, name, instance_id
                    )
                ]
                found.append(SiteInstance(instance_id, tuple(processes)))
        except Exception as e:
            raise self._error(e, "list the instances and processes of") from None
        return tuple(found)

    def _vault_matches(self, vault_name: str | None) -> bool:
        vault = _vault_name(self._ref.key_vault_url)
        return vault is None or vault_name is None or vault_name.lower() == vault

    def _is_ours(self, reference: KeyVaultReference) -> bool:
        if self._ref.app_setting is not None:
            return reference.key == self._ref.app_setting
        if reference.secret_name is None:
            return False
        if reference.secret_name.lower() != self._ref.secret_name.lower():
            return False
        return self._vault_matches(reference.vault_name)

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
        request = HttpRequest("POST", path, params={"api-version": REFRESH_API_VERSION})
        try:
            response = await self._client.send_request(request, **SINGLE_SHOT)
            if response.status_code >= 400:
                await response.read()
                raise HttpResponseError(response=response)
        except Exception as e:
            raise self._error(e, "refresh Key Vault references of", write=True) from None

    async def wait_for_active_version(
        self,
        wanted: str,
        *,
        timeout: float,  # noqa: ASYNC109  # a polling deadline, not a call timeout
        interval: float,
    ) -> ReferencePoll:
        deadline = self._clock() + timeout
        polls = 0
        active: str | None = None
        status: str | None = None
        while True:
            references = await self.key_vault_references()
            polls += 1
            if references:
                # One setting per target; with several, the first that reports a
                # version speaks (they all name the same secret).
                reported = [r for r in references if r.active_version] or references
                active, status = reported[0].active_version, reported[0].status
            if active is not None and active.lower() == wanted.lower():
                return ReferencePoll(wanted, active, status, matched=True, polls=polls)
            left = deadline - self._clock()
            if left <= 0:
                return ReferencePoll(wanted, active, status, matched=False, polls=polls)
            await self._sleep(min(interval, left))

    async def _listed_settings(self) -> StringDictionary:
        try:
            listed: StringDictionary = await self._client.web_apps.list_application_settings(
                self._ref.resource_group, self._ref.site_name
            )
        except Exception as e:
            raise self._error(e, "list app settings of") from None
        return listed

    async def app_settings(self) -> AppSettings:
        listed = await self._listed_settings()
        return AppSettings(values=dict(listed.properties or {}))

    async def update_app_settings(self, changes: Mapping[str, str]) -> AppSettings:
        listed = await self._listed_settings()
        before = AppSettings(values=dict(listed.properties or {}))
        merged = {**before.values, **changes}
        names = ", ".join(sorted(changes))
        try:
            await self._client.web_apps.update_application_settings(
                self._ref.resource_group,
                self._ref.site_name,
                StringDictionary(kind=listed.kind, properties=merged),
                **SINGLE_SHOT,
            )
        except Exception as e:
            raise self._error(e, f"write app settings ({names}) of", write=True) from None
        return before

    async def configuration_change(self, marker: str) -> None:
        await self.update_app_settings({RELOAD_MARKER_SETTING: marker})

    def _reference_setting(self, settings: AppSettings) -> ReferenceSetting:
        op = f"find the reference to {self._ref.secret_name} in the app settings of"
        found: list[ReferenceSetting] = []
        for name, raw in settings.values.items():
            if self._ref.app_setting is not None and name != self._ref.app_setting:
                continue
            parsed = parse_reference(raw)
            if parsed is None:
                continue
            if self._ref.app_setting is None and not self._names_our_secret(parsed):
                continue
            found.append(ReferenceSetting(name=name, raw=raw, reference=parsed))
        if not found:
            what = self._ref.app_setting or "no app setting"
            raise NotFound(
                SERVICE,
                f"{op} {self._where}",
                f"{what} holds a Key Vault reference to {self._ref.secret_name}",
            )
        if len(found) > 1:
            names = ", ".join(sorted(f.name for f in found))
            raise TenantError(
                SERVICE,
                f"{op} {self._where}",
                f"several app settings reference it ({names}); name one as app_setting",
            )
        return found[0]

    def _names_our_secret(self, reference: SecretReference) -> bool:
        if reference.secret_name.lower() != self._ref.secret_name.lower():
            return False
        if reference.vault_url is not None:
            ours = (urlsplit(self._ref.key_vault_url).netloc or "").lower()
            return urlsplit(reference.vault_url).netloc.lower() == ours
        return self._vault_matches(reference.vault_name)

    async def reference_setting(self) -> ReferenceSetting:
        return self._reference_setting(await self.app_settings())

    async def write_reference(self, version: str | None) -> ReferenceChange:
        current = await self.reference_setting()
        after = current.reference.with_version(version).setting_value()
        await self.update_app_settings({current.name: after})
        return ReferenceChange(setting=current.name, before=current.raw, after=after)

    async def restore_reference(self, change: ReferenceChange) -> None:
        await self.update_app_settings({change.setting: change.before})

    async def restart(self) -> None:
        # A soft restart only restarts "if necessary" and would keep the resolved value.
        try:
            await self._client.web_apps.restart(
                self._ref.resource_group, self._ref.site_name, soft_restart=False, **SINGLE_SHOT
            )
        except Exception as e:
            raise self._error(e, "restart", write=True) from None

    async def stop(self) -> None:
        try:
            await self._client.web_apps.stop(
                self._ref.resource_group, self._ref.site_name, **SINGLE_SHOT
            )
        except Exception as e:
            raise self._error(e, "stop", write=True) from None

    async def start(self) -> None:
        try:
            await self._client.web_apps.start(
                self._ref.resource_group, self._ref.site_name, **SINGLE_SHOT
            )
        except Exception as e:
            raise self._error(e, "start", write=True) from None
