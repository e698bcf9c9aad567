"""The one classification of Azure replies (tenant.errors.classify) and the readers of
Azure's error bodies: the tables the workflow's single retry layer relies on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from tenant import errors
from tenant._azure import error_fields, map_http_error
from tenant.errors import ARM, GRAPH, KEYVAULT, ErrorKind, classify

# (service, status, code, inner code, message) -> (class, kind, transient)
TABLE: list[tuple[str, int, str | None, str | None, str, type[errors.TenantError], ErrorKind]] = [
    # Microsoft.Web's 409 on a transition: busy, not permanent.
    (
        ARM,
        409,
        "Conflict",
        None,
        "Cannot modify this site because another operation is in progress.",
        errors.Busy,
        ErrorKind.BUSY,
    ),
    # A 409 elsewhere (Key Vault: a deleted secret being recovered) is no busy site.
    (
        KEYVAULT,
        409,
        "Conflict",
        None,
        "Secret is being recovered",
        errors.TenantError,
        ErrorKind.INVALID,
    ),
    (
        GRAPH,
        409,
        "Request_MultipleObjectsWithSameKeyValue",
        None,
        "x",
        errors.TenantError,
        ErrorKind.INVALID,
    ),
    (
        ARM,
        429,
        "SubscriptionRequestsThrottled",
        None,
        "retry after '10' s",
        errors.Throttled,
        ErrorKind.THROTTLED,
    ),
    (
        ARM,
        429,
        "Conflict",
        None,
        "Cannot modify this site because another operation",
        errors.Throttled,
        ErrorKind.THROTTLED,
    ),
    (KEYVAULT, 429, "Throttled", None, "slow down", errors.Throttled, ErrorKind.THROTTLED),
    (
        KEYVAULT,
        400,
        "Throttled",
        None,
        "code alone says throttled",
        errors.Throttled,
        ErrorKind.THROTTLED,
    ),
    # Key Vault's disabled version: its own kind, not a missing permission.
    (
        KEYVAULT,
        403,
        "Forbidden",
        "SecretDisabled",
        "Operation get is not allowed on a disabled secret.",
        errors.SecretDisabled,
        ErrorKind.SECRET_DISABLED,
    ),
    (
        KEYVAULT,
        403,
        "Forbidden",
        "AccessDenied",
        "Caller is not authorized",
        errors.PermissionDenied,
        ErrorKind.PERMISSION_DENIED,
    ),
    (
        KEYVAULT,
        403,
        "Forbidden",
        None,
        "Caller is not authorized",
        errors.PermissionDenied,
        ErrorKind.PERMISSION_DENIED,
    ),
    # SecretDisabled is Key Vault's inner code; elsewhere a 403 stays a denial.
    (
        ARM,
        403,
        "AuthorizationFailed",
        "SecretDisabled",
        "no",
        errors.PermissionDenied,
        ErrorKind.PERMISSION_DENIED,
    ),
    (
        ARM,
        401,
        "ExpiredAuthenticationToken",
        None,
        "expired",
        errors.PermissionDenied,
        ErrorKind.PERMISSION_DENIED,
    ),
    (ARM, 404, "ResourceNotFound", None, "no site", errors.NotFound, ErrorKind.NOT_FOUND),
    (ARM, 408, None, None, "request timeout", errors.Unavailable, ErrorKind.UNAVAILABLE),
    (ARM, 500, "InternalServerError", None, "oops", errors.Unavailable, ErrorKind.UNAVAILABLE),
    (GRAPH, 504, "gatewayTimeout", None, "late", errors.Unavailable, ErrorKind.UNAVAILABLE),
    (ARM, 400, "BadRequest", None, "bad", errors.TenantError, ErrorKind.INVALID),
    # Graph's own refusals are read only for Graph.
    (
        GRAPH,
        400,
        "CredentialInvalidLifetimeAsPerAppPolicy",
        None,
        "policy",
        errors.PolicyViolation,
        ErrorKind.POLICY_VIOLATION,
    ),
    (
        GRAPH,
        400,
        "TooManyAppPasswords",
        None,
        "max 2",
        errors.TooManySecrets,
        ErrorKind.TOO_MANY_SECRETS,
    ),
    (ARM, 400, "TooManyAppPasswords", None, "max 2", errors.TenantError, ErrorKind.INVALID),
]


@pytest.mark.parametrize(("service", "status", "code", "inner", "message", "cls", "kind"), TABLE)
def test_classify_table(
    service: str,
    status: int,
    code: str | None,
    inner: str | None,
    message: str,
    cls: type[errors.TenantError],
    kind: ErrorKind,
) -> None:
    e = classify(
        service, "op on x", message, status=status, code=code, inner_code=inner, retry_after=5.0
    )
    assert type(e) is cls
    assert (e.service, e.operation, e.detail, e.retry_after) == (service, "op on x", message, 5.0)
    assert str(e).startswith(f"{service} op on x failed (HTTP {status}")
    said, _, fix = str(e).partition(" -- fix: ")
    assert said.endswith(f": {message}")
    assert fix == (e.fix or "")  # the advice (tenant.advice), when there is one
    assert e.kind is kind
    assert e.transient is kind.transient
    assert e.permanent is not kind.transient
    assert (e.status, e.code) == (status, code)
    assert "op on x" in str(e)


def test_only_throttled_busy_and_unavailable_are_transient() -> None:
    transient = {k for k in ErrorKind if k.transient}
    assert transient == {
        ErrorKind.THROTTLED,
        ErrorKind.BUSY,
        ErrorKind.UNAVAILABLE,
        ErrorKind.UNSETTLED,
    }


@pytest.mark.parametrize(
    ("status", "maybe_applied"),
    [(500, True), (503, True), (409, True), (429, True), (400, False), (403, False), (404, False)],
)
def test_a_write_may_have_applied_only_when_its_failure_is_transient(
    status: int, maybe_applied: bool
) -> None:
    e = classify(ARM, "write", "m", status=status, code=None, maybe_applied=True)
    assert e.maybe_applied is maybe_applied
    assert classify(ARM, "read", "m", status=status, code=None).maybe_applied is False


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        # Microsoft.Web's own PascalCase envelope.
        (
            {
                "Code": "Conflict",
                "Message": "Cannot modify this site because another operation is in progress.",
                "Target": None,
                "Details": [{"Message": "x"}],
                "Innererror": None,
            },
            ("Conflict", "Cannot modify this site because another operation is in progress.", None),
        ),
        # ARM's camelCase envelope.
        (
            {"error": {"code": "ResourceNotFound", "message": "gone"}},
            ("ResourceNotFound", "gone", None),
        ),
        # Key Vault's disabled version, both spellings of innererror seen in the wild.
        (
            {
                "error": {
                    "code": "Forbidden",
                    "message": "disabled",
                    "innererror": {"code": "SecretDisabled"},
                }
            },
            ("Forbidden", "disabled", "SecretDisabled"),
        ),
        (
            {
                "error": {
                    "code": "Forbidden",
                    "message": "disabled",
                    "innerError": {"code": "SecretDisabled"},
                }
            },
            ("Forbidden", "disabled", "SecretDisabled"),
        ),
        ({"unrelated": 1}, (None, None, None)),
        # fields of the wrong type are not read
        ({"error": {"code": 5, "message": ["m"], "innererror": {"code": 7}}}, (None, None, None)),
        ({"Code": "Conflict", "Innererror": "not an object"}, ("Conflict", None, None)),
        ([1, 2], (None, None, None)),
    ],
)
def test_error_fields_read_every_azure_error_shape(
    body: Any, fields: tuple[str | None, str | None, str | None]
) -> None:
    assert error_fields(json.dumps(body)) == fields


@pytest.mark.parametrize("text", ["<html>502 Bad Gateway</html>", "", None])
def test_error_fields_of_a_body_that_is_not_json_are_empty(text: str | None) -> None:
    assert error_fields(text) == (None, None, None)


@dataclass
class _Reply:
    """The few attributes azure-core's HttpResponseError reads from a response."""

    status_code: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = "Conflict"
    request: Any = None

    def text(self, encoding: str | None = None) -> str:
        return self.body


