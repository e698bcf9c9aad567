"""TLS and basic auth on the web server, and sd_notify over a real unix datagram socket."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from daemon.sdnotify import SystemdNotifier
from daemon.web import WebServer
from daemon.webauth import hash_password, verify_password
from daemon.webconfig import TLSSettings, WebSettings
from sandbox.certs import ensure_tls


async def test_basic_auth_guards_metrics_but_not_the_webhook_prefix() -> None:
    users = {"prom": hash_password("right horse", iterations=1000)}
    server = WebServer(CollectorRegistry(), ready=lambda: True, basic_auth_users=users)
    port = await server.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{base}/metrics")).status_code == 401
            wrong = await http.get(f"{base}/metrics", auth=("prom", "wrong"))
            assert wrong.status_code == 401
            ok = await http.get(f"{base}/metrics", auth=("prom", "right horse"))
            assert ok.status_code == 200
            assert "python_info" not in ok.text  # a fresh registry, not the global one
            # /api/ routes check their own bearer token; unknown ones are a plain 404
            assert (await http.get(f"{base}/api/v1/nothing")).status_code == 404
    finally:
        await server.stop()


async def test_tls_with_a_generated_certificate_and_basic_auth(tmp_path: Path) -> None:
    tls = ensure_tls(tmp_path / "ca", [])
    users = {"prom": hash_password("right horse", iterations=1000)}
    settings = WebSettings(tls=TLSSettings(tls.cert_file, tls.key_file), users=users)
    server = WebServer(CollectorRegistry(), ready=lambda: True, settings=settings)
    port = await server.start("127.0.0.1", 0)
    assert server.scheme == "https"
    try:
        trusting = ssl.create_default_context(cafile=str(tls.ca_file))
        async with httpx.AsyncClient(verify=trusting) as http:
            url = f"https://127.0.0.1:{port}/metrics"
            assert (await http.get(url)).status_code == 401
            ok = await http.get(url, auth=("prom", "right horse"))
            assert ok.status_code == 200
            assert (await http.get(f"https://127.0.0.1:{port}/-/healthy")).status_code == 401
        # a client that does not trust the CA is refused, and plain HTTP gets no answer
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(f"https://127.0.0.1:{port}/metrics")
            with pytest.raises(httpx.HTTPError):
                await http.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        await server.stop()


def test_password_hash_round_trip() -> None:
    hashed = hash_password("s", iterations=1000)
    assert verify_password("s", hashed)
    assert not verify_password("t", hashed)
    assert not verify_password("s", "bcrypt$whatever")


def test_sd_notify_sends_ready_watchdog_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        n = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
        assert n.watchdog_seconds == 4.0
        assert n.ready("1 target(s); 4/4 probes passing")
        assert sock.recv(1024) == b"READY=1\nSTATUS=1 target(s); 4/4 probes passing"
        assert n.watchdog()
        assert sock.recv(1024) == b"WATCHDOG=1"
        assert n.stopping()
        assert sock.recv(1024).startswith(b"STOPPING=1")
    assert not SystemdNotifier({}).ready("x")  # outside systemd: a no-op
