"""The tenant's directory: every app registration and service principal, with their
password and key credentials, as the inventory lists them (see docs/sandbox.md).

- The portal's own app registration is always in it, read live from the Graph view of
  the portal (so a secret the daemon adds or removes is a directory change too).
- ``POST directory`` fills it with synthetic objects (sandbox/directory_gen.py).
- Every change gets a sequence number in one change log; Graph's list and delta routes
  (sandbox/directory_api.py) page over it, and the truth counts come from the same data;
  the admin routes (sandbox/directory_admin.py) change it.
"""

from __future__ import annotations

import bisect
import gc
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sandbox.wire import graph_time, parse_time

Kind = Literal["applications", "servicePrincipals"]
KINDS: tuple[Kind, ...] = ("applications", "servicePrincipals")


@dataclass(slots=True)
class DirCredential:
    """A passwordCredential (``kind="password"``) or keyCredential (``"certificate"``)."""

    kind: Literal["password", "certificate"]
    key_id: str
    display_name: str | None
    start: datetime
    end: datetime
    hint: str | None = None  # passwords: the first three characters of the secret
    custom_key_identifier: str | None = None  # certificates: base64 of the thumbprint
    usage: str = "Verify"  # certificates: Verify or Sign
    _json: dict[str, Any] | None = None  # rendered once; call changed() after an edit

    def changed(self) -> None:
        self._json = None

    def to_json(self) -> dict[str, Any]:
        if self._json is None:
            self._json = self._render()
        return self._json

    def _render(self) -> dict[str, Any]:
        if self.kind == "password":
            return {
                "customKeyIdentifier": None,
                "displayName": self.display_name,
                "endDateTime": graph_time(self.end),
                "hint": self.hint,
                "keyId": self.key_id,
                "secretText": None,
                "startDateTime": graph_time(self.start),
            }
        return {
            "customKeyIdentifier": self.custom_key_identifier,
            "displayName": self.display_name,
            "endDateTime": graph_time(self.end),
            "key": None,
            "keyId": self.key_id,
            "startDateTime": graph_time(self.start),
            "type": "AsymmetricX509Cert",
            "usage": self.usage,
        }

    @classmethod
    def from_json(
        cls, kind: Literal["password", "certificate"], d: dict[str, Any]
    ) -> DirCredential:
        return cls(
            kind=kind,
            key_id=str(d["keyId"]),
            display_name=d.get("displayName"),
            start=parse_time(d["startDateTime"]),
            end=parse_time(d["endDateTime"]),
            hint=d.get("hint"),
            custom_key_identifier=d.get("customKeyIdentifier"),
            usage=d.get("usage") or "Verify",
        )


@dataclass(slots=True, eq=False)
class DirObject:
    """One application or service principal. ``props`` holds the properties that never
    change; the ones the admin API can change are fields. Rendered JSON is cached per
    selection until the object changes (see :meth:`touch`)."""

    kind: Kind
    id: str
    app_id: str
    display_name: str
    tags: list[str]
    passwords: list[DirCredential]
    keys: list[DirCredential]
    props: dict[str, Any]
    order: int = 0  # position in listing order, fixed at creation
    seq: int = 0  # sequence number of the last change
    portal: bool = False  # the portal's own app registration (read from the portal)
    rendered: dict[tuple[str, ...], bytes] = field(default_factory=dict)

    def credentials(self) -> Iterator[DirCredential]:
        yield from self.passwords
        yield from self.keys

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deletedDateTime": None,
            "appId": self.app_id,
            "displayName": self.display_name,
            **self.props,
            "tags": list(self.tags),
            "keyCredentials": [c.to_json() for c in self.keys],
            "passwordCredentials": [c.to_json() for c in self.passwords],
        }

    def render(self, fields: tuple[str, ...]) -> bytes:
        """The JSON of the ``fields`` (all properties when empty), cached."""
        cached = self.rendered.get(fields)
        if cached is None:
            full = self.to_json()
            body = {f: full[f] for f in fields} if fields else full
            cached = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            self.rendered[fields] = cached
        return cached


