"""Sign-in records: which credential each token request of the backend app used.

Entra writes one per token request of the backend API app: its client-credentials
requests (the app's workers and anyone else holding its secret) as service-principal
sign-ins carrying the credential's keyId, and the user sign-ins its workers redeem with
the secret (authorization code, on-behalf-of) as user sign-ins without one. Graph serves
them under ``/beta/auditLogs/signIns`` (see :mod:`sandbox.auditlogs`) once each record's
``visible_at`` has passed: late, out of order, sometimes twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sandbox.wire import graph_time

GRAPH_RESOURCE_ID = "00000003-0000-0000-c000-000000000000"
SignInKind = Literal["servicePrincipal", "interactiveUser"]
# The user the portal's user sign-ins belong to, and where that user's browser is.
PORTAL_USER = ("admin@contoso.onmicrosoft.com", "5d2b6b1e-0000-4000-8000-00000000a001")
USER_IP = "198.51.100.23"


@dataclass(frozen=True, slots=True)
class SignIn:
    id: str
    at: datetime
    app_id: str
    key_id: str | None  # the credential that matched the secret (None: none did, or a user)
    error_code: int  # 0 for success, else the AADSTS number
    failure_reason: str
    resource: str
    ip_address: str
    correlation_id: str
    kind: SignInKind
    visible_at: datetime  # when the log lists it

    @classmethod
    def new(
        cls,
        at: datetime,
        app_id: str,
        key_id: str | None,
        error_code: int,
        reason: str,
        resource: str,
        *,
        ip_address: str,
        correlation_id: str | None,
        kind: SignInKind,
        visible_at: datetime,
    ) -> SignIn:
        return cls(
            id=str(uuid.uuid4()),
            at=at,
            app_id=app_id,
            key_id=key_id,
            error_code=error_code,
            failure_reason=reason,
            resource=resource,
            ip_address=ip_address,
            correlation_id=correlation_id or str(uuid.uuid4()),
            kind=kind,
            visible_at=visible_at,
        )

    def again(self, visible_at: datetime) -> SignIn:
        """The same record delivered a second time (same id), listed at ``visible_at``."""
        return replace(self, visible_at=visible_at)

    def to_graph(self, display_name: str) -> dict[str, Any]:
        """A beta ``signIn``, as Graph lists it."""
        sp_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{self.app_id}"))
        graph = "graph.microsoft.com" in self.resource or self.resource == GRAPH_RESOURCE_ID
        user = self.kind == "interactiveUser"
        body: dict[str, Any] = {
            "id": self.id,
            "createdDateTime": graph_time(self.at),
            "appId": self.app_id,
            "appDisplayName": display_name,
            "correlationId": self.correlation_id,
            "ipAddress": self.ip_address,
            "isInteractive": user,
            "resourceDisplayName": "Microsoft Graph" if graph else self.resource,
            "resourceId": GRAPH_RESOURCE_ID if graph else None,
            "servicePrincipalId": sp_id,
            "servicePrincipalName": display_name,
            "servicePrincipalCredentialKeyId": None if user else self.key_id,
            "servicePrincipalCredentialThumbprint": "",
            "signInEventTypes": [self.kind],
            "status": {
                "errorCode": self.error_code,
                "failureReason": self.failure_reason or None,
                "additionalDetails": None,
            },
        }
        if user:
            upn, oid = PORTAL_USER
            body.update(userPrincipalName=upn, userId=oid, userDisplayName="Portal Admin")
            body["clientCredentialType"] = "clientSecret"
        else:
            body["clientCredentialType"] = "clientSecret"
        return body
