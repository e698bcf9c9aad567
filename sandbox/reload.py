"""When App Service re-resolves the Key Vault reference (the ``reload_model`` fault) and
when its worker processes read it (the ``process_model`` fault).

The platform's cache (``Site.resolved_*``, what ``activeVersion`` reports):

- ``documented`` (default): a configuration change re-resolves (``config_change_delay_seconds``
  after the PUT answered); the refresh call re-resolves ``refresh_delay_seconds`` after it
  answered; Restart and Stop/Start keep the cached value; the platform re-resolves every
  ``refetch_interval_seconds``.
- ``runbook``: as documented, plus a Start of a stopped site re-resolves.
- ``optimistic``: Restart re-resolves (unless ``sticky_cache`` or ``softRestart``), Start
  re-resolves, the refresh call re-resolves before it answers.

The workers (:mod:`sandbox.instances`): Restart, Start and a configuration change recycle
them one after another; a worker reads the cache when it starts. With
``recycle_on_refetch``, a refresh or re-fetch that changes the cache recycles them too.

Every transition (restart, stop, start, configuration change) leaves the site busy for
``site_busy_seconds``; :func:`busy` says so, and ARM refuses further transitions.
Sources and reasoning: docs/azure-behaviour.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sandbox import instances
from sandbox.platform import Platform
from sandbox.site import APP_SETTING


def resolve(platform: Platform, at: datetime | None = None) -> None:
    """The platform reads the reference (into its cache) at ``at`` (default now): the
    pinned version, or the current one. A setting that is no reference is used as it is;
    a reference that does not resolve (missing or disabled version) leaves no secret."""
    site = platform.site
    site.resolved_at = at or platform.now()
    raw = site.settings.get(APP_SETTING)
    ref = site.reference()
    if raw is None or ref is None:
        site.resolved_version, site.resolved_value = None, raw
        return
    version = platform.secret_version(ref.secret_name, ref.version)
    if version is None or not version.enabled:
        site.resolved_version, site.resolved_value = None, None
    else:
        site.resolved_version, site.resolved_value = version.version, version.value


def refetch(platform: Platform, at: datetime | None = None) -> None:
    """A re-fetch of the cache (refresh call, periodic, admin): with
    ``recycle_on_refetch`` a changed value recycles the workers."""
    before = platform.site.resolved_value
    resolve(platform, at)
    changed = platform.site.resolved_value != before
    if changed and platform.faults.process_model == "recycle_on_refetch":
        _recycle(platform, at or platform.now())


def _recycle(platform: Platform, at: datetime) -> None:
    if platform.site.state == "Running":
        instances.schedule_recycle(platform, at)


def _next_event(platform: Platform) -> tuple[datetime, str, int] | None:
    site = platform.site
    events: list[tuple[datetime, str, int]] = []
    if site.config_due_at is not None:
        events.append((site.config_due_at, "config", 0))
    if site.refresh_due_at is not None:
        events.append((site.refresh_due_at, "refresh", 0))
    if site.resolved_at is not None:
        interval = timedelta(seconds=platform.faults.refetch_interval_seconds)
        events.append((site.resolved_at + interval, "refetch", 0))
    for i, w in enumerate(site.instances):
        if w.recycle_at is not None:
            events.append((w.recycle_at, "recycle", i))
    return min(events, default=None)


def tick(platform: Platform) -> None:
    """Let time pass: every event that came due, in the order it came due (a settings
    PUT's re-fetch, a refresh, the periodic re-fetch, each worker's restart)."""
    instances.fit_count(platform)
    site, now = platform.site, platform.now()
    interval = timedelta(seconds=platform.faults.refetch_interval_seconds)
    for _ in range(10_000):
        event = _next_event(platform)
        if event is None or event[0] > now:
            return
        at, kind, index = event
        if kind == "config":
            site.config_due_at = None
            resolve(platform, at)
            if site.state == "Running":
                site.started_at = at
                _recycle(platform, at)
        elif kind == "refresh":
            site.refresh_due_at = None
            refetch(platform, at)
        elif kind == "refetch":
            refetch(platform, at)
            # Later periodic re-fetches in this same tick read the same vault: skip to
            # the last one instead of repeating it per interval.
            skipped = (now - at) // interval
            site.resolved_at = at + interval * skipped
        else:
            instances.start(platform, site.instances[index], at)


def busy(platform: Platform) -> str | None:
    """The operation still in progress on the site, or None."""
    site = platform.site
    if site.busy_until is not None and platform.now() < site.busy_until:
        return site.busy_operation or "Update"
    return None


def _transition(platform: Platform, operation: str) -> None:
    site = platform.site
    site.busy_since = platform.now()
    site.busy_until = site.busy_since + timedelta(seconds=platform.faults.site_busy_seconds)
    site.busy_operation = operation


def _begin_start(platform: Platform, *, re_resolve: bool) -> None:
    platform.site.state = "Running"
    if re_resolve:
        resolve(platform)
    platform.site.started_at = platform.now()
    instances.schedule_recycle(platform, platform.now())
    tick(platform)


def restart(platform: Platform, *, soft: bool) -> None:
    f = platform.faults
    re_resolve = f.reload_model == "optimistic" and not (f.sticky_cache or soft)
    _begin_start(platform, re_resolve=re_resolve)
    platform.site.restarts += 1
    _transition(platform, "Restart")


def stop(platform: Platform) -> None:
    platform.site.state = "Stopped"
    for w in platform.site.instances:
        w.stop()
    platform.site.stops += 1
    _transition(platform, "Stop")


def start(platform: Platform) -> None:
    if platform.site.state != "Running":
        re_resolve = platform.faults.reload_model in ("runbook", "optimistic")
        _begin_start(platform, re_resolve=re_resolve)
        platform.site.starts += 1
    _transition(platform, "Start")


def refresh(platform: Platform) -> None:
    """The refresh call: re-resolve now (optimistic) or once its delay has passed."""
    site = platform.site
    site.refreshes += 1
    delay = platform.faults.refresh_delay_seconds
    if platform.faults.reload_model == "optimistic" or delay <= 0:
        refetch(platform)
        tick(platform)
    else:
        due = platform.now() + timedelta(seconds=delay)
        # A second call while one is pending does not put the first one off.
        site.refresh_due_at = min(site.refresh_due_at or due, due)


def configuration_change(platform: Platform, settings: dict[str, str]) -> None:
    """App settings written: ``config_change_delay_seconds`` later the platform re-fetches
    and (if running) recycles the workers, one after another."""
    site = platform.site
    site.settings = dict(settings)
    site.config_changes += 1
    due = platform.now() + timedelta(seconds=platform.faults.config_change_delay_seconds)
    site.config_due_at = due if site.config_due_at is None else min(site.config_due_at, due)
    tick(platform)
    _transition(platform, "UpdateApplicationSettings")
