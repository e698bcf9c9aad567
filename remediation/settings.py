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
    # The reload ladder, each rung optional (docs/remediation.md): refresh,
    # config_change, restart, stop_start. With ``pinned_reference`` the reference names
    # a version and the rotation writes the new one into it ("pin", a configuration
    # change) in place of refresh and config_change.
    rungs: tuple[str, ...] = ("refresh", "config_change", "restart", "stop_start")
    pinned_reference: bool = False
    # Transitions (restart, stop, start, a configuration change) answer 409 while the
    # site is busy: this many tries, with the step backoff between them.
    transition_attempts: int = 8
    # After a Stop, how long the site may take to report Running again after Start.
    site_running_timeout: float = 120.0
    # Without proof that the app left the old credential, it stays this long (the
    # platform re-fetches references at least every 24 h).
    overlap_window: timedelta = timedelta(hours=24)
    # How long a Graph read may lag a write (addPassword/removePassword).
    graph_read_lag: float = 30.0
    # Read the sign-in log for proof when the operator may (AuditLog.Read.All).
    use_sign_ins: bool = True
    # The addresses the app's own sign-ins come from when not the site's outbound
    # addresses (a NAT gateway): sign-ins from either count as the app's.
    app_outbound_addresses: tuple[str, ...] = ()
    # The sign-in log: records may arrive out of order by up to ``signin_log_reorder``;
    # past ``signin_log_delay_bound`` every record has arrived (docs/remediation.md).
    signin_log_reorder: float = 300.0
    signin_log_delay_bound: float = 1800.0
    # Clocks (the daemon's, Entra's, ARM's) may differ by this much.
    clock_skew: float = 300.0
    # How long a recycle of every worker may take when ARM's per-instance view cannot
    # be read (to see it finish).
    recycle_allowance: float = 600.0
    # After any removal the app is watched this long (one token lifetime) at this interval.
    post_removal_watch: float = 5400.0
    post_removal_watch_interval: float = 60.0
    # Learned from the journal: ARM never reported activeVersion for this target, so the
    # refresh rung is tried with one poll instead of its whole timeout.
    refresh_never_active: bool = False

    def ladder(self) -> tuple[str, ...]:
        """The rungs this target climbs, in order."""
        if self.pinned_reference:
            rest = tuple(r for r in self.rungs if r not in ("refresh", "config_change", "pin"))
            return ("pin", *rest)
        return tuple(r for r in self.rungs if r != "pin")

    def rung_timeouts(self) -> dict[str, float]:
        return {
            "refresh": min(self.refresh_timeout, self.verify_poll)
            if self.refresh_never_active
            else self.refresh_timeout,
            "config_change": self.cold_start_timeout,
            "pin": self.cold_start_timeout,
            "restart": self.cold_start_timeout,
            "stop_start": self.cold_start_timeout,
        }
