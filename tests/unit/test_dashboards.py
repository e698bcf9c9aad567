"""The shipped Grafana dashboard carries what Grafana needs to import or provision
it, points every query at the datasource variable, and only uses metrics the daemon
exports. (tests/e2e/test_dashboard_queries.py runs every query on a real Prometheus.)"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from exported_metrics import exported_sample_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
OVERVIEW = ROOT / "dashboards" / "secretwarden-overview.json"
TENANT = ROOT / "dashboards" / "secretwarden-tenant-credentials.json"
DS_REF = {"type": "prometheus", "uid": "${datasource}"}


def _all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels inside collapsed rows
    return found


def problems(d: dict[str, Any]) -> list[str]:
    """Everything that would stop Grafana importing the dashboard or its queries working."""
    out: list[str] = []
    for key in ("uid", "title"):
        if not isinstance(d.get(key), str) or not d[key]:
            out.append(f"no {key}")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", str(d.get("uid", ""))):
        out.append("uid not importable")
    if not isinstance(d.get("schemaVersion"), int) or not 36 <= d["schemaVersion"] <= 41:
        out.append("schemaVersion")
    if d.get("id") is not None:
        out.append("id must be null to import anywhere")
    variables = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        out.append("no datasource variable of type datasource")
    # job and instance first: two daemons' series must not mix (issue 15, point 7)
    for name, label in (("job", "job"), ("instance", "instance")):
        v = variables.get(name, {})
        q = v.get("query", {})
        text = q.get("query", "") if isinstance(q, dict) else q
        if v.get("datasource") != DS_REF or not re.fullmatch(
            rf"label_values\(secretwarden_build_info(\{{[^}}]*\}})?, {label}\)", text
        ):
            out.append(f"no {name} variable from label_values on the datasource variable")
        elif not v.get("includeAll") or v.get("allValue") != ".*":
            out.append(f"the {name} variable needs All (.*)")
    for expr in _exprs(d):
        for selector in unfiltered(expr):
            out.append(f"not filtered by $job and $instance: {selector} in {expr}")
    tv = variables.get("target", {})
    query = tv.get("query", {})
    query_text = query.get("query", "") if isinstance(query, dict) else query
    uses_target = "$target" in json.dumps(d.get("panels", []))
    # The tenant-wide dashboard has no per-target queries, hence no target variable.
    if uses_target and (tv.get("datasource") != DS_REF or "label_values(" not in query_text):
        out.append("no target variable from label_values on the datasource variable")
    seen_ids: set[int] = set()
    boxes: list[tuple[int, int, int, int, str]] = []
    for panel in _all_panels(d):
        title = panel.get("title", "?")
        pid = panel.get("id")
        if not isinstance(pid, int) or pid in seen_ids:
            out.append(f"{title}: id {pid} missing or duplicated")
        seen_ids.add(pid if isinstance(pid, int) else -1)
        g = panel.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")):
            out.append(f"{title}: gridPos")
            continue
        if g["x"] + g["w"] > 24 or g["w"] <= 0 or g["h"] <= 0:
            out.append(f"{title}: gridPos outside the 24 columns")
        for x, y, w, h, other in boxes:
            if g["x"] < x + w and x < g["x"] + g["w"] and g["y"] < y + h and y < g["y"] + g["h"]:
                out.append(f"{title}: overlaps {other}")
        boxes.append((g["x"], g["y"], g["w"], g["h"], title))
        if panel.get("type") == "row":
            continue
        if panel.get("datasource") != DS_REF:
            out.append(f"{title}: datasource is not the variable")
        targets = panel.get("targets") or []
        if not targets:
            out.append(f"{title}: no queries")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            out.append(f"{title}: refIds")
        for t in targets:
            if t.get("datasource") != DS_REF:
                out.append(f"{title}/{t.get('refId')}: datasource is not the variable")
            if not str(t.get("expr", "")).strip():
                out.append(f"{title}/{t.get('refId')}: empty expr")
    for ann in d.get("annotations", {}).get("list", []):
        if ann.get("builtIn"):
            continue
        if ann.get("datasource") != DS_REF or not str(ann.get("expr", "")).strip():
            out.append(f"annotation {ann.get('name')}: datasource or expr")
    return out


SELECTOR = re.compile(r"\b(secretwarden_[a-z0-9_]+|ALERTS)\b(\{[^}]*\})?")


def unfiltered(expr: str) -> list[str]:
    """The series selectors of ``expr`` that do not match on both ``$job`` and
    ``$instance`` (every selector must, or two daemons' series mix)."""
    return [
        m.group(0)
        for m in SELECTOR.finditer(expr)
        if 'job=~"$job"' not in (m.group(2) or "")
        or 'instance=~"$instance"' not in (m.group(2) or "")
    ]


def _exprs(d: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _all_panels(d) for t in p.get("targets", [])]
    exprs += [a["expr"] for a in d["annotations"]["list"] if "expr" in a]
    return exprs


@pytest.fixture(scope="module")
def overview() -> dict[str, Any]:
    return dict(json.loads(OVERVIEW.read_text()))


def test_there_is_a_dashboard() -> None:
    assert OVERVIEW in DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_grafana_can_import_it(path: Path) -> None:
    assert problems(json.loads(path.read_text())) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "duplicated"),
        (
            lambda d: d["panels"][1].update(datasource={"type": "prometheus", "uid": "abc"}),
            "datasource is not the variable",
        ),
        (lambda d: d["panels"][1]["targets"][0].update(expr=" "), "empty expr"),
        (lambda d: d["panels"][2]["gridPos"].update(x=0, y=1), "overlaps"),
        (lambda d: d.update(schemaVersion="39"), "schemaVersion"),
        (lambda d: d["templating"]["list"].pop(0), "no datasource variable"),
        (lambda d: d["templating"]["list"].pop(1), "no job variable"),
        (lambda d: d["templating"]["list"][2].update(allValue=None), "instance variable needs"),
        (
            lambda d: d["panels"][1]["targets"][0].update(
                expr='secretwarden_keyvault_secret_matches_credential{target=~"$target"}'
            ),
            "not filtered by $job and $instance",
        ),
    ],
)
def test_the_checks_notice_a_broken_dashboard(
    overview: dict[str, Any], breakage: Any, expected: str
) -> None:
    broken = copy.deepcopy(overview)
    breakage(broken)
    assert any(expected in problem for problem in problems(broken)), problems(broken)


