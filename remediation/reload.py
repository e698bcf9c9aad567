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
from datetime import datetime

import structlog

from remediation.clock import Clock
from remediation.journal import Phase
from remediation.results import RungApplied, Verified
from remediation.runner import Run, StepError
from remediation.settings import WorkflowSettings
from remediation.verify import Verification, verify_app
from tenant.errors import TenantError
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
# Rungs that move only the platform's cache (activeVersion): a running process keeps
# the value it started with, so a proven refresh is followed by one of FOLLOW_UPS.
CACHE_ONLY_RUNGS = frozenset({"refresh"})
FOLLOW_UPS = ("restart", "config_change", "stop_start")
# Rungs that start every worker process anew (staggered over the instances).
RECYCLING_RUNGS = frozenset({"config_change", "pin", "restart", "stop_start"})
# Rungs that re-fetch the reference before they recycle (documented): the cache holds
# the new version for every worker they start.
REFETCHING_RUNGS = frozenset({"config_change", "pin"})
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


# What each rung's wait is for, as the CLI prints it while it waits.
WAITS_FOR = {
    "refresh": "ARM to report the new version as activeVersion (the refresh re-resolves "
    "asynchronously) and the app to verify",
    "config_change": "the site's restart (a configuration change re-fetches the reference) "
    "and the app to verify on the new version",
    "pin": "the site's restart on the pinned version and the app to verify",
    "restart": "the cold start and the app to verify on the new version",
    "stop_start": "the cold start and the app to verify on the new version",
}


def wait_line(rung: str, timeout: float) -> str:
    """``waiting up to 60s for ...``: said when a rung's wait begins."""
    return f"waiting up to {timeout:g}s for {WAITS_FOR.get(rung, 'the app to verify')}"


def ladder_plan(settings: WorkflowSettings) -> str:
    """The target's rungs, each with how long it waits: ``refresh (up to 60s) -> ...``."""
    timeouts = settings.rung_timeouts()
    return " -> ".join(f"{r} (up to {timeouts[r]:g}s)" for r in settings.ladder())


