"""ARM Microsoft.Web: the site, restart/stop/start, and its Key Vault references.

What the App Service resolves on each operation is the heart of the runbook's failure
modes: restart re-resolves the versionless reference unless the sticky-cache fault is on
(or ``softRestart=true``); Stop+Start and the refresh API always re-resolve.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from sandbox.entra import ARM_AUDIENCES
from sandbox.portal import APP_SETTING, SECRET_NAME, Portal
from sandbox.wire import arm_error, bearer, json_response

_SITE_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Web/sites/(?P<site>[^/]+)(?P<rest>/.*)?$",
    re.IGNORECASE,
)
_REFS = "/config/configreferences/appsettings"


def _flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


class Arm:
    def __init__(self, portal: Portal, base_url: str) -> None:
        self.portal = portal
        self.base_url = base_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/subscriptions/{tail:.*}", self.dispatch),
            web.post("/subscriptions/{tail:.*}", self.dispatch),
        ]

    @property
    def site_id(self) -> str:
        ids = self.portal.ids
        return (
            f"/subscriptions/{ids.subscription_id}/resourceGroups/{ids.resource_group}"
            f"/providers/Microsoft.Web/sites/{ids.site_name}"
        )

    def authorize(self, request: web.Request) -> web.Response | None:
        raw = bearer(request)
        challenge = {
            "WWW-Authenticate": (
                'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", '
                'error_description="The authentication failed because of missing or invalid '
                "'Authorization' header.\""
            )
        }
        if raw is None:
            return arm_error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                headers=challenge,
            )
        tok = self.portal.token(raw)
        if tok is None:
            return arm_error(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
                headers=challenge,
            )
        if tok.audience not in ARM_AUDIENCES:
            return arm_error(
                401,
                "InvalidAuthenticationTokenAudience",
                "The access token has been obtained for wrong audience or resource.",
                headers=challenge,
            )
        if tok.client_id != self.portal.ids.operator_client_id:
            return arm_error(
                403,
                "AuthorizationFailed",
                f"The client '{tok.client_id}' with object id '{tok.client_id}' does not have "
                f"authorization to perform action on scope '{self.site_id}' or the scope is "
                "invalid.",
            )
        return None

    async def dispatch(self, request: web.Request) -> web.Response:
        denied = self.authorize(request)
        if denied is not None:
            return denied
        if "api-version" not in request.query:
            return arm_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        ids = self.portal.ids
        m = _SITE_PATH.match(request.path)
        if m is None or m.group("sub").lower() != ids.subscription_id:
            return arm_error(404, "SubscriptionNotFound", "The subscription could not be found.")
        if m.group("rg").lower() != ids.resource_group.lower():
            return arm_error(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{m.group('rg')}' could not be found.",
            )
        if m.group("site").lower() != ids.site_name.lower():
            return arm_error(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.Web/sites/{m.group('site')}' under resource group "
                f"'{ids.resource_group}' was not found. For more details please go to "
                "https://aka.ms/ARMResourceNotFoundFix",
            )
        rest = (m.group("rest") or "").rstrip("/").lower()
        method = request.method
        if method == "GET" and rest == "":
            return json_response(self.site_json())
        if method == "POST" and rest == "/restart":
            return await self.restart(request)
        if method == "POST" and rest == "/stop":
            self.portal.site.state = "Stopped"
            self.portal.site.stops += 1
            return web.Response(status=200)
        if method == "POST" and rest == "/start":
            return await self.start(request)
        if method == "GET" and rest == _REFS:
            return self.references_page(request)
        if method == "GET" and rest.startswith(_REFS + "/"):
            key = (m.group("rest") or "").rstrip("/")[len(_REFS) + 1 :]
            found = [r for r in self.references_json() if r["name"].lower() == key.lower()]
            if not found:
                return arm_error(
                    404,
                    "NotFound",
                    f"Cannot find an app setting named '{key}' with a Key Vault reference.",
                )
            return json_response(found[0])
        if method == "POST" and rest == _REFS + "/refresh":
            self.portal.resolve_reference()
            self.portal.site.refreshes += 1
            return json_response({"value": [self.reference_json()]})
        return arm_error(
            404,
            "NotFound",
            f"No route for {method} {request.path} in the sandbox's Microsoft.Web provider.",
        )

    async def _wait_warm(self, synchronous: bool) -> None:
        if synchronous and self.portal.faults.cold_start_seconds > 0:
            await asyncio.sleep(self.portal.faults.cold_start_seconds)

    async def restart(self, request: web.Request) -> web.Response:
        soft = _flag(request.query.get("softRestart"))
        sticky = self.portal.faults.sticky_cache or soft
        self.portal.begin_start(re_resolve=not sticky)
        self.portal.site.restarts += 1
        await self._wait_warm(_flag(request.query.get("synchronous")))
        return web.Response(status=200)

    async def start(self, request: web.Request) -> web.Response:
        if self.portal.site.state != "Running":
            self.portal.begin_start(re_resolve=True)
            self.portal.site.starts += 1
        return web.Response(status=200)

    # -- bodies ------------------------------------------------------------------------

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
            },
        }

    def references_page(self, request: web.Request) -> web.Response:
        """The reference list, ``arm_page_size`` items a page, ``nextLink`` to the rest."""
        items = self.references_json()
        size = self.portal.faults.arm_page_size or len(items)
        try:
            offset = int(request.query.get("$skiptoken", "0"))
        except ValueError:
            return arm_error(400, "InvalidSkipToken", "The $skiptoken is not valid.")
        next_link = None
        if offset + size < len(items):
            api = request.query["api-version"]
            next_link = (
                f"{self.base_url}{request.path}?api-version={api}&$skiptoken={offset + size}"
            )
        return json_response({"value": items[offset : offset + size], "nextLink": next_link})

    def references_json(self) -> list[dict[str, Any]]:
        """Every app setting with a Key Vault reference: the extras, then the portal's."""
        extras = [
            self._reference(f"Extra__Setting{i}", f"ExtraSecret{i}", f"{i + 1:032x}")
            for i in range(self.portal.faults.extra_key_vault_references)
        ]
        return [*extras, self.reference_json()]

    def reference_json(self) -> dict[str, Any]:
        """The portal's reference: ``AzureAd__ClientSecret`` -> ``AzureAdClientSecret``."""
        return self._reference(APP_SETTING, SECRET_NAME, self.portal.site.resolved_version)

    def _reference(self, setting: str, secret: str, active: str | None) -> dict[str, Any]:
        return {
            "id": f"{self.site_id}{_REFS}/{setting}",
            "name": setting,
            "type": "Microsoft.Web/sites/config/configreferences",
            "properties": {
                "reference": f"@Microsoft.KeyVault(SecretUri={self.base_url}/secrets/{secret}/)",
                "status": "Resolved" if active is not None else "SecretNotFound",
                "vaultName": f"{self.portal.ids.site_name}-kv",
                "secretName": secret,
                "secretVersion": None,
                "activeVersion": active,
                "identityType": "SystemAssigned",
                "details": (
                    "Reference was successfully resolved."
                    if active is not None
                    else "Secret not found in the Key Vault, or it has no enabled version."
                ),
                "source": "KeyVault",
            },
        }
