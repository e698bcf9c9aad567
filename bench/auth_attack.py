"""A legitimate scrape while bad basic-auth logins arrive; prints a table.

Run: .venv/bin/python bench/auth_attack.py   (about 90 s)

The real daemon (`secretwarden run`, probes running against the sandbox at 1/10 of the
default intervals) serves TLS with a bcrypt user from a Prometheus web config file
(cost 10, as the exporter-toolkit's docs show). A scraper with the right password
fetches /metrics 10 times a second over one kept-alive connection, as Prometheus does,
and its latency is measured:

- with no attack;
- while 100 bad logins a second arrive from one address (a new TLS connection each);
- while 100 bad logins a second arrive from 100 addresses (127.0.0.2-101), so that
  the per-client throttle does not stop them and the verification queue must.

After the table, a second one (alone: ``--unknown-users``, about 15 s): what an unknown
username costs, in process against :class:`daemon.webauth.BasicAuth` with real bcrypt,
with users of cost 10 and one of cost 14 (standing in for the issue's cost-18 user, 16
times cheaper so that the bench stays short): now (a dummy of the cheapest cost) and
as main did (the dearest configured hash).

The attacker is a separate process (`--attack`), so its own work does not slow the
scraper's measurement. The daemon runs with a systemd watchdog of 2 s (``NOTIFY_SOCKET``
is a socket of this script's), so it pings ``WATCHDOG=1`` every second from its event
loop: the longest gap between two pings shows whether anything blocked the loop (systemd
kills the daemon when a gap reaches WatchdogSec, 60 s in the shipped unit). The last
columns count the attacker's answers: 401 (verified and wrong), 429 (throttled, nothing
verified), 503 (queue full, nothing verified).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import bcrypt
import httpx
from table import print_table  # bench/table.py: the script's folder is on sys.path

from daemon.config import ProbesSection
from daemon.sandbox_config import write_sandbox_config
from sandbox import SandboxThread
from sandbox.certs import ensure_tls

ROOT = Path(__file__).resolve().parents[1]
RATE = 100  # bad logins per second
SECONDS = 20.0  # per scenario
SCRAPES_PER_SECOND = 10
PASSWORD = "right horse battery"


async def attack(url: str, ca: str, rate: float, addresses: int, seconds: float) -> Counter[str]:
    """Open loop: a bad login every 1/rate s, whatever the answers take."""
    ctx = ssl.create_default_context(cafile=ca)
    no_reuse = httpx.Limits(max_keepalive_connections=0, max_connections=1000)
    clients = [
        httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(
                verify=ctx, local_address=f"127.0.0.{2 + i}", limits=no_reuse
            ),
            timeout=30,
        )
        for i in range(addresses)
    ]
    counts: Counter[str] = Counter()

    async def one(i: int) -> None:
        try:
            r = await clients[i % addresses].get(url, auth=("prom", f"guess-{i}"))
            counts[str(r.status_code)] += 1
        except httpx.HTTPError as exc:
            counts[type(exc).__name__] += 1

    tasks = []
    start = time.perf_counter()
    i = 0
    while (now := time.perf_counter() - start) < seconds:
        due = i / rate
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(one(i)))
        i += 1
    await asyncio.gather(*tasks)
    for c in clients:
        await c.aclose()
    return counts


def scrape(url: str, ca: str, seconds: float) -> list[float]:
    times = []
    with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=60) as http:
        http.get(url, auth=("prom", PASSWORD)).raise_for_status()  # the login, cached after
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            r = http.get(url, auth=("prom", PASSWORD))
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.status_code
            time.sleep(max(0.0, 1 / SCRAPES_PER_SECOND - (time.perf_counter() - t)))
    return times


class WatchdogPings:
    """A datagram socket standing in for systemd's: records when each WATCHDOG=1 came."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.5)
        self.times: list[float] = []
        self._stop = False
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            if b"WATCHDOG=1" in data:
                self.times.append(time.monotonic())

    def max_gap(self, since: float, until: float) -> float:
        inside = [t for t in self.times if since <= t <= until]
        return max((b - a for a, b in itertools.pairwise(inside)), default=float("nan"))

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


