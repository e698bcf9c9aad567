"""The config: defaults, conversions, and a table of bad files with their exact messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_config, parse_config, preflight, read_secret_file

TARGET = """
[[targets]]
name = "portal"
tenant_id = "11111111-1111-4111-8111-111111111111"
app_object_id = "22222222-2222-4222-8222-222222222222"
key_vault_url = "https://kv.vault.azure.net/"
subscription_id = "33333333-3333-4333-8333-333333333333"
resource_group = "rg"
site_name = "site"
health_url = "https://site.azurewebsites.net/health"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_fill_everything_but_the_target(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TARGET))
    assert config.web.listen_address == "127.0.0.1:9877"
    assert config.probes.expiry.interval_seconds == 900  # issue 16: the request budget
    assert config.probes.health.interval_seconds == 30
    assert config.probes.graph.interval_seconds == 60
    assert config.probes.reference.interval_seconds == 900
    assert config.remediation.rotate_before_days == 30
    assert config.remediation.heal_after_failures == 3
    target = config.targets[0]
    assert target.secret_name == "AzureAdClientSecret"
    ref = config.target_ref(target)
    assert (ref.tenant_id, ref.app_object_id, ref.key_vault_url) == (
        "11111111-1111-4111-8111-111111111111",
        "22222222-2222-4222-8222-222222222222",
        "https://kv.vault.azure.net",
    )
    assert config.graph_probe_url(target) == (
        "https://graph.microsoft.com/v1.0/deviceAppManagement/mobileApps?$top=1"
    )
    assert config.cloud_endpoints().name == "public"
    assert config.retry_policy().total == 3


def test_partial_probe_section_keeps_the_other_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[probes.health]\ninterval_seconds = 5\n" + TARGET))
    assert config.probes.health.interval_seconds == 5
    assert config.probes.health.timeout_seconds == 5  # shortened with the interval
    assert config.probes.health.jitter_seconds == 3
    assert config.probes.graph.timeout_seconds == 30


def test_custom_cloud_and_relative_paths(tmp_path: Path) -> None:
    secret = tmp_path / "op.secret"
    secret.write_text("s3cr3t-value\n")
    secret.chmod(0o600)
    config = load_config(
        write(
            tmp_path,
            """
[daemon]
state_directory = "state"
[identity]
kind = "client_secret"
tenant_id = "11111111-1111-4111-8111-111111111111"
client_id = "44444444-4444-4444-8444-444444444444"
client_secret_file = "op.secret"
[cloud]
name = "custom"
authority = "https://127.0.0.1:8443"
graph_url = "https://127.0.0.1:8443/v1.0/"
arm_url = "https://127.0.0.1:8443"
ca_file = "ca.pem"
"""
            + TARGET.replace('tenant_id = "11111111-1111-4111-8111-111111111111"\n', ""),
        )
    )
    cloud = config.cloud_endpoints()
    assert cloud.graph_url == "https://127.0.0.1:8443/v1.0"
    assert cloud.ca_file == tmp_path / "ca.pem"
    assert cloud.disable_instance_discovery
    assert config.daemon.state_directory == tmp_path / "state"
    identity = config.identity_value()
    assert identity.client_secret is not None
    assert identity.client_secret.reveal() == "s3cr3t-value"
    assert config.target_ref(config.targets[0]).tenant_id == "11111111-1111-4111-8111-111111111111"


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "op.secret"
    secret.write_text("value")
    secret.chmod(0o644)
    config = parse_config(
        {
            "identity": {
                "kind": "client_secret",
                "tenant_id": "11111111-1111-4111-8111-111111111111",
                "client_id": "44444444-4444-4444-8444-444444444444",
                "client_secret_file": str(secret),
            },
            "targets": [],
        }
        | {"targets": parse_config_target()}
    )
    with pytest.raises(ConfigError) as err:
        config.identity_value()
    [problem] = err.value.problems
    assert problem.startswith(
        f"identity: {secret} is readable by its group and others (mode 644); chmod 600"
    )


