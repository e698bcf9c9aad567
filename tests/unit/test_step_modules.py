"""The step modules' safety decisions, tested as hard as the pure ones: each test here
kills a one-line mutation a reviewer made in remediation/ that the rest of the suite
did not notice (docs/remediation.md, "Mutation testing"). Fakes for the Azure ports
and a FakeClock; the journal is the real one, in a temporary directory. Fast: these
run once per mutant under ``make mutate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

import remediation.rollback as rollback_module
import remediation.rotation as rotation_module
from remediation.cleanup import cleanup
from remediation.clock import FakeClock
from remediation.decisions import EntraVerdict, Evidence, SignInEvidence, Verdict
from remediation.journal import Journal
from remediation.proof import Gathered, decide
from remediation.reload import apply_rung, ensure_running
from remediation.removal import recheck, reloaded_at, settle_old
from remediation.results import PendingRemoval
from remediation.rollback import ROLLBACK_TAG, rollback
from remediation.rotation import (
    RUN_TAG,
    entra_verdict,
    free_slot,
    old_credential,
    recover_lost_value,
    remove_orphan,
    rotate,
    write_keyvault,
    write_landed,
)
from remediation.runner import Restart, Run, StepError
from remediation.settings import WorkflowSettings
from remediation.verify import Verification
from tenant.errors import NotFound, PolicyViolation, Unavailable
from tenant.models import (
    KEY_ID_TAG,
    AppRegistration,
    NewPassword,
    PasswordCredential,
    RemoveOutcome,
    SecretValue,
    SecretVersion,
    SignIn,
    SignInLog,
    Site,
    SiteInstance,
    SiteState,
    TokenFailure,
    TokenOutcome,
    WorkerProcess,
)
from tenant.ports import TargetClients
from tenant.requestid import new_request_id

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = "portal"


def version(v: str, tags: dict[str, str]) -> SecretVersion:
    return SecretVersion("s", v, SecretValue("x"), True, T0, T0, None, None, None, dict(tags))


# -- fakes of the ports ------------------------------------------------------------------


APP_IP = "20.1.1.1"  # the site's outbound address: the app's own sign-ins come from it


@dataclass
class FakeSite:
    states: list[SiteState]  # what get_site answers, in turn (the last one repeats)
    refs: list[Any] = field(default_factory=list)
    started: int = 0
    # ARM's per-instance view (issue 13); None: refused, as on plans that do not serve it
    instances_: tuple[SiteInstance, ...] | None = None

    async def instances(self) -> tuple[SiteInstance, ...]:
        if self.instances_ is None:
            raise NotFound("arm", "list the instances of site", "not served")
        return self.instances_

    async def start(self) -> None:
        self.started += 1

    async def get_site(self) -> Site:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return Site("site", state, None, (APP_IP,))

    async def key_vault_references(self) -> list[Any]:
        return self.refs


@dataclass
class FakeVault:
    current: SecretVersion
    lose_first_reply: bool = False
    writes: list[dict[str, str]] = field(default_factory=list)

    async def get_current(self) -> SecretVersion:
        return self.current

    async def set_value(self, value: SecretValue, tags: dict[str, str]) -> SecretVersion:
        self.writes.append(dict(tags))
        if self.lose_first_reply and len(self.writes) == 1:
            # The reply was lost and the write did NOT land (Key Vault holds what it held).
            raise Unavailable("keyvault", "set secret", "connection reset", maybe_applied=True)
        self.current = version(f"v-written-{len(self.writes)}", tags)
        return self.current


@dataclass
class FakeSignIns:
    sign_ins: tuple[SignIn, ...]
    asked_since: list[datetime] = field(default_factory=list)

    async def service_principal_sign_ins(self, app_id: str, since: datetime) -> SignInLog:
        self.asked_since.append(since)
        return SignInLog(app_id, since, tuple(s for s in self.sign_ins if s.created >= since))


@dataclass
class FakeApp:
    removed: list[str] = field(default_factory=list)
    creds: tuple[PasswordCredential, ...] = ()

    async def get_app(self) -> AppRegistration:
        return AppRegistration("oid", "cid", "portal", self.creds)

    async def list_credentials(self) -> tuple[PasswordCredential, ...]:
        return self.creds

    async def remove_password(self, key_id: str) -> RemoveOutcome:
        self.removed.append(key_id)
        return cast(RemoveOutcome, None)


async def make_run(
    tmp_path: Path,
    clock: FakeClock,
    *,
    prober: object = None,
    action: str = "rotate",
    begin: dict[str, Any] | None = None,
    **clients: object,
) -> Run:
    ports = SimpleNamespace(
        ref=None, app=FakeApp(), vault=None, entra=None, site=None, signins=None, action=None
    )
    for k, v in clients.items():
        setattr(ports, k, v)
    run = Run(
        TARGET,
        cast(TargetClients, ports),
        cast(Any, prober),
        Journal(tmp_path, TARGET),
        WorkflowSettings(step_backoff=0.01, verify_poll=1.0, site_running_timeout=30.0),
        clock,
    )
    await run.open(action, "test", **(begin or {}))
    return run


# -- removal: the overlap window is measured from when the removal became pending --------


def no_proof() -> Gathered:
    return Gathered(Evidence(SignInEvidence(T0, None, None, None), None, None), ())


@pytest.mark.parametrize(
    ("hours_after", "verdict"),
    [(1, Verdict.WAIT), (13, Verdict.WAIT), (23.9, Verdict.WAIT), (24, Verdict.REMOVE)],
)
def test_a_pending_removal_waits_out_the_whole_overlap_window(
    hours_after: float, verdict: Verdict
) -> None:
    """Without proof, a removal pending since T0 with a 24 h window goes at T0+24 h,
    not earlier: the window is measured from pending_since, never from "now" (a window
    measured from now would remove at half of it)."""
    recycled = (T0 - timedelta(hours=1)).isoformat()  # every worker recycled after the cache
    p = PendingRemoval(
        ("old",),
        "new",
        "v2",
        T0.isoformat(),
        T0.isoformat(),
        (T0 + timedelta(hours=24)).isoformat(),
        "",
        cache_at=recycled,
        recycled_at=recycled,
    )
    got = decide(p, no_proof(), T0 + timedelta(hours=hours_after), WorkflowSettings())
    assert got.verdict is verdict, got.proof
    if verdict is Verdict.WAIT:
        assert got.until == T0 + timedelta(hours=24)


# -- reload: after Stop+Start, only Running is running -----------------------------------


@pytest.mark.parametrize("state", [SiteState.UNKNOWN, SiteState.STOPPED])
async def test_a_site_not_reporting_running_after_start_is_reported_stopped(
    tmp_path: Path, state: SiteState
) -> None:
    clock = FakeClock(T0)
    site = FakeSite([state])
    run = await make_run(tmp_path, clock, site=site)
    with pytest.raises(StepError, match=f"not Running after Stop\\+Start \\(state {state.value}"):
        await ensure_running(run, "reload.stop_start")
    assert run.site_stopped
    assert site.started == 1
    assert clock.monotonic() >= 1000.0 + 30.0  # it waited the whole timeout


async def test_a_site_that_becomes_running_is_accepted(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    site = FakeSite([SiteState.UNKNOWN, SiteState.STOPPED, SiteState.RUNNING])
    run = await make_run(tmp_path, clock, site=site)
    run.site_stopped = True  # an earlier Stop+Start of this run left it stopped
    await ensure_running(run, "reload.stop_start")
    assert not run.site_stopped
    assert clock.monotonic() == 1000.0 + 2 * 1.0  # two polls before Running


# -- rotation: a Key Vault version is this run's write only when it names this run's key -


def new_password(key: str) -> NewPassword:
    return NewPassword(PasswordCredential(key, "secretwarden", "abc", T0, None), SecretValue("n"))


async def test_a_lost_reply_is_not_settled_by_another_credentials_version(tmp_path: Path) -> None:
    """The write's reply was lost and it did not land: Key Vault's current version is
    tagged with another keyId (the previous rotation's). That is not this run's write:
    the retry writes again, and the journal names the version that holds the new key."""
    vault = FakeVault(version("v-old", {KEY_ID_TAG: "old-key"}), lose_first_reply=True)
    run = await make_run(tmp_path, FakeClock(T0), vault=vault)
    run.new = new_password("new-key")
    got = await write_keyvault(run)
    assert got.new_version == "v-written-2"
    assert len(vault.writes) == 2
    assert vault.writes[-1][KEY_ID_TAG] == "new-key"
    assert vault.writes[-1][RUN_TAG] == run.rec.run


async def test_a_lost_reply_that_landed_is_not_written_twice(tmp_path: Path) -> None:
    vault = FakeVault(version("v-old", {KEY_ID_TAG: "old-key"}))
    run = await make_run(tmp_path, FakeClock(T0), vault=vault)
    run.new = new_password("new-key")

    async def landed_then_lost(value: SecretValue, tags: dict[str, str]) -> SecretVersion:
        vault.writes.append(dict(tags))
        vault.current = version("v-landed", tags)
        raise Unavailable("keyvault", "set secret", "timeout", maybe_applied=True)

    vault.set_value = landed_then_lost  # type: ignore[method-assign]
    got = await write_keyvault(run)
    assert got.new_version == "v-landed"
    assert len(vault.writes) == 1


async def begun_write(run: Run, key: str) -> None:
    await run.write("add_password", "begin", {"display_name": "secretwarden x"})
    await run.write("add_password", "done", {"new_key_id": key})
    await run.write("write_keyvault", "begin", {"new_key_id": key})


async def test_write_landed_does_not_take_another_keys_version(tmp_path: Path) -> None:
    vault = FakeVault(version("v-old", {KEY_ID_TAG: "old-key"}))
    run = await make_run(tmp_path, FakeClock(T0), vault=vault)
    await begun_write(run, "new-key")
    assert not await write_landed(run)
    assert not run.rec.is_done("write_keyvault")
    vault.current = version("v-new", {KEY_ID_TAG: "new-key"})
    assert await write_landed(run)
    assert run.facts.new_version == "v-new"


async def test_recovery_does_not_take_another_keys_version(tmp_path: Path) -> None:
    """After a crash mid-write, a current version of another keyId means the value is
    lost: this run's credential is removed (compensation), not adopted."""
    app = FakeApp()
    vault = FakeVault(version("v-old", {KEY_ID_TAG: "old-key"}))
    run = await make_run(tmp_path, FakeClock(T0), vault=vault, app=app)
    await begun_write(run, "new-key")
    with pytest.raises(Restart):
        await recover_lost_value(run)
    assert app.removed == ["new-key"]
    assert not run.rec.is_done("write_keyvault")


# -- rollback: its removal judges sign-ins from the rollback's own reload ----------------


async def test_the_rollback_removal_counts_sign_ins_from_the_rollbacks_reload(
    tmp_path: Path,
) -> None:
    """Forward reload at T1 (the app stayed on the old credential: verification
    failed), rollback reload at T2. The old credential's sign-in at T1+1 min came
    before the rollback's reload: it proves nothing about the restored value, so the
    new credential stays pending. Measured from the forward ladder's reload, it
    would be taken as proof and the new credential removed."""
    clock = FakeClock(T0)
    t1 = T0 + timedelta(minutes=1)
    t2 = T0 + timedelta(minutes=10)
    signins = FakeSignIns(
        (
            app_sign_in("old-key", t1 + timedelta(minutes=1)),
            own_sign_in(t2 + timedelta(hours=1)),  # the log has caught up
        )
    )
    app = FakeApp()
    run = await make_run(
        tmp_path, clock, signins=signins, site=FakeSite([SiteState.RUNNING]), app=app
    )
    await run.write("plan", "done", {"client_id": "cid", "old_key_ids": ["old-key"]})
    clock.advance(60)
    await run.write("reload.config_change", "done", {"rung": "config_change"})
    await run.write("verify", "failed", recycled(t1))  # the forward ladder recycled at t1
    clock.advance(9 * 60)
    await run.write("rollback.reload.config_change", "done", {"rung": "config_change"})
    await run.write("rollback.verify", "done", recycled(t2))
    clock.advance(60)
    assert reloaded_at(run, "rollback.") == t2
    assert reloaded_at(run) == t1
    clock.advance(2 * 3600)  # every recycle's allowance has passed

    await settle_old(run, "rollback.remove_new", ("new-key",), "old-key", "v3")

    assert signins.asked_since == [t2]
    assert app.removed == []
    assert run.rec.is_done("pending_removal")
    pending = run.facts.pending()
    assert pending is not None
    assert pending.pending_key_ids == ("new-key",)
    assert pending.reloaded_at == t2.isoformat()
    assert pending.recycled_at == t2.isoformat()
    # The window runs from when the removal became pending, not from the reload.
    since = t2 + timedelta(minutes=1, hours=2)
    assert pending.pending_since == since.isoformat()
    assert pending.pending_until == (since + timedelta(hours=24)).isoformat()


def recycled(at: datetime) -> dict[str, Any]:
    """What a ladder journals with its verify when a configuration change began at
    ``at`` (it re-fetches, then recycles every worker): issue 13's ladder facts."""
    return {"cache_at": at.isoformat(), "recycled_at": at.isoformat(), "active_seen": False}


def app_sign_in(key: str, at: datetime) -> SignIn:
    return SignIn(key, at, True, 0, None, APP_IP, "9d1f0c4e-0000-4000-8000-000000000001")


def own_sign_in(at: datetime) -> SignIn:
    return SignIn("new-key", at, True, 0, None, "10.9.9.9", new_request_id())


async def test_the_rollback_removal_goes_on_a_sign_in_after_its_reload(tmp_path: Path) -> None:
    """The converse: a sign-in with the restored credential after the rollback's
    reload (and none with the new one) is proof, and the new credential goes."""
    clock = FakeClock(T0)
    t2 = T0 + timedelta(minutes=10)
    signins = FakeSignIns(
        (app_sign_in("old-key", t2 + timedelta(seconds=30)), own_sign_in(t2 + timedelta(hours=1)))
    )
    app = FakeApp()
    run = await make_run(
        tmp_path, clock, signins=signins, site=FakeSite([SiteState.RUNNING]), app=app
    )
    await run.write("plan", "done", {"client_id": "cid", "old_key_ids": ["old-key"]})
    clock.advance(60)
    await run.write("reload.refresh", "done", {"rung": "refresh"})
    clock.advance(9 * 60)
    await run.write("rollback.reload.config_change", "done", {"rung": "config_change"})
    await run.write("rollback.verify", "done", recycled(t2))
    clock.advance(2 * 3600)
    await settle_old(run, "rollback.remove_new", ("new-key",), "old-key", "v3")
    assert app.removed == ["new-key"]
    assert run.rec.is_done("rollback.remove_new")


# -- the reviewer pass: more one-line mutants of the step modules ------------------------


async def test_reloaded_at_counts_only_rungs_that_were_applied(tmp_path: Path) -> None:
    """A rung begun after the last applied one (a crash, or a Stop+Start that failed)
    is not when the app was reloaded."""
    clock = FakeClock(T0)
    run = await make_run(tmp_path, clock)
    await run.write("reload.refresh", "begin", {})
    await run.write("reload.refresh", "done", {})
    clock.advance(60)
    await run.write("reload.stop_start", "begin", {})
    clock.advance(60)
    await run.write("reload.stop_start", "failed", {"error": "x"})
    clock.advance(60)
    assert reloaded_at(run) == T0


@dataclass
class FakeProber:
    graph_ok: bool = True
    action_ok: bool | None = True  # None: the target names no action

    async def graph_auth(self) -> Any:
        return SimpleNamespace(ok=self.graph_ok, reason="invalid_secret", error="AADSTS7000215")

    async def app_action(self) -> Any:
        if self.action_ok is None:
            return None
        return SimpleNamespace(ok=self.action_ok, status=200 if self.action_ok else 500, detail="")


@pytest.mark.parametrize(
    ("graph_ok", "action_ok", "fails"),
    [
        (True, True, None),
        (True, None, None),
        (False, True, "Graph probe failed"),
        (True, False, "the app's own action failed"),
    ],
)
async def test_recheck_after_a_removal_fails_on_either_probe(
    tmp_path: Path, graph_ok: bool, action_ok: bool | None, fails: str | None
) -> None:
    run = await make_run(tmp_path, FakeClock(T0), prober=FakeProber(graph_ok, action_ok))
    if fails is None:
        assert (await recheck(run, "recheck")).ok
    else:
        with pytest.raises(StepError, match=fails):
            await recheck(run, "recheck")


def pending_begin() -> dict[str, Any]:
    p = PendingRemoval(
        ("old",), "new", "v2", T0.isoformat(), T0.isoformat(), T0.isoformat(), "window over"
    )
    return {"proof": "window over", **asdict(p), "pending_key_ids": ["old"]}


async def test_cleanup_checks_the_app_after_removing(tmp_path: Path) -> None:
    """A cleanup that broke the app must say so (the Remediator heals at once)."""
    app = FakeApp()
    run = await make_run(
        tmp_path,
        FakeClock(T0),
        prober=FakeProber(graph_ok=False),
        action="cleanup",
        begin=pending_begin(),
        app=app,
    )
    with pytest.raises(StepError, match="Graph probe failed"):
        await cleanup(run)
    assert app.removed == ["old"]


@dataclass
class FakeEntra:
    answer: TokenOutcome

    async def try_secret(self, client_id: str, secret: SecretValue) -> TokenOutcome:
        return self.answer


class RollbackVault(FakeVault):
    async def get_version(self, v: str) -> SecretVersion:
        return version(v, {KEY_ID_TAG: "old-key"})


async def rollback_run(
    tmp_path: Path, vault: FakeVault, *, entra_ok: bool = True, old: list[str] | None = None
) -> tuple[Run, FakeApp]:
    app = FakeApp()
    answer = TokenOutcome(True) if entra_ok else TokenOutcome(False, TokenFailure.THROTTLED)
    run = await make_run(
        tmp_path,
        FakeClock(T0),
        vault=vault,
        app=app,
        entra=FakeEntra(answer),
        signins=FakeSignIns(()),
        site=FakeSite([SiteState.RUNNING]),
    )
    await run.write(
        "plan",
        "done",
        {"client_id": "cid", "old_version": "v1", "old_key_ids": old or ["old-key"]},
    )
    await run.write("add_password", "done", {"new_key_id": "new-key"})
    await run.write("write_keyvault", "done", {"new_version": "v2"})
    await run.write("verify", "failed", {"reason": "app down"})
    return run, app


async def fake_reload(ok: bool, seen: list[str]) -> Any:
    async def reload(run: Run, version: str, **kw: object) -> Verification:
        seen.append(version)
        return Verification(ok, "fake ladder")

    return reload


async def test_a_resumed_rollback_does_not_adopt_another_runs_restore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restore's reply was lost; Key Vault's current version is a restore made by
    ANOTHER run's rollback. This run restores again and reloads onto its own write."""
    vault = RollbackVault(version("v-foreign", {ROLLBACK_TAG: "another-run"}))
    run, _ = await rollback_run(tmp_path, vault)
    await run.write("rollback.restore", "begin", {"restore_from": "v1"})
    seen: list[str] = []
    monkeypatch.setattr(rollback_module, "reload_and_verify", await fake_reload(True, seen))
    outcome, detail = await rollback(run)
    assert outcome == "rolled_back"
    assert "Key Vault version v-written-1 holds the previous value" in detail
    assert "new credential new-key pending removal until" in detail
    assert len(vault.writes) == 1
    assert vault.writes[0][ROLLBACK_TAG] == run.rec.run
    assert seen == ["v-written-1"]
    assert run.facts.restored_version == "v-written-1"


async def test_a_previous_value_entra_cannot_vouch_for_is_not_restored(tmp_path: Path) -> None:
    """Throttled (no verdict) is not proof the previous value works: no rollback, the
    new credential stays."""
    vault = RollbackVault(version("v2", {KEY_ID_TAG: "new-key"}))
    run, app = await rollback_run(tmp_path, vault, entra_ok=False)
    with pytest.raises(StepError, match="cannot be proven"):
        await rollback(run)
    assert vault.writes == []
    assert app.removed == []


async def test_the_new_credential_stays_when_the_app_did_not_return(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = RollbackVault(version("v2", {KEY_ID_TAG: "new-key"}))
    run, app = await rollback_run(tmp_path, vault)
    monkeypatch.setattr(rollback_module, "reload_and_verify", await fake_reload(False, []))
    with pytest.raises(StepError, match="new credential new-key was kept"):
        await rollback(run)
    assert app.removed == []
    assert not run.rec.was_begun("rollback.remove_new")


@pytest.mark.parametrize(("old", "keep"), [(["a"], "a"), (["a", "b"], ""), ([], "")])
async def test_the_rollback_keeps_sign_in_proof_only_for_a_single_old_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: list[str], keep: str
) -> None:
    """With two old credentials the restored value belongs to one of them, unknown
    which: a sign-in with either proves nothing about the restored value."""
    vault = RollbackVault(version("v2", {KEY_ID_TAG: "new-key"}))
    run, _ = await rollback_run(tmp_path, vault, old=old)
    await run.write("plan", "done", {"old_key_ids": old})
    monkeypatch.setattr(rollback_module, "reload_and_verify", await fake_reload(True, []))
    got: list[tuple[object, ...]] = []

    async def spy(run: Run, step: str, keys: tuple[str, ...], keep: str, ver: str) -> None:
        got.append((step, keys, keep))

    monkeypatch.setattr(rollback_module, "settle_old", spy)
    await rollback(run)
    assert got == [("rollback.remove_new", ("new-key",), keep)]


def cred(key: str, end: datetime | None, hint: str | None = "abc") -> PasswordCredential:
    return PasswordCredential(key, key, hint, T0 - timedelta(days=400), end)


async def test_free_slot_never_removes_a_credential_that_works(tmp_path: Path) -> None:
    """An expired credential that nobody uses goes first; the one the app's old value
    names goes only once it has expired too (it signs nobody in, issue 13); one that
    has not expired never goes."""
    expired = T0 - timedelta(days=1)
    app = FakeApp()
    run = await make_run(tmp_path, FakeClock(T0), app=app)
    await run.write("plan", "done", {"old_key_ids": ["in-use"]})
    app.creds = (cred("in-use", expired), cred("spare", expired), cred("live", None))
    await free_slot(run)
    assert app.removed == ["spare"]
    app.creds = (cred("in-use", None), cred("live", T0 + timedelta(days=1)))
    with pytest.raises(StepError, match="none has expired"):
        await free_slot(run)
    assert app.removed == ["spare"]
    app.creds = (cred("in-use", expired), cred("live", None))
    await free_slot(run)
    assert app.removed == ["spare", "in-use"]


async def test_compensation_never_removes_a_credential_whose_value_is_in_key_vault(
    tmp_path: Path,
) -> None:
    app = FakeApp()
    run = await make_run(tmp_path, FakeClock(T0), app=app)
    await begun_write(run, "new-key")
    await run.write("write_keyvault", "done", {"new_version": "v2"})
    await remove_orphan(run)
    assert app.removed == []


async def test_a_key_vault_write_never_begun_did_not_land(tmp_path: Path) -> None:
    """Entra never accepted the new secret: nothing was written, the credential is an
    orphan to remove (write_landed says False without reading Key Vault)."""
    vault = FakeVault(version("v2", {KEY_ID_TAG: "new-key"}))
    run = await make_run(tmp_path, FakeClock(T0), vault=vault)
    await run.write("add_password", "begin", {})
    await run.write("add_password", "done", {"new_key_id": "new-key"})
    assert not await write_landed(run)


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (TokenOutcome(True), EntraVerdict.VALID),
        (TokenOutcome(False, TokenFailure.INVALID_SECRET), EntraVerdict.INVALID),
        (TokenOutcome(False, TokenFailure.EXPIRED_SECRET), EntraVerdict.EXPIRED),
        (TokenOutcome(False, TokenFailure.THROTTLED), EntraVerdict.UNKNOWN),
        (TokenOutcome(False, TokenFailure.INVALID_CLIENT), EntraVerdict.UNKNOWN),
    ],
)
def test_entra_verdict(outcome: TokenOutcome, verdict: EntraVerdict) -> None:
    assert entra_verdict(outcome) is verdict


