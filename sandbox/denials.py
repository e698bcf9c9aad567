"""An injected 403, worded as each service words a missing role or a closed firewall.

``POST faults {"inject": [{"service": "keyvault", "status": 403, "code":
"ForbiddenByFirewall"}]}`` answers like a vault whose firewall refuses the caller;
docs/sandbox.md lists the codes. Shapes: Graph's OData error, Key Vault's
``{"error": {"code": "Forbidden", "innererror": {"code": ...}}}`` and ARM's front door
``AuthorizationFailed`` (docs/azure-behaviour.md, "Refusals an operator's setup causes").
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from aiohttp import web

from sandbox.wire import arm_error, graph_error, json_response

# Key Vault's inner codes for a 403 (the top-level code is always "Forbidden").
KEYVAULT_INNER = ("ForbiddenByRbac", "AccessDenied", "ForbiddenByFirewall", "ForbiddenByConnection")
_SITE = re.compile(
    r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Web/sites/[^/]+)(/.*)?$",
    re.IGNORECASE,
)


def forbidden(
    service: str,
    code: str | None,
    *,
    method: str,
    path: str,
    operator_client_id: str,
    tenant_id: str,
    vault_name: str,
    now: datetime,
    headers: dict[str, str],
) -> web.Response | None:
    """The 403 ``service`` sends for a missing permission (None: not modelled here)."""
    if service == "graph":
        return graph_error(
            403,
            code or "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
            now,
            headers=headers,
        )
    if service == "keyvault":
        inner = code if code in KEYVAULT_INNER else "ForbiddenByRbac"
        caller = f"appid={operator_client_id};oid={operator_client_id};iss=https://sts.windows.net/{tenant_id}/"
        vault = f"{vault_name};location=westeurope"
        if inner == "ForbiddenByFirewall":
            message = (
                "Client address is not authorized and caller is not a trusted service.\r\n"
                f"Client address: 203.0.113.7\r\nCaller: {caller}\r\nVault: {vault}"
            )
        elif inner == "ForbiddenByConnection":
            message = (
                "Public network access is disabled and request is not from a trusted service "
                f"nor via an approved private link.\r\nCaller: {caller}\r\nVault: {vault}"
            )
        elif inner == "AccessDenied":
            verb = "set" if method.upper() in ("PUT", "PATCH") else "get"
            message = (
                f"The user, group or application '{caller}' does not have secrets {verb} "
                f"permission on key vault '{vault}'."
            )
        else:
            action = "setSecret" if method.upper() in ("PUT", "PATCH") else "getSecret"
            message = (
                "Caller is not authorized to perform action on resource.\r\nIf role "
                "assignments, deny assignments or role definitions were changed recently, "
                f"please observe propagation time.\r\nCaller: {caller}\r\nAction: "
                f"'Microsoft.KeyVault/vaults/secrets/{action}/action'\r\nResource: "
                f"'{path.lower()}'\r\nAssignment: (not found)\r\nVault: {vault}\r\n"
            )
        return json_response(
            {"error": {"code": "Forbidden", "message": message, "innererror": {"code": inner}}},
            403,
            headers={"x-ms-request-id": str(uuid.uuid4()), "Cache-Control": "no-cache", **headers},
        )
    if service == "arm":
        match = _SITE.match(path)
        scope = match.group(1) if match else path
        rest = (match.group(2) or "") if match else ""
        sub = "/".join(p for p in rest.split("/") if p and not p.startswith("appsettings"))
        kind = (
            "read" if method.upper() == "GET" else "action" if method.upper() == "POST" else "write"
        )
        action = "/".join(p for p in ("Microsoft.Web/sites", sub, kind) if p)
        return arm_error(
            403,
            code or "AuthorizationFailed",
            f"The client '{operator_client_id}' with object id '{operator_client_id}' does not "
            f"have authorization to perform action '{action}' over scope '{scope}' or the "
            "scope is invalid. If access was recently granted, please refresh your credentials.",
            headers=headers,
        )
    return None
