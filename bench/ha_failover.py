"""High-availability failover benchmark; prints a table.
Run: .venv/bin/python bench/ha_failover.py [rounds]   (default 100; `make bench`)

Two ``secretwarden run`` processes per sandbox tenant share one Azurite container
(``lease_seconds`` 15, Azure's shortest; ``renew_deadline_seconds`` 10;
``retry_seconds`` 1). Each round makes the in-use secret due, waits for the lease
holder to start rotating, SIGKILLs it at a random moment of the rotation (0-2 s in; a
rotation takes about 1.5 s on this sandbox), and measures until another daemon holds
the lease and until the tenant has converged (one Key Vault value, a live credential
the app uses, the old one removed, no app 401). A sampler reads every daemon's
/metrics all along and counts the samples in which two daemons remediate the target or
both claim its lease (must be 0). The rounds run on four tenants at once (a round
mostly waits for the dead holder's lease to lapse). Needs azurite-blob on PATH
(scripts/install-azurite).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from azurite import Azurite
from ha_cluster import HA, KillRounds, run_kill_rounds
from table import print_table

TENANTS = 4


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    per = [rounds // TENANTS + (i < rounds % TENANTS) for i in range(TENANTS)]
    seed = int(time.time())
    with tempfile.TemporaryDirectory(prefix="ha-bench-") as tmp:
        server = Azurite(Path(tmp) / "azurite")
        server.start()
        try:
            t0 = time.monotonic()
            with ThreadPoolExecutor(TENANTS) as pool:
                futures = [
                    pool.submit(
                        run_kill_rounds,
                        Path(tmp) / f"tenant{i}",
                        server.connection_string,
                        n,
                        seed + i,
                    )
                    for i, n in enumerate(per)
                    if n
                ]
                results: list[KillRounds] = [f.result() for f in futures]
            wall = time.monotonic() - t0
        finally:
            server.stop()
    done = [r for res in results for r in res.rounds]
    takeover = [r.takeover for r in done]
    converge = [r.converged for r in done]
    kill_at = [r.after_start for r in done]
    violations = sum(len(res.violations) for res in results)
    samples = sum(res.samples for res in results)
    final_401 = sum(res.final["app"]["graph_401_total"] for res in results)
    print(
        f"HA failover: {len(done)} SIGKILL rounds on {len(results)} tenants, seed {seed}, "
        f"lease {HA['lease_seconds']} s, renew deadline {HA['renew_deadline_seconds']} s, "
        f"retry {HA['retry_seconds']} s\n"
    )
    print_table(
        [
            ("rounds converged", f"{len(done)}/{rounds}"),
            ("kill moment into the rotation, median (min-max)",
             f"{statistics.median(kill_at):.2f} s ({min(kill_at):.2f}-{max(kill_at):.2f})"),
            ("kill -> another daemon holds the lease, median",
             f"{statistics.median(takeover):.1f} s"),
            ("kill -> another daemon holds the lease, p90 / max",
             f"{pct(takeover, 0.9):.1f} s / {max(takeover):.1f} s"),
            ("kill -> tenant converged, median", f"{statistics.median(converge):.1f} s"),
            ("kill -> tenant converged, p90 / max",
             f"{pct(converge, 0.9):.1f} s / {max(converge):.1f} s"),
            ("takeover / lease time (median ratio)",
             f"{statistics.median(takeover) / HA['lease_seconds']:.2f}"),
            ("samples of every daemon's /metrics", str(samples)),
            ("samples with two daemons remediating or holding", str(violations)),
            ("app Graph 401s", str(final_401)),
            ("wall time", f"{wall:.0f} s"),
        ]
    )  # fmt: skip


if __name__ == "__main__":
    main()
