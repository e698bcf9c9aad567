"""The remediation journal: durable, replayable, and never a place for a secret."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remediation.journal import CRASH_ENV, Journal
from remediation.lock import TargetBusy
from tenant.models import SecretValue

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_run_is_rebuilt_from_its_lines(tmp_path: Path) -> None:
    j = Journal(tmp_path, "portal")
    j.append(ts=T0, run="r1", action="rotate", step="run", phase="begin", data={"trigger": "cli"})
    j.append(ts=T0, run="r1", action="rotate", step="plan", phase="begin")
    j.append(
        ts=T0, run="r1", action="rotate", step="plan", phase="done", data={"old_version": "v1"}
    )
    j.append(
        ts=T0,
        run="r1",
        action="rotate",
        step="add_password",
        phase="begin",
        data={"display_name": "secretwarden x"},
    )

    rec = j.unfinished()
    assert rec is not None
    assert rec.run == "r1"
    assert rec.trigger == "cli"
    assert rec.done == ["plan"]
    assert rec.begun == ["add_password"]
    assert rec.facts["old_version"] == "v1"
    assert rec.facts["display_name"] == "secretwarden x"


def test_a_finished_run_is_not_unfinished(tmp_path: Path) -> None:
    j = Journal(tmp_path, "portal")
    j.append(ts=T0, run="r1", action="heal", step="run", phase="begin")
    j.append(
        ts=T0 + timedelta(seconds=5),
        run="r1",
        action="heal",
        step="run",
        phase="done",
        data={"outcome": "success"},
    )
    assert j.unfinished() is None
    [rec] = j.runs()
    assert rec.outcome == "success"
    assert rec.finished == T0 + timedelta(seconds=5)


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    j = Journal(tmp_path, "portal")
    j.append(ts=T0, run="r1", action="rotate", step="run", phase="begin")
    with j.path.open("a") as f:
        f.write('{"ts": "2026-03-01T12:00:01+00:00", "run": "r1", "act')  # crash mid-write
    rec = j.unfinished()
    assert rec is not None
    assert rec.done == []
    assert rec.begun == []
    # recovery appends after the torn line: its own lines must not be swallowed by it
    j.append(ts=T0, run="r1", action="rotate", step="plan", phase="begin")
    rec = j.unfinished()
    assert rec is not None
    assert rec.begun == ["plan"]


def test_a_secret_value_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    j = Journal(tmp_path, "portal")
    with pytest.raises(TypeError, match="SecretValue") as err:
        j.append(
            ts=T0,
            run="r1",
            action="rotate",
            step="add_password",
            phase="done",
            data={"value": SecretValue("s3cr3t-value")},
        )  # type: ignore[dict-item]
    assert "s3cr3t" not in str(err.value)
    assert not j.path.exists()


def test_the_file_is_private_and_target_names_are_sanitised(tmp_path: Path) -> None:
    j = Journal(tmp_path, "../evil/name")
    j.append(ts=T0, run="r1", action="rotate", step="run", phase="begin")
    assert j.path.parent == tmp_path / "journal"
    assert os.stat(j.path).st_mode & 0o777 == 0o600


def test_the_crash_hook_kills_the_process_after_the_named_line_is_on_disk(tmp_path: Path) -> None:
    code = (
        "import sys; from datetime import datetime, UTC; from pathlib import Path\n"
        "from remediation.journal import Journal\n"
        "j = Journal(Path(sys.argv[1]), 't')\n"
        "for step in ('plan', 'add_password'):\n"
        "    for phase in ('begin', 'done'):\n"
        "        j.append(ts=datetime.now(UTC), run='r', action='rotate', step=step, phase=phase)\n"
    )
    env = {**os.environ, CRASH_ENV: "add_password:begin"}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=False)
    assert proc.returncode == -signal.SIGKILL
    rec = Journal(tmp_path, "t").unfinished()
    assert rec is not None
    assert rec.done == ["plan"]
    assert rec.begun == ["add_password"]


HOLD = (
    "import sys, time; from pathlib import Path\n"
    "from remediation.journal import Journal\n"
    "Journal(Path(sys.argv[1]), 'portal').lock().acquire()\n"
    "print('held', flush=True); time.sleep(60)\n"
)


def test_the_target_lock_excludes_another_process_until_it_dies(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        lock = Journal(tmp_path, "portal").lock()
        with pytest.raises(TargetBusy, match=f"target portal: .*pid {holder.pid}"):
            lock.acquire()
        assert not lock.held
        Journal(tmp_path, "other").lock().acquire()  # per target, not global
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the kernel still frees the lock
        holder.wait()
    lock.acquire()
    assert lock.held
    assert f"pid {os.getpid()}" in lock.path.read_text()
    lock.release()
    lock.release()  # idempotent
