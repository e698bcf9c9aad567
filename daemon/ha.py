"""High availability wired into the daemon (``[ha] backend = "azure_blob"``).

:func:`install_ha` gives the :class:`~remediation.service.Remediator` the lease
leadership and the blob journal, starts the lease loop once the targets are open, and
hands every lease back on SIGTERM (stop) and SIGHUP (reload): a planned restart hands
over in seconds instead of a lease time. :func:`lease_rows` is ``check``'s answer
about storage; :func:`lease_status` is ``status``'s, per target.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config import Config, read_secret_file
from daemon.logging import get_logger
from remediation.blob_journal import BlobJournal
from remediation.journal import Journal
from remediation.leadership import HaSettings, LeaseLeadership
from remediation.service import Remediator
from tenant.leases import BlobLeases, LeaseInfo, StorageError
from tenant.models import SecretValue

if TYPE_CHECKING:
    from daemon.app import Daemon

log = get_logger("secretwarden.ha")


def daemon_name() -> str:
    """How this daemon appears in storage and ``status``: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def ha_settings(config: Config) -> HaSettings:
    ha = config.ha
    return HaSettings(
        lease_seconds=ha.lease_seconds,
        renew_deadline=ha.renew_deadline_seconds,
        retry=ha.retry_seconds,
    )


def open_store(config: Config) -> BlobLeases:
    ha = config.ha
    conn = None
    if ha.connection_string_file is not None:
        conn = SecretValue(read_secret_file(ha.connection_string_file, "ha.connection_string_file"))
    # Every call must answer well inside the renew deadline (three rounds fit in it).
    timeout = max(1.0, min(5.0, ha.renew_deadline_seconds / 4))
    return BlobLeases.open(
        ha.container,
        account_url=ha.account_url,
        connection_string=conn,
        identity=config.identity_value(),
        cloud=config.cloud_endpoints(),
        retry=config.retry_policy(),
        timeout=timeout,
    )


def install_ha(daemon: Daemon, remediator: Remediator) -> LeaseLeadership | None:
    """Attach HA to ``remediator`` when the config asks for it (None: one daemon)."""
    config = daemon.config
    if config.ha.backend != "azure_blob":
        return None
    store = open_store(config)
    name = daemon_name()
    leadership = LeaseLeadership(
        store=store,
        daemon=name,
        settings=ha_settings(config),
        targets=lambda: [t.name for t in daemon.config.targets],
        registry=daemon.registry,
        on_acquired=remediator.adopt,
        busy=lambda t: remediator.running(t) is not None,
        on_held=remediator.resume_unfinished,
    )
    state_dir = config.daemon.state_directory
    remediator.leadership = leadership
    remediator.journals = lambda target: BlobJournal(state_dir, target, store, leadership)
    loop_task: list[asyncio.Task[None]] = []

    async def start() -> None:
        try:
            await store.ensure_container()
        except StorageError as e:  # the loop keeps trying; probes go on meanwhile
            log.error("high availability: storage unreachable at start", error=str(e))
        loop_task.append(asyncio.create_task(leadership.run(), name="ha-leases"))
        log.info("high availability on", daemon=name, storage=store.where)

    async def stop() -> None:
        for task in loop_task:
            task.cancel()
        await asyncio.gather(*loop_task, return_exceptions=True)
        await leadership.close()  # runs were cancelled by the remediator's stop hook
        await store.close()

    def on_reload(_new: Config) -> Callable[[], None]:
        def commit() -> None:
            # Hand the idle leases over: the daemons share the targets afresh (a
            # planned restart of this one hands over in seconds). Runs go on.
            idle = [t for t in leadership.held() if remediator.running(t) is None]
            daemon.spawn(leadership.release(idle, "reload (SIGHUP)"))

        return commit

    daemon.start_hooks.append(start)
    daemon.stop_hooks.append(stop)
    daemon.reload_steps.append(on_reload)
    return leadership


class LeaseUnavailable(Exception):
    """The CLI could not take a target's lease; the message says who holds it."""


@asynccontextmanager
async def cli_lease(
    config: Config, target: str
) -> AsyncIterator[tuple[LeaseLeadership, BlobLeases]]:
    """Hold ``target``'s lease for one CLI command (``secretwarden cleanup`` in HA
    mode), renewed in the background, released on the way out. Raises
    :class:`LeaseUnavailable` when a daemon holds it (the CLI never waits for or
    breaks a lease), :class:`StorageError` when storage does not answer. The caller
    reads the journal from storage (``BlobJournal.refresh``) before any write."""
    settings = ha_settings(config)
    async with open_store(config) as store:
        leadership = LeaseLeadership(
            store=store,
            daemon=f"cli-{daemon_name()}",
            settings=settings,
            targets=lambda: [target],
        )
        await store.ensure_container()
        if not await leadership.take(target):
            info = await store.info(target)
            if info.state == "leased":
                raise LeaseUnavailable(describe_lease(info))
            raise LeaseUnavailable(  # it was free: storage refused (the log says why)
                f"not acquired: storage refused or did not answer ({describe_lease(info)})"
            )

        async def renew() -> None:
            while True:
                await asyncio.sleep(settings.interval)
                await leadership.renew_held()

        renewing = asyncio.create_task(renew(), name=f"cli-lease-{target}")
        try:
            yield leadership, store
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)
            await leadership.release_all("command done")


async def lease_rows(config: Config) -> list[tuple[str, str, str, str]]:
    """``check``'s rows: storage reachable and writable, and who holds each target."""
    if config.ha.backend != "azure_blob":
        return []
    rows = []
    async with open_store(config) as store:
        try:
            await store.check_writable(daemon_name())
        except StorageError as e:
            return [("ha", "storage", "FAIL", str(e))]
        rows.append(("ha", "storage", "ok", f"{store.where}: reachable, lease blobs writable"))
        for t in config.targets:
            try:
                info = await store.info(t.name)
            except StorageError as e:
                rows.append((t.name, "lease", "FAIL", str(e)))
                continue
            rows.append((t.name, "lease", "ok", describe_lease(info)))
    return rows


def describe_lease(info: LeaseInfo) -> str:
    if info.state == "leased" and info.holder:
        return f"held by {info.holder} since {info.since}"
    if info.state == "missing":
        return "never leased yet"
    last = f" (last held by {info.holder} since {info.since})" if info.holder else ""
    return f"no daemon holds it ({info.state}){last}"


async def lease_status(config: Config, journal_dir: Path) -> dict[str, str]:
    """Per target: who holds its lease and since when; its journal from storage is
    copied under ``journal_dir`` for ``status`` to read (the local copy of a daemon
    that does not hold the lease may be behind)."""
    out: dict[str, str] = {}
    async with open_store(config) as store:
        for t in config.targets:
            try:
                info = await store.info(t.name)
                data = await store.read_journal(t.name)
            except StorageError as e:
                out[t.name] = f"storage unreachable: {e}"
                continue
            journal = journal_dir / "journal"
            journal.mkdir(parents=True, exist_ok=True, mode=0o700)
            Journal(journal_dir, t.name).path.write_bytes(data)
            out[t.name] = describe_lease(info)
    return out