APPLICATION_PROPERTIES = (
    "id", "deletedDateTime", "appId", "applicationTemplateId", "createdDateTime",
    "description", "displayName", "identifierUris", "notes", "publisherDomain",
    "signInAudience", "tags", "keyCredentials", "passwordCredentials",
)  # fmt: skip
SERVICE_PRINCIPAL_PROPERTIES = (
    "id", "deletedDateTime", "accountEnabled", "appDisplayName", "appId",
    "appOwnerOrganizationId", "createdDateTime", "description", "displayName",
    "servicePrincipalNames", "servicePrincipalType", "signInAudience", "tags",
    "keyCredentials", "passwordCredentials",
)  # fmt: skip
PROPERTIES: dict[Kind, tuple[str, ...]] = {
    "applications": APPLICATION_PROPERTIES,
    "servicePrincipals": SERVICE_PRINCIPAL_PROPERTIES,
}


@dataclass(slots=True)
class Removed:
    seq: int
    reason: Literal["changed", "deleted"]


@dataclass(slots=True)
class Collection:
    """One kind's objects, their listing order and its change log."""

    objects: dict[str, DirObject] = field(default_factory=dict)
    removed: dict[str, Removed] = field(default_factory=dict)
    log: list[tuple[int, str]] = field(default_factory=list)  # (seq, id), seq ascending
    # The properties an update changed, per seq (absent: a new object, or not known).
    changed: dict[int, tuple[str, ...]] = field(default_factory=dict)
    _ordered: list[DirObject] | None = None
    _orders: list[int] = field(default_factory=list)

    def ordered(self) -> list[DirObject]:
        if self._ordered is None:
            self._ordered = sorted(self.objects.values(), key=lambda o: o.order)
            self._orders = [o.order for o in self._ordered]
        return self._ordered

    def after(self, order: int) -> int:
        """Index in :meth:`ordered` of the first object listed after ``order``."""
        self.ordered()
        return bisect.bisect_right(self._orders, order)

    def last_change(self, object_id: str) -> int | None:
        obj = self.objects.get(object_id)
        if obj is not None:
            return obj.seq
        gone = self.removed.get(object_id)
        return gone.seq if gone is not None else None