def parse_config_target() -> list[dict[str, str]]:
    return [
        {
            "name": "portal",
            "tenant_id": "11111111-1111-4111-8111-111111111111",
            "app_client_id": "55555555-5555-4555-8555-555555555555",
            "key_vault_url": "https://kv.vault.azure.net",
            "subscription_id": "33333333-3333-4333-8333-333333333333",
            "resource_group": "rg",
            "site_name": "site",
            "health_url": "https://site/health",
        }
    ]


BAD = [
    ("", ["targets: required"]),
    ("[daemon]\nbogus = 1\n" + TARGET, ["daemon.bogus: unknown key"]),
    ("not toml [", None),  # checked separately: the parser's own message
    (
        TARGET.replace("https://kv.vault.azure.net/", "http://kv"),
        ["targets[0].key_vault_url: must be an https:// URL, got 'http://kv'"],
    ),
    (
        TARGET.replace('app_object_id = "22222222-2222-4222-8222-222222222222"\n', ""),
        ["targets[0]: set app_object_id or app_client_id"],
    ),
    (
        TARGET.replace('site_name = "site"\n', "colour = 1\n"),
        ["targets[0].site_name: required", "targets[0].colour: unknown key"],
    ),
    (
        "[web]\nlisten_address = 'localhost'\n" + TARGET,
        ["web.listen_address: must be HOST:PORT with a port from 0 to 65535, got 'localhost'"],
    ),
    (
        "[web]\ntls_cert_file = 'c.pem'\n" + TARGET,
        ["web: tls_cert_file and tls_key_file must be set together"],
    ),
    (
        "[web.basic_auth_users]\nalice = 'hunter2'\n" + TARGET,
        [
            "web.basic_auth_users: user 'alice': expected a bcrypt hash ($2y$..., from "
            "`htpasswd -nB`) or a pbkdf2_sha256$... hash (from `secretwarden hash-password`), "
            "not a plain password"
        ],
    ),
    (
        "[identity]\nkind = 'certificate'\n" + TARGET,
        ["identity: kind 'certificate' needs tenant_id, client_id, client_certificate_file"],
    ),
    (
        "[identity]\nkind = 'magic'\n" + TARGET,
        ["identity.kind: Input should be 'default', 'client_secret' or 'certificate'"],
    ),
    (
        "[cloud]\nname = 'custom'\n" + TARGET,
        ["cloud: name 'custom' needs authority, graph_url, arm_url"],
    ),
    (
        "[probes.graph]\ninterval_seconds = 10\ntimeout_seconds = 20\n" + TARGET,
        ["probes.graph: timeout_seconds must not exceed interval_seconds"],
    ),
    (
        "[probes.health]\ninterval_seconds = -1\n" + TARGET,
        ["probes.health.interval_seconds: Input should be greater than 0"],
    ),
    (
        TARGET.replace('tenant_id = "11111111-1111-4111-8111-111111111111"\n', ""),
        ["target 'portal' needs tenant_id (or set identity.tenant_id)"],
    ),
    (TARGET + TARGET, ["target name 'portal' is used twice"]),
    (
        TARGET.replace('name = "portal"', 'name = "my portal"'),
        ["targets[0].name: String should match pattern '^[A-Za-z0-9_.-]+$'"],
    ),
    (
        "[remediation]\nsecret_lifetime_days = 900\n" + TARGET,
        ["remediation.secret_lifetime_days: Input should be less than or equal to 730"],
    ),
    (
        "[remediation]\nsecret_lifetime_days = 30\n" + TARGET,
        ["remediation: secret_lifetime_days (30) must be longer than rotate_before_days (30)"],
    ),
    # every problem at once, in file order
    (
        "[web]\nlisten_address = 'x'\n[daemon]\nlog_level = 'loud'\n"
        + TARGET.replace("https://kv.vault.azure.net/", "kv"),
        [
            "daemon.log_level: Input should be 'debug', 'info', 'warning' or 'error'",
            "web.listen_address: must be HOST:PORT with a port from 0 to 65535, got 'x'",
            "targets[0].key_vault_url: must be an https:// URL, got 'kv'",
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [b for b in BAD if b[1] is not None])
def test_bad_config_reports_exact_problems(tmp_path: Path, text: str, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.problems == expected


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "a = 1\nnot toml [\n"))
    assert err.value.problems[0].startswith("not valid TOML: ")
    assert "line 2" in err.value.problems[0]


FILES = """
[daemon]
state_directory = "state"
[identity]
kind = "certificate"
tenant_id = "11111111-1111-4111-8111-111111111111"
client_id = "44444444-4444-4444-8444-444444444444"
certificate_file = "id.pem"
[cloud]
ca_file = "ca.pem"
"""


def test_files_the_config_names_must_be_readable(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FILES + TARGET))
    assert preflight(config) == [
        f"identity.client_certificate_file: cannot read {tmp_path}/id.pem: No such file or "
        "directory",
        f"cloud.ca_file: cannot read {tmp_path}/ca.pem: No such file or directory",
    ]
    (tmp_path / "id.pem").write_text("-")
    (tmp_path / "ca.pem").write_text("-")
    # the certificate file holds the operator's private key: a secret file
    assert preflight(config) == [
        f"identity.client_certificate_file: {tmp_path}/id.pem is readable by its group and "
        "others (mode 644); chmod 600 it, or let systemd's LoadCredential= hand it over"
    ]
    (tmp_path / "id.pem").chmod(0o600)
    assert preflight(config) == []


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def test_cli_exits_2_without_traceback(tmp_path: Path) -> None:
    result = cli("check", "--config.file", str(write(tmp_path, "[web]\nbogus = 1\n")))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "  web.bogus: unknown key" in result.stderr
    assert "  targets: required" in result.stderr
    # a file the config names that is missing is a config error too, for `run` as well
    result = cli("run", "--config.file", str(write(tmp_path, FILES + TARGET)))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"  cloud.ca_file: cannot read {tmp_path}/ca.pem" in result.stderr


