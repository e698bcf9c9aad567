"""Several ``secretwarden run`` processes sharing one sandbox tenant and one Azurite
container (high availability), for tests/integration/test_ha_daemons.py and
bench/ha_failover.py.

- :class:`Cluster` writes one config per daemon (its own state directory, its own
  port; the same [ha] container), starts, kills (SIGKILL), stops (SIGTERM) them.
- :class:`Sampler` reads every live daemon's /metrics in a loop and records each
  sample in which two daemons run a remediation for one target, or both claim its
  lease: the test asserts there is none.
- :func:`kill_round` is one round: make the in-use secret due, wait for the lease
  holder to start rotating, SIGKILL it at a random moment of the rotation, and wait
  until another daemon has taken over and the tenant has converged.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from helpers import free_port
from prometheus_client.parser import text_string_to_metric_families

from daemon.sandbox_config import sandbox_config_toml, write_secret_file
from sandbox import SandboxThread
from sandbox.snapshot import state_json

ROOT = Path(__file__).resolve().parents[1]
TARGET = "portal"
INTERVALS = {"expiry": 1.0, "health": 1.0, "graph": 2.0, "reference": 2.0}
REMEDIATION: dict[str, bool | int | float] = {
    "enabled": True,
    "max_rotations_per_day": 500,
    "propagation_timeout_seconds": 20,
    "propagation_poll_seconds": 0.2,
    "refresh_timeout_seconds": 5,
    "cold_start_timeout_seconds": 10,
    "verify_poll_seconds": 0.2,
    "step_attempts": 2,
    "graph_read_lag_seconds": 0,
    "duplicate_window_seconds": 0,
    "backoff_initial_seconds": 1,
    "backoff_max_seconds": 2,
}
# The shortest lease Azure allows; a renew deadline leaving a 5 s margin; try to take
# a free lease every second.
HA = {"lease_seconds": 15, "renew_deadline_seconds": 10, "retry_seconds": 1}
# Short delays set explicitly (not the sandbox's defaults, which may grow pessimistic):
# a rotation lasts about two seconds, so a kill lands inside it.
FAULTS: dict[str, Any] = {
    "reload_model": "documented",
    "cold_start_seconds": 0.2,
    "propagation_delay_seconds": 0.3,
    "refresh_delay_seconds": 0.3,
    "site_busy_seconds": 0.0,
    "active_version": "present",
    "app_sync_interval_seconds": 0.0,  # as every test: the app calls Graph when asked
    "signin_log_delay_seconds": 0.0,
    "graph_read_lag_seconds": 0.0,
}


WATCHED = ("secretwarden_ha_", "secretwarden_remediation_in_progress")


def samples(address: str, timeout: float = 2, *, full: bool = False) -> dict[str, float]:
    """The HA and in-progress series of a daemon's /metrics (only those lines are
    parsed, unless ``full``: the sampler reads every daemon many times a second)."""
    text = httpx.get(f"http://{address}/metrics", timeout=timeout).text
    watched = ("secretwarden_",) if full else WATCHED
    lines = "\n".join(line for line in text.splitlines() if line.startswith(watched))
    out = {}
    for family in text_string_to_metric_families(lines + "\n"):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


HELD = f'secretwarden_ha_lease_held{{target="{TARGET}"}}'
ROTATING = f'secretwarden_remediation_in_progress{{action="rotate",target="{TARGET}"}}'
ANY_RUN = [
    f'secretwarden_remediation_in_progress{{action="{a}",target="{TARGET}"}}'
    for a in ("rotate", "heal", "cleanup")
]


@dataclass
class Daemon:
    name: str
    config: Path
    address: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "run", "--config.file", str(self.config),
                 "--log.format", "json"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            )  # fmt: skip

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self, *, full: bool = False) -> dict[str, float] | None:
        if not self.alive:
            return None
        try:
            return samples(self.address, full=full)
        except httpx.HTTPError:
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> float:
        """SIGTERM; returns how long the daemon took to exit."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        return time.monotonic() - t0