class Directory:
    """All directory objects of the tenant; the portal's app is read through
    ``portal_app`` (the Graph JSON of ``GET /applications/{id}``) on every :meth:`sync`."""

    def __init__(self, now: Callable[[], datetime], tenant_id: str) -> None:
        self.now = now
        self.tenant_id = tenant_id
        self.portal_app: Callable[[], dict[str, Any]] | None = None
        self.clear()

    def clear(self) -> None:
        """Back to the portal's app alone, with a new generation (old tokens are stale)."""
        self.generation = uuid.uuid4().hex[:8]
        self.seq = 0
        self.stamps: list[datetime] = []  # stamps[seq - 1]: when change seq was made
        self.next_order = 1  # 0 is the portal's app: it lists first
        self.seed: int | None = None
        self.collections: dict[Kind, Collection] = {k: Collection() for k in KINDS}
        self._portal_fingerprint: str | None = None

    # -- changes -----------------------------------------------------------------

    def _next_seq(self) -> int:
        self.seq += 1
        self.stamps.append(self.now())
        return self.seq

    def visible_seq(self, lag_seconds: float) -> int:
        """The last change a delta may report, when changes show ``lag_seconds`` late."""
        if lag_seconds <= 0:
            return self.seq
        cutoff = self.now() - timedelta(seconds=lag_seconds)
        return bisect.bisect_right(self.stamps, cutoff)

    def _bump(self, kind: Kind, obj: DirObject, changed: tuple[str, ...] | None) -> None:
        obj.seq = self._next_seq()
        obj.rendered.clear()
        coll = self.collections[kind]
        coll.log.append((self.seq, obj.id))
        if changed is not None:
            coll.changed[self.seq] = changed

    def put(self, obj: DirObject, changed: tuple[str, ...] | None = None) -> None:
        """Add ``obj`` or record that it changed (``changed``: which properties, when
        known; a delta round may then carry only those)."""
        coll = self.collections[obj.kind]
        if obj.id not in coll.objects:
            coll.objects[obj.id] = obj
            coll.removed.pop(obj.id, None)
            coll._ordered = None
            changed = None
        self._bump(obj.kind, obj, changed)

    def touch(self, obj: DirObject, changed: tuple[str, ...] | None = None) -> None:
        self._bump(obj.kind, obj, changed)

    def delete(self, kind: Kind, object_id: str, *, permanent: bool = False) -> bool:
        coll = self.collections[kind]
        obj = coll.objects.pop(object_id, None)
        if obj is None:
            return False
        coll._ordered = None
        self._next_seq()
        coll.removed[object_id] = Removed(self.seq, "deleted" if permanent else "changed")
        coll.log.append((self.seq, object_id))
        return True

    def sync(self) -> None:
        """Bring the portal's app up to date with the portal (a change is logged)."""
        if self.portal_app is None:
            return
        body = self.portal_app()
        fingerprint = json.dumps(body, sort_keys=True)
        if fingerprint == self._portal_fingerprint:
            return
        self._portal_fingerprint = fingerprint
        coll = self.collections["applications"]
        obj = coll.objects.get(body["id"])
        passwords = [DirCredential.from_json("password", c) for c in body["passwordCredentials"]]
        keys = [DirCredential.from_json("certificate", c) for c in body.get("keyCredentials", [])]
        if obj is None:
            known = ("id", "deletedDateTime", "appId", "displayName", "tags")
            props = {
                k: v
                for k, v in body.items()
                if k in APPLICATION_PROPERTIES
                and k not in known
                and k not in ("keyCredentials", "passwordCredentials")
            }
            obj = DirObject(
                kind="applications",
                id=body["id"],
                app_id=body["appId"],
                display_name=body["displayName"],
                tags=list(body.get("tags", [])),
                passwords=passwords,
                keys=keys,
                props=props,
                order=0,
                portal=True,
            )
            changed = None
        else:
            before = obj.to_json()
            obj.display_name, obj.tags = body["displayName"], list(body.get("tags", []))
            obj.passwords, obj.keys = passwords, keys
            after = obj.to_json()
            changed = tuple(k for k in after if after[k] != before.get(k))
        self.put(obj, changed)

    # -- synthetic objects --------------------------------------------------------

    def replace_synthetic(self, objects: list[DirObject], seed: int) -> None:
        """Delete every synthetic object (permanently, as a delta shows) and add
        ``objects`` in their order (see sandbox/directory_gen.py)."""
        # Tens of thousands of small objects: the cyclic GC would rescan them all many times.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for kind in KINDS:
                coll = self.collections[kind]
                for obj in [o for o in coll.objects.values() if not o.portal]:
                    self.delete(kind, obj.id, permanent=True)
            self.seed = seed
            for obj in objects:
                obj.order = self.next_order
                self.next_order += 1
                self.put(obj)
        finally:
            if gc_was_enabled:
                gc.enable()

    def find(self, kind: Kind, object_id: str) -> DirObject | None:
        return self.collections[kind].objects.get(object_id)

    # -- the truth ------------------------------------------------------------------

    def truth(self) -> dict[str, Any]:
        """Counts a test checks an inventory against (application credentials only).

        With ``now`` the sandbox clock: expired is ``end <= now``; within N days is
        ``now < end <= now + N days`` (so the 7-day ones are among the 30-day ones).
        """
        self.sync()
        now = self.now()
        week, month = now + timedelta(days=7), now + timedelta(days=30)
        counts = {"password": 0, "certificate": 0}
        expired = within_7 = within_30 = 0
        for obj in self.collections["applications"].objects.values():
            for c in obj.credentials():
                counts[c.kind] += 1
                if c.end <= now:
                    expired += 1
                elif c.end <= month:
                    within_30 += 1
                    within_7 += c.end <= week
        sp_counts = {"password": 0, "certificate": 0}
        for obj in self.collections["servicePrincipals"].objects.values():
            for c in obj.credentials():
                sp_counts[c.kind] += 1
        return {
            "applications": len(self.collections["applications"].objects),
            "service_principals": len(self.collections["servicePrincipals"].objects),
            "credentials": counts,
            "expiring_within_7_days": within_7,
            "expiring_within_30_days": within_30,
            "expired": expired,
            "service_principal_credentials": sp_counts,
            "now": now.isoformat(),
            "seed": self.seed,
        }
