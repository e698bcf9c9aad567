"""Microsoft.Web sites: the site itself and its transitions (restart, stop, start).

What each transition does to the Key Vault reference is :mod:`sandbox.reload`'s rule.
While one transition (or a configuration change) is in progress, the next answers 409
Conflict (or 429, ``site_busy_status``) in Microsoft.Web's PascalCase shape.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web

from sandbox import reload
from sandbox.instances import OUTBOUND_IPS, POSSIBLE_OUTBOUND_IPS
from sandbox.portal import Portal
from sandbox.site import Worker
from sandbox.wire import web_error


def _flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


def busy_response(portal: Portal) -> web.Response | None:
    """The site's answer to a transition while another is in progress, or None."""
    operation = reload.busy(portal)
    if operation is None:
        return None
    status = portal.faults.site_busy_status
    created = portal.site.busy_since
    message = (
        "Cannot modify this site because another operation is in progress. "
        f"Details: Id: {uuid.uuid4()}, OperationName: {operation}, "
        f"CreatedTime: {created.isoformat() if created else ''}, "
        f"RequestId: {uuid.uuid4()}, EntityType: 3"
    )
    code = "Conflict" if status == 409 else "TooManyRequests"
    return web_error(status, code, message)


class WebSites:
    def __init__(self, portal: Portal, site_id: str) -> None:
        self.portal = portal
        self.site_id = site_id

    async def _wait_warm(self, synchronous: bool) -> None:
        if synchronous and self.portal.faults.cold_start_seconds > 0:
            await asyncio.sleep(self.portal.faults.cold_start_seconds)

    async def restart(self, request: web.Request) -> web.Response:
        refused = busy_response(self.portal)
        if refused is not None:
            return refused
        reload.restart(self.portal, soft=_flag(request.query.get("softRestart")))
        await self._wait_warm(_flag(request.query.get("synchronous")))
        return web.Response(status=200)

    async def stop(self, request: web.Request) -> web.Response:
        refused = busy_response(self.portal)
        if refused is not None:
            return refused
        reload.stop(self.portal)
        return web.Response(status=200)

    async def start(self, request: web.Request) -> web.Response:
        refused = busy_response(self.portal)
        if refused is not None:
            return refused
        reload.start(self.portal)
        return web.Response(status=200)

    def site_json(self) -> dict[str, Any]:
        ids = self.portal.ids
        host = f"{ids.site_name}.azurewebsites.net"
        return {
            "id": self.site_id,
            "name": ids.site_name,
            "type": "Microsoft.Web/sites",
            "kind": "app",
            "location": "East US",
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "state": self.portal.site.state,
                "enabled": True,
                "availabilityState": "Normal",
                "usageState": "Normal",
                "defaultHostName": host,
                "hostNames": [host],
                "enabledHostNames": [host, f"{ids.site_name}.scm.azurewebsites.net"],
                "httpsOnly": True,
                "keyVaultReferenceIdentity": "SystemAssigned",
                "resourceGroup": ids.resource_group,
                "repositorySiteName": ids.site_name,
                "serverFarmId": (
                    f"/subscriptions/{ids.subscription_id}/resourceGroups/{ids.resource_group}"
                    "/providers/Microsoft.Web/serverfarms/asp-appstore"
                ),
                "lastModifiedTimeUtc": "2025-01-01T00:00:00.000Z",
                "sku": "Standard",
                "outboundIpAddresses": ",".join(OUTBOUND_IPS),
                "possibleOutboundIpAddresses": ",".join(POSSIBLE_OUTBOUND_IPS),
            },
        }

    # -- the per-instance view (WebApps_ListInstanceIdentifiers, ...Processes) --------

    def instance_json(self, w: Worker) -> dict[str, Any]:
        """A ``WebSiteInstanceStatus``: ``GET .../sites/{name}/instances[/{id}]``."""
        host = f"{self.portal.ids.site_name}.scm.azurewebsites.net"
        return {
            "id": f"{self.site_id}/instances/{w.id}",
            "name": w.id,
            "type": "Microsoft.Web/sites/instances",
            "properties": {
                "state": "READY" if w.running else "STOPPED",
                "statusUrl": f"https://{host}/api/instances/{w.id}/status",
                "detectorUrl": f"https://{host}/detectors?instance={w.id}",
                "consoleUrl": f"https://{host}/webssh/host?instance={w.id}",
                "healthCheckUrl": f"https://{host}/api/instances/{w.id}/health",
                "containers": {},
            },
        }

    def instances_page(self) -> dict[str, Any]:
        site = self.portal.site
        shown = site.instances if site.state == "Running" else []
        return {"value": [self.instance_json(w) for w in shown], "nextLink": None}

    def find_instance(self, instance_id: str) -> Worker | None:
        site = self.portal.site
        if site.state != "Running":
            return None
        return next((w for w in site.instances if w.id == instance_id.lower()), None)

    def process_json(self, w: Worker, *, full: bool) -> dict[str, Any]:
        """A ``ProcessInfo`` of the instance's site worker (w3wp), ``start_time`` its start."""
        assert w.started_at is not None
        props: dict[str, Any] = {
            "identifier": w.pid,
            "deployment_name": self.portal.ids.site_name,
            "href": (
                f"https://management.azure.com{self.site_id}/instances/{w.id}/processes/{w.pid}"
            ),
            "file_name": r"C:\Windows\System32\inetsrv\w3wp.exe",
            "start_time": w.started_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "is_scm_site": False,
            "is_webjob": False,
        }
        if full:
            props.update(
                command_line=r"c:\windows\system32\inetsrv\w3wp.exe -ap "
                f'"{self.portal.ids.site_name}"',
                user_name=f"IIS APPPOOL\\{self.portal.ids.site_name}",
                thread_count=38,
                handle_count=1200,
                module_count=150,
                working_set=180_000_000,
                time_stamp=self.portal.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            )
        return {
            "id": f"{self.site_id}/instances/{w.id}/processes/{w.pid}",
            "name": str(w.pid),
            "type": "Microsoft.Web/sites/instances/processes",
            "properties": props,
        }

    def processes_page(self, w: Worker) -> dict[str, Any]:
        running = [self.process_json(w, full=False)] if w.running else []
        return {"value": running, "nextLink": None}