def test_config_check_validates_and_exits_without_running(tmp_path: Path) -> None:
    good = write(tmp_path, FILES + TARGET)
    (tmp_path / "id.pem").write_text("-")
    (tmp_path / "id.pem").chmod(0o600)
    (tmp_path / "ca.pem").write_text("-")
    result = cli("run", "--config.check", "--config.file", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"secretwarden: {good} is valid (1 target(s): portal)\n"
    (tmp_path / "ca.pem").unlink()
    result = cli("run", "--config.check", "--config.file", str(good))
    assert result.returncode == 2
    # one problem is one line
    assert result.stderr.startswith(
        f"secretwarden: bad configuration in {good}: cloud.ca_file: cannot read {tmp_path}/ca.pem"
    )
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_a_mistyped_flag_is_refused_not_ignored(tmp_path: Path) -> None:
    # `--dryrun` for `--dry-run` must not turn into a real rotation.
    result = cli("rotate", "--config.file", str(tmp_path / "x.toml"), "--target", "p", "--dryrun")
    assert result.returncode == 2
    assert "unrecognized arguments: --dryrun" in result.stderr


@pytest.mark.parametrize(
    ("mode", "who"),
    [
        (0o640, "readable by its group"),  # issue 15: not "others"
        (0o604, "readable by others"),
        (0o620, "writable by its group"),
        (0o660, "readable and writable by its group"),
        (0o644, "readable by its group and others"),
        (0o642, "readable by its group and writable by others"),
    ],
)
def test_a_secret_file_group_or_others_may_read_is_refused(
    tmp_path: Path, mode: int, who: str
) -> None:
    secret = tmp_path / "token"
    secret.write_text("value-1234")
    secret.chmod(mode)
    with pytest.raises(ConfigError) as err:
        read_secret_file(secret, "remediation.webhook_token_file")
    assert f"is {who} (mode {mode:o})" in err.value.problems[0]
    secret.chmod(0o600)
    assert read_secret_file(secret, "remediation.webhook_token_file") == "value-1234"


def test_per_target_reload_and_removal_keys(tmp_path: Path) -> None:
    from daemon.remediate_cli import workflow_settings

    text = (
        "[remediation]\noverlap_window_hours = 12\n"
        + TARGET
        + 'app_action_url = "https://site.azurewebsites.net/api/sync"\n'
        + "pinned_reference = true\n"
        + 'reload_rungs = ["restart", "stop_start"]\n'
        + TARGET.replace('"portal"', '"other"')
        + "overlap_window_hours = 0\n"
    )
    config = load_config(write(tmp_path, text))
    portal = workflow_settings(config, "portal")
    assert portal.pinned_reference
    assert portal.ladder() == ("pin", "restart", "stop_start")
    assert portal.overlap_window.total_seconds() == 12 * 3600
    assert config.target("portal").app_action_url == "https://site.azurewebsites.net/api/sync"
    other = workflow_settings(config, "other")
    assert not other.pinned_reference
    assert other.ladder() == ("refresh", "config_change", "restart", "stop_start")
    assert other.overlap_window.total_seconds() == 0


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('reload_rungs = ["reboot"]', "reload_rungs"),
        ('reload_rungs = ["restart", "restart"]', "named twice"),
        ("overlap_window_hours = -1", "overlap_window_hours"),
        ('app_action_url = "ftp://x"', "app_action_url"),
    ],
)
def test_bad_per_target_keys_name_the_key(tmp_path: Path, line: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, TARGET + line + "\n"))
    assert says in str(e.value.problems)


