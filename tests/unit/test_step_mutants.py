"""More one-line mutations of the step modules' safety decisions, each killed here:
the lost-reply addPassword (its orphan is found and removed, waiting out Graph's read
lag) and the runner's removePassword of a keyId this run added moments ago ("already
gone" is not believed within the read lag). Fakes of the ports and a FakeClock, as in
test_step_modules.py; fast, so ``make mutate`` runs them once per mutant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from test_step_modules import (
    T0,
    FakeSite,
    FakeVault,
    Reached,
    RollbackVault,
    fake_reload,
    make_run,
    not_due_run,
    rollback_run,
    rotation_run,
    version,
)

import remediation.rollback as rollback_module
import remediation.rotation as rotation_module
from remediation.cleanup import recycle
from remediation.clock import FakeClock
from remediation.journal import Journal
from remediation.reload import ensure_running, reload_and_verify
from remediation.removal import reloaded_at
from remediation.results import PendingRemoval
from remediation.rollback import ROLLBACK_TAG, rollback
from remediation.rotation import add_password, remove_by_name, rotate
from remediation.runner import Run, StepError
from remediation.verify import Verification
from tenant.errors import NotFound, Unavailable
from tenant.models import (
    KEY_ID_TAG,
    NewPassword,
    PasswordCredential,
    RemoveOutcome,
    SecretValue,
    SecretVersion,
    SiteInstance,
    SiteState,
    WorkerProcess,
)


@dataclass
class LaggingApp:
    """Graph over a lost reply: the first addPassword creates a credential but its reply
    is lost; a listing shows a new credential only ``lag_reads`` reads later."""

    lag_reads: int = 1
    lose_first_reply: bool = True
    creds: list[PasswordCredential] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    reads: int = 0

    async def add_password(self, name: str, end: datetime | None) -> NewPassword:
        cred = PasswordCredential(f"key-{len(self.creds) + 1}", name, "abc", T0, end)
        self.creds.append(cred)
        if self.lose_first_reply and len(self.creds) == 1:
            raise Unavailable("graph", "addPassword", "reply lost", maybe_applied=True)
        return NewPassword(cred, SecretValue("v"))

    async def find_credentials(self, name: str) -> tuple[PasswordCredential, ...]:
        self.reads += 1
        if self.reads <= self.lag_reads:
            return ()
        return tuple(
            c for c in self.creds if c.display_name == name and c.key_id not in self.removed
        )

    async def remove_password(self, key_id: str) -> RemoveOutcome:
        self.removed.append(key_id)
        return RemoveOutcome.REMOVED


async def test_a_lost_reply_addpassword_leaves_no_credential_nobody_holds(tmp_path: Path) -> None:
    """addPassword's reply was lost but the credential exists: before the retry adds
    another, the first is found by this run's display name and removed (mutant: the
    retry without removing it leaves a credential whose value nobody holds)."""
    app = LaggingApp(lag_reads=0)
    run = await make_run(tmp_path, FakeClock(T0), app=app)
    added = await add_password(run)
    assert app.removed == ["key-1"]
    assert added.new_key_id == "key-2"
    assert [c.key_id for c in app.creds] == ["key-1", "key-2"]


async def test_a_lost_replys_credential_is_looked_for_until_the_read_lag_passed(
    tmp_path: Path,
) -> None:
    """Graph lists the lost reply's credential only on the third read: the search goes
    on (sleeping, within graph_read_lag) and removes it (mutant: one empty read taken
    as "none was created" leaves it behind)."""
    app = LaggingApp(lag_reads=2)
    app.creds.append(PasswordCredential("orphan", "secretwarden x", "abc", T0, None))
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock, app=app)
    assert await remove_by_name(run, "add_password", "secretwarden x") == ("orphan",)
    assert app.removed == ["orphan"]
    assert app.reads == 3
    assert sum(clock.slept) < run.settings.graph_read_lag


async def test_a_lost_replys_search_gives_up_after_the_read_lag(tmp_path: Path) -> None:
    """Nothing is ever listed: the search ends once the read lag has passed."""
    app = LaggingApp(lag_reads=10**6)
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock, app=app)
    assert await remove_by_name(run, "add_password", "secretwarden x") == ()
    assert app.removed == []
    assert sum(clock.slept) >= run.settings.graph_read_lag


@dataclass
class GoneFirstApp:
    """removePassword answers ALREADY_GONE first (Graph's answer for a keyId it does
    not list yet), REMOVED after."""

    calls: list[str] = field(default_factory=list)

    async def remove_password(self, key_id: str) -> RemoveOutcome:
        self.calls.append(key_id)
        return RemoveOutcome.ALREADY_GONE if len(self.calls) == 1 else RemoveOutcome.REMOVED


@pytest.mark.parametrize(
    ("added_ago", "calls"),
    [
        (timedelta(seconds=1), 2),  # added just now: "gone" is not certain, remove again
        (timedelta(seconds=31), 1),  # past graph_read_lag (30 s): gone is gone
        (None, 1),  # not this run's keyId: gone is gone
    ],
)
async def test_already_gone_is_believed_only_past_the_read_lag(
    tmp_path: Path, added_ago: timedelta | None, calls: int
) -> None:
    """The runner's removePassword of a keyId this run added less than graph_read_lag
    ago waits the lag out and removes it again (mutant: "already gone" believed at
    once leaves the young credential in place, or a certain one removed twice)."""
    app = GoneFirstApp()
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock, app=app)
    if added_ago is not None:
        await run.write("add_password", "done", {"new_key_id": "new-key"})
        clock.advance(added_ago.total_seconds())
    else:
        clock.advance(1)
    await run.remove_password("compensate", "new-key")
    assert app.calls == ["new-key"] * calls
    if calls == 2:
        assert sum(clock.slept) >= run.settings.graph_read_lag - 1


# -- reload: a recycle counts only once the cache held the new version ---------------------


@dataclass
class RestartSite:
    """A site whose reference shows the new version only after the first restart."""

    restarts: list[datetime] = field(default_factory=list)

    async def restart(self) -> None:
        self.restarts.append(self.clock.now())

    async def instances(self) -> tuple[()]:
        raise NotFound("arm", "list the instances of site", "not served")

    clock: FakeClock = field(default_factory=lambda: FakeClock(T0))


@dataclass
class ArmProber:
    site: RestartSite

    async def reference(self) -> Any:
        active = "v2" if self.site.restarts else "v1"
        ref = SimpleNamespace(active_version=active, secret_version=None, status="Resolved")
        return SimpleNamespace(ok=True, resolved=True, reference=ref, current_version="v2")

    async def health(self) -> Any:
        return SimpleNamespace(ok=True, status_code=200, error=None)


async def test_a_restart_before_the_cache_held_the_new_version_is_not_the_recycle(
    tmp_path: Path,
) -> None:
    """ARM shows the new version only after the restart: that restart began before the
    cache held it, so its workers may predate the cache. The ladder restarts once more
    and journals that second restart as the recycle (mutant: the first restart taken as
    the recycle would let the app's sign-ins alone prove the old credential unused)."""
    clock = FakeClock(T0)
    site = RestartSite(clock=clock)
    run = await make_run(tmp_path, clock, prober=ArmProber(site), site=site)
    object.__setattr__(run, "settings", replace(run.settings, rungs=("restart",)))
    v = await reload_and_verify(run, "v2", health=False, graph=False, action=False)
    assert v.ok, v.reason
    assert len(site.restarts) == 2
    verified = next(e for e in reversed(run.rec.entries) if e.step == "verify")
    cache_at = datetime.fromisoformat(str(verified.data["cache_at"]))
    recycled_at = datetime.fromisoformat(str(verified.data["recycled_at"]))
    assert recycled_at == site.restarts[1]
    assert recycled_at >= cache_at


async def test_a_site_left_stopped_is_said_once_the_timeout_passed(tmp_path: Path) -> None:
    """Start without Running: the error comes when site_running_timeout has passed, not
    later (mutant: a doubled wait keeps the stopped site unreported)."""
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock, site=FakeSite([SiteState.STOPPED]))
    t0 = clock.monotonic()
    with pytest.raises(StepError, match="not Running after Stop"):
        await ensure_running(run, "reload.stop_start")
    waited = clock.monotonic() - t0
    assert run.settings.site_running_timeout <= waited
    assert waited < run.settings.site_running_timeout + run.settings.verify_poll + 0.001


