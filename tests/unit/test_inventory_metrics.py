"""exporters/inventory.py: filters, managed apps, what is exported (and what not), the
pre-rendered text equal to prometheus_client's own, and the gzip stream it builds."""

from __future__ import annotations

import gzip

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.exposition import Exposition
from exporters.inventory import APP_EXPIRY, Inventory
from exporters.inventory_select import InventoryFilters, ManagedApps, build_view
from tenant.directory import AppCredential, DirectoryObject, Listing


def app(n: int, name: str, *creds: AppCredential, tags: tuple[str, ...] = ()) -> DirectoryObject:
    return DirectoryObject(f"o{n}", f"a{n}", name, tags, creds)


def pw(key: str, end: float | None, name: str | None = "s") -> AppCredential:
    return AppCredential(key, "password", name, end)


def cert(key: str, end: float) -> AppCredential:
    return AppCredential(key, "certificate", 'CN="odd" \\ name', end)


def listing(*objects: DirectoryObject) -> Listing:
    return Listing("applications", {o.object_id: o for o in objects}, "delta")


@pytest.mark.parametrize(
    ("filters", "kept"),
    [
        (InventoryFilters(), {"Payroll API", "payroll (dev)", "HR Portal"}),
        (InventoryFilters.of(include_names=["PAYROLL*"]), {"Payroll API", "payroll (dev)"}),
        (InventoryFilters.of(exclude_names=["*(dev)"]), {"Payroll API", "HR Portal"}),
        (InventoryFilters.of(include_tags=["team:*"]), {"Payroll API", "HR Portal"}),
        (InventoryFilters.of(exclude_tags=["hideapp"]), {"Payroll API", "payroll (dev)"}),
        (
            InventoryFilters.of(include_names=["*payroll*"], exclude_tags=["env:dev"]),
            {"Payroll API"},
        ),
    ],
)
def test_filters_on_names_and_tags(filters: InventoryFilters, kept: set[str]) -> None:
    objects = [
        app(1, "Payroll API", pw("k1", 1e9), tags=("team:payments",)),
        app(2, "payroll (dev)", pw("k2", 1e9), tags=("env:dev",)),
        app(3, "HR Portal", pw("k3", 1e9), tags=("HideApp", "team:hr")),
    ]
    view = build_view([listing(*objects)], filters, ManagedApps())
    assert {r.app_name for r in view.rows} == kept
    assert view.applications == len(kept)


def test_no_credentials_no_series_expired_kept_duplicates_once_managed_marked() -> None:
    objects = [
        app(1, "Empty"),
        app(2, "Old", pw("k1", 100.0), pw("k1", 100.0), cert("k2", 3e9)),
        app(3, "Portal", pw("k3", 2e9), pw("k4", None)),  # no endDateTime: nothing to export
    ]
    view = build_view([listing(*objects)], InventoryFilters(), ManagedApps.of([], ["A3"]))
    assert [(r.app_id, r.key_id, r.kind) for r in view.rows] == [
        ("a2", "k1", "password"),  # expired (1970): kept, soonest first
        ("a3", "k3", "password"),
        ("a2", "k2", "certificate"),
    ]
    assert [r.managed for r in view.rows] == [False, True, False]
    assert view.applications == 3
    assert dict(view.credentials) == {"password": 2, "certificate": 1}


async def test_the_rendered_text_is_prometheus_clients_own_and_labels_are_escaped() -> None:
    inventory = Inventory(managed=ManagedApps.of(["o2"], []))
    inventory.listings["applications"] = listing(
        app(1, 'Legacy "SOAP" Bridge', pw("k1", 1.5e9, None)),
        app(2, "C:\\Tools\\日本語", cert("k2", 2e9)),
    )
    view, exposition = inventory.render()
    registry = CollectorRegistry()
    inventory.view = view
    registry.register(inventory.collector)
    assert exposition.text == generate_latest(registry)
    (family,) = text_string_to_metric_families(exposition.text.decode())
    assert family.name == APP_EXPIRY
    got = {s.labels["app_name"]: s.labels for s in family.samples}
    assert got['Legacy "SOAP" Bridge']["credential_name"] == ""
    assert got['Legacy "SOAP" Bridge']["managed"] == "false"
    assert got["C:\\Tools\\日本語"]["credential_name"] == 'CN="odd" \\ name'
    assert got["C:\\Tools\\日本語"]["managed"] == "true"
    assert set(got["C:\\Tools\\日本語"]) == {
        "app_id", "app_name", "key_id", "kind", "credential_name", "managed",
    }  # fmt: skip


