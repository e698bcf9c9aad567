"""The shipped alert rules: promtool accepts them, their unit tests pass (and fail
when a rule is broken), every alert is documented and actionable, and every metric
they use is one the daemon exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from exported_metrics import exported_sample_names

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"
ALERTS = PROM / "alerts.yml"
RULE_TESTS = PROM / "tests" / "alerts_test.yml"
RUNBOOK_BASE = "https://github.com/secretwarden/secretwarden/blob/main/docs/alerts.md#"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool")
needs_amtool = pytest.mark.skipif(shutil.which("amtool") is None, reason="needs amtool")


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = _promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize(
    ("old", "new"),
    [
        # The 401 alert waiting much longer than its tests expect.
        ("        for: 2m\n", "        for: 30m\n"),  # the only for: 2m
        # The critical expiry alert no longer asking the daemon to rotate.
        ("          remediation: rotate\n", ""),
        # Throttling counted as an authentication failure.
        ('reason!~"throttled|unavailable|error"', 'reason!~"none"'),
        # A heal asked for while the expiry probe has never answered (gauge still at 0).
        (
            "            unless ignoring (probe)\n"
            '          secretwarden_probe_last_success_timestamp_seconds{probe="expiry"} == 0\n',
            "",
        ),
        # The tenant-wide alerts double-alerting the target's own (managed) secret.
        (
            '{managed="false"}\n              or\n            secretwarden_app_credential_expiry'
            '_timestamp_seconds{kind="certificate"}\n              or\n            secretwarden_'
            "service_principal_credential_expiry_timestamp_seconds\n          ) - time() <= 7",
            "\n              or\n            secretwarden_app_credential_expiry"
            '_timestamp_seconds{kind="certificate"}\n              or\n            secretwarden_'
            "service_principal_credential_expiry_timestamp_seconds\n          ) - time() <= 7",
        ),
        # An expired credential paging forever.
        ("          ) - time() <= 7 * 86400 > 0\n", "          ) - time() <= 7 * 86400\n"),
        # One failed inventory scan alerting at once.
        (
            "            > 2 * secretwarden_inventory_interval_seconds\n",
            "            > 0 * secretwarden_inventory_interval_seconds\n",
        ),
        # A site started by hand paging on while the daemon's gauge is still 1.
        (
            "            unless on (job, instance, target)\n"
            "          secretwarden_health_probe_success == 1\n",
            "",
        ),
        # A credential pending for less than its window plus two hours alerting.
        (
            "secretwarden_credential_pending_until_timestamp_seconds > 7200)",
            "secretwarden_credential_pending_until_timestamp_seconds > -7200)",
        ),
        # A credential removed long ago alerting on a stale window end.
        (
            "          secretwarden_credential_pending_removal == 1\n"
            "            and on(job, instance, target, key_id)\n",
            "",
        ),
    ],
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    text = ALERTS.read_text()
    assert old in text
    (tmp_path / "alerts.yml").write_text(text.replace(old, new, 1))
    (tmp_path / "tests").mkdir()
    shutil.copy(RULE_TESTS, tmp_path / "tests" / RULE_TESTS.name)
    result = _promtool("test", "rules", tmp_path / "tests" / RULE_TESTS.name)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_carries_what_people_and_the_webhook_need() -> None:
    rules = _alert_rules()
    assert len(rules) >= 13
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"Secretwarden[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower(), name
        assert rule["labels"].get("remediation", "rotate") in {"rotate", "heal"}, name


def test_the_webhook_is_asked_for_the_right_remediation() -> None:
    remediation = {rule["alert"]: rule["labels"].get("remediation") for rule in _alert_rules()}
    assert remediation["SecretwardenClientSecretExpiringCritical"] == "rotate"
    assert remediation["SecretwardenClientSecretExpired"] == "heal"
    assert remediation["SecretwardenGraphUnauthorized"] == "heal"
    # Health failures alone alert but never rotate; the warning leaves time for people.
    assert remediation["SecretwardenHealthProbeFailing"] is None
    assert remediation["SecretwardenClientSecretExpiringSoon"] is None
    # Alerts about the daemon itself cannot be fixed by the daemon.
    for name in (
        "SecretwardenExporterDown",
        "SecretwardenRemediationFailed",
        "SecretwardenRemediationBlocked",
        "SecretwardenProbeStale",
        # Other teams' apps: the daemon reports them, it never rotates them.
        "SecretwardenTenantCredentialExpiringSoon",
        "SecretwardenTenantCredentialExpiringCritical",
        "SecretwardenInventoryScanFailing",
        # A Stopped site needs a person (no heal starts it); a credential pending removal
        # is the daemon's own cleanup that is not happening.
        "SecretwardenSiteLeftStopped",
        "SecretwardenCredentialPendingRemovalTooLong",
    ):
        assert remediation[name] is None, name


def test_alerts_that_act_keep_the_target_label() -> None:
    """The webhook acts on `target`: an aggregation must not drop it."""
    for rule in _alert_rules():
        if "remediation" not in rule["labels"]:
            continue
        for by in re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"]):
            assert "target" in [label.strip() for label in by.split(",")], rule["alert"]
        assert "without" not in rule["expr"], rule["alert"]


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested quiet"


def test_every_metric_in_the_rules_is_exported_by_the_daemon() -> None:
    exported = exported_sample_names()
    used: set[str] = set()
    for rule in _alert_rules():
        used.update(re.findall(r"\bsecretwarden_[a-z0-9_]+", rule["expr"]))
    assert used, "the rules use no secretwarden metric?"
    assert used - exported == set()


@needs_promtool
def test_the_example_prometheus_config_loads_the_rules() -> None:
    result = _promtool("check", "config", PROM / "prometheus.example.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in result.stdout
    config = yaml.safe_load((PROM / "prometheus.example.yml").read_text())
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert "secretwarden" in jobs  # SecretwardenExporterDown/Absent look for this job


@needs_amtool
def test_the_example_alertmanager_config_is_valid() -> None:
    result = subprocess.run(
        ["amtool", "check-config", str(PROM / "alertmanager.example.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_sends_only_remediation_alerts_to_the_webhook() -> None:
    config = yaml.safe_load((PROM / "alertmanager.example.yml").read_text())
    route = config["route"]
    assert route["receiver"] != "secretwarden"
    (webhook_route,) = [r for r in route["routes"] if r["receiver"] == "secretwarden"]
    assert webhook_route["matchers"] == ['remediation=~"rotate|heal"']
    assert webhook_route["continue"] is True
    (receiver,) = [r for r in config["receivers"] if r["name"] == "secretwarden"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"] == "http://127.0.0.1:9877/api/v1/alerts"
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    assert "credentials_file" in auth
    assert "credentials" not in auth
