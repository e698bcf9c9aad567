"""How tenant/ classifies what the SDKs raise (the shapes are taken from the
reference wire captures; the integration tests check the same against the sandbox)."""

from __future__ import annotations

import httpx
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
)

from tenant import errors
from tenant._azure import retry_after_seconds
from tenant.appservice import _vault_name
from tenant.entra import classify_token_error
from tenant.graph import map_odata_error
from tenant.models import TokenFailure


@pytest.mark.parametrize(
    ("text", "failure", "aadsts", "error"),
    [
        (
            "Microsoft Entra ID error '(invalid_client) AADSTS7000215: Invalid client secret "
            "provided. Ensure the secret being sent in the request is the client secret value'",
            TokenFailure.INVALID_SECRET,
            7000215,
            "invalid_client",
        ),
        (
            "Microsoft Entra ID error '(invalid_client) AADSTS7000222: The provided client "
            "secret keys for app 'x' are expired.'",
            TokenFailure.EXPIRED_SECRET,
            7000222,
            "invalid_client",
        ),
        (
            "Microsoft Entra ID error '(unauthorized_client) AADSTS700016: Application with "
            "identifier 'x' was not found in the directory 'y'.'",
            TokenFailure.APP_NOT_FOUND,
            700016,
            "unauthorized_client",
        ),
        (
            "Microsoft Entra ID error '(invalid_request) AADSTS90002: Tenant 'x' not found.'",
            TokenFailure.TENANT_NOT_FOUND,
            90002,
            "invalid_request",
        ),
        (
            "Microsoft Entra ID error '(invalid_client) AADSTS7000999: something new'",
            TokenFailure.INVALID_CLIENT,
            7000999,
            "invalid_client",
        ),
    ],
)
def test_token_errors_are_classified_by_code_from_the_exception_text(
    text: str, failure: TokenFailure, aadsts: int, error: str
) -> None:
    outcome = classify_token_error(ClientAuthenticationError(message=text))
    assert (outcome.ok, outcome.failure, outcome.aadsts, outcome.error) == (
        False,
        failure,
        aadsts,
        error,
    )


def test_a_connection_failure_at_the_token_endpoint_is_unavailable() -> None:
    outcome = classify_token_error(ServiceRequestError("Cannot connect to host"))
    assert outcome.failure is TokenFailure.UNAVAILABLE
    assert not outcome.secret_rejected


def _odata(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """A Graph error reply as it comes over the wire (the shape of the reference
    captures: ``error.code``, ``error.message``, ``error.innerError``)."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": "2026-01-15T09:30:00",
                "request-id": "6f1c0a52-0000-4000-8000-000000000001",
                "client-request-id": "6f1c0a52-0000-4000-8000-000000000001",
            },
        }
    }
    return httpx.Response(
        status,
        json=body,
        headers={"request-id": "6f1c0a52-0000-4000-8000-000000000001", **(headers or {})},
    )


@pytest.mark.parametrize(
    ("status", "code", "message", "kind", "permanent"),
    [
        (404, "Request_ResourceNotFound", "Resource 'x' does not exist", errors.NotFound, True),
        (
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges",
            errors.PermissionDenied,
            True,
        ),
        (
            400,
            "CredentialInvalidLifetimeAsPerAppPolicy",
            "Credential lifetime exceeds the max value allowed as per assigned policy 'p'.",
            errors.PolicyViolation,
            True,
        ),
        (
            400,
            "Request_BadRequest",
            "The number of password credentials exceeds the maximum allowed limit of 2.",
            errors.TooManySecrets,
            True,
        ),
        (
            400,
            "TooManyAppPasswords",
            "Not allowed to add 3 passwords. You can only add a maximum of 2 passwords.",
            errors.TooManySecrets,
            True,
        ),
        # "Already gone" is decided by a fresh read in remove_password, never by the
        # wording of a 400: the classification alone leaves it a plain refusal.
        (
            400,
            "Request_BadRequest",
            "No password credential found with keyId 'k'.",
            errors.TenantError,
            True,
        ),
        (503, "serviceNotAvailable", "try later", errors.Unavailable, False),
        (400, "Request_BadRequest", "Invalid value for endDateTime", errors.TenantError, True),
    ],
)
def test_graph_errors_are_classified_by_status_and_code(
    status: int, code: str, message: str, kind: type[errors.TenantError], permanent: bool
) -> None:
    mapped = map_odata_error(_odata(status, code, message), "addPassword on app a1")
    assert type(mapped) is kind
    assert mapped.permanent is permanent
    assert mapped.code == code
    assert mapped.status == status
    assert "addPassword on app a1" in str(mapped)
    assert code in str(mapped)


def test_graph_429_carries_retry_after_from_the_response_headers() -> None:
    mapped = map_odata_error(
        _odata(429, "TooManyRequests", "slow down", {"Retry-After": "7"}), "get app a1"
    )
    assert isinstance(mapped, errors.Throttled)
    assert mapped.retry_after == 7.0
    assert not mapped.permanent


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("10", 10.0), (" 2.5 ", 2.5), ("-3", 0.0), (None, None), ("Wed, 21 Oct", None)],
)
def test_retry_after_parses_seconds_only(raw: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(raw) == seconds


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://MyVault.vault.azure.net/", "myvault"),
        ("https://127.0.0.1:8443/", None),
        ("https://localhost:8443/", None),
        ("https://kv1.vault.usgovcloudapi.net", "kv1"),
    ],
)
def test_vault_name_is_the_first_host_label(url: str, name: str | None) -> None:
    assert _vault_name(url) == name


@pytest.mark.parametrize(
    ("error", "maybe_applied"),
    [
        # never reached Graph: nothing happened
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("no answer to connect"), False),
        # reached Graph, reply lost: a write may have happened
        (httpx.ReadTimeout("no reply"), True),
        (httpx.RemoteProtocolError("dropped"), True),
    ],
)
def test_a_graph_transport_failure_of_a_write_may_have_applied_only_once_sent(
    error: Exception, maybe_applied: bool
) -> None:
    mapped = map_odata_error(error, "addPassword on app a1", write=True)
    assert isinstance(mapped, errors.Unavailable)
    assert mapped.maybe_applied is maybe_applied
    assert (mapped.service, mapped.operation) == ("graph", "addPassword on app a1")
    assert type(error).__name__ in str(mapped)
    assert map_odata_error(error, "get app a1").maybe_applied is False


def test_a_graph_reply_without_an_error_body_is_classified_by_status() -> None:
    mapped = map_odata_error(httpx.Response(503, text="<html>busy</html>"), "get app a1")
    assert isinstance(mapped, errors.Unavailable)
    assert (mapped.status, mapped.code) == (503, None)
    assert "Service Unavailable" in str(mapped)


def test_a_graph_5xx_of_a_write_may_have_applied_and_a_refusal_did_not() -> None:
    lost = map_odata_error(_odata(504, "GatewayTimeout", "late"), "addPassword", write=True)
    refused = map_odata_error(_odata(403, "Authorization_RequestDenied", "no"), "x", write=True)
    assert (lost.maybe_applied, refused.maybe_applied) == (True, False)


def test_a_token_failure_on_the_way_to_graph_is_classified_as_graph() -> None:
    mapped = map_odata_error(ServiceRequestError("cannot reach login"), "get app a1")
    assert isinstance(mapped, errors.Unavailable)
    assert (mapped.service, mapped.operation) == ("graph", "get app a1")
