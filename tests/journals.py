"""Synthetic journals: many finished runs with realistic lines (compaction, status)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from remediation.journal import Entry, Journal, Phase

OUTCOMES = ("success", "nothing_to_do", "nothing_to_do", "failed", "rolled_back")


def write_runs(
    journal: Journal,
    end: datetime,
    *,
    count: int,
    every: timedelta,
    seed: int = 9,
    outcomes: tuple[str, ...] = OUTCOMES,
) -> None:
    """``count`` finished runs, one per ``every``, the last ending just before ``end``;
    each with the step lines of a rotation or a heal (a random mix, seeded)."""
    rnd = random.Random(seed)
    lines: list[tuple[datetime, str, str, str, Phase, dict[str, Any]]] = []
    for i in range(count):
        t = end - every * (count - i)
        run = f"{t:%Y%m%dT%H%M%SZ}-{i:06x}"
        action = rnd.choice(("rotate", "heal"))
        outcome = rnd.choice(outcomes)
        rotated = outcome == "success" and (action == "rotate" or rnd.random() < 0.5)
        lines.append((t, run, action, "run", "begin", {"trigger": "synthetic"}))
        for n, step in enumerate(("plan", "add_password", "write_keyvault", "verify")):
            ts = t + timedelta(seconds=n + 1)
            lines.append((ts, run, action, step, "begin", {}))
            data: dict[str, Any] = {}
            if step == "add_password" and rotated:
                data["new_key_id"] = f"key-{i}"
            lines.append((ts, run, action, step, "done", data))
        facts = {"outcome": outcome, "rotated": rotated, "permanent": False}
        lines.append((t + timedelta(seconds=10), run, action, "run", "done", facts))
    # One append per line is what the daemon does, but a year of fsyncs is slow: write
    # the same lines at once.
    journal.dir.mkdir(parents=True, exist_ok=True)
    with journal.path.open("a") as f:
        for ts, run, action, step, phase, data in lines:
            f.write(Entry(ts, run, action, step, phase, data).to_json() + "\n")
