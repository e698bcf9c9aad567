"""The remediation journal: one append-only JSON-lines file per target, fsync'd.

Every step of a remediation is written before it runs (``begin``) and after it ran
(``done`` or ``failed``); each line reaches the disk (file and directory fsync) before
the step proceeds, so after a crash the journal tells exactly which steps finished.

A line never holds a secret value: only run ids, step names, key ids, Key Vault
version ids, outcomes and timestamps. :meth:`Journal.append` refuses anything that is
not plain JSON data, so a :class:`~tenant.models.SecretValue` cannot slip in.

Test hook: ``SECRETWARDEN_CRASH_AFTER_STEP=<step>[:<phase>]`` (phase defaults to
``done``) makes the process SIGKILL itself right after that line is on disk; the crash
tests use it to kill the daemon at every step boundary. ``add_password:returned`` is one
more point: Graph has answered addPassword but the journal does not know the keyId yet.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from remediation.lock import TargetLock

Phase = Literal["begin", "done", "failed"]
CRASH_ENV = "SECRETWARDEN_CRASH_AFTER_STEP"
RUN = "run"  # the pseudo-step that opens (begin) and closes (done) a run
TAKEOVER = "takeover"  # HA: another daemon resumed the run here (data: daemon, after)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_Scalar = str | int | float | bool | None


def crash_point(name: str) -> None:
    """Exit at once, without cleanup, when the crash hook names this point."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    if ":" not in wanted:
        wanted += ":done"
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _check_plain(value: object, where: str) -> None:
    if value is None or isinstance(value, str | int | float | bool):
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_plain(item, where)
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"journal {where}: keys must be strings")
            _check_plain(v, where)
        return
    # SecretValue, datetimes and SDK objects all end here: say what, never its value.
    raise TypeError(f"journal {where}: refusing to store a {type(value).__name__}")


def make_entry(
    *,
    ts: datetime,
    run: str,
    action: str,
    step: str,
    phase: Phase,
    data: Mapping[str, _Scalar | list[str]] | None = None,
) -> Entry:
    """A journal line, refusing anything but plain JSON data (never a SecretValue)."""
    payload = dict(data or {})
    _check_plain(payload, f"{action}/{step}")
    return Entry(ts=ts, run=run, action=action, step=step, phase=phase, data=payload)


@dataclass(frozen=True, slots=True)
class Entry:
    ts: datetime
    run: str
    action: str
    step: str
    phase: Phase
    data: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(
            {
                "ts": self.ts.isoformat(),
                "run": self.run,
                "action": self.action,
                "step": self.step,
                "phase": self.phase,
                "data": self.data,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> Entry:
        raw = json.loads(line)
        return cls(
            ts=datetime.fromisoformat(raw["ts"]),
            run=str(raw["run"]),
            action=str(raw["action"]),
            step=str(raw["step"]),
            phase=raw["phase"],
            data=dict(raw.get("data") or {}),
        )


@dataclass(slots=True)
class RunRecord:
    """One remediation run, rebuilt from its journal lines."""

    run: str
    action: str
    started: datetime
    trigger: str | None = None
    finished: datetime | None = None
    outcome: str | None = None
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # merged data of every line
    done: list[str] = field(default_factory=list)  # steps done, in order
    begun: list[str] = field(default_factory=list)  # steps begun and not (yet) ended
    failed: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)

    @property
    def unfinished(self) -> bool:
        return self.finished is None

    def apply(self, e: Entry) -> None:
        """Fold one journal line into the record."""
        self.entries.append(e)
        self.facts.update(e.data)
        if e.step == RUN:
            if e.phase == "begin":
                self.trigger = e.data.get("trigger")
            else:
                self.finished = e.ts
                self.outcome = e.data.get("outcome")
                self.error = e.data.get("error")
            return
        if e.step in self.begun:
            self.begun.remove(e.step)
        if e.phase == "begin":
            self.begun.append(e.step)
        elif e.phase == "done":
            self.done.append(e.step)
        else:
            self.failed.append(e.step)

    def is_done(self, step: str) -> bool:
        return step in self.done

    def was_begun(self, step: str) -> bool:
        return step in self.begun or step in self.done or step in self.failed


class Journal:
    """The journal of one target under ``state_dir/journal/``."""

    def __init__(self, state_dir: Path, target: str) -> None:
        self.target = target
        self.dir = state_dir / "journal"
        self.path = self.dir / f"{_SAFE_NAME.sub('_', target)}.jsonl"

    def lock(self) -> TargetLock:
        """The target's cross-process remediation lock (not yet acquired)."""
        return TargetLock(self.path.with_suffix(".lock"), self.target)

    def append(
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
        self.append_local(entry)
        return entry

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
        """What a run calls for each step boundary; here, :meth:`append`. The HA
        journal (remediation.blob_journal) first appends the line to storage under the
        target's lease."""
        return self.append(ts=ts, run=run, action=action, step=step, phase=phase, data=data)

    async def refresh(self) -> None:
        """Bring the local file up to date with the journal's storage (here it is the
        storage: nothing to do)."""

    def append_local(self, entry: Entry) -> None:
        """The line on disk (file and, when new, directory fsync'd), then the crash hook."""
        line = entry.to_json() + "\n"
        created = not self.path.exists()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # end a torn last line, or this one would join it
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            self._fsync_dir()
        crash_point(f"{entry.step}:{entry.phase}")

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def entries(self) -> Iterator[Entry]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                yield Entry.from_json(line)
            except (ValueError, KeyError, TypeError):
                # A torn last line from a crash mid-write: the step it describes did
                # not get past its fsync, so it is treated as never written.
                continue

    def runs(self) -> list[RunRecord]:
        """Every run in the journal, oldest first."""
        by_id: dict[str, RunRecord] = {}
        for e in self.entries():
            rec = by_id.get(e.run)
            if rec is None:
                rec = by_id[e.run] = RunRecord(run=e.run, action=e.action, started=e.ts)
            rec.apply(e)
        return list(by_id.values())

    def unfinished(self) -> RunRecord | None:
        """The last run if it never finished (the process died during it)."""
        runs = self.runs()
        if runs and runs[-1].unfinished:
            return runs[-1]
        return None
