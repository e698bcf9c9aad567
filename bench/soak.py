"""Soak benchmark: the daemon's memory over 1,000 webhook-triggered remediation runs.

Run: .venv/bin/python bench/soak.py [--runs N] [--every N]

A real ``secretwarden run`` subprocess against a ``secretwarden sandbox`` subprocess (so
the sandbox's own memory is not counted), with the Alertmanager webhook on. Each run is
one firing alert POSTed to the webhook; the next is sent once the daemon's metrics show
the run finished. The outcomes are mixed, in a cycle of four:

- heal while Graph accepts the Key Vault value: ``nothing_to_do`` (diagnose, verify);
- heal after the in-use secret was expired: ``success`` (a whole rotation and reload);
- rotate while not due: ``nothing_to_do`` (plan only);
- heal while Key Vault answers 503: ``failed`` (the diagnosis cannot read the value).

The daemon's RSS (``/proc/PID/status`` VmRSS) is sampled before the first run and every
``--every`` runs. Issue 9's target: growth after the first 100 runs at most 10 MB.
Guards are opened wide (no daily cap, tiny backoff, no circuit, no duplicate window)
so that every alert is a run.

The per-run growth is printed as the median of the slopes between samples after the
first. ``--kinds 3`` (say) soaks one kind of run; ``--trace DIR`` runs the daemon under
bench/traced_daemon.py and dumps a tracemalloc snapshot into DIR at every sample (for
``tracemalloc.Snapshot.load`` and ``compare_to``). What grows, by kind, is in
docs/performance.md ("The soak's per-run growth"): the runs the wide-open guards keep
(an unbroken failure streak, every rotation of the day), not a leak.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from daemon.sandbox_config import sandbox_config_toml, write_secret_file

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent / "secretwarden"
TOKEN = "soak-webhook-token"
LIMIT_MB = 10.0
HOUR = 3600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def wait_for(what: str, check: Any, timeout: float = 60.0, proc: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(f"{what}: not within {timeout:g}s")


class Soak:
    def __init__(self, tmp: Path, trace: Path | None = None) -> None:
        self.tmp = tmp
        self.trace = trace
        describe_file = tmp / "sandbox.json"
        self.sandbox = subprocess.Popen(
            [str(EXE), "sandbox", "--listen", "127.0.0.1:0", "--describe", str(describe_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for("sandbox", describe_file.exists, proc=self.sandbox)
        wait_for("describe file", lambda: describe_file.stat().st_size > 0)
        self.d: dict[str, Any] = json.loads(describe_file.read_text())
        ctx = ssl.create_default_context(cafile=self.d["ca_file"])
        self.admin = httpx.Client(verify=ctx, timeout=30)
        # No modelled Azure delays (a new secret refused for 20 s, a refresh taking 5 s):
        # the soak counts memory per run, and with them a rotation took ~40 s.
        quick = {
            "app_sync_interval_seconds": 0,
            "propagation_delay_seconds": 0,
            "refresh_delay_seconds": 0,
        }
        self.admin.post(self.d["admin_url"] + "faults", json=quick).raise_for_status()
        token_file = tmp / "webhook.token"
        write_secret_file(token_file, TOKEN)
        secret_file = tmp / "operator-secret"
        write_secret_file(secret_file, self.d["operator"]["client_secret"])
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        toml = sandbox_config_toml(
            self.d,
            state_directory=tmp / "state",
            secret_file=secret_file,
            listen_address=f"127.0.0.1:{port}",
            intervals={p: HOUR for p in ("expiry", "health", "graph", "reference")},
            remediation={
                "enabled": True,  # remediation off is read-only: the webhook would be refused
                "builtin_triggers": False,  # only the soak's webhook calls start runs
                "max_rotations_per_day": 1_000_000,
                "backoff_initial_seconds": 0.001,
                "backoff_max_seconds": 0.001,
                "circuit_failures": 1_000_000,
                "duplicate_window_seconds": 0,
                "step_attempts": 1,
                "propagation_poll_seconds": 0.1,
                "verify_poll_seconds": 0.1,
                "refresh_timeout_seconds": 5,
                "cold_start_timeout_seconds": 10,
            },
        )
        toml = toml.replace(
            "[remediation]\n",
            f"[remediation]\nwebhook_token_file = {json.dumps(str(token_file))}\n",
        )
        config = tmp / "secretwarden.toml"
        config.write_text(toml)
        self.log = (tmp / "daemon.log").open("w")
        argv = [str(EXE), "run", "--config.file", str(config), "--log.level", "warning"]
        env = dict(os.environ)
        if trace is not None:  # the same CLI, with a SIGUSR2 hook that dumps tracemalloc
            trace.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, str(ROOT / "bench" / "traced_daemon.py"), *argv[1:]]
            env["SOAK_TRACE_DIR"] = str(trace)
        self.daemon = subprocess.Popen(argv, stderr=self.log, stdout=self.log, env=env)
        self.snapshots = 0
        self.http = httpx.Client(timeout=30)
        try:
            wait_for("daemon ready", self._ready, proc=self.daemon)
        except BaseException:
            self.close()
            raise
        self.outcomes: Counter[str] = Counter()

    def _ready(self) -> bool:
        try:
            return self.http.get(self.base + "/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        for proc in (self.daemon, self.sandbox):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.http.close()
        self.admin.close()
        self.log.close()

    def snapshot(self) -> None:
        """Have the traced daemon dump a tracemalloc snapshot (--trace only)."""
        if self.trace is None:
            return
        self.snapshots += 1
        self.daemon.send_signal(signal.SIGUSR2)
        done = self.trace / f"snapshot-{self.snapshots}.json"
        wait_for("snapshot", done.exists, timeout=300, proc=self.daemon)

    def finished(self) -> tuple[int, Counter[str]]:
        """Runs finished so far (by outcome) and whether one is in progress."""
        text = self.http.get(self.base + "/metrics").text
        done: Counter[str] = Counter()
        running = 0
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "secretwarden_remediation_total" and s.labels["outcome"] != "blocked":
                    done[s.labels["outcome"]] += int(s.value)
                if s.name == "secretwarden_remediation_in_progress":
                    running += int(s.value)
        return running, done

    def fault(self, faults: dict[str, Any]) -> None:
        self.admin.post(self.d["admin_url"] + "faults", json=faults).raise_for_status()

    def expire_in_use(self) -> None:
        state = self.admin.get(self.d["admin_url"] + "state").json()
        key = next(c["keyId"] for c in state["credentials"] if c["in_key_vault"])
        self.admin.post(self.d["admin_url"] + f"credentials/{key}/expire").raise_for_status()

    def one_run(self, kind: int) -> None:
        action = "rotate" if kind == 2 else "heal"
        if kind == 1:
            self.expire_in_use()
        if kind == 3:  # the diagnosis's Key Vault read and the SDK's one retry
            self.fault(
                {"inject": [{"service": "keyvault", "status": 503, "count": 2, "method": "GET"}]}
            )
        body = {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "Soak", "target": "portal", "remediation": action},
                }
            ],
        }
        _, before = self.finished()
        total = sum(before.values())
        while True:
            r = self.http.post(
                self.base + "/api/v1/alerts",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            if r.status_code == 202:
                break
            if r.status_code != 409:  # 409: the tiny backoff after a failure
                raise RuntimeError(f"webhook answered {r.status_code}: {r.text}")
            time.sleep(0.01)

        def ended() -> Counter[str] | None:
            running, done = self.finished()
            return done if not running and sum(done.values()) > total else None

        after = wait_for(f"run of kind {kind}", ended, timeout=120, proc=self.daemon)
        self.outcomes.update(after - before)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when the growth exceeds the limit"
    )
    parser.add_argument(
        "--kinds",
        default="0123",
        help="the kinds of run to cycle through (digits 0-3, as listed above); default all",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="run the daemon with tracemalloc (25 frames) and dump a snapshot into this "
        "folder at every sample (bench/traced_daemon.py; slow: for investigations)",
    )
    args = parser.parse_args()
    kinds = [int(k) for k in args.kinds]
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(Path(tmp), args.trace)
        try:
            pid = soak.daemon.pid
            soak.snapshot()
            samples = [(0, rss_mb(pid), 0.0)]
            start = time.perf_counter()
            for n in range(1, args.runs + 1):
                soak.one_run(kinds[(n - 1) % len(kinds)])
                if n % args.every == 0:
                    soak.snapshot()
                    samples.append((n, rss_mb(pid), time.perf_counter() - start))
            journal = soak.tmp / "state" / "journal" / "portal.jsonl"
            journal_kb = journal.stat().st_size / 1024 if journal.exists() else 0.0
        finally:
            soak.close()
    print(
        f"Soak: {args.runs} webhook-triggered remediation runs against the sandbox "
        f"(`secretwarden run` and `secretwarden sandbox` subprocesses); daemon RSS\n"
    )
    head = f"growth since run {args.every}, MB"
    print(f"| runs | RSS MB | {head} | elapsed s |")
    print(f"|-----:|-------:|{'-' * (len(head) + 1)}:|----------:|")
    base = next((rss for n, rss, _ in samples if n == args.every), samples[0][1])
    for n, rss, t in samples:
        cell = f"{rss - base:+.1f}" if n >= args.every else ""
        print(f"| {n:4d} | {rss:6.1f} | {cell:>{len(head)}} | {t:9.1f} |")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(soak.outcomes.items()))
    growth = samples[-1][1] - base
    slopes = sorted(
        (b[1] - a[1]) * 1024 / (b[0] - a[0])
        for a, b in itertools.pairwise(samples)
        if a[0] >= args.every
    )
    if slopes:
        median = statistics.median(slopes)
        print(
            f"\nper-run growth after run {args.every}: median {median:+.1f} KiB/run over "
            f"{len(slopes)} windows of {args.every} runs (min {slopes[0]:+.1f}, "
            f"max {slopes[-1]:+.1f})"
        )
    print(f"\noutcomes: {outcomes}; journal at the end: {journal_kb:.0f} KiB")
    verdict = "OK" if growth <= LIMIT_MB else "TOO MUCH"
    limit = f"(limit {LIMIT_MB:g} MB): {verdict}"
    print(f"growth after the first {args.every} runs: {growth:+.1f} MB {limit}")
    return 1 if args.strict and growth > LIMIT_MB else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
