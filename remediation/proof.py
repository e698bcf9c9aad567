"""Proof that the app's running processes no longer use a credential: gathered by
fresh reads, decided by the pure :func:`remediation.decisions.removal`.

Evidence: ARM's per-instance view (every worker process's start time, against the
moment the cache held the new version); the sign-in log (Graph beta
``auditLogs/signIns``, when the operator may read it), judged by
:func:`remediation.decisions.app_sign_ins`: only the app's own sign-ins (from the
site's outbound addresses or ``app_outbound_addresses``) count, never the daemon's
(its ``client-request-id`` scheme, :mod:`tenant.requestid`), whose records show how far
the log has caught up; the old credentials' end dates; activeVersion and a pinned
reference for the reason text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import structlog

from remediation.decisions import (
    Evidence,
    LogRecord,
    Reloaded,
    Removal,
    SignInEvidence,
    app_sign_ins,
    removal,
)
from remediation.journal import RunRecord
from remediation.results import PendingRemoval
from remediation.settings import WorkflowSettings
from tenant.errors import TenantError
from tenant.models import SignInLog
from tenant.ports import TargetClients
from tenant.requestid import is_own

log = structlog.get_logger("secretwarden.remediation")


@dataclass(frozen=True, slots=True)
class Gathered:
    evidence: Evidence
    notes: tuple[str, ...]  # what could not be read, and why (said in status/check)


def reloaded_of(p: PendingRemoval) -> Reloaded:
    return Reloaded(_time(p.cache_at), _time(p.recycled_at), _time(p.cache_mark))


async def gather(
    clients: TargetClients,
    *,
    app_id: str,
    keep_key_id: str,
    keep_version: str,
    old_key_ids: Sequence[str],
    since: datetime,
    now: datetime,
    reloaded: Reloaded,
    settings: WorkflowSettings,
) -> Gathered:
    """Read what may prove the app's processes are on ``keep_version``/``keep_key_id``.

    ``since``: when the reload began (the sign-in log is judged after the last worker
    start, or after the last recycle when the per-instance view cannot be read)."""
    notes: list[str] = []
    workers: tuple[tuple[datetime | None, ...], ...] | None = None
    try:
        instances = await clients.site.instances()
    except TenantError as e:
        notes.append(f"per-instance view not read: {e}")
    else:
        workers = tuple(tuple(p.started for p in i.workers) for i in instances)
    starts = [t for i in workers or () for t in i if t is not None]
    after = max(starts) if starts else (reloaded.recycled_at or since)
    old_ends: tuple[datetime | None, ...] = ()
    try:
        creds = {c.key_id.lower(): c for c in await clients.app.list_credentials()}
    except TenantError as e:
        notes.append(f"credentials not read: {e}")
    else:
        old_ends = tuple(
            c.end if (c := creds.get(k.lower())) is not None else None for k in old_key_ids
        )
    signins: SignInEvidence | None = None
    if settings.use_sign_ins:
        signins = await _sign_ins(
            clients, app_id, keep_key_id, old_key_ids, after, now, settings, notes
        )
    active: str | None = None
    pinned: str | None = None
    try:
        refs = await clients.site.key_vault_references()
    except TenantError as e:
        notes.append(f"Key Vault reference status not read: {e}")
    else:
        if refs:
            active = refs[0].active_version
            if refs[0].resolved and refs[0].secret_version is not None:
                pinned = refs[0].secret_version
    return Gathered(Evidence(signins, active, pinned, workers, old_ends), tuple(notes))


async def _sign_ins(
    clients: TargetClients,
    app_id: str,
    keep_key_id: str,
    old_key_ids: Sequence[str],
    after: datetime,
    now: datetime,
    settings: WorkflowSettings,
    notes: list[str],
) -> SignInEvidence | None:
    try:
        site = await clients.site.get_site()
        got = await clients.signins.service_principal_sign_ins(app_id, after)
    except TenantError as e:  # throttled, an outage: no evidence this time
        notes.append(f"sign-in log not read: {e}")
        return None
    if not isinstance(got, SignInLog):
        notes.append(
            f"sign-in log unreadable ({got.reason}); grant AuditLog.Read.All for "
            "the strongest proof"
        )
        return None
    addresses = frozenset(site.outbound_addresses) | frozenset(settings.app_outbound_addresses)
    if not addresses:
        notes.append("the site reports no outbound addresses: no sign-in is the app's")
    records = [
        LogRecord(s.created, s.key_id, s.succeeded, s.ip_address, is_own(s.correlation_id))
        for s in got.sign_ins
    ]
    return app_sign_ins(
        records,
        new_key_id=keep_key_id,
        old_key_ids=old_key_ids,
        app_addresses=addresses,
        after=after,
        now=now,
        reorder=timedelta(seconds=settings.signin_log_reorder),
        delay_bound=timedelta(seconds=settings.signin_log_delay_bound),
    )


def decide(
    p: PendingRemoval, gathered: Gathered, now: datetime, settings: WorkflowSettings
) -> Removal:
    """The removal decision for a pending removal, given fresh evidence."""
    since = datetime.fromisoformat(p.pending_since)
    until = datetime.fromisoformat(p.pending_until)
    return removal(
        new_version=p.keep_version,
        reloaded=reloaded_of(p),
        pending_since=since,
        now=now,
        overlap=until - since,
        evidence=gathered.evidence,
        skew=timedelta(seconds=settings.clock_skew),
        recycle_allowance=timedelta(seconds=settings.recycle_allowance),
    )


def _time(v: str | None) -> datetime | None:
    return datetime.fromisoformat(v) if v else None


def pending_removals(runs: Sequence[RunRecord]) -> list[PendingRemoval]:
    """The removals still pending after ``runs`` (oldest first): each journaled
    ``pending_removal`` whose keys no later removal step removed. Pure."""
    pending: dict[str, PendingRemoval] = {}  # by the first pending keyId
    for r in runs:
        for e in r.entries:
            if e.phase != "done":
                continue
            if e.step == "pending_removal":
                p = PendingRemoval(
                    pending_key_ids=tuple(e.data.get("pending_key_ids") or ()),
                    keep_key_id=str(e.data.get("keep_key_id")),
                    keep_version=str(e.data.get("keep_version")),
                    reloaded_at=str(e.data.get("reloaded_at")),
                    pending_since=str(e.data.get("pending_since")),
                    pending_until=str(e.data.get("pending_until")),
                    pending_why=str(e.data.get("pending_why") or ""),
                    cache_at=_opt(e.data.get("cache_at")),
                    cache_mark=_opt(e.data.get("cache_mark")),
                    recycled_at=_opt(e.data.get("recycled_at")),
                )
                if p.pending_key_ids:
                    pending[p.pending_key_ids[0]] = p
            elif e.step in ("remove_old", "rollback.remove_new", "cleanup.remove"):
                gone = set(e.data.get("removed") or ())
                if e.data.get("removed_new"):
                    gone.add(str(e.data["removed_new"]))
                for first, p in list(pending.items()):
                    left = tuple(k for k in p.pending_key_ids if k not in gone)
                    if not left:
                        del pending[first]
                    elif left != p.pending_key_ids:
                        pending[first] = replace(p, pending_key_ids=left)
    return list(pending.values())


def _opt(v: object) -> str | None:
    return None if v is None else str(v)
