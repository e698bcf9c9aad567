"""The custom roles in docs/roles/ (issue 9): files `az role definition create` accepts,
as narrow as the calls the code makes, and the doc that hands them out."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "docs" / "roles"
DOC = (ROOT / "docs" / "permissions.md").read_text()
FILES = sorted(ROLES.glob("*.json"))
# The fields of an Azure custom role definition as the CLI reads it.
FIELDS = {
    "Name": str,
    "IsCustom": bool,
    "Description": str,
    "Actions": list,
    "NotActions": list,
    "DataActions": list,
    "NotDataActions": list,
    "AssignableScopes": list,
}
ACTION = re.compile(r"^Microsoft\.(KeyVault|Web)/[A-Za-z]+(/[A-Za-z]+)*(/action)?$")
# Never granted: irreversible or far beyond rotating one secret and reloading one site.
FORBIDDEN = re.compile(
    r"delete|purge|backup|restore|recover|\*|publish|sourcecontrols|deploy", re.I
)
SENSITIVE = {"Microsoft.Web/sites/config/list/action", "Microsoft.Web/sites/config/write"}
OPT_IN = "secretwarden-site-settings.json"

# What each SDK call in tenant/ needs (docs/permissions.md's table); the ARM calls by
# the REST spec's operationId (tenant/appservice.py's OPERATIONS).
CALLS = {
    ("tenant/keyvault.py", ".get_secret("): "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    ("tenant/keyvault.py", ".set_secret("): "Microsoft.KeyVault/vaults/secrets/setSecret/action",
    (
        "tenant/keyvault.py",
        ".list_properties_of_secret_versions(",
    ): "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
    ("tenant/appservice.py", '_request("WebApps_Get"'): "Microsoft.Web/sites/read",
    (
        "tenant/appservice.py",
        '_request("WebApps_GetAppSettingsKeyVaultReferences"',
    ): "Microsoft.Web/sites/config/read",
    ("tenant/appservice.py", '_request("WebApps_Restart"'): "Microsoft.Web/sites/restart/action",
    ("tenant/appservice.py", '_request("WebApps_Stop"'): "Microsoft.Web/sites/stop/action",
    ("tenant/appservice.py", '_request("WebApps_Start"'): "Microsoft.Web/sites/start/action",
    ("tenant/appservice.py", '_request("WebApps_ListApplicationSettings"'): (
        "Microsoft.Web/sites/config/list/action"
    ),
    ("tenant/appservice.py", '_request("WebApps_UpdateApplicationSettings"'): (
        "Microsoft.Web/sites/config/write"
    ),
}


def load(path: Path) -> dict[str, Any]:
    role: dict[str, Any] = json.loads(path.read_text())
    return role


def granted(path: Path) -> set[str]:
    role = load(path)
    return set(role["Actions"]) | set(role["DataActions"])


def test_there_is_a_role_per_service_and_feature() -> None:
    assert [p.name for p in FILES] == [
        "secretwarden-keyvault-rotate.json",
        "secretwarden-site-read.json",
        "secretwarden-site-reload.json",
        "secretwarden-site-settings.json",
    ]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_role_is_a_definition_the_cli_accepts(path: Path) -> None:
    role = load(path)
    assert set(role) == set(FIELDS)
    for field, kind in FIELDS.items():
        assert isinstance(role[field], kind), field
    assert role["IsCustom"] is True
    assert role["Name"].startswith("secretwarden ")
    assert role["Actions"] or role["DataActions"]
    assert role["AssignableScopes"]
    for scope in role["AssignableScopes"]:
        assert scope.startswith("/subscriptions/SUBSCRIPTION_ID/"), scope
    for action in role["Actions"] + role["DataActions"]:
        assert ACTION.match(action), action
        assert not FORBIDDEN.search(action), action
    # Key Vault secrets are data-plane: DataActions only; ARM actions are Actions only.
    assert all(a.startswith("Microsoft.KeyVault/") for a in role["DataActions"])
    assert all(a.startswith("Microsoft.Web/") for a in role["Actions"])


def test_only_the_opt_in_role_can_read_app_settings_or_write_configuration() -> None:
    for path in FILES:
        sensitive = granted(path) & SENSITIVE
        if path.name == OPT_IN:
            assert sensitive == SENSITIVE
        else:
            assert not sensitive, path.name


def test_every_call_listed_is_in_the_code() -> None:
    # a call renamed in the code (issue 16: the ARM calls by operationId) must be renamed
    # here too, or its permission would go unchecked
    missing = [call for (module, call) in CALLS if call not in (ROOT / module).read_text()]
    assert missing == []


def test_every_call_the_code_makes_is_granted_and_nothing_else() -> None:
    needed = set()
    for (module, call), action in CALLS.items():
        if call in (ROOT / module).read_text():
            needed.add(action)
    everything = set().union(*(granted(p) for p in FILES))
    assert needed - everything == set(), "a call the code makes is in no role"
    # every action is justified by a call (the opt-in role may precede its code)
    unjustified = everything - set(CALLS.values())
    assert unjustified == set()
    assert needed <= granted(ROLES / "secretwarden-keyvault-rotate.json") | granted(
        ROLES / "secretwarden-site-reload.json"
    ) | granted(ROLES / OPT_IN)


def test_the_reload_role_includes_the_reader() -> None:
    assert granted(ROLES / "secretwarden-site-read.json") <= granted(
        ROLES / "secretwarden-site-reload.json"
    )


def test_the_doc_hands_out_each_role_and_no_broad_one() -> None:
    for path in FILES:
        assert f"roles/{path.name}" in DOC
        assert f'"{load(path)["Name"]}"' in DOC or load(path)["Name"] in DOC
    assert "az role definition create --role-definition @" in DOC
    assert "Verified against a real tenant: nothing on this page" in DOC
    # Website Contributor and Secrets Officer are explained, never recommended.
    assert "**`Website Contributor`** is not least privilege" in DOC
    assert '--role "Website Contributor"' not in DOC
    assert '--role "Key Vault Secrets Officer"' not in DOC
    # config/list/action only as the opt-in rows and their explanation
    for line in DOC.splitlines():
        if "config/list/action" in line and line.startswith("|"):
            assert "opt-in" in line.lower(), line
