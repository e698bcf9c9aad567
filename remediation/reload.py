"""The reload ladder: make the App Service load the current Key Vault value the way
Microsoft documents, with the least force that works.

Rungs, in order, each optional per target (``WorkflowSettings.rungs``):

- ``refresh``: ``POST .../config/configreferences/appsettings/refresh`` (documented
  api-version; the reply is undocumented and the refresh asynchronous), then poll the
  reference list until ARM reports the new version as activeVersion, or the refresh
  timeout. No downtime.
- ``config_change``: a configuration change of the site (an app setting written),
  which the docs say re-fetches references at once. The site restarts.
- ``pin`` (pinned references, in place of the two above): the reference setting is
  pointed at the new version: one configuration change.
- ``restart``: not documented to re-fetch; climbed only when verification fails.
- ``stop_start``: the runbook's last resort. After a Stop, Start is always attempted
  and retried, and the site must report Running; a site left Stopped is reported
  loudly (``secretwarden_remediation_site_stopped`` and an error log line).

After each rung, verification is polled. A rung "worked" when the app verifies;
without proof of the version (ARM reports no activeVersion) the ladder still climbs
from ``refresh`` to the documented re-fetch, and stops at the first other rung that
verifies. Transitions answer 409 while the site is busy: the one retry layer
(:meth:`remediation.runner.Run.call`) retries them with backoff.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from remediation.clock import Clock
from remediation.journal import Phase
from remediation.results import RungApplied, Verified
from remediation.runner import Run, StepError
from remediation.verify import Verification, verify_app
from tenant.models import SiteState

RUNGS = ("refresh", "config_change", "restart", "stop_start")
ALL_RUNGS = ("refresh", "config_change", "pin", "restart", "stop_start")
# Rungs after which a working app is taken as reloaded even without proof of the
# version: the ones Microsoft documents to re-fetch at once (and the last resorts,
# which have nothing above them). Only ``refresh`` climbs on when the version is unknown.
CLIMB_WHEN_UNKNOWN = frozenset({"refresh"})
# Rungs whose effect lands after ARM answered (the refresh re-resolves asynchronously,
# seconds later): the app still on the old version proves nothing until the rung's
# timeout, so the ladder does not climb early on them.
ASYNCHRONOUS_RUNGS = frozenset({"refresh"})
log = structlog.get_logger("secretwarden.remediation")


@dataclass(frozen=True, slots=True)
class LadderResult:
    ok: bool
    rung: str | None  # the rung after which verification passed
    reason: str  # the last verification's reason
    proof: str | None = None  # what proves the version (None: unknown)


async def wait_verified(
    verify: Callable[[], Awaitable[Verification]],
    clock: Clock,
    timeout: float,  # noqa: ASYNC109  # a deadline on the injected clock, not asyncio's
    poll: float,
    *,
    want_proof: bool,
    patient: bool = False,
) -> Verification:
    """Poll ``verify`` until it passes (with proof, when ``want_proof``), ``timeout``
    seconds have gone by, or (unless ``patient``: the rung's effect is still to come)
    it says twice in a row that waiting cannot help (the app is up on another version)."""
    deadline = clock.monotonic() + timeout
    settled = 0
    while True:
        v = await verify()
        settled = settled + 1 if v.settled else 0
        done = v.ok and (v.proof is not None or not want_proof)
        if done or (settled >= 2 and not patient) or clock.monotonic() >= deadline:
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
    unproven: LadderResult | None = None
    for rung in rungs:
        if not await apply(rung):
            reason = f"{rung} failed"
            continue
        climb = rung in CLIMB_WHEN_UNKNOWN
        v = await wait_verified(
            verify,
            clock,
            timeouts[rung],
            poll,
            want_proof=climb,
            patient=rung in ASYNCHRONOUS_RUNGS,
        )
        reason = v.reason
        if v.ok and (v.proof is not None or not climb):
            return LadderResult(True, rung, reason, v.proof)
        if v.ok and unproven is None:
            unproven = LadderResult(True, rung, reason, None)
    if unproven is not None:
        return unproven
    return LadderResult(False, None, reason)


# -- the rungs against the site ------------------------------------------------------------


async def apply_rung(run: Run, step: str, rung: str, version: str) -> None:
    """One rung against the site, through the retry layer."""
    site = run.clients.site
    attempts = run.settings.transition_attempts
    if rung == "refresh":
        await run.call(step, "refresh", site.refresh_key_vault_references, attempts=attempts)
    elif rung == "config_change":
        marker = f"{run.rec.run} {run.clock.now():%Y-%m-%dT%H:%M:%SZ}"
        await run.call(
            step,
            "configuration change",
            lambda: site.configuration_change(marker),
            attempts=attempts,
        )
    elif rung == "pin":
        await run.call(
            step, "pin the reference", lambda: site.write_reference(version), attempts=attempts
        )
    elif rung == "restart":
        await run.call(step, "restart", site.restart, attempts=attempts)
    elif rung == "stop_start":
        try:
            await run.call(step, "stop", site.stop, attempts=attempts)
        finally:
            # Whatever the Stop did (a lost reply may have stopped the site), Start.
            await ensure_running(run, step)
    else:
        raise ValueError(f"unknown reload rung {rung!r}")


async def ensure_running(run: Run, step: str) -> None:
    """Start the site (retried) and wait until ARM reports it Running. A site that
    stays Stopped is said loudly: a metric and an error log line, then a StepError."""
    site = run.clients.site
    s = run.settings
    last: str = "unknown"
    try:
        await run.call(step, "start", site.start, attempts=s.transition_attempts)
        deadline = run.clock.monotonic() + s.site_running_timeout
        while True:
            state = (await run.call(step, "read site state", site.get_site)).state
            last = state.value
            if state is SiteState.RUNNING:
                run.site_stopped = False
                if run.metrics:
                    run.metrics.site_stopped.labels(run.target).set(0)
                return
            if run.clock.monotonic() >= deadline:
                break
            await run.clock.sleep(min(run.settings.verify_poll, s.site_running_timeout))
    except StepError as e:
        last = f"{last}; {e.cause}"
    run.site_stopped = True
    if run.metrics:
        run.metrics.site_stopped.labels(run.target).set(1)
    log.error("site left stopped", step=step, state=last)
    raise StepError(
        run.target,
        step,
        f"the site is not Running after Stop+Start (state {last}); start it by hand",
    )


async def reload_and_verify(
    run: Run,
    version: str,
    *,
    prefix: str = "",
    health: bool = True,
    graph: bool = True,
    action: bool = True,
) -> Verification:
    """Climb the ladder for ``run`` until the app verifies on ``version``; journal the
    verdict as ``{prefix}verify``. A run resumed mid-ladder checks first: the app may
    already be fine."""

    async def check() -> Verification:
        return await verify_app(run.prober, version, health=health, graph=graph, action=action)

    t0 = run.clock.monotonic()
    if any(s.startswith(f"{prefix}reload.") for s in run.rec.begun + run.rec.done):
        v = await check()
        if v.ok:
            await run.write(f"{prefix}verify", "done", Verified("resumed", v.reason, v.proof))
            run.emit(f"{prefix}verify", "done", v.reason)
            return v

    async def apply(rung: str) -> bool:
        step = f"{prefix}reload.{rung}"

        async def body() -> RungApplied:
            await apply_rung(run, step, rung, version)
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
        rungs=run.settings.ladder(),
    )
    run.observe_duration("verify", t0)
    phase: Phase = "done" if result.ok else "failed"
    await run.write(f"{prefix}verify", phase, Verified(result.rung, result.reason, result.proof))
    run.emit(f"{prefix}verify", phase, result.reason)
    return Verification(result.ok, result.reason, proof=result.proof)
