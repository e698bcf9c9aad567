"""Keep each target's journal bounded: drop finished runs the guards no longer need.

The journal is append-only while runs happen; after a run ends, :func:`maybe_compact`
(called with the target's lock held, so no other process appends meanwhile) rewrites it
without the runs :func:`needed` leaves out, once it has grown past ``threshold`` bytes
and at least half of its runs can go.
The rewrite is atomic: a new file beside it, fsync'd, renamed over the old one, and the
directory fsync'd, so a crash at any point leaves the old journal or the new one, whole.

What the guards need (remediation.guards replays it): every run after the last settled
one (the failure streak: backoff, circuit), the runs that count toward the daily cap
and finished in the last 24 h, and the last rotation (its metric). Also, from the
oldest run that left a credential pending removal (journaled as ``pending_removal``)
that no later step removed, each run that journaled a pending removal or a removal:
the lines :func:`remediation.proof.pending_removals` reads; and the later removals of
any kept run's pending credentials. The runs in between may go: a removal waits up to
the overlap window (24 h), and keeping every run of it grew the journal, and the
daemon's memory with it, for as long as one credential waited (issue 9's soak).
Beyond that the
journal keeps the last ``recent`` runs for ``secretwarden status`` and any unfinished
run. So the decisions made from the compacted journal are those made from the whole
one, now and at any later time (tests/unit/test_compaction.py checks it on random
histories), and ``status`` stays fast after a year of runs (bench/journal.py).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta

import structlog

from remediation.guards import counts_as_rotation
from remediation.journal import Journal, RunRecord

log = structlog.get_logger("secretwarden.remediation")

SETTLED = ("success", "nothing_to_do")
THRESHOLD = 64 * 1024  # bytes: about forty runs
RECENT = 10  # what `secretwarden status` shows
CAP_WINDOW = timedelta(days=1)  # remediation.guards' daily cap


def needed(runs: list[RunRecord], now: datetime, recent: int = RECENT) -> list[RunRecord]:
    """The runs (oldest first) that the guards, the last-rotation metric and ``status``
    still need at ``now`` or later."""
    keep: set[int] = set(range(max(0, len(runs) - recent), len(runs)))
    last_settled = max(
        (i for i, r in enumerate(runs) if r.finished and r.outcome in SETTLED), default=-1
    )
    keep.update(_removal_runs(runs))
    rotated = [i for i, r in enumerate(runs) if r.finished and r.facts.get("rotated")]
    if rotated:
        keep.add(rotated[-1])
    for i, r in enumerate(runs):
        if r.finished is None or i > last_settled:
            keep.add(i)  # unfinished, or part of the current failure streak
        elif counts_as_rotation(r) and r.finished > now - CAP_WINDOW:
            keep.add(i)
    return [runs[i] for i in sorted(keep | _removals_of(runs, keep))]


def _removals_of(runs: list[RunRecord], keep: set[int]) -> set[int]:
    """The later runs that removed a credential some kept run journaled as pending
    removal: without them, a run kept for the guards would bring its pending removal
    back (and the daemon would try to remove a credential already gone)."""
    pending: set[str] = set()
    extra: set[int] = set()
    for i, r in enumerate(runs):
        for e in r.entries:
            if e.phase != "done":
                continue
            if e.step == PENDING_STEP and (i in keep or i in extra):
                pending.update(str(k) for k in e.data.get("pending_key_ids") or ())
            elif e.step in REMOVAL_STEPS and _removed(e.data) & pending:
                extra.add(i)
    return extra


def _removed(data: dict[str, object]) -> set[str]:
    removed = data.get("removed")
    gone = {str(k) for k in removed} if isinstance(removed, list | tuple) else set()
    if data.get("removed_new"):
        gone.add(str(data["removed_new"]))
    return gone


# Steps that journal an old credential kept until proof (issue 8's overlap window), and
# the steps that later remove credentials; see remediation.proof where they exist.
PENDING_STEP = "pending_removal"
REMOVAL_STEPS = ("remove_old", "rollback.remove_new", "cleanup.remove")


def _oldest_pending_removal(runs: list[RunRecord]) -> int | None:
    """Index of the oldest run that journaled a credential pending removal which no
    later step removed: it and everything after it stay, or the daemon would forget a
    credential it still has to remove."""
    pending: dict[str, int] = {}  # keyId -> index of the run that left it pending
    for i, r in enumerate(runs):
        for e in r.entries:
            if e.phase != "done":
                continue
            if e.step == PENDING_STEP:
                for key in e.data.get("pending_key_ids") or ():
                    pending.setdefault(str(key), i)
            elif e.step in REMOVAL_STEPS:
                gone = {str(k) for k in e.data.get("removed") or ()}
                if e.data.get("removed_new"):
                    gone.add(str(e.data["removed_new"]))
                for key in gone:
                    pending.pop(key, None)
    return min(pending.values(), default=None)


def _journals_removal(r: RunRecord) -> bool:
    return any(
        e.phase == "done" and (e.step == PENDING_STEP or e.step in REMOVAL_STEPS) for e in r.entries
    )


def _removal_runs(runs: list[RunRecord]) -> set[int]:
    """Indexes of the runs whose lines say which credential is still to be removed:
    from the oldest removal still pending onward, each run that journaled a pending
    removal or a removal (the only lines ``pending_removals`` reads)."""
    start = _oldest_pending_removal(runs)
    if start is None:
        return set()
    return {i for i in range(start, len(runs)) if _journals_removal(runs[i])}


def for_memory(runs: list[RunRecord]) -> list[RunRecord]:
    """``runs`` as the daemon keeps them between journal changes: without their lines
    (the guards read only each run's facts), except the runs whose lines say which
    credential is still to be removed (:func:`_removal_runs`)."""
    keep_lines = _removal_runs(runs)
    return [
        r if i in keep_lines else dataclasses.replace(r, entries=[]) for i, r in enumerate(runs)
    ]


def maybe_compact(journal: Journal, now: datetime, threshold: int = THRESHOLD) -> bool:
    """Compact ``journal`` if it is larger than ``threshold``; the caller holds the
    target's lock. True when it rewrote the file."""
    try:
        size = journal.path.stat().st_size
    except FileNotFoundError:
        return False
    if size <= threshold:
        return False
    runs = journal.runs()
    kept = needed(runs, now)
    if len(kept) > len(runs) // 2:
        # Rewrite only when it at least halves the journal: never a whole rewrite per
        # run, and the file stays under max(threshold, twice what the guards need).
        return False
    rewrite(journal, kept)
    log.info(
        "journal compacted",
        target=journal.target,
        runs_before=len(runs),
        runs_after=len(kept),
        bytes_before=size,
        bytes_after=journal.path.stat().st_size,
    )
    return True


def rewrite(journal: Journal, runs: list[RunRecord]) -> None:
    """Replace the journal with ``runs``' lines, atomically (write, fsync, rename,
    fsync the directory)."""
    text = "".join(e.to_json() + "\n" for r in runs for e in r.entries)
    tmp = journal.path.with_name(journal.path.name + ".compact")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, journal.path)
    dir_fd = os.open(journal.dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
