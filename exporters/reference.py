"""The App Service's Key Vault reference: resolved, and holding the current version?

ARM's ``config/configreferences/appsettings`` says it directly, so a stale reference
(the runbook's "restart didn't pick up the new value") is seen, not guessed.
"""

from __future__ import annotations

from exporters._errors import describe
from exporters.observations import ReferenceObservation
from exporters.reads import TargetReads
from tenant.ports import TargetClients


async def probe_reference(
    clients: TargetClients, reads: TargetReads | None = None
) -> ReferenceObservation:
    """With ``reads`` the Key Vault version comes from the shared read; a reference
    that looks stale against it is compared with a fresh read before it is reported."""
    ref = clients.ref
    try:
        refs = await clients.site.key_vault_references()
    except Exception as exc:
        return ReferenceObservation(ok=False, error=describe("read Key Vault references", exc))
    found = refs[0] if refs else None  # the tenant client returns only this target's
    if found is None:
        what = (
            f"app setting {ref.app_setting} is not a Key Vault reference"
            if ref.app_setting
            else f"no app setting references secret {ref.secret_name}"
        )
        return ReferenceObservation(ok=False, error=f"read Key Vault references: {what}")
    try:
        if reads is None:
            current = await clients.vault.get_current()
        else:
            current = await reads.current_secret(clients.vault)
            held = found.active_version or found.secret_version
            if found.resolved and held is not None and held != current.version:
                current = await reads.current_secret(clients.vault, fresh=True)
    except Exception as exc:
        return ReferenceObservation(
            ok=False,
            reference=found,
            resolved=found.resolved,
            error=describe("read Key Vault secret", exc),
        )
    held = found.active_version or found.secret_version
    stale = found.resolved and held is not None and held != current.version
    return ReferenceObservation(
        ok=True,
        reference=found,
        current_version=current.version,
        resolved=found.resolved,
        stale=stale,
    )
