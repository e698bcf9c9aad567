"""`secretwarden sandbox --write-config` then `secretwarden run` on that file, as
processes: ready, SIGHUP with a bad file keeps the running config (and says so in a
metric), SIGHUP with a good one reloads, SIGTERM exits 0. Nothing prints a secret."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cryptography import x509
from helpers import free_port
from prometheus_client.parser import text_string_to_metric_families

from daemon.sandbox_config import write_secret_file
from sandbox.certs import ensure_tls

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


def test_sighup_rereads_the_webhook_token_and_the_tls_certificate(tmp_path: Path) -> None:
    """After rewriting the token file and the certificate, SIGHUP: the new token works
    and the old one is refused; new connections get the new certificate."""
    describe_file, config = tmp_path / "sandbox.json", tmp_path / "daemon" / "sw.toml"
    sb_log, sw_log = tmp_path / "sandbox.log", tmp_path / "daemon.log"
    token_file, web_file = tmp_path / "daemon" / "webhook-token", tmp_path / "web.yml"
    address = f"127.0.0.1:{free_port()}"
    tls = ensure_tls(tmp_path / "tls", [])
    web_file.write_text(
        "tls_server_config:\n  cert_file: tls/sandbox-server.pem\n"
        "  key_file: tls/sandbox-server.key\n"
    )
    old, new = "wh-old-token-5b1e90", "wh-new-token-c47d22"
    sandbox_args = ["sandbox", "--describe", str(describe_file), "--write-config", str(config)]
    with process(sandbox_args, sb_log) as sandbox:
        wait_for("the sandbox's files", lambda: describe_file.exists(), sandbox, sb_log)
        wait_for(
            "the config", lambda: config.exists() and config.stat().st_size > 0, sandbox, sb_log
        )
        write_secret_file(token_file, old)
        config.write_text(
            config.read_text() + f'\n[remediation]\nwebhook_token_file = "{token_file}"\n'
        )
        run = ["run", "--config.file", str(config), "--web.listen-address", address]
        run += ["--web.config.file", str(web_file), "--log.format", "json"]
        trusting = ssl.create_default_context(cafile=str(tls.ca_file))
        hook = f"https://{address}/api/v1/alerts"
        resolved = {"version": "4", "alerts": [{"status": "resolved", "labels": {}}]}

        def post(token: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return httpx.post(hook, json=resolved, headers=headers, verify=trusting).status_code

        def served_serial() -> int:
            with (
                socket.create_connection(("127.0.0.1", int(address.split(":")[1]))) as sock,
                trusting.wrap_socket(sock, server_hostname="127.0.0.1") as tls_sock,
            ):
                der = tls_sock.getpeercert(binary_form=True)
            assert der is not None
            return x509.load_der_x509_certificate(der).serial_number

        def file_serial() -> int:
            return x509.load_pem_x509_certificate(tls.cert_file.read_bytes()).serial_number

        with process(run, sw_log) as daemon:

            def ready() -> bool:
                try:
                    url = f"https://{address}/-/ready"
                    return httpx.get(url, verify=trusting, timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for("/-/ready over TLS", ready, daemon, sw_log)
            assert post(old) == 200
            assert post(new) == 401
            first_serial = served_serial()
            assert first_serial == file_serial()

            # a token file others may read fails the reload: the running token stays
            token_file.chmod(0o644)
            daemon.send_signal(signal.SIGHUP)
            failed = "config reload failed"
            wait_for("a refused reload", lambda: failed in sw_log.read_text(), daemon, sw_log)
            assert post(old) == 200

            write_secret_file(token_file, new)  # mode 0600 again
            ensure_tls(tmp_path / "tls", ["renewed.example"])  # same files, a new certificate
            assert file_serial() != first_serial
            daemon.send_signal(signal.SIGHUP)
            wait_for("the reload", lambda: "config reloaded" in sw_log.read_text(), daemon, sw_log)
            assert post(new) == 200
            assert post(old) == 401
            assert served_serial() == file_serial()

            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(20) == 0
        sandbox.send_signal(signal.SIGTERM)
        assert sandbox.wait(20) == 0

    text = sw_log.read_text()
    events = [json.loads(line) for line in text.splitlines()]
    assert "webhook token changed" in [e["event"] for e in events]
    failed = next(e for e in events if e["event"].startswith("config reload failed"))
    assert failed["problems"] == [
        f"remediation.webhook_token_file: {token_file} is readable by its group and others "
        "(mode 644); chmod 600 it, or let systemd's LoadCredential= hand it over"
    ]
    assert not [e for e in events if e.get("exc_info") or e.get("exception")]
    assert old not in text
    assert new not in text
