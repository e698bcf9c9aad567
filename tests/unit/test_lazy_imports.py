"""What a daemon imports at start-up: SDKs that only some configurations use are imported
on first use (issue 16: RSS and start-up). A subprocess, so this process's imports (the
suite imports everything) do not hide an eager import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Imported only by the configurations that use them, or (the last two) never: they are
# dev dependencies now (the sandbox's SDK-compatibility tests), the daemon sends their
# calls as JSON (tests/integration/test_graph_without_sdk.py and test_arm_without_sdk.py
# prove a whole run loads neither).
ON_FIRST_USE = {
    # [ha] backend = "azure_blob" (tenant/leases.py); ~25 MiB that a single daemon never uses.
    "azure.storage.blob",
    "msgraph",
    "azure.mgmt.web",
}


def imported_by(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("lazy", sorted(ON_FIRST_USE))
def test_the_daemon_does_not_import_it_at_start_up(lazy: str) -> None:
    modules = imported_by("daemon.app")
    assert "daemon.app" in modules  # the probe itself worked
    eager = sorted(m for m in modules if m == lazy or m.startswith(lazy + "."))
    assert not eager, f"importing daemon.app imports {eager}; import it on first use"
