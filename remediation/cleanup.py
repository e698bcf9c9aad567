"""Cleanup: the end of a pending removal. A rotation (or rollback) kept a credential
because nothing proved the app had left it; the Remediator found proof since (or the
overlap window ended) and starts this run: remove the credentials, then check the app
once more. A failing app then is healed at once (``Outcome.heal_now``).
"""

from __future__ import annotations

from remediation.removal import recheck, remove_keys
from remediation.results import RemoveKeys
from remediation.runner import Run


async def cleanup(run: Run) -> tuple[str, str]:
    r = run.rec
    pending = run.facts.pending()
    if pending is None:
        return "nothing_to_do", "nothing pending removal"
    proof = str(r.facts.get("proof") or "")
    keys = pending.pending_key_ids
    if not r.is_done("cleanup.remove"):
        await run.step(
            "cleanup.remove",
            lambda: remove_keys(run, "cleanup.remove", keys, proof),
            RemoveKeys(keys),
            metric_step="remove_old",
        )
    if not r.is_done("cleanup.recheck"):
        await run.step(
            "cleanup.recheck", lambda: recheck(run, "cleanup.recheck"), metric_step="recheck"
        )
    return "success", f"removed {list(keys)} ({proof}); the app still works"
