"""The runbook, automated: ``rotate_secret`` and ``heal`` as small journaled steps.

Rotation: plan (read the current Key Vault version and the credential it belongs to)
-> add_password -> wait_propagation (a token request with the new value succeeds; an
unproven value is never written) -> write_keyvault (tagged ``secretwarden-key-id``) ->
reload ladder + verify (the exporters' probes) -> grace_period -> remove_old. If
verification never passes: rollback (restore the previous value as a new version,
reload, remove the new credential). The old credential is never removed before the
app is proven on the new one.

Healing: diagnose with the Graph probe. The Key Vault value itself is rejected
(invalid or expired) -> rotate. The value is valid but the app fails -> the reload
ladder only: a 401 that a reload fixes never causes a rotation.

Every step is journaled before and after it runs. :meth:`Workflow.resume` continues an
unfinished run from the journal; a new credential whose value died with the process
(before the Key Vault write) is removed and the rotation starts again, as the runbook
says for a lost value.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar

import structlog

from exporters.expiry import candidates
from remediation.clock import Clock
from remediation.journal import RUN, Entry, Journal, Phase, RunRecord, crash_point
from remediation.metrics import RemediationMetrics
from remediation.reload import RUNGS, apply_rung, reload_app
from remediation.verify import Prober, Verification, verify_app
from tenant.errors import NotFound, TenantError, TooManySecrets
from tenant.models import (
    KEY_ID_TAG,
    NewPassword,
    PasswordCredential,
    SecretVersion,
    TokenFailure,
)
from tenant.ports import TargetClients

RUN_TAG = "secretwarden-run"
ROLLBACK_TAG = "secretwarden-rollback-of"

Action = Literal["rotate", "heal"]
T = TypeVar("T")
log = structlog.get_logger("secretwarden.remediation")


@dataclass(frozen=True, slots=True)
class WorkflowSettings:
    """Timings and choices of one remediation (all waits in seconds)."""

    rotate_before: timedelta = timedelta(days=30)
    secret_lifetime: timedelta = timedelta(days=180)
    display_name_prefix: str = "secretwarden"
    propagation_timeout: float = 180.0
    propagation_poll: float = 2.0
    propagation_poll_max: float = 15.0
    refresh_timeout: float = 60.0
    cold_start_timeout: float = 300.0
    verify_poll: float = 5.0
    grace_period: float = 0.0
    step_attempts: int = 5
    step_backoff: float = 1.0
    step_backoff_max: float = 60.0

    def rung_timeouts(self) -> dict[str, float]:
        return {
            "refresh": self.refresh_timeout,
            "restart": self.cold_start_timeout,
            "stop_start": self.cold_start_timeout,
        }


@dataclass(frozen=True, slots=True)
class StepEvent:
    """What the CLI prints live and the log records, one per step boundary."""

    target: str
    run: str
    action: str
    step: str
    phase: str  # begin | done | failed | info | plan
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


class StepError(Exception):
    """A step failed. The message names the target, the step and the cause."""

    def __init__(self, target: str, step: str, cause: str, *, permanent: bool = False) -> None:
        self.target = target
        self.step = step
        self.cause = cause
        self.permanent = permanent
        super().__init__(f"target {target}: step {step} failed: {cause}")


class _Restart(Exception):
    """The run was compensated (lost value removed); start a fresh rotation."""


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
    ) -> None:
        self.target = target
        self.clients = clients
        self.prober = prober
        self.journal = journal
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.progress = progress
        self.dry_run = dry_run
        self._rec = RunRecord(run="", action="", started=clock.now())
        self._new: NewPassword | None = None  # the new value lives only in memory

    # -- entry points -------------------------------------------------------------

    async def run(self, action: Action, trigger: str, *, force: bool = False) -> Outcome:
        """Run ``action`` from the start. ``force`` rotates even when not yet due."""
        self._open(action, trigger)
        return await self._drive(force=force)

    async def resume(self, record: RunRecord) -> Outcome:
        """Finish a run the journal shows unfinished (the process died during it)."""
        self._rec = RunRecord(run=record.run, action=record.action, started=record.started)
        for e in record.entries:
            self._rec.apply(e)
        self._new = None
        self._emit("run", "info", f"resuming run {record.run} after {self._last_step()}")
        return await self._drive(force=True)

    async def _drive(self, *, force: bool) -> Outcome:
        action = self._rec.action
        if self.metrics:
            self.metrics.in_progress.labels(self.target, action).set(1)
        try:
            while True:
                try:
                    if self._rec.action == "heal":
                        outcome = await self._heal()
                    else:
                        outcome = await self._rotate(force=force)
                except _Restart:
                    prev = self._rec.run
                    self._open("rotate", f"restart after lost value in {prev}")
                    force = True
                    continue
                return self._finish(outcome, self._rec.facts.get("detail") or outcome)
        except StepError as e:
            self._rec.facts["permanent"] = e.permanent
            return self._finish("failed", str(e), permanent=e.permanent)
        except TenantError as e:  # a read outside a step wrapper; still name the target
            return self._finish("failed", f"target {self.target}: {e}", permanent=e.permanent)
        finally:
            if self.metrics:
                self.metrics.in_progress.labels(self.target, action).set(0)

    # -- bookkeeping --------------------------------------------------------------

    def _open(self, action: Action, trigger: str) -> None:
        now = self.clock.now()
        run = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        self._rec = RunRecord(run=run, action=action, started=now)
        self._new = None
        self._write(RUN, "begin", {"trigger": trigger, "dry_run": self.dry_run})
        self._emit("run", "begin", f"{action} ({trigger})")

    def _write(self, step: str, phase: Phase, data: dict[str, Any] | None = None) -> None:
        entry_data = dict(data or {})
        if self.dry_run:  # dry-run writes nothing, not even the journal
            entry = Entry(
                self.clock.now(), self._rec.run, self._rec.action, step, phase, entry_data
            )
        else:
            entry = self.journal.append(
                ts=self.clock.now(),
                run=self._rec.run,
                action=self._rec.action,
                step=step,
                phase=phase,
                data=entry_data,
            )
        self._rec.apply(entry)

    def _emit(self, step: str, phase: str, detail: str = "") -> None:
        ev = StepEvent(self.target, self._rec.run, self._rec.action, step, phase, detail)
        log_fn = log.warning if phase == "failed" else log.info
        log_fn(
            "remediation step",
            target=self.target,
            run=ev.run,
            action=ev.action,
            step=step,
            phase=phase,
            detail=detail,
            dry_run=self.dry_run,
        )
        if self.progress:
            self.progress(ev)

    def _last_step(self) -> str:
        steps = [e for e in self._rec.entries if e.step != RUN]
        return f"{steps[-1].step} {steps[-1].phase}" if steps else "its start"

    def _finish(self, outcome: str, detail: str, *, permanent: bool = False) -> Outcome:
        rotated = outcome == "success" and self._rec.is_done("write_keyvault")
        data = {"outcome": outcome, "rotated": rotated, "permanent": permanent}
        if outcome in ("failed", "rolled_back"):
            data["error"] = detail
        self._write(RUN, "done", data)
        self._emit("run", "failed" if outcome in ("failed", "rolled_back") else "done", detail)
        if outcome in ("failed", "rolled_back"):
            log.error(
                "remediation failed",
                target=self.target,
                run=self._rec.run,
                action=self._rec.action,
                outcome=outcome,
                error=detail,
            )
        if self.metrics:
            self.metrics.total.labels(self.target, self._rec.action, outcome).inc()
            if rotated:
                finished = self._rec.finished or self.clock.now()  # as journaled
                self.metrics.last_rotation.labels(self.target).set(finished.timestamp())
        return Outcome(
            self.target, self._rec.run, self._rec.action, outcome, detail, rotated, permanent
        )

    async def _step(
        self,
        step: str,
        body: Callable[[], Awaitable[dict[str, Any]]],
        begin: dict[str, Any] | None = None,
        *,
        metric_step: str | None = None,
    ) -> dict[str, Any]:
        """Journal ``begin``, run ``body``, journal ``done`` with what it returned."""
        self._write(step, "begin", begin)
        self._emit(step, "begin", _fmt(begin))
        t0 = self.clock.monotonic()
        try:
            data = await body()
        except StepError as e:
            self._write(step, "failed", {"error": e.cause})
            self._emit(step, "failed", e.cause)
            raise
        except TenantError as e:
            self._write(step, "failed", {"error": str(e)})
            self._emit(step, "failed", str(e))
            raise StepError(self.target, step, str(e), permanent=e.permanent) from e
        finally:
            if self.metrics:
                self.metrics.step_duration.labels(
                    self.target, self._rec.action, metric_step or step.split(".")[0]
                ).observe(self.clock.monotonic() - t0)
        self._write(step, "done", data)
        self._emit(step, "done", _fmt(data))
        return data

    async def _call(
        self,
        step: str,
        what: str,
        fn: Callable[[], Awaitable[T]],
        *,
        passthrough: tuple[type[Exception], ...] = (),
    ) -> T:
        """One Azure call with retries for throttling and outages (honours Retry-After)."""
        s = self.settings
        delay = s.step_backoff
        for attempt in range(1, s.step_attempts + 1):
            try:
                return await fn()
            except passthrough:
                raise
            except TenantError as e:
                if e.permanent or attempt == s.step_attempts:
                    raise StepError(self.target, step, f"{what}: {e}", permanent=e.permanent) from e
                wait = min(
                    e.retry_after if e.retry_after is not None else delay, s.step_backoff_max
                )
                reason = e.code or (f"HTTP {e.status}" if e.status else e.detail)
                self._emit(step, "info", f"{what}: {reason}; retry in {wait:.1f}s")
                await self.clock.sleep(wait)
                delay = min(delay * 2, s.step_backoff_max)
        raise AssertionError("unreachable")  # pragma: no cover

    def _facts(self) -> dict[str, Any]:
        return self._rec.facts

    # -- rotation -----------------------------------------------------------------

    async def _rotate(self, *, force: bool) -> str:
        r = self._rec
        if not r.is_done("plan"):
            await self._step("plan", self._plan)
        f = self._facts()
        if not force and not f.get("due", True):
            f["detail"] = f"nothing to do: in-use secret expires {f.get('in_use_end')}"
            return "nothing_to_do"
        if self.dry_run:
            self._print_plan()
            f["detail"] = "dry run: nothing written"
            return "dry_run"
        if r.was_begun("add_password") and not r.is_done("write_keyvault") and self._new is None:
            await self._recover_lost_value()
        if not r.was_begun("add_password"):
            try:
                await self._step(
                    "add_password",
                    self._add_password,
                    {"display_name": self._display_name(), "lifetime_days": self._days()},
                )
                await self._step("wait_propagation", self._wait_propagation)
                await self._step(
                    "write_keyvault", self._write_keyvault, {"key_id": f["new_key_id"]}
                )
            except StepError as e:
                try:
                    await self._remove_orphan()
                except StepError as e2:
                    raise StepError(
                        self.target,
                        e.step,
                        f"{e.cause}; removing the new credential failed too: {e2.cause}",
                        permanent=e.permanent,
                    ) from e
                raise
            finally:
                self._new = None  # the value is in Key Vault now, or lost on purpose
        if not r.is_done("verify"):
            # A resumed run whose ladder already ran out goes on with the rollback.
            gave_up = "verify" in r.failed or r.was_begun("rollback.restore")
            if gave_up or not await self._reload_and_verify(f["new_version"]):
                return await self._rollback()
        if self.settings.grace_period > 0 and not r.is_done("grace_period"):
            await self._step("grace_period", self._grace)
        if not r.is_done("remove_old"):
            await self._step("remove_old", self._remove_old, {"key_ids": self._old_keys()})
        kept = f"; old credential not removed: {f['old_unsure']}" if f.get("old_unsure") else ""
        f["detail"] = (
            f"rotated: Key Vault version {f['new_version']} holds credential "
            f"{f['new_key_id']}; removed {f.get('removed') or 'no old credential'}{kept}"
        )
        return "success"

    def _display_name(self) -> str:
        f = self._facts()
        if "display_name" not in f:
            day = f"{self.clock.now():%Y-%m-%d}"
            return f"{self.settings.display_name_prefix} {day} {self._rec.run[-6:]}"
        return str(f["display_name"])

    def _days(self) -> int:
        return int(self.settings.secret_lifetime.total_seconds() // 86400)

    def _old_keys(self) -> list[str]:
        new = self._facts().get("new_key_id")
        return [k for k in self._facts().get("old_key_ids", []) if k != new]

    async def _plan(self) -> dict[str, Any]:
        now = self.clock.now()
        current = await self._call("plan", "read Key Vault secret", self.clients.vault.get_current)
        app = await self._call("plan", "read app registration", self.clients.app.get_app)
        by_id = {c.key_id: c for c in app.credentials}
        old_keys, unsure = await self._old_credential(app.client_id, app.credentials, current)
        in_use = by_id.get(old_keys[0]) if old_keys else None
        due = (
            in_use is None or in_use.end is None or in_use.end - now <= self.settings.rotate_before
        )
        return {
            "old_version": current.version,
            "old_key_ids": old_keys,
            "old_unsure": unsure,
            "client_id": app.client_id,
            "credential_count": len(app.credentials),
            "in_use_end": in_use.end.isoformat() if in_use and in_use.end else None,
            "due": due,
        }

    async def _old_credential(
        self,
        client_id: str,
        credentials: tuple[PasswordCredential, ...],
        current: SecretVersion,
    ) -> tuple[list[str], str | None]:
        """The credential the Key Vault value belongs to, only when that is certain:
        ``remove_old`` deletes it. Otherwise no key id, and why not (nothing is removed;
        leaving a stale secret breaks nothing, deleting someone else's would)."""
        if current.value is None:
            return [], "the current Key Vault version has no value"
        proof = await self.clients.entra.try_secret(client_id, current.value)
        if proof.failure is TokenFailure.INVALID_SECRET:
            return [], "Entra refuses the Key Vault value: it belongs to no credential"
        cands = candidates(credentials, current.value, current.tags)
        tagged = current.tags.get(KEY_ID_TAG)
        if len(cands) == 1 and (tagged == cands[0].key_id or proof.ok or proof.secret_rejected):
            # Tagged by a rotation (and the hint agrees), or the only credential with the
            # value's hint while Entra knows the value (valid or expired).
            return [cands[0].key_id], None
        if len(cands) > 1:
            return [], f"{len(cands)} credentials share the Key Vault value's hint"
        if not cands:
            return [], "no credential has the Key Vault value's hint"
        return [], f"Entra could not check the Key Vault value ({proof.failure or proof.error})"

    def _print_plan(self) -> None:
        f = self._facts()
        lines = [
            f"add a client secret {self._display_name()!r} valid {self._days()} days",
            f"wait up to {self.settings.propagation_timeout:.0f}s until Entra accepts it",
            f"write it to Key Vault as a new version tagged {KEY_ID_TAG}=<new keyId> "
            f"(current version {f['old_version']})",
            "reload the app: " + " -> ".join(RUNGS) + ", verifying after each",
            "verify: reference on the new version, /health 200, Graph call OK",
            f"remove the old credential(s) {self._old_keys()}"
            if self._old_keys()
            else f"remove no old credential: {f.get('old_unsure')}",
        ]
        for i, line in enumerate(lines, 1):
            self._emit("plan", "plan", f"{i}. {line}")

    async def _add_password(self) -> dict[str, Any]:
        name = self._display_name()
        end = self.clock.now() + self.settings.secret_lifetime
        try:
            new = await self._call(
                "add_password",
                "addPassword",
                lambda: self.clients.app.add_password(name, end),
                passthrough=(TooManySecrets,),
            )
        except TooManySecrets as e:
            await self._step("free_slot", self._free_slot, {"cause": e.code or "TooManySecrets"})
            new = await self._call(
                "add_password", "addPassword", lambda: self.clients.app.add_password(name, end)
            )
        self._new = new
        crash_point("add_password:returned")
        return {"new_key_id": new.credential.key_id}

    async def _free_slot(self) -> dict[str, Any]:
        """The app holds as many secrets as it may: drop an expired one nobody uses."""
        now = self.clock.now()
        app = await self._call("free_slot", "read app registration", self.clients.app.get_app)
        in_use = set(self._facts().get("old_key_ids", []))
        spare = [c for c in app.credentials if c.expired(now) and c.key_id not in in_use]
        if not spare:
            held = ", ".join(f"{c.key_id} ({c.display_name})" for c in app.credentials)
            raise StepError(
                self.target,
                "add_password",
                "the app holds the maximum number of client secrets and none is both "
                f"expired and unused; remove one by hand: {held}",
                permanent=True,
            )
        victim = spare[0]
        await self._call(
            "free_slot", "removePassword", lambda: self.clients.app.remove_password(victim.key_id)
        )
        return {"freed_key_id": victim.key_id}

    async def _wait_propagation(self) -> dict[str, Any]:
        assert self._new is not None
        new = self._new
        client_id = str(self._facts()["client_id"])
        s = self.settings
        start = self.clock.monotonic()
        delay = s.propagation_poll
        tries = 0
        while True:
            tries += 1
            out = await self.clients.entra.try_secret(client_id, new.value)
            if out.ok:
                return {"tries": tries, "seconds": round(self.clock.monotonic() - start, 3)}
            left = start + s.propagation_timeout - self.clock.monotonic()
            if left <= 0:
                why = out.failure.value if out.failure else out.error
                raise StepError(
                    self.target,
                    "wait_propagation",
                    f"Entra did not accept the new secret within {s.propagation_timeout:.0f}s "
                    f"({tries} tries; last: {why}, AADSTS{out.aadsts})",
                )
            wait = delay if out.failure is not TokenFailure.THROTTLED else max(delay, 1.0)
            await self.clock.sleep(min(wait, left))
            delay = min(delay * 2, s.propagation_poll_max)

    async def _write_keyvault(self) -> dict[str, Any]:
        assert self._new is not None
        new = self._new
        tags = {KEY_ID_TAG: new.credential.key_id, RUN_TAG: self._rec.run}
        v = await self._call(
            "write_keyvault",
            "set secret",
            lambda: self.clients.vault.set_value(new.value, tags),
        )
        return {"new_version": v.version}

    async def _remove_orphan(self) -> None:
        """Remove this run's new credential before its value reaches Key Vault."""
        if not self._rec.was_begun("add_password") or self._rec.is_done("write_keyvault"):
            return
        await self._step("compensate", self._remove_run_credentials)

    async def _remove_run_credentials(self) -> dict[str, Any]:
        f = self._facts()
        app = await self._call("compensate", "read app registration", self.clients.app.get_app)
        name = f.get("display_name")
        ours = [
            c.key_id
            for c in app.credentials
            if c.key_id == f.get("new_key_id") or (name and c.display_name == name)
        ]
        for key_id in ours:
            await self._remove_password("compensate", key_id)
        return {"orphans_removed": ours}

    async def _remove_password(self, step: str, key_id: str) -> None:
        """removePassword; a credential already gone (a resumed run removed it) is fine."""
        try:
            await self._call(
                step, "removePassword", functools.partial(self.clients.app.remove_password, key_id)
            )
        except StepError as e:
            if not isinstance(e.__cause__, NotFound):
                raise

    async def _recover_lost_value(self) -> None:
        """After a crash between addPassword and the Key Vault write done."""
        f = self._facts()
        if self._rec.was_begun("write_keyvault") and f.get("new_key_id"):
            current = await self._call(
                "write_keyvault", "read Key Vault secret", self.clients.vault.get_current
            )
            if current.tags.get(KEY_ID_TAG) == f["new_key_id"]:
                # The write landed before the crash: nothing was lost.
                self._write("write_keyvault", "done", {"new_version": current.version})
                self._emit("write_keyvault", "done", f"found version {current.version} (recovered)")
                return
        self._emit("compensate", "info", "the new secret's value was lost in a crash")
        await self._step("compensate", self._remove_run_credentials)
        self._write(RUN, "done", {"outcome": "compensated", "rotated": False, "permanent": False})
        raise _Restart()

    async def _reload_and_verify(
        self, version: str, *, prefix: str = "", health: bool = True, graph: bool = True
    ) -> bool:
        async def check() -> Verification:
            return await verify_app(self.prober, version, health=health, graph=graph)

        t0 = self.clock.monotonic()
        if any(s.startswith(f"{prefix}reload.") for s in self._rec.begun + self._rec.done):
            v = await check()  # resumed mid-ladder: the app may already be fine
            if v.ok:
                self._write(f"{prefix}verify", "done", {"rung": "resumed", "reason": v.reason})
                self._emit(f"{prefix}verify", "done", v.reason)
                return True
        result = await reload_app(
            apply=lambda rung: self._apply_rung_prefixed(prefix, rung),
            verify=check,
            clock=self.clock,
            timeouts=self.settings.rung_timeouts(),
            poll=self.settings.verify_poll,
        )
        if self.metrics:
            self.metrics.step_duration.labels(self.target, self._rec.action, "verify").observe(
                self.clock.monotonic() - t0
            )
        phase: Phase = "done" if result.ok else "failed"
        self._write(f"{prefix}verify", phase, {"rung": result.rung, "reason": result.reason})
        self._emit(f"{prefix}verify", phase, result.reason)
        return result.ok

    async def _apply_rung_prefixed(self, prefix: str, rung: str) -> bool:
        async def body() -> dict[str, Any]:
            await self._call(
                f"{prefix}reload.{rung}", rung, lambda: apply_rung(self.clients.site, rung)
            )
            return {"rung": rung}

        try:
            await self._step(f"{prefix}reload.{rung}", body, metric_step="reload")
        except StepError:
            return False  # journaled as failed; climb to the next rung
        return True

    async def _grace(self) -> dict[str, Any]:
        await self.clock.sleep(self.settings.grace_period)
        return {"seconds": self.settings.grace_period}

    async def _remove_old(self) -> dict[str, Any]:
        removed: list[str] = []
        for key_id in self._old_keys():
            await self._remove_password("remove_old", key_id)
            removed.append(key_id)
        return {"removed": removed}

    async def _rollback(self) -> str:
        """Verification never passed: put the previous value back, drop the new one."""
        r = self._rec
        f = self._facts()
        reason = f.get("reason", "verification failed")
        self._emit("rollback", "info", f"verification failed ({reason}); rolling back")
        if not r.is_done("rollback.restore"):
            if r.was_begun("rollback.restore"):
                current = await self._call(
                    "rollback.restore", "read Key Vault secret", self.clients.vault.get_current
                )
                if current.tags.get(ROLLBACK_TAG) == r.run:
                    self._write("rollback.restore", "done", {"restored_version": current.version})
            if not r.is_done("rollback.restore"):
                await self._step(
                    "rollback.restore",
                    self._restore,
                    {"from": f["old_version"]},
                    metric_step="rollback",
                )
        restored = str(f["restored_version"])
        if not r.is_done("rollback.verify"):
            # The app must be back on the previous value before the new credential goes;
            # its health is not the question here (it failed with both values).
            ok = await self._reload_and_verify(
                restored, prefix="rollback.", health=False, graph=False
            )
            if not ok:
                raise StepError(
                    self.target,
                    "rollback",
                    f"verification of the new secret failed ({reason}) and the app did not "
                    f"return to the restored version {restored}; the new credential "
                    f"{f.get('new_key_id')} was kept so the app keeps working",
                )
        if not r.is_done("rollback.remove_new"):
            await self._step(
                "rollback.remove_new",
                self._remove_new,
                {"key_id": f.get("new_key_id")},
                metric_step="rollback",
            )
        f["detail"] = (
            f"rolled back: new secret never verified ({reason}); Key Vault version "
            f"{restored} holds the previous value, new credential removed"
        )
        return "rolled_back"

    async def _restore(self) -> dict[str, Any]:
        f = self._facts()
        old = await self._call(
            "rollback.restore",
            "read previous version",
            lambda: self.clients.vault.get_version(str(f["old_version"])),
        )
        if old.value is None:
            raise StepError(self.target, "rollback.restore", "previous version has no value")
        # Rolling back removes the new credential, which Entra has accepted: only do it
        # when the value going back works too, or the app would be left with none.
        proof = await self.clients.entra.try_secret(str(f["client_id"]), old.value)
        if not proof.ok:
            why = proof.failure.value if proof.failure else proof.error
            verdict = "is rejected by Entra" if proof.secret_rejected else "cannot be proven"
            raise StepError(
                self.target,
                "rollback.restore",
                f"the previous value (version {f['old_version']}) {verdict} ({why}); "
                f"not rolling back: Key Vault keeps the new version {f.get('new_version')} "
                f"and its credential {f.get('new_key_id')}, the only one known to work",
                permanent=proof.secret_rejected,
            )
        tags = dict(old.tags)
        tags[ROLLBACK_TAG] = self._rec.run
        value = old.value
        v = await self._call(
            "rollback.restore", "set secret", lambda: self.clients.vault.set_value(value, tags)
        )
        return {"restored_version": v.version}

    async def _remove_new(self) -> dict[str, Any]:
        key_id = self._facts().get("new_key_id")
        if key_id:
            await self._remove_password("rollback.remove_new", str(key_id))
        return {"removed_new": key_id}

    # -- healing ------------------------------------------------------------------

    async def _heal(self) -> str:
        r = self._rec
        if not r.is_done("diagnose"):
            await self._step("diagnose", self._diagnose)
        f = self._facts()
        if f["decision"] == "rotate":
            return await self._rotate(force=True)
        version = str(f["kv_version"])
        if self.dry_run:
            self._emit(
                "plan",
                "plan",
                f"the Key Vault value (version {version}) works; reload the app: "
                + " -> ".join(RUNGS),
            )
            f["detail"] = "dry run: nothing written"
            return "dry_run"
        if not any(s.startswith("reload.") for s in r.begun + r.done):
            v = await verify_app(self.prober, version)
            if v.ok:
                f["detail"] = f"nothing to do: {v.reason}"
                return "nothing_to_do"
        if await self._reload_and_verify(version):
            f["detail"] = f"reloaded: {f.get('reason')}"
            return "success"
        raise StepError(
            self.target, "verify", f"the app still fails after every reload: {f.get('reason')}"
        )

    async def _diagnose(self) -> dict[str, Any]:
        g = await self.prober.graph_auth()
        if g.ok:
            if g.keyvault_version is None:
                raise StepError(self.target, "diagnose", "Graph probe gave no Key Vault version")
            return {
                "decision": "reload",
                "kv_version": g.keyvault_version,
                "why": "the Key Vault value works; the app holds a stale one",
            }
        if g.token_failure is not None:
            if g.token_failure in (TokenFailure.INVALID_SECRET, TokenFailure.EXPIRED_SECRET):
                return {
                    "decision": "rotate",
                    "why": f"Entra rejects the Key Vault value ({g.reason})",
                }
            permanent = g.token_failure not in (TokenFailure.THROTTLED, TokenFailure.UNAVAILABLE)
            raise StepError(
                self.target,
                "diagnose",
                f"cannot tell which failure holds: token request failed ({g.reason}: {g.error})",
                permanent=permanent,
            )
        if g.token_ok and g.graph_status == 403:
            raise StepError(
                self.target,
                "diagnose",
                "Graph answers 403 with a valid token: the app lacks a permission; "
                "neither rotating nor reloading fixes that",
                permanent=True,
            )
        raise StepError(
            self.target, "diagnose", f"Graph probe failed without an auth verdict: {g.error}"
        )


def _fmt(data: dict[str, Any] | None) -> str:
    if not data:
        return ""
    return " ".join(f"{k}={v}" for k, v in data.items())
