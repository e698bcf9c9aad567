"""Removing a credential the app used: now with proof, or pending for the overlap
window. Shared by the rotation (the old credential) and the rollback (the new one).

:func:`settle_old` gathers the evidence (:mod:`remediation.proof`), asks the pure
:func:`remediation.decisions.removal`, and either removes the credentials (journaled
with the proof) or journals them as ``pending_removal`` and raises
``secretwarden_credential_pending_removal``. :func:`recheck` runs after a removal: the
app's own action and the Graph probe must still pass.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from remediation.decisions import Verdict
from remediation.proof import decide, gather, reloaded_of
from remediation.results import PendingRemoval, Rechecked, Removed, RemoveKeys
from remediation.runner import Run, StepError


def reloaded_at(run: Run, prefix: str = "") -> datetime:
    """When the last rung of this run's ladder was applied (the reload that should
    have moved the app), else when it verified, else now."""
    for e in reversed(run.rec.entries):
        if e.phase == "done" and e.step.startswith(f"{prefix}reload."):
            return e.ts
    for e in reversed(run.rec.entries):
        if e.phase == "done" and e.step == f"{prefix}verify":
            return e.ts
    return run.clock.now()


def ladder_facts(run: Run, prefix: str = "") -> tuple[str | None, str | None, str | None]:
    """(cache_at, cache_mark, recycled_at) as this run's ``{prefix}verify`` journaled
    them (the rollback's own ladder for the rollback, never the forward one's)."""
    for e in reversed(run.rec.entries):
        # done or failed: what a ladder established holds either way
        if e.phase in ("done", "failed") and e.step == f"{prefix}verify":
            got = [e.data.get(k) for k in ("cache_at", "cache_mark", "recycled_at")]
            a, b, c = (str(v) if v else None for v in got)
            return a, b, c
    return None, None, None


async def settle_old(
    run: Run, step: str, old: tuple[str, ...], keep_key: str, keep_version: str
) -> None:
    """Remove ``old`` now with proof the app left them, or journal them as pending
    removal for the overlap window (:func:`remediation.decisions.removal` decides)."""
    if not old:
        await run.step(
            step, lambda: remove_keys(run, step, (), "no old credential"), RemoveKeys(())
        )
        return
    prefix = step.split(".")[0] + "." if "." in step else ""
    at = reloaded_at(run, prefix)
    ladder = ladder_facts(run, prefix)
    now = run.clock.now()
    until = now + run.settings.overlap_window
    pending = PendingRemoval(
        old,
        keep_key,
        keep_version,
        at.isoformat(),
        now.isoformat(),
        until.isoformat(),
        "",
        *ladder,
    )
    gathered = await gather(
        run.clients,
        app_id=run.facts.client_id,
        keep_key_id=keep_key,
        keep_version=keep_version,
        old_key_ids=old,
        since=at,
        now=now,
        reloaded=reloaded_of(pending),
        settings=run.settings,
    )
    for note in gathered.notes:
        run.emit("proof", "info", note)
    verdict = decide(pending, gathered, now, run.settings)
    if verdict.verdict is Verdict.REMOVE:
        await run.step(step, lambda: remove_keys(run, step, old, verdict.proof), RemoveKeys(old))
        return
    pending = replace(pending, pending_why=verdict.proof)

    async def keep() -> PendingRemoval:
        return pending

    await run.step("pending_removal", keep, metric_step="pending_removal")
    if run.metrics and not run.dry_run:
        for key in old:
            run.metrics.pending_removal.labels(run.target, key).set(1)
            run.metrics.pending_until.labels(run.target, key).set(until.timestamp())


async def remove_keys(run: Run, step: str, keys: tuple[str, ...], proof: str) -> Removed:
    for key_id in keys:
        await run.remove_password(step, key_id)
    if run.metrics:
        for key_id in keys:
            run.metrics.pending_removal.remove_by_labels({"target": run.target, "key_id": key_id})
            run.metrics.pending_until.remove_by_labels({"target": run.target, "key_id": key_id})
    return Removed(keys, proof)


async def recheck(run: Run, step: str) -> Rechecked:
    """After a removal, the app's own action and the Graph probe once more. A failure
    is raised: the Remediator heals at once."""
    problems: list[str] = []
    action = await run.prober.app_action()
    if action is not None and not action.ok:
        problems.append(f"the app's own action failed (HTTP {action.status}: {action.detail})")
    g = await run.prober.graph_auth()
    if not g.ok:
        problems.append(f"Graph probe failed ({g.reason}: {g.error})")
    if problems:
        raise StepError(
            run.target, step, "after removing the old credential: " + "; ".join(problems)
        )
    what = "app action OK, Graph OK" if action is not None else "Graph OK"
    return Rechecked(True, what)
