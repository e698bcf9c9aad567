"""Remediation wired into the daemon: ``rotate``, ``status`` and :func:`install`.

- ``secretwarden rotate --config.file PATH --target NAME [--dry-run]`` runs the rotation
  in the foreground and prints each runbook step as it happens. If the journal shows an
  unfinished run for the target (the daemon or an earlier ``rotate`` died), that run is
  finished first (resumed or compensated) and no second rotation is started.
- ``secretwarden status --config.file PATH`` prints the current and recent remediations
  from the journal (no Azure call), and says when remediation is off (read-only).
- :func:`install` (called by ``secretwarden run`` before the daemon starts) builds the
  :class:`~remediation.service.Remediator`, feeds it every probe observation, resumes
  unfinished runs once the targets are open, and mounts the Alertmanager webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import httpx
from prometheus_client import CollectorRegistry

from daemon.config import Config, load_checked_config, read_secret_file
from daemon.ha import install_ha, lease_status
from daemon.logging import configure_logging, get_logger
from daemon.webhook import webhook_routes
from exporters.observations import Observed
from remediation.access import JournalUnusable, journal_problem
from remediation.clock import Clock, SystemClock
from remediation.guards import Guards, GuardSettings
from remediation.journal import TAKEOVER, Journal, RunRecord
from remediation.lock import TargetBusy
from remediation.policy import Policy
from remediation.proof import pending_removals
from remediation.service import RemediationTarget, Remediator
from remediation.verify import ExporterProber
from remediation.workflow import Outcome, StepEvent, WorkflowSettings
from tenant.connect import TenantSession
from tenant.ports import TargetClients

if TYPE_CHECKING:
    from daemon.app import Daemon

log = get_logger("secretwarden.remediation")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def workflow_settings(config: Config, target: str | None = None) -> WorkflowSettings:
    """The remediation settings, with ``target``'s own keys over them."""
    r = config.remediation
    t = config.target(target) if target is not None else None
    rungs = (t.reload_rungs if t and t.reload_rungs is not None else r.reload_rungs) or []
    overlap = t.overlap_window_hours if t and t.overlap_window_hours is not None else None
    return WorkflowSettings(
        rungs=tuple(rungs),
        pinned_reference=bool(t and t.pinned_reference),
        overlap_window=timedelta(hours=overlap if overlap is not None else r.overlap_window_hours),
        transition_attempts=r.transition_attempts,
        graph_read_lag=r.graph_read_lag_seconds,
        use_sign_ins=r.use_sign_ins,
        rotate_before=timedelta(days=r.rotate_before_days),
        secret_lifetime=timedelta(days=r.secret_lifetime_days),
        display_name_prefix=r.display_name_prefix,
        propagation_timeout=r.propagation_timeout_seconds,
        propagation_poll=r.propagation_poll_seconds,
        propagation_poll_max=max(r.propagation_poll_seconds, 15.0),
        refresh_timeout=r.refresh_timeout_seconds,
        cold_start_timeout=r.cold_start_timeout_seconds,
        verify_poll=r.verify_poll_seconds,
        grace_period=r.grace_period_seconds,
        step_attempts=r.step_attempts,
        app_outbound_addresses=tuple(t.app_outbound_addresses) if t else (),
        signin_log_reorder=r.signin_log_reorder_seconds,
        signin_log_delay_bound=r.signin_log_delay_bound_seconds,
        clock_skew=r.clock_skew_seconds,
        recycle_allowance=r.recycle_allowance_seconds,
        post_removal_watch=r.post_removal_watch_seconds,
        post_removal_watch_interval=r.post_removal_watch_interval_seconds,
    )


def guard_settings(config: Config) -> GuardSettings:
    r = config.remediation
    return GuardSettings(
        max_rotations_per_day=r.max_rotations_per_day,
        backoff_initial=timedelta(seconds=r.backoff_initial_seconds),
        backoff_max=timedelta(seconds=r.backoff_max_seconds),
        circuit_failures=r.circuit_failures,
        circuit_reset=timedelta(seconds=r.circuit_reset_seconds),
    )


def policy(config: Config) -> Policy:
    r = config.remediation
    return Policy(timedelta(days=r.rotate_before_days), r.heal_after_failures)


