"""Issue 9: the journal was never compacted. After a run, the Remediator compacts it
(with the target's lock held) and its guards decide as before."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from journals import write_runs
from test_rotation_fixtures import TARGET, Rig

pytest_plugins = ("test_rotation_fixtures",)


async def test_a_year_of_runs_is_compacted_after_the_next_run(sb: Any, rig: Rig) -> None:
    journal = rig.rem.journal(TARGET)
    # A year of runs, one every six hours, none in the last day: no guard applies.
    write_runs(
        journal,
        rig.clock.now() - timedelta(days=1),
        count=4 * 365,
        every=timedelta(hours=6),
        outcomes=("success", "nothing_to_do"),
    )
    before = journal.path.stat().st_size
    assert before > 1_000_000
    assert rig.rem.trigger(TARGET, "heal", "test").status == "started"
    outcome = await rig.rem.wait(TARGET)
    assert outcome is not None
    assert outcome.outcome == "nothing_to_do", outcome.detail
    after = journal.runs()
    assert journal.path.stat().st_size < 64 * 1024
    assert after[-1].run == outcome.run  # the run that just ended is there, whole
    assert after[-1].outcome == "nothing_to_do"
    assert len(after) <= 12
    # and the lock was released: the next (non-duplicate) trigger starts
    rig.rem.duplicate_window = 0
    assert rig.rem.trigger(TARGET, "heal", "test").status == "started"
    await rig.rem.wait(TARGET)
