"""What a target's journal says about the app after a remediation, folded purely:
when a credential was last removed (the post-removal watch runs one token lifetime
after it), whether a Stop+Start left the site Stopped, and whether ARM ever reported
an activeVersion for the target (the refresh rung learns from it)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from remediation.journal import RunRecord

REMOVAL_STEPS = ("remove_old", "cleanup.remove", "rollback.remove_new", "free_slot")
LEFT_STOPPED = "not Running after Stop+Start"


def last_removal(runs: Sequence[RunRecord]) -> datetime | None:
    """When a credential the app may have used was last removed (journaled done)."""
    last: datetime | None = None
    for r in runs:
        for e in r.entries:
            if e.phase != "done" or e.step not in REMOVAL_STEPS:
                continue
            if e.data.get("removed") or e.data.get("removed_new") or e.data.get("freed_key_id"):
                last = e.ts if last is None else max(last, e.ts)
    return last


def site_left_stopped(runs: Sequence[RunRecord]) -> datetime | None:
    """When the last Stop+Start of the journal left the site Stopped (None: it did not,
    or no Stop+Start ran)."""
    stopped: datetime | None = None
    for r in runs:
        for e in r.entries:
            if not e.step.endswith("reload.stop_start") or e.phase not in ("done", "failed"):
                continue
            failed = e.phase == "failed" and LEFT_STOPPED in str(e.data.get("error") or "")
            stopped = e.ts if failed else None
    return stopped


def refresh_never_active(runs: Sequence[RunRecord]) -> bool:
    """True once a refresh rung ran and its ladder saw no activeVersion, and no ladder
    of the target ever saw one: ARM does not report it for this site."""
    tried = False
    for r in runs:
        refreshed = any(e.step.endswith("reload.refresh") for e in r.entries)
        for e in r.entries:
            if not e.step.endswith("verify") or e.phase not in ("done", "failed"):
                continue
            seen = e.data.get("active_seen")
            if seen is True:
                return False
            if seen is False and refreshed:
                tried = True
    return tried
