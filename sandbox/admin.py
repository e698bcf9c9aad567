"""The sandbox's own control API under ``/_sandbox/``: state, faults, reset, and
expiring or revoking a credential now. Unauthenticated: it listens where the sandbox
listens, which is loopback unless the user chose otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from sandbox import reload
from sandbox.assertions import thumbprints
from sandbox.portal import Portal
from sandbox.snapshot import state_json

PREFIX = "/_sandbox"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, indent=1))


class Admin:
    def __init__(
        self,
        portal: Portal,
        *,
        on_change: Callable[[], None],
        on_faults: Callable[[set[str]], None],
        describe: Callable[[], dict[str, Any]],
        on_reset: Callable[[], None] = lambda: None,
    ) -> None:
        self.portal = portal
        self.on_reset = on_reset
        self.on_change = on_change
        self.on_faults = on_faults
        self.describe = describe

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/state", self.state),
            web.get(f"{PREFIX}/describe", self.get_describe),
            web.get(f"{PREFIX}/faults", self.get_faults),
            web.post(f"{PREFIX}/faults", self.post_faults),
            web.post(f"{PREFIX}/reset", self.reset),
            web.post(f"{PREFIX}/credentials/{{key_id}}/expire", self.expire),
            web.post(f"{PREFIX}/credentials/{{key_id}}/revoke", self.revoke),
            web.post(f"{PREFIX}/keyvault/{{name}}/{{version}}/disable", self.disable),
            web.post(f"{PREFIX}/keyvault/{{name}}/{{version}}/enable", self.enable),
            web.post(f"{PREFIX}/site/refetch", self.refetch),
            web.post(f"{PREFIX}/operator/certificates", self.add_operator_certificate),
        ]

    async def add_operator_certificate(self, request: web.Request) -> web.Response:
        """Register a certificate (``{"certificate": PEM}``) the operator may sign in with,
        as uploading its public part to the app registration does. Not persisted."""
        try:
            pem = str(json.loads(await request.read() or b"{}")["certificate"]).encode()
            s256, s1, key, end = thumbprints(pem)
        except (ValueError, KeyError, TypeError) as exc:
            return _json({"error": f"operator certificate: {exc}"}, 400)
        self.portal.operator_certificates.update({s256: (key, end), s1: (key, end)})
        return _json({"x5t#S256": s256, "x5t": s1, "endDateTime": end.isoformat()})

    async def state(self, request: web.Request) -> web.Response:
        return _json(state_json(self.portal))

    async def get_describe(self, request: web.Request) -> web.Response:
        return _json(self.describe())

    async def get_faults(self, request: web.Request) -> web.Response:
        return _json(self.portal.faults.to_json())

    async def post_faults(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            return _json({"error": f"faults: body is not JSON: {exc}"}, 400)
        try:
            self.portal.faults.apply(data)
        except ValueError as exc:
            return _json({"error": f"faults: {exc}"}, 400)
        self.on_faults(set(data))
        self.on_change()
        return _json(self.portal.faults.to_json())

    async def reset(self, request: web.Request) -> web.Response:
        self.portal.reset()
        self.on_reset()
        self.on_faults({"app_sync_interval_seconds"})
        self.on_change()
        return _json(state_json(self.portal))

    def _missing(self, key_id: str) -> web.Response:
        return _json({"error": f"credentials: no credential with keyId {key_id!r}"}, 404)

    async def expire(self, request: web.Request) -> web.Response:
        key_id = request.match_info["key_id"].lower()
        cred = self.portal.credential(key_id)
        if cred is None:
            return self._missing(key_id)
        cred.end = self.portal.now() - timedelta(seconds=1)
        cred.start = min(cred.start, cred.end - timedelta(seconds=1))
        self.on_change()
        return _json({"keyId": cred.key_id, "endDateTime": cred.end.isoformat()})

    async def revoke(self, request: web.Request) -> web.Response:
        key_id = request.match_info["key_id"].lower()
        if not self.portal.remove_credential(key_id):
            return self._missing(key_id)
        self.on_change()
        return _json({"keyId": key_id, "revoked": True})

    async def disable(self, request: web.Request) -> web.Response:
        return self._set_enabled(request, enabled=False)

    async def enable(self, request: web.Request) -> web.Response:
        return self._set_enabled(request, enabled=True)

    def _set_enabled(self, request: web.Request, *, enabled: bool) -> web.Response:
        """Disable or enable one Key Vault version ("current" names the newest)."""
        name, version = request.match_info["name"], request.match_info["version"]
        found = self.portal.secret_version(name, None if version == "current" else version)
        if found is None:
            return _json({"error": f"keyvault: no version {version!r} of secret {name!r}"}, 404)
        found.enabled = enabled
        found.updated = int(self.portal.now().timestamp())
        self.on_change()
        return _json({"name": name, "version": found.version, "enabled": enabled})

    async def refetch(self, request: web.Request) -> web.Response:
        """The platform's periodic re-fetch of the reference, now (as after 24 h)."""
        reload.resolve(self.portal)
        self.on_change()
        return _json({"resolved_version": self.portal.site.resolved_version})
