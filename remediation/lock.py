"""One remediation at a time per target, across processes.

The daemon (policy, webhook) and ``secretwarden rotate`` run in different processes
but share the state directory, so the per-target guard is an ``flock`` on
``state_dir/journal/<target>.lock``. The kernel drops the lock when its holder dies,
even by SIGKILL, so a crash never leaves a stale lock behind. The file holds the
holder's pid (for the error message), never anything secret.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class TargetBusy(Exception):
    """Another process holds the target's remediation lock."""

    def __init__(self, target: str, holder: str) -> None:
        self.target = target
        self.holder = holder
        super().__init__(
            f"target {target}: another secretwarden process ({holder}) is remediating it; "
            "wait for it to finish (see `secretwarden status`)"
        )


class TargetLock:
    """A non-blocking exclusive lock; :meth:`acquire` raises :class:`TargetBusy`."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            raise RuntimeError(f"target {self.target}: remediation lock already held")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "pid unknown"
            os.close(fd)
            raise TargetBusy(self.target, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def holder_pid(self) -> int | None:
        """The pid of a living holder, for display only (reads, never locks: a status
        query must not make a real run find the target busy)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        word = text.split()[-1] if text.split() else ""
        if not word.isdigit():
            return None
        pid = int(word)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # killed without a chance to clear the file
        except PermissionError:
            pass  # alive, under another user
        return pid

    def release(self) -> None:
        """Idempotent. The file stays: unlinking it would race with the next taker."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)