def test_status_shows_a_pending_removal(tmp_path: Path) -> None:
    import io
    from datetime import UTC, datetime

    from daemon.remediate_cli import print_status
    from remediation.journal import Journal

    config = load_config(
        write(tmp_path, f'[daemon]\nstate_directory = "{tmp_path / "state"}"\n' + TARGET)
    )
    j = Journal(config.daemon.state_directory, "portal")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    for step, data in (
        ("run", {"trigger": "test"}),
        (
            "pending_removal",
            {
                "pending_key_ids": ["old-key"],
                "keep_key_id": "new-key",
                "keep_version": "v2",
                "reloaded_at": now.isoformat(),
                "pending_since": now.isoformat(),
                "pending_until": "2026-06-02T00:00:00+00:00",
                "pending_why": "no proof yet",
            },
        ),
    ):
        j.append(ts=now, run="r1", action="rotate", step=step, phase="begin", data={})
        j.append(ts=now, run="r1", action="rotate", step=step, phase="done", data=data)
    out = io.StringIO()
    print_status(config, out)
    text = out.getvalue()
    assert "pending removal: old-key kept until 2026-06-02T00:00:00+00:00" in text
    assert "new-key, Key Vault version v2" in text
    assert "no proof yet" in text


# -- issue 15, point 2: what can only be wrong, said before anything runs ------------

TENANT = "11111111-1111-4111-8111-111111111111"
WRONG = [
    (
        TARGET.replace(
            "https://kv.vault.azure.net/",
            "https://kv.vault.azure.net/secrets/AzureAdClientSecret/0123456789abcdef",
        ),
        "targets[0].key_vault_url: must be the vault's URI with no path (the Vault URI on the "
        "vault's Overview), got 'https://kv.vault.azure.net/secrets/AzureAdClientSecret/"
        "0123456789abcdef'; use https://kv.vault.azure.net and secret_name = "
        "'AzureAdClientSecret'",
    ),
    (
        TARGET.replace(
            "https://kv.vault.azure.net/",
            "https://portal.azure.com/#@contoso/resource/subscriptions/x/overview",
        ),
        "targets[0].key_vault_url: is a portal page, not the service's endpoint: "
        "'https://portal.azure.com/#@contoso/resource/subscriptions/x/overview'; copy the "
        "URL the resource's Overview lists",
    ),
    (
        TARGET.replace("https://kv.vault.azure.net/", "https://kv.vault.azure.com"),
        "target 'portal': key_vault_url: host 'kv.vault.azure.com' is not a Key Vault host "
        "(vaults are https://kv.vault.azure.net)",
    ),
    (
        "[cloud]\nname = 'public'\n"
        + TARGET.replace("https://kv.vault.azure.net/", "https://kv.vault.usgovcloudapi.net"),
        "target 'portal': key_vault_url: host 'kv.vault.usgovcloudapi.net' is a vault of "
        "cloud 'usgovernment', and cloud.name is 'public'",
    ),
    (
        TARGET.replace(
            'app_object_id = "22222222-2222-4222-8222-222222222222"',
            'app_client_id = "AppStore Backend API"',
        ),
        "targets[0].app_client_id: must be a GUID (the Application (client) ID on its "
        "Overview), got 'AppStore Backend API'",
    ),
    (
        TARGET.replace("33333333-3333-4333-8333-333333333333", "Pay-As-You-Go"),
        "targets[0].subscription_id: must be a GUID (the Subscription ID, not the "
        "subscription's name), got 'Pay-As-You-Go'",
    ),
    (
        TARGET.replace(TENANT, "Contoso"),
        "targets[0].tenant_id: must be the Directory (tenant) ID, a GUID, or a domain of the "
        "tenant like contoso.onmicrosoft.com, got 'Contoso'",
    ),
    (
        "[remediation]\noverlap_window_hour = 12\n" + TARGET,
        "remediation.overlap_window_hour: unknown key; did you mean 'overlap_window_hours'?",
    ),
    (
        TARGET.replace("site_name", "sitename"),
        "targets[0].site_name: required",  # and, next line, the suggestion (below)
    ),
    (
        TARGET.replace("[[targets]]", "[targets]"),
        "targets: write each target as [[targets]] (double brackets: one table per target, "
        "a list), not [targets]",
    ),
    (
        "[probes.health]\ninterval_seconds = 'soon'\n" + TARGET,
        "probes.health.interval_seconds: expected a number or a duration like 90s, 5m, 12h, "
        "30d, 2w; got 'soon' (a bare number is seconds)",
    ),
]


