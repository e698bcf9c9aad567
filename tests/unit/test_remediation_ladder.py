"""The reload ladder climbs only as far as it must, on a fake clock."""

from __future__ import annotations

from remediation.clock import FakeClock
from remediation.reload import reload_app, wait_verified
from remediation.verify import Verification

TIMEOUTS = {"refresh": 10.0, "config_change": 60.0, "restart": 60.0, "stop_start": 60.0}
OLD = ("refresh", "restart", "stop_start")  # a target without the configuration change


async def test_stops_at_the_first_rung_that_verifies() -> None:
    clock = FakeClock()
    applied: list[str] = []

    async def apply(rung: str) -> bool:
        applied.append(rung)
        return True

    async def verify() -> Verification:
        return Verification(applied[-1] == "restart", "state")

    result = await reload_app(
        apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5, rungs=OLD
    )
    assert result.ok
    assert result.rung == "restart"
    assert applied == ["refresh", "restart"]
    assert sum(clock.slept) == 10.0  # waited out the refresh rung only


async def test_waits_for_a_cold_start_within_the_rung_timeout() -> None:
    clock = FakeClock()
    start = clock.monotonic()

    async def apply(rung: str) -> bool:
        return rung != "refresh"  # the refresh call itself failed

    async def verify() -> Verification:
        return Verification(clock.monotonic() - start >= 25, "cold start")

    result = await reload_app(
        apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5, rungs=OLD
    )
    assert result.ok
    assert result.rung == "restart"
    assert clock.monotonic() - start == 25


async def test_reports_failure_with_the_last_reason_when_no_rung_works() -> None:
    clock = FakeClock()

    async def apply(rung: str) -> bool:
        return True

    async def verify() -> Verification:
        return Verification(False, "/health 503")

    result = await reload_app(
        apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5, rungs=OLD
    )
    assert not result.ok
    assert result.reason == "/health 503"
    assert sum(clock.slept) == 130.0


async def test_climbs_early_when_the_app_is_up_on_the_old_version() -> None:
    clock = FakeClock()
    applied: list[str] = []

    async def apply(rung: str) -> bool:
        applied.append(rung)
        return True

    async def verify() -> Verification:
        if applied[-1] == "stop_start":
            return Verification(True, "ok")
        return Verification(False, "app holds version v1, want v2", settled=True)

    result = await reload_app(
        apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5, rungs=OLD
    )
    assert result.ok
    assert result.rung == "stop_start"
    # The refresh lands asynchronously: its rung waits out its timeout (10 s) even while
    # the app is up on the old version; Restart climbs after one poll confirms (5 s).
    assert sum(clock.slept) == 15.0


async def test_a_refresh_that_lands_late_is_waited_for_not_climbed_past() -> None:
    """ARM reports activeVersion, still the old one for a while after the refresh call
    (it re-resolves seconds later): the ladder must not restart the site meanwhile."""
    clock = FakeClock()
    start = clock.monotonic()
    applied: list[str] = []

    async def apply(rung: str) -> bool:
        applied.append(rung)
        return True

    async def verify() -> Verification:
        if clock.monotonic() - start >= 7:
            return Verification(True, "app on v2", proof="activeVersion")
        return Verification(False, "app holds version v1, want v2", settled=True)

    result = await reload_app(
        apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=2, rungs=OLD
    )
    assert result.ok
    # activeVersion proves the platform's cache only: a Restart starts the workers on it
    assert result.rung == "restart"
    assert applied == ["refresh", "restart"]


async def test_an_unknown_version_after_refresh_climbs_to_the_documented_reload() -> None:
    """ARM reports no activeVersion: the refresh's poll runs out without proof, so the
    ladder climbs to the configuration change (documented to re-fetch at once) and
    stops there, healthy but unproven; Restart is not tried."""
    clock = FakeClock()
    applied: list[str] = []

    async def apply(rung: str) -> bool:
        applied.append(rung)
        return True

    async def verify() -> Verification:
        return Verification(True, "version unknown")

    result = await reload_app(apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5)
    assert result.ok
    assert result.rung == "config_change"
    assert result.proof is None
    assert applied == ["refresh", "config_change"]
    assert sum(clock.slept) == 10.0  # the refresh's whole poll window, then none


async def test_proof_after_refresh_is_followed_by_a_restart() -> None:
    clock = FakeClock()
    applied: list[str] = []

    async def apply(rung: str) -> bool:
        applied.append(rung)
        return True

    async def verify() -> Verification:
        proven = clock.monotonic() >= 1005  # ARM reports the version after 5 s
        return Verification(True, "ok", proof="activeVersion" if proven else None)

    result = await reload_app(apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5)
    assert result.ok
    assert result.rung == "restart"
    assert result.proof == "activeVersion"
    assert applied == ["refresh", "restart"]  # the configuration change is not needed


