"""`secretwarden demo`, as the README's first command runs it: a real subprocess.

The demo must show the policy rotating the soon-expiring secret, then the repair of
the expiry it injects, and stop cleanly on Ctrl-C; no secret value may reach its output.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from helpers import free_port

FINAL_LINE = "demo: the app is healthy on a fresh secret"


def test_demo_rotates_then_heals_an_injected_expiry(tmp_path: Path) -> None:
    describe = tmp_path / "sandbox.json"
    log_file = tmp_path / "demo.log"
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "daemon.cli", "demo"),
            *("--web.listen-address", f"127.0.0.1:{port}"),
            *("--describe", str(describe), "--duration", "90"),
            *("--log.file", str(log_file)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 80
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if FINAL_LINE in line:
                break
        timeline = "\n".join(lines)
        assert any(FINAL_LINE in line for line in lines), timeline
        d = json.loads(describe.read_text())
        ctx = ssl.create_default_context(cafile=d["ca_file"])
        state = httpx.get(d["admin_url"].rstrip("/") + "/state", verify=ctx).json()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    timeline = "\n".join(lines) + out

    # The terminal shows the timeline only; the daemon's JSON log is in the file it names
    # (issue 15, point 5), and the metrics are on the port it was given.
    assert f"daemon log:     {log_file} (JSON lines)" in timeline
    assert f"http://127.0.0.1:{port}/metrics" in timeline
    assert not [line for line in timeline.splitlines() if line.startswith("{")]
    assert err == ""
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert any(e.get("event") == "remediation step" for e in logged)

    # The order of the story: a rotation by the policy, the injected expiry, a repair.
    rotated = timeline.index("rotate run done: rotated")
    injected = timeline.index("demo: expiring the in-use secret")
    repaired = timeline.index("run done: rotated", injected)
    assert rotated < injected < repaired
    assert "policy: in-use secret" in timeline[:rotated]

    # The app ends on the Key Vault's current value, with exactly that credential live,
    # and it never got a 401 except while the injected expiry stood.
    live = [c for c in state["credentials"] if not c.get("expired") and not c.get("revoked")]
    current = state["keyvault"]["current_version"]
    [version] = [v for v in state["keyvault"]["versions"] if v["version"] == current]
    assert [c["keyId"] for c in live] == [version["tags"]["secretwarden-key-id"]]
    assert state["site"]["resolved_version"] == current

    # No secret value (any Key Vault version, the operator's) in what the demo printed.
    secrets = [v["value"] for v in state["keyvault"]["versions"]] + [d["operator"]["client_secret"]]
    for value in secrets:
        assert value not in timeline
        assert value not in err
        assert value not in log_file.read_text()


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *(sys.executable, "-m", "daemon.cli", "demo"),
                *("--web.listen-address", f"127.0.0.1:{port}"),
                *("--log.file", str(tmp_path / "demo.log")),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"secretwarden demo: cannot listen on 127.0.0.1:{port}: the address is already in use "
        "(another secretwarden or exporter?)"
    ]
