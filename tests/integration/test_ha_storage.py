"""High availability when storage goes away: Azurite stopped (an outage for every
daemon), and one daemon cut off from storage by a TCP proxy the test controls (a
partition). Two ``secretwarden run`` processes on one sandbox tenant.

What must hold: the cut-off holder stops writing (its lease gauge drops, its run stops)
before any other daemon can take the lease; no remediation starts without a lease;
probes and /metrics go on throughout; everything resumes when storage returns.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azurite import TcpProxy, azurite, connection_string
from ha_cluster import (
    FAULTS,
    HA,
    ROTATING,
    Cluster,
    Sampler,
    converged,
    make_due,
    sandbox_state,
    wait,
)

from sandbox import SandboxThread

PROBE_OK = 'secretwarden_probe_success{probe="health",target="portal"}'


@pytest.fixture
def tenant(tmp_path: Path) -> Iterator[SandboxThread]:
    with SandboxThread(ca_dir=tmp_path / "ca", faults=FAULTS) as sandbox:
        yield sandbox


def in_kv(state: dict[str, Any]) -> str:
    return next(c["keyId"] for c in state["credentials"] if c["in_key_vault"])


def test_a_holder_cut_off_mid_rotation_stops_before_another_takes_over(
    tenant: SandboxThread, tmp_path: Path
) -> None:
    with azurite(tmp_path / "azurite") as server, TcpProxy(server.port) as proxy:
        cluster = Cluster(
            tenant,
            tmp_path,
            server.connection_string,
            container=f"ha-{secrets.token_hex(4)}",
            own_storage={0: connection_string(proxy.port)},
        )
        a, b = cluster.daemons
        sampler = Sampler(cluster)
        try:
            a.start()
            wait("d0 to hold the lease", lambda: cluster.holders()[:1] == [a], 120, cluster)
            b.start()
            sampler.start()
            wait("d1 to serve", lambda: b.metrics() is not None, 60, cluster)
            old = in_kv(sandbox_state(tenant))
            make_due(tenant, old)
            wait("d0 to rotate", lambda: (a.metrics() or {}).get(ROTATING) == 1, 30, cluster)
            proxy.cut()
            cut = time.monotonic()
            wait("d1 to take over", lambda: cluster.holders()[:1] == [b], 40, cluster)

            def done() -> bool:
                st = sandbox_state(tenant)
                return converged(st) and in_kv(st) != old

            wait("the rotation to converge on d1", done, 60, cluster)
            assert (a.metrics(full=True) or {}).get(PROBE_OK) == 1  # probes and /metrics went on
            time.sleep(1)
            a_stopped = max(sampler.last("d0", holds=True), sampler.last("d0", runs=True))
            b_took = sampler.first("d1", cut, holds=True)
            # d0 stopped holding and remediating before d1 held the lease, and by more
            # than the margin the settings promise (lease - renew deadline)
            assert a_stopped < b_took
            assert b_took - a_stopped > 0.5 * (HA["lease_seconds"] - HA["renew_deadline_seconds"])
            assert b_took - cut < HA["lease_seconds"] + 5
            proxy.restore()
            # back on storage, d0 rejoins: one target, two daemons: d1 keeps it
            time.sleep(2 * HA["retry_seconds"] + 1)
            assert cluster.holders() == [b]
            assert (a.metrics(full=True) or {}).get(PROBE_OK) == 1
        finally:
            sampler.stop()
            for d in cluster.daemons:
                d.kill()
    assert sampler.violations == []
    state = sandbox_state(tenant)
    assert state["app"]["graph_401_total"] == 0
    print(f"\ncut -> d0 stopped {a_stopped - cut:.1f}s, cut -> d1 held {b_took - cut:.1f}s")


def test_storage_outage_stops_remediation_everywhere_and_it_resumes(
    tenant: SandboxThread, tmp_path: Path
) -> None:
    with azurite(tmp_path / "azurite") as server:
        cluster = Cluster(
            tenant, tmp_path, server.connection_string, container=f"ha-{secrets.token_hex(4)}"
        )
        sampler = Sampler(cluster)
        try:
            cluster.start()
            holder = wait("a lease holder", lambda: cluster.holders()[:1], 120, cluster)[0]
            sampler.start()
            down = time.monotonic()
            server.stop()
            stopped = time.monotonic() - down
            wait("every daemon to drop the lease", lambda: not cluster.holders(), 30, cluster)
            dropped = time.monotonic() - down
            old = in_kv(sandbox_state(tenant))
            make_due(tenant, old)  # the policy wants a rotation now
            time.sleep(HA["lease_seconds"] + 2)
            for d in cluster.daemons:  # probes and /metrics go on, nothing remediates
                m = d.metrics(full=True)
                assert m is not None
                assert m.get(PROBE_OK) == 1
                assert m.get(ROTATING) == 0
            assert in_kv(sandbox_state(tenant)) == old
            server.start()
            up = time.monotonic()
            wait("a lease holder again", lambda: cluster.holders()[:1], 60, cluster)
            back = time.monotonic() - up

            def done() -> bool:
                st = sandbox_state(tenant)
                return converged(st) and in_kv(st) != old

            wait("the rotation after the outage", done, 60, cluster)
        finally:
            sampler.stop()
            for d in cluster.daemons:
                d.kill()
    assert sampler.violations == []
    # the holder dropped the lease by its renew deadline, long before storage came back
    assert (
        sampler.last(holder.name, holds=True, before=up) < down + HA["renew_deadline_seconds"] + 1
    )
    print(
        f"\nstorage stop requested -> stopped {stopped:.1f}s -> no holder {dropped:.1f}s "
        f"after the request; storage up -> holder {back:.1f}s"
    )
