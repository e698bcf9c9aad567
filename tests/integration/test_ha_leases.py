"""Blob leases and the fenced journal against a real Azurite (tenant/leases.py,
remediation/leadership.py, remediation/blob_journal.py).

What HA rests on: a second acquire is refused with 409 LeaseAlreadyPresent, a renewal
keeps the lease, a lease lapses ``lease_seconds`` after its last renewal, and a
journal append under a stale lease id is refused once another daemon holds the lease.
The leadership's deadline is tested with a fake monotonic clock (no waiting).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azurite import Azurite, connection_string
from helpers import free_port
from prometheus_client import CollectorRegistry

from remediation.blob_journal import BlobJournal
from remediation.clock import FakeClock
from remediation.leadership import HaSettings, LeaseLeadership, NotLeader, fair_share, plan
from tenant.leases import BlobLeases, LeaseLost, LeaseTaken, StorageError
from tenant.models import SecretValue


@pytest.fixture
async def store(azurite_server: Azurite) -> AsyncIterator[BlobLeases]:
    container = f"t-{secrets.token_hex(6)}"
    async with BlobLeases(
        container, connection_string=SecretValue(azurite_server.connection_string)
    ) as s:
        await s.ensure_container()
        yield s


async def test_second_acquire_is_refused_with_409_and_renew_keeps_the_lease(
    store: BlobLeases,
) -> None:
    a = await store.acquire("portal", 15, "daemon-a")
    assert a.previous_holder is None
    with pytest.raises(LeaseTaken) as taken:
        await store.acquire("portal", 15, "daemon-b")
    assert (taken.value.status, taken.value.code) == (409, "LeaseAlreadyPresent")
    await store.renew("portal", a.lease_id)
    info = await store.info("portal")
    assert (info.state, info.holder) == ("leased", "daemon-a")
    await store.release("portal", a.lease_id)
    b = await store.acquire("portal", 15, "daemon-b")
    assert b.previous_holder == "daemon-a"  # a takeover: the metadata said who held it


async def test_a_journal_line_under_a_stale_lease_is_refused(store: BlobLeases) -> None:
    a = await store.acquire("portal", 15, "daemon-a")
    await store.append("portal", a.lease_id, b'{"line":1}\n')
    await store.release("portal", a.lease_id)
    b = await store.acquire("portal", 15, "daemon-b")
    with pytest.raises(LeaseLost) as lost:
        await store.append("portal", a.lease_id, b'{"line":2}\n')
    assert lost.value.status == 412
    with pytest.raises(LeaseLost):  # and a renewal of the stale lease too
        await store.renew("portal", a.lease_id)
    await store.append("portal", b.lease_id, b'{"line":3}\n')
    assert await store.read_journal("portal") == b'{"line":1}\n{"line":3}\n'


async def test_a_lease_not_renewed_lapses_after_its_duration(store: BlobLeases) -> None:
    """15 s is the shortest lease Azure allows: the one slow test here."""
    a = await store.acquire("portal", 15, "daemon-a")
    t0 = time.monotonic()
    with pytest.raises(LeaseTaken):
        await store.acquire("portal", 15, "daemon-b")
    while True:
        try:
            b = await store.acquire("portal", 15, "daemon-b")
            break
        except LeaseTaken:
            assert time.monotonic() - t0 < 20, "the lease never lapsed"
            await asyncio.sleep(0.25)
    lapsed = time.monotonic() - t0
    assert 14 <= lapsed < 17, lapsed
    assert b.previous_holder == "daemon-a"
    with pytest.raises(LeaseLost):
        await store.append("portal", a.lease_id, b"late\n")


async def test_storage_that_does_not_answer_is_a_storage_error_not_a_lost_lease() -> None:
    nobody = connection_string(free_port())
    async with BlobLeases("c-down", connection_string=SecretValue(nobody), timeout=1) as s:
        with pytest.raises(StorageError) as err:
            await s.renew("portal", "00000000-0000-0000-0000-000000000000")
    assert not isinstance(err.value, LeaseLost)
    assert err.value.status == 0


def sample(lead: LeaseLeadership, name: str, **labels: str) -> float | None:
    assert lead.registry is not None
    return lead.registry.get_sample_value(name, labels)


def _leadership(
    store: BlobLeases, daemon: str, clock: FakeClock, targets: list[str]
) -> LeaseLeadership:
    return LeaseLeadership(
        store=store,
        daemon=daemon,
        settings=HaSettings(lease_seconds=15, renew_deadline=10, retry=1),
        targets=lambda: targets,
        registry=CollectorRegistry(),
        clock=clock,
    )


async def test_the_holder_stops_writing_once_its_renew_deadline_passed(
    store: BlobLeases, tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    lead = _leadership(store, "daemon-a", clock, ["portal"])
    await lead.tick()
    assert lead.holds("portal")
    journal = BlobJournal(tmp_path, "portal", store, lead)
    await journal.write(ts=clock.now(), run="r1", action="rotate", step="run", phase="begin")
    clock.advance(9.9)
    lead.check("portal")  # still inside the deadline
    clock.advance(0.2)
    assert not lead.holds("portal")
    with pytest.raises(NotLeader, match="renew deadline"):
        await journal.write(ts=clock.now(), run="r1", action="rotate", step="plan", phase="begin")
    # nothing reached storage or the local copy after the deadline
    assert (await store.read_journal("portal")).count(b"\n") == 1
    assert len(list(journal.entries())) == 1
    await lead.tick()  # a renewal that works proves it again
    assert lead.holds("portal")
    assert sample(lead, "secretwarden_ha_lease_renewals_total", result="ok") == 1


async def test_a_takeover_reads_the_journal_the_previous_holder_wrote(
    store: BlobLeases, tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    a = _leadership(store, "daemon-a", clock, ["portal"])
    await a.tick()
    ja = BlobJournal(tmp_path / "a", "portal", store, a)
    await ja.write(ts=clock.now(), run="r1", action="rotate", step="run", phase="begin")
    await ja.write(ts=clock.now(), run="r1", action="rotate", step="plan", phase="begin")
    await a.release_all()
    b = _leadership(store, "daemon-b", clock, ["portal"])
    jb = BlobJournal(tmp_path / "b", "portal", store, b)

    async def adopt(target: str) -> bool:
        await jb.refresh()
        return True

    b.on_acquired = adopt
    await b.tick()
    assert b.holds("portal")
    rec = jb.unfinished()
    assert rec is not None
    assert (rec.run, rec.begun) == ("r1", ["plan"])
    assert sample(b, "secretwarden_ha_takeovers_total", target="portal") == 1
    assert sample(b, "secretwarden_ha_lease_held", target="portal") == 1
    with pytest.raises(NotLeader, match="not hold"):
        await ja.write(ts=clock.now(), run="r1", action="rotate", step="plan", phase="done")


@pytest.mark.parametrize(
    ("targets", "members", "share"),
    [(30, 3, 10), (31, 3, 11), (1, 2, 1), (0, 1, 0), (5, 0, 5), (4, 4, 1)],
)
def test_fair_share(targets: int, members: int, share: int) -> None:
    assert fair_share(targets, members) == share


@pytest.mark.parametrize(
    ("held", "share", "busy", "take", "release"),
    [
        ([], 2, set(), 2, []),
        (["a"], 2, set(), 1, []),
        (["a", "b", "c"], 1, set(), 0, ["a", "b"]),
        (["a", "b", "c"], 1, {"a"}, 0, ["b", "c"]),
        (["a", "b"], 1, {"a", "b"}, 0, []),  # runs in progress finish here
        (["a"], 1, set(), 0, []),
    ],
)
def test_plan_keeps_the_fair_share(
    held: list[str], share: int, busy: set[str], take: int, release: list[str]
) -> None:
    assert plan(held, share, busy.__contains__) == (take, release)


async def test_a_daemon_takes_its_share_past_targets_others_hold(store: BlobLeases) -> None:
    """The free targets it tries first may be held by others (409): it goes on down
    its list until it holds its share."""
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    targets = [f"t{i}" for i in range(6)]
    daemons = [_leadership(store, f"daemon-{i}", clock, targets) for i in range(3)]
    for d in daemons:
        await store.heartbeat(d.daemon)
    for _ in range(2):
        for d in daemons:
            await d.tick()
    assert sorted(len(d.held()) for d in daemons) == [2, 2, 2]
    assert sorted(t for d in daemons for t in d.held()) == targets


async def test_check_says_whether_storage_is_reachable_and_who_holds_each_target(
    azurite_server: Azurite, tmp_path: Path
) -> None:
    from daemon.config import parse_config
    from daemon.ha import lease_rows
    from daemon.sandbox_config import write_secret_file

    def config(conn: str) -> Any:
        secret = tmp_path / f"storage-{len(conn)}.secret"
        write_secret_file(secret, conn)
        return parse_config(
            {
                "ha": {
                    "backend": "azure_blob",
                    "container": f"c-{secrets.token_hex(4)}",
                    "connection_string_file": str(secret),
                },
                "targets": [
                    {
                        "name": "portal",
                        "tenant_id": "11111111-1111-1111-1111-111111111111",
                        "app_object_id": "22222222-2222-2222-2222-222222222222",
                        "key_vault_url": "https://kv.vault.azure.net",
                        "subscription_id": "33333333-3333-3333-3333-333333333333",
                        "resource_group": "rg",
                        "site_name": "site",
                        "health_url": "https://site/health",
                    }
                ],
            }
        )

    rows = await lease_rows(config(azurite_server.connection_string))
    assert [r[:3] for r in rows] == [("ha", "storage", "ok"), ("portal", "lease", "ok")]
    assert rows[0][3].endswith(": reachable, lease blobs writable")
    assert rows[1][3] == "never leased yet"
    down = await lease_rows(config(connection_string(free_port())))
    assert [r[:3] for r in down] == [("ha", "storage", "FAIL")]
    assert "blob storage: create container" in down[0][3]
    assert "AccountKey" not in down[0][3]