@pytest.mark.parametrize(
    ("tags", "entra", "old"),
    [
        ({}, TokenOutcome(False, TokenFailure.THROTTLED), ()),  # hint alone: not certain
        ({KEY_ID_TAG: "k1"}, TokenOutcome(False, TokenFailure.THROTTLED), ("k1",)),
        ({KEY_ID_TAG: "k2"}, TokenOutcome(False, TokenFailure.THROTTLED), ()),
        ({}, TokenOutcome(True), ("k1",)),
    ],
)
async def test_the_old_credential_needs_the_tag_or_entra(
    tmp_path: Path, tags: dict[str, str], entra: TokenOutcome, old: tuple[str, ...]
) -> None:
    run = await make_run(tmp_path, FakeClock(T0), entra=FakeEntra(entra))
    current = SecretVersion("s", "v1", SecretValue("abcdef"), True, T0, T0, None, None, None, tags)
    creds = (cred("k1", None, "abc"), cred("k2", None, "xyz"))
    got, _ = await old_credential(run, "cid", creds, current)
    assert got == old


@dataclass
class StopSite(FakeSite):
    stop_error: Exception | None = None

    async def stop(self) -> None:
        if self.stop_error:
            raise self.stop_error


async def test_start_follows_a_stop_that_failed(tmp_path: Path) -> None:
    """A Stop whose reply was lost may have stopped the site: Start anyway."""
    site = StopSite([SiteState.RUNNING], stop_error=PolicyViolation("arm", "stop", "denied"))
    run = await make_run(tmp_path, FakeClock(T0), site=site)
    with pytest.raises(StepError, match="stop"):
        await apply_rung(run, "reload.stop_start", "stop_start", "v2")
    assert site.started == 1


