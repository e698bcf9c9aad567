"""Can this process use a target's journal? If not, say why and how to fix it.

The usual cause: an operator ran ``secretwarden rotate`` as root, which created the
journal (or its lock file, or the journal directory) owned by root with mode 0600, and
the daemon, under its own user (``DynamicUser=yes``), can no longer read it. Without
its journal the daemon knows neither the guards' state nor an unfinished run, so it
must not remediate that target; it keeps probing and exporting metrics, shows
``secretwarden_remediation_blocked{reason="journal_unreadable"}`` and logs this text,
which names the path and the ``chown`` that fixes it. It is checked again before each
decision, so fixing the owner is enough: no restart needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from remediation.journal import Journal

REASON = "journal_unreadable"


class JournalUnusable(Exception):
    """Raised where a run was asked for in the foreground (``secretwarden rotate``)."""


def _fix(paths: list[Path]) -> str:
    names = " ".join(str(p) for p in paths)
    return f"sudo chown -R {os.geteuid()}:{os.getegid()} {names}"


def _usable(path: Path, mode: int) -> bool:
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def journal_problem(journal: Journal) -> str | None:
    """Why this process cannot read and append to ``journal`` and take its lock, with
    the command that fixes it; None when it can (or nothing exists yet to be wrong)."""
    bad: list[Path] = []
    rw = os.R_OK | os.W_OK
    state_dir = journal.dir.parent
    try:
        if journal.dir.exists():
            if not _usable(journal.dir, rw | os.X_OK):
                bad.append(journal.dir)
            else:
                lock = journal.lock().path
                bad += [p for p in (journal.path, lock) if p.exists() and not _usable(p, rw)]
        elif state_dir.exists() and not _usable(state_dir, rw | os.X_OK):
            bad.append(state_dir)
    except PermissionError:  # cannot even look inside the state directory
        bad.append(state_dir)
    if not bad:
        return None
    return describe(journal, bad)


def describe(journal: Journal, bad: list[Path]) -> str:
    owners = []
    for p in bad:
        try:
            st = p.stat()
            owners.append(f"{p} (owner uid {st.st_uid}, mode {st.st_mode & 0o7777:04o})")
        except OSError:
            owners.append(f"{p} (not even stat-able)")
    return (
        f"target {journal.target}: cannot read and write its remediation journal: "
        f"{', '.join(owners)}; this process runs as uid {os.geteuid()}. Was "
        "`secretwarden rotate` run as root? Remediation of this target is off (probes and "
        f"metrics go on) until the owner is fixed: {_fix(bad)}"
    )