@dataclass
class Cluster:
    sandbox: Any  # sandbox.SandboxThread
    tmp: Path
    connection_string: str
    size: int = 2
    container: str = "secretwarden-ha"
    daemons: list[Daemon] = field(default_factory=list)
    # Per daemon, a connection string of its own (a daemon behind a TcpProxy).
    own_storage: dict[int, str] = field(default_factory=dict)
    remediation: dict[str, bool | int | float] = field(default_factory=lambda: REMEDIATION)
    targets: int = 1  # more than one: the same portal under several names (spread tests)

    def __post_init__(self) -> None:
        d = self.sandbox.describe()
        secret = self.tmp / "operator.secret"
        write_secret_file(secret, d["operator"]["client_secret"])
        for i in range(self.size):
            name = f"d{i}"
            storage = self.tmp / f"storage-{name}.secret"
            write_secret_file(storage, self.own_storage.get(i, self.connection_string))
            address = f"127.0.0.1:{free_port()}"
            toml = sandbox_config_toml(
                d,
                state_directory=self.tmp / name / "state",
                secret_file=secret,
                listen_address=address,
                intervals=INTERVALS,
                retry_total=0,
                remediation=self.remediation,
            )
            if self.targets > 1:
                block = toml[toml.index("[[targets]]") :]
                toml += "".join(
                    "\n" + block.replace(f'name = "{TARGET}"', f'name = "{TARGET}{k}"')
                    for k in range(1, self.targets)
                )
            ha = '\n[ha]\nbackend = "azure_blob"\n'
            ha += f'container = "{self.container}"\nconnection_string_file = "{storage}"\n'
            ha += "".join(f"{k} = {v}\n" for k, v in HA.items())
            (self.tmp / name).mkdir(parents=True, exist_ok=True)
            config = self.tmp / name / "sw.toml"
            config.write_text(toml + ha)
            self.daemons.append(Daemon(name, config, address, self.tmp / name / "daemon.log"))

    def start(self) -> None:
        for d in self.daemons:
            d.start()

    def stop(self) -> None:
        for d in self.daemons:
            if d.alive:
                d.terminate()

    def holders(self) -> list[Daemon]:
        out = []
        for d in self.daemons:
            m = d.metrics()
            if m is not None and m.get(HELD) == 1:
                out.append(d)
        return out

    def running(self) -> list[str]:
        """Daemons with a remediation of the target in progress."""
        out = []
        for d in self.daemons:
            m = d.metrics()
            if m is not None and any(m.get(k) == 1 for k in ANY_RUN):
                out.append(d.name)
        return out

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {d.name}\n{d.log.read_text(errors='replace')[-tail:]}" for d in self.daemons
        )


