"""The tenant's directory: every app registration and service principal, with their
password and key credentials, as the inventory lists them (see docs/sandbox.md).

- The portal's own app registration is always in it, read live from the Graph view of
  the portal (so a secret the daemon adds or removes is a directory change too).
- ``POST directory`` fills it with synthetic objects, deterministic for a seed.
- Every change gets a sequence number in one change log; Graph's list and delta routes
  (sandbox/directory_api.py) page over it, and the truth counts come from the same data.
"""

from __future__ import annotations

import base64
import bisect
import gc
import json
import random
import re
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sandbox.wire import graph_time, parse_time

Kind = Literal["applications", "servicePrincipals"]
KINDS: tuple[Kind, ...] = ("applications", "servicePrincipals")

# Expiries of synthetic credentials lie in [now - 365 d, now + 730 d] but never within
# BOUNDARY_GUARD of a truth boundary (now, now + 7 d, now + 30 d) at creation, so the
# truth counts stay the same for that long while a test runs.
BOUNDARY_GUARD = timedelta(hours=1)
_BOUNDARIES = (timedelta(0), timedelta(days=7), timedelta(days=30))
MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"


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

    def _bump(self, kind: Kind, obj: DirObject) -> None:
        obj.seq = self._next_seq()
        obj.rendered.clear()
        self.collections[kind].log.append((self.seq, obj.id))

    def put(self, obj: DirObject) -> None:
        """Add ``obj`` or record that it changed."""
        coll = self.collections[obj.kind]
        if obj.id not in coll.objects:
            coll.objects[obj.id] = obj
            coll.removed.pop(obj.id, None)
            coll._ordered = None
        self._bump(obj.kind, obj)

    def touch(self, obj: DirObject) -> None:
        self._bump(obj.kind, obj)

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
        else:
            obj.display_name, obj.tags = body["displayName"], list(body.get("tags", []))
            obj.passwords, obj.keys = passwords, keys
        self.put(obj)

    # -- synthetic objects --------------------------------------------------------

    def generate(self, applications: int, service_principals: int, seed: int) -> None:
        """Replace the synthetic objects with ``applications`` app registrations and
        ``service_principals`` service principals, the same for the same seed."""
        # Tens of thousands of small objects: the cyclic GC would rescan them all many times.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for kind in KINDS:
                coll = self.collections[kind]
                for obj in [o for o in coll.objects.values() if not o.portal]:
                    self.delete(kind, obj.id, permanent=True)
            gen = Generator(seed, self.now(), self.tenant_id)
            self.seed = seed
            apps = [gen.application() for _ in range(applications)]
            sps = [
                gen.service_principal(apps[i] if i < len(apps) and gen.chance(0.7) else None)
                for i in range(service_principals)
            ]
            for obj in (*apps, *sps):
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


# -- the generator ------------------------------------------------------------------

_COMPANIES = (
    "Contoso", "Fabrikam", "Northwind", "Tailspin", "Woodgrove", "Adventure Works",
    "Litware", "Proseware", "Wide World Importers", "Alpine Ski House", "Datum", "Relecloud",
)  # fmt: skip
_SYSTEMS = (
    "HR Portal", "Payroll API", "Inventory Sync", "CRM Connector", "Data Lake Ingest",
    "Build Agent", "Backup Service", "Monitoring", "Mobile App", "Reporting",
    "SharePoint Migration", "Teams Bot", "Terraform", "GitHub Actions", "Jenkins",
    "Power BI Embedded", "SAP Bridge", "Ticketing", "SCIM Provisioning", "Intranet",
)  # fmt: skip
_SUFFIXES = ("", "", "", " (dev)", " (test)", " - prod", " - staging", " v2")
# Names a label exporter must escape or keep intact: quotes, backslashes, non-ASCII.
_ODD_NAMES = (
    'Legacy "SOAP" Bridge', "C:\\Tools\\Sync", "Zoë's Café API", "日本語 ポータル",
    "Ops | Alerts & Paging", "   padded name   ",
)  # fmt: skip
_TAGS = (
    "HideApp", "WindowsAzureActiveDirectoryIntegratedApp", "team:payments", "team:platform",
    "env:prod", "env:dev", "owner:it-ops", "criticality:high",
)  # fmt: skip
_SECRET_NAMES = (
    "Client secret", "CI/CD", "terraform", "prod", "key1", "Rotated by secretwarden",
    "Password uploaded on Tue Mar 05 2024", None,
)  # fmt: skip
_AUDIENCES = ("AzureADMyOrg", "AzureADMyOrg", "AzureADMultipleOrgs")
_NOT_SUBJECT = re.compile(r"[^\w-]")
_HINT_ALPHABET = string.ascii_letters + string.digits + "~_.-"


