"""The reload ladder: make the App Service load the current Key Vault value with the
least force that works.

Rungs, in order: the Key Vault reference refresh (no downtime), Restart (a cold
start), then Stop + Start (the runbook's fix for a restart that keeps cached
references warm). After each rung the caller's ``verify`` is polled until it passes or
the rung's timeout ends; only then does the ladder climb.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from remediation.clock import Clock
from remediation.journal import Phase
from remediation.results import RungApplied, Verified
from remediation.runner import Run, StepError
from remediation.verify import Verification, verify_app
from tenant.ports import AppService

RUNGS = ("refresh", "restart", "stop_start")


async def apply_rung(site: AppService, rung: str) -> None:
    if rung == "refresh":
        await site.refresh_key_vault_references()
    elif rung == "restart":
        await site.restart()
    elif rung == "stop_start":
        await site.stop()
        await site.start()
    else:
        raise ValueError(f"unknown reload rung {rung!r}")


@dataclass(frozen=True, slots=True)
class LadderResult:
    ok: bool
    rung: str | None  # the rung after which verification passed
    reason: str  # the last verification's reason


async def wait_verified(
    verify: Callable[[], Awaitable[Verification]],
    clock: Clock,
    timeout: float,  # noqa: ASYNC109  # a deadline on the injected clock, not asyncio's
    poll: float,
) -> Verification:
    """Poll ``verify`` until it passes, ``timeout`` seconds have gone by, or it says
    twice in a row that waiting cannot help (the app is up on another version)."""
    deadline = clock.monotonic() + timeout
    settled = 0
    while True:
        v = await verify()
        settled = settled + 1 if v.settled else 0
        if v.ok or settled >= 2 or clock.monotonic() >= deadline:
            return v
        await clock.sleep(min(poll, max(0.0, deadline - clock.monotonic())))


async def reload_app(
    *,
    apply: Callable[[str], Awaitable[bool]],
    verify: Callable[[], Awaitable[Verification]],
    clock: Clock,
    timeouts: dict[str, float],
    poll: float,
    rungs: Sequence[str] = RUNGS,
) -> LadderResult:
    """Climb the ladder until ``verify`` passes.

    ``apply`` runs (and journals) a rung and returns False when the rung itself failed
    (e.g. ARM refused the refresh); the ladder then climbs without waiting.
    """
    reason = "not tried"
    for rung in rungs:
        if not await apply(rung):
            reason = f"{rung} failed"
            continue
        v = await wait_verified(verify, clock, timeouts[rung], poll)
        reason = v.reason
        if v.ok:
            return LadderResult(True, rung, reason)
    return LadderResult(False, None, reason)


async def reload_and_verify(
    run: Run, version: str, *, prefix: str = "", health: bool = True, graph: bool = True
) -> bool:
    """Climb the ladder for ``run`` until the app verifies on ``version``; journal the
    verdict as ``{prefix}verify``. A run resumed mid-ladder checks first: the app may
    already be fine."""

    async def check() -> Verification:
        return await verify_app(run.prober, version, health=health, graph=graph)

    t0 = run.clock.monotonic()
    if any(s.startswith(f"{prefix}reload.") for s in run.rec.begun + run.rec.done):
        v = await check()
        if v.ok:
            run.write(f"{prefix}verify", "done", Verified("resumed", v.reason))
            run.emit(f"{prefix}verify", "done", v.reason)
            return True

    async def apply(rung: str) -> bool:
        step = f"{prefix}reload.{rung}"

        async def body() -> RungApplied:
            await run.call(step, rung, lambda: apply_rung(run.clients.site, rung))
            return RungApplied(rung)

        try:
            await run.step(step, body, metric_step="reload")
        except StepError:
            return False  # journaled as failed; climb to the next rung
        return True

    result = await reload_app(
        apply=apply,
        verify=check,
        clock=run.clock,
        timeouts=run.settings.rung_timeouts(),
        poll=run.settings.verify_poll,
    )
    run.observe_duration("verify", t0)
    phase: Phase = "done" if result.ok else "failed"
    run.write(f"{prefix}verify", phase, Verified(result.rung, result.reason))
    run.emit(f"{prefix}verify", phase, result.reason)
    return result.ok
