"""The built-in policy: what a probe observation asks remediation to do.

- Expiry: rotate when the credential the Key Vault value belongs to expires within
  ``rotate_before`` (default 30 days), or has already expired.
- Graph auth: heal after ``heal_after_failures`` authentication failures in a row
  (throttling and outages are not authentication failures and do not count).
- Health and Key Vault reference observations alone never act: they alert.

The policy only decides; guards and coalescing are the Remediator's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from exporters.observations import ExpiryObservation, GraphAuthObservation, Observed

Action = Literal["rotate", "heal"]
ACTIONS: tuple[Action, ...] = ("rotate", "heal")


@dataclass(frozen=True, slots=True)
class Decision:
    target: str
    action: Action
    reason: str


class Policy:
    def __init__(
        self, rotate_before: timedelta = timedelta(days=30), heal_after_failures: int = 3
    ) -> None:
        if heal_after_failures < 1:
            raise ValueError("heal_after_failures must be at least 1")
        self.rotate_before = rotate_before
        self.heal_after_failures = heal_after_failures
        self._auth_failures: dict[str, int] = {}

    def evaluate(self, observed: Observed) -> Decision | None:
        value = observed.value
        if isinstance(value, ExpiryObservation):
            return self._expiry(observed.target, observed, value)
        if isinstance(value, GraphAuthObservation):
            return self._graph(observed.target, value)
        return None

    def _expiry(self, target: str, observed: Observed, value: ExpiryObservation) -> Decision | None:
        if not value.ok or value.in_use is None or value.in_use.end is None:
            # No in-use credential: the Graph probe fails too, and healing decides.
            return None
        left = value.in_use.end - observed.at
        if left <= self.rotate_before:
            days = left.total_seconds() / 86400
            return Decision(
                target,
                "rotate",
                f"in-use secret {value.in_use.key_id} expires in {days:.1f} days "
                f"(rotate_before {self.rotate_before.days} days)",
            )
        return None

    def _graph(self, target: str, value: GraphAuthObservation) -> Decision | None:
        if value.ok:
            self._auth_failures[target] = 0
            return None
        if not value.auth_failed:
            return None  # throttled or unreachable: neither proves nor disproves the secret
        n = self._auth_failures.get(target, 0) + 1
        if n >= self.heal_after_failures:
            self._auth_failures[target] = 0
            return Decision(target, "heal", f"{n} Graph auth failures in a row ({value.reason})")
        self._auth_failures[target] = n
        return None
