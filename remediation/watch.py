"""What a target's journal says about the app after a remediation, folded purely:
when a credential was last removed (the post-removal watch runs one token lifetime
after it), whether a Stop+Start left the site Stopped, and whether ARM ever reported
an activeVersion for the target (the refresh rung learns from it).

Each reads a run's merged facts and its step lists only, never its lines: the daemon
keeps runs without their lines between journal changes
(:func:`remediation.compaction.for_memory`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from remediation.journal import RunRecord

REMOVAL_STEPS = ("remove_old", "cleanup.remove", "rollback.remove_new", "free_slot")
LEFT_STOPPED = ("not Running after Stop+Start", "the site is Stopped")


def _when(r: RunRecord) -> datetime:
    return r.finished or r.started


def last_removal(runs: Sequence[RunRecord]) -> datetime | None:
    """When a credential the app may have used was last removed: the end of the last
    run that removed one (journaled done), or its start while it still runs."""
    last: datetime | None = None
    for r in runs:
        if not any(s in r.done for s in REMOVAL_STEPS):
            continue
        f = r.facts
        if f.get("removed") or f.get("removed_new") or f.get("freed_key_id"):
            last = _when(r) if last is None else max(last, _when(r))
    return last


def _stop_start(steps: Sequence[str]) -> bool:
    return any(s.endswith("reload.stop_start") for s in steps)


def site_left_stopped(runs: Sequence[RunRecord]) -> datetime | None:
    """When the last Stop+Start of the journal left the site Stopped (None: it did not,
    or no Stop+Start ran)."""
    stopped: datetime | None = None
    for r in runs:
        if _stop_start(r.done):
            stopped = None
        if _stop_start(r.failed):
            said = str(r.facts.get("error") or "")
            stopped = _when(r) if any(w in said for w in LEFT_STOPPED) else stopped
    return stopped


def refresh_never_active(runs: Sequence[RunRecord]) -> bool:
    """True once a refresh rung ran and its ladder saw no activeVersion, and no ladder
    of the target ever saw one: ARM does not report it for this site."""
    tried = False
    for r in runs:
        seen = r.facts.get("active_seen")
        if seen is True:
            return False
        refreshed = any(s.endswith("reload.refresh") for s in r.done + r.failed + r.begun)
        if seen is False and refreshed:
            tried = True
    return tried