async def test_a_permanent_error_is_not_retried(tmp_path: Path) -> None:
    run = await make_run(tmp_path, FakeClock(T0))
    calls: list[int] = []

    async def refused() -> None:
        calls.append(1)
        raise PolicyViolation("graph", "addPassword", "policy")

    with pytest.raises(StepError, match="policy") as caught:
        await run.call("add_password", "addPassword", refused)
    assert calls == [1]
    assert caught.value.permanent


# -- the rotation as a whole, over fakes ---------------------------------------------------


@dataclass
class RotationApp(FakeApp):
    async def add_password(self, name: str, end: datetime | None) -> NewPassword:
        return NewPassword(
            PasswordCredential("new-key", name, "new", T0, end), SecretValue("newval")
        )


@dataclass
class FlakyVault(FakeVault):
    """Every write lands but its reply is lost; ``failing_reads`` reads fail first."""

    failing_reads: int = 0

    async def get_current(self) -> SecretVersion:
        if self.failing_reads > 0:
            self.failing_reads -= 1
            raise Unavailable("keyvault", "get secret", "connection reset")
        return self.current

    async def set_value(self, value: SecretValue, tags: dict[str, str]) -> SecretVersion:
        self.writes.append(dict(tags))
        self.current = version(f"v-written-{len(self.writes)}", tags)
        raise Unavailable("keyvault", "set secret", "reply lost", maybe_applied=True)


