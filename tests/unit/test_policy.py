"""The built-in policy: expiry within rotate_before rotates; N auth failures heal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from exporters.observations import (
    ExpiryObservation,
    GraphAuthObservation,
    HealthObservation,
    Observed,
    ReferenceObservation,
)
from remediation.policy import Policy
from tenant.models import PasswordCredential, TokenFailure

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def cred(days: float) -> PasswordCredential:
    return PasswordCredential(
        "k1", "old", "abc", NOW - timedelta(days=300), NOW + timedelta(days=days)
    )


def expiry(days: float) -> Observed:
    return Observed(
        "t",
        "expiry",
        NOW,
        ExpiryObservation(
            ok=True, credentials=(cred(days),), in_use=cred(days), keyvault_matches_credential=True
        ),
    )


def graph(ok: bool, failure: TokenFailure | None = None, status: int | None = None) -> Observed:
    return Observed(
        "t",
        "graph",
        NOW,
        GraphAuthObservation(
            ok=ok, token_ok=failure is None, token_failure=failure, graph_status=status
        ),
    )


def test_rotates_when_the_in_use_secret_expires_within_rotate_before() -> None:
    p = Policy(rotate_before=timedelta(days=30))
    assert p.evaluate(expiry(31)) is None
    d = p.evaluate(expiry(29.5))
    assert d is not None
    assert d.action == "rotate"
    assert d.target == "t"
    assert "29.5 days" in d.reason
    d = p.evaluate(expiry(-1))  # already expired
    assert d is not None
    assert d.action == "rotate"


def test_a_failed_expiry_probe_or_no_in_use_credential_does_not_rotate() -> None:
    p = Policy()
    assert p.evaluate(Observed("t", "expiry", NOW, ExpiryObservation(ok=False, error="x"))) is None
    assert p.evaluate(Observed("t", "expiry", NOW, ExpiryObservation(ok=True))) is None


def test_heals_after_n_auth_failures_in_a_row_only() -> None:
    p = Policy(heal_after_failures=3)
    bad = graph(False, TokenFailure.EXPIRED_SECRET)
    assert p.evaluate(bad) is None
    assert p.evaluate(bad) is None
    assert p.evaluate(graph(True)) is None  # a success breaks the streak
    assert p.evaluate(bad) is None
    assert p.evaluate(graph(False, None, 401)) is None
    d = p.evaluate(bad)
    assert d is not None
    assert d.action == "heal"
    assert "aadsts" not in d.reason
    assert p.evaluate(bad) is None  # the count starts again after a decision


def test_throttling_and_outages_are_not_auth_failures() -> None:
    p = Policy(heal_after_failures=1)
    assert p.evaluate(graph(False, TokenFailure.THROTTLED)) is None
    assert p.evaluate(graph(False, TokenFailure.UNAVAILABLE)) is None
    assert p.evaluate(graph(False, TokenFailure.INVALID_SECRET)) is not None


def test_health_and_reference_failures_alone_never_act() -> None:
    p = Policy(heal_after_failures=1)
    for _ in range(5):
        assert p.evaluate(Observed("t", "health", NOW, HealthObservation(False, 503, 0.1))) is None
        assert (
            p.evaluate(Observed("t", "reference", NOW, ReferenceObservation(ok=True, stale=True)))
            is None
        )
