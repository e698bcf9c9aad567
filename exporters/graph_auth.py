"""Graph auth: the Key Vault value at the token endpoint, then the app's Graph call.

This is the runbook's "Sync from Intune" check done from outside: if it fails with an
auth error, the portal's Graph calls fail the same way.
"""

from __future__ import annotations

from exporters._errors import describe
from exporters.observations import GraphAuthObservation
from tenant.ports import TargetClients


async def probe_graph_auth(clients: TargetClients, graph_probe_url: str) -> GraphAuthObservation:
    try:
        current = await clients.vault.get_current()
    except Exception as exc:
        return GraphAuthObservation(
            ok=False, token_ok=False, error=describe("read Key Vault secret", exc)
        )
    version = current.version
    if current.value is None:
        return GraphAuthObservation(
            ok=False,
            token_ok=False,
            keyvault_version=version,
            error="read Key Vault secret: the current version has no value",
        )
    try:
        client_id = await clients.app.client_id()
        outcome = await clients.entra.try_secret(client_id, current.value)
    except Exception as exc:
        return GraphAuthObservation(
            ok=False,
            token_ok=False,
            keyvault_version=version,
            error=describe("token request with the Key Vault value", exc),
        )
    if not outcome.ok or outcome.access_token is None:
        code = f" AADSTS{outcome.aadsts}" if outcome.aadsts else ""
        return GraphAuthObservation(
            ok=False,
            token_ok=False,
            token_failure=outcome.failure,
            aadsts=outcome.aadsts,
            keyvault_version=version,
            error=(
                "token request with the Key Vault value: "
                f"{outcome.error or (outcome.failure.value if outcome.failure else 'refused')}"
                f" (HTTP {outcome.status}{code})"
            ),
        )
    try:
        call = await clients.entra.call_graph(outcome.access_token, graph_probe_url)
    except Exception as exc:
        return GraphAuthObservation(
            ok=False,
            token_ok=True,
            keyvault_version=version,
            error=describe(f"GET {graph_probe_url}", exc),
        )
    ok = 200 <= call.status < 300
    return GraphAuthObservation(
        ok=ok,
        token_ok=True,
        graph_status=call.status,
        graph_code=call.code,
        keyvault_version=version,
        error=None
        if ok
        else f"GET {graph_probe_url}: HTTP {call.status} {call.code or ''}".rstrip(),
    )