async def rotation_run(
    tmp_path: Path, vault: FakeVault, prober: object = None
) -> tuple[Run, FakeApp]:
    app = RotationApp(creds=(cred("old-key", T0 + timedelta(days=3)),))
    site = FakeSite([SiteState.RUNNING])
    run = await make_run(
        tmp_path,
        FakeClock(T0),
        prober=prober,
        vault=vault,
        app=app,
        entra=FakeEntra(TokenOutcome(True)),
        signins=FakeSignIns(()),
        site=site,
    )
    return run, app


class Reached(Exception):
    """The rotation got as far as the reload."""


async def test_a_key_vault_write_that_landed_behind_lost_replies_keeps_its_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write attempt's reply was lost and so were the reads in between; the
    write did land. Before compensating, the rotation reads again: Key Vault holds the
    new credential's value, so that credential is never removed and the rotation
    goes on to reload the app onto it."""
    current = SecretVersion(
        "s", "v1", SecretValue("abcdef"), True, T0, T0, None, None, None, {KEY_ID_TAG: "old-key"}
    )
    vault = FlakyVault(current, failing_reads=0)
    run, app = await rotation_run(tmp_path, vault)
    vault.failing_reads = 0
    orig = vault.set_value

    async def first_write(value: SecretValue, tags: dict[str, str]) -> SecretVersion:
        vault.failing_reads = run.settings.step_attempts  # every in-attempt read fails
        return await orig(value, tags)

    vault.set_value = first_write  # type: ignore[method-assign]

    async def reload(run: Run, version: str, **kw: object) -> Verification:
        raise Reached(version)

    monkeypatch.setattr(rotation_module, "reload_and_verify", reload)
    with pytest.raises(Reached, match="v-written-"):
        await rotate(run, force=True)
    assert app.removed == []
    assert run.rec.is_done("write_keyvault")
    assert not run.rec.was_begun("compensate")


async def test_a_removal_is_followed_by_a_recheck(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ARM proves the app on the new version, the old credential goes, and the app
    is checked once more: a failing Graph probe then fails the run (heal at once)."""
    current = SecretVersion(
        "s", "v1", SecretValue("abcdef"), True, T0, T0, None, None, None, {KEY_ID_TAG: "old-key"}
    )

    class Vault(FakeVault):
        async def set_value(self, value: SecretValue, tags: dict[str, str]) -> SecretVersion:
            self.writes.append(dict(tags))
            self.current = version("v2", tags)
            return self.current

    run, app = await rotation_run(tmp_path, Vault(current), FakeProber(graph_ok=False))
    run.clients.site.refs = [  # type: ignore[attr-defined]
        SimpleNamespace(active_version="v2", resolved=True, secret_version=None)
    ]
    mark = T0 - timedelta(minutes=1)
    worker = WorkerProcess("w3wp", T0 + timedelta(seconds=5), False)
    run.clients.site.instances_ = (SiteInstance("i0", (worker,)),)  # type: ignore[attr-defined]

    async def reloaded(run: Run, version: str, **kw: object) -> Verification:
        # every worker started after the cache held v2: ARM's per-instance view proves
        await run.write("verify", "done", {**recycled(T0), "cache_mark": mark.isoformat()})
        return Verification(True, "fake ladder", proof="activeVersion")

    monkeypatch.setattr(rotation_module, "reload_and_verify", reloaded)
    with pytest.raises(StepError, match="after removing the old credential"):
        await rotate(run, force=True)
    assert app.removed == ["old-key"]
    assert not run.rec.was_begun("grace_period")  # grace_period 0: no wait


