"""Sign-in records: which credential each token request of the backend app used.

Entra writes one per client-credentials request of the backend API app (the app's own
sign-ins included); Graph serves them under ``/beta/auditLogs/signIns`` (see
:mod:`sandbox.auditlogs`) some time after they happen.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandbox.wire import graph_time

if TYPE_CHECKING:
    from sandbox.portal import Portal

GRAPH_RESOURCE_ID = "00000003-0000-0000-c000-000000000000"


@dataclass(frozen=True, slots=True)
class SignIn:
    id: str
    at: datetime
    app_id: str
    key_id: str | None  # the credential that matched the secret (None: none did)
    error_code: int  # 0 for success, else the AADSTS number
    failure_reason: str
    resource: str

    @classmethod
    def new(
        cls, portal: Portal, key_id: str | None, error_code: int, reason: str, resource: str
    ) -> SignIn:
        return cls(
            id=str(uuid.uuid4()),
            at=portal.now(),
            app_id=portal.ids.app_client_id,
            key_id=key_id,
            error_code=error_code,
            failure_reason=reason,
            resource=resource,
        )

    def to_graph(self, display_name: str) -> dict[str, Any]:
        """A beta ``signIn`` of a service principal, as Graph lists it."""
        sp_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{self.app_id}"))
        graph = "graph.microsoft.com" in self.resource or self.resource == GRAPH_RESOURCE_ID
        return {
            "id": self.id,
            "createdDateTime": graph_time(self.at),
            "appId": self.app_id,
            "appDisplayName": display_name,
            "correlationId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.id)),
            "ipAddress": "127.0.0.1",
            "isInteractive": False,
            "resourceDisplayName": "Microsoft Graph" if graph else self.resource,
            "resourceId": GRAPH_RESOURCE_ID if graph else None,
            "servicePrincipalId": sp_id,
            "servicePrincipalName": display_name,
            "servicePrincipalCredentialKeyId": self.key_id,
            "servicePrincipalCredentialThumbprint": "",
            "signInEventTypes": ["servicePrincipal"],
            "status": {
                "errorCode": self.error_code,
                "failureReason": self.failure_reason or None,
                "additionalDetails": None,
            },
        }