def test_a_pascalcase_409_from_microsoft_web_is_busy_with_retry_after() -> None:
    body = json.dumps(
        {
            "Code": "Conflict",
            "Message": "Cannot modify this site because another operation is in progress.",
        }
    )
    error = HttpResponseError(response=_Reply(409, body, {"Retry-After": "4"}))
    mapped = map_http_error(error, ARM, "start site rg/s", write=True)
    assert isinstance(mapped, errors.Busy)
    assert (mapped.code, mapped.retry_after, mapped.permanent) == ("Conflict", 4.0, False)
    assert "another operation is in progress" in str(mapped)
    assert mapped.maybe_applied


def test_key_vault_disabled_version_reply_is_secret_disabled() -> None:
    body = json.dumps(
        {
            "error": {
                "code": "Forbidden",
                "message": "Operation get is not allowed on a disabled secret.",
                "innererror": {"code": "SecretDisabled"},
            }
        }
    )
    mapped = map_http_error(
        HttpResponseError(response=_Reply(403, body, reason="Forbidden")), KEYVAULT, "get"
    )
    assert isinstance(mapped, errors.SecretDisabled)
    assert not isinstance(mapped, errors.PermissionDenied)
    assert mapped.kind is ErrorKind.SECRET_DISABLED


def test_a_lost_reply_may_have_applied_but_a_refused_connection_did_not() -> None:
    lost = map_http_error(ServiceResponseError("reset"), ARM, "restart", write=True)
    refused = map_http_error(ServiceRequestError("refused"), ARM, "restart", write=True)
    read = map_http_error(ServiceResponseError("reset"), ARM, "get")
    assert (lost.kind, lost.maybe_applied) == (ErrorKind.UNAVAILABLE, True)
    assert (refused.kind, refused.maybe_applied) == (ErrorKind.UNAVAILABLE, False)
    assert read.maybe_applied is False