# -- cleanup: the recycle journals ARM's mark, so the next check compares ARM's clock -----


@dataclass
class RecyclingSite:
    """ARM's per-instance view: one worker started before, restarted by the change."""

    clock: FakeClock
    started: datetime
    changes: list[str] = field(default_factory=list)

    async def configuration_change(self, marker: str) -> None:
        self.changes.append(marker)
        self.started = self.clock.now() + timedelta(seconds=5)

    async def instances(self) -> tuple[SiteInstance, ...]:
        return (SiteInstance("i0", (WorkerProcess("w3wp", self.started, False),)),)


async def test_the_cleanup_recycle_journals_the_workers_mark(tmp_path: Path) -> None:
    """The journaled pending removal carries ARM's latest worker start before the
    configuration change (cache_mark): the next check then asks for workers started
    after it by ARM's own clock, not the daemon's clock with a skew allowance."""
    clock = FakeClock(T0)
    before = T0 - timedelta(hours=1)
    site = RecyclingSite(clock, before)
    run = await make_run(tmp_path, clock, site=site, action="cleanup")
    pending = PendingRemoval(
        ("old",), "new", "v2", T0.isoformat(), T0.isoformat(), T0.isoformat(), ""
    )
    again = await recycle(run, pending)
    assert len(site.changes) == 1
    assert again.cache_mark == before.isoformat()
    assert again.cache_at == again.recycled_at == T0.isoformat()
    journaled = run.facts.pending()
    assert journaled is not None
    assert journaled.cache_mark == before.isoformat()


