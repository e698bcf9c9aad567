"""Every metric the daemon exports, fed only by probe observations.

A scrape reads what the probes left: nothing here calls Azure. The registry is
injected (a fresh ``CollectorRegistry()`` per test). Label children are created when a
target is added, so every per-target series exists at 0 from the start, except the
expiry timestamps, which appear once known (an expiry of 0 would read as "expired in
1970" and fire every alert). Credential series are rebuilt from the latest expiry
observation, so a removed credential's series disappears with it.

A scrape does not render these families: :meth:`Metrics.exposition` keeps their text,
rendered again only after something here changed (:meth:`Metrics.refresh`, which the
daemon runs shortly after probes finish), and the web server prepends it to the rest of
the registry (issue 16: a scrape is a copy). Reading the registry any other way
(``get_sample_value``) collects them live as before.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from exporters.exposition import Exposition, serving_prerendered
from exporters.observations import (
    ExpiryObservation,
    GraphAuthObservation,
    HealthObservation,
    Observed,
    ReferenceObservation,
)
from tenant.transport import AZURE_SERVICES

# No `_created` series: one more series per counter child that no rule or panel reads
# (issue 16). prometheus_client's switch is process-wide; every process that exports
# secretwarden metrics imports this module.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

PROBES = ("expiry", "health", "graph", "reference")
# Reasons created at 0 up front so rate() and increase() see the first failure.
KNOWN_AUTH_FAILURE_REASONS = ("aadsts_7000215", "aadsts_7000222", "graph_401", "graph_403")


def probe_succeeded(observed: Observed) -> bool:
    """Did the probe get a definitive answer? (A failing app is an answer.)

    Health always answers: a failed ``/health`` is the app's state, exported as
    ``secretwarden_health_probe_success 0``. Graph auth answers when it succeeded or
    was refused for authentication; throttling or an unreachable vault is no answer.
    """
    value = observed.value
    if isinstance(value, HealthObservation):
        return True
    if isinstance(value, GraphAuthObservation):
        return value.ok or value.auth_failed
    return value.ok


class _ExpiryCollector(Collector):
    def __init__(self) -> None:
        self.latest: dict[str, ExpiryObservation] = {}

    def collect(self) -> Iterator[Metric]:
        every = GaugeMetricFamily(
            "secretwarden_client_secret_expiry_timestamp_seconds",
            "When each client secret of the app registration expires (endDateTime).",
            labels=["target", "key_id", "display_name"],
        )
        in_use = GaugeMetricFamily(
            "secretwarden_client_secret_in_use_expiry_timestamp_seconds",
            "When the client secret whose value is in Key Vault expires.",
            labels=["target"],
        )
        for target, obs in sorted(self.latest.items()):
            for cred in obs.credentials:
                if cred.end is not None:
                    every.add_metric(
                        [target, cred.key_id, cred.display_name or ""], cred.end.timestamp()
                    )
            if obs.in_use is not None and obs.in_use.end is not None:
                in_use.add_metric([target], obs.in_use.end.timestamp())
        yield every
        yield in_use

    def describe(self) -> Iterable[Metric]:
        return []


class _Prerendered(Collector):
    """The one collector :class:`Metrics` registers in the caller's registry: it yields
    the metrics' own registry, except while a scrape serves their pre-rendered text."""

    def __init__(self, own: CollectorRegistry) -> None:
        self._own = own

    def collect(self) -> Iterator[Metric]:
        if serving_prerendered():
            return
        yield from self._own.collect()

    def describe(self) -> Iterable[Metric]:
        return []


def remove_target_series(target: str, metrics: Iterable[MetricWrapperBase]) -> None:
    """Drop every child of ``metrics`` whose first label is ``target`` (after a reload)."""
    for metric in metrics:
        # No public way to list a metric's children.
        for labels in list(metric._metrics):
            if labels[0] == target:
                metric.remove(*labels)


