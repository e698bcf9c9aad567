"""The safety decisions as tables (cert-manager's policies style): no sandbox, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from remediation.decisions import (
    EntraVerdict,
    Evidence,
    GuardState,
    LogRecord,
    Reloaded,
    SignInEvidence,
    Verdict,
    app_sign_ins,
    gone_is_certain,
    is_blocked,
    is_due,
    removal,
    slot_to_free,
    which_old_credential,
    workers_started_after,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
M = timedelta(minutes=1)


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
    workers: tuple[tuple[datetime | None, ...], ...] | None = None,
    old_ends: tuple[datetime | None, ...] = (),
) -> Evidence:
    return Evidence(signins, active, pinned, workers, old_ends)


S = timedelta(seconds=1)
CACHE = RELOAD  # the cache held the new version from here (daemon clock)
MARK = RELOAD - 30 * S  # the latest worker start ARM listed then (ARM clock)
RECYCLED = RELOAD + S  # a recycle of every worker began
ALLOW = timedelta(minutes=5)  # recycle_allowance
ALLOWED = RECYCLED + ALLOW
CACHE_ONLY = Reloaded(CACHE, None)
RECYCLE = Reloaded(CACHE, RECYCLED)
MARKED = Reloaded(CACHE, RECYCLED, MARK)
NOTHING = Reloaded(None, None)


def si(
    new: datetime | None,
    old: datetime | None,
    caught: datetime | None = NOW,
    after: datetime = RECYCLED,
) -> SignInEvidence:
    return SignInEvidence(after=after, new_first=new, old_last=old, caught_up_to=caught)


LATER = ALLOWED + S  # a sign-in after the recycle (and its allowance)
BOTH = ((MARK + S,), (MARK + 2 * S, MARK + 3 * S))  # two instances, all after the mark
ONE_EARLY = ((MARK + S,), (MARK,))  # one worker started at the mark: not after
T = NOW


@pytest.mark.parametrize(
    ("reloaded", "evidence", "now", "verdict", "why"),
    [
        # nothing: wait for the window
        (NOTHING, ev(), T, Verdict.WAIT, "cache is not known to hold the new version"),
        (CACHE_ONLY, ev(), T, Verdict.WAIT, "no recycle of the workers"),
        (RECYCLE, ev(), T, Verdict.WAIT, "sign-in log is unreadable"),
        (RECYCLE, ev(si(None, None)), T, Verdict.WAIT, "no sign-in of the app"),
        # (b) every worker started after the cache held the new version (ARM's clock)
        (MARKED, ev(workers=BOTH), T, Verdict.REMOVE, "every worker process (3 on 2 instance"),
        (MARKED, ev(workers=ONE_EARLY), T, Verdict.WAIT, "a worker process started at"),
        (MARKED, ev(workers=((MARK + S,), ())), T, Verdict.WAIT, "kept until"),  # no worker
        (MARKED, ev(workers=((MARK + S,), (None,))), T, Verdict.WAIT, "kept until"),
        (MARKED, ev(workers=()), T, Verdict.WAIT, "kept until"),  # no instance listed
        # without a mark, the daemon's clock with the skew allowance (5 min)
        (RECYCLE, ev(workers=((CACHE + 301 * S,),)), T, Verdict.REMOVE, "every worker"),
        (RECYCLE, ev(workers=((CACHE + 300 * S,),)), T, Verdict.WAIT, "a worker process"),
        (NOTHING, ev(workers=BOTH), T, Verdict.WAIT, "cache is not known"),
        # (c) a pinned reference resolved on the new version, workers after it
        (MARKED, ev(pinned=NEW, workers=BOTH), T, Verdict.REMOVE, "pinned reference resolved"),
        (MARKED, ev(pinned=NEW, workers=ONE_EARLY), T, Verdict.WAIT, "a worker process"),
        # activeVersion alone proves the cache only, never a process
        (CACHE_ONLY, ev(active=NEW), T, Verdict.WAIT, "no recycle"),
        (NOTHING, ev(pinned=NEW), T, Verdict.WAIT, "not known to hold"),
        # (a) the app's own sign-ins, after a recycle that followed the cache, log caught up
        (RECYCLE, ev(si(LATER, None)), T, Verdict.REMOVE, "sign-in evidence"),
        (RECYCLE, ev(si(RECYCLED + S, None)), T, Verdict.REMOVE, "sign-in evidence"),
        (RECYCLE, ev(si(RECYCLED, None)), T, Verdict.WAIT, "no sign-in of the app"),  # not after
        (RECYCLE, ev(si(LATER, None, caught=ALLOWED - S)), T, Verdict.WAIT, "caught-up"),
        (RECYCLE, ev(si(LATER, None, caught=ALLOWED)), T, Verdict.REMOVE, "caught up to"),
        (RECYCLE, ev(si(LATER, None, caught=None)), T, Verdict.WAIT, "caught-up"),
        # ... never the only proof while a worker may predate the cache
        (CACHE_ONLY, ev(si(LATER, None)), T, Verdict.WAIT, "no recycle of the workers"),
        (NOTHING, ev(si(LATER, None)), T, Verdict.WAIT, "not known to hold"),
        (MARKED, ev(si(LATER, None), workers=ONE_EARLY), T, Verdict.WAIT, "a worker process"),
        # counter-proof: the old one signs in after the last worker start
        (RECYCLE, ev(si(LATER, LATER)), T, Verdict.WAIT, "old credential in use at"),
        (MARKED, ev(si(LATER, LATER), workers=BOTH), T, Verdict.WAIT, "old credential in use"),
        (RECYCLE, ev(si(LATER, T - 2 * HOUR + S)), T, Verdict.WAIT, "old credential in use"),
        # ... past the window it still stays, and workers that may predate the cache are
        # recycled once (never again after a recycle, never when the view shows them new)
        (RECYCLE, ev(si(LATER, T + OVERLAP)), T + OVERLAP, Verdict.WAIT, "in use at"),
        (
            CACHE_ONLY,
            ev(si(LATER, T + OVERLAP)),
            T + OVERLAP,
            Verdict.WAIT,
            "in use at 2026-06-02T12:00:00Z, after the last worker start; recycle the workers",
        ),
        (
            Reloaded(CACHE, None, MARK),
            ev(si(LATER, T + OVERLAP), workers=BOTH),  # someone else uses the old secret
            T + OVERLAP,
            Verdict.WAIT,
            "after the last worker start",
        ),
        # ... within 2 h of now only; past it, still no sign-in proof (old seen since)
        (RECYCLE, ev(si(LATER, T - 2 * HOUR)), T, Verdict.WAIT, "no sign-in of the app"),
        # the overlap window ends only once no worker may predate the cache
        (RECYCLE, ev(), SINCE + OVERLAP - S, Verdict.WAIT, "kept until"),
        (RECYCLE, ev(), SINCE + OVERLAP, Verdict.REMOVE, "overlap window (24 h) ended"),
        (CACHE_ONLY, ev(), SINCE + OVERLAP, Verdict.WAIT, "recycle the workers"),
        (NOTHING, ev(), SINCE + OVERLAP, Verdict.WAIT, "recycle the workers"),
        (MARKED, ev(workers=ONE_EARLY), SINCE + OVERLAP, Verdict.WAIT, "did not restart after"),
        (
            Reloaded(CACHE, T + OVERLAP),  # recycled just now: allow it to finish
            ev(),
            T + OVERLAP + ALLOW - S,
            Verdict.WAIT,
            "waiting for the recycle begun at",
        ),
        (
            Reloaded(CACHE, T + OVERLAP),
            ev(),
            T + OVERLAP + ALLOW,
            Verdict.REMOVE,
            "every worker was recycled at",
        ),
        # the per-instance view says a worker still predates: recycled once, never in a loop
        (
            Reloaded(CACHE, T + OVERLAP, MARK),
            ev(workers=ONE_EARLY),
            T + OVERLAP + DAY,
            Verdict.WAIT,
            "it did not restart after the recycle at 2026-06-02T12:00:00Z",
        ),
        (
            Reloaded(CACHE, None, MARK),
            ev(workers=ONE_EARLY),
            SINCE + OVERLAP,
            Verdict.WAIT,
            "recycle the workers",
        ),
        # an expired old credential signs nobody in: removed at once (beyond the skew)
        (NOTHING, ev(old_ends=(T - 301 * S,)), T, Verdict.REMOVE, "expired at"),
        (NOTHING, ev(old_ends=(T - 300 * S,)), T, Verdict.WAIT, "not known"),
        (NOTHING, ev(old_ends=(T - HOUR, None)), T, Verdict.WAIT, "not known"),
        (NOTHING, ev(old_ends=(T - HOUR, T + HOUR)), T, Verdict.WAIT, "not known"),
        (NOTHING, ev(old_ends=(T - HOUR, T - DAY)), T, Verdict.REMOVE, "expired at"),
    ],
)
def test_removal(
    reloaded: Reloaded, evidence: Evidence, now: datetime, verdict: Verdict, why: str
) -> None:
    got = removal(
        new_version=NEW,
        reloaded=reloaded,
        pending_since=SINCE,
        now=now,
        overlap=OVERLAP,
        evidence=evidence,
        recycle_allowance=ALLOW,
    )
    assert got.verdict is verdict, got.proof
    assert why in got.proof, got.proof
    if verdict is Verdict.WAIT:
        assert got.until == SINCE + OVERLAP
        assert got.recycle == ("recycle the workers" in got.proof)


APP = frozenset({"20.1.1.1", "20.1.1.2"})
K_NEW, K_OLD = "new-key", "old-key"


def rec(
    at: datetime,
    key: str | None,
    ip: str | None = "20.1.1.1",
    *,
    own: bool = False,
    ok: bool = True,
) -> LogRecord:
    return LogRecord(at, key, ok, ip, own)


@pytest.mark.parametrize(
    ("records", "new_first", "old_last", "caught_up_to"),
    [
        ((), None, None, NOW - HOUR),
        # the app's own: from its addresses, not the daemon's, after the last start
        ((rec(LATER, K_NEW),), LATER, None, NOW - HOUR),
        ((rec(LATER, "NEW-KEY"),), LATER, None, NOW - HOUR),  # keyIds compare caseless
        ((rec(LATER, K_NEW, "10.0.0.9"),), None, None, NOW - HOUR),  # another address
        ((rec(LATER, K_NEW, None),), None, None, NOW - HOUR),
        ((rec(LATER, K_NEW, own=True),), None, None, LATER - 5 * M),  # the daemon's marker
        ((rec(RECYCLED, K_NEW),), None, None, NOW - HOUR),  # not after the last start
        ((rec(LATER, K_NEW, ok=False),), None, None, NOW - HOUR),  # a failure proves nothing
        # out of order and duplicated: the earliest new, the latest old, the latest marker
        (
            (
                rec(LATER + 9 * S, K_NEW),
                rec(LATER + 3 * S, K_NEW),
                rec(LATER + 3 * S, K_NEW),
                rec(LATER + 20 * S, K_NEW, "127.0.0.1", own=True),
                rec(LATER + 5 * S, K_NEW, "127.0.0.1", own=True),
                rec(LATER + 20 * S, K_NEW, "127.0.0.1", own=True),
            ),
            LATER + 3 * S,
            None,
            LATER + 20 * S - 5 * M,
        ),
        # an old keyId from anyone but the daemon is counter-proof, whatever the address
        ((rec(LATER, K_OLD, "10.0.0.9"), rec(LATER - M, K_OLD)), None, LATER, NOW - HOUR),
        ((rec(LATER, K_OLD, own=True),), None, None, LATER - 5 * M),  # the daemon's own test
        ((rec(RECYCLED, K_OLD),), None, None, NOW - HOUR),  # before the last start
        # a marker older than the delay bound: the bound wins
        ((rec(NOW - 3 * HOUR, None, own=True),), None, None, NOW - HOUR),
    ],
)
def test_app_sign_ins(
    records: tuple[LogRecord, ...],
    new_first: datetime | None,
    old_last: datetime | None,
    caught_up_to: datetime | None,
) -> None:
    got = app_sign_ins(
        records,
        new_key_id=K_NEW,
        old_key_ids=(K_OLD,),
        app_addresses=APP,
        after=RECYCLED,
        now=NOW,
        reorder=5 * M,
        delay_bound=HOUR,
    )
    assert (got.new_first, got.old_last, got.caught_up_to) == (new_first, old_last, caught_up_to)
    assert got.after == RECYCLED


@pytest.mark.parametrize(
    ("instances", "t", "skew", "after"),
    [
        (None, NOW, timedelta(0), None),
        ((), NOW, timedelta(0), None),
        (((NOW + S,),), None, timedelta(0), None),
        (((NOW + S,),), NOW, timedelta(0), True),
        (((NOW,),), NOW, timedelta(0), False),
        (((NOW + S,), (NOW - S,)), NOW, timedelta(0), False),
        (((NOW + S,), ()), NOW, timedelta(0), None),
        (((NOW + S, None),), NOW, timedelta(0), None),
        (((NOW + S,),), NOW, S, False),
        (((NOW + 2 * S,),), NOW, S, True),
    ],
)
def test_workers_started_after(
    instances: tuple[tuple[datetime | None, ...], ...] | None,
    t: datetime | None,
    skew: timedelta,
    after: bool | None,
) -> None:
    assert workers_started_after(instances, t, skew) is after


# -- is it blocked -------------------------------------------------------------------------


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


# -- which credential frees a slot (two-secret apps) -----------------------------------------

SKEW = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("credentials", "in_use", "freed"),
    [
        ((), (), None),
        ((("a", NOW + DAY), ("b", None)), (), None),  # nothing expired; no end: never
        ((("a", NOW - HOUR), ("b", NOW + DAY)), ("b",), "a"),
        ((("a", NOW - HOUR), ("b", NOW - DAY)), ("a",), "b"),  # the unused one first
        ((("a", NOW - HOUR), ("b", NOW + DAY)), ("A",), "a"),  # in use, but dead: it goes
        ((("a", NOW - SKEW), ("b", NOW + DAY)), (), None),  # within the clock skew
        ((("a", NOW - SKEW - timedelta(seconds=1)),), (), "a"),
    ],
)
def test_slot_to_free(
    credentials: tuple[tuple[str, datetime | None], ...], in_use: tuple[str, ...], freed: str | None
) -> None:
    assert slot_to_free(credentials, in_use, NOW, SKEW) == freed


@pytest.mark.parametrize(
    ("added_at", "now", "certain"),
    [
        (None, NOW, True),  # not added by this run: a fresh read decides
        (NOW - timedelta(seconds=30), NOW, True),
        (NOW - timedelta(seconds=29), NOW, False),  # younger than Graph's read lag
        (NOW, NOW, False),
    ],
)
def test_gone_is_certain(added_at: datetime | None, now: datetime, certain: bool) -> None:
    assert gone_is_certain(added_at, now, timedelta(seconds=30)) is certain
