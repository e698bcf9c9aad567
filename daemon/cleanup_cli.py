"""``secretwarden cleanup``: finish pending removals now, from the command line.

A daemon with ``[remediation] enabled = false`` is read-only and never removes an old
credential; this command (or a daemon with remediation on) does. For each target with
a credential pending removal it gathers the proof once and removes the credential only
when the proof says the app left it or the overlap window has ended (the same decision
as the daemon's, remediation/proof.py); otherwise it says why the credential waits.

With ``[ha] backend = "azure_blob"`` it refuses: it would act without the target's
lease (the lease holder may be mid-rotation for the same target) and from this host's
copy of the journal, which may be behind the journal in storage. The lease holder
finishes pending removals itself when its remediation is on (docs/ha.md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
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


def ha_refusal(config: Config, names: list[str]) -> str | None:
    """Why ``cleanup`` may not run for ``names`` here (None: it may): in HA mode a
    removal must run under the target's lease, with the journal from storage."""
    if config.ha.backend == "none":
        return None
    return (
        f"secretwarden cleanup: target(s) {', '.join(names)}: step cleanup (remove the old "
        f"credential) refused: [ha] backend is {config.ha.backend!r}, and this command holds "
        "no target lease and reads a local journal copy that may be behind storage (the "
        "lease holder may be rotating the target now); the daemon holding the lease "
        "finishes pending removals itself with [remediation] enabled = true "
        "(builtin_triggers = false keeps it from rotating on its own); see docs/ha.md"
    )


async def run_cleanup(config: Config, names: list[str], out: TextIO) -> int:
    from daemon.app import health_http_client

    if (refusal := ha_refusal(config, names)) is not None:  # before any Azure client
        print(refusal, file=sys.stderr, flush=True)
        return EXIT_USAGE
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
        remediator = build_remediator(config, targets, dry_run=False, with_policy=False)
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
                f"{name}: {keys} not checked (busy in another process, or Azure failed: "
                "see the log)",
                file=out,
                flush=True,
            )
            return False
        print(f"{name}: {keys} still pending removal: {why}", file=out, flush=True)
        return True
