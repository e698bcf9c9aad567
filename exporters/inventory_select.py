"""Which directory objects the inventory exports, and how: include/exclude filters on
names and tags, the apps configured targets cover (``managed``), and the rows (one per
credential) with their counts. Pure functions of the listings: tested by tables."""

from __future__ import annotations

import fnmatch
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from tenant.directory import Collection, DirectoryObject, Listing

KINDS = ("password", "certificate")


def _patterns(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(v.casefold() for v in values)


@dataclass(frozen=True, slots=True)
class InventoryFilters:
    """Which objects are exported: shell-style patterns (``fnmatch``, any case) on the
    display name and on tags. An object is kept when it matches an include pattern
    (or there are none) and no exclude pattern."""

    include_names: tuple[str, ...] = ()
    exclude_names: tuple[str, ...] = ()
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        include_names: Iterable[str] = (),
        exclude_names: Iterable[str] = (),
        include_tags: Iterable[str] = (),
        exclude_tags: Iterable[str] = (),
    ) -> InventoryFilters:
        return cls(
            _patterns(include_names),
            _patterns(exclude_names),
            _patterns(include_tags),
            _patterns(exclude_tags),
        )

    def admits(self, obj: DirectoryObject) -> bool:
        name = obj.display_name.casefold()
        tags = [t.casefold() for t in obj.tags]

        def any_name(patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(name, p) for p in patterns)

        def any_tag(patterns: tuple[str, ...]) -> bool:
            return any(fnmatch.fnmatchcase(t, p) for p in patterns for t in tags)

        if self.include_names and not any_name(self.include_names):
            return False
        if self.include_tags and not any_tag(self.include_tags):
            return False
        return not (any_name(self.exclude_names) or any_tag(self.exclude_tags))


@dataclass(frozen=True, slots=True)
class ManagedApps:
    """The app registrations configured targets cover (object ids and appIds)."""

    object_ids: frozenset[str] = frozenset()
    client_ids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, object_ids: Iterable[str | None], client_ids: Iterable[str | None]) -> ManagedApps:
        return cls(
            frozenset(i.lower() for i in object_ids if i),
            frozenset(i.lower() for i in client_ids if i),
        )

    def covers(self, obj: DirectoryObject) -> bool:
        return obj.object_id in self.object_ids or obj.app_id in self.client_ids


@dataclass(frozen=True, slots=True)
class InventoryRow:
    """One credential as exported (and as ``secretwarden inventory`` prints it)."""

    collection: Collection
    object_id: str
    app_id: str
    app_name: str
    key_id: str
    kind: Literal["password", "certificate"]
    credential_name: str
    end: float
    managed: bool


@dataclass(frozen=True, slots=True)
class InventoryView:
    """What the last good listings say, filtered: the rows and the counts."""

    rows: tuple[InventoryRow, ...] = ()
    applications: int = 0
    service_principals: int = 0
    credentials: tuple[tuple[str, int], ...] = ()  # (kind, n) of applications
    sp_credentials: tuple[tuple[str, int], ...] = ()


def build_view(
    listings: Iterable[Listing], filters: InventoryFilters, managed: ManagedApps
) -> InventoryView:
    """Rows sorted by expiry. An object without credentials exports none; an expired
    credential stays (its timestamp is in the past) until it leaves the app; a keyId
    seen twice on one object is exported once (a duplicate series fails the scrape)."""
    rows: list[InventoryRow] = []
    counts = {"applications": 0, "servicePrincipals": 0}
    kinds: dict[str, Tally[str]] = {"applications": Tally(), "servicePrincipals": Tally()}
    for listing in listings:
        coll = listing.collection
        for obj in listing.objects.values():
            if not filters.admits(obj):
                continue
            counts[coll] += 1
            is_managed = coll == "applications" and managed.covers(obj)
            seen: set[tuple[str, str]] = set()
            for cred in obj.credentials:
                if cred.end is None or (cred.kind, cred.key_id) in seen:
                    continue
                seen.add((cred.kind, cred.key_id))
                kinds[coll][cred.kind] += 1
                rows.append(
                    InventoryRow(
                        collection=coll,
                        object_id=obj.object_id,
                        app_id=obj.app_id,
                        app_name=obj.display_name,
                        key_id=cred.key_id,
                        kind=cred.kind,
                        credential_name=cred.display_name or "",
                        end=cred.end,
                        managed=is_managed,
                    )
                )
    rows.sort(key=lambda r: (r.end, r.app_name, r.key_id))
    return InventoryView(
        rows=tuple(rows),
        applications=counts["applications"],
        service_principals=counts["servicePrincipals"],
        credentials=tuple((k, kinds["applications"][k]) for k in KINDS),
        sp_credentials=tuple((k, kinds["servicePrincipals"][k]) for k in KINDS),
    )