async def reload_app(
    *,
    apply: Callable[[str], Awaitable[bool]],
    verify: Callable[[], Awaitable[Verification]],
    clock: Clock,
    timeouts: dict[str, float],
    poll: float,
    rungs: Sequence[str] = RUNGS,
    waiting: Callable[[str, float], None] | None = None,
    waited: Callable[[str, float, Verification], None] | None = None,
) -> LadderResult:
    """Climb the ladder until ``verify`` passes.

    ``apply`` runs (and journals) a rung and returns False when the rung itself failed
    (e.g. ARM refused the refresh); the ladder then climbs without waiting.
    ``waiting(rung, timeout)`` is called as a rung's wait begins, ``waited(rung,
    seconds, verification)`` when it ends (the CLI prints both as they happen).
    """
    reason = "not tried"
    unproven: LadderResult | None = None
    for rung in rungs:
        if not await apply(rung):
            reason = f"{rung} failed"
            continue
        climb = rung in CLIMB_WHEN_UNKNOWN
        if waiting is not None:
            waiting(rung, timeouts[rung])
        began = clock.monotonic()
        v = await wait_verified(
            verify,
            clock,
            timeouts[rung],
            poll,
            want_proof=climb,
            patient=rung in ASYNCHRONOUS_RUNGS,
        )
        if waited is not None:
            waited(rung, clock.monotonic() - began, v)
        reason = v.reason
        if v.ok and v.proof is not None and rung in CACHE_ONLY_RUNGS:
            # activeVersion proves the platform's cache, not a running process: a
            # worker reads the cache when it starts, so start every worker now.
            follow = next((r for r in FOLLOW_UPS if r in rungs), None)
            if follow is None:
                return LadderResult(True, rung, reason, v.proof)
            if not await apply(follow):
                reason = f"{follow} after {rung} failed"
                continue
            v = await wait_verified(verify, clock, timeouts[follow], poll, want_proof=False)
            reason = v.reason
            if v.ok:
                return LadderResult(True, follow, reason, v.proof)
            continue
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

    facts = LadderFacts()

    async def check() -> Verification:
        v = await verify_app(run.prober, version, health=health, graph=graph, action=action)
        if v.active_seen:
            facts.active_seen = True
        if v.proof is not None and v.proof.startswith("ARM") and facts.cache_at is None:
            # The cache holds the new version from now on (at the latest): list the
            # workers now, so a later start (ARM's clock) is a process started after.
            facts.cache_at = run.clock.now()
            facts.mark = await latest_start(run)
        return v

    t0 = run.clock.monotonic()
    resumed = any(s.startswith(f"{prefix}reload.") for s in run.rec.begun + run.rec.done)

    async def apply(rung: str) -> bool:
        step = f"{prefix}reload.{rung}"

        async def body() -> RungApplied:
            mark = await latest_start(run) if rung in RECYCLING_RUNGS else None
            began = run.clock.now()
            await apply_rung(run, step, rung, version)
            if rung in REFETCHING_RUNGS:
                facts.cache_at, facts.mark, facts.recycled_at = began, mark, began
            elif rung in RECYCLING_RUNGS and facts.cache_at is not None:
                facts.recycled_at = began
                if mark is not None:
                    facts.mark = mark
            if rung in RECYCLING_RUNGS:
                await wait_recycled(run, step, mark)
            return RungApplied(rung)

        try:
            await run.step(step, body, metric_step="reload")
        except StepError:
            return False  # journaled as failed; climb to the next rung
        return True

    if resumed:
        # A run resumed mid-ladder (a crash, or another daemon's lease taken over) does
        # not know what the lost part of the ladder established about the running
        # processes: a verification now proves at most the platform's cache. One
        # re-fetching rung (the configuration change) re-establishes it: it puts the new
        # version in the cache and starts every worker after that.
        refetch = next((r for r in run.settings.ladder() if r in REFETCHING_RUNGS), None)
        if refetch is not None and refetch != "pin" and await apply(refetch):
            v = await wait_verified(
                check,
                run.clock,
                run.settings.rung_timeouts()[refetch],
                run.settings.verify_poll,
                want_proof=False,
            )
            if v.ok:
                run.observe_duration("verify", t0)
                await run.write(f"{prefix}verify", "done", facts.verified("resumed", v))
                run.emit(f"{prefix}verify", "done", v.reason)
                return v

    def waiting(rung: str, timeout: float) -> None:
        run.emit(f"{prefix}reload.{rung}", "wait", wait_line(rung, timeout))

    def waited(rung: str, seconds: float, v: Verification) -> None:
        proof = f"; proof: {v.proof}" if v.proof else ""
        run.emit(f"{prefix}reload.{rung}", "info", f"waited {seconds:.1f}s: {v.reason}{proof}")

    result = await reload_app(
        apply=apply,
        verify=check,
        clock=run.clock,
        timeouts=run.settings.rung_timeouts(),
        poll=run.settings.verify_poll,
        rungs=run.settings.ladder(),
        waiting=waiting,
        waited=waited,
    )
    if result.ok and facts.cache_at is not None and facts.recycled_at is None:
        # ARM showed the new version only after the last recycle began: the workers
        # may have started before the cache held it. Start them once more.
        follow = next((r for r in FOLLOW_UPS if r in run.settings.ladder()), None)
        if follow is not None and await apply(follow):
            v = await wait_verified(
                check,
                run.clock,
                run.settings.rung_timeouts()[follow],
                run.settings.verify_poll,
                want_proof=False,
            )
            if v.ok:
                result = LadderResult(True, follow, v.reason, v.proof or result.proof)
    run.observe_duration("verify", t0)
    phase: Phase = "done" if result.ok else "failed"
    await run.write(
        f"{prefix}verify",
        phase,
        facts.verified(result.rung, Verification(result.ok, result.reason, proof=result.proof)),
    )
    run.emit(f"{prefix}verify", phase, result.reason)
    return Verification(result.ok, result.reason, proof=result.proof)


@dataclass(slots=True)
class LadderFacts:
    """What one climb of the ladder established (see remediation.decisions.Reloaded)."""

    cache_at: datetime | None = None
    mark: datetime | None = None
    recycled_at: datetime | None = None
    active_seen: bool = False

    def verified(self, rung: str | None, v: Verification) -> Verified:
        """The journal record of a verdict, with what the ladder established."""
        return Verified(
            rung,
            v.reason,
            v.proof,
            _iso(self.cache_at),
            _iso(self.mark),
            _iso(self.recycled_at),
            self.active_seen,
        )


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


async def latest_start(run: Run) -> datetime | None:
    """The latest worker start ARM lists now (its clock); None when the per-instance
    view cannot be read or lists no start."""
    try:
        instances = await run.clients.site.instances()
    except TenantError:
        return None
    starts = [p.started for i in instances for p in i.workers if p.started is not None]
    return max(starts) if starts else None


async def wait_recycled(run: Run, step: str, mark: datetime | None) -> None:
    """After a recycling rung: wait until every instance's workers started after
    ``mark`` (the latest start before the rung), or the cold-start timeout. Without the
    per-instance view there is nothing to wait on: verification polls as before."""
    if mark is None:
        return
    deadline = run.clock.monotonic() + run.settings.cold_start_timeout
    while True:
        try:
            instances = await run.clients.site.instances()
        except TenantError as e:
            run.emit(step, "info", f"per-instance view not read: {e}")
            return
        starts = [[p.started for p in i.workers] for i in instances]
        if instances and all(s and all(t is not None and t > mark for t in s) for s in starts):
            run.emit(step, "info", f"every worker of {len(instances)} instance(s) restarted")
            return
        if run.clock.monotonic() >= deadline:
            run.emit(step, "info", "not every worker restarted within the cold-start timeout")
            return
        await run.clock.sleep(run.settings.verify_poll)