def start_daemon(
    tmp: Path, describe: dict[str, object], notify: Path
) -> tuple[subprocess.Popen[bytes], str, str]:
    defaults = ProbesSection()
    intervals = {
        p: defaults.schedule(p).interval_seconds / 10
        for p in ("expiry", "health", "graph", "reference")
    }
    port = free_port()
    config = tmp / "sw.toml"
    write_sandbox_config(describe, config, intervals=intervals)
    tls = ensure_tls(tmp / "web-tls", [])
    hashed = "$2y$" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()[4:]
    web = tmp / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {tls.cert_file}\n  key_file: {tls.key_file}\n"
        f"basic_auth_users:\n  prom: {hashed}\n"
    )
    log = open(tmp / "daemon.log", "w")  # noqa: SIM115 -- closed with the process
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "daemon.cli", "run", "--config.file", str(config)),
            *("--web.config.file", str(web), "--web.listen-address", f"127.0.0.1:{port}"),
            *("--log.format", "json", "--log.level", "warning"),
        ],
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "NOTIFY_SOCKET": str(notify),
            "WATCHDOG_USEC": "2000000",  # ping every second
        },
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=str(tls.ca_file))
    deadline = time.monotonic() + 60
    while True:
        try:
            r = httpx.get(f"{base}/-/ready", auth=("prom", PASSWORD), verify=ctx, timeout=5)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("daemon not ready: " + (tmp / "daemon.log").read_text()[-2000:])
        time.sleep(0.2)
    return proc, f"{base}/metrics", str(tls.ca_file)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_attacker(url: str, ca: str, addresses: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--attack", url, "--ca", ca, "--addresses", str(addresses)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def unknown_user_rows() -> list[tuple[str, str]]:
    """Median time of an unknown name's 401, of a known name's wrong password, and of a
    correct first login queued behind five unknown names, now and with main's rule."""
    from daemon import webauth
    from daemon.webauth import AuthLimits, BasicAuth, Verdict

    def hashed(password: str, cost: int) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()

    users = {"prom": hashed(PASSWORD, 10), "alice": hashed("a", 10), "dear": hashed("d", 14)}
    limits = AuthLimits(failure_burst=1e9, failures_per_minute=1e9, max_waiting=1000)

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def timed(auth: BasicAuth, user: str, password: str) -> float:
        t = time.perf_counter()
        await auth.check(basic(user, password), "10.0.0.1")
        return time.perf_counter() - t

    rows = []
    for rule in ("now", "as main did"):
        auth = BasicAuth(users, limits)
        if rule == "as main did":
            auth._dummy = max(users.values(), key=webauth._work)  # main's rule, replayed
        try:
            unknown = statistics.median([await timed(auth, f"nobody{i}", "x") for i in range(5)])
            known = statistics.median([await timed(auth, "prom", f"wrong{i}") for i in range(5)])
            queued = [asyncio.create_task(timed(auth, f"x{i}", "x")) for i in range(5)]
            await asyncio.sleep(0)  # the five are waiting for the verifier first
            t = time.perf_counter()
            assert await auth.check(basic("prom", PASSWORD), "10.0.0.2") is Verdict.OK
            login = time.perf_counter() - t
            await asyncio.gather(*queued)
        finally:
            auth.close()
        rows += [
            (f"unknown name, 401, median ms ({rule})", f"{unknown * 1000:.0f}"),
            (f"known name, wrong password, median ms ({rule})", f"{known * 1000:.0f}"),
            (f"right login behind 5 unknown names, ms ({rule})", f"{login * 1000:.0f}"),
        ]
    return rows


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as d, SandboxThread(ca_dir=Path(d) / "ca") as sb:
        pings = WatchdogPings(Path(d) / "notify.sock")
        proc, url, ca = start_daemon(Path(d), sb.describe(), pings.path)
        try:
            baseline: float | None = None
            for name, addresses in (
                ("no attack", 0),
                (f"{RATE} bad logins/s, 1 address", 1),
                (f"{RATE} bad logins/s, 100 addresses", 100),
            ):
                attacker = run_attacker(url, ca, addresses) if addresses else None
                if attacker is not None:
                    time.sleep(2.0)  # the attack is under way before the scrapes count
                began = time.monotonic()
                times = sorted(scrape(url, ca, SECONDS))
                gap = pings.max_gap(began, time.monotonic())
                counts: Counter[str] = Counter()
                if attacker is not None:
                    out, _ = attacker.communicate(timeout=120)
                    counts = Counter(json.loads(out))
                med = statistics.median(times) * 1000
                p99 = times[int(len(times) * 0.99)] * 1000
                baseline = baseline or med
                rows.append((name, med, p99, med / baseline, len(times), gap, counts))
        finally:
            proc.terminate()
            proc.wait(10)
            pings.close()
    head = (
        "| scenario                          | scrape median ms | scrape p99 ms | median ratio "
        "| scrapes | max watchdog gap s | attack 401 | attack 429 | attack 503 | other |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for name, med, p99, ratio, n, gap, counts in rows:
        other = sum(v for k, v in counts.items() if k not in ("401", "429", "503"))
        print(
            f"| {name:<33} | {med:16.2f} | {p99:13.2f} | {ratio:12.2f} | {n:7d} | {gap:18.2f} "
            f"| {counts['401']:10d} | {counts['429']:10d} | {counts['503']:10d} | {other:5d} |"
        )
    print()
    print_table(asyncio.run(unknown_user_rows()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--attack", metavar="URL")
    parser.add_argument("--ca")
    parser.add_argument("--addresses", type=int, default=1)
    parser.add_argument("--unknown-users", action="store_true", help="only the second table")
    args = parser.parse_args()
    if args.unknown_users:
        print_table(asyncio.run(unknown_user_rows()))
    elif args.attack:
        result = asyncio.run(attack(args.attack, args.ca, RATE, args.addresses, SECONDS + 2.0))
        print(json.dumps(result))
    else:
        main()
