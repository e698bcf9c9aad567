"""Errors from Azure, classified so the layers above can act without reading text.

Every error names the service and the operation, carries Azure's own error code and
HTTP status, and says whether retrying can help. A secret value never appears in one:
messages are built from codes, statuses, names and Azure's own error messages only.

One function, :func:`classify`, turns (service, status, code, inner code) into an
error of one :class:`ErrorKind`; every client in tenant/ goes through it.

Who retries (one retry layer, never two stacked):

- **Reads** (GETs, lists) are retried inside the SDK, as :class:`~tenant.endpoints.RetryPolicy`
  says (azure-core and msgraph's middleware honour Retry-After). When one still fails,
  the caller must not retry it again in a loop of its own.
- **Writes and transitions** (addPassword, removePassword, the Key Vault write and tag
  updates, the app settings PUT, the reference refresh, restart, stop, start) go out
  exactly once: the SDK's retry is switched off for that request. A write whose reply
  was lost may have taken effect (``maybe_applied``); a silent SDK retry would repeat
  it (a second credential nobody holds, a second Key Vault version). The caller's one
  retry layer decides, using ``kind.transient`` and ``retry_after``.
"""

from __future__ import annotations

import enum
import re

from tenant.advice import service_fix


class ErrorKind(enum.Enum):
    """What the caller can do about an error. ``transient`` kinds may succeed later."""

    THROTTLED = "throttled"  # 429 (or Throttled/TooManyRequests): wait Retry-After
    BUSY = "busy"  # Microsoft.Web 409 "another operation is in progress": wait and retry
    UNAVAILABLE = "unavailable"  # 5xx, 408, a timeout, a connection failure
    UNSETTLED = "unsettled"  # Graph refused a removal, yet its (lagging) reads still list it
    NOT_FOUND = "not_found"  # the app, secret, version, site or setting does not exist
    PERMISSION_DENIED = "permission_denied"  # 401/403: our identity may not do this
    SECRET_DISABLED = "secret_disabled"  # Key Vault 403 with innererror SecretDisabled
    POLICY_VIOLATION = "policy_violation"  # an app management policy refused it
    TOO_MANY_SECRETS = "too_many_secrets"  # the app holds as many secrets as it may
    INVALID = "invalid"  # any other refusal (a 400, a 409 outside Microsoft.Web, ...)

    @property
    def transient(self) -> bool:
        return self in (
            ErrorKind.THROTTLED,
            ErrorKind.BUSY,
            ErrorKind.UNAVAILABLE,
            ErrorKind.UNSETTLED,
        )


