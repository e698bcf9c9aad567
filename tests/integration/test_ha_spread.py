"""Three ``secretwarden run`` processes share six targets (the sandbox's portal under
six names, remediation off: only the leases are under test). Each holds its fair share
(ceil(6/3) = 2); SIGTERM of one hands its leases over at once (not a lease time later)
and the two left hold three each; started again, it gets its share back; SIGHUP hands
over what a daemon holds; ``status`` names each target's holder."""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azurite import Azurite
from ha_cluster import FAULTS, HA, ROOT, Cluster, wait

from sandbox import SandboxThread

TARGETS = 6


@pytest.fixture
def cluster(azurite_server: Azurite, tmp_path: Path) -> Iterator[Cluster]:
    with SandboxThread(ca_dir=tmp_path / "ca", faults=FAULTS) as sandbox:
        c = Cluster(
            sandbox,
            tmp_path,
            azurite_server.connection_string,
            size=3,
            container=f"ha-{secrets.token_hex(4)}",
            remediation={"enabled": False},
            targets=TARGETS,
        )
        try:
            yield c
        finally:
            for d in c.daemons:
                d.kill()


def held(cluster: Cluster) -> dict[str, list[str]]:
    """Daemon -> the targets it holds, from each live daemon's /metrics."""
    out: dict[str, list[str]] = {}
    for d in cluster.daemons:
        m = d.metrics()
        if m is None:
            continue
        out[d.name] = sorted(
            k.split('target="')[1].rstrip('"}')
            for k, v in m.items()
            if k.startswith("secretwarden_ha_lease_held") and v == 1
        )
    return out


def shares(cluster: Cluster) -> list[int]:
    return sorted(len(v) for v in held(cluster).values())


def test_three_daemons_share_six_targets_and_hand_over_on_sigterm(cluster: Cluster) -> None:
    cluster.start()
    wait("two targets each", lambda: shares(cluster) == [2, 2, 2], 120, cluster)
    every = held(cluster)
    assert sorted(t for ts in every.values() for t in ts) == sorted(
        ["portal", *[f"portal{k}" for k in range(1, TARGETS)]]
    )

    # status (from storage): every target's holder, named as in storage
    out = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "status", "--config.file",
         str(cluster.daemons[0].config)],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout  # fmt: skip
    assert out.count("  lease: held by ") == TARGETS, out

    leaving = cluster.daemons[2]
    t0 = time.monotonic()
    took = leaving.terminate()
    wait("the two left to hold three each", lambda: shares(cluster) == [3, 3], 30, cluster)
    handover = time.monotonic() - t0
    # released, not lapsed: well under the 15 s lease
    assert handover < HA["lease_seconds"] - 5, handover

    leaving.start()
    wait("the share back to two each", lambda: shares(cluster) == [2, 2, 2], 60, cluster)
    # never more than ceil(N/R) + 1 while rebalancing
    assert max(shares(cluster)) <= math.ceil(TARGETS / 3) + 1

    first = cluster.daemons[0]
    mine = held(cluster)[first.name]
    assert first.proc is not None
    first.proc.send_signal(signal.SIGHUP)
    wait(
        "the reload to release its leases",
        lambda: "reload (SIGHUP)" in first.log.read_text(errors="replace"),
        30,
        cluster,
    )
    wait("every target held again", lambda: sum(shares(cluster)) == TARGETS, 30, cluster)
    events = [
        json.loads(line)
        for line in first.log.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]
    released = {e["target"] for e in events if e.get("why") == "reload (SIGHUP)"}
    assert released == set(mine)

    # SIGKILL: its leases lapse (15 s) and its heartbeat ages out (one lease time); the
    # two left take its targets
    cluster.daemons[1].kill()
    t0 = time.monotonic()
    wait("the two left to hold three each", lambda: shares(cluster) == [3, 3], 60, cluster)
    after_kill = time.monotonic() - t0
    assert after_kill < 2 * HA["lease_seconds"]
    print(
        f"\nSIGTERM: exit {took:.1f}s, leases on the others {handover:.1f}s after the "
        f"signal; SIGKILL: its targets on the others after {after_kill:.1f}s"
    )
