"""Rollback: verification of the new secret never passed, so the previous value goes
back into Key Vault (as a new version), the app is reloaded onto it, and only then is
the new credential removed. A previous value Entra does not accept is never restored:
the new credential may be the only one that works.
"""

from __future__ import annotations

from remediation.reload import reload_and_verify
from remediation.removal import settle_old
from remediation.results import Restored, RestoreFrom
from remediation.runner import Run, StepError

ROLLBACK_TAG = "secretwarden-rollback-of"


async def rollback(run: Run) -> tuple[str, str]:
    """Verification failed: put the previous value back, drop the new one."""
    r = run.rec
    reason = run.facts.reason or "verification failed"
    run.emit("rollback", "info", f"verification failed ({reason}); rolling back")
    if not r.is_done("rollback.restore"):
        if r.was_begun("rollback.restore"):
            current = await run.call(
                "rollback.restore", "read Key Vault secret", run.clients.vault.get_current
            )
            if current.tags.get(ROLLBACK_TAG) == r.run:
                await run.write("rollback.restore", "done", Restored(current.version))
        if not r.is_done("rollback.restore"):
            await run.step(
                "rollback.restore",
                lambda: restore(run),
                RestoreFrom(run.facts.old_version),
                metric_step="rollback",
            )
    restored = str(run.facts.restored_version)
    if not r.is_done("rollback.verify"):
        # The app must be back on the previous value before the new credential goes;
        # its health is not the question here (it failed with both values).
        ok = await reload_and_verify(
            run, restored, prefix="rollback.", health=False, graph=False, action=False
        )
        if not ok:
            raise StepError(
                run.target,
                "rollback",
                f"verification of the new secret failed ({reason}) and the app did not "
                f"return to the restored version {restored}; the new credential "
                f"{run.facts.new_key_id} was kept so the app keeps working",
            )
    new_key = run.facts.new_key_id
    if not (r.is_done("rollback.remove_new") or r.is_done("pending_removal")):
        old = run.facts.old_key_ids
        keep = old[0] if len(old) == 1 else ""
        await settle_old(run, "rollback.remove_new", (new_key,) if new_key else (), keep, restored)
    pend = run.facts.pending() if r.is_done("pending_removal") else None
    what = (
        f"new credential {new_key} pending removal until {pend.pending_until}: {pend.pending_why}"
        if pend
        else "new credential removed"
    )
    return "rolled_back", (
        f"rolled back: new secret never verified ({reason}); Key Vault version "
        f"{restored} holds the previous value, {what}"
    )


async def restore(run: Run) -> Restored:
    f = run.facts
    old = await run.call(
        "rollback.restore",
        "read previous version",
        lambda: run.clients.vault.get_version(f.old_version),
    )
    if old.value is None:
        raise StepError(run.target, "rollback.restore", "previous version has no value")
    # Rolling back removes the new credential, which Entra has accepted: only do it
    # when the value going back works too, or the app would be left with none.
    proof = await run.clients.entra.try_secret(f.client_id, old.value)
    if not proof.ok:
        why = proof.failure.value if proof.failure else proof.error
        verdict = "is rejected by Entra" if proof.secret_rejected else "cannot be proven"
        raise StepError(
            run.target,
            "rollback.restore",
            f"the previous value (version {f.old_version}) {verdict} ({why}); "
            f"not rolling back: Key Vault keeps the new version {f.new_version} "
            f"and its credential {f.new_key_id}, the only one known to work",
            permanent=proof.secret_rejected,
        )
    tags = dict(old.tags)
    tags[ROLLBACK_TAG] = run.rec.run
    value = old.value
    v = await run.call(
        "rollback.restore", "set secret", lambda: run.clients.vault.set_value(value, tags)
    )
    return Restored(v.version)