class Generator:
    """Synthetic directory objects from one seeded random stream.

    Everything but time is a function of the seed; times are offsets from ``now``.
    """

    def __init__(self, seed: int, now: datetime, tenant_id: str) -> None:
        self.rng = random.Random(seed)  # noqa: S311 (synthetic data, reproducible by design)
        self.now = now
        self.tenant_id = tenant_id

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def guid(self) -> str:
        """A random (version 4, RFC 4122 variant) GUID, lower-case as Graph writes them."""
        h = f"{self.rng.getrandbits(128):032x}"
        variant = "89ab"[int(h[16], 16) & 3]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"

    def _name(self) -> str:
        rng = self.rng
        if rng.random() < 0.01:
            return rng.choice(_ODD_NAMES)
        return f"{rng.choice(_COMPANIES)} {rng.choice(_SYSTEMS)}{rng.choice(_SUFFIXES)}"

    def _expiry(self) -> datetime:
        while True:
            offset = timedelta(seconds=self.rng.randint(-365 * 86400, 730 * 86400))
            if all(abs(offset - b) > BOUNDARY_GUARD for b in _BOUNDARIES):
                return self.now + offset

    def _start(self, end: datetime) -> datetime:
        lifetime = timedelta(days=self.rng.choice((90, 180, 365, 730)))
        recent = self.now - timedelta(seconds=self.rng.randint(60, 30 * 86400))
        return min(end - lifetime, recent)

    def password(self) -> DirCredential:
        end = self._expiry()
        return DirCredential(
            kind="password",
            key_id=self.guid(),
            display_name=self.rng.choice(_SECRET_NAMES),
            start=self._start(end),
            end=end,
            hint="".join(self.rng.choice(_HINT_ALPHABET) for _ in range(3)),
        )

    def certificate(self, subject: str, usage: str = "Verify") -> DirCredential:
        end = self._expiry()
        thumbprint = self.rng.getrandbits(160).to_bytes(20, "big")
        return DirCredential(
            kind="certificate",
            key_id=self.guid(),
            display_name=f"CN={subject}",
            start=self._start(end),
            end=end,
            custom_key_identifier=base64.b64encode(thumbprint).decode(),
            usage=usage,
        )

    def _created(self) -> str:
        return graph_time(self.now - timedelta(seconds=self.rng.randint(86400, 2000 * 86400)))

    def application(self) -> DirObject:
        rng = self.rng
        name = self._name()
        app_id = self.guid()
        subject = _NOT_SUBJECT.sub("", name.lower().replace(" ", "-"))
        passwords = [self.password() for _ in range(rng.choices((0, 1, 2, 3), (15, 45, 30, 10))[0])]
        keys = [
            self.certificate(subject or "app")
            for _ in range(rng.choices((0, 1, 2), (55, 35, 10))[0])
        ]
        tags = sorted(rng.sample(_TAGS, rng.randint(1, 3))) if rng.random() < 0.3 else []
        return DirObject(
            kind="applications",
            id=self.guid(),
            app_id=app_id,
            display_name=name,
            tags=tags,
            passwords=passwords,
            keys=keys,
            props={
                "applicationTemplateId": None,
                "createdDateTime": self._created(),
                "description": None,
                "identifierUris": [f"api://{app_id}"] if rng.random() < 0.4 else [],
                "notes": None,
                "publisherDomain": "contoso.onmicrosoft.com",
                "signInAudience": rng.choice(_AUDIENCES),
            },
        )

    def service_principal(self, app: DirObject | None) -> DirObject:
        """The service principal of ``app`` (this tenant's), else another tenant's app
        (Microsoft's or a vendor's) or, now and then, a managed identity."""
        rng = self.rng
        sp_type = "Application"
        if app is not None:
            name, app_id, owner = app.display_name, app.app_id, self.tenant_id
        elif rng.random() < 0.2:
            name, app_id, owner, sp_type = (
                f"mi-{rng.choice(_SYSTEMS).lower().replace(' ', '-')}",
                self.guid(),
                None,
                "ManagedIdentity",
            )
        else:
            name, app_id = f"{rng.choice(_COMPANIES)} {rng.choice(_SYSTEMS)} (vendor)", self.guid()
            owner = MICROSOFT_TENANT if rng.random() < 0.5 else self.guid()
        passwords: list[DirCredential] = []
        keys: list[DirCredential] = []
        if sp_type == "ManagedIdentity":
            keys = [self.certificate(app_id)]  # the identity's own, renewed by Azure
        elif rng.random() < 0.15:  # SAML signing: a Sign and Verify pair, maybe a secret
            sign = self.certificate("Microsoft Azure Federated SSO Certificate", "Sign")
            verify = DirCredential(
                kind="certificate",
                key_id=self.guid(),
                display_name=sign.display_name,
                start=sign.start,
                end=sign.end,
                custom_key_identifier=sign.custom_key_identifier,
                usage="Verify",
            )
            keys = [sign, verify]
            if rng.random() < 0.5:
                passwords = [self.password()]
        sp_id = self.guid()
        return DirObject(
            kind="servicePrincipals",
            id=sp_id,
            app_id=app_id,
            display_name=name,
            tags=["WindowsAzureActiveDirectoryIntegratedApp"] if sp_type == "Application" else [],
            passwords=passwords,
            keys=keys,
            props={
                "accountEnabled": True,
                "appDisplayName": name if sp_type == "Application" else None,
                "appOwnerOrganizationId": owner,
                "createdDateTime": self._created(),
                "description": None,
                "servicePrincipalNames": [app_id],
                "servicePrincipalType": sp_type,
                "signInAudience": (
                    "AzureADMultipleOrgs" if owner == MICROSOFT_TENANT else "AzureADMyOrg"
                ),
            },
        )
