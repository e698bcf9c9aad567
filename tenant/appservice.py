"""The App Service that reads the secret through a Key Vault reference, via ARM.

Reading the site, its references and its app settings, and the reload ladder's levers:
the reference refresh (in no REST spec; sent with the documented api-version
2022-03-01), a configuration change (the app settings PUT: the only documented
immediate re-fetch), restart, and stop + start; plus pinning the reference to one
version and back.

Every call is ARM's REST API as JSON through tenant.arm's pipeline client, the
requests azure-mgmt-web 11 sends (whose models alone cost ~39 MiB of imports; issue
16); responses are read as plain JSON, a field that is missing or of another type
read as None. Reads keep azure-core's retries; writes and transitions go out once
(``SINGLE_SHOT``) so the caller's one retry layer decides, on
:class:`~tenant.errors.Busy` (409) and :class:`~tenant.errors.Throttled` (429) alike.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from azure.core.rest import HttpRequest

from tenant._azure import SINGLE_SHOT, map_http_error
from tenant.arm import ArmClient, arm_path, build_request, items, json_body, send
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

SITE_PATH = (
    "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
    "/providers/Microsoft.Web/sites/{name}"
)
# The Microsoft.Web operations sent, by the REST spec's operationId: method, path under
# the site, and whether azure-mgmt-web sends ``Accept: application/json`` (not on its
# POST actions). docs/permissions.md grants each (tests/unit/test_permission_roles.py).
OPERATIONS: dict[str, tuple[str, str, bool]] = {
    "WebApps_Get": ("GET", "", True),
    "WebApps_ListInstanceIdentifiers": ("GET", "/instances", True),
    "WebApps_ListInstanceProcesses": ("GET", "/instances/{instanceId}/processes", True),
    "WebApps_GetAppSettingsKeyVaultReferences": (
        "GET",
        "/config/configreferences/appsettings",
        True,
    ),
    "WebApps_ListApplicationSettings": ("POST", "/config/appsettings/list", True),
    "WebApps_UpdateApplicationSettings": ("PUT", "/config/appsettings", True),
    "WebApps_Restart": ("POST", "/restart", False),
    "WebApps_Stop": ("POST", "/stop", False),
    "WebApps_Start": ("POST", "/start", False),
}


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
    """An RFC 3339 time as ARM writes it (``Z``, up to 7 fractional digits), aware;
    None when absent or not a time."""
    if not isinstance(t, str):
        return None
    try:
        parsed = datetime.fromisoformat(t)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    """A JSON scalar as text; None for null, objects and lists."""
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _last_segment(item: Mapping[str, Any]) -> str:
    """A resource's ``name``, else the last segment of its ``id``."""
    return _text(item.get("name")) or (_text(item.get("id")) or "").rsplit("/", 1)[-1]


def _reference(item: Mapping[str, Any]) -> KeyVaultReference:
    """An ``ApiKVReference``: its ``properties`` carry ARM's camelCase names."""
    props = _object(item.get("properties"))
    return KeyVaultReference(
        key=_last_segment(item),
        status=_text(props.get("status")) or "Unknown",
        vault_name=_text(props.get("vaultName")),
        secret_name=_text(props.get("secretName")),
        secret_version=_text(props.get("secretVersion")),
        active_version=_text(props.get("activeVersion")),
        details=_text(props.get("details")),
    )


def _process(item: Mapping[str, Any]) -> WorkerProcess:
    """A ``ProcessInfo``: Kudu's snake_case names under ``properties``."""
    props = _object(item.get("properties"))
    name = _text(item.get("name")) or _text(item.get("id")) or "?"
    return WorkerProcess(
        name=name.rsplit("/", 1)[-1],
        started=_aware(props.get("start_time")),
        scm=bool(props.get("is_scm_site")),
    )


def _settings(listed: Mapping[str, Any]) -> dict[str, Any]:
    """A ``StringDictionary``'s ``properties``: the app settings by name, as sent."""
    return dict(_object(listed.get("properties")))


