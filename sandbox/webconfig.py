"""Microsoft.Web site configuration: app settings and their Key Vault references.

- ``POST .../config/appsettings/list`` and ``PUT .../config/appsettings`` (a
  StringDictionary ``{id, name, type, kind, location, properties}``, as the REST
  spec's ListAppSettings example shows it, plus the location real replies carry); a
  PUT replaces every setting and is a configuration change: the site restarts and
  re-fetches references.
- ``GET .../config/configreferences/appsettings[/{key}]``: each setting holding a
  ``@Microsoft.KeyVault(...)`` reference and its status; ``activeVersion`` only when
  the ``active_version`` fault is ``present``.
- ``POST .../config/configreferences/appsettings/refresh`` (in no REST spec): answers
  at once with the list as it stands; the re-resolve follows (:mod:`sandbox.reload`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from sandbox import reload
from sandbox.portal import Portal
from sandbox.site import APP_SETTING, parse_reference, reference_text
from sandbox.website import busy_response
from sandbox.wire import json_response, web_error

REFS = "/config/configreferences/appsettings"


class WebConfig:
    def __init__(self, portal: Portal, site_id: str, base_url: str) -> None:
        self.portal = portal
        self.site_id = site_id
        self.base_url = base_url

    # -- app settings --------------------------------------------------------------

    def settings_json(self) -> dict[str, Any]:
        return {
            "id": f"{self.site_id}/config/appsettings",
            "name": "appsettings",
            "type": "Microsoft.Web/sites/config",
            "kind": "app",
            "location": "East US",
            "properties": dict(self.portal.site.settings),
        }

    async def list_settings(self, request: web.Request) -> web.Response:
        return json_response(self.settings_json())

    async def put_settings(self, request: web.Request) -> web.Response:
        refused = busy_response(self.portal)
        if refused is not None:
            return refused
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            body = None
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in props.items()
        ):
            return web_error(
                400,
                "BadRequest",
                "The parameter properties has an invalid value: expected an object of "
                "app setting names to string values.",
            )
        reload.configuration_change(self.portal, props)
        return json_response(self.settings_json())

    # -- Key Vault references ------------------------------------------------------

    def references_page(self, request: web.Request) -> web.Response:
        """The reference list, ``arm_page_size`` items a page, ``nextLink`` to the rest."""
        items = self.references_json()
        size = self.portal.faults.arm_page_size or max(len(items), 1)
        try:
            offset = int(request.query.get("$skiptoken", "0"))
        except ValueError:
            return web_error(400, "BadRequest", "The $skiptoken is not valid.")
        next_link = None
        if offset + size < len(items):
            api = request.query["api-version"]
            next_link = (
                f"{self.base_url}{request.path}?api-version={api}&$skiptoken={offset + size}"
            )
        return json_response({"value": items[offset : offset + size], "nextLink": next_link})

    def reference(self, key: str) -> web.Response:
        found = [r for r in self.references_json() if r["name"].lower() == key.lower()]
        if not found:
            return web_error(
                404,
                "NotFound",
                f"Cannot find an app setting named '{key}' with a Key Vault reference.",
            )
        return json_response(found[0])

    async def refresh(self, request: web.Request) -> web.Response:
        reload.refresh(self.portal)
        return json_response({"value": self.references_json()})

    def references_json(self) -> list[dict[str, Any]]:
        """Every app setting with a Key Vault reference: the extras, then the portal's."""
        extras = [
            self._reference(
                f"Extra__Setting{i}",
                reference_text(self.base_url, f"ExtraSecret{i}"),
                f"{i + 1:032x}",
            )
            for i in range(self.portal.faults.extra_key_vault_references)
        ]
        site = self.portal.site
        raw = site.settings.get(APP_SETTING)
        mine = []
        if raw is not None and parse_reference(raw) is not None:
            mine = [self._reference(APP_SETTING, raw, site.resolved_version)]
        return [*extras, *mine]

    def _reference(self, setting: str, raw: str, active: str | None) -> dict[str, Any]:
        ref = parse_reference(raw)
        assert ref is not None  # only settings holding a reference come here
        props: dict[str, Any] = {
            "reference": raw,
            "status": "Resolved" if active is not None else "SecretNotFound",
            "vaultName": f"{self.portal.ids.site_name}-kv",
            "secretName": ref.secret_name,
            "secretVersion": ref.version,
        }
        if self.portal.faults.active_version == "present":
            props["activeVersion"] = active
        props.update(
            identityType="SystemAssigned",
            details=(
                "Reference was successfully resolved."
                if active is not None
                else "Secret not found in the Key Vault, or it has no enabled version."
            ),
            source="KeyVault",
        )
        return {
            "id": f"{self.site_id}{REFS}/{setting}",
            "name": setting,
            "type": "Microsoft.Web/sites/config/configreferences",
            "properties": props,
        }