class Metrics:
    """The daemon's metrics. Call :meth:`add_target` for each target, then
    :meth:`record` with each probe result."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.registry = registry
        # The families live in a registry of their own, rendered as one cached text.
        own = self._own = CollectorRegistry()
        registry.register(_Prerendered(own))
        self._expiry = _ExpiryCollector()
        own.register(self._expiry)
        self._text = Exposition()
        self._changes = 1  # counts changes; the text is of change number _rendered_change
        self._rendered_change = 0
        self.rendered_at = -math.inf  # time.monotonic() of the last render
        self.render_seconds = 0.0  # how long the last render took
        # A scrape may copy a stale text this young (0: never; the daemon sets it).
        self.fresh_for = 0.0
        self._render_lock = threading.Lock()

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ("target",)) -> Gauge:
            return Gauge(name, doc, list(labels), registry=own)

        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, list(labels), registry=own)

        by_probe = ("target", "probe")
        self.matches = gauge(
            "secretwarden_keyvault_secret_matches_credential",
            "1 when the Key Vault value belongs to a live client secret of the app.",
        )
        self.health_success = gauge(
            "secretwarden_health_probe_success", "1 when the app's health URL answered 2xx."
        )
        self.health_duration = gauge(
            "secretwarden_health_probe_duration_seconds", "How long the last health request took."
        )
        self.health_status = gauge(
            "secretwarden_health_probe_status_code",
            "HTTP status of the last health request (0 when none came back).",
        )
        self.graph_success = gauge(
            "secretwarden_graph_probe_success",
            "1 when a token for the Key Vault value was issued and the Graph call succeeded.",
        )
        self.graph_requests = counter(
            "secretwarden_graph_requests",
            "Graph calls made by the Graph probe with the Key Vault value, by HTTP status.",
            ("target", "status_code"),
        )
        self.graph_auth_failures = counter(
            "secretwarden_graph_auth_failures",
            "Graph probe authentication failures, by reason (aadsts_<code>, the token "
            "endpoint's error, or graph_<status>).",
            ("target", "reason"),
        )
        self.reference_resolved = gauge(
            "secretwarden_keyvault_reference_resolved",
            "1 when the App Service's Key Vault reference to the secret is Resolved.",
        )
        self.reference_stale = gauge(
            "secretwarden_keyvault_reference_stale",
            "1 when the App Service holds an older version than Key Vault's current one.",
        )
        self.probe_success = gauge(
            "secretwarden_probe_success",
            "1 when the probe's last run got a definitive answer.",
            by_probe,
        )
        self.probe_last_success = gauge(
            "secretwarden_probe_last_success_timestamp_seconds",
            "When the probe last got a definitive answer.",
            by_probe,
        )
        self.probe_errors = counter(
            "secretwarden_probe_errors",
            "Probe runs that got no definitive answer (Azure unreachable, throttled, timeout).",
            by_probe,
        )
        self.probe_duration = gauge(
            "secretwarden_probe_duration_seconds", "How long the probe's last run took.", by_probe
        )
        self.probe_interval = gauge(
            "secretwarden_probe_interval_seconds",
            "How often the probe is scheduled to run (alerts measure staleness with it).",
            by_probe,
        )
        self.azure_requests = counter(
            "secretwarden_azure_requests",
            "HTTP requests sent to Azure by the probes and remediation, retries included, "
            "by service (entra, graph, keyvault, arm).",
            ("service",),
        )
        for service in AZURE_SERVICES:
            self.azure_requests.labels(service=service)
        self.build_info = gauge(
            "secretwarden_build_info", "The running secretwarden's version.", ("version",)
        )
        self.build_info.labels(version=version).set(1)
        self.reload_ok = gauge(
            "secretwarden_config_last_reload_successful",
            "1 when the last configuration load succeeded.",
            (),
        )
        self.reload_ts = gauge(
            "secretwarden_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            (),
        )
        # Per-target series created at 0 when a target is added (label: target only).
        self._per_target = (
            self.matches,
            self.health_success,
            self.health_duration,
            self.health_status,
            self.graph_success,
            self.reference_resolved,
            self.reference_stale,
        )
        self._per_probe = (
            self.probe_success,
            self.probe_last_success,
            self.probe_errors,
            self.probe_duration,
            self.probe_interval,
        )
        self._targets: set[str] = set()

    # the cached exposition -------------------------------------------------------

    @property
    def stale(self) -> bool:
        """True when something changed since the text was last rendered."""
        return self._rendered_change != self._changes

    def changed(self) -> None:
        self._changes += 1

    def refresh(self) -> Exposition:
        """Render the families' text if anything changed since the last render (safe
        from a worker thread: prometheus_client's metrics lock their values). A change
        made during the render leaves the text stale, to be rendered again."""
        with self._render_lock:
            return self._render()

    def _render(self) -> Exposition:
        if self.stale:
            seen, started = self._changes, time.monotonic()
            self._text = Exposition.of(generate_latest(self._own))
            self._rendered_change = seen
            self.rendered_at = time.monotonic()
            self.render_seconds = self.rendered_at - started
        return self._text

    def exposition(self) -> Exposition:
        """The families' text: a copy when nothing changed since the last render, or
        when the last render is younger than :attr:`fresh_for` seconds (the daemon
        renders again shortly after probes finish), or while another render is under
        way; otherwise rendered now."""
        if not self.stale or time.monotonic() - self.rendered_at < self.fresh_for:
            return self._text
        if not self._render_lock.acquire(blocking=False):
            return self._text  # a worker thread is rendering: never wait for it
        try:
            return self._render()
        finally:
            self._render_lock.release()

    # targets ---------------------------------------------------------------------

    def add_target(self, target: str) -> None:
        if target in self._targets:
            return
        self.changed()
        self._targets.add(target)
        for gauge in self._per_target:
            gauge.labels(target=target)
        for reason in KNOWN_AUTH_FAILURE_REASONS:
            self.graph_auth_failures.labels(target=target, reason=reason)
        for metric in self._per_probe:
            for probe in PROBES:
                metric.labels(target=target, probe=probe)

    def set_targets(self, targets: Iterable[str]) -> None:
        """After a reload: add new targets, drop every series of removed ones."""
        wanted = set(targets)
        for gone in self._targets - wanted:
            self._remove_target(gone)
        for target in sorted(wanted):
            self.add_target(target)

    def _remove_target(self, target: str) -> None:
        self.changed()
        self._targets.discard(target)
        self._expiry.latest.pop(target, None)
        remove_target_series(
            target,
            (*self._per_target, *self._per_probe, self.graph_requests, self.graph_auth_failures),
        )

    # recording -------------------------------------------------------------------

    def count_azure_request(self, service: str) -> None:
        """tenant.connect.TenantSession's ``on_request``: one request sent to ``service``."""
        self.azure_requests.labels(service=service).inc()
        self.changed()

    def config_reloaded(self, ok: bool, at: datetime) -> None:
        self.changed()
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_ts.set(at.timestamp())

    def record(self, observed: Observed, duration_seconds: float) -> None:
        target, probe = observed.target, observed.probe
        self.add_target(target)
        self.changed()
        done = probe_succeeded(observed)
        self.probe_success.labels(target=target, probe=probe).set(1 if done else 0)
        self.probe_duration.labels(target=target, probe=probe).set(duration_seconds)
        if done:
            self.probe_last_success.labels(target=target, probe=probe).set(observed.at.timestamp())
        else:
            self.probe_errors.labels(target=target, probe=probe).inc()
        value = observed.value
        if isinstance(value, ExpiryObservation):
            self._record_expiry(target, value)
        elif isinstance(value, HealthObservation):
            self.health_success.labels(target=target).set(1 if value.ok else 0)
            self.health_duration.labels(target=target).set(value.duration_seconds)
            self.health_status.labels(target=target).set(value.status_code or 0)
        elif isinstance(value, GraphAuthObservation):
            self._record_graph(target, value)
        else:
            self._record_reference(target, value)

    def _record_expiry(self, target: str, obs: ExpiryObservation) -> None:
        if not obs.ok and not obs.credentials and target in self._expiry.latest:
            # The app could not be read this time: keep the last known credentials
            # (the probe's own success metric says the data is getting old). An app
            # that was read and has no secrets left does clear them.
            return
        self._expiry.latest[target] = obs
        if obs.ok or obs.keyvault_version is not None:
            self.matches.labels(target=target).set(1 if obs.keyvault_matches_credential else 0)

    def _record_graph(self, target: str, obs: GraphAuthObservation) -> None:
        if obs.graph_status is not None:
            self.graph_requests.labels(target=target, status_code=str(obs.graph_status)).inc()
        if obs.ok:
            self.graph_success.labels(target=target).set(1)
            return
        if obs.auth_failed:
            self.graph_success.labels(target=target).set(0)
            self.graph_auth_failures.labels(target=target, reason=obs.reason or "error").inc()
        elif obs.token_ok:
            # A token was issued but Graph failed for another reason (5xx, 429).
            self.graph_success.labels(target=target).set(0)
        # No answer at all (Key Vault or Entra unreachable): leave the last verdict.

    def _record_reference(self, target: str, obs: ReferenceObservation) -> None:
        if obs.reference is None:
            return  # ARM unreachable or no such reference: the probe's own metrics say so
        self.reference_resolved.labels(target=target).set(1 if obs.resolved else 0)
        if obs.ok:
            self.reference_stale.labels(target=target).set(1 if obs.stale else 0)