# -- the paths each safety decision guards, walked once each (make mutate reaches them) ---


async def test_compensation_removes_the_orphan_whose_value_never_reached_key_vault(
    tmp_path: Path,
) -> None:
    app = FakeApp()
    run = await make_run(tmp_path, FakeClock(T0), app=app)
    await begun_write(run, "new-key")
    await remove_orphan(run)
    assert app.removed == ["new-key"]
    assert run.rec.is_done("compensate")
    assert list(run.rec.facts["orphans_removed"]) == ["new-key"]


async def test_no_orphan_before_add_password(tmp_path: Path) -> None:
    app = FakeApp()
    run = await make_run(tmp_path, FakeClock(T0), app=app)
    await remove_orphan(run)
    assert app.removed == []
    assert not run.rec.was_begun("compensate")


async def test_recovery_adopts_a_write_of_this_runs_key(tmp_path: Path) -> None:
    app = FakeApp()
    vault = FakeVault(version("v-new", {KEY_ID_TAG: "new-key"}))
    run = await make_run(tmp_path, FakeClock(T0), vault=vault, app=app)
    await begun_write(run, "new-key")
    await recover_lost_value(run)
    assert app.removed == []
    assert run.rec.is_done("write_keyvault")
    assert run.facts.new_version == "v-new"