@pytest.mark.parametrize("size", [0, 1, 70_000, 300_000])
def test_the_gzip_stream_is_one_member_any_reader_takes(size: int) -> None:
    text = b"".join(b'm{i="%d"} %d\n' % (i, i) for i in range(size // 12))
    exposition = Exposition.of(text)
    tail = b"# the registry\nx 1\n"
    packed = exposition.gzip_with(tail) if text else None
    if packed is None:
        assert exposition == Exposition()
        return
    assert exposition.plain_with(tail) == text + tail
    assert gzip.decompress(packed) == text + tail
    import zlib

    reader = zlib.decompressobj(zlib.MAX_WBITS | 16)  # what httpx and most clients do
    assert reader.decompress(packed) + reader.flush() == text + tail
    assert reader.eof
    assert reader.unused_data == b""  # one member, nothing after it


async def test_summary_metrics_exist_only_while_enabled() -> None:
    registry = CollectorRegistry()
    inventory = Inventory(registry)
    assert registry.get_sample_value("secretwarden_inventory_applications") is None
    inventory.enable(True, 600)
    assert registry.get_sample_value("secretwarden_inventory_applications") == 0
    assert registry.get_sample_value("secretwarden_inventory_interval_seconds") == 600
    assert registry.get_sample_value("secretwarden_inventory_last_success_timestamp_seconds") == 0
    # no service principal families unless asked for
    names = {f.name for f in registry.collect()}
    assert "secretwarden_inventory_service_principals" not in names
    timed_out = inventory.timed_out(900)
    assert not timed_out.ok
    assert registry.get_sample_value("secretwarden_inventory_scan_success") == 0


async def test_a_reload_re_renders_with_new_filters_and_targets() -> None:
    inventory = Inventory()
    inventory.listings["applications"] = listing(
        app(1, "Payroll API", pw("k1", 2e9)), app(2, "HR", pw("k2", 2e9))
    )
    inventory.view, inventory.exposition = inventory.render()  # as a scan leaves it
    await inventory.configure(InventoryFilters(), ManagedApps(), False)  # nothing changed
    assert len(inventory.view.rows) == 2
    assert not any(r.managed for r in inventory.view.rows)
    await inventory.configure(
        InventoryFilters.of(exclude_names=["hr"]), ManagedApps.of(["o1"], []), False
    )
    assert [(r.app_name, r.managed) for r in inventory.view.rows] == [("Payroll API", True)]
    assert b'managed="true"' in inventory.exposition.text
    assert b"HR" not in inventory.exposition.text


async def test_a_scan_under_way_when_the_inventory_is_switched_off_keeps_nothing() -> None:
    inventory = Inventory()

    class Directory:
        requests = 0

        async def sync(self, collection: str, previous: Listing | None) -> object:
            inventory.clear()  # a reload switched the inventory off meanwhile
            from tenant.directory import SyncOutcome

            return SyncOutcome(listing(app(1, "x", pw("k1", 2e9))), True, 1, 1, 0)

    report = await inventory.scan(Directory())  # type: ignore[arg-type]
    assert not report.ok
    assert inventory.listings == {}
    assert inventory.exposition == Exposition()


async def test_a_full_listing_comes_back_once_a_day_whatever_the_deltas_say() -> None:
    now = [1000.0]
    inventory = Inventory(full_scan_seconds=86400, clock=lambda: now[0])
    asked: list[bool] = []

    class Directory:
        requests = 0

        async def sync(self, collection: str, previous: Listing | None, *, full: bool) -> object:
            from tenant.directory import SyncOutcome

            asked.append(full)
            return SyncOutcome(
                listing(app(1, "x", pw("k1", 2e9))), full or previous is None, 1, 0, 0
            )

    fulls = []
    for at in (1000.0, 4600.0, 86000.0, 87400.0, 91000.0):
        now[0] = at
        report = await inventory.scan(Directory())  # type: ignore[arg-type]
        assert report.ok
        fulls.append(report.full)
    assert fulls == [True, False, False, True, False]  # the first: nothing to track from
    assert asked == [False, False, False, True, False]