class TenantError(Exception):
    """An Azure call failed.

    ``kind`` says what it is (:class:`ErrorKind`). ``permanent`` is True when repeating
    the same call cannot succeed without a change (a policy violation, a missing
    permission, a missing resource); False for throttling, a busy site, 5xx and
    connection trouble. ``retry_after`` is the server's Retry-After in seconds when it
    sent one. ``maybe_applied`` is True for a write whose failure leaves its effect
    unknown (the reply was lost, or a transient error came back): read before acting.
    """

    kind = ErrorKind.INVALID
    default_permanent = True

    def __init__(
        self,
        service: str,
        operation: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        permanent: bool | None = None,
        maybe_applied: bool = False,
        inner_code: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.service = service
        self.operation = operation
        self.status = status
        self.code = code
        self.inner_code = inner_code
        self.fix = fix  # one line saying what to change (tenant.advice), when known
        self.retry_after = retry_after
        self.permanent = self.default_permanent if permanent is None else permanent
        self.maybe_applied = maybe_applied
        self.detail = message
        codes = "/".join(c for c in (code, inner_code) if c)
        what = " ".join(p for p in (f"HTTP {status}" if status else "", codes) if p)
        head = f"{service} {operation} failed" + (f" ({what})" if what else "")
        # Azure's messages carry line breaks (Key Vault's, ARM's): one line for a table row.
        text = " ".join(message.split())
        super().__init__(f"{head}: {text}" + (f" -- fix: {fix}" if fix else ""))

    @property
    def transient(self) -> bool:
        """True when retrying later may succeed (the caller's retry layer acts on it)."""
        return not self.permanent


class NotFound(TenantError):
    """The app, the secret, the site or the credential does not exist."""

    kind = ErrorKind.NOT_FOUND


class Throttled(TenantError):
    """HTTP 429 (or Key Vault's Throttled). ``retry_after`` says how long to wait."""

    kind = ErrorKind.THROTTLED
    default_permanent = False


class Busy(TenantError):
    """Microsoft.Web answered 409: another operation on the site is in progress.

    Transitions (restart, stop, start, a configuration change) overlap badly on App
    Service; the next one is refused for a while. Retry after ``retry_after`` or a
    backoff; it is not a permanent refusal.
    """

    kind = ErrorKind.BUSY
    default_permanent = False


class Unavailable(TenantError):
    """5xx, a timeout or a connection failure: worth retrying later."""

    kind = ErrorKind.UNAVAILABLE
    default_permanent = False


class Unsettled(TenantError):
    """Graph refused removePassword, but a fresh read still lists the credential.

    Graph's reads lag its writes: after a removal whose reply was lost, the retry is
    refused (the credential is gone) while reads keep showing it for a while. Which side
    is right is known only once the reads catch up, so this is transient: retry after
    a wait, and the fresh read then decides (already gone, or the refusal stands).
    """

    kind = ErrorKind.UNSETTLED
    default_permanent = False


class PermissionDenied(TenantError):
    """401/403: the daemon's own identity may not do this. Not fixed by retrying."""

    kind = ErrorKind.PERMISSION_DENIED


class SignInRefused(PermissionDenied):
    """Entra refused the operator's own sign-in (``code`` is ``AADSTS<n>``), so no
    service was asked at all: every call fails the same way until the identity is fixed."""


class SecretDisabled(TenantError):
    """Key Vault refused to read a disabled version (403 Forbidden, innererror
    SecretDisabled). Our permissions are fine: that version's value cannot be read
    until someone enables it again."""

    kind = ErrorKind.SECRET_DISABLED


class PolicyViolation(TenantError):
    """An app management policy refused the request (e.g. the secret lifetime)."""

    kind = ErrorKind.POLICY_VIOLATION


class TooManySecrets(PolicyViolation):
    """The app already holds as many client secrets as it may."""

    kind = ErrorKind.TOO_MANY_SECRETS


# Graph has no dedicated code for "this app holds too many secrets"; it answers 400
# with a message naming the limit. Match the message as a fallback to the code.
_TOO_MANY_CODES = frozenset({"TooManyAppPasswords", "TooManyPasswordCredentials"})
_TOO_MANY_TEXT = re.compile(
    r"(too many|maximum|max(imum)? (number|limit)|exceed\w*).{0,60}"
    r"(password|secret|credential)|(password|secret|credential)\w*.{0,60}"
    r"(limit|maximum|too many)",
    re.IGNORECASE,
)
_THROTTLED_CODES = frozenset({"Throttled", "TooManyRequests"})

# The services, as tenant/ names them in errors.
ARM = "arm"
GRAPH = "graph"
KEYVAULT = "keyvault"


def classify(
    service: str,
    operation: str,
    message: str,
    *,
    status: int | None,
    code: str | None,
    inner_code: str | None = None,
    retry_after: float | None = None,
    maybe_applied: bool = False,
) -> TenantError:
    """The one classification of an Azure reply, for every service.

    In order: throttling (429, or a Throttled/TooManyRequests code); Microsoft.Web's
    409 (``arm``: a busy site, transient); 404; Key Vault's disabled version (403 with
    inner code SecretDisabled); other 401/403; 408 and 5xx; Graph's policy and
    too-many-secrets refusals; anything else is a permanent :class:`TenantError`.
    ``maybe_applied`` is kept only on transient errors: a refusal took no effect.
    """
    cls: type[TenantError]
    if status == 429 or code in _THROTTLED_CODES:
        cls = Throttled
    elif status == 409 and service == ARM:
        cls = Busy
    elif status == 404:
        cls = NotFound
    elif status == 403 and service == KEYVAULT and inner_code == "SecretDisabled":
        cls = SecretDisabled
    elif status in (401, 403):
        cls = PermissionDenied
    elif status is not None and (status >= 500 or status == 408):
        cls = Unavailable
    elif service == GRAPH and code in _TOO_MANY_CODES:
        cls = TooManySecrets
    elif service == GRAPH and code is not None and "Policy" in code:
        cls = PolicyViolation
    elif service == GRAPH and status == 400 and _TOO_MANY_TEXT.search(message):
        cls = TooManySecrets
    else:
        cls = TenantError
    return cls(
        service,
        operation,
        message,
        status=status,
        code=code,
        retry_after=retry_after,
        maybe_applied=maybe_applied and cls.kind.transient,
        inner_code=inner_code,
        fix=service_fix(service, status, code, inner_code),
    )