class Sampler(threading.Thread):
    """Reads every live daemon's /metrics in a loop; :attr:`violations` lists each
    sample where two daemons remediate one target or both hold its lease."""

    def __init__(self, cluster: Cluster, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.every = every
        self.count = 0
        self.violations: list[str] = []
        # (monotonic time, daemon, holds the lease, remediates) per daemon per sample
        self.history: list[tuple[float, str, bool, bool]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            running, held = [], []
            for d in self.cluster.daemons:
                m = d.metrics()
                if m is None:
                    continue
                runs, holds = any(m.get(k) == 1 for k in ANY_RUN), m.get(HELD) == 1
                if runs:
                    running.append(d.name)
                if holds:
                    held.append(d.name)
                self.history.append((time.monotonic(), d.name, holds, runs))
            self.count += 1
            if len(running) > 1:
                self.violations.append(f"{time.time():.2f}: remediating on {running}")
            if len(held) > 1:
                self.violations.append(f"{time.time():.2f}: lease claimed by {held}")
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def last(
        self,
        name: str,
        *,
        holds: bool | None = None,
        runs: bool | None = None,
        before: float = float("inf"),
    ) -> float:
        """When ``name`` was last seen holding (or remediating), before ``before``."""
        times = [
            t
            for t, n, h, r in self.history
            if n == name
            and t < before
            and (holds is None or h == holds)
            and (runs is None or r == runs)
        ]
        return max(times, default=float("-inf"))

    def first(self, name: str, since: float, *, holds: bool) -> float:
        times = [t for t, n, h, _ in self.history if n == name and t >= since and h == holds]
        return min(times, default=float("inf"))


def wait(what: str, check: Callable[[], Any], timeout: float, cluster: Cluster) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{cluster.logs()}")


def make_due(sandbox: Any, key_id: str) -> None:
    """The credential ``key_id`` now ends in one day: the policy rotates it (30 days)."""
    portal = sandbox.portal

    def shorten() -> None:
        cred = portal.credential(key_id)
        assert cred is not None, key_id
        cred.end = portal.now() + timedelta(days=1)

    sandbox.call(shorten)


def converged(state: dict[str, Any]) -> bool:
    creds = state["credentials"]
    in_kv = [c for c in creds if c["in_key_vault"]]
    return (
        len(in_kv) == 1
        and not in_kv[0]["expired"]
        and in_kv[0]["in_use_by_app"]
        and state["site"]["resolved_version"] == state["keyvault"]["current_version"]
        and len(creds) == 1  # no orphan, the old one removed
    )


@dataclass(frozen=True)
class Round:
    killed: str
    after_start: float  # seconds into the rotation the holder was killed
    takeover: float  # kill -> another daemon holds the lease (its gauge says 1)
    converged: float  # kill -> the tenant converged
    new_holder: str


def kill_round(cluster: Cluster, state: Callable[[], dict[str, Any]], rng: random.Random) -> Round:
    """One round; the sandbox must be converged and a daemon hold the lease."""
    holder = wait("a lease holder", lambda: cluster.holders()[:1], 120, cluster)[0]
    wait("no run in progress", lambda: not cluster.running(), 30, cluster)
    before = state()
    old = next(c["keyId"] for c in before["credentials"] if c["in_key_vault"])
    make_due(cluster.sandbox, old)
    wait("the holder to start rotating", lambda: (holder.metrics() or {}).get(ROTATING) == 1,
         20, cluster)  # fmt: skip
    started = time.monotonic()
    time.sleep(rng.uniform(0, 2.0))
    holder.kill()
    killed = time.monotonic()
    new = wait("another daemon to take the lease", lambda: cluster.holders()[:1], 40, cluster)[0]
    took = time.monotonic() - killed

    def done() -> bool:
        st = state()
        kv = [c for c in st["credentials"] if c["in_key_vault"]]
        return converged(st) and bool(kv) and kv[0]["keyId"] != old

    wait("the tenant to converge on a new credential", done, 60, cluster)
    conv = time.monotonic() - killed
    assert state()["app"]["graph_401_total"] == 0, "the app got a 401"
    holder.start()  # back, for the next round (it must not take the lease from `new`)
    return Round(holder.name, killed - started, took, conv, new.name)


def sandbox_state(sandbox: Any) -> dict[str, Any]:
    result: dict[str, Any] = sandbox.call(lambda: state_json(sandbox.portal))
    return result


@dataclass
class KillRounds:
    rounds: list[Round]
    violations: list[str]
    samples: int
    final: dict[str, Any]
    status: str  # `secretwarden status` after the last round (HA: read from storage)


def run_kill_rounds(
    tmp: Path, connection_string: str, rounds: int, seed: int, size: int = 2
) -> KillRounds:
    """A sandbox tenant of its own, ``size`` daemons, ``rounds`` kill rounds in a row."""
    with SandboxThread(ca_dir=tmp / "ca", faults=FAULTS) as sandbox:
        cluster = Cluster(
            sandbox, tmp, connection_string, size=size, container=f"ha-{seed:x}-{os.getpid()}"
        )
        rng = random.Random(seed)
        sampler = Sampler(cluster)
        done: list[Round] = []
        try:
            cluster.start()
            sampler.start()
            for _ in range(rounds):
                done.append(kill_round(cluster, lambda: sandbox_state(sandbox), rng))
            status = subprocess.run(
                [sys.executable, "-m", "daemon.cli", "status", "--config.file",
                 str(cluster.daemons[0].config)],
                capture_output=True, text=True, timeout=60, check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            ).stdout  # fmt: skip
        finally:
            sampler.stop()
            for d in cluster.daemons:
                d.kill()
        return KillRounds(done, sampler.violations, sampler.count, sandbox_state(sandbox), status)
