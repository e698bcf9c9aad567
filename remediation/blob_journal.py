"""The journal's HA implementation: the target's append blob is the journal, and every
line reaches it under the target's lease before the step goes on.

Storage is the journal of record; the local file under ``state_dir/journal/`` is this
daemon's copy, which the guards, compaction and ``status`` read as they read the
single-daemon journal. The copy is exact while this daemon holds the lease (nobody
else can append), and :meth:`BlobJournal.refresh` replaces it with storage's when the
lease is taken (a takeover reads what the previous holder journaled, then resumes or
compensates exactly as after a crash).

A line storage refused (412: another daemon's lease) or did not confirm (no answer)
stops the run with :class:`~remediation.leadership.NotLeader`: the step it opens never
starts. An unconfirmed line may still have landed; the leadership reads the journal
again before this daemon runs anything more for the target.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from remediation.journal import Entry, Journal, Phase, make_entry
from remediation.leadership import LeaseLeadership, NotLeader
from tenant.leases import BlobLeases, LeaseLost, StorageError

_Scalar = str | int | float | bool | None


class BlobJournal(Journal):
    def __init__(
        self, state_dir: Path, target: str, store: BlobLeases, leadership: LeaseLeadership
    ) -> None:
        super().__init__(state_dir, target)
        self.store = store
        self.leadership = leadership

    def append(self, **_kw: object) -> Entry:
        raise RuntimeError(
            f"target {self.target}: the HA journal is written with `await write(...)` "
            "(under the target's lease), never appended to locally alone"
        )

    async def write(
        self,
        *,
        ts: datetime,
        run: str,
        action: str,
        step: str,
        phase: Phase,
        data: Mapping[str, _Scalar | list[str]] | None = None,
    ) -> Entry:
        entry = make_entry(ts=ts, run=run, action=action, step=step, phase=phase, data=data)
        lease_id = self.leadership.lease_id(self.target)  # NotLeader past the deadline
        line = (entry.to_json() + "\n").encode()
        try:
            await self.store.append(self.target, lease_id, line)
        except LeaseLost as e:
            self.leadership.resync(self.target)
            raise NotLeader(
                self.target, f"storage refused the journal line ({e.code}): the lease moved"
            ) from None
        except StorageError as e:
            self.leadership.resync(self.target)
            raise NotLeader(self.target, f"journal line not confirmed by storage: {e}") from None
        self.append_local(entry)
        return entry

    async def refresh(self) -> None:
        """Replace the local copy with storage's journal (atomically: a new file,
        fsync'd, renamed over the old one)."""
        data = await self.store.read_journal(self.target)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(self.path.name + ".pull")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._fsync_dir()