def test_an_error_built_directly_claims_nothing_it_was_not_told() -> None:
    e = errors.TenantError("keyvault", "set tags of v1", "16 tags exceed the limit")
    assert (e.maybe_applied, e.permanent, e.transient) == (False, True, False)
    assert str(e) == "keyvault set tags of v1 failed: 16 tags exceed the limit"
    coded = errors.TenantError("graph", "op", "m", code="TooManyTags")
    assert str(coded) == "graph op failed (TooManyTags): m"
    both = errors.TenantError("arm", "op", "m", status=409, code="Conflict", permanent=False)
    assert str(both) == "arm op failed (HTTP 409 Conflict): m"
    assert both.transient
    assert errors.Unsettled("graph", "op", "m").transient
    assert errors.Unavailable("arm", "op", "m", permanent=True).permanent


def test_a_reply_without_a_json_body_keeps_the_http_reason() -> None:
    error = HttpResponseError(
        response=_Reply(502, "<html>Bad Gateway</html>", reason="Bad Gateway")
    )
    mapped = map_http_error(error, ARM, "get site rg/s")
    assert isinstance(mapped, errors.Unavailable)
    assert (mapped.code, mapped.detail) == (None, "Bad Gateway")


def test_not_found_without_a_response_is_still_404() -> None:
    mapped = map_http_error(ResourceNotFoundError(message="gone"), KEYVAULT, "get version v1")
    assert isinstance(mapped, errors.NotFound)
    assert mapped.status == 404


def test_an_unexpected_exception_from_an_sdk_is_unavailable_and_may_have_applied() -> None:
    mapped = map_http_error(TypeError("bad model"), KEYVAULT, "set new version of s", write=True)
    assert isinstance(mapped, errors.Unavailable)
    assert (mapped.service, mapped.operation) == (KEYVAULT, "set new version of s")
    assert mapped.detail == "unexpected error: TypeError"
    assert mapped.maybe_applied
    assert not map_http_error(TypeError("x"), KEYVAULT, "get").maybe_applied
    lost = map_http_error(ServiceResponseError("reset"), ARM, "restart", write=True)
    assert lost.detail == "connection failed: ServiceResponseError"