class ArmAppService:
    """:class:`~tenant.ports.AppService` for the site of one target.

    ``sleep`` and ``clock`` drive :meth:`wait_for_active_version` (tests inject them).
    """

    def __init__(
        self,
        client: ArmClient,
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

    def _request(
        self,
        operation: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        **names: str,
    ) -> HttpRequest:
        """The request of one of :data:`OPERATIONS` for this site."""
        method, under_site, accept = OPERATIONS[operation]
        path = arm_path(
            SITE_PATH + under_site,
            subscriptionId=self._ref.subscription_id,
            resourceGroupName=self._ref.resource_group,
            name=self._ref.site_name,
            **names,
        )
        return build_request(method, path, params=params, body=body, accept=accept)

    async def get_site(self) -> Site:
        try:
            site = await json_body(self._client, self._request("WebApps_Get"))
        except Exception as e:
            raise self._error(e, "get") from None
        props = _object(site.get("properties"))
        try:
            state = SiteState(props.get("state"))
        except ValueError:
            state = SiteState.UNKNOWN
        return Site(
            name=_text(site.get("name")) or self._ref.site_name,
            state=state,
            default_host_name=_text(props.get("defaultHostName")),
            outbound_addresses=_addresses(
                _text(props.get("outboundIpAddresses")),
                _text(props.get("possibleOutboundIpAddresses")),
            ),
        )

    async def instances(self) -> tuple[SiteInstance, ...]:
        """Every scale-out instance and its processes with their start times
        (``WebApps_ListInstanceIdentifiers``, ``WebApps_ListInstanceProcesses``)."""
        found: list[SiteInstance] = []
        try:
            listed = self._request("WebApps_ListInstanceIdentifiers")
            ids = [_last_segment(i) async for i in items(self._client, listed)]
            for instance_id in ids:
                request = self._request("WebApps_ListInstanceProcesses", instanceId=instance_id)
                processes = [_process(p) async for p in items(self._client, request)]
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
            request = self._request("WebApps_GetAppSettingsKeyVaultReferences")
            references = [_reference(item) async for item in items(self._client, request)]
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
            # Any status below 400 is success; a failure is classified by its status
            # and body alone (no error map: the operation has no generated client).
            await send(self._client, request, expected=range(200, 400), error_map={}, **SINGLE_SHOT)
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

    async def _listed_settings(self) -> dict[str, Any]:
        """The ``StringDictionary`` of the app settings (``kind`` and ``properties``)."""
        try:
            return await json_body(self._client, self._request("WebApps_ListApplicationSettings"))
        except Exception as e:
            raise self._error(e, "list app settings of") from None

    async def app_settings(self) -> AppSettings:
        return AppSettings(values=_settings(await self._listed_settings()))

    async def update_app_settings(self, changes: Mapping[str, str]) -> AppSettings:
        listed = await self._listed_settings()
        before = AppSettings(values=_settings(listed))
        merged = {**before.values, **changes}
        names = ", ".join(sorted(changes))
        # Every setting goes back (the PUT replaces them all) with the site's kind, as
        # azure-mgmt-web serializes a StringDictionary: a kind that is null is left out.
        kind = _text(listed.get("kind"))
        body = {"kind": kind, "properties": merged} if kind is not None else {"properties": merged}
        try:
            await send(
                self._client,
                self._request("WebApps_UpdateApplicationSettings", body=body),
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
            request = self._request("WebApps_Restart", params={"softRestart": "false"})
            await send(self._client, request, **SINGLE_SHOT)
        except Exception as e:
            raise self._error(e, "restart", write=True) from None

    async def stop(self) -> None:
        try:
            await send(self._client, self._request("WebApps_Stop"), **SINGLE_SHOT)
        except Exception as e:
            raise self._error(e, "stop", write=True) from None

    async def start(self) -> None:
        try:
            await send(self._client, self._request("WebApps_Start"), **SINGLE_SHOT)
        except Exception as e:
            raise self._error(e, "start", write=True) from None
