"""One line saying what to fix, for the Azure answers an operator's setup causes.

Keyed by what the service itself said (the AADSTS code, Graph's ``error.code``, Key
Vault's code and inner code, ARM's code), never by message text. An answer that is
not listed gets no advice: the service's own code and message still say what it is.
Each line names the config key or the permission to change (docs/permissions.md).
"""

from __future__ import annotations

_PERMISSIONS = "docs/permissions.md"

# Entra's token endpoint, for the operator's own sign-in.
_AADSTS: dict[int, str] = {
    7000215: (
        "identity.client_secret_file must hold the client secret's Value (shown once, when "
        "it was added), not its Secret ID; if the secret was deleted, add a new one"
    ),
    7000222: (
        "the operator's own client secret has expired: add a new one to the operator's app "
        "registration and put its Value in identity.client_secret_file"
    ),
    90002: (
        "tenant_id names no tenant in this cloud: copy the Directory (tenant) ID from the "
        "app registration's Overview, and check cloud.name"
    ),
    900023: "tenant_id is not a tenant ID or domain: copy the Directory (tenant) ID",
    700016: (
        "identity.client_id names no app in this tenant: copy the operator's Application "
        "(client) ID, and check tenant_id"
    ),
    7000216: "identity.kind 'client_secret' needs a non-empty identity.client_secret_file",
    700027: (
        "the certificate in identity.client_certificate_file is not one of the operator "
        "app's certificates (or has expired): upload its public part to the app registration"
    ),
    7000112: "the operator's app registration is disabled in this tenant: enable it",
    50058: "the operator's service principal is missing or disabled in this tenant",
}

_GRAPH: dict[str, str] = {
    "Authorization_RequestDenied": (
        "grant the operator the Graph application permission Application.ReadWrite.OwnedBy "
        f"(with admin consent) and make it an owner of the app registration ({_PERMISSIONS})"
    ),
    "Request_ResourceNotFound": (
        "no such app registration: app_object_id is the app's Object ID, app_client_id its "
        "Application (client) ID (both on the app registration's Overview)"
    ),
}

_KEYVAULT_INNER: dict[str, str] = {
    "ForbiddenByFirewall": (
        "the vault's firewall refuses this host's address: allow it under the vault's "
        "Networking, or reach the vault through its private endpoint"
    ),
    "SecretDisabled": (
        "this version of the secret is disabled in the vault: enable it again, or let a "
        "rotation write a new version"
    ),
    "ForbiddenByConnection": (
        "the vault allows only its private endpoint: run the daemon where the vault's name "
        "resolves to the private endpoint"
    ),
}
_KEYVAULT_ROLE = (
    "give the operator the 'secretwarden Key Vault secret rotator' role on the vault "
    f"(monitoring only: 'Key Vault Secrets User'), or get/list/set secret permissions in "
    f"the vault's access policies ({_PERMISSIONS})"
)
_KEYVAULT: dict[str, str] = {
    "SecretNotFound": "no such secret in this vault: check secret_name and key_vault_url",
    "VaultNotFound": "no such vault: check key_vault_url (https://<vault>.vault.azure.net)",
}

_ARM: dict[str, str] = {
    "AuthorizationFailed": (
        "give the operator the 'secretwarden App Service reloader' role (monitoring only: "
        f"'secretwarden App Service reader') on the site ({_PERMISSIONS})"
    ),
    "LinkedAuthorizationFailed": (
        f"the operator lacks a role on a resource the site links to ({_PERMISSIONS})"
    ),
    "ResourceNotFound": "no such site: check subscription_id, resource_group and site_name",
    "ResourceGroupNotFound": "no such resource group: check resource_group and subscription_id",
    "SubscriptionNotFound": "no such subscription: check subscription_id (a GUID, not a name)",
    "InvalidSubscriptionId": "subscription_id must be the subscription's GUID, not its name",
    "InvalidAuthenticationTokenTenant": (
        "the subscription belongs to another tenant than the operator signs in to: check "
        "tenant_id and subscription_id"
    ),
}


def aadsts_fix(code: int | None) -> str | None:
    """What to change when Entra refused the operator's sign-in with ``AADSTS<code>``."""
    return None if code is None else _AADSTS.get(code)


def service_fix(
    service: str, status: int | None, code: str | None, inner_code: str | None = None
) -> str | None:
    """What to change for a service's refusal; None when nothing specific is known."""
    if service == "graph":
        return _GRAPH.get(code or "")
    if service == "keyvault":
        if inner_code in _KEYVAULT_INNER:
            return _KEYVAULT_INNER[inner_code]
        if status == 403:
            return _KEYVAULT_ROLE
        return _KEYVAULT.get(code or "")
    if service == "arm":
        return _ARM.get(code or "")
    return None
