"""Microsoft Graph v1.0: the backend API's application object and the portal's Intune call.

The operator identity may read the application and add or remove its passwords
(Application.ReadWrite.OwnedBy); the backend API app may list Intune mobile apps
(DeviceManagementApps.Read.All). Anything else is 403 ``Authorization_RequestDenied``.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from aiohttp import web

from sandbox.entra import GRAPH_AUDIENCES
from sandbox.portal import APP_DISPLAY_NAME, Credential, Portal, Token
from sandbox.wire import bearer, graph_error, graph_time, json_response, parse_time

_APP_PATH = re.compile(
    r"^/v1\.0/applications(?:/(?P<oid>[^/()]+)|\(appId='(?P<appid>[^']+)'\))"
    r"(?P<action>/addPassword|/removePassword)?/?$",
    re.IGNORECASE,
)
MOBILE_APPS_PATH = "/v1.0/deviceAppManagement/mobileApps"
_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata"

MOBILE_APPS = [
    ("Company Portal", "#microsoft.graph.iosStoreApp"),
    ("Microsoft Teams", "#microsoft.graph.win32LobApp"),
    ("Microsoft Edge", "#microsoft.graph.windowsMicrosoftEdgeApp"),
    ("Microsoft Outlook", "#microsoft.graph.androidManagedStoreApp"),
    ("7-Zip", "#microsoft.graph.win32LobApp"),
    ("Notepad++", "#microsoft.graph.win32LobApp"),
    ("Adobe Acrobat Reader", "#microsoft.graph.win32LobApp"),
]
_MOBILE_IDS = [f"0c1d2e3f-0000-4000-8000-{i:012d}" for i in range(len(MOBILE_APPS))]


def password_json(c: Credential, *, with_secret: bool = False) -> dict[str, Any]:
    return {
        "customKeyIdentifier": None,
        "displayName": c.display_name,
        "endDateTime": graph_time(c.end),
        "hint": c.hint,
        "keyId": c.key_id,
        "secretText": c.secret_text if with_secret else None,
        "startDateTime": graph_time(c.start),
    }


class Graph:
    def __init__(self, portal: Portal, base_url: str) -> None:
        self.portal = portal
        self.base_url = base_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1.0/{tail:.*}", self.dispatch),
            web.post("/v1.0/{tail:.*}", self.dispatch),
        ]

    # -- auth ----------------------------------------------------------------------

    def check_token(self, raw: str | None) -> Token | web.Response:
        now = self.portal.now()
        if raw is None:
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
                now,
                headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
        tok = self.portal.token(raw)
        if tok is None:
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                now,
                headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
            )
        if tok.audience not in GRAPH_AUDIENCES:
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
                now,
            )
        return tok

    def _denied(self) -> web.Response:
        return graph_error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
            self.portal.now(),
        )

    # -- dispatch --------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.Response:
        tok = self.check_token(bearer(request))
        if isinstance(tok, web.Response):
            return tok
        path = request.path
        if path.rstrip("/").lower() == MOBILE_APPS_PATH.lower() and request.method == "GET":
            return self.mobile_apps(tok, request.query.get("$top"), request.query.get("$skiptoken"))
        m = _APP_PATH.match(path)
        if m is None:
            return graph_error(
                400,
                "BadRequest",
                f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'.",
                self.portal.now(),
            )
        if tok.client_id != self.portal.ids.operator_client_id:
            return self._denied()
        ids = self.portal.ids
        oid, appid = m.group("oid"), m.group("appid")
        if (oid is not None and oid.lower() != ids.app_object_id) or (
            appid is not None and appid.lower() != ids.app_client_id
        ):
            return graph_error(
                404,
                "Request_ResourceNotFound",
                f"Resource '{oid or appid}' does not exist or one of its queried "
                "reference-property objects are not present.",
                self.portal.now(),
            )
        action = (m.group("action") or "").lower()
        if request.method == "GET" and not action:
            return self.get_application(request.query.get("$select"))
        if request.method == "POST" and action == "/addpassword":
            return self.add_password(await _json_body(request))
        if request.method == "POST" and action == "/removepassword":
            return self.remove_password(await _json_body(request))
        return graph_error(
            405,
            "Request_BadRequest",
            f"The HTTP method '{request.method}' is not allowed for this resource.",
            self.portal.now(),
        )

    # -- applications ----------------------------------------------------------------

    def application_json(self) -> dict[str, Any]:
        ids = self.portal.ids
        return {
            "id": ids.app_object_id,
            "deletedDateTime": None,
            "appId": ids.app_client_id,
            "applicationTemplateId": None,
            "identifierUris": [f"api://{ids.app_client_id}"],
            "createdDateTime": "2024-01-15T09:30:00.0000000Z",
            "displayName": APP_DISPLAY_NAME,
            "publisherDomain": "contoso.onmicrosoft.com",
            "signInAudience": "AzureADMyOrg",
            "tags": [],
            "keyCredentials": [],
            # Reads lag writes by graph_read_lag_seconds (the fault; 0 by default).
            "passwordCredentials": [password_json(c) for c in self.portal.visible_credentials()],
            "requiredResourceAccess": [
                {
                    "resourceAppId": "00000003-0000-0000-c000-000000000000",
                    "resourceAccess": [
                        {"id": "7a6ee1e7-141e-4cec-ae74-d9db155731ff", "type": "Role"}
                    ],
                }
            ],
        }

    def get_application(self, select: str | None) -> web.Response:
        body = self.application_json()
        if select:
            fields = [f.strip() for f in select.split(",") if f.strip()]
            unknown = [f for f in fields if f not in body]
            if unknown:
                return graph_error(
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{unknown[0]}' on type "
                    "'microsoft.graph.application'.",
                    self.portal.now(),
                )
            picked = {f: body[f] for f in fields}
            context = f"{_CONTEXT}#applications({','.join(fields)})/$entity"
            return json_response({"@odata.context": context, **picked})
        return json_response({"@odata.context": f"{_CONTEXT}#applications/$entity", **body})

    def add_password(self, body: dict[str, Any] | None) -> web.Response:
        now = self.portal.now()
        faults = self.portal.faults
        if body is None:
            return graph_error(400, "Request_BadRequest", "Invalid JSON in request body.", now)
        pc = body.get("passwordCredential") or {}
        if not isinstance(pc, dict):
            return graph_error(
                400, "Request_BadRequest", "Invalid value for 'passwordCredential'.", now
            )
        try:
            start = parse_time(pc["startDateTime"]) if pc.get("startDateTime") else None
            end = parse_time(pc["endDateTime"]) if pc.get("endDateTime") else None
        except (ValueError, TypeError):
            return graph_error(
                400, "Request_BadRequest", "Invalid value specified for a date property.", now
            )
        cap = faults.credential_cap()
        if cap is not None and len(self.portal.credentials) >= cap:
            message = (
                f"Not allowed to add {len(self.portal.credentials) + 1} passwords. "
                f"You can only add a maximum of {cap} passwords."
            )
            return graph_error(
                400,
                "TooManyAppPasswords",
                message,
                now,
                details=[{"target": "passwordCredentials", "code": "TooManyAppPasswords"}],
            )
        effective_start = start or now
        effective_end = end or effective_start + timedelta(days=730)
        if effective_end <= effective_start:
            return graph_error(
                400,
                "Request_BadRequest",
                "Key credential end date is invalid.",
                now,
                details=[{"code": "InvalidKeyEndDate", "message": "", "target": "EndDate"}],
            )
        max_days = faults.max_password_lifetime_days
        if max_days is not None and effective_end - effective_start > timedelta(days=max_days):
            policy = "a1b2c3d4-0000-4000-8000-00000000a0a0"
            message = (
                f"Credential lifetime exceeds the max value allowed as per assigned policy "
                f"'{policy}'."
            )
            return graph_error(
                400,
                "CredentialInvalidLifetimeAsPerAppPolicy",
                message,
                now,
                details=[{"code": "InvalidKeyEndDate", "message": message, "target": "EndDate"}],
            )
        name = pc.get("displayName")
        cred = self.portal.add_credential(
            name if isinstance(name, str) else None, start, effective_end
        )
        return json_response(
            {
                "@odata.context": f"{_CONTEXT}#microsoft.graph.passwordCredential",
                **password_json(cred, with_secret=True),
            }
        )

    def remove_password(self, body: dict[str, Any] | None) -> web.Response:
        now = self.portal.now()
        key_id = (body or {}).get("keyId")
        if not isinstance(key_id, str) or not key_id:
            return graph_error(400, "Request_BadRequest", "keyId is required.", now)
        # Graph reads lag its writes: a keyId added less than graph_read_lag_seconds ago
        # is not yet found, and the removal answers as for a missing keyId.
        cred = self.portal.credential(key_id.lower())
        lag = timedelta(seconds=self.portal.faults.graph_read_lag_seconds)
        young = cred is not None and cred.added_at is not None and now < cred.added_at + lag
        if young or not self.portal.remove_credential(key_id.lower()):
            return graph_error(
                400,
                "Request_BadRequest",
                f"No password credential found with keyId '{key_id}'.",
                now,
            )
        return web.Response(status=204)

    # -- Intune ----------------------------------------------------------------------

    def mobile_apps(self, tok: Token, top: str | None, skiptoken: str | None) -> web.Response:
        """``GET /deviceAppManagement/mobileApps``: the call behind "Sync from Intune"."""
        if tok.client_id != self.portal.ids.app_client_id:
            return self._denied()
        try:
            size = int(top) if top is not None else len(MOBILE_APPS)
            offset = int(skiptoken) if skiptoken is not None else 0
        except ValueError:
            return graph_error(
                400, "BadRequest", "Invalid $top or $skiptoken value.", self.portal.now()
            )
        size = max(1, min(size, 999))
        page = [
            {
                "@odata.type": kind,
                "id": _MOBILE_IDS[i],
                "displayName": name,
                "publisher": "Microsoft" if "Microsoft" in name else "Contoso",
                "isFeatured": False,
                "publishingState": "published",
            }
            for i, (name, kind) in enumerate(MOBILE_APPS)
        ][offset : offset + size]
        body: dict[str, Any] = {"@odata.context": f"{_CONTEXT}#deviceAppManagement/mobileApps"}
        if offset + size < len(MOBILE_APPS):
            body["@odata.nextLink"] = (
                f"{self.base_url}{MOBILE_APPS_PATH}?$top={size}&$skiptoken={offset + size}"
            )
        body["value"] = page
        return json_response(body)


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