async def test_the_read_lag_runs_from_addpasswords_reply_not_its_begin(tmp_path: Path) -> None:
    """addPassword began at T0 and, after retries, returned 60 s later: the keyId is
    young until 30 s after that reply, so a removal 1 s after it is repeated (mutant:
    the begin line taken as the time it was added believes "already gone" at once)."""
    app = GoneFirstApp()
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock, app=app)
    await run.write("add_password", "begin", {"display_name": "secretwarden x"})
    clock.advance(60)
    await run.write("add_password", "done", {"new_key_id": "New-Key"})
    clock.advance(1)
    assert run.added_at("new-key") == T0 + timedelta(seconds=60)
    await run.remove_password("compensate", "new-key")
    assert app.calls == ["new-key", "new-key"]


# -- the runner's retry layer: as many attempts as configured, Retry-After honoured ---------


async def test_the_retry_layer_tries_step_attempts_times_with_doubling_backoff(
    tmp_path: Path,
) -> None:
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock)
    tries: list[int] = []

    async def outage() -> None:
        tries.append(1)
        raise Unavailable("graph", "get", "503")

    with pytest.raises(StepError, match="read: "):
        await run.call("plan", "read", outage, attempts=4)
    assert len(tries) == 4
    b = run.settings.step_backoff  # 0.01 in make_run
    assert clock.slept == [b, 2 * b, 4 * b]


async def test_the_retry_layer_waits_as_long_as_retry_after_says(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock)
    answers: list[Exception | None] = [Unavailable("graph", "get", "429", retry_after=7.0), None]

    async def throttled() -> str:
        e = answers.pop(0)
        if e is not None:
            raise e
        return "ok"

    assert await run.call("plan", "read", throttled) == "ok"
    assert clock.slept == [7.0]


# -- reloaded_at's fallback to the verify time, and the grace period ----------------------
# Named NOT killed in docs/remediation.md until these: no unit test had a run verified
# without an applied rung, and every unit test ran with grace_period 0.


async def test_reloaded_at_without_an_applied_rung_is_when_the_run_verified(
    tmp_path: Path,
) -> None:
    """No rung was applied (the app was on the new version already, or the ladder's
    lines were compacted away): the reload time is the verify's done line, not its
    begin line, not a later step's done line, not the forward ladder's verify for the
    rollback's, and not "now" (mutants: `or`, `!=` on the phase or the step, the step
    or the phase names replaced)."""
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock)
    await run.write("reload.refresh", "begin", {})  # begun, never applied
    clock.advance(5)
    await run.write("verify", "begin", {})
    clock.advance(15)
    await run.write("verify", "done", {})
    verified = clock.now()
    clock.advance(10)
    await run.write("grace_period", "done", {"seconds": 10})  # a later done line
    clock.advance(10)
    await run.write("rollback.verify", "begin", {})
    clock.advance(10)
    await run.write("rollback.verify", "done", {})
    rollback_verified = clock.now()
    clock.advance(100)
    assert reloaded_at(run) == verified == T0 + timedelta(seconds=20)
    assert reloaded_at(run, "rollback.") == rollback_verified
    await run.write("rollback.reload.restart", "done", {})  # an applied rung wins
    assert reloaded_at(run, "rollback.") == clock.now()
    assert reloaded_at(run) == verified  # the rollback's rung is not the forward ladder's


async def resumed_after_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grace: float
) -> tuple[Run, list[datetime]]:
    """A rotation journaled up to its verify (a resume), with ``grace_period = grace``;
    the removal of the old credential is a spy that records when it was asked."""
    run, _ = await not_due_run(tmp_path)
    run.settings = replace(run.settings, grace_period=grace)
    await run.write("plan", "done", {"client_id": "cid", "old_key_ids": ["old-key"]})
    await run.write("add_password", "begin", {})
    await run.write("add_password", "done", {"new_key_id": "new-key"})
    await run.write("write_keyvault", "begin", {})
    await run.write("write_keyvault", "done", {"new_version": "v2"})
    await run.write("verify", "done", {"rung": "refresh"})
    settled: list[datetime] = []

    async def spy(run: Run, *a: object) -> None:
        settled.append(run.clock.now())

    monkeypatch.setattr(rotation_module, "settle_old", spy)
    return run, settled


