"""An idle target's remediation series: only what an alert must see at 0 (issue 16)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.metrics import Metrics
from remediation.metrics import ALERTED_OUTCOMES, RUN_ACTIONS, RemediationMetrics


def series(registry: CollectorRegistry) -> list[tuple[str, dict[str, str]]]:
    text = generate_latest(registry).decode()
    return [(s.name, s.labels) for f in text_string_to_metric_families(text) for s in f.samples]


def test_an_idle_target_costs_at_most_60_series() -> None:
    reg = CollectorRegistry()
    Metrics(reg, "0").add_target("portal")
    RemediationMetrics(reg, ["portal"])
    per_target = [s for s in series(reg) if s[1].get("target") == "portal"]
    assert len(per_target) <= 60, len(per_target)


def test_alerted_outcomes_exist_at_zero_and_steps_appear_on_first_use() -> None:
    reg = CollectorRegistry()
    rem = RemediationMetrics(reg, ["portal"])
    for action in RUN_ACTIONS:
        for outcome in ALERTED_OUTCOMES:
            labels = {"target": "portal", "action": action, "outcome": outcome}
            assert reg.get_sample_value("secretwarden_remediation_total", labels) == 0
    assert not [s for s in series(reg) if s[0].startswith("secretwarden_remediation_step")]
    rem.step_duration.labels("portal", "rotate", "verify").observe(3)
    count = {"target": "portal", "action": "rotate", "step": "verify"}
    assert reg.get_sample_value("secretwarden_remediation_step_duration_seconds_count", count) == 1
