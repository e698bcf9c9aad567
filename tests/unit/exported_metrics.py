"""What a running daemon exports, for the tests that keep the rules, the dashboard and
docs/metrics.md in step with the code: a fresh registry with one target and one probe
result of each kind that has label children of its own, so every family shows its
labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from exporters.inventory import Inventory
from exporters.metrics import Metrics
from exporters.observations import ExpiryObservation, GraphAuthObservation, Observed
from exporters.operator import OperatorCredentialMetrics
from remediation.leadership import HaMetrics
from remediation.metrics import RemediationMetrics
from tenant.directory import AppCredential, DirectoryObject, Listing
from tenant.models import PasswordCredential

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported_families() -> dict[str, tuple[str, set[str]]]:
    """Family name as written in PromQL (counters with ``_total``) -> (type, labels)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="0.0.0")
    metrics.add_target("portal")
    rem = RemediationMetrics(registry, ["portal"])
    rem.pending_removal.labels("portal", "key-id").set(1)  # only exists while one waits
    rem.pending_until.labels("portal", "key-id").set(1)  # beside it (issue 13)
    rem.step_duration.labels("portal", "rotate", "verify").observe(1)  # on first use
    HaMetrics(registry).set_targets(["portal"])  # [ha] backend = "azure_blob" only
    now = datetime.now(UTC)
    cred = PasswordCredential("k1", "secretwarden", "abc", now, now + timedelta(days=90))
    for probe, value in (
        ("expiry", ExpiryObservation(True, (cred,), "v1", cred, True)),
        ("graph", GraphAuthObservation(ok=True, token_ok=True, graph_status=200)),
    ):
        metrics.record(Observed("portal", probe, now, value), 0.1)
    operator = OperatorCredentialMetrics(registry)  # absent until its date is known
    operator.expiry.labels("client_secret", "graph").set(now.timestamp())
    inventory = Inventory(registry, service_principals=True)
    inventory.enable(True, 3600)
    inventory.count_response(200)
    cred = AppCredential("k2", "password", "ci", now.timestamp())
    obj = DirectoryObject("o1", "a1", "Payroll", (), (cred,))
    for coll in inventory.collections():
        inventory.listings[coll] = Listing(coll, {"o1": obj}, "delta")
    inventory.view, _ = inventory.render()
    found: dict[str, tuple[str, set[str]]] = {}
    for family in [*registry.collect(), *inventory.collector.collect()]:
        name = family.name + ("_total" if family.type == "counter" else "")
        found[name] = (family.type, {k for s in family.samples for k in s.labels} - {"le"})
    return found


def exported_sample_names() -> set[str]:
    """Every series name a query may use: families, counters' ``_total``, histograms'
    ``_bucket``/``_sum``/``_count``."""
    registry_names: set[str] = set()
    for name, (kind, _) in exported_families().items():
        registry_names.add(name)
        base = name.removesuffix("_total")
        registry_names.update(base + suffix for suffix in SUFFIXES.get(kind, ()))
    return registry_names
