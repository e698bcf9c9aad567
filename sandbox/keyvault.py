"""Key Vault secrets: challenge authentication, set, get (latest and by version), list
versions with paging, update properties. Times are epoch seconds, ids 32 hex characters.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from aiohttp import web

from sandbox.entra import VAULT_AUDIENCES
from sandbox.portal import Portal, SecretVersion
from sandbox.wire import bearer, json_response, keyvault_error

_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
_VERSION = re.compile(r"^[0-9a-f]{32}$")
_FWLINK = "https://go.microsoft.com/fwlink/?linkid=2125182"
MAX_TAGS = 15  # per secret (Key Vault's documented limit)


def disabled_response() -> web.Response:
    """What Key Vault answers for a get of a disabled version (Azure SDK issue reports)."""
    return json_response(
        {
            "error": {
                "code": "Forbidden",
                "message": "Operation get is not allowed on a disabled secret.",
                "innererror": {"code": "SecretDisabled"},
            }
        },
        403,
        headers={"x-ms-request-id": str(uuid.uuid4()), "Cache-Control": "no-cache"},
    )


def too_many_tags(tags: dict[str, Any]) -> web.Response | None:
    if len(tags) <= MAX_TAGS:
        return None
    return keyvault_error(400, "BadParameter", "Property has invalid value\r\n")


class KeyVault:
    def __init__(self, portal: Portal, base_url: str) -> None:
        self.portal = portal
        self.base_url = base_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/secrets", self.list_secrets),
            web.get("/secrets/", self.list_secrets),
            web.put("/secrets/{name}", self.set_secret),
            web.get("/secrets/{name}", self.get_secret),
            web.get("/secrets/{name}/", self.get_secret),
            web.get("/secrets/{name}/versions", self.list_versions),
            web.get("/secrets/{name}/{version}", self.get_secret),
            web.patch("/secrets/{name}/{version}", self.update_secret),
        ]

    # -- auth ----------------------------------------------------------------------

    def challenge(self, message: str) -> web.Response:
        tenant = self.portal.ids.tenant_id
        header = (
            f'Bearer authorization="https://login.microsoftonline.com/{tenant}", '
            'resource="https://vault.azure.net"'
        )
        return keyvault_error(401, "Unauthorized", message, headers={"WWW-Authenticate": header})

    def authorize(self, request: web.Request, permission: str) -> web.Response | None:
        raw = bearer(request)
        if raw is None:
            return self.challenge("AKV10000: Request is missing a Bearer or PoP token.")
        tok = self.portal.token(raw)
        if tok is None:
            return self.challenge("AKV10013: Token has expired or is not valid.")
        if tok.audience not in VAULT_AUDIENCES:
            return self.challenge("AKV10022: Invalid audience.")
        if tok.client_id != self.portal.ids.operator_client_id:
            return json_response(
                {
                    "error": {
                        "code": "Forbidden",
                        "message": (
                            f"The user, group or application 'appid={tok.client_id}' does not "
                            f"have secrets {permission} permission on key vault "
                            f"'{self._vault_name()}'."
                        ),
                        "innererror": {"code": "AccessDenied"},
                    }
                },
                403,
            )
        return None

    def _vault_name(self) -> str:
        return f"{self.portal.ids.site_name}-kv"

    # -- helpers ---------------------------------------------------------------------

    def _find(self, name: str) -> tuple[str, list[SecretVersion]] | None:
        for key, versions in self.portal.vault.items():
            if key.lower() == name.lower():
                return key, versions
        return None

    def _not_found(self, what: str) -> web.Response:
        return keyvault_error(
            404,
            "SecretNotFound",
            f"A secret with (name/id) {what} was not found in this key vault. If you recently "
            "deleted this secret you may be able to recover it using the correct recovery "
            f"command. For help resolving this issue, please see {_FWLINK}",
        )

    def _attributes(self, v: SecretVersion) -> dict[str, Any]:
        attrs: dict[str, Any] = {"enabled": v.enabled}
        if v.nbf is not None:
            attrs["nbf"] = v.nbf
        if v.exp is not None:
            attrs["exp"] = v.exp
        attrs.update(
            created=v.created,
            updated=v.updated,
            recoveryLevel="CustomizedRecoverable+Purgeable",
            recoverableDays=7,
        )
        return attrs

    def bundle(self, name: str, v: SecretVersion, *, with_value: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if with_value:
            body["value"] = v.value
        body["id"] = f"{self.base_url}/secrets/{name}/{v.version}"
        if v.content_type is not None:
            body["contentType"] = v.content_type
        body["attributes"] = self._attributes(v)
        if v.tags:
            body["tags"] = v.tags
        return body

    # -- handlers --------------------------------------------------------------------

    async def set_secret(self, request: web.Request) -> web.Response:
        denied = self.authorize(request, "set")
        if denied is not None:
            return denied
        name = request.match_info["name"]
        if not _NAME.match(name):
            return keyvault_error(
                400,
                "BadParameter",
                "The request URI contains an invalid name: " + name,
            )
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            return keyvault_error(400, "BadParameter", "Property 'value' is required.")
        tags = body.get("tags") or {}
        attrs = body.get("attributes") or {}
        if not isinstance(tags, dict) or not isinstance(attrs, dict):
            return keyvault_error(400, "BadParameter", "Invalid tags or attributes.")
        refused = too_many_tags(tags)
        if refused is not None:
            return refused
        found = self._find(name)
        stored_name = found[0] if found else name
        v = self.portal.set_secret(
            stored_name,
            body["value"],
            tags={str(k): str(val) for k, val in tags.items()},
            content_type=body.get("contentType"),
            enabled=bool(attrs.get("enabled", True)),
            exp=attrs.get("exp"),
            nbf=attrs.get("nbf"),
        )
        return json_response(self.bundle(stored_name, v, with_value=True))

    async def get_secret(self, request: web.Request) -> web.Response:
        denied = self.authorize(request, "get")
        if denied is not None:
            return denied
        name = request.match_info["name"]
        version = request.match_info.get("version", "")
        found = self._find(name)
        if found is None or not found[1]:
            return self._not_found(name if not version else f"{name}/{version}")
        stored, versions = found
        if not version:
            v: SecretVersion | None = versions[-1]
        else:
            v = next((x for x in versions if x.version == version.lower()), None)
        if v is None:
            return self._not_found(f"{name}/{version}")
        if not v.enabled:
            return disabled_response()
        return json_response(self.bundle(stored, v, with_value=True))

    async def update_secret(self, request: web.Request) -> web.Response:
        denied = self.authorize(request, "set")
        if denied is not None:
            return denied
        name, version = request.match_info["name"], request.match_info["version"]
        found = self._find(name)
        v = None if found is None else next((x for x in found[1] if x.version == version), None)
        if found is None or v is None:
            return self._not_found(f"{name}/{version}")
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return keyvault_error(400, "BadParameter", "Invalid request body.")
        if isinstance(body.get("tags"), dict):
            refused = too_many_tags(body["tags"])
            if refused is not None:
                return refused
            v.tags = {str(k): str(val) for k, val in body["tags"].items()}
        if "contentType" in body:
            v.content_type = body["contentType"]
        attrs = body.get("attributes") or {}
        if isinstance(attrs, dict):
            if "enabled" in attrs:
                v.enabled = bool(attrs["enabled"])
            if "exp" in attrs:
                v.exp = attrs["exp"]
            if "nbf" in attrs:
                v.nbf = attrs["nbf"]
        v.updated = int(self.portal.now().timestamp())
        return json_response(self.bundle(found[0], v, with_value=False))

    def _page(self, request: web.Request, items: list[dict[str, Any]], path: str) -> web.Response:
        try:
            size = int(request.query.get("maxresults", "25"))
            offset = int(request.query.get("$skiptoken", "0"))
        except ValueError:
            return keyvault_error(400, "BadParameter", "Invalid maxresults or $skiptoken.")
        if not 1 <= size <= 25:
            return keyvault_error(
                400, "BadParameter", "The value of maxresults must be between 1 and 25."
            )
        page = items[offset : offset + size]
        next_link = None
        if offset + size < len(items):
            api = request.query.get("api-version", "7.5")
            next_link = (
                f"{self.base_url}{path}?api-version={api}"
                f"&$skiptoken={offset + size}&maxresults={size}"
            )
        return json_response({"value": page, "nextLink": next_link})

    async def list_versions(self, request: web.Request) -> web.Response:
        denied = self.authorize(request, "list")
        if denied is not None:
            return denied
        name = request.match_info["name"]
        found = self._find(name)
        if found is None:
            return self._not_found(name)
        stored, versions = found
        items = [self.bundle(stored, v, with_value=False) for v in versions]
        return self._page(request, items, f"/secrets/{stored}/versions")

    async def list_secrets(self, request: web.Request) -> web.Response:
        denied = self.authorize(request, "list")
        if denied is not None:
            return denied
        items = []
        for name, versions in sorted(self.portal.vault.items()):
            if versions:
                b = self.bundle(name, versions[-1], with_value=False)
                b["id"] = f"{self.base_url}/secrets/{name}"
                items.append(b)
        return self._page(request, items, "/secrets")
