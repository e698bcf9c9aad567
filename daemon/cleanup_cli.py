"""``secretwarden cleanup``: finish pending removals now, from the command line.

A daemon with ``[remediation] enabled = false`` is read-only and never removes an old
credential; this command (or a daemon with remediation on) does. For each target with
a credential pending removal it gathers the proof once and removes the credential only
when the proof says the app left it or the overlap window has ended (the same decision
as the daemon's, remediation/proof.py); otherwise it says why the credential waits.

With ``[ha] backend = "azure_blob"`` it acts only under the target's lease, as a
daemon would: it takes the lease (never waits for or breaks one: a target a daemon
holds is refused with who holds it, since that daemon may be rotating it), reads the
journal from storage (not this host's copy, which may be behind), refuses while a run
is unfinished there (the next daemon to hold the lease finishes it), journals to
storage under the lease, and gives the lease back.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import httpx

from daemon.config import Config
from daemon.remediate_cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    _load,
    build_remediator,
    remediation_target,
)
from remediation.access import journal_problem
from remediation.service import RemediationTarget, Remediator
from tenant.connect import TenantSession


def cleanup(args: argparse.Namespace) -> int:
    config = _load(args)
    names = [t.name for t in config.targets]
    if args.target is not None and args.target not in names:
        known = ", ".join(names)
        print(
            f"secretwarden cleanup: no target named {args.target!r} (known: {known})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    wanted = [args.target] if args.target is not None else names
    return asyncio.run(run_cleanup(config, wanted, sys.stdout))


async def run_cleanup(config: Config, names: list[str], out: TextIO) -> int:
    from daemon.app import health_http_client

    failed = False
    identity = config.identity_value()
    async with (
        TenantSession(identity, config.cloud_endpoints(), config.retry_policy()) as session,
        health_http_client(config) as http,
    ):
        for name in names:
            failed |= not await _one(config, name, session, http, out)
    return EXIT_FAILED if failed else EXIT_OK


async def _one(
    config: Config, name: str, session: TenantSession, http: httpx.AsyncClient, out: TextIO
) -> bool:
    """One target; False when its removal failed or could not be checked."""
    async with session.target(config.target_ref(config.target(name))) as clients:
        targets = {name: remediation_target(config, name, clients, http)}
        if config.ha.backend != "none":
            return await _under_lease(config, name, targets, out)
        remediator = build_remediator(config, targets, dry_run=False, with_policy=False)
        return await _settle(remediator, name, out)


async def _under_lease(
    config: Config, name: str, targets: dict[str, RemediationTarget], out: TextIO
) -> bool:
    """HA mode: the same as one daemon's cleanup, under the target's lease and with the
    journal of record (storage's); False when the lease or the journal is not ours."""
    # Imported here: the blob SDK is for HA configurations only.
    from daemon.ha import LeaseUnavailable, cli_lease
    from remediation.blob_journal import BlobJournal
    from tenant.leases import StorageError

    refused = f"{name}: step cleanup (remove the old credential) refused:"
    try:
        async with cli_lease(config, name) as (leadership, store):
            with tempfile.TemporaryDirectory(prefix="secretwarden-cleanup-") as tmp:
                state = Path(tmp)
                journal = BlobJournal(state, name, store, leadership)
                await journal.refresh()
                if (rec := journal.unfinished()) is not None:
                    print(
                        f"{refused} run {rec.run} ({rec.action}) is unfinished in the journal "
                        "in storage; the next daemon to hold the lease finishes it first "
                        "(start one), then run cleanup again",
                        file=out,
                        flush=True,
                    )
                    return False
                remediator = build_remediator(
                    config, targets, dry_run=False, with_policy=False, state_dir=state
                )
                remediator.leadership = leadership
                remediator.journals = lambda t: BlobJournal(state, t, store, leadership)
                return await _settle(remediator, name, out)
    except LeaseUnavailable as e:
        print(
            f"{refused} its lease is {e} ([ha]): that daemon may be rotating it now, and "
            "it finishes pending removals itself with [remediation] enabled = true; or stop "
            "it and run cleanup again (docs/ha.md)",
            file=out,
            flush=True,
        )
        return False
    except StorageError as e:
        print(f"{refused} storage ([ha]) did not answer: {e}", file=out, flush=True)
        return False


async def _settle(remediator: Remediator, name: str, out: TextIO) -> bool:
    """Finish ``name``'s pending removal if its proof arrived or its window ended."""
    if (problem := journal_problem(remediator.journal(name))) is not None:
        print(f"{name}: journal unusable: {problem}", file=out, flush=True)
        return False
    pending = remediator.pending(name)
    if not pending:
        print(f"{name}: nothing pending removal", file=out, flush=True)
        return True
    keys = ", ".join(k for p in pending for k in p.pending_key_ids)
    outcome = await remediator.check_pending(name)
    if outcome is not None:
        print(f"{name}: {outcome.outcome}: {outcome.detail}", file=out, flush=True)
        return outcome.outcome in ("success", "nothing_to_do")
    why = remediator.waiting_reason(name)
    if why is None:
        print(
            f"{name}: {keys} not checked (busy in another process, or Azure failed: see the log)",
            file=out,
            flush=True,
        )
        return False
    print(f"{name}: {keys} still pending removal: {why}", file=out, flush=True)
    return True