def test_every_query_is_per_target(overview: dict[str, Any]) -> None:
    for expr in _exprs(overview):
        if "secretwarden_config_last_reload_successful" in expr:
            continue  # one per daemon, not per target
        assert 'target=~"$target"' in expr, expr


def test_every_metric_it_uses_is_exported(overview: dict[str, Any]) -> None:
    used = {m for e in _exprs(overview) for m in re.findall(r"\bsecretwarden_[a-z0-9_]+", e)}
    assert used, "the dashboard uses no secretwarden metric?"
    assert used - exported_sample_names() == set()


def test_it_shows_what_the_issue_asks_for(overview: dict[str, Any]) -> None:
    text = "\n".join(_exprs(overview))
    for metric in (
        "secretwarden_client_secret_in_use_expiry_timestamp_seconds",  # days left
        "secretwarden_client_secret_expiry_timestamp_seconds",  # every credential
        "secretwarden_health_probe_success",
        "secretwarden_health_probe_duration_seconds",
        "secretwarden_graph_auth_failures_total",  # Graph 401 rate
        "secretwarden_keyvault_reference_resolved",
        "secretwarden_keyvault_reference_stale",
        "secretwarden_keyvault_secret_matches_credential",
        "secretwarden_remediation_total",
        "secretwarden_probe_last_success_timestamp_seconds",
        "secretwarden_credential_pending_removal",  # issue 8: old secrets kept
        "secretwarden_remediation_site_stopped",  # issue 8: a site left Stopped
    ):
        assert metric in text, metric
    tables = [p for p in _all_panels(overview) if p["type"] == "table"]
    assert any(
        "secretwarden_client_secret_expiry_timestamp_seconds" in t["targets"][0]["expr"]
        for t in tables
    )
    remediations = [a for a in overview["annotations"]["list"] if a.get("name") == "Remediations"]
    assert remediations
    assert "secretwarden_remediation_total" in remediations[0]["expr"]
    assert "{{outcome}}" in remediations[0]["titleFormat"]


