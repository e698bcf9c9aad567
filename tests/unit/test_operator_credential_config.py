"""The daemon's own credential (issue 15, point 6): where its end comes from, and the
config keys for it (``client_certificate_file``, ``credential_expires_at``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import key_and_certificate

from daemon.config import ConfigError, parse_config
from tenant.models import PasswordCredential
from tenant.operator import certificate_end, secret_end

T = "11111111-1111-4111-8111-111111111111"
C = "44444444-4444-4444-8444-444444444444"
TARGET = {
    "name": "portal",
    "app_client_id": "55555555-5555-4555-8555-555555555555",
    "key_vault_url": "https://kv.vault.azure.net",
    "subscription_id": "33333333-3333-4333-8333-333333333333",
    "resource_group": "rg",
    "site_name": "site",
    "health_url": "https://site.azurewebsites.net/health",
}


def test_a_certificate_s_end_is_read_from_the_file_behind_its_key(tmp_path: Path) -> None:
    end = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    key_and_certificate(tmp_path / "op.pem", end)
    assert certificate_end(tmp_path / "op.pem") == end
    (tmp_path / "key-only.pem").write_text("-----BEGIN PRIVATE KEY-----\n...\n")
    with pytest.raises(ValueError, match="no PEM certificate"):
        certificate_end(tmp_path / "key-only.pem")


def test_the_secret_is_found_by_its_hint_and_the_earliest_end_wins() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    creds = [
        PasswordCredential("k1", "old", "abc", now, now + timedelta(days=10)),
        PasswordCredential("k2", "new", "abc", now, now + timedelta(days=200)),
        PasswordCredential("k3", "other", "xyz", now, now + timedelta(days=1)),
    ]
    assert secret_end(creds, "abc") == now + timedelta(days=10)
    assert secret_end(creds, "zzz") is None


def test_client_certificate_file_names_the_operator_s_certificate(tmp_path: Path) -> None:
    identity = {"kind": "certificate", "tenant_id": T, "client_id": C}
    config = parse_config(
        {
            "identity": identity | {"client_certificate_file": str(tmp_path / "op.pem")},
            "targets": [TARGET],
        }
    )
    assert config.identity_value().certificate_path == tmp_path / "op.pem"
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "identity": identity
                | {"client_certificate_file": "a.pem", "certificate_file": "b.pem"},
                "targets": [TARGET],
            }
        )
    assert "set client_certificate_file or certificate_file, not both" in err.value.problems[0]


def test_credential_expires_at_takes_a_toml_date_or_date_time() -> None:
    from datetime import date

    for value, want in (
        (date(2027, 6, 1), datetime(2027, 6, 1, tzinfo=UTC)),
        (datetime(2027, 6, 1, 8, 30), datetime(2027, 6, 1, 8, 30, tzinfo=UTC)),
        ("2027-06-01T08:30:00Z", datetime(2027, 6, 1, 8, 30, tzinfo=UTC)),
    ):
        config = parse_config(
            {"identity": {"credential_expires_at": value}, "targets": [TARGET | {"tenant_id": T}]}
        )
        assert config.identity.credential_expires_at == want
