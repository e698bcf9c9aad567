"""Journal benchmark: `secretwarden status` on a year of runs, before and after
compaction; prints a table. Run: .venv/bin/python bench/journal.py

A synthetic journal: one finished run every six hours for a year (1,460 runs, 14 lines
each, the shape the workflow writes). ``status`` is timed in-process (``print_status``:
read the journal, replay the guards, format), median of 7.
"""

from __future__ import annotations

import io
import logging
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from table import print_table  # bench/table.py: the script's folder is on sys.path

from daemon.config import load_checked_config
from daemon.remediate_cli import print_status
from daemon.sandbox_config import sandbox_config_toml, write_secret_file
from remediation.compaction import maybe_compact
from remediation.journal import Entry, Journal

RUNS = 4 * 365
REPEATS = 7
FAKE = {
    "tenant_id": "00000000-0000-0000-0000-000000000001",
    "operator": {"client_id": "00000000-0000-0000-0000-000000000002", "client_secret": "x"},
    "authority": "https://login.example.test",
    "graph_url": "https://graph.example.test/v1.0",
    "arm_url": "https://arm.example.test",
    "app": {"object_id": "00000000-0000-0000-0000-000000000003"},
    "key_vault_url": "https://vault.example.test",
    "secret_name": "AzureAdClientSecret",
    "subscription_id": "00000000-0000-0000-0000-000000000004",
    "resource_group": "rg",
    "site_name": "portal",
    "app_service_url": "https://portal.example.test",
}


def write_year(journal: Journal, end: datetime) -> None:
    rnd = random.Random(9)
    journal.dir.mkdir(parents=True, exist_ok=True)
    with journal.path.open("w") as f:
        for i in range(RUNS):
            t = end - timedelta(hours=6) * (RUNS - i)
            run = f"{t:%Y%m%dT%H%M%SZ}-{i:06x}"
            action = rnd.choice(("rotate", "heal"))
            outcome = rnd.choice(("success", "nothing_to_do", "nothing_to_do", "failed"))
            lines = [Entry(t, run, action, "run", "begin", {"trigger": "synthetic"})]
            for n, step in enumerate(
                ("plan", "add_password", "write_keyvault", "reload", "verify", "remove_old")
            ):
                ts = t + timedelta(seconds=n + 1)
                lines.append(Entry(ts, run, action, step, "begin", {}))
                lines.append(Entry(ts, run, action, step, "done", {"step_data": f"{step}-{i}"}))
            done = {"outcome": outcome, "rotated": outcome == "success", "permanent": False}
            lines.append(Entry(t + timedelta(seconds=9), run, action, "run", "done", done))
            f.writelines(e.to_json() + "\n" for e in lines)


def timed_status(config_file: Path) -> float:
    config = load_checked_config(config_file)
    samples = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        print_status(config, io.StringIO())
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        secret = base / "operator-secret"
        write_secret_file(secret, "x")
        ca = base / "ca.pem"
        ca.write_text("")
        config_file = base / "sw.toml"
        state = base / "state"
        describe = {**FAKE, "ca_file": str(ca)}
        config_file.write_text(
            sandbox_config_toml(describe, state_directory=state, secret_file=secret)
        )
        journal = Journal(state, "portal")
        write_year(journal, datetime.now(UTC) - timedelta(hours=1))
        size_before = journal.path.stat().st_size
        runs_before = len(journal.runs())
        before = timed_status(config_file)
        t = time.perf_counter()
        maybe_compact(journal, datetime.now(UTC))
        compact_s = time.perf_counter() - t
        size_after = journal.path.stat().st_size
        runs_after = len(journal.runs())
        after = timed_status(config_file)
    print_table(
        [
            (
                "journal, a year of runs (one every 6 h)",
                f"{runs_before} runs, {size_before / 1024:.0f} KiB",
            ),
            ("`status` on it, median of 7", f"{before * 1000:.0f} ms"),
            ("compaction (read, rewrite, fsync, rename)", f"{compact_s * 1000:.0f} ms"),
            ("journal after compaction", f"{runs_after} runs, {size_after / 1024:.1f} KiB"),
            ("`status` after compaction, median of 7", f"{after * 1000:.1f} ms"),
            ("speed-up", f"{before / after:.0f}x"),
        ]
    )


if __name__ == "__main__":
    main()
