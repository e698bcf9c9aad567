"""The Remediator: one place where triggers become runs, behind the guards.

Triggers come from the policy (probe observations), the Alertmanager webhook and the
CLI. Per target at most one run exists at a time; a trigger that arrives while one
runs is coalesced into it, and so is one that repeats, within ``duplicate_window``
seconds, the action of a run that has just ended with nothing to do or successfully
(so a storm of identical alerts is one run, however long it lasts). Automatic
triggers pass the guards (cap, backoff, circuit); a manual run by an operator does not.

A run releases its target's cross-process lock inside its own task, before anyone
can see the task done: a trigger right after a run ended never finds the lock still
held by this very process (a 409 naming the daemon's own pid).
On start, :meth:`Remediator.recover` finishes whatever the journal shows unfinished.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import structlog
from prometheus_client import CollectorRegistry

from exporters.observations import Observed
from remediation import access, compaction
from remediation.clock import Clock, SystemClock
from remediation.decisions import Verdict
from remediation.guards import Blocked, Guards, GuardSettings
from remediation.journal import Journal, RunRecord
from remediation.leadership import Leadership, NotLeader, Solo
from remediation.lock import TargetBusy, TargetLock
from remediation.metrics import BLOCK_REASONS, RemediationMetrics
from remediation.policy import Action, Policy
from remediation.proof import decide, gather, pending_removals, reloaded_of
from remediation.results import PendingRemoval
from remediation.verify import Prober
from remediation.watch import last_removal, refresh_never_active, site_left_stopped
from remediation.workflow import Outcome, Progress, Workflow, WorkflowSettings
from tenant.errors import TenantError
from tenant.leases import StorageError
from tenant.models import SiteState
from tenant.ports import TargetClients

log = structlog.get_logger("secretwarden.remediation")

TriggerStatus = Literal["started", "coalesced", "blocked", "busy", "unknown_target", "disabled"]


@dataclass(frozen=True, slots=True)
class RemediationTarget:
    name: str
    clients: TargetClients
    prober: Prober
    settings: WorkflowSettings | None = None  # the target's own; None: the Remediator's


@dataclass(frozen=True, slots=True)
class TriggerResult:
    target: str
    action: str
    status: TriggerStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Running:
    action: str
    task: asyncio.Task[Outcome]


@dataclass(frozen=True, slots=True)
class _Ended:
    """The last finished run of a target, for answering its duplicates."""

    outcome: Outcome
    at: float  # clock.monotonic()


# Outcomes after which an identical trigger would only repeat the run's answer.
SETTLED = ("success", "nothing_to_do")

READ_ONLY = (
    "remediation is off ([remediation] enabled = false): this daemon writes nothing to "
    "Azure; pending removals wait for a daemon with remediation on or `secretwarden cleanup`"
)


def _writes_allowed() -> bool:
    return True


@dataclass
class Remediator:
    targets: Mapping[str, RemediationTarget]
    state_dir: Path
    settings: WorkflowSettings = field(default_factory=WorkflowSettings)
    guard_settings: GuardSettings = field(default_factory=GuardSettings)
    policy: Policy | None = None  # None: observations never trigger anything
    clock: Clock = field(default_factory=SystemClock)
    registry: CollectorRegistry | None = None
    dry_run: bool = False
    progress: Progress | None = None  # step events of runs nobody waits on (the demo)
    # After a run of an action ends settled (SETTLED), the same action's automatic
    # triggers for the target within this many seconds are coalesced into its answer.
    duplicate_window: float = 60.0
    # False while this process may not write to Azure on its own ([remediation] enabled
    # = false): no automatic run, no cleanup, no recovery. ``run`` (the CLI) still acts.
    writes_allowed: Callable[[], bool] = _writes_allowed
    # Who may remediate a target (remediation.leadership): this daemon alone, or the
    # holder of the target's blob lease ([ha]); and where a target's journal lives.
    leadership: Leadership = field(default_factory=Solo)
    journals: Callable[[str], Journal] | None = None  # None: the local file
    # A target's own settings without building its clients (the daemon's targets are
    # built on use, and its Azure clients exist only once it started; the journal is
    # folded before that). None: ``targets[name].settings``.
    target_settings: Callable[[str], WorkflowSettings | None] | None = None

    def __post_init__(self) -> None:
        registry = self.registry if self.registry is not None else CollectorRegistry()
        # Registered before the metrics it updates, so a scrape sees this scrape's state.
        registry.register(_JournalWatch(self))
        self.metrics = RemediationMetrics(registry, self.targets)
        # The journal's (inode, size, mtime) when the metrics were last rebuilt from it.
        self._synced: dict[str, tuple[int, int, int] | None] = {}
        self.guards = Guards(self.guard_settings)
        self._running: dict[str, _Running] = {}
        self._ended: dict[str, _Ended] = {}
        self._compacted: dict[str, int] = {}  # journal size that makes _compact look again
        self._blocked: dict[str, str | None] = {}
        self._waiting: dict[str, str] = {}  # the last "why it waits" said per target
        self._checks: dict[str, asyncio.Task[Outcome | None]] = {}
        self._parsed: dict[str, tuple[tuple[int, int, int], list[RunRecord]]] = {}
        self._stopped: set[str] = set()  # targets a Stop+Start left Stopped
        self._cleared: dict[str, datetime] = {}  # ... seen Running and healthy since
        self._watched: dict[str, float] = {}  # monotonic time of the last watch check
        self._watch_checks: dict[str, asyncio.Task[Outcome | None]] = {}
        for name in self.targets:
            self._seed(name)

    def _journal_key(self, name: str) -> tuple[int, int, int] | None:
        try:
            st = self.journal(name).path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _seed(self, name: str) -> None:
        """A restart forgets neither a guard, nor the last rotation, nor a credential
        pending removal: replay the journal."""
        self._synced[name] = self._journal_key(name)
        if access.journal_problem(self.journal(name)) is not None:
            self._update_blocked(name, "rotate")  # shows and logs why, and the fix
            return
        runs = self.journal(name).runs()
        self._update_blocked(name, "rotate", runs)
        self._seed_last_rotation(name, runs)
        # A site a Stop+Start left Stopped stays said after a restart of the daemon,
        # until the site runs and is healthy again (see note()).
        self._show_stopped(name, runs)
        self._show_watch(name, runs)

    # -- after a removal: watch the app one token lifetime ---------------------------

    def watch_until(self, target: str, runs: list[RunRecord] | None = None) -> datetime | None:
        """When the post-removal watch of ``target`` ends (None: no removal yet)."""
        last = last_removal(self._runs(target) if runs is None else runs)
        if last is None:
            return None
        return last + timedelta(seconds=self.settings_for(target).post_removal_watch)

    def _show_watch(self, target: str, runs: list[RunRecord] | None = None) -> bool:
        until = self.watch_until(target, runs)
        watching = until is not None and self.clock.now() < until
        self.metrics.removal_watch.labels(target).set(1 if watching else 0)
        return watching

    async def watch_check(self, target: str) -> Outcome | None:
        """During the post-removal watch: the app's own action and /health once. A
        cached token outlives its removed credential by up to its lifetime, so a
        failure shows up late: it heals at once (the reload ladder, or a rotation when
        the Key Vault value is the one that fails). None when nothing ran."""
        if target not in self.targets or self.running(target) is not None or self.dry_run:
            return None
        if not self._show_watch(target):
            return None
        prober = self.targets[target].prober
        self._watched[target] = self.clock.monotonic()
        problems: list[str] = []
        action = await prober.app_action()
        if action is not None and not action.ok:
            problems.append(f"the app's own action failed (HTTP {action.status})")
        health = await prober.health()
        if not health.ok:
            problems.append(f"/health not OK (status {health.status_code})")
        if not problems:
            return None
        why = "; ".join(problems)
        log.error("the app failed after a removal; healing at once", target=target, why=why)
        try:
            lock = self._lock(target, False)
        except TargetBusy as e:
            log.error("heal after a removal not started", target=target, detail=str(e))
            return None
        heal = self._workflow(target, None, False)
        task = asyncio.create_task(
            heal.run("heal", f"post-removal watch: {why}", force=True),
            name=f"watch-heal-{target}",
        )
        _release_when_done(task, lock)
        self._running[target] = _Running("heal", task)
        healed = await task
        self._account(target, healed)
        return healed

    def _schedule_watch_check(self, target: str) -> None:
        busy = self._watch_checks.get(target)
        if busy is not None and not busy.done():
            return
        interval = self.settings_for(target).post_removal_watch_interval
        last = self._watched.get(target)
        if last is not None and self.clock.monotonic() - last < interval:
            return
        if not self._show_watch(target):
            return
        self._watch_checks[target] = asyncio.create_task(
            self.watch_check(target), name=f"watch-{target}"
        )

    async def _clear_stopped(self, target: str) -> None:
        """The site runs and is healthy again: clear secretwarden_remediation_site_stopped."""
        try:
            site = await self.targets[target].clients.site.get_site()
        except TenantError:
            return
        if site.state is SiteState.RUNNING:
            self._cleared[target] = self.clock.now()
            self._stopped.discard(target)
            self.metrics.site_stopped.labels(target).set(0)

    def _show_stopped(self, target: str, runs: list[RunRecord] | None = None) -> None:
        at = site_left_stopped(self._runs(target) if runs is None else runs)
        cleared = self._cleared.get(target)
        if at is not None and (cleared is None or cleared < at):
            self._stopped.add(target)
            self.metrics.site_stopped.labels(target).set(1)
        else:
            self._stopped.discard(target)

    def sync_with_journal(self) -> None:
        """Show what other processes (``secretwarden rotate``, ``cleanup``) wrote to the
        shared journal: the last rotation, pending removals and guards, as a restart
        would. Cheap when nothing changed (one stat per target); called on each scrape."""
        for name in list(self.targets):
            key = self._journal_key(name)
            if name in self._synced and self._synced[name] == key:
                continue
            self._synced[name] = key
            if key is not None and name in self.metrics.targets:
                try:
                    self._seed(name)
                except OSError as e:  # unreadable now: the guard shows it on the next trigger
                    log.warning("journal not read", target=name, error=str(e))

    def _seed_last_rotation(self, name: str, runs: list[RunRecord]) -> None:
        rotated = [r.finished for r in runs if r.finished and r.facts.get("rotated")]
        if rotated:
            self.metrics.last_rotation.labels(name).set(max(rotated).timestamp())
        self._show_pending(name, runs)

    def pending(self, target: str) -> list[PendingRemoval]:
        """Credentials of ``target`` kept until proof (or the overlap window's end)."""
        return pending_removals(self._runs(target))

    def _show_pending(self, target: str, runs: list[RunRecord] | None = None) -> None:
        """``secretwarden_credential_pending_removal``: 1 per keyId still waiting."""
        waiting = pending_removals(self._runs(target) if runs is None else runs)
        keys = {k for p in waiting for k in p.pending_key_ids}
        self.metrics.pending_removal.remove_by_labels({"target": target})
        self.metrics.pending_until.remove_by_labels({"target": target})
        for p in waiting:
            until = datetime.fromisoformat(p.pending_until).timestamp()
            for k in p.pending_key_ids:
                self.metrics.pending_until.labels(target, k).set(until)
        for k in sorted(keys):
            self.metrics.pending_removal.labels(target, k).set(1)

    def waiting_reason(self, target: str) -> str | None:
        """Why the target's pending removal still waits, as last decided (None: not
        checked since the start, or nothing waits)."""
        return self._waiting.get(target)

    def settings_for(self, target: str) -> WorkflowSettings:
        if self.target_settings is not None:
            own = self.target_settings(target)
        else:
            own = self.targets[target].settings
        return own if own is not None else self.settings

    async def check_pending(self, target: str) -> Outcome | None:
        """Finish a pending removal of ``target`` when proof has arrived or its window
        has ended (a ``cleanup`` run); otherwise leave it. None when nothing ran."""
        if target not in self.targets or self.running(target) is not None or self.dry_run:
            return None
        if not self.writes_allowed():
            return None  # read-only: the pending removal waits (status and docs say so)
        if self._elsewhere(target) is not None:
            return None  # the lease holder finishes it
        waiting = self.pending(target)
        if not waiting:
            self._show_pending(target)
            return None
        t = self.targets[target]
        settings = self.settings_for(target)
        p = waiting[0]
        try:
            app_id = await t.clients.app.client_id()
            gathered = await gather(
                t.clients,
                app_id=app_id,
                keep_key_id=p.keep_key_id,
                keep_version=p.keep_version,
                old_key_ids=p.pending_key_ids,
                since=datetime.fromisoformat(p.reloaded_at),
                now=self.clock.now(),
                reloaded=reloaded_of(p),
                settings=settings,
            )
        except TenantError as e:
            log.warning("pending removal not checked", target=target, error=str(e))
            return None
        verdict = decide(p, gathered, self.clock.now(), settings)
        if verdict.verdict is not Verdict.REMOVE and not verdict.recycle:
            if self._waiting.get(target) != verdict.proof:
                log.info(
                    "credential pending removal",
                    target=target,
                    key_ids=list(p.pending_key_ids),
                    why=verdict.proof,
                    notes=list(gathered.notes),
                )
            self._waiting[target] = verdict.proof
            return None
        self._waiting.pop(target, None)
        try:
            lock = self._lock(target, False)
        except TargetBusy:
            return None
        wf = self._workflow(target, None, False)
        task = asyncio.create_task(
            _holding(target, lock, wf.cleanup(p, verdict.proof, recycle=verdict.recycle), None),
            name=f"cleanup-{target}",
        )
        _release_when_done(task, lock)
        self._running[target] = _Running("cleanup", task)
        outcome = await task
        return await self._after(target, outcome)

    async def _after(self, target: str, outcome: Outcome) -> Outcome:
        """Account for a finished run; a removal that broke the app heals at once."""
        self._account(target, outcome)
        if not outcome.heal_now:
            return outcome
        log.error("the app failed after a removal; healing at once", target=target)
        if (elsewhere := self._elsewhere(target)) is not None:
            log.error("heal after a removal not started", target=target, detail=elsewhere)
            return outcome
        try:
            lock = self._lock(target, False)
        except TargetBusy as e:  # another process holds the target: it will see the 401s
            log.error("heal after a removal not started", target=target, detail=str(e))
            return outcome
        heal = self._workflow(target, None, False)
        task = asyncio.create_task(
            _holding(
                target,
                lock,
                heal.run("heal", f"app failed after removal in {outcome.run}", force=True),
                None,
            )
        )
        _release_when_done(task, lock)
        self._running[target] = _Running("heal", task)
        healed = await task
        self._account(target, healed)
        return outcome

    def _check_guards(
        self, target: str, action: str, runs: list[RunRecord] | None = None
    ) -> Blocked | None:
        # Rebuilt from the journal each time: it also holds the runs of other processes.
        problem = access.journal_problem(self.journal(target))
        if problem is None and runs is None:
            try:
                runs = self._runs(target)
            except PermissionError:  # changed under us since the check
                problem = access.describe(self.journal(target), [self.journal(target).path])
        if problem is not None:
            return Blocked(access.REASON, None, problem)
        self.guards.seed(target, runs if runs is not None else [])
        return self.guards.check(target, action, self.clock.now())

    def _runs(self, target: str) -> list[RunRecord]:
        """The journal's runs, parsed again only when the file has changed: the guards
        read them on every probe observation, and every append changes the size."""
        journal = self.journal(target)
        try:
            st = journal.path.stat()
        except FileNotFoundError:
            return []
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._parsed.get(target)
        if cached is None or cached[0] != key:
            # Only what the guards (and a pending removal) need of them: compaction
            # bounds how many, this how big (tens of KB a run in lines).
            runs = compaction.needed(journal.runs(), self.clock.now())
            cached = self._parsed[target] = (key, compaction.for_memory(runs))
        return cached[1]

    def targets_changed(self) -> None:
        """After a config reload: series for new targets, none for removed ones."""
        known = self.metrics.targets
        self.metrics.set_targets(self.targets)
        for name in self.targets:
            if name not in known:
                self._seed(name)

    def journal(self, target: str) -> Journal:
        if self.journals is not None:
            return self.journals(target)
        return Journal(self.state_dir, target)

    def _elsewhere(self, target: str) -> str | None:
        """Why this daemon may not remediate ``target`` now (None: it may)."""
        if self.leadership.holds(target):
            return None
        return (
            f"target {target}: this daemon does not hold its lease (high availability); "
            "the daemon that holds it remediates it"
        )

    async def adopt(self, target: str) -> bool:
        """This daemon has just taken ``target``'s lease: read its journal from storage,
        seed the guards and pending removals from it, and resume or compensate an
        unfinished run exactly as after a crash (in the background). False when the
        journal cannot be read (the lease is then given back)."""
        if target not in self.targets:
            return False
        try:
            await self.journal(target).refresh()
        except StorageError as e:
            log.error("journal not read after taking the lease", target=target, error=str(e))
            return False
        self._parsed.pop(target, None)
        self._compacted.pop(target, None)
        self._seed(target)
        if self.journal(target).unfinished() is not None and self.running(target) is None:
            asyncio.get_running_loop().call_soon(self._start_recovery, target, None)
        return True

    def running(self, target: str) -> str | None:
        r = self._running.get(target)
        return r.action if r and not r.task.done() else None

    # -- triggers -----------------------------------------------------------------

    def observe(self, observed: Observed) -> TriggerResult | None:
        """The daemon's observer hook: feed each probe observation to the policy."""
        if self.policy is None:
            return None
        if observed.target in self.targets and self.running(observed.target) is None:
            self._update_blocked(observed.target, "rotate")  # a backoff may have ended
        decision = self.policy.evaluate(observed)
        if decision is None:
            return None
        return self.trigger(decision.target, decision.action, f"policy: {decision.reason}")

    def note(self, observed: Observed) -> None:
        """Every probe observation, policy or not: each reference observation looks
        again at a pending removal (finishing a rotation is not a new remediation)."""
        if observed.target not in self.targets:
            return
        if observed.probe == "reference":
            self._schedule_pending_check(observed.target)
        self._schedule_watch_check(observed.target)
        value = observed.value
        if (
            observed.probe == "health"
            and getattr(value, "ok", False)
            and observed.target in self._stopped
        ):
            self._checks[f"stopped-{observed.target}"] = asyncio.create_task(
                self._clear_stopped(observed.target)
            )

    def _schedule_pending_check(self, target: str) -> None:
        if not self.writes_allowed():
            return
        busy = self._checks.get(target)
        if (busy is not None and not busy.done()) or not self.pending(target):
            return
        self._checks[target] = asyncio.create_task(
            self.check_pending(target), name=f"pending-{target}"
        )

    def trigger(
        self, target: str, action: Action, source: str, *, force: bool = False
    ) -> TriggerResult:
        """Start ``action`` for ``target`` in the background, unless guarded or running.

        Returns at once; the caller never waits for the run (see :meth:`wait`).
        """
        if target not in self.targets:
            return TriggerResult(target, action, "unknown_target", f"no target named {target!r}")
        if not self.writes_allowed():
            return TriggerResult(target, action, "disabled", READ_ONLY)
        running = self._running.get(target)
        if running is not None and not running.task.done():
            return TriggerResult(
                target, action, "coalesced", f"joined the {running.action} run in progress"
            )
        duplicate = self._duplicate_of(target, action)
        if duplicate is not None:
            return TriggerResult(target, action, "coalesced", duplicate)
        if (elsewhere := self._elsewhere(target)) is not None:
            return TriggerResult(target, action, "busy", elsewhere)
        blocked = self._check_guards(target, action)
        if blocked is not None:
            self._report_blocked(target, action, blocked)
            return TriggerResult(target, action, "blocked", blocked.detail)
        try:
            lock = self._lock(target, self.dry_run)
        except TargetBusy as e:
            log.warning("remediation busy", target=target, action=action, detail=str(e))
            return TriggerResult(target, action, "busy", str(e))
        self._show_blocked(target, action, None)  # the guards were just asked
        task = asyncio.create_task(
            _holding(target, lock, self._run(target, action, source, force=force), self._compact),
            name=f"remediation-{target}-{action}",
        )
        _release_when_done(task, lock)
        self._running[target] = _Running(action, task)
        log.info("remediation triggered", target=target, action=action, source=source)
        return TriggerResult(target, action, "started", source)

    async def wait(self, target: str) -> Outcome | None:
        """Wait for the run in progress for ``target`` (None when there is none)."""
        r = self._running.get(target)
        if r is None:
            return None
        return await r.task

    async def run(
        self,
        target: str,
        action: Action,
        source: str,
        *,
        force: bool = True,
        progress: Progress | None = None,
        dry_run: bool | None = None,
    ) -> Outcome:
        """Run ``action`` in the foreground (the CLI), past the guards but never
        concurrently with another run for the target: one in this process is waited
        for; one in another process raises :class:`~remediation.lock.TargetBusy`; a
        journal this process cannot use raises :class:`~remediation.access.JournalUnusable`."""
        if target not in self.targets:
            raise KeyError(f"no target named {target!r}")
        if (problem := access.journal_problem(self.journal(target))) is not None:
            raise access.JournalUnusable(problem)
        running = self._running.get(target)
        if running is not None and not running.task.done():
            await running.task
        if (elsewhere := self._elsewhere(target)) is not None:
            raise TargetBusy(target, elsewhere)
        lock = self._lock(target, self.dry_run if dry_run is None else dry_run)
        task = asyncio.create_task(
            _holding(
                target,
                lock,
                self._run(
                    target,
                    action,
                    source,
                    force=force,
                    progress=progress,
                    dry_run=dry_run,
                ),
                self._compact,
            )
        )
        _release_when_done(task, lock)
        self._running[target] = _Running(action, task)
        return await task

    async def recover(self, progress: Progress | None = None) -> list[Outcome]:
        """Resume or compensate every run the journal shows unfinished (concurrently,
        one per target); triggers meanwhile are coalesced into these runs. In HA mode,
        only the targets whose lease this daemon holds (:meth:`adopt` does the others
        when their lease is taken)."""
        if not self.writes_allowed():
            for name in self.targets:
                journal = self.journal(name)
                if access.journal_problem(journal) is None and journal.unfinished() is not None:
                    log.warning("unfinished remediation left alone", target=name, why=READ_ONLY)
            return []
        tasks = [t for name in self.targets if (t := self._start_recovery(name, progress))]
        return list(await asyncio.gather(*tasks))

    def resume_unfinished(self, target: str) -> None:
        """HA, each lease round: a held target's unfinished run starts again here if
        nothing runs for it (the safety net behind :meth:`adopt`)."""
        self._start_recovery(target, None)

    def _start_recovery(self, name: str, progress: Progress | None) -> asyncio.Task[Outcome] | None:
        if name not in self.targets or self._elsewhere(name) is not None:
            return None
        if not self.writes_allowed():
            return None  # read-only: an unfinished run waits for a daemon that may write
        if access.journal_problem(self.journal(name)) is not None:
            return None  # blocked and logged: nothing to read, nothing to resume
        if self.running(name) is not None or self.journal(name).unfinished() is None:
            return None
        if self.dry_run:
            log.warning(
                "unfinished remediation left alone: dry run writes nothing",
                target=name,
            )
            return None
        lock = self.journal(name).lock()
        try:
            lock.acquire()
        except TargetBusy as e:  # its owner is alive and finishing it
            log.warning("unfinished remediation owned elsewhere", target=name, detail=str(e))
            return None
        rec = self.journal(name).unfinished()  # again, now that nobody else writes it
        if rec is None:
            lock.release()
            return None
        log.warning("resuming unfinished remediation", target=name, run=rec.run)
        task = asyncio.create_task(
            _holding(name, lock, self._resume(name, rec, progress), self._compact)
        )
        _release_when_done(task, lock)
        self._running[name] = _Running(rec.action, task)
        return task

    async def close(self) -> None:
        """Cancel runs in progress; their journal stays unfinished and resumes later."""
        tasks: list[asyncio.Task[Any]] = [
            r.task for r in self._running.values() if not r.task.done()
        ]
        tasks += [t for t in self._checks.values() if not t.done()]
        tasks += [t for t in self._watch_checks.values() if not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ----------------------------------------------------------------

    def _lock(self, target: str, dry_run: bool) -> TargetLock | None:
        """Take the target's cross-process lock (a dry run writes nothing, so needs none)."""
        if dry_run:
            return None
        lock = self.journal(target).lock()
        lock.acquire()
        return lock

    def _workflow(self, target: str, progress: Progress | None, dry_run: bool | None) -> Workflow:
        t = self.targets[target]
        settings = self.settings_for(target)
        try:
            learned = refresh_never_active(self._runs(target))
        except PermissionError:
            learned = False
        if learned:
            settings = replace(settings, refresh_never_active=True)
        return Workflow(
            target,
            t.clients,
            t.prober,
            self.journal(target),
            settings,
            self.clock,
            metrics=self.metrics,
            progress=progress or self.progress,
            dry_run=self.dry_run if dry_run is None else dry_run,
            leadership=self.leadership,
        )

    async def _run(
        self,
        target: str,
        action: Action,
        source: str,
        *,
        force: bool,
        progress: Progress | None = None,
        dry_run: bool | None = None,
    ) -> Outcome:
        wf = self._workflow(target, progress, dry_run)
        rec = self.journal(target).unfinished()
        if rec is not None and not wf.dry_run:
            blocked = self._check_guards(target, rec.action)
            outcome = await wf.resume(rec, blocked=blocked)  # finish the interrupted run first
            self._account(target, outcome)
            if outcome.outcome in ("failed", "rolled_back") or action == rec.action:
                return outcome
            wf = self._workflow(target, progress, dry_run)
        outcome = await wf.run(action, source, force=force)
        return await self._after(target, outcome)

    async def _resume(self, target: str, rec: RunRecord, progress: Progress | None) -> Outcome:
        blocked = self._check_guards(target, rec.action)
        outcome = await self._workflow(target, progress, False).resume(rec, blocked=blocked)
        self._account(target, outcome)
        return outcome

    def _compact(self, target: str) -> None:
        """Called by :func:`_holding` while the run still holds the target's lock, so
        no other process appends while the journal is rewritten."""
        journal = self.journal(target)
        try:
            # Parse it for that only when it has doubled since it was last looked at.
            if journal.path.stat().st_size <= self._compacted.get(target, 0):
                return
            compaction.maybe_compact(journal, self.clock.now())
            self._compacted[target] = 2 * journal.path.stat().st_size
        except FileNotFoundError:
            return
        except OSError as e:  # a full disk must not turn a finished run into a failure
            log.warning("journal compaction failed", target=target, error=str(e))

    def _duplicate_of(self, target: str, action: str) -> str | None:
        """Why a trigger only repeats a run that has just ended settled, or None."""
        ended = self._ended.get(target)
        if ended is None or ended.outcome.action != action:
            return None
        if ended.outcome.outcome not in SETTLED:
            return None
        age = self.clock.monotonic() - ended.at
        if not 0 <= age < self.duplicate_window:
            return None
        return (
            f"a duplicate of {action} run {ended.outcome.run}, which ended {age:.0f}s ago "
            f"({ended.outcome.outcome}: {ended.outcome.detail}); identical triggers within "
            f"{self.duplicate_window:g}s of it start no new run"
        )

    def _account(self, target: str, outcome: Outcome) -> None:
        self._ended[target] = _Ended(outcome, self.clock.monotonic())
        if outcome.outcome == "dry_run":
            return
        self._update_blocked(target, "rotate")  # the run is in the journal now
        self._show_pending(target)
        self._show_watch(target)
        self._show_stopped(target)

    def _report_blocked(self, target: str, action: str, blocked: Blocked) -> None:
        """A trigger was refused: show the guard and count the refusal."""
        self._show_blocked(target, action, blocked)
        self.metrics.total.labels(target, action, "blocked").inc()

    def _update_blocked(
        self, target: str, action: str, runs: list[RunRecord] | None = None
    ) -> None:
        was = self._blocked.get(target)
        self._show_blocked(target, action, self._check_guards(target, action, runs))
        if was == access.REASON and self._blocked.get(target) != access.REASON:
            # The journal is readable again: what start-up could not seed, seed now.
            log.info("remediation journal readable again", target=target)
            self._seed_last_rotation(target, self.journal(target).runs())

    def _show_blocked(self, target: str, action: str, blocked: Blocked | None) -> None:
        """The blocked gauge per reason, and one log line when the reason changes."""
        for reason in BLOCK_REASONS:
            on = blocked is not None and blocked.reason == reason
            self.metrics.blocked.labels(target, reason).set(1 if on else 0)
        if blocked is not None and self._blocked.get(target) != blocked.reason:
            log.log(
                logging.ERROR if blocked.reason == access.REASON else logging.WARNING,
                "remediation blocked",
                target=target,
                action=action,
                reason=blocked.reason,
                detail=blocked.detail,
            )
        self._blocked[target] = blocked.reason if blocked else None


class _JournalWatch:
    """A collector that yields nothing: on each scrape it brings the remediation
    metrics up to date with the journal (a local stat; never a call to Azure)."""

    def __init__(self, remediator: Remediator) -> None:
        self._remediator = remediator

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        self._remediator.sync_with_journal()
        return []


async def _holding(
    target: str,
    lock: TargetLock | None,
    run: Awaitable[Outcome],
    compact: Callable[[str], None] | None,
) -> Outcome:
    """Run, compact the journal (only with the lock held: a dry run holds none), then
    free the target inside the same task: a done-callback runs one loop step after the
    task is seen done, and a trigger in between would find the lock still held by this
    process. A run that lost the target's lease (NotLeader) stops where it was, its
    journal unfinished, as after a crash: the lease's next holder finishes it."""
    interrupted = False
    try:
        return await run
    except NotLeader as e:
        interrupted = True
        log.warning("remediation interrupted: lease not held", target=target, why=e.why)
        return Outcome(target, "", "", "interrupted", str(e))
    finally:
        if lock is not None:
            try:
                if compact is not None and not interrupted:
                    compact(lock.target)
            finally:
                lock.release()


def _release_when_done(task: asyncio.Task[Outcome], lock: TargetLock | None) -> None:
    """Free the target if the task is cancelled before it ever ran (then
    :func:`_holding`'s ``finally`` never runs); release is idempotent."""
    if lock is not None:
        task.add_done_callback(lambda _t: lock.release())
