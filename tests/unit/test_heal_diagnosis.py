"""Heal's diagnosis as a table: only a rejected Key Vault value rotates, only a working
one reloads; throttling, outages, invalid_client and the rest are reported, not acted on."""

from __future__ import annotations

import pytest

from exporters.observations import GraphAuthObservation
from remediation.heal import diagnosis
from remediation.runner import StepError
from tenant.models import TokenFailure

F = TokenFailure


def failed(failure: TokenFailure) -> GraphAuthObservation:
    return GraphAuthObservation(ok=False, token_ok=False, token_failure=failure, error="x")


@pytest.mark.parametrize(
    ("obs", "decision", "why"),
    [
        (
            GraphAuthObservation(ok=True, token_ok=True, keyvault_version="v2"),
            "reload",
            "the Key Vault value works; the app holds a stale one",
        ),
        (failed(F.INVALID_SECRET), "rotate", "Entra rejects the Key Vault value"),
        (failed(F.EXPIRED_SECRET), "rotate", "Entra rejects the Key Vault value"),
    ],
)
def test_decisions_that_act(obs: GraphAuthObservation, decision: str, why: str) -> None:
    d = diagnosis("portal", obs)
    assert d.decision == decision
    assert why in d.why
    assert d.kv_version == ("v2" if decision == "reload" else None)


@pytest.mark.parametrize(
    ("obs", "permanent", "says"),
    [
        # neither "invalid" nor "expired": not the secret's fault, or not knowable now
        (failed(F.THROTTLED), False, "cannot tell which failure holds"),
        (failed(F.UNAVAILABLE), False, "cannot tell which failure holds"),
        (failed(F.INVALID_CLIENT), True, "cannot tell which failure holds"),
        (failed(F.APP_NOT_FOUND), True, "cannot tell which failure holds"),
        (failed(F.TENANT_NOT_FOUND), True, "cannot tell which failure holds"),
        (failed(F.OTHER), True, "cannot tell which failure holds"),
        (
            GraphAuthObservation(ok=False, token_ok=True, graph_status=403, error="denied"),
            True,
            "Graph answers 403 with a valid token: the app lacks a permission; "
            "neither rotating nor reloading fixes that",
        ),
        (
            GraphAuthObservation(ok=False, token_ok=True, graph_status=503, error="down"),
            False,
            "Graph probe failed without an auth verdict",
        ),
        (
            GraphAuthObservation(ok=True, token_ok=True),
            False,
            "Graph probe gave no Key Vault version",
        ),
    ],
)
def test_failures_that_neither_rotate_nor_reload(
    obs: GraphAuthObservation, permanent: bool, says: str
) -> None:
    with pytest.raises(StepError) as e:
        diagnosis("portal", obs)
    assert e.value.permanent is permanent
    assert e.value.cause.startswith(says)
    assert "portal" in str(e.value)
    assert e.value.step == "diagnose"