# (service, status, code, inner code, words the advice must hold): issue 15, point 1
ADVICE = [
    (GRAPH, 403, "Authorization_RequestDenied", None, "Application.ReadWrite.OwnedBy"),
    (KEYVAULT, 403, "Forbidden", "ForbiddenByRbac", "secret rotator"),
    (KEYVAULT, 403, "Forbidden", "AccessDenied", "access policies"),
    (KEYVAULT, 403, "Forbidden", "ForbiddenByFirewall", "firewall"),
    (KEYVAULT, 403, "Forbidden", "SecretDisabled", "disabled"),
    (ARM, 403, "AuthorizationFailed", None, "App Service reloader"),
    (ARM, 404, "ResourceGroupNotFound", None, "resource_group"),
]


@pytest.mark.parametrize(("service", "status", "code", "inner", "words"), ADVICE)
def test_a_refusal_an_operator_can_fix_says_how(
    service: str, status: int, code: str, inner: str | None, words: str
) -> None:
    e = classify(service, "op", "refused", status=status, code=code, inner_code=inner)
    assert e.fix is not None
    assert words in e.fix
    assert str(e).endswith(f" -- fix: {e.fix}")
    assert "/".join(c for c in (code, inner) if c) in str(e)


def test_an_unknown_refusal_gets_no_advice_but_keeps_its_code() -> None:
    e = classify(GRAPH, "op", "odd", status=400, code="Request_Odd")
    assert e.fix is None
    assert "Request_Odd" in str(e)
    assert "fix" not in str(e)


# -- the operator's own sign-in (issue 15, point 1) --------------------------------


def test_a_credential_for_another_tenant_says_which_tenant_the_resource_is_in() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    e = map_http_error(
        ClientAuthenticationError(
            message="The current credential is not configured to acquire tokens for tenant "
            "0b1f0e5c-1111-4222-8333-444455556666. To enable acquiring tokens ..."
        ),
        KEYVAULT,
        "get secret",
    )
    assert isinstance(e, errors.PermissionDenied)
    assert e.fix is not None
    assert "belongs to tenant 0b1f0e5c-1111-4222-8333-444455556666" in e.fix


def test_no_identity_at_all_points_at_the_managed_identity() -> None:
    from azure.identity import CredentialUnavailableError

    e = map_http_error(
        CredentialUnavailableError(message="DefaultAzureCredential failed to retrieve a token"),
        GRAPH,
        "get app",
    )
    assert e.fix is not None
    assert "managed identity" in e.fix
    assert "could not sign in: DefaultAzureCredential failed" in str(e)


def test_an_entra_refusal_in_the_text_keeps_its_code_and_message_not_the_trace() -> None:
    from azure.core.exceptions import ClientAuthenticationError

    text = (
        "Microsoft Entra ID error '(invalid_client) AADSTS7000222: The provided client secret "
        "keys for app 'x' are expired. Trace ID: t Correlation ID: c Timestamp: 2026-01-01'"
    )
    e = map_http_error(ClientAuthenticationError(message=text), ARM, "list references")
    assert isinstance(e, errors.SignInRefused)
    assert e.code == "AADSTS7000222"
    assert (
        e.detail
        == "the operator's sign-in was refused: The provided client secret keys for app 'x' "
        "are expired."
    )
    assert e.fix is not None
    assert "expired" in e.fix


@pytest.mark.parametrize(
    ("status", "kind"), [(503, ErrorKind.UNAVAILABLE), (429, ErrorKind.THROTTLED)]
)
def test_entra_down_or_throttling_stays_transient(status: int, kind: ErrorKind) -> None:
    from azure.core.exceptions import ClientAuthenticationError

    error = ClientAuthenticationError(
        message="Microsoft Entra ID error '(temporarily_unavailable) AADSTS90033: busy. "
        "Trace ID: t'",
        response=_Reply(status, json.dumps({"error": "temporarily_unavailable"})),
    )
    e = map_http_error(error, GRAPH, "get app")
    assert e.kind is kind
    assert e.transient
    assert e.code == "AADSTS90033"
