"""The shipped example config validates as it is."""

from __future__ import annotations

from pathlib import Path

from daemon.config import load_config

EXAMPLE = Path(__file__).parents[2] / "systemd" / "secretwarden.toml.example"


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.targets[0].name == "appstore"
    assert config.identity.kind == "default"
    assert config.probes.health.interval_seconds == 30
    assert config.inventory.enabled is False  # opt-in, shown with its filters
    assert config.inventory.exclude_tags == ["HideApp"]
