"""Guards: the rotation cap, exponential backoff and the circuit, on an injected clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from remediation.guards import Guards, GuardSettings
from remediation.journal import Journal

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = GuardSettings(
    max_rotations_per_day=2,
    backoff_initial=timedelta(minutes=5),
    backoff_max=timedelta(minutes=30),
    circuit_failures=3,
    circuit_reset=timedelta(hours=24),
)


def test_the_cap_blocks_the_third_rotation_in_a_day_but_not_a_heal() -> None:
    g = Guards(S)
    g.record("t", "rotate", "success", T0)
    g.record("t", "rotate", "success", T0 + timedelta(hours=1))
    blocked = g.check("t", "rotate", T0 + timedelta(hours=2))
    assert blocked is not None
    assert blocked.reason == "rotation_cap"
    assert blocked.until == T0 + timedelta(days=1)
    assert g.check("t", "heal", T0 + timedelta(hours=2)) is None
    assert g.check("t", "rotate", T0 + timedelta(days=1, seconds=1)) is None


def test_a_heal_that_rotated_counts_against_the_cap() -> None:
    g = Guards(S)
    g.record("t", "heal", "success", T0, rotated=True)
    g.record("t", "heal", "success", T0, rotated=False)
    assert g.check("t", "rotate", T0) is None
    g.record("t", "heal", "success", T0, rotated=True)
    blocked = g.check("t", "rotate", T0)
    assert blocked is not None
    assert blocked.reason == "rotation_cap"


def test_backoff_doubles_after_each_failure_and_is_capped() -> None:
    g = Guards(
        GuardSettings(
            max_rotations_per_day=100,
            circuit_failures=10,
            backoff_initial=timedelta(minutes=5),
            backoff_max=timedelta(minutes=30),
        )
    )
    waits = []
    t = T0
    for _ in range(5):
        g.record("t", "heal", "failed", t)
        blocked = g.check("t", "heal", t)
        assert blocked is not None
        assert blocked.reason == "backoff"
        assert blocked.until
        waits.append(blocked.until - t)
        t = blocked.until
        assert g.check("t", "heal", t) is None
    assert waits == [timedelta(minutes=m) for m in (5, 10, 20, 30, 30)]


def test_a_success_resets_the_backoff() -> None:
    g = Guards(S)
    g.record("t", "heal", "failed", T0)
    g.record("t", "heal", "success", T0 + timedelta(minutes=6))
    assert g.check("t", "heal", T0 + timedelta(minutes=6)) is None
    assert g.consecutive_failures("t") == 0


def test_the_circuit_opens_after_repeated_failures_and_says_so() -> None:
    g = Guards(S)
    t = T0
    for _ in range(3):
        g.record("t", "heal", "failed", t)
        t += timedelta(hours=1)
    blocked = g.check("t", "heal", t)
    assert blocked is not None
    assert blocked.reason == "circuit_open"
    assert "3 failed remediation(s) in a row" in blocked.detail
    # still open long after the backoff would have ended
    blocked = g.check("t", "heal", T0 + timedelta(hours=20))
    assert blocked is not None
    assert blocked.reason == "circuit_open"
    # a successful manual run closes it
    g.record("t", "rotate", "success", T0 + timedelta(hours=21))
    assert g.check("t", "heal", T0 + timedelta(hours=21)) is None


def test_a_permanent_failure_opens_the_circuit_at_once() -> None:
    g = Guards(S)
    g.record("t", "rotate", "failed", T0, permanent=True)
    blocked = g.check("t", "rotate", T0 + timedelta(hours=1))
    assert blocked is not None
    assert blocked.reason == "circuit_open"


def test_state_is_seeded_from_the_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path, "t")
    for i, outcome in enumerate(("failed", "failed", "failed")):
        run = f"r{i}"
        ts = T0 + timedelta(minutes=i)
        j.append(ts=ts, run=run, action="heal", step="run", phase="begin")
        j.append(
            ts=ts,
            run=run,
            action="heal",
            step="run",
            phase="done",
            data={"outcome": outcome, "rotated": False, "permanent": False},
        )
    g = Guards(S)
    g.seed("t", j.runs())
    blocked = g.check("t", "heal", T0 + timedelta(hours=1))
    assert blocked is not None
    assert blocked.reason == "circuit_open"
    assert g.check("other", "heal", T0) is None


def _journal_run(j: Journal, run: str, action: str, at: datetime, **facts: object) -> None:
    j.append(ts=at, run=run, action=action, step="run", phase="begin")
    if "new_key_id" in facts:
        j.append(
            ts=at,
            run=run,
            action=action,
            step="add_password",
            phase="done",
            data={"new_key_id": str(facts.pop("new_key_id"))},
        )
    j.append(ts=at, run=run, action=action, step="run", phase="done", data=facts)  # type: ignore[arg-type]


def test_a_failed_heal_that_issued_a_credential_counts_against_the_cap(tmp_path: Path) -> None:
    j = Journal(tmp_path, "t")
    _journal_run(j, "r1", "rotate", T0, outcome="success", rotated=True, permanent=False)
    # A heal that issued a secret and then rolled back churned a credential all the same.
    _journal_run(
        j, "r2", "heal", T0, new_key_id="k2", outcome="rolled_back", rotated=False, permanent=False
    )
    g = Guards(S)
    g.seed("t", j.runs())
    later = T0 + timedelta(hours=2)  # past the backoff
    blocked = g.check("t", "rotate", later)
    assert blocked is not None
    assert blocked.reason == "rotation_cap"


def test_seeding_again_replaces_the_state_instead_of_adding_to_it(tmp_path: Path) -> None:
    j = Journal(tmp_path, "t")
    _journal_run(j, "r1", "rotate", T0, outcome="success", rotated=True, permanent=False)
    g = Guards(S)
    for _ in range(3):  # the Remediator re-reads the journal before every decision
        g.seed("t", j.runs())
    assert g.check("t", "rotate", T0) is None  # one rotation of two, not three


def test_a_crash_recovered_rotation_counts_once(tmp_path: Path) -> None:
    j = Journal(tmp_path, "t")
    # The value was lost in a crash: that run is compensated (its credential removed)
    # and the restarted run finishes the same rotation.
    _journal_run(j, "r1", "rotate", T0, new_key_id="k1", outcome="compensated", rotated=False)
    _journal_run(j, "r2", "rotate", T0, new_key_id="k2", outcome="success", rotated=True)
    g = Guards(S)  # cap 2 a day
    g.seed("t", j.runs())
    assert g.check("t", "rotate", T0) is None


def test_a_long_failure_streak_backs_off_at_the_cap_instead_of_overflowing() -> None:
    # Found by bench/soak.py: initial * 2 ** (n - 1) overflowed timedelta after ~40
    # failures in a row, and every guard decision (start-up included) raised.
    settings = GuardSettings(
        backoff_initial=timedelta(minutes=5),
        backoff_max=timedelta(hours=6),
        circuit_failures=1_000_000,
        circuit_reset=timedelta(hours=1),
    )
    g = Guards(settings)
    for i in range(5000):
        g.record("t", "heal", "failed", T0 + timedelta(seconds=i))
    last = T0 + timedelta(seconds=4999)
    blocked = g.check("t", "heal", last + timedelta(hours=1))
    assert blocked is not None
    assert blocked.reason == "backoff"
    assert blocked.until == last + timedelta(hours=6)
    assert g.check("t", "heal", last + timedelta(hours=6, seconds=1)) is None


def test_backoff_doubles_per_failure_up_to_the_cap() -> None:
    expected = {1: 5, 2: 10, 3: 20, 4: 30, 5: 30, 60: 30}  # minutes, cap 30
    for failures, minutes in expected.items():
        g = Guards(dataclasses.replace(S, circuit_failures=1000))
        for _ in range(failures):
            g.record("t", "heal", "failed", T0)
        blocked = g.check("t", "heal", T0)
        assert blocked is not None
        assert blocked.until == T0 + timedelta(minutes=minutes), failures
