"""Proof that the app no longer uses a credential: gathered by fresh reads, decided by
the pure :func:`remediation.decisions.removal`.

Evidence, strongest first: the sign-in log (Graph beta ``auditLogs/signIns``, when the
operator may read it); ARM's activeVersion; a pinned reference resolved on the
version. The daemon's own probes sign in with the Key Vault value too, so a sign-in
with the new keyId shows that the log has caught up past the reload; the proof is that
no old keyId signed in since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from remediation.decisions import Evidence, Removal, SignInEvidence, removal
from remediation.journal import RunRecord
from remediation.results import PendingRemoval
from tenant.errors import TenantError
from tenant.models import SignInLog
from tenant.ports import TargetClients

log = structlog.get_logger("secretwarden.remediation")


@dataclass(frozen=True, slots=True)
class Gathered:
    evidence: Evidence
    notes: tuple[str, ...]  # what could not be read, and why (said in status/check)


async def gather(
    clients: TargetClients,
    *,
    app_id: str,
    keep_key_id: str,
    keep_version: str,
    old_key_ids: Sequence[str],
    since: datetime,
    use_sign_ins: bool = True,
) -> Gathered:
    """Read what may prove the app is on ``keep_version``/``keep_key_id``."""
    notes: list[str] = []
    signins: SignInEvidence | None = None
    if use_sign_ins:
        try:
            got = await clients.signins.service_principal_sign_ins(app_id, since)
        except TenantError as e:
            notes.append(f"sign-in log not read: {e}")
        else:
            if isinstance(got, SignInLog):
                olds = [t for k in old_key_ids if (t := got.last_success(k)) is not None]
                signins = SignInEvidence(
                    new_last=got.last_success(keep_key_id), old_last=max(olds) if olds else None
                )
            else:
                notes.append(
                    f"sign-in log unreadable ({got.reason}); grant AuditLog.Read.All for "
                    "the strongest proof"
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
    return Gathered(Evidence(signins, active, pinned), tuple(notes))


def decide(p: PendingRemoval, gathered: Gathered, now: datetime) -> Removal:
    """The removal decision for a pending removal, given fresh evidence."""
    since = datetime.fromisoformat(p.pending_since)
    until = datetime.fromisoformat(p.pending_until)
    return removal(
        new_version=p.keep_version,
        reloaded_at=datetime.fromisoformat(p.reloaded_at),
        pending_since=since,
        now=now,
        overlap=until - since,
        evidence=gathered.evidence,
    )


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
                        pending[first] = PendingRemoval(
                            left,
                            p.keep_key_id,
                            p.keep_version,
                            p.reloaded_at,
                            p.pending_since,
                            p.pending_until,
                            p.pending_why,
                        )
    return list(pending.values())
