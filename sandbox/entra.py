"""Entra ID: the discovery document and the client-credentials token endpoint.

Tokens are opaque random strings the sandbox remembers (client, audience, expiry); no
secret ever goes into one. :func:`authenticate` is the single rule for "does this secret
work", used by the HTTP endpoint and by the App Service's own sign-in alike.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from urllib.parse import unquote_plus

from aiohttp import web

from sandbox.assertions import JWT_BEARER, assertion_problem
from sandbox.portal import Portal
from sandbox.wire import entra_error, json_response

GRAPH_AUDIENCES = frozenset(
    {
        "https://graph.microsoft.com",
        "https://graph.microsoft.us",
        "https://microsoftgraph.chinacloudapi.cn",
        "00000003-0000-0000-c000-000000000000",
    }
)
ARM_AUDIENCES = frozenset(
    {
        "https://management.azure.com",
        "https://management.core.windows.net",
        "https://management.usgovcloudapi.net",
        "https://management.core.usgovcloudapi.net",
        "https://management.chinacloudapi.cn",
        "https://management.core.chinacloudapi.cn",
    }
)
VAULT_AUDIENCES = frozenset(
    {"https://vault.azure.net", "https://vault.usgovcloudapi.net", "https://vault.azure.cn"}
)

_DISCOVERY_CACHE = "max-age=86400, private"


@dataclass(frozen=True, slots=True)
class Granted:
    access_token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    error: str
    code: int
    message: str

    def response(self, portal: Portal) -> web.Response:
        return entra_error(self.status, self.error, self.code, self.message, portal.now())


def audience_of(scope: str) -> str | None:
    for item in scope.split():
        if item.endswith("/.default"):
            aud = item[: -len("/.default")].rstrip("/")
            if aud in GRAPH_AUDIENCES | ARM_AUDIENCES | VAULT_AUDIENCES:
                return aud
            return None
    return None


def authenticate(
    portal: Portal,
    tenant: str,
    client_id: str,
    client_secret: str,
    scope: str,
    *,
    assertion: str | None = None,
) -> Granted | Refused:
    """The token endpoint's decision for a client-credentials request: with a client
    secret, or (the operator only) a certificate's client assertion."""
    ids = portal.ids
    if tenant.lower() != ids.tenant_id:
        return Refused(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud.",
        )
    audience = audience_of(scope)
    if audience is None:
        return Refused(
            400,
            "invalid_scope",
            70011,
            f"The provided value for the input parameter 'scope' is not valid. "
            f"The scope {scope} is not valid.",
        )
    if client_id == ids.operator_client_id and assertion is not None:
        problem = assertion_problem(
            assertion, client_id, portal.operator_certificates, portal.now()
        )
        if problem is not None:
            return Refused(401, "invalid_client", *problem)
    elif client_id == ids.operator_client_id:
        if not client_secret or not hmac.compare_digest(
            client_secret.encode(), ids.operator_client_secret.encode()
        ):
            return _invalid_secret(client_id)
    elif client_id == ids.app_client_id:
        refused, key_id = _check_app_secret(portal, client_secret)
        portal.record_signin(
            key_id,
            refused.code if refused is not None else 0,
            refused.message if refused is not None else "",
            audience,
        )
        if refused is not None:
            return refused
    else:
        return Refused(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory "
            f"'{ids.tenant_id}'. This can happen if the application has not been installed by "
            "the administrator of the tenant or consented to by any user in the tenant. You "
            "may have sent your authentication request to the wrong tenant.",
        )
    token, lifetime = portal.issue_token(client_id, audience)
    return Granted(token, lifetime)


def _invalid_secret(client_id: str) -> Refused:
    return Refused(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        f"client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
    )


def _check_app_secret(portal: Portal, client_secret: str) -> tuple[Refused | None, str | None]:
    """The refusal (None: accepted) and the keyId of the credential the secret matched
    (None when it matched none that Entra knows yet)."""
    now = portal.now()
    client_id = portal.ids.app_client_id
    matches = [
        c
        for c in portal.credentials
        if client_secret and hmac.compare_digest(c.secret_text.encode(), client_secret.encode())
    ]
    # A secret Entra has not yet replicated is rejected like a wrong one.
    live = [c for c in matches if c.propagated_at <= now]
    if not live:
        return _invalid_secret(client_id), None
    valid = [c for c in live if c.end > now]
    if not valid:
        return Refused(
            401,
            "invalid_client",
            7000222,
            f"The provided client secret keys for app '{client_id}' are expired. Visit the "
            "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or "
            "consider using certificate credentials for added security: "
            "https://aka.ms/certCreds.",
        ), live[0].key_id
    return None, valid[0].key_id


class Entra:
    def __init__(self, portal: Portal, base_url: str) -> None:
        self.portal = portal
        self.base_url = base_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid),
            web.post("/{tenant}/oauth2/v2.0/token", self.token),
        ]

    async def openid(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if tenant.lower() != self.portal.ids.tenant_id:
            refused = entra_error(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                "ID and are signing into the correct cloud.",
                self.portal.now(),
            )
            # Like the success, the refusal is cacheable for a day (the real service's).
            refused.headers["Cache-Control"] = _DISCOVERY_CACHE
            return refused
        base = f"{self.base_url}/{tenant}"
        body = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{self.base_url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }
        return json_response(body, headers={"Cache-Control": _DISCOVERY_CACHE})

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {k: str(v) for k, v in form.items()}
        client_id = fields.get("client_id", "")
        client_secret = fields.get("client_secret", "")
        basic = request.headers.get("Authorization", "")
        if basic.lower().startswith("basic "):
            try:
                user, _, pw = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                user, pw = "", ""
            client_id = client_id or unquote_plus(user)
            client_secret = client_secret or unquote_plus(pw)
        now = self.portal.now()
        grant = fields.get("grant_type", "")
        if grant != "client_credentials":
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
                now,
            )
        if not client_id:
            return entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
                now,
            )
        assertion = fields.get("client_assertion") or None
        if assertion is not None and fields.get("client_assertion_type") != JWT_BEARER:
            assertion = None
        if not client_secret and assertion is None:
            return entra_error(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type.",
                now,
            )
        outcome = authenticate(
            self.portal,
            request.match_info["tenant"],
            client_id,
            client_secret,
            fields.get("scope", ""),
            assertion=assertion,
        )
        if isinstance(outcome, Refused):
            return outcome.response(self.portal)
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": outcome.expires_in,
                "ext_expires_in": outcome.expires_in,
                "access_token": outcome.access_token,
            },
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
        )
