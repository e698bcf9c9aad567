"""ARM's front door for Microsoft.Web: authentication, api-version, the subscription,
resource group and site in the path; then the resource provider's own routes
(:mod:`sandbox.website` for the site and its transitions, :mod:`sandbox.webconfig` for
app settings and Key Vault references).

The front door answers in ARM's ``{"error": {"code", "message"}}`` envelope; what the
provider answers (409 while busy, its 400s and 404s) is Microsoft.Web's PascalCase.
"""

from __future__ import annotations

import re

from aiohttp import web

from sandbox.entra import ARM_AUDIENCES
from sandbox.portal import Portal
from sandbox.webconfig import REFS, WebConfig
from sandbox.website import WebSites
from sandbox.wire import arm_error, bearer, json_response, web_error

_SITE_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Web/sites/(?P<site>[^/]+)(?P<rest>/.*)?$",
    re.IGNORECASE,
)


class Arm:
    def __init__(self, portal: Portal, base_url: str) -> None:
        self.portal = portal
        self.base_url = base_url
        self.sites = WebSites(portal, self.site_id)
        self.config = WebConfig(portal, self.site_id, base_url)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/subscriptions/{tail:.*}", self.dispatch),
            web.post("/subscriptions/{tail:.*}", self.dispatch),
            web.put("/subscriptions/{tail:.*}", self.dispatch),
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
        raw_rest = (m.group("rest") or "").rstrip("/")
        rest, method = raw_rest.lower(), request.method
        if method == "GET" and rest == "":
            return json_response(self.sites.site_json())
        if method == "GET" and rest.startswith("/instances"):
            return self.instances(raw_rest)
        if method == "POST" and rest == "/restart":
            return await self.sites.restart(request)
        if method == "POST" and rest == "/stop":
            return await self.sites.stop(request)
        if method == "POST" and rest == "/start":
            return await self.sites.start(request)
        if method == "POST" and rest == "/config/appsettings/list":
            return await self.config.list_settings(request)
        if method == "PUT" and rest == "/config/appsettings":
            return await self.config.put_settings(request)
        if method == "GET" and rest == REFS:
            return self.config.references_page(request)
        if method == "POST" and rest == REFS + "/refresh":
            return await self.config.refresh(request)
        if method == "GET" and rest.startswith(REFS + "/"):
            return self.config.reference(raw_rest[len(REFS) + 1 :])
        return self._no_route(method, request.path)

    def _no_route(self, method: str, path: str) -> web.Response:
        return web_error(
            404,
            "NotFound",
            f"No route for {method} {path} in the sandbox's Microsoft.Web provider.",
        )

    def instances(self, raw_rest: str) -> web.Response:
        """``/instances``, ``/instances/{id}``, ``/instances/{id}/processes[/{pid}]``."""
        parts = [p for p in raw_rest.split("/") if p][1:]
        if not parts:
            return json_response(self.sites.instances_page())
        worker = self.sites.find_instance(parts[0])
        if worker is None:
            return web_error(
                404, "NotFound", f"Cannot find an instance with id '{parts[0]}' for this site."
            )
        if len(parts) == 1:
            return json_response(self.sites.instance_json(worker))
        if parts[1].lower() != "processes" or len(parts) > 3:
            return self._no_route("GET", raw_rest)
        if len(parts) == 2:
            return json_response(self.sites.processes_page(worker))
        if not worker.running or parts[2] != str(worker.pid):
            return web_error(404, "NotFound", f"Cannot find process {parts[2]}.")
        return json_response(self.sites.process_json(worker, full=True))
