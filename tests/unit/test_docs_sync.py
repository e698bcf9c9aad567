"""docs/metrics.md and docs/alerts.md say what the code does: every exported metric
documented with its type and labels, every alert documented under the anchor its
runbook_url points at, and the docs' own links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from exported_metrics import exported_families

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
ROW = re.compile(r"^\| `(secretwarden_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|", re.M)
MINE = ("README.md", "metrics.md", "alerts.md", "permissions.md", "runbook.md",
        "deploy-systemd.md", "inventory.md")  # fmt: skip


def _documented() -> dict[str, tuple[str, set[str]]]:
    text = (DOCS / "metrics.md").read_text()
    return {
        name: (kind, set(re.findall(r"`([a-z_]+)`", labels)))
        for name, kind, labels in ROW.findall(text)
    }


def test_every_exported_metric_is_documented_and_nothing_else() -> None:
    exported, documented = exported_families(), _documented()
    assert sorted(set(exported) - set(documented)) == [], "exported but not in docs/metrics.md"
    assert sorted(set(documented) - set(exported)) == [], "in docs/metrics.md but not exported"


def test_documented_types_and_labels_match() -> None:
    documented = _documented()
    for name, (kind, labels) in exported_families().items():
        assert documented[name] == (kind, labels), name


def _rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_its_section_and_no_other() -> None:
    text = (DOCS / "alerts.md").read_text()
    headings = re.findall(r"^## (Secretwarden\w+)$", text, re.M)
    assert len(headings) == len(set(headings))
    assert sorted(headings) == sorted(str(r["alert"]) for r in _rules())
    for rule in _rules():
        url = str(rule["annotations"]["runbook_url"])  # type: ignore[index]
        assert url.endswith("/docs/alerts.md#" + str(rule["alert"]).lower())


def test_the_alert_table_matches_the_rules() -> None:
    text = (DOCS / "alerts.md").read_text()
    rows = {
        m[0]: (m[1], m[2], m[3])
        for m in re.findall(
            r"^\| \[(\w+)\]\(#\w+\) \| (\w*) ?\| ?(\w*) ?\| ?(\w*) ?\|$", text, re.M
        )
    }
    for rule in _rules():
        labels = rule["labels"]
        assert isinstance(labels, dict)
        expected = (labels["severity"], labels.get("remediation", ""), rule.get("for", ""))
        assert rows[str(rule["alert"])] == expected, rule["alert"]


@pytest.mark.parametrize("name", MINE)
def test_links_in_the_docs_lead_somewhere(name: str) -> None:
    page = DOCS / name
    text = page.read_text()
    for link in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if link.startswith(("http://", "https://", "mailto:")):
            continue
        assert (page.parent / link).exists(), f"{name} links to missing {link}"


def test_the_index_lists_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"({page.name})" in index, page.name
