"""The runbook, automated: ``rotate`` and ``heal`` as small journaled steps.

This module drives a run from its start (or from the journal, after a crash) to its
outcome. The pieces live along their seams:

- :mod:`remediation.runner`: one step and its journal lines, the one error boundary,
  the one retry layer;
- :mod:`remediation.rotation`: plan -> add_password -> wait_propagation ->
  write_keyvault -> reload + verify -> grace_period -> remove_old;
- :mod:`remediation.rollback`: verification never passed -> previous value back;
- :mod:`remediation.heal`: diagnose a Graph failure -> reload, or rotate;
- :mod:`remediation.decisions`: the safety decisions, pure and table-tested.

Every step is journaled before and after it runs. :meth:`Workflow.resume` continues an
unfinished run from the journal; a new credential whose value died with the process
(before the Key Vault write) is removed and the rotation starts again, as the runbook
says for a lost value.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

import structlog

from remediation.cleanup import cleanup
from remediation.clock import Clock
from remediation.decisions import Blocked
from remediation.heal import heal
from remediation.journal import RUN, TAKEOVER, Journal, RunRecord
from remediation.leadership import Leadership
from remediation.metrics import RemediationMetrics
from remediation.results import PendingRemoval
from remediation.rollback import ROLLBACK_TAG as ROLLBACK_TAG
from remediation.rotation import RUN_TAG as RUN_TAG
from remediation.rotation import rotate
from remediation.runner import Outcome as Outcome
from remediation.runner import Progress as Progress
from remediation.runner import Restart, Run, StepError
from remediation.runner import StepEvent as StepEvent
from remediation.settings import WorkflowSettings as WorkflowSettings
from remediation.verify import Prober
from tenant.errors import TenantError
from tenant.ports import TargetClients

Action = Literal["rotate", "heal"]
log = structlog.get_logger("secretwarden.remediation")


class Workflow:
    """One target's remediation runs. Not reentrant: the Remediator serialises runs."""

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
        self.metrics = metrics
        self.dry_run = dry_run
        self.run_ = Run(
            target,
            clients,
            prober,
            journal,
            settings,
            clock,
            metrics=metrics,
            progress=progress,
            dry_run=dry_run,
            leadership=leadership,
        )

    # -- entry points -------------------------------------------------------------

    async def run(self, action: Action, trigger: str, *, force: bool = False) -> Outcome:
        """Run ``action`` from the start. ``force`` rotates even when not yet due."""
        with structlog.contextvars.bound_contextvars(target=self.target, run=None, action=None):
            await self.run_.open(action, trigger, force=force)
            return await self._drive(force=force)

    async def cleanup(
        self, pending: PendingRemoval, proof: str, *, recycle: bool = False
    ) -> Outcome:
        """Remove credentials a rotation left pending, now that ``proof`` says the app
        no longer uses them; then check the app once more. ``recycle``: the overlap
        window is over but a worker may predate the cache: recycle every worker (a
        configuration change) and journal the pending removal anew instead."""
        with structlog.contextvars.bound_contextvars(target=self.target, run=None, action=None):
            await self.run_.open(
                "cleanup",
                f"pending removal: {proof}",
                proof=proof,
                recycle=recycle,
                **asdict(pending),
            )
            return await self._drive(force=True)

    async def resume(self, record: RunRecord, *, blocked: Blocked | None = None) -> Outcome:
        """Finish a run the journal shows unfinished (the process died during it).

        The run keeps its own ``force``: a non-forced rotation asks "is it due" again,
        and one that wrote nothing yet stops when a guard blocks it now."""
        run = self.run_
        with structlog.contextvars.bound_contextvars(target=self.target, run=None, action=None):
            run.adopt(record)
            run.emit("run", "info", f"resuming run {record.run} after {run.last_step()}")
            if run.leadership.name and not self.dry_run:
                # HA: say in the journal which daemon finished the run (``status``).
                await run.write(
                    TAKEOVER, "done", {"daemon": run.leadership.name, "after": run.last_step()}
                )
            begin = record.entries[0].data if record.entries else {}
            force = bool(begin.get("force", True))
            wrote = record.was_begun("add_password") or any(
                s.startswith("reload.") for s in record.begun + record.done + record.failed
            )
            if blocked is not None and not force and not wrote:
                return await self._finish("blocked", f"resumed run stopped: {blocked.detail}")
            return await self._drive(force=force)

    async def _drive(self, *, force: bool) -> Outcome:
        run = self.run_
        action = run.rec.action
        if self.metrics:
            self.metrics.in_progress.labels(self.target, action).set(1)
        try:
            while True:
                try:
                    if run.rec.action == "heal":
                        outcome, detail = await heal(run)
                    elif run.rec.action == "cleanup":
                        outcome, detail = await cleanup(run)
                    else:
                        outcome, detail = await rotate(run, force=force)
                except Restart:
                    prev = run.rec.run
                    await run.open("rotate", f"restart after lost value in {prev}")
                    force = True
                    continue
                return await self._finish(outcome, detail)
        except StepError as e:
            heal_now = e.step in ("recheck", "cleanup.recheck")
            return await self._finish("failed", str(e), permanent=e.permanent, heal_now=heal_now)
        except TenantError as e:  # a read outside a step wrapper; still name the target
            return await self._finish("failed", f"target {self.target}: {e}", permanent=e.permanent)
        finally:
            if self.metrics:
                self.metrics.in_progress.labels(self.target, action).set(0)

    async def _finish(
        self, outcome: str, detail: str, *, permanent: bool = False, heal_now: bool = False
    ) -> Outcome:
        run = self.run_
        rec = run.rec
        if run.site_stopped:
            detail += "; the site is Stopped (Start failed after a Stop): start it by hand"
        rotated = outcome == "success" and rec.is_done("write_keyvault")
        data: dict[str, object] = {"outcome": outcome, "rotated": rotated, "permanent": permanent}
        if outcome in ("failed", "rolled_back"):
            data["error"] = detail
        await run.write(RUN, "done", data)
        run.emit("run", "failed" if outcome in ("failed", "rolled_back") else "done", detail)
        if outcome in ("failed", "rolled_back"):
            log.error("remediation failed", outcome=outcome, error=detail)
        if self.metrics:
            self.metrics.total.labels(self.target, rec.action, outcome).inc()
            if rotated:
                finished = rec.finished or run.clock.now()  # as journaled
                self.metrics.last_rotation.labels(self.target).set(finished.timestamp())
        return Outcome(
            self.target, rec.run, rec.action, outcome, detail, rotated, permanent, heal_now
        )
