"""The reload ladder climbs only as far as it must, on a fake clock."""

from __future__ import annotations

from remediation.clock import FakeClock
from remediation.reload import reload_app
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
    assert sum(clock.slept) == 10.0  # one poll per rung to confirm, not its full timeout


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


async def test_proof_after_refresh_stops_there() -> None:
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
    assert result.rung == "refresh"
    assert result.proof == "activeVersion"
    assert applied == ["refresh"]


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