def test_provisioning_files_point_grafana_at_prometheus_and_the_dashboards() -> None:
    prov = ROOT / "dashboards" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "secretwarden.yml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"].startswith("http")
    dash = yaml.safe_load((prov / "dashboards" / "secretwarden.yml").read_text())
    (provider,) = dash["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")


@pytest.fixture(scope="module")
def tenant() -> dict[str, Any]:
    return dict(json.loads(TENANT.read_text()))


def test_a_per_target_dashboard_without_its_variable_is_noticed(overview: dict[str, Any]) -> None:
    broken = copy.deepcopy(overview)
    broken["templating"]["list"] = [
        v for v in broken["templating"]["list"] if v["name"] != "target"
    ]
    assert any("no target variable" in p for p in problems(broken))


def test_the_tenant_dashboard_shows_what_the_issue_asks_for(tenant: dict[str, Any]) -> None:
    assert tenant["title"] == "Tenant credentials"
    assert tenant in [json.loads(p.read_text()) for p in DASHBOARDS]
    used = {m for e in _exprs(tenant) for m in re.findall(r"\bsecretwarden_[a-z0-9_]+", e)}
    assert used - exported_sample_names() == set()
    for metric in (
        "secretwarden_app_credential_expiry_timestamp_seconds",
        "secretwarden_inventory_applications",
        "secretwarden_inventory_credentials",
        "secretwarden_inventory_last_success_timestamp_seconds",
        "secretwarden_inventory_scan_duration_seconds",
        "secretwarden_inventory_requests_total",
    ):
        assert metric in used, metric
    # the soonest-expiring table: app, credential, kind, days left, managed
    (table,) = [p for p in _all_panels(tenant) if p["type"] == "table"]
    assert "bottomk(" in table["targets"][0]["expr"]
    renamed = table["transformations"][0]["options"]["renameByName"]
    for label, column in (
        ("app_name", "App"),
        ("credential_name", "Credential"),
        ("kind", "Kind"),
        ("Value", "Days left"),
        ("managed", "Managed"),
    ):
        assert renamed[label] == column
    # counts by calendar month of expiry
    assert any("month(" in e and "count_values" in e for e in _exprs(tenant))


def test_it_shows_which_secret_waits_for_removal_and_a_stopped_site(
    overview: dict[str, Any],
) -> None:
    panels = _all_panels(overview)
    (table,) = [
        p for p in panels if p["type"] == "table" and "client_secret_expiry" in json.dumps(p)
    ]
    pending = [
        t for t in table["targets"] if "secretwarden_credential_pending_removal" in t["expr"]
    ]
    assert len(pending) == 1
    renamed = table["transformations"][1]["options"]["renameByName"]
    assert renamed[f"Value #{pending[0]['refId']}"] == "Pending removal"
    (stopped,) = [p for p in panels if "Stopped" in p["title"]]
    assert "secretwarden_remediation_site_stopped" in stopped["targets"][0]["expr"]
    # A site started by hand must not stay STOPPED: /health answering clears it, as in
    # the SecretwardenSiteLeftStopped rule.
    assert "secretwarden_health_probe_success" in stopped["targets"][0]["expr"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_is_filtered_by_job_and_instance(path: Path) -> None:
    d = json.loads(path.read_text())
    exprs = _exprs(d)
    assert exprs
    for expr in exprs:
        assert unfiltered(expr) == [], expr
    names = [v["name"] for v in d["templating"]["list"]]
    assert names[:3] == ["datasource", "job", "instance"]  # chained: job, then instance
    if "target" in names:
        (target,) = [v for v in d["templating"]["list"] if v["name"] == "target"]
        assert 'job=~"$job",instance=~"$instance"' in target["query"]["query"]
