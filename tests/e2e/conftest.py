"""Real processes for the end-to-end tests: the daemon (demo or run), Prometheus and
Alertmanager on loopback ports in temporary directories. Every process started here is
stopped here (terminate, then kill), whatever the test did."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRETWARDEN = Path(sys.executable).with_name("secretwarden")
T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


def require(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH")


def wait_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def http_json(url: str, data: dict[str, Any] | None = None, timeout: float = 5) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as r:
        text = r.read().decode()
    return json.loads(text) if text else None


class Process:
    """A child process with its output in a log file, for error messages."""

    def __init__(self, name: str, args: list[str], log: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.log = log
        self._out = log.open("w")
        self.popen = subprocess.Popen(args, stdout=self._out, stderr=subprocess.STDOUT, cwd=cwd)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def assert_alive(self) -> None:
        assert self.alive(), f"{self.name} exited ({self.popen.returncode}):\n{self.output()}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()


@contextmanager
def running(name: str, args: list[str], log: Path, cwd: Path | None = None) -> Iterator[Process]:
    process = Process(name, args, log, cwd)
    try:
        yield process
    finally:
        process.stop()


class Prometheus:
    def __init__(self, url: str, process: Process) -> None:
        self.url = url
        self.process = process

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        answer = http_json(f"{self.url}/api/v1/{path}?{query}")
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def query_range(self, expr: str, seconds: float, step: str = "1s") -> list[dict[str, Any]]:
        now = time.time()
        data = self.api(
            "query_range", query=expr, start=str(now - seconds), end=str(now), step=step
        )
        return list(data["result"])


@contextmanager
def prometheus(tmp: Path, config: str) -> Iterator[Prometheus]:
    """A real prometheus with ``config`` (YAML text) in ``tmp``, ready to query."""
    require("prometheus")
    port = free_port()
    (tmp / "prometheus.yml").write_text(config)
    args = [
        "prometheus",
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running("prometheus", args, tmp / "prometheus.log", cwd=tmp) as process:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            process.assert_alive()
            return http_get(f"{url}/-/ready")[0] == 200

        wait_until("prometheus to be ready", ready, timeout=30)
        yield Prometheus(url, process)


@contextmanager
def demo_daemon(tmp: Path, duration: int = 300) -> Iterator[tuple[str, Process]]:
    """``secretwarden demo`` on a free port; yields its host:port once /metrics answers."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    args = [
        str(SECRETWARDEN), "demo", "--web.listen-address", address,
        "--duration", str(duration), "--log.format", "json",
        "--describe", str(tmp / "sandbox.json"),
    ]  # fmt: skip
    with running("secretwarden demo", args, tmp / "demo.log") as process:

        def serving() -> bool:
            process.assert_alive()
            return http_get(f"http://{address}/metrics")[0] == 200

        wait_until("the demo daemon's /metrics", serving, timeout=30)
        yield address, process
