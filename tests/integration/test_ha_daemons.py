"""High availability with real processes: two and three ``secretwarden run`` daemons
(separate state directories) on one sandbox tenant and one Azurite.

The lease holder is SIGKILLed at random moments of a rotation, round after round:
every round converges (Key Vault's value is a live credential the app uses, the app
healthy, no 401 the app got, no orphan) and no sample of the daemons' /metrics shows
two of them remediating the target, or both claiming its lease. A round waits for the
killed holder's lease to lapse (15 s, Azure's shortest), so the rounds run on two
tenants at once (two sandboxes, two pairs of daemons, one Azurite): 2 x 10 in CI,
``SECRETWARDEN_HA_ROUNDS`` per tenant to change it; bench/ha_failover.py runs 100.
"""

from __future__ import annotations

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from azurite import Azurite
from ha_cluster import KillRounds, converged, run_kill_rounds

ROUNDS = int(os.environ.get("SECRETWARDEN_HA_ROUNDS", "10"))  # per tenant; two tenants


def test_sigkill_of_the_lease_holder_mid_rotation_converges_every_round(
    azurite_server: Azurite, tmp_path: Path
) -> None:
    seed = int(time.time())
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(
                run_kill_rounds,
                tmp_path / f"tenant{i}",
                azurite_server.connection_string,
                ROUNDS,
                seed + i,
            )
            for i in range(2)
        ]
        results: list[KillRounds] = [f.result() for f in futures]
    rounds = [r for res in results for r in res.rounds]
    assert len(rounds) == 2 * ROUNDS
    for res in results:
        assert res.violations == [], res.violations
        assert res.samples > 20 * ROUNDS  # the sampler saw the daemons all along
        assert converged(res.final)
        assert res.final["app"]["graph_401_total"] == 0
    # `status` tells both halves of a rotation one daemon started and another finished
    status = "\n".join(res.status for res in results)
    assert "  lease: held by " in status
    assert "started by " in status
    assert "taken over by " in status, status
    # and a rotation finished by the daemon that took it over ends as one run alone
    taken = re.findall(r"rotate (\w+)[^\n]*\n      started by [^\n]*\n      taken over by", status)
    assert taken, status
    assert set(taken) == {"success"}, status
    takeovers = sorted(r.takeover for r in rounds)
    print(
        f"\n{len(rounds)} rounds (seed {seed}), {sum(r.samples for r in results)} samples; "
        f"kill -> new holder: median {takeovers[len(takeovers) // 2]:.1f}s, "
        f"max {takeovers[-1]:.1f}s"
    )
    # the lease lapses 15 s after the last renewal (at most a round, 1 s, before the
    # kill); then one acquire round and the journal read from storage: about 16 s, more
    # on a loaded machine (19 s seen with load 8 on 2 cores), never two lease times
    assert takeovers[-1] < 2 * 15
