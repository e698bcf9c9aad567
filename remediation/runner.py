"""Running one step of a remediation: the journal around it, the ONE error boundary and
the ONE retry layer (kopf's ``execute_handler_once``, in the runbook's words).

- :meth:`Run.step` journals ``begin``, runs the step's body, journals ``done`` with the
  body's typed result (a frozen dataclass, written with :func:`dataclasses.asdict`) or
  ``failed`` with the cause. It is the only place where an exception becomes an
  outcome: a :class:`~tenant.errors.TenantError` leaving a body becomes a
  :class:`StepError` that names the target, the step and the cause.
- :meth:`Run.call` is the only retry layer: one Azure call, repeated on transient
  errors (throttling, a busy site, outages) with exponential backoff that honours
  Retry-After. The tenant layer sends writes once; nothing else loops around a call.

The target and run id are bound with structlog's ``bound_contextvars`` by the
:class:`~remediation.workflow.Workflow`, so no log line here passes them by hand.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from remediation.clock import Clock
from remediation.decisions import gone_is_certain
from remediation.journal import RUN, Entry, Journal, Phase, RunRecord
from remediation.leadership import Leadership, Solo
from remediation.metrics import RemediationMetrics
from remediation.results import RunFacts
from remediation.settings import WorkflowSettings
from remediation.verify import Prober
from tenant.errors import TenantError
from tenant.models import NewPassword, RemoveOutcome
from tenant.ports import TargetClients

T = TypeVar("T")
R = TypeVar("R")
log = structlog.get_logger("secretwarden.remediation")


@dataclass(frozen=True, slots=True)
class StepEvent:
    """What the CLI prints live and the log records, one per step boundary."""

    target: str
    run: str
    action: str
    step: str
    phase: str  # begin | done | failed | info | plan | wait (a rung's wait begins)
    detail: str = ""


Progress = Callable[[StepEvent], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    target: str
    run: str
    action: str
    outcome: str  # success | failed | rolled_back | nothing_to_do | dry_run
    detail: str
    rotated: bool = False
    permanent: bool = False
    # A removal was followed by a failing app: the Remediator heals at once.
    heal_now: bool = False


class StepError(Exception):
    """A step failed. The message names the target, the step and the cause."""

    def __init__(self, target: str, step: str, cause: str, *, permanent: bool = False) -> None:
        self.target = target
        self.step = step
        self.cause = cause
        self.permanent = permanent
        super().__init__(f"target {target}: step {step} failed: {cause}")


class Restart(Exception):
    """The run was compensated (lost value removed); start a fresh rotation."""


def journal_data(result: object) -> dict[str, Any]:
    """A step result as journal data: dataclasses via ``asdict``, dicts as they are."""
    if result is None:
        return {}
    if is_dataclass(result) and not isinstance(result, type):
        return asdict(result)
    if isinstance(result, dict):
        return dict(result)
    raise TypeError(f"a step result must be a dataclass, got {type(result).__name__}")


class Run:
    """One remediation run's context: where it writes, what it may call, what it knows.

    Not reentrant; the Remediator serialises runs per target.
    """

    def __init__(
        self,
        target: str,
        clients: TargetClients,
        prober: Prober,
        journal: Journal,
        settings: WorkflowSettings,
        clock: Clock,
        *,
        metrics: RemediationMetrics | None = None,
        progress: Progress | None = None,
        dry_run: bool = False,
        leadership: Leadership | None = None,
    ) -> None:
        self.target = target
        self.leadership: Leadership = leadership or Solo()
        self.clients = clients
        self.prober = prober
        self.journal = journal
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.progress = progress
        self.dry_run = dry_run
        self.rec = RunRecord(run="", action="", started=clock.now())
        self.new: NewPassword | None = None  # the new value lives only in memory
        self.site_stopped = False  # a Stop+Start left the site Stopped (said loudly)

    @property
    def facts(self) -> RunFacts:
        """Everything this run has journaled, typed."""
        return RunFacts(self.rec.facts)

    # -- bookkeeping --------------------------------------------------------------

    async def open(self, action: str, trigger: str, **begin: object) -> None:
        now = self.clock.now()
        run = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        self.rec = RunRecord(run=run, action=action, started=now)
        self.new = None
        structlog.contextvars.bind_contextvars(run=run, action=action)
        who = {"daemon": self.leadership.name} if self.leadership.name else {}
        await self.write(
            RUN, "begin", {"trigger": trigger, "dry_run": self.dry_run, **who, **begin}
        )
        self.emit("run", "begin", f"{action} ({trigger})")

    def adopt(self, record: RunRecord) -> None:
        """Continue ``record`` (an unfinished run from the journal)."""
        self.rec = RunRecord(run=record.run, action=record.action, started=record.started)
        structlog.contextvars.bind_contextvars(run=record.run, action=record.action)
        for e in record.entries:
            self.rec.apply(e)
        self.new = None

    async def write(self, step: str, phase: Phase, data: object = None) -> None:
        """Journal one step boundary. Consults the leadership first: a daemon that
        cannot prove it holds the target's lease raises NotLeader and writes nothing."""
        entry_data = journal_data(data)
        if self.dry_run:  # dry-run writes nothing, not even the journal
            entry = Entry(self.clock.now(), self.rec.run, self.rec.action, step, phase, entry_data)
        else:
            self.leadership.check(self.target)
            entry = await self.journal.write(
                ts=self.clock.now(),
                run=self.rec.run,
                action=self.rec.action,
                step=step,
                phase=phase,
                data=entry_data,
            )
        self.rec.apply(entry)

    def emit(self, step: str, phase: str, detail: str = "") -> None:
        ev = StepEvent(self.target, self.rec.run, self.rec.action, step, phase, detail)
        log_fn = log.warning if phase == "failed" else log.info
        # target, run and action come from structlog's bound contextvars (Workflow)
        log_fn(
            "remediation step",
            step=step,
            phase=phase,
            detail=detail,
            dry_run=self.dry_run,
        )
        if self.progress:
            self.progress(ev)

    def last_step(self) -> str:
        steps = [e for e in self.rec.entries if e.step != RUN]
        return f"{steps[-1].step} {steps[-1].phase}" if steps else "its start"

    def observe_duration(self, step: str, t0: float) -> None:
        if self.metrics:
            self.metrics.step_duration.labels(self.target, self.rec.action, step).observe(
                self.clock.monotonic() - t0
            )

    # -- the error boundary -------------------------------------------------------

    async def step(
        self,
        step: str,
        body: Callable[[], Awaitable[R]],
        begin: object = None,
        *,
        metric_step: str | None = None,
    ) -> R:
        """Journal ``begin``, run ``body``, journal ``done`` with what it returned.

        The one place an exception becomes an outcome: a TenantError leaving ``body``
        is journaled as ``failed`` and raised as a StepError naming target and step.
        """
        begin_data = journal_data(begin)
        await self.write(step, "begin", begin_data)
        self.emit(step, "begin", fmt(begin_data))
        t0 = self.clock.monotonic()
        try:
            result = await body()
        except StepError as e:
            await self.write(step, "failed", {"error": e.cause})
            self.emit(step, "failed", e.cause)
            raise
        except TenantError as e:
            await self.write(step, "failed", {"error": str(e)})
            self.emit(step, "failed", str(e))
            raise StepError(self.target, step, str(e), permanent=e.permanent) from e
        finally:
            self.observe_duration(metric_step or step.split(".")[0], t0)
        data = journal_data(result)
        await self.write(step, "done", data)
        self.emit(step, "done", fmt(data))
        return result

    # -- the retry layer ----------------------------------------------------------

    async def call(
        self,
        step: str,
        what: str,
        fn: Callable[[], Awaitable[T]],
        *,
        passthrough: tuple[type[Exception], ...] = (),
        attempts: int | None = None,
    ) -> T:
        """One Azure call with retries for throttling, a busy site and outages
        (honours Retry-After). A permanent error, or the last attempt's, is raised as
        a StepError whose ``__cause__`` is the TenantError."""
        s = self.settings
        tries = attempts or s.step_attempts
        delay = s.step_backoff
        for attempt in range(1, tries + 1):
            if not self.dry_run:
                self.leadership.check(self.target)  # no Azure call without the lease
            try:
                return await fn()
            except passthrough:
                raise
            except TenantError as e:
                if e.permanent or attempt == tries:
                    raise StepError(self.target, step, f"{what}: {e}", permanent=e.permanent) from e
                wait = min(
                    e.retry_after if e.retry_after is not None else delay, s.step_backoff_max
                )
                reason = e.code or (f"HTTP {e.status}" if e.status else e.detail)
                self.emit(step, "info", f"{what}: {reason}; retry in {wait:.1f}s")
                await self.clock.sleep(wait)
                delay = min(delay * 2, s.step_backoff_max)
        raise AssertionError("unreachable")  # pragma: no cover

    async def remove_password(self, step: str, key_id: str) -> RemoveOutcome:
        """removePassword. A credential already gone (a resumed run, or a lost reply,
        removed it) is fine: the tenant layer decides that by a fresh read of the app,
        never by the wording of Graph's refusal.

        Except for a keyId this run added less than ``graph_read_lag`` ago: Graph
        answers a removePassword of it as for a missing keyId, and its reads do not
        list it yet, so "already gone" is not certain
        (:func:`remediation.decisions.gone_is_certain`): wait out the lag and remove
        it again."""
        remove = functools.partial(self.clients.app.remove_password, key_id)
        outcome = await self.call(step, "removePassword", remove)
        added = self.added_at(key_id)
        lag = timedelta(seconds=self.settings.graph_read_lag)
        if outcome is RemoveOutcome.ALREADY_GONE and not gone_is_certain(
            added, self.clock.now(), lag
        ):
            assert added is not None
            left = (added + lag - self.clock.now()).total_seconds()
            self.emit(step, "info", f"{key_id} was added {lag} ago at most: removing it again")
            await self.clock.sleep(max(0.0, left) + self.settings.step_backoff)
            outcome = await self.call(step, "removePassword", remove)
        return outcome

    def added_at(self, key_id: str) -> datetime | None:
        """When this run's addPassword of ``key_id`` returned (journaled), or None."""
        for e in self.rec.entries:
            added = str(e.data.get("new_key_id") or "").lower()
            if e.step == "add_password" and e.phase == "done" and added == key_id.lower():
                return e.ts
        return None


def fmt(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    return " ".join(f"{k}={v}" for k, v in data.items())