async def test_settling_no_old_credential_removes_nothing(tmp_path: Path) -> None:
    app = FakeApp()
    run = await make_run(tmp_path, FakeClock(T0), app=app)
    await settle_old(run, "remove_old", (), "new-key", "v2")
    assert app.removed == []
    assert run.rec.is_done("remove_old")
    assert not run.rec.is_done("pending_removal")


async def test_a_cleanup_removes_the_pending_keys_and_rechecks(tmp_path: Path) -> None:
    app = FakeApp()
    run = await make_run(
        tmp_path,
        FakeClock(T0),
        prober=FakeProber(),
        action="cleanup",
        begin=pending_begin(),
        app=app,
    )
    outcome, detail = await cleanup(run)
    assert outcome == "success"
    assert detail == "removed ['old'] (window over); the app still works"
    assert app.removed == ["old"]
    assert run.rec.is_done("cleanup.remove")
    assert run.rec.is_done("cleanup.recheck")
    assert run.rec.facts.get("proof") == "window over"
    # A resumed cleanup does not remove twice.
    await cleanup(run)
    assert app.removed == ["old"]


async def test_a_cleanup_with_nothing_pending_does_nothing(tmp_path: Path) -> None:
    app = FakeApp()
    run = await make_run(tmp_path, FakeClock(T0), action="cleanup", app=app)
    assert await cleanup(run) == ("nothing_to_do", "nothing pending removal")
    assert app.removed == []


