"""Secret expiry: every credential of the app, and the one the Key Vault value is.

The Key Vault value is matched to a credential in three steps: the ``secretwarden-key-id``
tag (written by a rotation) names it; otherwise Graph's ``hint`` (the first three
characters) narrows the candidates; a token request with the value settles whether it
is live at all (Entra answers AADSTS7000222 for an expired one, 7000215 for none).
With ``reads`` the Key Vault read and an acceptance are shared with the other probes
(exporters/reads.py).
"""

from __future__ import annotations

from datetime import datetime

from exporters._errors import describe
from exporters.observations import ExpiryObservation
from exporters.reads import TargetReads
from tenant.models import KEY_ID_TAG, PasswordCredential, SecretValue, TokenFailure
from tenant.ports import TargetClients


def candidates(
    credentials: tuple[PasswordCredential, ...], value: SecretValue, tags: dict[str, str]
) -> list[PasswordCredential]:
    """The credentials the value may belong to, most certain first."""
    tagged = tags.get(KEY_ID_TAG)
    if tagged is not None:
        named = [c for c in credentials if c.key_id == tagged]
        if named and (named[0].hint is None or named[0].hint == value.hint):
            return named
    return [c for c in credentials if c.hint is None or c.hint == value.hint]


def _pick(cands: list[PasswordCredential], now: datetime, live: bool) -> PasswordCredential | None:
    pool = [c for c in cands if c.expired(now) != live]
    if not pool:
        return None
    # Same hint, no tag: the token answer cannot say which one. The earliest end is
    # the safe guess: an alert comes too early rather than too late.
    return min(pool, key=lambda c: (c.end is None, c.end or now))


async def probe_expiry(
    clients: TargetClients, now: datetime, reads: TargetReads | None = None
) -> ExpiryObservation:
    try:
        app = await clients.app.get_app()
    except Exception as exc:
        return ExpiryObservation(ok=False, error=describe("read app registration", exc))
    creds = app.credentials
    try:
        if reads is None:
            current = await clients.vault.get_current()
        else:
            current = await reads.current_secret(clients.vault)
    except Exception as exc:
        return ExpiryObservation(
            ok=False, credentials=creds, error=describe("read Key Vault secret", exc)
        )
    if current.value is None:
        return ExpiryObservation(
            ok=False,
            credentials=creds,
            keyvault_version=current.version,
            error="read Key Vault secret: the current version has no value",
        )
    cands = candidates(creds, current.value, current.tags)
    try:
        if reads is None:
            outcome = await clients.entra.try_secret(app.client_id, current.value)
        else:
            outcome = await reads.try_secret(clients.entra, app.client_id, current)
    except Exception as exc:
        return ExpiryObservation(
            ok=False,
            credentials=creds,
            keyvault_version=current.version,
            error=describe("token request with the Key Vault value", exc),
        )
    if outcome.ok:
        in_use = _pick(cands, now, live=True)
        return ExpiryObservation(
            ok=True,
            credentials=creds,
            keyvault_version=current.version,
            in_use=in_use,
            keyvault_matches_credential=True,
            error=None
            if in_use
            else "Entra accepts the value but no listed credential has its hint",
        )
    if outcome.failure is TokenFailure.EXPIRED_SECRET:
        return ExpiryObservation(
            ok=True,
            credentials=creds,
            keyvault_version=current.version,
            in_use=_pick(cands, now, live=False) or (cands[0] if len(cands) == 1 else None),
            keyvault_matches_credential=False,
        )
    if outcome.secret_rejected or outcome.failure in (
        TokenFailure.INVALID_CLIENT,
        TokenFailure.APP_NOT_FOUND,
    ):
        return ExpiryObservation(
            ok=True,
            credentials=creds,
            keyvault_version=current.version,
            in_use=None,
            keyvault_matches_credential=False,
        )
    # Throttled or unavailable: the token endpoint could not settle it. Keep what the
    # tag or hint says so the expiry series survive, but report the probe as failed.
    guess = cands[0] if len(cands) == 1 else None
    code = f" AADSTS{outcome.aadsts}" if outcome.aadsts else ""
    return ExpiryObservation(
        ok=False,
        credentials=creds,
        keyvault_version=current.version,
        in_use=guess,
        keyvault_matches_credential=guess is not None and not guess.expired(now),
        error=(
            "token request with the Key Vault value: "
            f"{outcome.failure.value if outcome.failure else 'failed'}"
            f" (HTTP {outcome.status}{code})"
        ),
    )
