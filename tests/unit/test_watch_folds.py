"""What the journal says after a remediation (issue 13), folded purely: the last
removal (the post-removal watch), a site left Stopped, and whether the refresh rung
ever saw an activeVersion (so the ladder stops waiting it out)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from remediation.journal import RUN, Entry, RunRecord
from remediation.watch import last_removal, refresh_never_active, site_left_stopped
from tenant.requestid import PREFIX, is_own, new_request_id

T0 = datetime(2026, 6, 1, tzinfo=UTC)
M = timedelta(minutes=1)


def run(name: str, *lines: tuple[int, str, str, dict[str, Any]]) -> RunRecord:
    """A finished run (its end a minute after its last line), kept as the daemon keeps
    runs in memory: facts and step lists, no lines (compaction.for_memory)."""
    r = RunRecord(run=name, action="rotate", started=T0)
    for minute, step, phase, data in lines:
        r.apply(Entry(T0 + minute * M, name, "rotate", step, phase, data))  # type: ignore[arg-type]
    end = max(m for m, *_ in lines) + 1 if lines else 0
    r.apply(Entry(T0 + end * M, name, "rotate", RUN, "done", {"outcome": "success"}))
    return dataclasses.replace(r, entries=[])


REMOVED = (5, "remove_old", "done", {"removed": ["k1"], "proof": "p"})
NONE_REMOVED = (5, "remove_old", "done", {"removed": [], "proof": "no old credential"})
CLEANED = (9, "cleanup.remove", "done", {"removed": ["k1"]})
ROLLED = (7, "rollback.remove_new", "done", {"removed": ["k2"]})
FREED = (3, "free_slot", "done", {"freed_key_id": "k0"})
FAILED_REMOVE = (6, "remove_old", "failed", {"error": "x"})


@pytest.mark.parametrize(
    ("runs", "last"),
    [
        ([], None),
        ([run("a", NONE_REMOVED)], None),
        ([run("a", REMOVED)], T0 + 6 * M),  # when the run that removed it ended
        ([run("a", REMOVED), run("b", CLEANED)], T0 + 10 * M),
        ([run("b", CLEANED), run("a", REMOVED)], T0 + 10 * M),  # the latest, in any order
        ([run("a", ROLLED)], T0 + 8 * M),
        ([run("a", FREED)], T0 + 4 * M),
        ([run("a", FAILED_REMOVE)], None),
    ],
)
def test_last_removal(runs: list[RunRecord], last: datetime | None) -> None:
    assert last_removal(runs) == last


STOP_FAILED = (
    4,
    "reload.stop_start",
    "failed",
    {"error": "the site is not Running after Stop+Start (state Stopped); start it by hand"},
)
STOP_OK = (8, "reload.stop_start", "done", {"rung": "stop_start"})
STOP_OTHER = (4, "reload.stop_start", "failed", {"error": "stop: 409 busy"})


@pytest.mark.parametrize(
    ("runs", "stopped"),
    [
        ([], None),
        ([run("a", STOP_FAILED)], T0 + 5 * M),
        ([run("a", STOP_FAILED), run("b", STOP_OK)], None),  # a later Stop+Start worked
        ([run("a", STOP_OK), run("b", STOP_FAILED)], T0 + 5 * M),
        ([run("a", STOP_OTHER)], None),  # a failure that did not leave it Stopped
        ([run("a", (4, "rollback.reload.stop_start", *STOP_FAILED[2:]))], T0 + 5 * M),
    ],
)
def test_site_left_stopped(runs: list[RunRecord], stopped: datetime | None) -> None:
    assert site_left_stopped(runs) == stopped


REFRESHED = (2, "reload.refresh", "done", {"rung": "refresh"})
BLIND = (3, "verify", "done", {"rung": "config_change", "active_seen": False})
SEEN = (3, "verify", "done", {"rung": "restart", "active_seen": True})
OLD_VERIFY = (3, "verify", "done", {"rung": "config_change"})  # journaled before issue 13


@pytest.mark.parametrize(
    ("runs", "never"),
    [
        ([], False),
        ([run("a", REFRESHED, BLIND)], True),
        ([run("a", BLIND)], False),  # the refresh rung never ran: nothing learned
        ([run("a", REFRESHED, SEEN)], False),
        ([run("a", REFRESHED, SEEN), run("b", REFRESHED, BLIND)], False),  # it once showed
        ([run("a", REFRESHED, OLD_VERIFY)], False),
        ([run("a", REFRESHED, (3, "verify", "failed", {"active_seen": False}))], True),
    ],
)
def test_refresh_never_active(runs: list[RunRecord], never: bool) -> None:
    assert refresh_never_active(runs) is never


def test_the_daemons_request_ids_are_guids_it_recognizes() -> None:
    ids = {new_request_id() for _ in range(200)}
    assert len(ids) == 200
    for i in ids:
        assert str(uuid.UUID(i)) == i
        assert i.startswith(PREFIX)
        assert is_own(i)
        assert is_own(i.upper())
    assert not any(is_own(str(uuid.uuid4())) for _ in range(200))
    assert not is_own(None)
