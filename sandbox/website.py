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
from sandbox.instances import OUTBOUND, POSSIBLE_OUTBOUND
from sandbox.portal import Portal
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
                "outboundIpAddresses": ",".join(OUTBOUND),
                "possibleOutboundIpAddresses": ",".join(POSSIBLE_OUTBOUND),
                "lastModifiedTimeUtc": "2025-01-01T00:00:00.000Z",
                "sku": "Standard",
            },
        }
