"""Issue 13: what the removal proof gathers, over fakes of the tenant ports, and what
the pure decision then makes of it: the daemon's own sign-ins never count as the app's;
out-of-order and duplicated records; a throttled sign-in read; an intermittent 403; an
unreadable per-instance view; an expired old credential."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from remediation.decisions import Reloaded, Verdict, removal
from remediation.proof import Gathered, gather
from remediation.settings import WorkflowSettings
from tenant.errors import GRAPH, NotFound, Throttled
from tenant.models import (
    KeyVaultReference,
    PasswordCredential,
    SignIn,
    SignInLog,
    SignInsUnreadable,
    Site,
    SiteInstance,
    SiteState,
    WorkerProcess,
)
from tenant.ports import TargetClients
from tenant.requestid import new_request_id

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
APP_IP, DAEMON_IP = "20.1.1.1", "127.0.0.1"
NEW_KEY, OLD_KEY, NEW = "new-key", "old-key", "v2"
SETTINGS = WorkflowSettings(
    signin_log_reorder=60.0,
    signin_log_delay_bound=600.0,
    recycle_allowance=120.0,
    clock_skew=1.0,
)
RECYCLED = T0
RELOADED = Reloaded(T0 - S, RECYCLED)


def sign_in(
    at: datetime, key: str, ip: str = APP_IP, *, own: bool = False, rid: str = ""
) -> SignIn:
    return SignIn(
        key,
        at,
        True,
        0,
        None,
        ip,
        new_request_id() if own else "9d1f0c4e-0000-4000-8000-000000000001",
        rid or None,
    )


@dataclass
class FakeSite:
    instances_: tuple[SiteInstance, ...] | None = None  # None: the view is refused

    async def get_site(self) -> Site:
        return Site("app", SiteState.RUNNING, "app.example", (APP_IP, "20.1.1.2"))

    async def instances(self) -> tuple[SiteInstance, ...]:
        if self.instances_ is None:
            raise NotFound("arm", "list the instances of site app", "not served")
        return self.instances_

    async def key_vault_references(self) -> list[KeyVaultReference]:
        return [KeyVaultReference("s", "Resolved", "kv", "s", None, NEW, None)]


@dataclass
class FakeApp:
    ends: dict[str, datetime | None] = field(
        default_factory=lambda: {OLD_KEY: T0 + timedelta(days=9), NEW_KEY: None}
    )

    async def list_credentials(self) -> tuple[PasswordCredential, ...]:
        return tuple(PasswordCredential(k, k, "abc", None, e) for k, e in self.ends.items())


@dataclass
class FakeSignIns:
    """Answers in turn: a SignInLog from ``records``, or a 403, or a 429."""

    records: list[SignIn] = field(default_factory=list)
    answers: list[str] = field(default_factory=lambda: ["log"])
    calls: int = 0

    async def service_principal_sign_ins(
        self, app_id: str, since: datetime
    ) -> SignInLog | SignInsUnreadable:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if answer == "403":
            return SignInsUnreadable(
                app_id, "Authentication_RequestFromNonPremiumTenantOrB2CTenant", 403, "x"
            )
        if answer == "429":
            raise Throttled(GRAPH, "read the sign-in log", "too many requests", status=429)
        found = tuple(r for r in self.records if r.created >= since)
        return SignInLog(app_id, since, found)


def clients(site: FakeSite, signins: FakeSignIns, app: FakeApp | None = None) -> TargetClients:
    fake: Any = type("Fake", (), {})()
    fake.site, fake.signins, fake.app = site, signins, app or FakeApp()
    return cast(TargetClients, fake)


async def judge(c: TargetClients, now: datetime) -> tuple[Gathered, Verdict, str]:
    got = await gather(
        c,
        app_id="app",
        keep_key_id=NEW_KEY,
        keep_version=NEW,
        old_key_ids=(OLD_KEY,),
        since=T0 - M,
        now=now,
        reloaded=RELOADED,
        settings=SETTINGS,
    )
    verdict = removal(
        new_version=NEW,
        reloaded=RELOADED,
        pending_since=T0,
        now=now,
        overlap=timedelta(hours=24),
        evidence=got.evidence,
        skew=S,
        recycle_allowance=timedelta(seconds=SETTINGS.recycle_allowance),
    )
    return got, verdict.verdict, verdict.proof


NOW = T0 + 10 * M
LATE = T0 + 3 * M  # after the recycle and its allowance (2 min)


async def test_the_daemons_own_sign_ins_never_count_as_the_apps() -> None:
    # Its probes sign in with the new keyId, even from the app's own address (a daemon
    # running inside the site's network): only the correlationId tells them apart.
    log = FakeSignIns(
        [sign_in(LATE, NEW_KEY, own=True), sign_in(LATE + M, NEW_KEY, APP_IP, own=True)]
    )
    got, verdict, why = await judge(clients(FakeSite(), log), NOW)
    assert got.evidence.signins is not None
    assert got.evidence.signins.new_first is None
    assert got.evidence.signins.caught_up_to == LATE + M - timedelta(seconds=60)
    assert verdict is Verdict.WAIT, why
    # the app's own, from its address, then counts
    log.records.append(sign_in(LATE, NEW_KEY))
    _, verdict, why = await judge(clients(FakeSite(), log), NOW)
    assert verdict is Verdict.REMOVE, why
    assert "sign-in evidence" in why


async def test_out_of_order_and_duplicated_records() -> None:
    # The old keyId's record arrives late and twice; the log is caught up (a marker
    # 5 min on): the old credential in use wins over the new one's sign-ins.
    records = [
        sign_in(LATE + 2 * M, NEW_KEY, rid="a"),
        sign_in(LATE + 5 * M, NEW_KEY, own=True, rid="m"),
        sign_in(LATE + M, OLD_KEY, rid="b"),
        sign_in(LATE + M, OLD_KEY, rid="b"),
        sign_in(LATE + 2 * M, NEW_KEY, rid="a"),
    ]
    got, verdict, why = await judge(clients(FakeSite(), FakeSignIns(records)), NOW)
    assert verdict is Verdict.WAIT
    assert "old credential in use" in why
    s = got.evidence.signins
    assert s is not None
    assert (s.new_first, s.old_last) == (LATE + 2 * M, LATE + M)
    # without the old one: removed, the duplicates change nothing
    records = [r for r in records if r.key_id != OLD_KEY]
    _, verdict, why = await judge(clients(FakeSite(), FakeSignIns(records)), NOW)
    assert verdict is Verdict.REMOVE, why


async def test_a_log_not_caught_up_proves_nothing() -> None:
    # The only marker (minus the reorder bound) is before the recycle's end: a record
    # of the old keyId created before it may still be on its way.
    marker = RECYCLED + 2 * M + 30 * S
    records = [sign_in(LATE, NEW_KEY), sign_in(marker, NEW_KEY, own=True)]
    _, verdict, why = await judge(clients(FakeSite(), FakeSignIns(records)), LATE + M)
    assert verdict is Verdict.WAIT
    assert "caught-up" in why
    # ... until the delay bound passes (10 min)
    _, verdict, why = await judge(
        clients(FakeSite(), FakeSignIns(records)), RECYCLED + 2 * M + 10 * M
    )
    assert verdict is Verdict.REMOVE, why


async def test_a_throttled_sign_in_read_is_a_note_not_proof() -> None:
    log = FakeSignIns([sign_in(LATE, NEW_KEY), sign_in(LATE + 5 * M, NEW_KEY, own=True)])
    log.answers = ["429", "log"]
    got, verdict, _ = await judge(clients(FakeSite(), log), NOW)
    assert got.evidence.signins is None
    assert verdict is Verdict.WAIT
    assert any("429" in n and "sign-in log not read" in n for n in got.notes)
    _, verdict, _ = await judge(clients(FakeSite(), log), NOW)  # the next look reads it
    assert verdict is Verdict.REMOVE


async def test_an_intermittent_403_is_a_note_then_the_log_counts() -> None:
    log = FakeSignIns([sign_in(LATE, NEW_KEY), sign_in(LATE + 5 * M, NEW_KEY, own=True)])
    log.answers = ["403", "log", "403"]
    got, verdict, _ = await judge(clients(FakeSite(), log), NOW)
    assert (got.evidence.signins, verdict) == (None, Verdict.WAIT)
    assert any("Authentication_RequestFromNonPremiumTenantOrB2CTenant" in n for n in got.notes)
    _, verdict, _ = await judge(clients(FakeSite(), log), NOW)
    assert verdict is Verdict.REMOVE
    got, verdict, _ = await judge(clients(FakeSite(), log), NOW)
    assert (got.evidence.signins, verdict) == (None, Verdict.WAIT)


def instance(name: str, *starts: datetime | None, scm: datetime | None = None) -> SiteInstance:
    procs = [WorkerProcess(f"w3wp-{i}", t, False) for i, t in enumerate(starts)]
    if scm is not None:
        procs.append(WorkerProcess("kudu", scm, True))
    return SiteInstance(name, tuple(procs))


async def test_the_per_instance_view_proves_and_the_scm_site_is_left_out() -> None:
    mark = T0 - 10 * S
    marked = Reloaded(T0 - S, RECYCLED, mark)
    site = FakeSite((instance("a", mark + S), instance("b", mark + 2 * S, scm=mark - M)))
    got = await gather(
        clients(site, FakeSignIns()),
        app_id="app",
        keep_key_id=NEW_KEY,
        keep_version=NEW,
        old_key_ids=(OLD_KEY,),
        since=T0,
        now=NOW,
        reloaded=marked,
        settings=SETTINGS,
    )
    assert got.evidence.workers == ((mark + S,), (mark + 2 * S,))
    verdict = removal(
        new_version=NEW,
        reloaded=marked,
        pending_since=T0,
        now=NOW,
        overlap=timedelta(hours=24),
        evidence=got.evidence,
    )
    assert verdict.verdict is Verdict.REMOVE, verdict.proof
    assert "2 on 2 instance(s)" in verdict.proof


async def test_an_unreadable_view_and_an_expired_old_credential() -> None:
    app = FakeApp({OLD_KEY: T0 - M, NEW_KEY: None})
    got, verdict, why = await judge(clients(FakeSite(None), FakeSignIns(), app), NOW)
    assert got.evidence.workers is None
    assert any("per-instance view not read" in n for n in got.notes)
    assert got.evidence.old_ends == (T0 - M,)
    assert verdict is Verdict.REMOVE
    assert "expired" in why
