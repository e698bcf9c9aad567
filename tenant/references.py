"""Key Vault references in app settings: ``@Microsoft.KeyVault(...)`` read and written.

Pure functions: what a setting's value names (vault, secret, version or versionless),
and (through :meth:`tenant.models.SecretReference.setting_value`) the value that pins it
to a version or makes it versionless again, in the form it was read in.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tenant.models import SecretReference

_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\((?P<body>.*)\)\s*$", re.IGNORECASE | re.DOTALL)
_SECRET_PATH = re.compile(r"^/secrets/(?P<name>[^/]+)(?:/(?P<version>[^/]*))?/?$", re.IGNORECASE)


def parse_reference(value: str) -> SecretReference | None:
    """What an app setting's ``@Microsoft.KeyVault(...)`` value names, or None when
    it is not a Key Vault reference (or one we cannot read).

    Both documented forms: ``SecretUri=https://v.vault.azure.net/secrets/NAME/[VERSION]``
    and ``VaultName=v;SecretName=NAME[;SecretVersion=VERSION]``. An empty version (the
    trailing slash) is versionless.
    """
    match = _REFERENCE.match(value)
    if match is None:
        return None
    parts: dict[str, str] = {}
    for item in match.group("body").split(";"):
        key, sep, val = item.partition("=")
        if sep:
            parts[key.strip().lower()] = val.strip()
    if "secreturi" in parts:
        url = urlsplit(parts["secreturi"])
        path = _SECRET_PATH.match(url.path)
        if url.scheme.lower() != "https" or not url.netloc or path is None:
            return None
        return SecretReference(
            vault_url=f"https://{url.netloc}/",
            vault_name=None,
            secret_name=path.group("name"),
            version=path.group("version") or None,
        )
    if parts.get("vaultname") and parts.get("secretname"):
        return SecretReference(
            vault_url=None,
            vault_name=parts["vaultname"],
            secret_name=parts["secretname"],
            version=parts.get("secretversion") or None,
        )
    return None
