"""Synthetic app registrations and service principals for the directory, the same for
the same seed (docs/sandbox.md, "The synthetic directory")."""

from __future__ import annotations

import base64
import random
import re
import string
from datetime import datetime, timedelta

from sandbox.directory import DirCredential, Directory, DirObject
from sandbox.wire import graph_time

# Expiries of synthetic credentials lie in [now - 365 d, now + 730 d] but never within
# BOUNDARY_GUARD of a truth boundary (now, now + 7 d, now + 30 d) at creation, so the
# truth counts stay the same for that long while a test runs.
BOUNDARY_GUARD = timedelta(hours=1)
_BOUNDARIES = (timedelta(0), timedelta(days=7), timedelta(days=30))
MICROSOFT_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"

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


def populate(directory: Directory, applications: int, service_principals: int, seed: int) -> None:
    """Replace the directory's synthetic objects with ``applications`` app registrations
    and ``service_principals`` service principals (about 70 % of them the apps' own)."""
    gen = Generator(seed, directory.now(), directory.tenant_id)
    apps = [gen.application() for _ in range(applications)]
    sps = [
        gen.service_principal(apps[i] if i < len(apps) and gen.chance(0.7) else None)
        for i in range(service_principals)
    ]
    directory.replace_synthetic([*apps, *sps], seed)
