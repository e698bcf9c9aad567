"""The inventory in the daemon: its own tenant session, scans bounded by a timeout,
the config's filters and targets turned into what :class:`exporters.inventory.Inventory`
takes, and one log line per scan.

The session (operator credential + HTTP client) is opened at the first scan and kept
while the identity, cloud and retry settings stay the same; a reload that changes them
opens a new one for the next scan.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from daemon.config import Config
from daemon.logging import get_logger
from exporters.exposition import Exposition
from exporters.inventory import Inventory, ScanReport
from exporters.inventory_select import InventoryFilters, ManagedApps
from tenant.connect import TenantSession

log = get_logger("secretwarden.inventory")


def filters_of(config: Config) -> InventoryFilters:
    s = config.inventory
    return InventoryFilters.of(s.include_names, s.exclude_names, s.include_tags, s.exclude_tags)


def managed_of(config: Config) -> ManagedApps:
    return ManagedApps.of(
        (t.app_object_id for t in config.targets), (t.app_client_id for t in config.targets)
    )


class InventoryService:
    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.inventory = Inventory(
            registry,
            filters=filters_of(config),
            managed=managed_of(config),
            service_principals=config.inventory.service_principals,
            full_scan_seconds=config.inventory.full_scan_interval_seconds,
            clock=clock,
        )
        self.inventory.enable(config.inventory.enabled, config.inventory.interval_seconds)
        self._session: TenantSession | None = None
        self._session_key: object = None

    def exposition(self) -> Exposition:
        return self.inventory.exposition

    async def configure(self, config: Config) -> None:
        """A reload: new filters, targets (``managed``), schedule or identity."""
        self.config = config
        self.inventory.enable(config.inventory.enabled, config.inventory.interval_seconds)
        self.inventory.full_scan_seconds = config.inventory.full_scan_interval_seconds
        if not config.inventory.enabled:
            self.inventory.clear()  # switched off: its series go with its summary
            await self.aclose()
        await self.inventory.configure(
            filters_of(config), managed_of(config), config.inventory.service_principals
        )

    async def _open_session(self) -> TenantSession:
        config = self.config
        key = (config.identity, config.cloud, config.retry)
        if self._session is not None and key == self._session_key:
            return self._session
        await self.aclose()
        session = TenantSession(
            config.identity_value(), config.cloud_endpoints(), config.retry_policy()
        )
        await session.__aenter__()
        self._session, self._session_key = session, key
        return session

    async def scan(self) -> ScanReport:
        """One scan, at most ``timeout_seconds`` long; logged, never raised."""
        seconds = self.config.inventory.timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                session = await self._open_session()
                directory = session.directory(on_response=self.inventory.count_response)
                report = await self.inventory.scan(directory)
        except TimeoutError:
            report = self.inventory.timed_out(seconds)
        fields = {
            "mode": "full" if report.full else "delta",
            "requests": report.requests,
            "duration_seconds": round(report.duration_seconds, 3),
            "applications": self.inventory.view.applications,
            "credentials": sum(n for _, n in self.inventory.view.credentials),
        }
        if report.ok:
            log.info(
                "inventory scan finished", changed=report.changed, removed=report.removed, **fields
            )
        else:
            log.warning(
                "inventory scan failed; keeping the last data", error=report.error, **fields
            )
        return report

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()
        self._session, self._session_key = None, None
