"""Every query of the shipped dashboards returns data from a real Prometheus that
scrapes the demo daemon, with Grafana's variables substituted the way Grafana would."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from conftest import ROOT, Prometheus, demo_daemon, prometheus, wait_until

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
SCRAPE_SECONDS = 1
# Grafana: $__rate_interval = max($__interval + scrape interval, 4 * scrape interval).
SUBSTITUTIONS = {
    "$__rate_interval": f"{4 * SCRAPE_SECONDS + 1}s",
    "$__interval": "2s",
    "$__range": "1m",
}


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(where, expr, instant) for every panel target."""
    found = []
    panels = list(dashboard["panels"])
    panels += [child for p in dashboard["panels"] for child in p.get("panels", [])]
    for panel in panels:
        for target in panel.get("targets", []):
            where = f"{panel['title']}/{target['refId']}"
            found.append((where, target["expr"], bool(target.get("instant"))))
    return found


def _substitute(expr: str, target: str, job: str = ".*", instance: str = ".*") -> str:
    for name, value in SUBSTITUTIONS.items():
        expr = expr.replace(name, value)
    expr = expr.replace("${target}", target).replace("$target", target)
    expr = expr.replace("$job", job).replace("$instance", instance)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _has_data(result: list[dict[str, Any]]) -> bool:
    values = [float(s["value"][1]) for s in result if "value" in s]
    values += [float(v[1]) for s in result for v in s.get("values", [])]
    return any(not math.isnan(v) for v in values)


def _config(daemon: str) -> str:
    return f"""
global:
  scrape_interval: {SCRAPE_SECONDS}s
  evaluation_interval: {SCRAPE_SECONDS}s
rule_files:
  - {ROOT / "prometheus" / "alerts.yml"}
scrape_configs:
  - job_name: secretwarden
    static_configs:
      - targets: ["{daemon}"]
"""


def test_every_panel_query_returns_data(tmp_path: Path) -> None:
    with demo_daemon(tmp_path) as (daemon, demo), prometheus(tmp_path, _config(daemon)) as prom:
        # The target variable: label_values(secretwarden_probe_success, target).
        def targets() -> list[str]:
            demo.assert_alive()
            series = prom.api("series", **{"match[]": "secretwarden_probe_success"})
            return sorted({s["target"] for s in series})

        (target,) = wait_until("the target variable to have a value", targets, timeout=30)
        # The job and instance variables: label_values(secretwarden_build_info, ...).
        (info,) = prom.api("series", **{"match[]": "secretwarden_build_info"})
        job, instance = info["job"], info["instance"]
        assert instance == daemon

        pending: dict[str, str] = {}

        def all_answer(prom: Prometheus = prom) -> bool:
            demo.assert_alive()
            pending.clear()
            for path in DASHBOARDS:
                for where, raw, instant in _queries(json.loads(path.read_text())):
                    expr = _substitute(raw, target, job, instance)
                    result = prom.query(expr) if instant else prom.query_range(expr, 30)
                    if not _has_data(result):
                        pending[f"{path.name}: {where}"] = expr
            return not pending

        try:
            wait_until("every panel query to return data", all_answer, timeout=45, every=1)
        finally:
            if pending:
                print(
                    "queries without data:\n" + "\n".join(f"{k}: {v}" for k, v in pending.items())
                )
                print(demo.output())

        # Annotation queries must run (they have data only when something happened).
        for path in DASHBOARDS:
            for ann in json.loads(path.read_text())["annotations"]["list"]:
                if "expr" in ann:
                    prom.query_range(_substitute(ann["expr"], target, job, instance), 30)
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", target)