@pytest.mark.parametrize("grace", [1.0, 2.0])
async def test_the_old_credential_waits_out_the_grace_period_after_verify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grace: float
) -> None:
    """With ``grace_period`` > 0 the old credential is settled only ``grace`` seconds
    after the verify, and the wait is journaled (mutants: `> 1`, `is_done` for
    `not is_done`, the sleep or its record given None)."""
    run, settled = await resumed_after_verify(tmp_path, monkeypatch, grace)
    clock = cast(FakeClock, run.clock)
    assert await rotate(run, force=False) == (
        "success",
        "rotated (reloaded by refresh): Key Vault version v2 holds credential new-key; "
        "removed no old credential",
    )
    assert clock.slept == [grace]
    assert settled == [T0 + timedelta(seconds=grace)]
    done = [e for e in run.rec.entries if e.step == "grace_period" and e.phase == "done"]
    assert [e.data.get("seconds") for e in done] == [grace]


async def test_a_resumed_run_does_not_wait_out_a_grace_period_it_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, settled = await resumed_after_verify(tmp_path, monkeypatch, 2.0)
    await run.write("grace_period", "begin", {})
    await run.write("grace_period", "done", {"seconds": 2.0})
    await rotate(run, force=False)
    assert cast(FakeClock, run.clock).slept == []
    assert settled == [T0]
    assert [e.phase for e in run.rec.entries if e.step == "grace_period"] == ["begin", "done"]


# -- journal fields a resumed run or a later cleanup reads back ---------------------------
# mutmut's "argument replaced by None" survivors that touch them (docs/remediation.md).


async def test_a_pending_removal_journals_the_version_that_holds_the_new_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No proof yet: the old credential is journaled pending removal with the keyId and
    the Key Vault version the app should be on; a later cleanup (another process, after
    a restart) reads exactly these to gather its proof (mutants: `keep_version=None` in
    settle_old, `new_version` given as None by rotate)."""
    run, settled = await resumed_after_verify(tmp_path, monkeypatch, 0.0)
    monkeypatch.undo()  # the real settle_old
    outcome, detail = await rotate(run, force=False)
    assert outcome == "success", detail
    assert settled == []
    pending = run.facts.pending()
    assert pending is not None
    assert (pending.pending_key_ids, pending.keep_key_id, pending.keep_version) == (
        ("old-key",),
        "new-key",
        "v2",
    )
    reread = Journal(tmp_path, "portal").runs()[-1].entries
    line = next(e for e in reread if e.step == "pending_removal" and e.phase == "done")
    assert (line.data["keep_key_id"], line.data["keep_version"]) == ("new-key", "v2")


async def test_the_plan_journals_the_version_a_rollback_restores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan journals Key Vault's current version before the write: the rollback
    (perhaps a resumed one, in another process) restores exactly that version
    (mutant: `old_version=None`)."""
    current = SecretVersion(
        "s", "v1", SecretValue("abcdef"), True, T0, T0, None, None, None, {KEY_ID_TAG: "old-key"}
    )
    run, _ = await rotation_run(tmp_path, FakeVault(current))

    async def reload(run: Run, version: str, **kw: object) -> Verification:
        raise Reached(version)

    monkeypatch.setattr(rotation_module, "reload_and_verify", reload)
    with pytest.raises(Reached):
        await rotate(run, force=True)
    plan = next(e for e in run.rec.entries if e.step == "plan" and e.phase == "done")
    assert plan.data["old_version"] == "v1"
    assert run.facts.old_version == "v1"


async def test_a_resumed_rollback_adopts_its_own_restore_that_landed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restore's reply was lost but the write landed (Key Vault's current version
    carries this run's rollback tag): it is journaled as the restored version and the
    app is reloaded onto it; nothing is written twice (mutants: the done line's step,
    phase or `Restored(...)` given None)."""
    run, _ = await rollback_run(tmp_path, RollbackVault(version("v1", {})))
    own = version("v-own", {ROLLBACK_TAG: run.rec.run})
    vault = cast(RollbackVault, run.clients.vault)
    vault.current = own
    await run.write("rollback.restore", "begin", {"restore_from": "v1"})
    seen: list[str] = []
    monkeypatch.setattr(rollback_module, "reload_and_verify", await fake_reload(True, seen))
    outcome, _ = await rollback(run)
    assert outcome == "rolled_back"
    assert vault.writes == []
    assert seen == ["v-own"]
    assert run.facts.restored_version == "v-own"
    done = [e for e in run.rec.entries if e.step == "rollback.restore" and e.phase == "done"]
    assert [e.data.get("restored_version") for e in done] == ["v-own"]
