"""The remediation metrics (names are a contract, see issue 4).

Registered on the same injected ``CollectorRegistry`` as the exporters' metrics. The
children an alert must see at 0 before the first event (``increase()`` misses a counter
that appears at 1) are created when a target is added; the rest appear on first use, so
an idle target costs ~15 series here instead of ~660 (issue 16: the step histogram alone
was 630 series per target before anything had happened).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporters.metrics import remove_target_series
from remediation.policy import ACTIONS

# The actions of runs: the two a trigger asks for, and cleanup (the end of a pending
# removal, started by the Remediator when proof arrives).
RUN_ACTIONS = (*ACTIONS, "cleanup")
OUTCOMES = ("success", "failed", "rolled_back", "nothing_to_do", "blocked", "dry_run")
# The outcomes an alert takes increase() of (SecretwardenRemediationFailed): at 0 up front.
ALERTED_OUTCOMES = ("failed", "rolled_back")
BLOCK_REASONS = ("rotation_cap", "backoff", "circuit_open", "journal_unreadable")
STEPS = (
    "plan",
    "free_slot",
    "add_password",
    "wait_propagation",
    "write_keyvault",
    "reload",
    "verify",
    "grace_period",
    "remove_old",
    "pending_removal",
    "recheck",
    "compensate",
    "rollback",
    "diagnose",
)


class RemediationMetrics:
    def __init__(self, registry: CollectorRegistry, targets: Iterable[str] = ()) -> None:
        self.total = Counter(
            "secretwarden_remediation_total",
            "Remediation runs by target, action (rotate, heal) and outcome.",
            ["target", "action", "outcome"],
            registry=registry,
        )
        self.in_progress = Gauge(
            "secretwarden_remediation_in_progress",
            "1 while a remediation of this action runs for the target.",
            ["target", "action"],
            registry=registry,
        )
        self.last_rotation = Gauge(
            "secretwarden_rotation_last_success_timestamp_seconds",
            "When the last rotation of the target's secret succeeded (Unix time, 0 = never).",
            ["target"],
            registry=registry,
        )
        self.blocked = Gauge(
            "secretwarden_remediation_blocked",
            "1 while a guard stops remediation of the target, by reason.",
            ["target", "reason"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "secretwarden_remediation_step_duration_seconds",
            "How long each remediation step took, waits included.",
            ["target", "action", "step"],
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=registry,
        )
        self.site_stopped = Gauge(
            "secretwarden_remediation_site_stopped",
            "1 when a remediation left the target's site Stopped (Start failed after a Stop).",
            ["target"],
            registry=registry,
        )
        self.pending_removal = Gauge(
            "secretwarden_credential_pending_removal",
            "1 while an old credential (keyId) waits for proof the app left it, or for "
            "the end of the overlap window, before it is removed.",
            ["target", "key_id"],
            registry=registry,
        )
        self.pending_until = Gauge(
            "secretwarden_credential_pending_until_timestamp_seconds",
            "When the overlap window of a credential pending removal ends (Unix time): "
            "beside secretwarden_credential_pending_removal, so an alert needs no "
            "assumed window.",
            ["target", "key_id"],
            registry=registry,
        )
        self.removal_watch = Gauge(
            "secretwarden_credential_removal_watch",
            "1 while the app is watched after a credential removal (one token lifetime, "
            "post_removal_watch_seconds): its own action and /health at a short interval; "
            "a failure heals at once.",
            ["target"],
            registry=registry,
        )
        self._targets: set[str] = set()
        for t in targets:
            self.add_target(t)

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(self._targets)

    def set_targets(self, targets: Iterable[str]) -> None:
        """After a config reload: add new targets, drop every series of removed ones."""
        wanted = set(targets)
        for gone in self._targets - wanted:
            self._remove_target(gone)
        for target in sorted(wanted - self._targets):
            self.add_target(target)

    def _remove_target(self, target: str) -> None:
        self._targets.discard(target)
        remove_target_series(
            target,
            (
                self.total,
                self.in_progress,
                self.last_rotation,
                self.blocked,
                self.step_duration,
                self.site_stopped,
                self.pending_removal,
                self.pending_until,
                self.removal_watch,
            ),
        )

    def add_target(self, target: str) -> None:
        self._targets.add(target)
        for action in RUN_ACTIONS:
            self.in_progress.labels(target, action).set(0)
            for outcome in ALERTED_OUTCOMES:
                self.total.labels(target, action, outcome)
        self.last_rotation.labels(target)
        self.site_stopped.labels(target).set(0)
        self.removal_watch.labels(target).set(0)
        for reason in BLOCK_REASONS:
            self.blocked.labels(target, reason).set(0)
