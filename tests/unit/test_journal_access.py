"""Issue 9: a journal the daemon cannot read (root ran `secretwarden rotate` and forgot
to chown) used to crash every start. Now remediation of that target stops, a metric and
an error log line say why and give the chown, and everything else goes on.

The daemon runs as an unprivileged user; the test makes itself one: as root it drops
its effective uid to ``nobody`` for the block (file access checks then apply), and as
anyone else it takes the permissions away instead."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from remediation.access import JournalUnusable, journal_problem
from remediation.clock import FakeClock
from remediation.journal import Journal
from remediation.policy import Policy
from remediation.service import RemediationTarget, Remediator

NOBODY = 65534
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Under /tmp (not pytest's tmp_path, whose parents are private to its owner), so
    # that another user can reach it.
    base = Path(tempfile.mkdtemp(prefix="sw-access-"))
    base.chmod(0o755)
    yield base / "state"
    shutil.rmtree(base)


def write_root_journal(state_dir: Path) -> Journal:
    """A journal with one finished run, as `secretwarden rotate` leaves it."""
    journal = Journal(state_dir, "portal")
    journal.append(ts=T0, run="r1", action="rotate", step="run", phase="begin")
    journal.append(
        ts=T0,
        run="r1",
        action="rotate",
        step="run",
        phase="done",
        data={"outcome": "success", "rotated": True},
    )
    lock = journal.lock()
    lock.acquire()
    lock.release()
    if os.geteuid() == 0:
        # the state directory belongs to the daemon's user; the files root made do not
        os.chown(state_dir, NOBODY, NOBODY)
        os.chown(journal.dir, NOBODY, NOBODY)
    return journal


@contextmanager
def as_the_daemon(journal: Journal) -> Iterator[None]:
    if os.geteuid() == 0:
        os.seteuid(NOBODY)
        try:
            yield
        finally:
            os.seteuid(0)
    else:
        journal.path.chmod(0)
        try:
            yield
        finally:
            journal.path.chmod(0o600)


def remediator(state_dir: Path, registry: CollectorRegistry) -> Remediator:
    # No run may start, so the target's clients are never used.
    target = RemediationTarget("portal", cast(Any, None), cast(Any, None))
    return Remediator(
        targets={"portal": target},
        state_dir=state_dir,
        policy=Policy(),
        clock=FakeClock(T0),
        registry=registry,
    )


def test_an_unreadable_journal_stops_remediation_of_its_target_and_says_how_to_fix_it(
    state_dir: Path,
) -> None:
    journal = write_root_journal(state_dir)
    registry = CollectorRegistry()
    with as_the_daemon(journal), capture_logs() as logs:
        rem = remediator(state_dir, registry)  # crashed here: PermissionError
        result = rem.trigger("portal", "rotate", "alertmanager: test")
        problem = journal_problem(journal)
    assert result.status == "blocked"
    assert problem is not None
    assert result.detail == problem
    assert str(journal.path) in problem
    assert f"sudo chown -R {os.geteuid() if os.geteuid() else NOBODY}:" in problem
    assert "Remediation of this target is off" in problem
    labels = {"target": "portal", "reason": "journal_unreadable"}
    assert registry.get_sample_value("secretwarden_remediation_blocked", labels) == 1
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == ["remediation blocked"]
    assert errors[0]["reason"] == "journal_unreadable"
    assert "chown" in errors[0]["detail"]

    # Fixed by the operator: the next decision sees it, without a restart. (Not root:
    # leaving as_the_daemon gave the permissions back.)
    if os.geteuid() == 0:
        for p in (journal.path, journal.lock().path):
            os.chown(p, NOBODY, NOBODY)
    with _euid(NOBODY) if os.geteuid() == 0 else nullcontext():
        assert journal_problem(journal) is None
        rem._update_blocked("portal", "rotate")
    assert registry.get_sample_value("secretwarden_remediation_blocked", labels) == 0
    # and the last rotation, which start-up could not read, is known now
    last = registry.get_sample_value(
        "secretwarden_rotation_last_success_timestamp_seconds", {"target": "portal"}
    )
    assert last == T0.timestamp()


@contextmanager
def _euid(uid: int) -> Iterator[None]:
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


async def test_a_foreground_run_on_an_unreadable_journal_says_so(state_dir: Path) -> None:
    journal = write_root_journal(state_dir)
    with as_the_daemon(journal):
        rem = remediator(state_dir, CollectorRegistry())
        with pytest.raises(JournalUnusable, match="chown"):
            await rem.run("portal", "rotate", "cli")
        assert await rem.recover() == []  # nothing it can read, nothing resumed


def test_a_usable_or_missing_journal_is_no_problem(state_dir: Path) -> None:
    assert journal_problem(Journal(state_dir, "portal")) is None  # nothing yet
    journal = write_root_journal(state_dir)
    assert journal_problem(journal) is None  # its owner (or root) can use it