@pytest.mark.parametrize(("text", "problem"), WRONG)
def test_values_that_can_only_be_wrong_are_refused_with_the_fix(
    tmp_path: Path, text: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert problem in err.value.problems


def test_a_mistyped_target_key_suggests_the_nearest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, TARGET.replace("site_name", "sitename")))
    assert "targets[0].sitename: unknown key; did you mean 'site_name'?" in err.value.problems


def test_a_tenant_domain_and_the_cloud_s_own_vault_host_are_fine(tmp_path: Path) -> None:
    text = "[cloud]\nname = 'china'\n" + TARGET.replace(
        "https://kv.vault.azure.net/", "https://kv.vault.azure.cn"
    ).replace(TENANT, "contoso.partner.onmschina.cn")
    assert load_config(write(tmp_path, text)).targets[0].tenant_id == "contoso.partner.onmschina.cn"


DURATIONS = [
    ("[probes.expiry]\ninterval_seconds = '10m'\n", "probes.expiry.interval_seconds", 600),
    ("[probes.expiry]\ninterval_seconds = 90\n", "probes.expiry.interval_seconds", 90),
    ("[remediation]\nrotate_before_days = '2w'\n", "remediation.rotate_before_days", 14),
    ("[remediation]\nrotate_before_days = 30\n", "remediation.rotate_before_days", 30),
    ("[remediation]\nsecret_lifetime_days = '90d'\n", "remediation.secret_lifetime_days", 90),
    ("[remediation]\noverlap_window_hours = '90m'\n", "remediation.overlap_window_hours", 1.5),
    ("[remediation]\noverlap_window_hours = '2d'\n", "remediation.overlap_window_hours", 48),
    (
        "[remediation]\nrefresh_timeout_seconds = '1m30s'\n",
        "remediation.refresh_timeout_seconds",
        90,
    ),
    (
        "[inventory]\nfull_scan_interval_seconds = '12h'\n",
        "inventory.full_scan_interval_seconds",
        43200,
    ),
    ("[retry]\ntimeout_seconds = '30s'\n", "retry.timeout_seconds", 30),
]


@pytest.mark.parametrize(("text", "key", "value"), DURATIONS)
def test_durations_take_prometheus_notation_and_bare_numbers_keep_their_unit(
    tmp_path: Path, text: str, key: str, value: float
) -> None:
    config = load_config(write(tmp_path, text + TARGET))
    got: object = config
    for part in key.split("."):
        got = getattr(got, part)
    assert got == value


def test_config_check_changes_nothing_on_disk(tmp_path: Path) -> None:
    state = tmp_path / "not" / "yet"
    good = write(tmp_path, f'[daemon]\nstate_directory = "{state}"\n' + TARGET)
    result = cli("run", "--config.check", "--config.file", str(good))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "not").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]
