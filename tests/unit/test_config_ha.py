"""The [ha] section: defaults (one daemon), every bad value with its exact message, and
the connection string file checked like the other secret files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_config import TARGET, cli, write

from daemon.config import ConfigError, load_config, preflight


def test_the_default_is_one_daemon_with_its_local_journal(tmp_path: Path) -> None:
    ha = load_config(write(tmp_path, TARGET)).ha
    assert ha.backend == "none"
    assert (ha.lease_seconds, ha.renew_deadline_seconds, ha.retry_seconds) == (30, 20, 5)
    assert ha.container == "secretwarden"


def test_a_relative_connection_string_file_is_relative_to_the_config(tmp_path: Path) -> None:
    text = '[ha]\nbackend = "azure_blob"\nconnection_string_file = "storage.secret"\n'
    ha = load_config(write(tmp_path, text + TARGET)).ha
    assert ha.connection_string_file == tmp_path / "storage.secret"


BAD = [
    ('backend = "azure_blob"', [
        'ha: backend "azure_blob" needs account_url or connection_string_file'
    ]),
    ('backend = "zookeeper"', ["ha.backend: Input should be 'none' or 'azure_blob'"]),
    ("lease_seconds = 10", ["ha.lease_seconds: Input should be greater than or equal to 15"]),
    ("lease_seconds = 61", ["ha.lease_seconds: Input should be less than or equal to 60"]),
    (
        "lease_seconds = 15",  # the default renew deadline (20 s) outlives it
        [
            "ha: renew_deadline_seconds (20) must be shorter than lease_seconds (15): a "
            "daemon cut off from storage must stop writing before its lease can pass to another"
        ],
    ),
    ('account_url = "http://acct.blob.core.windows.net"', [
        "ha.account_url: must be an https:// URL, got 'http://acct.blob.core.windows.net'"
    ]),
    ('container = "HA"', [
        "ha.container: 3-63 lowercase letters, digits and single hyphens, starting and "
        "ending with a letter or digit (Azure's container names)"
    ]),
    ("retry_seconds = 0", ["ha.retry_seconds: Input should be greater than 0"]),
    ("leader = true", ["ha.leader: unknown key"]),
]  # fmt: skip


@pytest.mark.parametrize(("line", "expected"), BAD)
def test_bad_ha_section_reports_exact_problems(
    tmp_path: Path, line: str, expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"[ha]\n{line}\n" + TARGET))
    assert err.value.problems == expected


def test_the_connection_string_file_is_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "storage.secret"
    secret.write_text("DefaultEndpointsProtocol=http;AccountName=x;AccountKey=eA==;")
    os.chmod(secret, 0o644)
    path = write(
        tmp_path, f'[ha]\nbackend = "azure_blob"\nconnection_string_file = "{secret}"\n' + TARGET
    )
    problems = preflight(load_config(path))
    assert len(problems) == 1
    assert problems[0].startswith(
        f"ha.connection_string_file: {secret} is readable by its group and others"
    )
    result = cli("run", "--config.check", "--config.file", str(path))
    assert result.returncode == 2
    assert "ha.connection_string_file" in result.stderr
    assert "AccountKey" not in result.stderr + result.stdout
    os.chmod(secret, 0o600)
    assert preflight(load_config(path)) == []


HA_ON = '[ha]\nbackend = "azure_blob"\naccount_url = "https://acct.blob.core.windows.net"\n'


def test_ha_cleanup_with_storage_unreachable_says_so_and_removes_nothing(
    tmp_path: Path,
) -> None:
    """In HA mode cleanup acts only under the target's lease: no storage, no lease, no
    removal (one line naming target, step and cause; exit 1, no traceback)."""
    secret = tmp_path / "storage.secret"
    secret.write_text(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    secret.chmod(0o600)
    ha = '[ha]\nbackend = "azure_blob"\nconnection_string_file = "storage.secret"\n'
    result = cli(
        "cleanup", "--config.file", str(write(tmp_path, ha + "[retry]\ntotal = 0\n" + TARGET))
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(
        "portal: step cleanup (remove the old credential) refused: storage ([ha]) did not answer: "
    )
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_rotate_refuses_in_ha_mode_too(tmp_path: Path) -> None:
    path = str(write(tmp_path, HA_ON + TARGET))
    result = cli("rotate", "--config.file", path, "--target", "portal")
    assert result.returncode == 2
    assert "the daemon holding the target's lease rotates it" in result.stderr
