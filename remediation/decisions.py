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


# -- is a credential gone ----------------------------------------------------------------


def gone_is_certain(added_at: datetime | None, now: datetime, read_lag: timedelta) -> bool:
    """Graph refused a removePassword and a fresh read does not list the keyId: gone,
    unless the keyId was added less than ``read_lag`` ago (Graph answers a removal of
    so young a keyId as for a missing one, and its reads do not show it yet)."""
    return added_at is None or now >= added_at + read_lag


# -- which credential frees a slot -------------------------------------------------------


def slot_to_free(
    credentials: Sequence[tuple[str, datetime | None]],
    in_use: Sequence[str],
    now: datetime,
    skew: timedelta,
) -> str | None:
    """The app holds as many secrets as it may (two for apps that allow personal
    accounts): which (keyId, end) to remove for the new one. Only a credential expired
    by more than the clock ``skew`` (it signs nobody in), one nobody uses first; an
    expired one in use is as dead (the app already fails with it). None: none may go."""
    dead = [k for k, end in credentials if end is not None and end + skew < now]
    used = {k.lower() for k in in_use}
    spare = [k for k in dead if k.lower() not in used]
    pick = spare or dead
    return pick[0] if pick else None


# -- may the old credential be deleted ---------------------------------------------------
#
# What is proven is the app's *running processes*, not the platform's cache: on App
# Service a Key Vault reference becomes an environment variable when a worker process
# starts, and a running process keeps the value it started with; activeVersion reports
# the cache at best. A worker started after the cache held the new version holds it.


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One record of the sign-in log, as the proof needs it."""

    created: datetime
    key_id: str | None
    succeeded: bool
    ip_address: str | None
    own: bool  # the daemon's own token request (its client-request-id scheme)


@dataclass(frozen=True, slots=True)
class SignInEvidence:
    """The app's own sign-ins after ``after`` (the last worker start), and how far the
    log is proven caught up. None fields: nothing recorded (or not known)."""

    after: datetime
    new_first: datetime | None  # the app's first success with the new keyId after ``after``
    old_last: datetime | None  # anyone's (not the daemon's) last success with an old keyId
    caught_up_to: datetime | None  # every record created up to here has appeared


def app_sign_ins(
    records: Sequence[LogRecord],
    *,
    new_key_id: str,
    old_key_ids: Sequence[str],
    app_addresses: frozenset[str],
    after: datetime,
    now: datetime,
    reorder: timedelta,
    delay_bound: timedelta,
) -> SignInEvidence:
    """Judge the sign-in log: which sign-ins are the app's, and how far it is complete.

    The app's own: a success from one of ``app_addresses`` (the site's outbound
    addresses, or the operator's NAT list), never the daemon's own (``own``). Counter-
    proof is wider: an old keyId used by anyone but the daemon counts (leaving a
    credential in place breaks nothing). Caught up: a daemon sign-in created at ``M``
    has appeared, so every record created before ``M - reorder`` has (records arrive
    out of order by up to ``reorder``), or ``delay_bound`` has passed since. Duplicates
    change neither a first nor a last time.
    """
    new = new_key_id.lower()
    olds = {k.lower() for k in old_key_ids}
    new_first: datetime | None = None
    old_last: datetime | None = None
    marker: datetime | None = None
    for r in records:
        if r.own:
            marker = r.created if marker is None else max(marker, r.created)
            continue
        if not r.succeeded or r.created <= after or r.key_id is None:
            continue
        key = r.key_id.lower()
        if key in olds:
            old_last = r.created if old_last is None else max(old_last, r.created)
        elif key == new and r.ip_address in app_addresses:
            new_first = r.created if new_first is None else min(new_first, r.created)
    bounds = [now - delay_bound]
    if marker is not None:
        bounds.append(marker - reorder)
    return SignInEvidence(after, new_first, old_last, max(bounds))


def workers_started_after(
    instances: Sequence[Sequence[datetime | None]] | None, t: datetime | None, skew: timedelta
) -> bool | None:
    """Did every instance's every worker process start after ``t`` (by more than the
    clock ``skew``)? None when that cannot be told: no per-instance view, no time,
    no instance, an instance with no worker, or a start time not reported."""
    if instances is None or t is None or not instances:
        return None
    starts = [s for i in instances for s in i]
    if any(not i for i in instances) or any(s is None for s in starts):
        return None
    return all(s is not None and s > t + skew for s in starts)


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything that may prove the app's processes no longer use the old credential.

    ``signins`` None: the sign-in log is not readable. ``workers``: every instance's
    worker start times (None: the per-instance view is not readable).
    ``active_version`` None: ARM reported none (unknown, never proof). ``pinned_version``:
    the version a pinned reference names while ARM reports it Resolved. ``old_ends``:
    the old credentials' end dates (None: unknown).
    """

    signins: SignInEvidence | None
    active_version: str | None
    pinned_version: str | None
    workers: tuple[tuple[datetime | None, ...], ...] | None = None
    old_ends: tuple[datetime | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What the reload ladder established (journaled).

    ``cache_at``: from when the platform's cache is known to hold the new version (the
    first activeVersion equal to it, or the start of a configuration change, which
    re-fetches before it recycles the workers); None: never known. ``recycled_at``: the
    start of the last recycle of every worker that began at or after ``cache_at`` (a
    configuration change or pin, a Restart or Stop+Start after ``cache_at``); None: no
    such recycle.
    """

    cache_at: datetime | None
    recycled_at: datetime | None
    # The latest worker start ARM listed while the cache held the new version (or just
    # before a configuration change), in ARM's own clock: a later start is a process
    # that started afterwards, whatever the daemon's clock says. None: not listed.
    mark: datetime | None = None


class Verdict(enum.Enum):
    REMOVE = "remove"  # proof, or the overlap window is over
    WAIT = "wait"  # no proof yet: keep both credentials


@dataclass(frozen=True, slots=True)
class Removal:
    verdict: Verdict
    proof: str  # why it may go, or why it stays
    until: datetime | None = None  # WAIT: when the overlap window ends
    # WAIT: the window is over but a worker may predate the cache: recycle the workers
    # (a configuration change) and decide again.
    recycle: bool = False


def removal(
    *,
    new_version: str,
    reloaded: Reloaded,
    pending_since: datetime,
    now: datetime,
    overlap: timedelta,
    evidence: Evidence,
    skew: timedelta = timedelta(minutes=5),
    recycle_allowance: timedelta = timedelta(minutes=10),
    quiet: timedelta = timedelta(hours=2),
) -> Removal:
    """May the old credential(s) be deleted now?

    - An old credential expired (by more than ``skew``) signs nobody in: remove it.
    - Counter-proof first: an old keyId signed in (not by the daemon) after the last
      worker start and within ``quiet`` of now: it is in use; it stays.
    - (b) every instance's worker processes started after the cache held the new
      version (ARM's per-instance view), or (c) the same after a pinned reference
      resolved on it: remove.
    - (a) the app's own sign-ins (see :func:`app_sign_ins`) show the new keyId after
      the last worker start and no old keyId since, in a log caught up past it; never
      the only proof while a worker may have started before the cache held the new
      version, so only after a recycle that began once the cache held it
      (``reloaded.recycled_at``), ``recycle_allowance`` for every instance to restart.
    - Otherwise the old credential waits for the overlap window, which itself ends only
      once no worker may predate the cache; past it, the verdict asks for a recycle.
    """
    until = pending_since + overlap
    ends = evidence.old_ends
    if ends and all(e is not None and e + skew < now for e in ends):
        last = max(e for e in ends if e is not None)
        return Removal(
            Verdict.REMOVE,
            f"the old credential expired at {_ts(last)}: it can sign nobody in",
        )
    after_cache = (
        workers_started_after(evidence.workers, reloaded.mark, timedelta(0))
        if reloaded.mark is not None
        else workers_started_after(evidence.workers, reloaded.cache_at, skew)
    )
    s = evidence.signins
    # Past the window the daemon recycles the workers once (the cache has been
    # re-fetched since, and a configuration change re-fetches again): never in a loop,
    # which would restart the site over and over for a worker that never comes back.
    recycle_due = now >= until and reloaded.recycled_at is None and after_cache is not True
    if s is not None and s.old_last is not None and s.old_last > now - quiet:
        # In use: it stays (past the window too). Workers that may predate the cache
        # are recycled once, which moves them off it; the next look decides again.
        return Removal(
            Verdict.WAIT,
            f"the sign-in log shows an old credential in use at {_ts(s.old_last)}, "
            "after the last worker start" + ("; recycle the workers" if recycle_due else ""),
            until,
            recycle=recycle_due,
        )
    if after_cache:
        n = sum(len(i) for i in evidence.workers or ())
        what = (
            f"the pinned reference resolved on version {new_version}"
            if evidence.pinned_version == new_version
            else f"the cache held version {new_version} at {_ts(reloaded.cache_at)}"
        )
        return Removal(
            Verdict.REMOVE,
            f"every worker process ({n} on {len(evidence.workers or ())} instance(s)) "
            f"started after {what}",
        )
    # No worker may predate the cache: the per-instance view says so (handled above), or
    # it cannot be read and every worker was recycled after the cache held the version.
    recycled = reloaded.recycled_at if evidence.workers is None else None
    recycled_by = recycled + recycle_allowance if recycled is not None else None
    if s is not None and recycled is not None and recycled_by is not None:
        point = max(recycled_by, s.after)
        if (
            s.new_first is not None
            and s.old_last is None
            and s.new_first > recycled
            and s.caught_up_to is not None
            and s.caught_up_to >= point
        ):
            return Removal(
                Verdict.REMOVE,
                f"sign-in evidence: the app signed in with the new credential at "
                f"{_ts(s.new_first)} and not with the old one since the workers were "
                f"recycled at {_ts(reloaded.recycled_at)} (log caught up to "
                f"{_ts(s.caught_up_to)})",
            )
    if now >= until:
        if recycled_by is not None and now >= recycled_by:
            return Removal(
                Verdict.REMOVE,
                f"no proof, and the overlap window ({_span(overlap)}) ended at {_ts(until)}; "
                f"every worker was recycled at {_ts(reloaded.recycled_at)}, after the cache "
                "held the new version",
            )
        if recycled_by is not None:  # a recycle is under way: let it finish
            return Removal(
                Verdict.WAIT,
                f"the overlap window ({_span(overlap)}) ended at {_ts(until)}; waiting "
                f"for the recycle begun at {_ts(recycled)} to finish",
                until,
            )
        return Removal(
            Verdict.WAIT,
            f"the overlap window ({_span(overlap)}) ended at {_ts(until)}, but a worker "
            "may have started before the cache held the new version: "
            + (
                "recycle the workers"
                if recycle_due
                else f"it did not restart after the recycle at {_ts(reloaded.recycled_at)}"
            ),
            until,
            recycle=recycle_due,
        )
    if after_cache is False:
        why = (
            f"a worker process started at or before {_ts(reloaded.cache_at)}, "
            "when the cache first held the new version"
        )
    elif reloaded.cache_at is None:
        why = "the platform's cache is not known to hold the new version"
    elif evidence.workers is None and reloaded.recycled_at is None:
        why = "no recycle of the workers after the cache held the new version"
    elif s is None:
        why = "the per-instance view proves nothing and the sign-in log is unreadable"
    else:
        why = "no sign-in of the app with the new credential in a caught-up log yet"
    return Removal(Verdict.WAIT, f"{why}; kept until {_ts(until)}", until)


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
