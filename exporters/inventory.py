"""The tenant inventory's state and metrics: every app registration's credential expiry.

:class:`Inventory` keeps the last good listing of each collection (a failed or
throttled scan changes nothing but the scan's own metrics) and renders the tens of
thousands of ``secretwarden_app_credential_expiry_timestamp_seconds`` series into text
*once per scan* (and once more when the filters or the managed apps change on a
reload), in a worker thread, with prometheus_client's own exposition code. A scrape
appends those bytes (:mod:`exporters.exposition`) to the registry's output: it never waits
on Azure and never formats a series that has not changed (bench/inventory.py measures
it against ``generate_latest`` over the same series).

The small summary metrics (counts, scan duration, last success, requests) are a
collector in the daemon's registry; they exist only while the inventory is enabled, so
a daemon without ``[inventory]`` exports none and fires no inventory alert.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters._errors import describe
from exporters.exposition import Exposition
from exporters.inventory_select import (
    InventoryFilters,
    InventoryView,
    ManagedApps,
    build_view,
)
from tenant.directory import Collection, GraphDirectory, Listing, SyncOutcome
from tenant.errors import TenantError

APP_EXPIRY = "secretwarden_app_credential_expiry_timestamp_seconds"
SP_EXPIRY = "secretwarden_service_principal_credential_expiry_timestamp_seconds"


class ExpiryCollector(Collector):
    """The per-credential families of one view (rendered once per scan, see
    :meth:`Inventory.render`; registered in a registry only by the benchmark)."""

    def __init__(self, view: Callable[[], InventoryView]) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        apps = GaugeMetricFamily(
            APP_EXPIRY,
            "When each password or certificate credential of each app registration in the "
            "tenant expires (endDateTime); managed is true when a target covers the app.",
            labels=["app_id", "app_name", "key_id", "kind", "credential_name", "managed"],
        )
        sps = GaugeMetricFamily(
            SP_EXPIRY,
            "When each credential of each service principal expires (with "
            "[inventory] service_principals = true).",
            labels=["app_id", "app_name", "key_id", "kind", "credential_name"],
        )
        for r in self._view().rows:
            if r.collection == "applications":
                labels = [r.app_id, r.app_name, r.key_id, r.kind, r.credential_name]
                apps.add_metric([*labels, "true" if r.managed else "false"], r.end)
            else:
                sps.add_metric([r.app_id, r.app_name, r.key_id, r.kind, r.credential_name], r.end)
        yield apps
        if sps.samples:
            yield sps

    def describe(self) -> Iterable[Metric]:
        return []


@dataclass(slots=True)
class ScanReport:
    ok: bool
    full: bool
    requests: int
    duration_seconds: float
    changed: int = 0
    removed: int = 0
    error: str | None = None


@dataclass(slots=True)
class _Status:
    enabled: bool = False
    interval_seconds: float = 0.0
    scan_success: float = 0.0
    last_success: float = 0.0
    duration: float = 0.0
    last_requests: float = 0.0
    requests: Tally[str] = field(default_factory=Tally)


class _SummaryCollector(Collector):
    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory

    def collect(self) -> Iterator[Metric]:
        inv = self._inventory
        status = inv.status
        if not status.enabled:
            return

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        view = inv.view
        yield gauge(
            "secretwarden_inventory_applications",
            "App registrations in the inventory (after the filters).",
            view.applications,
        )
        creds = GaugeMetricFamily(
            "secretwarden_inventory_credentials",
            "Credentials of the app registrations in the inventory, by kind.",
            labels=["kind"],
        )
        for kind, n in view.credentials:
            creds.add_metric([kind], n)
        yield creds
        if inv.service_principals:
            yield gauge(
                "secretwarden_inventory_service_principals",
                "Service principals in the inventory (after the filters).",
                view.service_principals,
            )
            sp_creds = GaugeMetricFamily(
                "secretwarden_inventory_service_principal_credentials",
                "Credentials of the service principals in the inventory, by kind.",
                labels=["kind"],
            )
            for kind, n in view.sp_credentials:
                sp_creds.add_metric([kind], n)
            yield sp_creds
        yield gauge(
            "secretwarden_inventory_scan_success",
            "1 when the last inventory scan succeeded (the data is then current).",
            status.scan_success,
        )
        yield gauge(
            "secretwarden_inventory_scan_duration_seconds",
            "How long the last inventory scan took.",
            status.duration,
        )
        yield gauge(
            "secretwarden_inventory_last_success_timestamp_seconds",
            "When an inventory scan last succeeded (0: not yet).",
            status.last_success,
        )
        yield gauge(
            "secretwarden_inventory_last_scan_requests",
            "Graph requests the last inventory scan made (retries included).",
            status.last_requests,
        )
        yield gauge(
            "secretwarden_inventory_interval_seconds",
            "How often the inventory is scanned (the scan-failing alert measures age with it).",
            status.interval_seconds,
        )
        requests = CounterMetricFamily(
            "secretwarden_inventory_requests",
            "Graph requests made by inventory scans, by HTTP status.",
            labels=["status_code"],
        )
        for code in sorted(status.requests):
            requests.add_metric([code], status.requests[code])
        if not status.requests:
            requests.add_metric(["200"], 0)
        yield requests

    def describe(self) -> Iterable[Metric]:
        return []


class Inventory:
    """The inventory's state. :meth:`scan` with a :class:`GraphDirectory`; the last good
    listings stay until a scan succeeds. Register its summary with the registry given."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        filters: InventoryFilters | None = None,
        managed: ManagedApps | None = None,
        service_principals: bool = False,
        full_scan_seconds: float = 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.filters = filters or InventoryFilters()
        # A fresh full listing at least this often, whatever the deltas said: it bounds
        # any drift between Graph's list and its delta (replication, a lost change).
        self.full_scan_seconds = full_scan_seconds
        self._last_full: dict[Collection, float] = {}
        self.managed = managed or ManagedApps()
        self.service_principals = service_principals
        self.clock = clock
        self.status = _Status()
        self.listings: dict[Collection, Listing] = {}
        self.view = InventoryView()
        self.exposition = Exposition()
        self.collector = ExpiryCollector(lambda: self.view)
        self._lock = asyncio.Lock()
        self._generation = 0
        if registry is not None:
            registry.register(_SummaryCollector(self))

    def collections(self) -> tuple[Collection, ...]:
        if self.service_principals:
            return ("applications", "servicePrincipals")
        return ("applications",)

    def count_response(self, status_code: int) -> None:
        self.status.requests[str(status_code)] += 1

    def enable(self, enabled: bool, interval_seconds: float) -> None:
        """Whether the summary is exported (``[inventory] enabled``), and the interval."""
        self.status.enabled = enabled
        self.status.interval_seconds = interval_seconds

    def clear(self) -> None:
        """Forget everything read (the inventory was switched off): the series go, and
        a scan under way keeps nothing it read."""
        self._generation += 1
        self.listings.clear()
        self._last_full.clear()
        self.view, self.exposition = InventoryView(), Exposition()

    def timed_out(self, seconds: float) -> ScanReport:
        """A scan cut short by its timeout: nothing it read is kept."""
        self.status.scan_success = 0.0
        self.status.duration = seconds
        return ScanReport(
            ok=False,
            full=False,
            requests=0,
            duration_seconds=seconds,
            error=f"scan: no answer within {seconds:g}s",
        )

    async def configure(
        self, filters: InventoryFilters, managed: ManagedApps, service_principals: bool
    ) -> None:
        """New filters or targets (a reload): re-render from the listings kept."""
        async with self._lock:
            changed = (filters, managed, service_principals) != (
                self.filters,
                self.managed,
                self.service_principals,
            )
            self.filters, self.managed = filters, managed
            self.service_principals = service_principals
            if not service_principals:
                self.listings.pop("servicePrincipals", None)
            if changed and self.listings:
                await self._render()

    def render(self) -> tuple[InventoryView, Exposition]:
        """Build the view and its exposition from the current listings (CPU only)."""
        view = build_view(self.listings.values(), self.filters, self.managed)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ExpiryCollector(lambda: view))
        text = generate_latest(registry) if view.rows else b""
        return view, Exposition.of(text)

    async def _render(self) -> None:
        # A worker thread: a scrape during the render is answered from the old bytes.
        self.view, self.exposition = await asyncio.to_thread(self.render)

    async def scan(self, directory: GraphDirectory) -> ScanReport:
        """Sync every collection, then re-render. A failure keeps what was known."""
        async with self._lock:
            started = time.perf_counter()
            generation = self._generation
            before = directory.requests
            full = False
            changed = removed = 0
            error: str | None = None
            new: dict[Collection, Listing] = {}
            fulls: list[Collection] = []
            for coll in self.collections():
                due = self.clock() - self._last_full.get(coll, 0.0) >= self.full_scan_seconds
                try:
                    outcome = await _sync(directory, coll, self.listings.get(coll), full=due)
                except Exception as exc:
                    error = describe(f"scan {coll}", exc)
                    break
                new[coll] = outcome.listing
                if outcome.full:
                    fulls.append(coll)
                full = full or outcome.full
                changed += outcome.changed
                removed += outcome.removed
            if error is None and generation != self._generation:
                error = "scan: the inventory was cleared while it ran"
            if error is None:
                # Only a complete scan replaces anything; an unchanged tenant keeps the
                # rendered bytes as they are.
                self.listings.update(new)
                self._last_full.update({coll: self.clock() for coll in fulls})
                if full or changed or removed or not self.exposition.text:
                    await self._render()
            duration = time.perf_counter() - started
            status = self.status
            status.duration = duration
            status.last_requests = directory.requests - before
            status.scan_success = 1.0 if error is None else 0.0
            if error is None:
                status.last_success = self.clock()
            return ScanReport(
                ok=error is None,
                full=full,
                requests=directory.requests - before,
                duration_seconds=duration,
                changed=changed,
                removed=removed,
                error=error,
            )


async def _sync(
    directory: GraphDirectory, coll: Collection, previous: Listing | None, *, full: bool
) -> SyncOutcome:
    """``directory.sync``; a delta token Graph no longer knows (400 ``syncStateNotFound``,
    which Graph answers as well as 410 for an expired token) lists everything again."""
    try:
        return await directory.sync(coll, previous, full=full)
    except TenantError as exc:
        if full or exc.status != 400 or exc.code != "syncStateNotFound":
            raise
    return await directory.sync(coll, previous, full=True)
