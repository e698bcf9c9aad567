"""Guards: when remediation must not act even though something asked it to.

- at most ``max_rotations_per_day`` rotations per target in any 24 h window;
- after a failed run, exponential backoff (``backoff_initial`` doubling, capped at
  ``backoff_max``) before the next automatic run;
- after ``circuit_failures`` failed runs in a row (or one permanent failure, such as a
  policy violation, that repeating cannot fix) the circuit opens: no automatic run until
  ``circuit_reset`` has passed or an operator succeeds by hand.

"One at a time per target" is not here: the :class:`~remediation.service.Remediator`
coalesces a trigger into the run already in progress. State is rebuilt from the
journal before each decision, so neither a restart nor a run by another process is
forgotten. Time comes from the caller; the decision itself is the pure
:func:`remediation.decisions.is_blocked`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from remediation.decisions import Blocked as Blocked
from remediation.decisions import GuardState, is_blocked
from remediation.journal import RunRecord

FAILED_OUTCOMES = ("failed", "rolled_back")


def _issued(r: RunRecord) -> bool:
    """The run rotated or issued a credential (not a compensated one: see seed)."""
    issued = r.outcome != "compensated" and bool(r.facts.get("new_key_id"))
    return bool(r.facts.get("rotated")) or issued


def counts_as_rotation(r: RunRecord) -> bool:
    """Whether a finished run counts toward the daily cap (as :meth:`Guards.record`)."""
    return _issued(r) or (r.action == "rotate" and r.outcome in ("success", *FAILED_OUTCOMES))


@dataclass(frozen=True, slots=True)
class GuardSettings:
    max_rotations_per_day: int = 3
    backoff_initial: timedelta = timedelta(minutes=5)
    backoff_max: timedelta = timedelta(hours=6)
    circuit_failures: int = 3
    circuit_reset: timedelta = timedelta(hours=24)


@dataclass(slots=True)
class _TargetState:
    rotations: list[datetime] = field(default_factory=list)
    consecutive_failures: int = 0
    last_failure: datetime | None = None
    circuit_opened: datetime | None = None


class Guards:
    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self._state: dict[str, _TargetState] = {}

    def _get(self, target: str) -> _TargetState:
        return self._state.setdefault(target, _TargetState())

    def seed(self, target: str, runs: Iterable[RunRecord]) -> None:
        """Rebuild the target's state from its journal (oldest run first).

        The journal is the only truth: runs of every process (the daemon, ``secretwarden
        rotate``) and every trigger count alike. A run counts toward the daily cap when
        it rotated or issued a credential, even if it then failed or rolled back; not a
        compensated one (its value was lost in a crash and its credential removed: the
        run that restarts it is the same rotation).
        """
        self._state[target] = _TargetState()
        for r in runs:
            if r.finished is None or r.outcome is None or r.action not in ("rotate", "heal"):
                continue  # unfinished, or a cleanup (the end of a proven rotation)
            self.record(
                target,
                r.action,
                r.outcome,
                r.finished,
                rotated=_issued(r),
                permanent=bool(r.facts.get("permanent")),
            )

    def check(self, target: str, action: str, now: datetime) -> Blocked | None:
        """Why an automatic run of ``action`` must not start now, or None."""
        s = self._get(target)
        cfg = self.settings
        state = GuardState(
            tuple(s.rotations), s.consecutive_failures, s.last_failure, s.circuit_opened
        )
        return is_blocked(
            state,
            action,
            now,
            max_rotations_per_day=cfg.max_rotations_per_day,
            backoff_initial=cfg.backoff_initial,
            backoff_max=cfg.backoff_max,
            circuit_reset=cfg.circuit_reset,
        )

    def record(
        self,
        target: str,
        action: str,
        outcome: str,
        at: datetime,
        *,
        rotated: bool = False,
        permanent: bool = False,
    ) -> None:
        """Account for a finished run. ``rotated``: a new credential was issued."""
        s = self._get(target)
        if rotated or (action == "rotate" and outcome in ("success", *FAILED_OUTCOMES)):
            s.rotations.append(at)
        if outcome in FAILED_OUTCOMES:
            s.consecutive_failures += 1
            s.last_failure = at
            if permanent or s.consecutive_failures >= self.settings.circuit_failures:
                s.circuit_opened = at
        elif outcome in ("success", "nothing_to_do"):
            s.consecutive_failures = 0
            s.last_failure = None
            s.circuit_opened = None

    def consecutive_failures(self, target: str) -> int:
        return self._get(target).consecutive_failures
