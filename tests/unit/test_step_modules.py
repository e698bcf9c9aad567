"""The step modules' safety decisions, tested as hard as the pure ones: each test here
kills a one-line mutation a reviewer made in remediation/ that the rest of the suite
did not notice (docs/remediation.md, "Mutation testing"). Fakes for the Azure ports
and a FakeClock; the journal is the real one, in a temporary directory. Fast: these
run once per mutant under ``make mutate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from remediation.clock import FakeClock
from remediation.decisions import Evidence, SignInEvidence, Verdict
from remediation.journal import Journal
from remediation.proof import Gathered, decide
from remediation.reload import ensure_running
from remediation.removal import reloaded_at, settle_old
from remediation.results import PendingRemoval
from remediation.rotation import RUN_TAG, recover_lost_value, write_keyvault, write_landed
from remediation.runner import Restart, Run, StepError
from remediation.settings import WorkflowSettings
from tenant.errors import Unavailable
from tenant.models import (
    KEY_ID_TAG,
    NewPassword,
    PasswordCredential,
    RemoveOutcome,
    SecretValue,
    SecretVersion,
    SignIn,
    SignInLog,
    Site,
    SiteState,
)
from tenant.ports import TargetClients

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET = "portal"


def version(v: str, tags: dict[str, str]) -> SecretVersion:
    return SecretVersion("s", v, SecretValue("x"), True, T0, T0, None, None, None, dict(tags))


# -- fakes of the ports ------------------------------------------------------------------


@dataclass
class FakeSite:
    states: list[SiteState]  # what get_site answers, in turn (the last one repeats)
    refs: list[Any] = field(default_factory=list)
    started: int = 0

    async def start(self) -> None:
        self.started += 1

    async def get_site(self) -> Site:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return Site("site", state, None)

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

    async def remove_password(self, key_id: str) -> RemoveOutcome:
        self.removed.append(key_id)
        return cast(RemoveOutcome, None)


def make_run(tmp_path: Path, clock: FakeClock, **clients: object) -> Run:
    ports = SimpleNamespace(
        ref=None, app=FakeApp(), vault=None, entra=None, site=None, signins=None, action=None
    )
    for k, v in clients.items():
        setattr(ports, k, v)
    run = Run(
        TARGET,
        cast(TargetClients, ports),
        cast(Any, None),
        Journal(tmp_path, TARGET),
        WorkflowSettings(step_backoff=0.01, verify_poll=1.0, site_running_timeout=30.0),
        clock,
    )
    run.open("rotate", "test")
    return run


# -- removal: the overlap window is measured from when the removal became pending --------


def no_proof() -> Gathered:
    return Gathered(Evidence(SignInEvidence(None, None), None, None), ())


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
    p = PendingRemoval(
        ("old",),
        "new",
        "v2",
        T0.isoformat(),
        T0.isoformat(),
        (T0 + timedelta(hours=24)).isoformat(),
        "",
    )
    got = decide(p, no_proof(), T0 + timedelta(hours=hours_after))
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
    run = make_run(tmp_path, clock, site=site)
    with pytest.raises(StepError, match=f"not Running after Stop\\+Start \\(state {state.value}"):
        await ensure_running(run, "reload.stop_start")
    assert run.site_stopped
    assert site.started == 1
    assert clock.monotonic() >= 1000.0 + 30.0  # it waited the whole timeout


async def test_a_site_that_becomes_running_is_accepted(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    site = FakeSite([SiteState.UNKNOWN, SiteState.STOPPED, SiteState.RUNNING])
    run = make_run(tmp_path, clock, site=site)
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
    run = make_run(tmp_path, FakeClock(T0), vault=vault)
    run.new = new_password("new-key")
    got = await write_keyvault(run)
    assert got.new_version == "v-written-2"
    assert len(vault.writes) == 2
    assert vault.writes[-1][KEY_ID_TAG] == "new-key"
    assert vault.writes[-1][RUN_TAG] == run.rec.run


async def test_a_lost_reply_that_landed_is_not_written_twice(tmp_path: Path) -> None:
    vault = FakeVault(version("v-old", {KEY_ID_TAG: "old-key"}))
    run = make_run(tmp_path, FakeClock(T0), vault=vault)
    run.new = new_password("new-key")

    async def landed_then_lost(value: SecretValue, tags: dict[str, str]) -> SecretVersion:
        vault.writes.append(dict(tags))
        vault.current = version("v-landed", tags)
        raise Unavailable("keyvault", "set secret", "timeout", maybe_applied=True)

    vault.set_value = landed_then_lost  # type: ignore[method-assign]
    got = await write_keyvault(run)
    assert got.new_version == "v-landed"
    assert len(vault.writes) == 1


def begun_write(run: Run, key: str) -> None:
    run.write("add_password", "begin", {"display_name": "secretwarden x"})
    run.write("add_password", "done", {"new_key_id": key})
    run.write("write_keyvault", "begin", {"new_key_id": key})


async def test_write_landed_does_not_take_another_keys_version(tmp_path: Path) -> None:
    vault = FakeVault(version("v-old", {KEY_ID_TAG: "old-key"}))
    run = make_run(tmp_path, FakeClock(T0), vault=vault)
    begun_write(run, "new-key")
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
    run = make_run(tmp_path, FakeClock(T0), vault=vault, app=app)
    begun_write(run, "new-key")
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
    signins = FakeSignIns((SignIn("old-key", t1 + timedelta(minutes=1), True, None, None),))
    app = FakeApp()
    run = make_run(tmp_path, clock, signins=signins, site=FakeSite([SiteState.RUNNING]), app=app)
    run.write("plan", "done", {"client_id": "cid", "old_key_ids": ["old-key"]})
    clock.advance(60)
    run.write("reload.refresh", "done", {"rung": "refresh"})
    run.write("verify", "failed", {})
    clock.advance(9 * 60)
    run.write("rollback.reload.refresh", "done", {"rung": "refresh"})
    run.write("rollback.verify", "done", {})
    clock.advance(60)
    assert reloaded_at(run, "rollback.") == t2
    assert reloaded_at(run) == t1

    await settle_old(run, "rollback.remove_new", ("new-key",), "old-key", "v3")

    assert signins.asked_since == [t2]
    assert app.removed == []
    assert run.rec.is_done("pending_removal")
    pending = run.facts.pending()
    assert pending is not None
    assert pending.pending_key_ids == ("new-key",)
    assert pending.reloaded_at == t2.isoformat()


async def test_the_rollback_removal_goes_on_a_sign_in_after_its_reload(tmp_path: Path) -> None:
    """The converse: a sign-in with the restored credential after the rollback's
    reload (and none with the new one) is proof, and the new credential goes."""
    clock = FakeClock(T0)
    t2 = T0 + timedelta(minutes=10)
    signins = FakeSignIns((SignIn("old-key", t2 + timedelta(seconds=30), True, None, None),))
    app = FakeApp()
    run = make_run(tmp_path, clock, signins=signins, site=FakeSite([SiteState.RUNNING]), app=app)
    run.write("plan", "done", {"client_id": "cid", "old_key_ids": ["old-key"]})
    clock.advance(60)
    run.write("reload.refresh", "done", {"rung": "refresh"})
    clock.advance(9 * 60)
    run.write("rollback.reload.refresh", "done", {"rung": "refresh"})
    clock.advance(60)
    await settle_old(run, "rollback.remove_new", ("new-key",), "old-key", "v3")
    assert app.removed == ["new-key"]
    assert run.rec.is_done("rollback.remove_new")
