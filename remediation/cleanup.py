"""Cleanup: the end of a pending removal. A rotation (or rollback) kept a credential
because nothing proved the app had left it; the Remediator found proof since (or the
overlap window ended) and starts this run: remove the credentials, then check the app
once more. A failing app then is healed at once (``Outcome.heal_now``).
"""

from __future__ import annotations

from dataclasses import replace

from remediation.reload import latest_start, wait_recycled
from remediation.removal import recheck, remove_keys
from remediation.results import PendingRemoval, RemoveKeys
from remediation.runner import Run


async def cleanup(run: Run) -> tuple[str, str]:
    r = run.rec
    pending = run.facts.pending()
    if pending is None:
        return "nothing_to_do", "nothing pending removal"
    proof = str(r.facts.get("proof") or "")
    keys = pending.pending_key_ids
    if r.facts.get("recycle"):
        if not r.is_done("cleanup.recycle"):
            await run.step("cleanup.recycle", lambda: recycle(run, pending), metric_step="reload")
        return "success", (
            f"recycled every worker (a configuration change) so that none predates the "
            f"cache; {list(keys)} stay pending until the next check proves it ({proof})"
        )
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


async def recycle(run: Run, pending: PendingRemoval) -> PendingRemoval:
    """A configuration change (it re-fetches the reference before it recycles the
    workers), waited out; the pending removal is journaled again with what it
    established, so the next check decides on workers started after it."""
    site = run.clients.site
    mark = await latest_start(run)
    began = run.clock.now()
    await run.call(
        "cleanup.recycle",
        "configuration change",
        lambda: site.configuration_change(f"{run.rec.run} {began:%Y-%m-%dT%H:%M:%SZ}"),
        attempts=run.settings.transition_attempts,
    )
    await wait_recycled(run, "cleanup.recycle", mark)
    again = replace(
        pending,
        cache_at=began.isoformat(),
        cache_mark=mark.isoformat() if mark is not None else None,
        recycled_at=began.isoformat(),
    )
    await run.write("pending_removal", "done", again)
    return again
