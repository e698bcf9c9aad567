"""``secretwarden check``: every probe once per target, as a table; non-zero on failure."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import TextIO

from daemon.app import Daemon
from daemon.config import Config
from daemon.ha import lease_rows
from exporters.observations import (
    ExpiryObservation,
    GraphAuthObservation,
    HealthObservation,
    Observed,
)
from tenant.errors import TenantError
from tenant.models import SignInsUnreadable
from tenant.operator import OperatorExpiry
from tenant.ports import TargetClients


def verdict(observed: Observed, now: datetime) -> tuple[bool, str]:
    """(passed, detail) for one probe result, in words an operator reads."""
    v = observed.value
    if isinstance(v, ExpiryObservation):
        if not v.ok:
            return False, v.error or "failed"
        if not v.keyvault_matches_credential:
            if v.in_use is not None:
                return False, f"Key Vault value is an expired secret ({v.in_use.key_id})"
            return False, "Key Vault value matches no live client secret"
        days = ""
        if v.in_use is not None and v.in_use.end is not None:
            left = (v.in_use.end - now).total_seconds() / 86400
            days = f"; in-use secret expires in {left:.1f} days"
        return True, f"{len(v.credentials)} secret(s){days}"
    if isinstance(v, HealthObservation):
        if v.ok:
            return True, f"HTTP {v.status_code} in {v.duration_seconds * 1000:.0f} ms"
        return False, v.error or "failed"
    if isinstance(v, GraphAuthObservation):
        if v.ok:
            return True, f"token issued, Graph HTTP {v.graph_status}"
        return False, f"{v.reason}: {v.error}"
    if not v.ok:
        return False, v.error or "failed"
    if not v.resolved:
        status = v.reference.status if v.reference else "?"
        return False, f"reference not resolved ({status})"
    if v.stale:
        held = v.reference.active_version if v.reference else "?"
        return False, f"stale: app holds {held}, Key Vault current is {v.current_version}"
    return True, f"resolved to the current version {v.current_version}"


async def sign_in_note(clients: TargetClients) -> tuple[bool, str]:
    """Can the operator read the app's sign-ins (the strongest removal proof)? Said
    once here; not a failure: without them removal waits for other proof."""
    try:
        app_id = await clients.app.client_id()
        got = await clients.signins.service_principal_sign_ins(
            app_id, datetime.now(UTC) - timedelta(hours=1)
        )
    except TenantError as e:
        # Not a finding about the log: the operator could not even read the app (the
        # rows above say why). Until it can, nothing is rotated or removed at all.
        return False, f"sign-in log not checked: {e}"
    if isinstance(got, SignInsUnreadable):
        return False, (
            f"sign-in log unreadable ({got.reason}): grant AuditLog.Read.All for sign-in "
            "removal proof; without it old secrets wait for the per-instance view or "
            "the overlap window"
        )
    return True, f"sign-in log readable ({len(got.sign_ins)} sign-in(s) in the last hour)"


async def instances_note(clients: TargetClients) -> tuple[bool, str]:
    """Can ARM's per-instance view be read (instances, processes, start times)? The
    removal proof's first choice: every worker started after the cache held the new
    version. Not a failure: without it removal waits for sign-ins or the window."""
    try:
        instances = await clients.site.instances()
        site = await clients.site.get_site()
    except TenantError as e:
        return False, (
            f"per-instance view not read ({e}); removal proof falls back to the app's "
            "sign-ins or the overlap window"
        )
    workers = sum(len(i.workers) for i in instances)
    return True, (
        f"{len(instances)} instance(s), {workers} worker process(es); "
        f"{len(site.outbound_addresses)} outbound address(es) attribute the app's sign-ins"
    )


def print_table(rows: list[tuple[str, str, str, str]], out: TextIO) -> None:
    head = ("TARGET", "PROBE", "RESULT", "DETAIL")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    for row in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)), row[3], file=out)


def operator_row(got: OperatorExpiry | None, now: datetime) -> tuple[str, str, str, str]:
    """The daemon's own credential (issue 15): FAIL once expired, a note when unknown."""
    if got is None or got.end is None:
        why = got.why if got is not None else "not checked"
        return ("-", "operator", "note", f"expiry of the daemon's own credential unknown: {why}")
    days = (got.end - now).total_seconds() / 86400
    detail = f"the daemon's own {got.kind} expires in {days:.1f} days (from {got.source})"
    return ("-", "operator", "ok" if days > 0 else "FAIL", detail)


async def run_check(config: Config, out: TextIO = sys.stdout) -> int:
    daemon = Daemon(config)
    await daemon.start(serve_web=False, schedule=False)
    try:
        results = await daemon.run_all_once()
        operator = await daemon.check_operator_credential()
        notes = []
        for t in config.targets:
            if config.remediation.use_sign_ins:
                notes.append((t.name, "sign_ins", await sign_in_note(daemon.clients(t.name))))
            notes.append((t.name, "instances", await instances_note(daemon.clients(t.name))))
    finally:
        await daemon.stop()
    now = daemon.clock()
    rows = []
    failed = 0
    for observed in results:
        passed, detail = verdict(observed, now)
        failed += not passed
        rows.append((observed.target, observed.probe, "ok" if passed else "FAIL", detail))
    for name, what, (readable, detail) in notes:
        rows.append((name, what, "ok" if readable else "note", detail))
    rows.append(operator_row(operator, now))
    failed += rows[-1][2] == "FAIL"
    for row in await lease_rows(config):  # [ha]: storage reachable, leases writable
        failed += row[2] == "FAIL"
        rows.append(row)
    print_table(rows, out)
    print(f"\n{len(rows) - failed}/{len(rows)} checks passed", file=out)
    return 1 if failed else 0