async def not_due_run(tmp_path: Path) -> tuple[Run, FakeApp]:
    current = SecretVersion(
        "s", "v1", SecretValue("abcdef"), True, T0, T0, None, None, None, {KEY_ID_TAG: "old-key"}
    )
    run, app = await rotation_run(tmp_path, FakeVault(current))
    app.creds = (cred("old-key", T0 + timedelta(days=100)),)  # rotate_before is 30 days
    return run, app


class Added(Exception):
    """The rotation went on to addPassword."""


async def test_an_automatic_rotation_of_a_secret_not_due_writes_nothing(tmp_path: Path) -> None:
    run, _ = await not_due_run(tmp_path)
    outcome, detail = await rotate(run, force=False)
    assert outcome == "nothing_to_do"
    assert "expires 2026-04-11" in detail
    assert not run.rec.was_begun("add_password")


async def test_a_forced_rotation_goes_ahead_although_not_due(tmp_path: Path) -> None:
    run, app = await not_due_run(tmp_path)

    async def add(name: str, end: datetime | None) -> NewPassword:
        raise Added(name)

    app.add_password = add  # type: ignore[attr-defined]
    with pytest.raises(Added):
        await rotate(run, force=True)


async def test_a_resumed_rotation_that_lost_the_new_value_compensates(tmp_path: Path) -> None:
    """The process died after addPassword and before the Key Vault write: the value
    is gone, so this run's credential is removed and the rotation starts afresh. Key
    Vault is not asked: a write never begun cannot have landed, whatever it holds."""
    run, app = await not_due_run(tmp_path)
    run.clients.vault.current = version("v-x", {KEY_ID_TAG: "new-key"})  # type: ignore[attr-defined]
    await run.write("plan", "done", {"client_id": "cid", "old_key_ids": ["old-key"], "due": False})
    await run.write("add_password", "begin", {"display_name": "secretwarden x"})
    await run.write("add_password", "done", {"new_key_id": "new-key"})
    with pytest.raises(Restart):
        await rotate(run, force=False)
    assert app.removed == ["new-key"]


