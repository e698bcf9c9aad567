"""Journal compaction (issue 9): the guards decide the same from the compacted journal,
now and later; the rewrite is atomic and keeps a year of runs small."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from journals import write_runs

from remediation.compaction import RECENT, for_memory, maybe_compact, needed
from remediation.guards import Guards, GuardSettings
from remediation.journal import Entry, Journal, RunRecord
from remediation.proof import pending_removals

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SETTINGS = GuardSettings(
    max_rotations_per_day=3,
    backoff_initial=timedelta(minutes=5),
    backoff_max=timedelta(hours=6),
    circuit_failures=3,
    circuit_reset=timedelta(hours=24),
)
LATER = [
    timedelta(0),
    timedelta(minutes=7),
    timedelta(hours=5),
    timedelta(hours=25),
    timedelta(days=3),
]


def decisions(runs: list[RunRecord], now: datetime) -> list[object]:
    guards = Guards(SETTINGS)
    out: list[object] = []
    for later in LATER:
        guards.seed("t", runs)
        for action in ("rotate", "heal"):
            b = guards.check("t", action, now + later)
            out.append((later, action, b and (b.reason, b.until)))
        out.append(guards.consecutive_failures("t"))
    rotated = [r.finished for r in runs if r.finished and r.facts.get("rotated")]
    out.append(max(rotated, default=None))
    return out


def random_history(rnd: random.Random, n: int) -> list[RunRecord]:
    runs, t = [], NOW - timedelta(days=4)
    for i in range(n):
        t += timedelta(minutes=rnd.choice((1, 3, 30, 90, 400, 1500)))
        outcome = rnd.choice(("success", "nothing_to_do", "failed", "rolled_back", "compensated"))
        facts: dict[str, object] = {}
        if rnd.random() < 0.4:
            facts["new_key_id"] = f"k{i}"
        if outcome == "success" and rnd.random() < 0.6:
            facts["rotated"] = True
        if outcome == "failed" and rnd.random() < 0.15:
            facts["permanent"] = True
        r = RunRecord(run=f"r{i}", action=rnd.choice(("rotate", "heal")), started=t)
        r.finished, r.outcome, r.facts = t + timedelta(seconds=30), outcome, facts
        runs.append(r)
    return runs


@pytest.mark.parametrize("seed", range(200))
def test_the_guards_decide_the_same_from_the_runs_compaction_keeps(seed: int) -> None:
    rnd = random.Random(seed)
    runs = random_history(rnd, rnd.randint(0, 60))
    now = (runs[-1].finished if runs else NOW) + timedelta(minutes=rnd.choice((0, 2, 60, 2000)))
    assert now is not None
    kept = needed(runs, now)
    assert decisions(kept, now) == decisions(runs, now)
    assert [r.run for r in kept] == [r.run for r in runs if r in kept]  # order kept
    assert kept[-RECENT:] == runs[-RECENT:]  # `status` still shows the last ten


def test_an_unfinished_run_and_the_failure_streak_are_always_kept() -> None:
    runs = random_history(random.Random(1), 30)
    for r in runs[-4:-1]:
        r.outcome = "failed"
    runs[-1].finished, runs[-1].outcome = None, None
    kept = needed(runs, NOW + timedelta(days=30), recent=0)
    assert kept[-4:] == runs[-4:]


def test_a_year_of_runs_is_compacted_atomically_to_a_few_kilobytes(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "portal")
    write_runs(journal, NOW, count=4 * 365, every=timedelta(hours=6))
    before_runs = journal.runs()
    before = journal.path.stat().st_size
    assert before > 1_000_000
    assert maybe_compact(journal, NOW)
    after_runs = journal.runs()
    assert [r.run for r in after_runs] == [r.run for r in needed(before_runs, NOW)]
    # same lines, byte for byte, for every run kept
    kept = {r.run: r for r in before_runs}
    assert all(r.entries == kept[r.run].entries for r in after_runs)
    assert journal.path.stat().st_size < 64 * 1024
    assert journal.path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in journal.dir.iterdir()) == ["portal.jsonl"]  # no temp left
    assert decisions(after_runs, NOW) == decisions(before_runs, NOW)
    assert not maybe_compact(journal, NOW)  # small now: nothing to do


def test_a_small_journal_is_left_alone(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "portal")
    write_runs(journal, NOW, count=20, every=timedelta(days=20))
    text = journal.path.read_text()
    assert not maybe_compact(journal, NOW)
    assert journal.path.read_text() == text


def test_it_rewrites_only_when_that_halves_the_journal(tmp_path: Path) -> None:
    """Not a whole rewrite (and fsync) after every run once the file is large."""
    journal = Journal(tmp_path, "portal")
    # 60 runs in the last day that all count toward the cap: the guards need them all
    write_runs(journal, NOW, count=60, every=timedelta(minutes=20), outcomes=("failed",))
    runs = journal.runs()
    assert journal.path.stat().st_size > 64 * 1024
    assert len(needed(runs, NOW)) > len(runs) // 2
    text = journal.path.read_text()
    assert not maybe_compact(journal, NOW)
    assert journal.path.read_text() == text


def test_a_credential_pending_removal_keeps_its_run_until_a_later_step_removes_it() -> None:
    """A rotation that kept the old credential until proof (journaled as
    pending_removal) must not be compacted away, or the daemon forgets to remove it."""
    runs = random_history(random.Random(3), 40)
    for r in runs:
        r.outcome, r.facts = "nothing_to_do", {}
    old = runs[5]
    old.entries = [
        Entry(NOW, old.run, "rotate", "pending_removal", "done", {"pending_key_ids": ["k-old"]})
    ]
    kept = needed(runs, NOW + timedelta(days=30))
    assert kept == [old, *runs[-RECENT:]]  # it, not the runs after it that removed nothing
    # once a later run removed that credential, the run may go
    later = runs[20]
    later.entries = [
        Entry(NOW, later.run, "cleanup", "cleanup.remove", "done", {"removed": ["k-old"]})
    ]
    assert needed(runs, NOW + timedelta(days=30)) == runs[-RECENT:]


def test_in_memory_the_runs_lose_their_lines_except_from_a_pending_removal_on() -> None:
    runs = random_history(random.Random(4), 12)
    for r in runs:
        r.entries = [Entry(NOW, r.run, r.action, "plan", "done", {})]
    assert all(r.entries == [] for r in for_memory(runs))
    assert [r.facts for r in for_memory(runs)] == [r.facts for r in runs]  # guards' input
    runs[7].entries.append(
        Entry(NOW, runs[7].run, "rotate", "pending_removal", "done", {"pending_key_ids": ["k"]})
    )
    slim = for_memory(runs)
    assert [bool(r.entries) for r in slim] == [False] * 7 + [True] + [False] * 4


def test_a_pending_removal_does_not_pin_every_later_run() -> None:
    """The soak's growth (issue 9 item 8): while one credential waited for the overlap
    window, every later run stayed in the journal and in memory with its lines (1,000
    runs kept, ~1 MB). Only the runs that journal a removal stay now."""
    runs = random_history(random.Random(5), 1000)
    for r in runs:
        r.outcome, r.facts = "nothing_to_do", {}
        r.entries = [Entry(NOW, r.run, r.action, "plan", "done", {})]
    runs[0].entries.append(
        Entry(NOW, runs[0].run, "rotate", "pending_removal", "done", {"pending_key_ids": ["k"]})
    )
    kept = needed(runs, NOW)
    assert kept == [runs[0], *runs[-RECENT:]]
    assert sum(bool(r.entries) for r in for_memory(runs)) == 1
    assert pending_removals(kept) == pending_removals(for_memory(runs)) == pending_removals(runs)


def removal_history(rnd: random.Random) -> list[RunRecord]:
    """Random runs, some journaling credentials pending removal, some removing some."""
    runs = random_history(rnd, rnd.randint(0, 60))
    keys: list[str] = []
    for i, r in enumerate(runs):
        r.entries = [Entry(NOW, r.run, r.action, "plan", "done", {})]
        roll = rnd.random()
        if roll < 0.2:
            new = [f"k{i}a", f"k{i}b"][: rnd.randint(1, 2)]
            keys += new
            data = {"pending_key_ids": new, "keep_key_id": f"n{i}", "pending_until": "x"}
            r.entries.append(Entry(NOW, r.run, r.action, "pending_removal", "done", data))
        elif roll < 0.35 and keys:
            gone = rnd.sample(keys, rnd.randint(1, min(2, len(keys))))
            step = rnd.choice(("remove_old", "rollback.remove_new", "cleanup.remove"))
            phase = rnd.choice(("done", "done", "failed"))
            r.entries.append(Entry(NOW, r.run, r.action, step, phase, {"removed": gone}))
    return runs


@pytest.mark.parametrize("seed", range(200))
def test_the_pending_removals_are_the_same_from_the_runs_compaction_keeps(seed: int) -> None:
    runs = removal_history(random.Random(seed))
    whole = pending_removals(runs)
    assert pending_removals(needed(runs, NOW)) == whole
    assert pending_removals(for_memory(runs)) == whole
    assert pending_removals(for_memory(needed(runs, NOW))) == whole  # as the Remediator
