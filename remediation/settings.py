"""The timings and choices of one target's remediation (all waits in seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class WorkflowSettings:
    """Timings and choices of one remediation (all waits in seconds)."""

    rotate_before: timedelta = timedelta(days=30)
    secret_lifetime: timedelta = timedelta(days=180)
    display_name_prefix: str = "secretwarden"
    propagation_timeout: float = 180.0
    propagation_poll: float = 2.0
    propagation_poll_max: float = 15.0
    refresh_timeout: float = 60.0
    cold_start_timeout: float = 300.0
    verify_poll: float = 5.0
    grace_period: float = 0.0
    step_attempts: int = 5
    step_backoff: float = 1.0
    step_backoff_max: float = 60.0

    def rung_timeouts(self) -> dict[str, float]:
        return {
            "refresh": self.refresh_timeout,
            "restart": self.cold_start_timeout,
            "stop_start": self.cold_start_timeout,
        }