def pending_entry(key: str, keep: str) -> dict[str, Any]:
    until = (T0 + timedelta(hours=24)).isoformat()
    p = PendingRemoval((key,), keep, "v3", T0.isoformat(), T0.isoformat(), until, "no proof")
    return {**asdict(p), "pending_key_ids": [key]}


async def test_a_resumed_rollback_with_its_removal_pending_settles_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = RollbackVault(version("v3", {ROLLBACK_TAG: "x"}))
    run, _ = await rollback_run(tmp_path, vault)
    await run.write("rollback.restore", "begin", {"restore_from": "v1"})
    await run.write("rollback.restore", "done", {"restored_version": "v3"})
    await run.write("rollback.verify", "done", {})
    await run.write("pending_removal", "done", pending_entry("new-key", "old-key"))
    calls: list[str] = []

    async def spy(*a: object) -> None:
        calls.append("settle")

    monkeypatch.setattr(rollback_module, "settle_old", spy)
    outcome, detail = await rollback(run)
    assert calls == []
    assert vault.writes == []
    assert outcome == "rolled_back"
    assert "new credential new-key pending removal until 2026-01-02" in detail


async def test_a_resumed_rotation_with_its_removal_pending_settles_nothing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, app = await not_due_run(tmp_path)
    await run.write("plan", "done", {"client_id": "cid", "old_key_ids": ["old-key"]})
    await run.write("add_password", "begin", {})
    await run.write("add_password", "done", {"new_key_id": "new-key"})
    await run.write("write_keyvault", "begin", {})
    await run.write("write_keyvault", "done", {"new_version": "v2"})
    await run.write("verify", "done", {"rung": "refresh"})
    await run.write("pending_removal", "done", pending_entry("old-key", "new-key"))
    calls: list[str] = []

    async def spy(*a: object) -> None:
        calls.append("settle")

    monkeypatch.setattr(rotation_module, "settle_old", spy)
    outcome, detail = await rotate(run, force=False)
    assert calls == []
    assert app.removed == []
    assert not run.rec.was_begun("recheck")
    assert outcome == "success"
    assert "old credential ['old-key'] pending removal until 2026-01-02" in detail


async def test_a_resumed_rotation_whose_ladder_ran_out_rolls_back_without_climbing_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = await not_due_run(tmp_path)
    await run.write("plan", "done", {"client_id": "cid", "old_key_ids": ["old-key"]})
    await run.write("add_password", "begin", {})
    await run.write("add_password", "done", {"new_key_id": "new-key"})
    await run.write("write_keyvault", "begin", {})
    await run.write("write_keyvault", "done", {"new_version": "v2"})
    await run.write("verify", "failed", {"reason": "app down"})
    seen: list[str] = []

    async def ladder(run: Run, version: str, **kw: object) -> Verification:
        seen.append("ladder")
        return Verification(True, "fake")

    async def rolled(run: Run) -> tuple[str, str]:
        seen.append("rollback")
        return "rolled_back", "fake"

    monkeypatch.setattr(rotation_module, "reload_and_verify", ladder)
    monkeypatch.setattr(rotation_module, "rollback", rolled)
    assert await rotate(run, force=False) == ("rolled_back", "fake")
    assert seen == ["rollback"]
