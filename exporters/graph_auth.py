"""Graph auth: the Key Vault value at the token endpoint, then the app's Graph call.

This is the runbook's "Sync from Intune" check done from outside: if it fails with an
auth error, the portal's Graph calls fail the same way.

With ``reads`` (the daemon's scheduled runs) a healthy answer is reused for a while
(exporters/reads.py: the secret re-tested every few minutes, the Graph call less
often); a failing one is re-tested on every run.
"""

from __future__ import annotations

from exporters._errors import describe
from exporters.observations import GraphAuthObservation
from exporters.reads import TargetReads
from tenant.models import SecretVersion, TokenOutcome
from tenant.ports import TargetClients


async def _test(
    clients: TargetClients, client_id: str, current: SecretVersion, reads: TargetReads | None
) -> tuple[SecretVersion, TokenOutcome]:
    """The token request with the Key Vault value; a refusal of a value read earlier is
    tried again with the value Key Vault holds now (a rotation may have replaced it)."""
    assert current.value is not None
    if reads is None:
        return current, await clients.entra.try_secret(client_id, current.value)
    outcome = await reads.try_secret(clients.entra, client_id, current)
    if outcome.ok:
        return current, outcome
    now = await reads.current_secret(clients.vault, fresh=True)
    if now.version == current.version or now.value is None:
        return current, outcome
    return now, await reads.try_secret(clients.entra, client_id, now)


async def probe_graph_auth(
    clients: TargetClients, graph_probe_url: str, reads: TargetReads | None = None
) -> GraphAuthObservation:
    try:
        if reads is None:
            current = await clients.vault.get_current()
        else:
            current = await reads.current_secret(clients.vault)
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
        current, outcome = await _test(clients, client_id, current, reads)
        version = current.version
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
    if reads is not None and not reads.graph_call_due(graph_probe_url):
        # Entra accepts the secret; Graph accepted the app's token within the pace.
        return GraphAuthObservation(ok=True, token_ok=True, keyvault_version=version)
    try:
        call = await clients.entra.call_graph(outcome.access_token, graph_probe_url)
        if reads is not None:
            reads.graph_called(graph_probe_url, call)
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
