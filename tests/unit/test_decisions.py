"""The safety decisions as tables (cert-manager's policies style): no sandbox, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from remediation.decisions import (
    EntraVerdict,
    Evidence,
    GuardState,
    SignInEvidence,
    Verdict,
    is_blocked,
    is_due,
    removal,
    which_old_credential,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


# -- is it due -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "due"),
    [
        (None, True),  # no in-use credential, or no end date: cannot tell it is safe
        (NOW - DAY, True),  # expired
        (NOW, True),
        (NOW + 30 * DAY, True),  # exactly rotate_before: due
        (NOW + 30 * DAY + timedelta(seconds=1), False),
        (NOW + 365 * DAY, False),
    ],
)
def test_is_due(end: datetime | None, due: bool) -> None:
    assert is_due(end, NOW, 30 * DAY) is due


# -- which credential is the old one -------------------------------------------------------

V, INV, X, U = EntraVerdict.VALID, EntraVerdict.INVALID, EntraVerdict.EXPIRED, EntraVerdict.UNKNOWN


@pytest.mark.parametrize(
    ("has_value", "cands", "tagged", "entra", "keys", "why"),
    [
        (False, ["a"], "a", V, (), "the current Key Vault version has no value"),
        (
            True,
            ["a"],
            "a",
            INV,
            (),
            "Entra refuses the Key Vault value: it belongs to no credential",
        ),
        (
            True,
            ["a"],
            None,
            INV,
            (),
            "Entra refuses the Key Vault value: it belongs to no credential",
        ),
        (True, ["a"], "a", U, ("a",), None),  # tagged and hint agree: certain
        (True, ["a"], None, V, ("a",), None),
        (True, ["a"], None, X, ("a",), None),
        (True, ["a"], None, U, (), "Entra could not check the Key Vault value (unknown)"),
        # a tag that disagrees with the value's hint: only Entra can settle it
        (True, ["a"], "b", V, ("a",), None),
        (True, ["a"], "b", X, ("a",), None),
        (True, ["a"], "b", U, (), "the Key Vault tag names b but the value's hint matches a"),
        (True, ["a", "b"], "a", V, (), "2 credentials share the Key Vault value's hint"),
        (True, [], "a", V, (), "no credential has the Key Vault value's hint"),
        (True, [], None, U, (), "no credential has the Key Vault value's hint"),
    ],
)
def test_which_old_credential(
    has_value: bool,
    cands: list[str],
    tagged: str | None,
    entra: EntraVerdict,
    keys: tuple[str, ...],
    why: str | None,
) -> None:
    got, reason = which_old_credential(has_value, cands, tagged, entra)
    assert got == keys
    if why is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(why)


# -- may the old credential be deleted -----------------------------------------------------

RELOAD = NOW - timedelta(minutes=10)
SINCE = NOW - timedelta(minutes=9)
OVERLAP = timedelta(hours=24)
NEW = "v2"


def ev(
    signins: SignInEvidence | None = None,
    active: str | None = None,
    pinned: str | None = None,
) -> Evidence:
    return Evidence(signins, active, pinned)


def si(new: datetime | None, old: datetime | None) -> SignInEvidence:
    return SignInEvidence(new_last=new, old_last=old)


AFTER = RELOAD + timedelta(minutes=1)
BEFORE = RELOAD - timedelta(minutes=1)


@pytest.mark.parametrize(
    ("evidence", "now", "verdict", "why"),
    [
        # nothing: wait for the window
        (ev(), NOW, Verdict.WAIT, "activeVersion unknown, sign-ins unreadable"),
        (ev(si(None, None)), NOW, Verdict.WAIT, "no sign-in with the new one yet)"),
        # sign-in evidence, the strongest
        (ev(si(AFTER, None)), NOW, Verdict.REMOVE, "sign-in evidence"),
        (ev(si(RELOAD, None)), NOW, Verdict.REMOVE, "sign-in evidence"),  # at the reload
        (ev(si(AFTER, BEFORE)), NOW, Verdict.REMOVE, "sign-in evidence"),  # old before only
        (ev(si(BEFORE, None)), NOW, Verdict.WAIT, "no proof"),  # new only before the reload
        (
            ev(si(AFTER, AFTER)),
            NOW,
            Verdict.WAIT,
            "the sign-in log shows an old credential in use at 2026-06-01T11:51:00Z, "
            "after the reload",
        ),
        (ev(si(AFTER, RELOAD)), NOW, Verdict.WAIT, "old credential in use"),
        # the old one still signs in: counter-proof outlives the window and beats ARM
        (ev(si(AFTER, NOW + 2 * OVERLAP)), SINCE + 2 * OVERLAP, Verdict.WAIT, "in use"),
        (ev(si(NOW, RELOAD)), RELOAD + timedelta(minutes=119), Verdict.WAIT, "in use"),
        # ... until it has been quiet for 2 h: then no sign-in proof, but the window may end
        (ev(si(AFTER, AFTER)), SINCE + 2 * OVERLAP, Verdict.REMOVE, "overlap window"),
        (ev(si(NOW, RELOAD), active=NEW), RELOAD + timedelta(hours=2), Verdict.REMOVE, "active"),
        (ev(si(None, AFTER), active=NEW), NOW, Verdict.WAIT, "old credential in use"),
        # activeVersion: equal is proof, another version or none is not
        (ev(active=NEW), NOW, Verdict.REMOVE, "activeVersion v2"),
        (ev(active="v1"), NOW, Verdict.WAIT, "activeVersion v1"),
        (ev(si(None, None), active=NEW), NOW, Verdict.REMOVE, "activeVersion v2"),
        # a pinned reference resolved on the new version
        (ev(pinned=NEW), NOW, Verdict.REMOVE, "pinned reference"),
        (ev(pinned="v1"), NOW, Verdict.WAIT, "no proof"),
        # the overlap window
        (ev(), SINCE + OVERLAP - timedelta(seconds=1), Verdict.WAIT, "kept until"),
        (ev(), SINCE + OVERLAP, Verdict.REMOVE, "overlap window (24 h) ended"),
        (ev(active="v1"), SINCE + OVERLAP, Verdict.REMOVE, "overlap window"),
    ],
)
def test_removal(evidence: Evidence, now: datetime, verdict: Verdict, why: str) -> None:
    got = removal(
        new_version=NEW,
        reloaded_at=RELOAD,
        pending_since=SINCE,
        now=now,
        overlap=OVERLAP,
        evidence=evidence,
    )
    assert got.verdict is verdict, got.proof
    assert why in got.proof
    if verdict is Verdict.WAIT:
        assert got.until == SINCE + OVERLAP


# -- is it blocked -------------------------------------------------------------------------

M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("state", "action", "reason"),
    [
        (GuardState(), "rotate", None),
        (GuardState(rotations=(NOW - M,)), "rotate", None),
        (GuardState(rotations=(NOW - M, NOW - 2 * M)), "rotate", "rotation_cap"),
        (GuardState(rotations=(NOW - M, NOW - 2 * M)), "heal", None),  # the cap is per rotation
        (GuardState(rotations=(NOW - DAY, NOW - 2 * M)), "rotate", None),  # out of the window
        (GuardState(rotations=(NOW - DAY + M, NOW - 2 * M)), "rotate", "rotation_cap"),
        # backoff: 5 min, doubling per failure, capped at 1 h
        (GuardState(consecutive_failures=1, last_failure=NOW - 4 * M), "heal", "backoff"),
        (GuardState(consecutive_failures=1, last_failure=NOW - 5 * M), "heal", None),
        (GuardState(consecutive_failures=2, last_failure=NOW - 9 * M), "heal", "backoff"),
        (GuardState(consecutive_failures=2, last_failure=NOW - 10 * M), "heal", None),
        (GuardState(consecutive_failures=9, last_failure=NOW - 59 * M), "heal", "backoff"),
        (GuardState(consecutive_failures=9, last_failure=NOW - 60 * M), "heal", None),
        (GuardState(consecutive_failures=0, last_failure=NOW), "heal", None),
        # the circuit
        (
            GuardState(consecutive_failures=1, circuit_opened=NOW - DAY + M),
            "heal",
            "circuit_open",
        ),
        (GuardState(consecutive_failures=1, circuit_opened=NOW - DAY), "heal", None),
    ],
)
def test_is_blocked(state: GuardState, action: str, reason: str | None) -> None:
    got = is_blocked(
        state,
        action,
        NOW,
        max_rotations_per_day=2,
        backoff_initial=timedelta(minutes=5),
        backoff_max=timedelta(hours=1),
        circuit_reset=timedelta(hours=24),
    )
    assert (got.reason if got else None) == reason
    if got is not None:
        assert got.until is not None
        assert got.until > NOW


def test_a_cap_of_zero_blocks_every_automatic_rotation() -> None:
    got = is_blocked(
        GuardState(),
        "rotate",
        NOW,
        max_rotations_per_day=0,
        backoff_initial=timedelta(minutes=5),
        backoff_max=timedelta(hours=1),
        circuit_reset=timedelta(hours=24),
    )
    assert got is not None
    assert got.reason == "rotation_cap"
    assert got.until is None
    assert got.detail == "0 rotation(s) in the last 24 h (cap 0): automatic rotation is off"


def test_what_a_block_says() -> None:
    kw = {
        "max_rotations_per_day": 2,
        "backoff_initial": timedelta(minutes=5),
        "backoff_max": timedelta(hours=1),
        "circuit_reset": timedelta(hours=24),
    }
    circuit = is_blocked(GuardState(consecutive_failures=3, circuit_opened=NOW), "heal", NOW, **kw)  # type: ignore[arg-type]
    assert circuit is not None
    assert circuit.detail == (
        "3 failed remediation(s) in a row; automatic remediation stopped until "
        "2026-06-02T12:00:00+00:00 or a successful manual run"
    )
    backoff = is_blocked(GuardState(consecutive_failures=1, last_failure=NOW), "heal", NOW, **kw)  # type: ignore[arg-type]
    assert backoff is not None
    assert backoff.detail == "backing off after 1 failure(s) until 2026-06-01T12:05:00+00:00"
    cap = is_blocked(GuardState(rotations=(NOW, NOW)), "rotate", NOW, **kw)  # type: ignore[arg-type]
    assert cap is not None
    assert cap.detail == "2 rotation(s) in the last 24 h (cap 2) until 2026-06-02T12:00:00+00:00"