async def test_a_proven_refresh_without_restart_rung_follows_with_the_configuration_change() -> (
    None
):
    clock = FakeClock()
    applied: list[str] = []

    async def apply(rung: str) -> bool:
        applied.append(rung)
        return True

    async def verify() -> Verification:
        return Verification(True, "ok", proof="activeVersion")

    result = await reload_app(
        apply=apply,
        verify=verify,
        clock=clock,
        timeouts=TIMEOUTS,
        poll=5,
        rungs=("refresh", "config_change"),
    )
    assert (result.ok, result.rung) == (True, "config_change")
    assert applied == ["refresh", "config_change"]


async def test_a_failed_restart_after_a_proven_refresh_climbs_on() -> None:
    clock = FakeClock()
    applied: list[str] = []

    async def apply(rung: str) -> bool:
        applied.append(rung)
        return rung != "restart"  # the site stays busy for the restart

    async def verify() -> Verification:
        return Verification(True, "ok", proof="activeVersion")

    result = await reload_app(apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5)
    assert (result.ok, result.rung) == (True, "config_change")
    assert applied == ["refresh", "restart", "config_change"]


async def test_a_refresh_with_no_rung_to_follow_is_cache_only() -> None:
    clock = FakeClock()

    async def apply(rung: str) -> bool:
        return True

    async def verify() -> Verification:
        return Verification(True, "ok", proof="activeVersion")

    result = await reload_app(
        apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5, rungs=("refresh",)
    )
    assert (result.ok, result.rung) == (True, "refresh")


async def test_unproven_refresh_is_kept_when_no_later_rung_verifies() -> None:
    clock = FakeClock()
    applied: list[str] = []

    async def apply(rung: str) -> bool:
        applied.append(rung)
        return rung == "refresh"  # every transition fails (site busy for good)

    async def verify() -> Verification:
        return Verification(True, "version unknown")

    result = await reload_app(apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5)
    assert result.ok
    assert result.rung == "refresh"
    assert result.proof is None
    assert applied == ["refresh", "config_change", "restart", "stop_start"]


async def test_every_rung_failing_to_apply_says_which_failed_last() -> None:
    clock = FakeClock()

    async def apply(rung: str) -> bool:
        return False

    async def verify() -> Verification:
        raise AssertionError("nothing was applied, nothing to verify")

    result = await reload_app(apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5)
    assert result.ok is False
    assert result.rung is None
    assert result.reason == "stop_start failed"
    assert clock.slept == []


async def test_the_reason_and_proof_of_the_working_rung_are_kept() -> None:
    clock = FakeClock()

    async def apply(rung: str) -> bool:
        return True

    async def verify() -> Verification:
        return Verification(True, "on v2", proof="activeVersion v2")

    result = await reload_app(apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5)
    assert (result.ok, result.rung, result.reason, result.proof) == (
        True,
        "restart",
        "on v2",
        "activeVersion v2",
    )


async def test_an_unproven_rung_keeps_its_reason() -> None:
    clock = FakeClock()

    async def apply(rung: str) -> bool:
        return rung == "refresh"

    async def verify() -> Verification:
        return Verification(True, "healthy, version unknown")

    result = await reload_app(apply=apply, verify=verify, clock=clock, timeouts=TIMEOUTS, poll=5)
    assert (result.ok, result.rung, result.reason, result.proof) == (
        True,
        "refresh",
        "healthy, version unknown",
        None,
    )


async def test_wait_verified_never_sleeps_past_its_deadline() -> None:
    clock = FakeClock()

    async def verify() -> Verification:
        return Verification(False, "not yet")

    v = await wait_verified(verify, clock, 8.5, 4.0, want_proof=False)
    assert not v.ok
    assert clock.slept == [4.0, 4.0, 0.5]


async def test_wait_verified_climbs_only_after_two_settled_answers_in_a_row() -> None:
    clock = FakeClock()
    answers = iter([False, True, False, True, True])

    async def verify() -> Verification:
        return Verification(False, "app holds v1", settled=next(answers))

    await wait_verified(verify, clock, 100.0, 5.0, want_proof=False)
    assert clock.slept == [5.0, 5.0, 5.0, 5.0]  # settled, not, settled, settled: stop


async def test_wait_verified_waits_for_proof_only_when_asked() -> None:
    clock = FakeClock()

    async def verify() -> Verification:
        return Verification(True, "version unknown")

    await wait_verified(verify, clock, 10.0, 5.0, want_proof=False)
    assert clock.slept == []
    await wait_verified(verify, clock, 10.0, 5.0, want_proof=True)
    assert clock.slept == [5.0, 5.0]


async def test_an_empty_ladder_reloads_nothing_and_says_so() -> None:
    async def apply(rung: str) -> bool:
        raise AssertionError("no rung to apply")

    async def verify() -> Verification:
        raise AssertionError("nothing to verify")

    result = await reload_app(
        apply=apply, verify=verify, clock=FakeClock(), timeouts=TIMEOUTS, poll=5, rungs=()
    )
    assert (result.ok, result.rung, result.reason) == (False, None, "not tried")
