"""`secretwarden sandbox --write-config` then `secretwarden run` on that file, as
processes: ready, SIGHUP with a bad file keeps the running config (and says so in a
metric), SIGHUP with a good one reloads, SIGTERM exits 0. Nothing prints a secret."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from helpers import free_port
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).parents[2]


@contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def wait_for(
    what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, (
            f"exited {proc.returncode} waiting for {what}:\n" + (log.read_text()[-3000:])
        )
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def samples(address: str) -> dict[str, float]:
    """`name{a="b"}` -> value, from the exposition parsed by prometheus_client."""
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_sandbox_config_runs_unchanged_and_reloads_on_sighup(tmp_path: Path) -> None:
    describe_file, config = tmp_path / "sandbox.json", tmp_path / "daemon" / "sw.toml"
    sb_log, sw_log = tmp_path / "sandbox.log", tmp_path / "daemon.log"
    address = f"127.0.0.1:{free_port()}"
    reload_ok = "secretwarden_config_last_reload_successful{}"
    sandbox_args = ["sandbox", "--describe", str(describe_file), "--write-config", str(config)]
    with process(sandbox_args, sb_log) as sandbox:
        wait_for("the sandbox's files", lambda: describe_file.exists(), sandbox, sb_log)
        wait_for(
            "the config", lambda: config.exists() and config.stat().st_size > 0, sandbox, sb_log
        )
        good = config.read_text()
        run = ["run", "--config.file", str(config), "--web.listen-address", address]
        with process([*run, "--log.format", "json"], sw_log) as daemon:

            def ready() -> bool:
                try:
                    return httpx.get(f"http://{address}/-/ready", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for("/-/ready", ready, daemon, sw_log)
            s = samples(address)
            for probe in ("expiry", "health", "graph", "reference"):
                assert s[f'secretwarden_probe_success{{probe="{probe}",target="portal"}}'] == 1
            assert s['secretwarden_graph_probe_success{target="portal"}'] == 1
            assert s['secretwarden_keyvault_secret_matches_credential{target="portal"}'] == 1
            assert s[reload_ok] == 1

            config.write_text(good + "\n[extra]\nbogus = 1\n")
            daemon.send_signal(signal.SIGHUP)
            wait_for("a failed reload", lambda: samples(address)[reload_ok] == 0, daemon, sw_log)
            assert 'secretwarden_graph_probe_success{target="portal"}' in samples(address)

            config.write_text(good.replace('name = "portal"', 'name = "renamed"'))
            daemon.send_signal(signal.SIGHUP)
            wait_for("a good reload", lambda: samples(address)[reload_ok] == 1, daemon, sw_log)
            s = samples(address)
            assert 'secretwarden_graph_probe_success{target="renamed"}' in s
            # every series of the removed target is gone, the remediation ones too, and
            # the new target's remediation series exist at 0
            assert [k for k in s if 'target="portal"' in k] == []
            assert (
                s['secretwarden_remediation_blocked{reason="circuit_open",target="renamed"}'] == 0
            )

            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(20) == 0
        sandbox.send_signal(signal.SIGTERM)
        assert sandbox.wait(20) == 0

    events = [json.loads(line) for line in sw_log.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert "config reload failed; keeping the running config" in names
    failed = next(e for e in events if e["event"].startswith("config reload failed"))
    assert failed["problems"] == ["extra: unknown key"]
    assert "config reloaded" in names
    assert names[-1] == "daemon stopped"
    assert not [e for e in events if e.get("exc_info") or e.get("exception")]
    secret = json.loads(describe_file.read_text())["operator"]["client_secret"]
    assert secret not in sw_log.read_text() + sb_log.read_text()
