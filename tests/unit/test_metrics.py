"""Metrics from observations, asserted on a fresh registry and on the parsed exposition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.metrics import Metrics
from exporters.observations import (
    ExpiryObservation,
    GraphAuthObservation,
    HealthObservation,
    Observed,
    ReferenceObservation,
)
from tenant.models import KeyVaultReference, PasswordCredential, TokenFailure

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def cred(key: str, days: float, name: str = "API Secret") -> PasswordCredential:
    return PasswordCredential(
        key_id=key, display_name=name, hint="abc", start=NOW, end=NOW + timedelta(days=days)
    )


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


def observe(probe: str, value: object, target: str = "portal") -> Observed:
    return Observed(target=target, probe=probe, at=NOW, value=value)  # type: ignore[arg-type]


def test_series_exist_at_zero_from_the_start() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "1.2.3")
    m.add_target("portal")
    s = samples(reg)
    assert s[key("secretwarden_build_info", version="1.2.3")] == 1
    for name in (
        "secretwarden_health_probe_success",
        "secretwarden_health_probe_duration_seconds",
        "secretwarden_health_probe_status_code",
        "secretwarden_graph_probe_success",
        "secretwarden_keyvault_secret_matches_credential",
        "secretwarden_keyvault_reference_resolved",
        "secretwarden_keyvault_reference_stale",
    ):
        assert s[key(name, target="portal")] == 0
    for probe in ("expiry", "health", "graph", "reference"):
        assert s[key("secretwarden_probe_errors_total", target="portal", probe=probe)] == 0
        last = key(
            "secretwarden_probe_last_success_timestamp_seconds", target="portal", probe=probe
        )
        assert s[last] == 0
    assert (
        s[key("secretwarden_graph_auth_failures_total", target="portal", reason="aadsts_7000222")]
        == 0
    )
    # an unknown expiry is absent, not 0 (which would read as "expired in 1970")
    assert not [k for k in s if k[0].startswith("secretwarden_client_secret")]


def test_expiry_series_follow_the_latest_credentials() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    old, new = cred("k-old", 3), cred("k-new", 180, "API Secret 2028")
    m.record(
        observe(
            "expiry",
            ExpiryObservation(
                ok=True, credentials=(old, new), in_use=old, keyvault_matches_credential=True
            ),
        ),
        0.1,
    )
    s = samples(reg)
    name = "secretwarden_client_secret_expiry_timestamp_seconds"
    assert (
        s[key(name, target="portal", key_id="k-old", display_name="API Secret")]
        == (NOW + timedelta(days=3)).timestamp()
    )
    assert key(name, target="portal", key_id="k-new", display_name="API Secret 2028") in s
    assert (
        s[key("secretwarden_client_secret_in_use_expiry_timestamp_seconds", target="portal")]
        == (NOW + timedelta(days=3)).timestamp()
    )
    assert s[key("secretwarden_keyvault_secret_matches_credential", target="portal")] == 1
    assert (
        s[key("secretwarden_probe_last_success_timestamp_seconds", target="portal", probe="expiry")]
        == NOW.timestamp()
    )

    # the old credential is removed: its series must go
    m.record(
        observe(
            "expiry",
            ExpiryObservation(
                ok=True, credentials=(new,), in_use=new, keyvault_matches_credential=True
            ),
        ),
        0.1,
    )
    s = samples(reg)
    assert key(name, target="portal", key_id="k-old", display_name="API Secret") not in s
    assert (
        s[key("secretwarden_client_secret_in_use_expiry_timestamp_seconds", target="portal")]
        == (NOW + timedelta(days=180)).timestamp()
    )

    # the app cannot be read: the last known credentials stay
    m.record(observe("expiry", ExpiryObservation(ok=False, error="read app registration: x")), 0.1)
    assert key(name, target="portal", key_id="k-new", display_name="API Secret 2028") in samples(
        reg
    )
    # the app was read and has no client secret left: every expiry series goes
    m.record(observe("expiry", ExpiryObservation(ok=True)), 0.1)
    s = samples(reg)
    assert not [k for k in s if k[0].startswith("secretwarden_client_secret")]
    assert s[key("secretwarden_keyvault_secret_matches_credential", target="portal")] == 0


def test_value_matching_no_credential() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.record(observe("expiry", ExpiryObservation(ok=True, credentials=(cred("k", 3),))), 0.1)
    s = samples(reg)
    assert s[key("secretwarden_keyvault_secret_matches_credential", target="portal")] == 0
    assert (
        key("secretwarden_client_secret_in_use_expiry_timestamp_seconds", target="portal") not in s
    )


def test_graph_auth_failure_counts_reason_and_requests() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.record(observe("graph", GraphAuthObservation(ok=True, token_ok=True, graph_status=200)), 0.2)
    expired = GraphAuthObservation(
        ok=False, token_ok=False, token_failure=TokenFailure.EXPIRED_SECRET, aadsts=7000222
    )
    m.record(observe("graph", expired), 0.2)
    m.record(observe("graph", expired), 0.2)
    m.record(
        observe(
            "graph",
            GraphAuthObservation(
                ok=False, token_ok=True, graph_status=401, graph_code="InvalidAuthenticationToken"
            ),
        ),
        0.2,
    )
    s = samples(reg)
    assert s[key("secretwarden_graph_requests_total", target="portal", status_code="200")] == 1
    assert s[key("secretwarden_graph_requests_total", target="portal", status_code="401")] == 1
    fails = "secretwarden_graph_auth_failures_total"
    assert s[key(fails, target="portal", reason="aadsts_7000222")] == 2
    assert s[key(fails, target="portal", reason="graph_401")] == 1
    assert s[key("secretwarden_graph_probe_success", target="portal")] == 0
    # an auth failure is a definitive answer, so the probe itself did not fail
    assert s[key("secretwarden_probe_errors_total", target="portal", probe="graph")] == 0


def test_throttled_graph_probe_is_a_probe_error_and_keeps_the_verdict() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.record(observe("graph", GraphAuthObservation(ok=True, token_ok=True, graph_status=200)), 0.1)
    m.record(
        observe(
            "graph",
            GraphAuthObservation(ok=False, token_ok=False, token_failure=TokenFailure.THROTTLED),
        ),
        0.1,
    )
    s = samples(reg)
    assert s[key("secretwarden_graph_probe_success", target="portal")] == 1
    assert s[key("secretwarden_probe_errors_total", target="portal", probe="graph")] == 1
    assert s[key("secretwarden_probe_success", target="portal", probe="graph")] == 0


def test_health_and_reference() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.record(
        observe("health", HealthObservation(ok=False, status_code=503, duration_seconds=0.25)), 0.3
    )
    ref = KeyVaultReference(
        key="AzureAdClientSecret",
        status="Resolved",
        vault_name="kv",
        secret_name="AzureAdClientSecret",
        secret_version=None,
        active_version="v1",
        details=None,
    )
    m.record(
        observe(
            "reference",
            ReferenceObservation(
                ok=True, reference=ref, current_version="v2", resolved=True, stale=True
            ),
        ),
        0.1,
    )
    s = samples(reg)
    assert s[key("secretwarden_health_probe_success", target="portal")] == 0
    assert s[key("secretwarden_health_probe_status_code", target="portal")] == 503
    assert s[key("secretwarden_health_probe_duration_seconds", target="portal")] == 0.25
    assert s[key("secretwarden_keyvault_reference_resolved", target="portal")] == 1
    assert s[key("secretwarden_keyvault_reference_stale", target="portal")] == 1


def test_removed_target_loses_every_series() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.set_targets(["a", "b"])
    m.record(observe("expiry", ExpiryObservation(ok=True, credentials=(cred("k", 3),)), "b"), 0.1)
    m.set_targets(["a"])
    assert not [k for k in samples(reg) if ("target", "b") in k[1]]
    assert [k for k in samples(reg) if ("target", "a") in k[1]]


def test_config_reload_metrics() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.config_reloaded(True, NOW)
    m.config_reloaded(False, NOW + timedelta(hours=1))
    assert reg.get_sample_value("secretwarden_config_last_reload_successful") == 0
    assert (
        reg.get_sample_value("secretwarden_config_last_reload_success_timestamp_seconds")
        == NOW.timestamp()
    )


def test_the_exposition_is_rendered_once_per_change_and_matches_the_registry() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.record(observe("graph", GraphAuthObservation(ok=True, token_ok=True, graph_status=200)), 1)
    first = m.exposition()
    assert m.exposition() is first  # nothing changed: the same bytes, not a render
    assert first.text == generate_latest(reg)  # the registry holds only these
    m.record(observe("graph", GraphAuthObservation(ok=False, token_ok=False)), 2)
    assert m.stale
    second = m.exposition()
    assert second is not first
    assert b'secretwarden_probe_errors_total{probe="graph",target="portal"} 1.0' in second.text


def test_prerendered_families_are_served_once_and_readable_as_usual() -> None:
    from exporters.exposition import prerendered_served

    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.add_target("portal")
    assert (
        reg.get_sample_value("secretwarden_probe_success", {"target": "portal", "probe": "graph"})
        == 0
    )
    with prerendered_served():
        assert list(reg.collect()) == []  # the scrape copies their text instead
    names = {f.name for f in text_string_to_metric_families(m.exposition().text.decode())}
    assert "secretwarden_probe_success" in names


def test_counters_have_no_created_series() -> None:
    reg = CollectorRegistry()
    Metrics(reg, "0").add_target("portal")
    assert b"_created" not in generate_latest(reg)


def test_a_scrape_copies_a_young_text_and_never_waits_for_a_render() -> None:
    reg = CollectorRegistry()
    m = Metrics(reg, "0")
    m.add_target("portal")
    first = m.exposition()
    m.config_reloaded(False, NOW)
    m.fresh_for = 3600.0  # as the daemon sets it once a render is costly
    assert m.exposition() is first  # stale but young: copied
    m.fresh_for = 0.0
    with m._render_lock:  # a worker thread is rendering
        assert m.exposition() is first
    assert b"secretwarden_config_last_reload_successful 0.0" in m.exposition().text