def remediation_target(
    config: Config, name: str, clients: TargetClients, http: httpx.AsyncClient
) -> RemediationTarget:
    section = config.target(name)
    prober = ExporterProber(
        clients=clients,
        http=http,
        health_url=section.health_url,
        graph_probe_url=config.graph_probe_url(section),
        health_timeout=config.probes.health.timeout_seconds,
        app_action_url=section.app_action_url,
    )
    return RemediationTarget(name, clients, prober, workflow_settings(config, name))


def build_remediator(
    config: Config,
    targets: Mapping[str, RemediationTarget],
    *,
    registry: CollectorRegistry | None = None,
    clock: Clock | None = None,
    dry_run: bool | None = None,
    with_policy: bool | None = None,
    target_settings: Callable[[str], WorkflowSettings | None] | None = None,
    state_dir: Path | None = None,
) -> Remediator:
    use_policy = config.remediation.enabled if with_policy is None else with_policy
    return Remediator(
        targets=targets,
        target_settings=target_settings,
        state_dir=state_dir or config.daemon.state_directory,
        settings=workflow_settings(config),
        guard_settings=guard_settings(config),
        policy=policy(config) if use_policy else None,
        clock=clock or SystemClock(),
        registry=registry,
        dry_run=config.remediation.dry_run if dry_run is None else dry_run,
        duplicate_window=config.remediation.duplicate_window_seconds,
    )


# -- the daemon -------------------------------------------------------------------------


