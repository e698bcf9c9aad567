"""Verification, the pending-removal fold and the probes' credential matching, as
tables over fakes: what counts as proof of the app's version, and what never does."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from exporters.expiry import _pick, candidates
from exporters.observations import (
    GraphAuthObservation,
    HealthObservation,
    ReferenceObservation,
)
from remediation.journal import Entry, RunRecord
from remediation.proof import pending_removals
from remediation.verify import verify_app
from tenant.models import (
    KEY_ID_TAG,
    AppActionOutcome,
    KeyVaultReference,
    PasswordCredential,
    SecretValue,
)

NEW, OLD = "v2", "v1"


def ref(
    active: str | None, pinned: str | None = None, status: str = "Resolved"
) -> KeyVaultReference:
    return KeyVaultReference("AzureAd__ClientSecret", status, "kv", "s", pinned, active, None)


@dataclass
class FakeProber:
    reference_: ReferenceObservation
    health_ok: bool = True
    graph_ok: bool = True
    graph_version: str | None = NEW
    action_ok: bool | None = None  # None: the target names no action
    calls: list[str] = field(default_factory=list)

    async def health(self) -> HealthObservation:
        self.calls.append("health")
        return HealthObservation(self.health_ok, 200 if self.health_ok else 503, 0.01)

    async def graph_auth(self) -> GraphAuthObservation:
        self.calls.append("graph")
        return GraphAuthObservation(
            ok=self.graph_ok, token_ok=self.graph_ok, keyvault_version=self.graph_version
        )

    async def reference(self) -> ReferenceObservation:
        self.calls.append("reference")
        return self.reference_

    async def app_action(self) -> AppActionOutcome | None:
        self.calls.append("action")
        if self.action_ok is None:
            return None
        status = 200 if self.action_ok else 502
        return AppActionOutcome("https://app/sync", self.action_ok, status, 0.01, None)


def observed(r: KeyVaultReference | None, current: str = NEW) -> ReferenceObservation:
    if r is None:
        return ReferenceObservation(ok=False, error="ARM down")
    return ReferenceObservation(ok=True, reference=r, current_version=current, resolved=r.resolved)


@pytest.mark.parametrize(
    ("prober", "ok", "proof", "settled", "says"),
    [
        # activeVersion absent: working, but unknown; never proof
        (FakeProber(observed(ref(None))), True, None, False, "version unknown"),
        (FakeProber(observed(ref(NEW))), True, "activeVersion", False, "on version v2"),
        (FakeProber(observed(ref(None, pinned=NEW))), True, "pinned", False, "on version v2"),
        (FakeProber(observed(ref(NEW, pinned=NEW))), True, "activeVersion", False, ""),
        # another version held or pinned: fails; settled when the app is up
        (FakeProber(observed(ref(OLD))), False, None, True, "app holds version v1"),
        (FakeProber(observed(ref(OLD)), health_ok=False), False, None, False, "holds"),
        (FakeProber(observed(ref(None, pinned=OLD))), False, None, True, "pinned to version v1"),
        (
            FakeProber(observed(ref(None, status="SecretNotFound"))),
            False,
            None,
            False,
            "not resolved",
        ),
        (FakeProber(observed(None)), False, None, False, "reference probe failed"),
        (
            FakeProber(ReferenceObservation(ok=True, reference=None, current_version=NEW)),
            False,
            None,
            False,
            "Key Vault reference not resolved (missing)",
        ),
        (FakeProber(observed(ref(None), current="v3")), False, None, False, "Key Vault moved"),
        (FakeProber(observed(ref(None)), health_ok=False), False, None, False, "/health"),
        (FakeProber(observed(ref(NEW)), graph_ok=False), False, None, False, "Graph probe"),
        (FakeProber(observed(ref(NEW)), graph_version="v3"), False, None, False, "moved to v3"),
        (FakeProber(observed(ref(NEW)), action_ok=False), False, None, False, "own action"),
        (
            FakeProber(observed(ref(NEW)), action_ok=True),
            True,
            "activeVersion",
            False,
            "app on version v2, healthy, Graph OK, app action OK",
        ),
        (
            FakeProber(observed(ref(None)), action_ok=True),
            True,
            None,
            False,
            "app version unknown (no proof), healthy, Graph OK, app action OK",
        ),
    ],
)
async def test_verify_app(
    prober: FakeProber, ok: bool, proof: str | None, settled: bool, says: str
) -> None:
    v = await verify_app(prober, NEW)
    assert v.ok is ok, v.reason
    assert bool(v) is ok
    assert v.settled is settled
    if proof is None:
        assert v.proof is None
    else:
        assert v.proof is not None
        assert proof in v.proof
    assert says in v.reason


async def test_verify_app_for_a_rollback_checks_only_the_reference() -> None:
    prober = FakeProber(observed(ref(None)), health_ok=False, graph_ok=False, action_ok=False)
    v = await verify_app(prober, NEW, health=False, graph=False, action=False)
    assert v.ok
    assert v.proof is None
    assert v.reason == "app version unknown (no proof), reference resolved"
    assert prober.calls == ["reference"]


# -- the probes' credential matching -----------------------------------------------------


def cred(key: str, hint: str | None) -> PasswordCredential:
    return PasswordCredential(key, None, hint, None, None)


VALUE = SecretValue("abcdefgh")


@pytest.mark.parametrize(
    ("creds", "tags", "expected"),
    [
        ([cred("a", "abc"), cred("b", "xyz")], {}, ["a"]),
        ([cred("a", "abc"), cred("b", "abc")], {}, ["a", "b"]),
        ([cred("a", "abc"), cred("b", "abc")], {KEY_ID_TAG: "b"}, ["b"]),  # tag + hint agree
        ([cred("a", "abc"), cred("b", "xyz")], {KEY_ID_TAG: "b"}, ["a"]),  # tag disagrees
        ([cred("a", "abc")], {KEY_ID_TAG: "gone"}, ["a"]),  # tag names no credential
        ([cred("a", None), cred("b", "xyz")], {}, ["a"]),  # no hint: cannot rule it out
        ([cred("a", None)], {KEY_ID_TAG: "a"}, ["a"]),
        ([cred("b", "xyz")], {}, []),
    ],
)
def test_candidates(
    creds: list[PasswordCredential], tags: dict[str, str], expected: list[str]
) -> None:
    assert [c.key_id for c in candidates(tuple(creds), VALUE, tags)] == expected


# -- the pending-removal fold ------------------------------------------------------------

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def record(run: str, *entries: tuple[str, dict[str, object]]) -> RunRecord:
    r = RunRecord(run=run, action="rotate", started=T0)
    for step, data in entries:
        r.apply(Entry(T0, run, "rotate", step, "done", dict(data)))
    return r


def pend(*keys: str) -> tuple[str, dict[str, object]]:
    return (
        "pending_removal",
        {
            "pending_key_ids": list(keys),
            "keep_key_id": "new",
            "keep_version": NEW,
            "reloaded_at": T0.isoformat(),
            "pending_since": T0.isoformat(),
            "pending_until": T0.isoformat(),
            "pending_why": "no proof",
        },
    )


@pytest.mark.parametrize(
    ("runs", "left"),
    [
        ([], []),
        ([record("r1", pend("a"))], [("a",)]),
        ([record("r1", pend("a")), record("r2", ("cleanup.remove", {"removed": ["a"]}))], []),
        (
            [record("r1", pend("a", "b")), record("r2", ("remove_old", {"removed": ["a"]}))],
            [("b",)],
        ),
        ([record("r1", pend("a")), record("r2", ("remove_old", {"removed": ["x"]}))], [("a",)]),
        (
            [record("r1", pend("a")), record("r2", ("rollback.remove_new", {"removed_new": "a"}))],
            [],
        ),
        ([record("r1", pend("a")), record("r2", pend("n"))], [("a",), ("n",)]),
        ([record("r1", ("pending_removal", {"pending_key_ids": []}))], []),
    ],
)
def test_pending_removals(runs: list[RunRecord], left: list[tuple[str, ...]]) -> None:
    assert [p.pending_key_ids for p in pending_removals(runs)] == left


def test_a_failed_removal_step_leaves_it_pending() -> None:
    r = record("r1", pend("a"))
    r.apply(Entry(T0, "r2", "cleanup", "cleanup.remove", "failed", {"removed": ["a"]}))
    assert [p.pending_key_ids for p in pending_removals([r])] == [("a",)]


def test_a_pending_removal_is_read_back_whole_and_narrowed_by_a_partial_removal() -> None:
    r1 = record("r1", ("plan", {"old_key_ids": ["a", "b"]}), pend("a", "b"))
    r1.entries.insert(0, Entry(T0, "r1", "rotate", "plan", "begin", {}))  # not "done"
    [whole] = pending_removals([r1])
    assert whole.pending_key_ids == ("a", "b")
    assert (whole.keep_key_id, whole.keep_version) == ("new", NEW)
    assert whole.reloaded_at == whole.pending_since == whole.pending_until == T0.isoformat()
    assert whole.pending_why == "no proof"
    [narrowed] = pending_removals([r1, record("r2", ("remove_old", {"removed": ["a"]}))])
    assert narrowed.pending_key_ids == ("b",)
    assert narrowed.keep_key_id == "new"
    assert narrowed.keep_version == NEW
    assert narrowed.reloaded_at == narrowed.pending_since == T0.isoformat()
    assert narrowed.pending_until == T0.isoformat()
    assert narrowed.pending_why == "no proof"


def test_entries_before_the_pending_one_do_not_hide_it() -> None:
    r = RunRecord(run="r1", action="rotate", started=T0)
    r.apply(Entry(T0, "r1", "rotate", "verify", "failed", {}))
    step, data = pend("a")
    r.apply(Entry(T0, "r1", "rotate", step, "done", dict(data)))
    assert [p.pending_key_ids for p in pending_removals([r])] == [("a",)]


def ends(key: str, days: int | None) -> PasswordCredential:
    end = None if days is None else T0 + timedelta(days=days)
    return PasswordCredential(key, None, "abc", None, end)


@pytest.mark.parametrize(
    ("creds", "live", "expected"),
    [
        ([ends("a", 30), ends("b", 10)], True, "b"),  # the safe guess: the earliest end
        ([ends("a", 30), ends("b", None)], True, "a"),  # no end date sorts last
        ([ends("a", None)], True, "a"),
        ([ends("a", -1), ends("b", 10)], True, "b"),  # expired is not live
        ([ends("a", -1), ends("b", -5), ends("c", 10)], False, "b"),
        ([ends("a", 10)], False, None),
        ([], True, None),
    ],
)
def test_pick_the_safe_guess(
    creds: list[PasswordCredential], live: bool, expected: str | None
) -> None:
    got = _pick(creds, T0, live)
    assert (got.key_id if got else None) == expected
