"""The safety decisions of remediation, as pure functions of persisted state.

Nothing here calls Azure, reads a clock or writes a journal: the caller gathers the
facts (from the journal and fresh reads) and these functions decide. Each is tested
by a table in tests/unit/test_decisions.py and is a target of ``make mutate``.

- :func:`is_due`: must the secret be rotated now?
- :func:`which_old_credential`: which credential does the Key Vault value belong to
  (the one a rotation may later remove), only when that is certain.
- :func:`removal`: may the old credential be deleted now, and on what proof?
- :func:`is_blocked`: must an automatic run wait (daily cap, backoff, circuit)?
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# -- is it due ---------------------------------------------------------------------------


def is_due(in_use_end: datetime | None, now: datetime, rotate_before: timedelta) -> bool:
    """Due when the in-use credential is unknown, never expires (an end date is
    unknown, so we cannot tell it is safe), or ends within ``rotate_before``."""
    if in_use_end is None:
        return True
    return in_use_end - now <= rotate_before


# -- which credential is the old one ----------------------------------------------------


class EntraVerdict(enum.Enum):
    """What Entra said when the Key Vault value was tried at the token endpoint."""

    VALID = "valid"  # a token was issued
    INVALID = "invalid"  # AADSTS7000215: no credential has this value
    EXPIRED = "expired"  # AADSTS7000222: a credential has it, and it expired
    UNKNOWN = "unknown"  # throttled, outage, another refusal: no verdict


def which_old_credential(
    has_value: bool,
    candidates: Sequence[str],
    tagged: str | None,
    entra: EntraVerdict,
) -> tuple[tuple[str, ...], str | None]:
    """The credential the Key Vault value belongs to, only when that is certain.

    ``candidates`` are the keyIds whose hint matches the value; ``tagged`` is the
    keyId the Key Vault version's tag names. A rotation removes what this returns, so
    anything short of certainty returns no keyId and the reason (leaving a stale
    secret breaks nothing; deleting someone else's would).
    """
    if not has_value:
        return (), "the current Key Vault version has no value"
    if entra is EntraVerdict.INVALID:
        return (), "Entra refuses the Key Vault value: it belongs to no credential"
    if len(candidates) > 1:
        return (), f"{len(candidates)} credentials share the Key Vault value's hint"
    if not candidates:
        return (), "no credential has the Key Vault value's hint"
    [only] = candidates
    if tagged == only or entra in (EntraVerdict.VALID, EntraVerdict.EXPIRED):
        # Tagged by a rotation (and the hint agrees), or the only credential with the
        # value's hint while Entra knows the value (valid or expired): a value Entra
        # knows belongs to a credential whose hint it carries, whatever a tag says.
        return (only,), None
    if tagged is not None:
        return (), (
            f"the Key Vault tag names {tagged} but the value's hint matches {only}, "
            f"and Entra could not check the value ({entra.value})"
        )
    return (), f"Entra could not check the Key Vault value ({entra.value})"


# -- may the old credential be deleted ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignInEvidence:
    """What the sign-in log says since the reload (None fields: nothing recorded)."""

    new_last: datetime | None  # the app's last successful sign-in with the new keyId
    old_last: datetime | None  # ... with any old keyId


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything that may prove the app no longer uses the old credential.

    ``signins`` None: the operator may not read the sign-in log. ``active_version``
    None: ARM reported no activeVersion (unknown, never proof). ``pinned_version``:
    the version a pinned reference names while ARM reports it Resolved (None when
    versionless or not resolved).
    """

    signins: SignInEvidence | None
    active_version: str | None
    pinned_version: str | None


class Verdict(enum.Enum):
    REMOVE = "remove"  # proof, or the overlap window is over
    WAIT = "wait"  # no proof yet: keep both credentials


@dataclass(frozen=True, slots=True)
class Removal:
    verdict: Verdict
    proof: str  # why it may go, or why it stays
    until: datetime | None = None  # WAIT: when the overlap window ends


def removal(
    *,
    new_version: str,
    reloaded_at: datetime,
    pending_since: datetime,
    now: datetime,
    overlap: timedelta,
    evidence: Evidence,
    quiet: timedelta = timedelta(hours=2),
) -> Removal:
    """May the old credential(s) be deleted now?

    Proof, strongest first: sign-in evidence (the app signed in with the new keyId at
    or after the reload, and with no old keyId since the reload); ARM's activeVersion
    equal to the new version; a pinned reference resolved on the new version. Without
    proof the old credential stays until ``pending_since + overlap`` (the platform
    re-fetches references at least that often). A sign-in with an old keyId after the
    reload and within ``quiet`` of now (an app signs in at least as often as its tokens
    expire, about hourly) is counter-proof: the credential is in use, so it stays even
    after the window and the reason says so.
    """
    until = pending_since + overlap
    s = evidence.signins
    if s is not None:
        old_since = s.old_last is not None and s.old_last >= reloaded_at
        if old_since and s.old_last is not None and s.old_last > now - quiet:
            return Removal(
                Verdict.WAIT,
                f"the sign-in log shows an old credential in use at {_ts(s.old_last)}, "
                "after the reload",
                until,
            )
        if not old_since and s.new_last is not None and s.new_last >= reloaded_at:
            return Removal(
                Verdict.REMOVE,
                f"sign-in evidence: the app signed in with the new credential at "
                f"{s.new_last:%Y-%m-%dT%H:%M:%SZ} and not with the old one since the reload",
            )
    if evidence.active_version is not None and evidence.active_version == new_version:
        return Removal(Verdict.REMOVE, f"ARM reports activeVersion {new_version}")
    if evidence.pinned_version is not None and evidence.pinned_version == new_version:
        return Removal(Verdict.REMOVE, f"the pinned reference resolved on version {new_version}")
    if now >= until:
        return Removal(
            Verdict.REMOVE,
            f"no proof, and the overlap window ({_span(overlap)}) ended at "
            f"{until:%Y-%m-%dT%H:%M:%SZ}: the platform has re-fetched the reference since",
        )
    why = (
        f"ARM reports activeVersion {evidence.active_version}"
        if evidence.active_version is not None
        else "no proof the app left the old credential (activeVersion unknown"
        + (", no sign-in with the new one yet)" if s is not None else ", sign-ins unreadable)")
    )
    return Removal(Verdict.WAIT, f"{why}; kept until {until:%Y-%m-%dT%H:%M:%SZ}", until)


def _ts(t: datetime | None) -> str:
    return "never" if t is None else f"{t:%Y-%m-%dT%H:%M:%SZ}"


def _span(d: timedelta) -> str:
    secs = int(d.total_seconds())
    if secs % 3600 == 0:
        return f"{secs // 3600} h"
    return f"{secs} s"


# -- is it blocked -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blocked:
    reason: str  # one of metrics.BLOCK_REASONS
    until: datetime | None
    detail: str


@dataclass(frozen=True, slots=True)
class GuardState:
    """A target's guard state, as folded from its journal."""

    rotations: tuple[datetime, ...] = ()
    consecutive_failures: int = 0
    last_failure: datetime | None = None
    circuit_opened: datetime | None = None


def backoff_delay(failures: int, initial: timedelta, cap: timedelta) -> timedelta:
    """``initial`` doubled per failure after the first, capped at ``cap``.

    Doubled step by step and stopped at the cap: ``initial * 2 ** (failures - 1)``
    overflowed timedelta after ~40 failures in a row (a month of daily failures once
    the circuit resets; found by bench/soak.py), and every guard decision raised.
    """
    delay = initial
    for _ in range(failures - 1):
        if delay >= cap:
            break
        delay *= 2
    return min(delay, cap)


def is_blocked(
    state: GuardState,
    action: str,
    now: datetime,
    *,
    max_rotations_per_day: int,
    backoff_initial: timedelta,
    backoff_max: timedelta,
    circuit_reset: timedelta,
) -> Blocked | None:
    """Why an automatic run of ``action`` must not start now, or None."""
    if state.circuit_opened is not None:
        until = state.circuit_opened + circuit_reset
        if now < until:
            return Blocked(
                "circuit_open",
                until,
                f"{state.consecutive_failures} failed remediation(s) in a row; "
                f"automatic remediation stopped until {until.isoformat()} "
                "or a successful manual run",
            )
    if state.last_failure is not None and state.consecutive_failures > 0:
        until = state.last_failure + backoff_delay(
            state.consecutive_failures, backoff_initial, backoff_max
        )
        if now < until:
            return Blocked(
                "backoff",
                until,
                f"backing off after {state.consecutive_failures} failure(s) "
                f"until {until.isoformat()}",
            )
    if action == "rotate":
        window = [t for t in state.rotations if t > now - timedelta(days=1)]
        if len(window) >= max_rotations_per_day:
            # A cap of 0 (automatic rotation off) has no window to wait out.
            cap_until = min(window) + timedelta(days=1) if window else None
            return Blocked(
                "rotation_cap",
                cap_until,
                f"{len(window)} rotation(s) in the last 24 h "
                f"(cap {max_rotations_per_day})"
                + (
                    f" until {cap_until.isoformat()}"
                    if cap_until
                    else ": automatic rotation is off"
                ),
            )
    return None