class _DaemonTargets(Mapping[str, RemediationTarget]):
    """The daemon's targets, looked up when a run starts (so a reload is followed)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def __getitem__(self, name: str) -> RemediationTarget:
        config = self._daemon.config
        if name not in self:
            raise KeyError(name)
        d = self._daemon
        return remediation_target(config, name, d.clients(name), d.health_client())

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self._daemon.config.targets)

    def __iter__(self) -> Iterator[str]:
        return iter([t.name for t in self._daemon.config.targets])

    def __len__(self) -> int:
        return len(self._daemon.config.targets)


def timeline(say: Callable[[str], None]) -> Callable[[StepEvent], None]:
    """Step events as short timeline lines (``secretwarden demo``)."""

    def progress(ev: StepEvent) -> None:
        if ev.phase in ("done", "failed") or (ev.step == "run" and ev.phase == "begin"):
            word = {"begin": "starts", "done": "done", "failed": "FAILED"}[ev.phase]
            detail = f": {ev.detail}" if ev.detail and ev.step == "run" else ""
            say(f"{ev.target}: {ev.action} {ev.step} {word}{detail}")

    return progress


def install(daemon: Daemon, say: Callable[[str], None] | None = None) -> Remediator:
    """Attach remediation to a daemon that has not started yet.

    ``say`` (e.g. the demo's ``DemoHooks.say``) receives one line per finished step of
    every run the daemon starts.
    """
    config = daemon.config
    # The policy always exists; `remediation.enabled` of the running config switches it
    # (checked on each observation, so a reload can turn it on or off).
    remediator = build_remediator(
        config,
        _DaemonTargets(daemon),
        registry=daemon.registry,
        with_policy=True,
        # the journal is folded at construction, before the daemon has its clients
        target_settings=lambda name: workflow_settings(daemon.config, name),
    )
    if say is not None:
        remediator.progress = timeline(say)
    token = _webhook_token(config)
    current = [token]  # replaced by a reload (after SIGHUP the new file's token alone works)

    def reread_token(new: Config) -> Callable[[], None]:
        value = _webhook_token(new)

        def commit() -> None:
            if value != current[0]:
                log.info("webhook token changed", webhook=value is not None)
            current[0] = value

        return commit

    daemon.reload_steps.append(reread_token)
    daemon.web.add_routes(webhook_routes(remediator, lambda: current[0]))
    recovering: list[asyncio.Task[list[Outcome]]] = []
    # `[remediation] enabled = false` is read-only: no run, cleanup or recovery writes
    # to Azure (followed across reloads); the CLI's `rotate` and `cleanup` still act.
    remediator.writes_allowed = lambda: daemon.config.remediation.enabled

    async def observe(observed: Observed) -> None:
        section = daemon.config.remediation
        if not recovering and section.enabled:  # the targets are open now
            recovering.append(asyncio.create_task(remediator.recover()))
        remediator.note(observed)  # pending removals finish whether or not the policy acts
        if section.enabled and section.builtin_triggers:
            remediator.observe(observed)

    daemon.observers.append(observe)
    daemon.stop_hooks.append(remediator.close)
    install_ha(daemon, remediator)  # [ha]: after close, so runs stop before leases go
    daemon.remediator = remediator
    if not config.remediation.enabled:
        log.info("remediation off: read-only, nothing is written to Azure")
    log.info(
        "remediation installed",
        policy=config.remediation.enabled and config.remediation.builtin_triggers,
        webhook=token is not None,
        dry_run=config.remediation.dry_run,
    )
    return remediator


def _webhook_token(config: Config) -> str | None:
    path = config.remediation.webhook_token_file
    return None if path is None else read_secret_file(path, "remediation.webhook_token_file")


# -- rotate -----------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Config:
    config = load_checked_config(args.config_file)
    fmt = getattr(args, "log_format", None) or config.daemon.log_format
    level = getattr(args, "log_level", None) or "warning"
    configure_logging(fmt, level)
    return config


class LivePrinter:
    """Prints each step boundary as one readable line, as it happens."""

    MARK = {"begin": "..", "done": "ok", "failed": "!!", "info": "--", "plan": "=>", "wait": ".."}

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = datetime.now(UTC)

    def __call__(self, ev: StepEvent) -> None:
        t = (datetime.now(UTC) - self.started).total_seconds()
        mark = self.MARK.get(ev.phase, ev.phase)
        detail = f"  {ev.detail}" if ev.detail else ""
        print(f"[{t:7.1f}s] {mark} {ev.step:<28}{detail}", file=self.out, flush=True)


def rotate(args: argparse.Namespace) -> int:
    config = _load(args)
    if config.ha.backend != "none" and not args.dry_run:
        # A run here would hold no lease and journal nowhere the daemons read.
        print(
            "secretwarden rotate: [ha] backend is "
            f"{config.ha.backend!r}: the daemon holding the target's lease rotates it; "
            "send it the Alertmanager webhook (see docs/ha.md), or run with --dry-run",
            file=sys.stderr,
        )
        return EXIT_USAGE
    name: str = args.target
    if name not in {t.name for t in config.targets}:
        known = ", ".join(t.name for t in config.targets)
        print(f"secretwarden rotate: no target named {name!r} (known: {known})", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_rotate(config, name, bool(args.dry_run), sys.stdout))


async def _rotate(config: Config, name: str, dry_run: bool, out: TextIO) -> int:
    from daemon.app import health_http_client

    identity = config.identity_value()
    section = config.target(name)
    async with (
        TenantSession(identity, config.cloud_endpoints(), config.retry_policy()) as session,
        session.target(config.target_ref(section)) as clients,
        health_http_client(config) as http,
    ):
        targets = {name: remediation_target(config, name, clients, http)}
        remediator = build_remediator(config, targets, dry_run=dry_run, with_policy=False)
        printer = LivePrinter(out)
        mode = " (dry run: nothing will be written)" if dry_run else ""
        print(f"secretwarden rotate: target {name}{mode}", file=out, flush=True)
        if dry_run and remediator.journal(name).unfinished() is not None:
            print(
                "note: an unfinished run is in the journal; a real run finishes it first",
                file=out,
                flush=True,
            )
        try:
            # An unfinished run in the journal is finished first, and only that one.
            outcome = await remediator.run(name, "rotate", "cli", progress=printer)
        except (TargetBusy, JournalUnusable) as e:
            print(f"secretwarden rotate: {e}", file=sys.stderr, flush=True)
            return EXIT_FAILED
    print(f"{outcome.outcome}: {outcome.detail}", file=out, flush=True)
    return EXIT_OK if outcome.outcome in ("success", "nothing_to_do", "dry_run") else EXIT_FAILED


# -- status -----------------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    config = _load(args)
    if config.ha.backend == "none":
        print_status(config, sys.stdout)
        return EXIT_OK
    with tempfile.TemporaryDirectory(prefix="secretwarden-status-") as tmp:
        leases = asyncio.run(lease_status(config, Path(tmp)))
        print_status(config, sys.stdout, state_dir=Path(tmp), leases=leases)
    return EXIT_OK


def _run_line(r: RunRecord, holder: int | None = None) -> str:
    started = r.started.strftime("%Y-%m-%d %H:%M:%S")
    if r.finished is None:
        step = r.begun[-1] if r.begun else (r.done[-1] if r.done else "start")
        if holder is not None:
            state = f"IN PROGRESS at {step} (pid {holder})"
        else:
            state = (
                f"INTERRUPTED at {step}; finished when `secretwarden run` or "
                "`secretwarden rotate` next starts"
            )
    else:
        took = (r.finished - r.started).total_seconds()
        state = f"{r.outcome} in {took:.0f}s"
    line = f"  {started}Z  {r.action:<6} {state}  [run {r.run}, trigger: {r.trigger}]"
    # HA: which daemon started the run and which took it over (journaled by each)
    started_by = r.entries[0].data.get("daemon") if r.entries else None
    if started_by:
        line += f"\n      started by {started_by}"
    for e in r.entries:
        if e.step == TAKEOVER:
            line += f"\n      taken over by {e.data.get('daemon')} after {e.data.get('after')}"
    if r.error:
        line += f"\n      error: {r.error}"
    return line


def print_status(
    config: Config,
    out: TextIO,
    *,
    recent: int = 10,
    state_dir: Path | None = None,
    leases: Mapping[str, str] | None = None,
) -> None:
    """``leases`` (HA): who holds each target's lease, since when; the journals are
    then storage's, copied under ``state_dir``."""
    guards = Guards(guard_settings(config))
    now = datetime.now(UTC)
    read_only = not config.remediation.enabled
    # In HA mode `cleanup` removes only under the target's lease (refused while a daemon
    # holds it, as one always does while the daemons run).
    ha = config.ha.backend != "none"
    finisher = (
        "the lease holder once its remediation is on (or `secretwarden cleanup` while no "
        "daemon holds the lease)"
        if ha
        else "`secretwarden cleanup`"
    )
    if read_only:
        print(
            "remediation: off ([remediation] enabled = false): read-only, a daemon with this "
            "config writes nothing to Azure; pending removals are finished by a daemon with "
            "remediation on or by `secretwarden cleanup`"
            + (" while no daemon holds the target's lease" if ha else ""),
            file=out,
        )
    for t in config.targets:
        journal = Journal(state_dir or config.daemon.state_directory, t.name)
        print(f"target {t.name}", file=out)
        if leases is not None:
            print(f"  lease: {leases.get(t.name, 'unknown')}", file=out)
        problem = journal_problem(journal)
        if problem is not None:
            print(f"  journal unusable: {problem}", file=out)
            continue
        runs = journal.runs()
        guards.seed(t.name, runs)  # the same journal, the same rules as the daemon
        current = runs[-1] if runs and runs[-1].unfinished else None
        if current is not None:
            print("  current:", file=out)
            print(_run_line(current, journal.lock().holder_pid()), file=out)
        blocked = guards.check(t.name, "rotate", now)
        if blocked is not None:
            print(f"  blocked ({blocked.reason}): {blocked.detail}", file=out)
        for p in pending_removals(runs):
            print(
                f"  pending removal: {', '.join(p.pending_key_ids)} kept until "
                f"{p.pending_until} unless proof arrives sooner (the app should be on "
                f"{p.keep_key_id}, Key Vault version {p.keep_version}): {p.pending_why}"
                + (f"; remediation is off: {finisher} finishes it" if read_only else ""),
                file=out,
            )
        # A compensated run (a value lost in a crash, its credential removed) is only
        # the prelude of the run that restarted it.
        done = [r for r in runs if not r.unfinished and r.outcome != "compensated"][-recent:]
        if not done and current is None:
            print("  no remediation yet", file=out)
            continue
        if done:
            print("  recent:", file=out)
            for r in reversed(done):
                print(_run_line(r), file=out)
