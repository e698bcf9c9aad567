"""When App Service re-resolves the Key Vault reference: the ``reload_model`` fault.

- ``documented`` (default): a configuration change re-resolves at once; the refresh
  call re-resolves ``refresh_delay_seconds`` after it answered; Restart and Stop/Start
  keep the cached value; the platform re-resolves every ``refetch_interval_seconds``.
- ``runbook``: as documented, plus a Start of a stopped site re-resolves.
- ``optimistic``: Restart re-resolves (unless ``sticky_cache`` or ``softRestart``), Start
  re-resolves, the refresh call re-resolves before it answers.

Every transition (restart, stop, start, configuration change) leaves the site busy for
``site_busy_seconds``; :func:`busy` says so, and ARM refuses further transitions.
Sources and reasoning: docs/azure-behaviour.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sandbox.site import APP_SETTING

if TYPE_CHECKING:
    from sandbox.portal import Portal


def resolve(portal: Portal) -> None:
    """The platform reads the reference now: the pinned version, or the current one. A
    setting that is no reference is used as it is; a reference that does not resolve
    (missing or disabled version) leaves the app without a secret."""
    site = portal.site
    site.resolved_at = portal.now()
    raw = site.settings.get(APP_SETTING)
    ref = site.reference()
    if raw is None or ref is None:
        site.resolved_version, site.resolved_value = None, raw
        return
    version = portal.secret_version(ref.secret_name, ref.version)
    if version is None or not version.enabled:
        site.resolved_version, site.resolved_value = None, None
    else:
        site.resolved_version, site.resolved_value = version.version, version.value


def tick(portal: Portal) -> None:
    """Let time pass: a refresh that came due, and the platform's periodic re-fetch."""
    site, now = portal.site, portal.now()
    if site.refresh_due_at is not None and site.refresh_due_at <= now:
        site.refresh_due_at = None
        resolve(portal)
    interval = timedelta(seconds=portal.faults.refetch_interval_seconds)
    if site.resolved_at is not None and now - site.resolved_at >= interval:
        resolve(portal)


def busy(portal: Portal) -> str | None:
    """The operation still in progress on the site, or None."""
    site = portal.site
    if site.busy_until is not None and portal.now() < site.busy_until:
        return site.busy_operation or "Update"
    return None


def _transition(portal: Portal, operation: str) -> None:
    site = portal.site
    site.busy_since = portal.now()
    site.busy_until = site.busy_since + timedelta(seconds=portal.faults.site_busy_seconds)
    site.busy_operation = operation


def _begin_start(portal: Portal, *, re_resolve: bool) -> None:
    portal.site.state = "Running"
    if re_resolve:
        resolve(portal)
    portal.site.started_at = portal.now()


def restart(portal: Portal, *, soft: bool) -> None:
    f = portal.faults
    re_resolve = f.reload_model == "optimistic" and not (f.sticky_cache or soft)
    _begin_start(portal, re_resolve=re_resolve)
    portal.site.restarts += 1
    _transition(portal, "Restart")


def stop(portal: Portal) -> None:
    portal.site.state = "Stopped"
    portal.site.stops += 1
    _transition(portal, "Stop")


def start(portal: Portal) -> None:
    if portal.site.state != "Running":
        re_resolve = portal.faults.reload_model in ("runbook", "optimistic")
        _begin_start(portal, re_resolve=re_resolve)
        portal.site.starts += 1
    _transition(portal, "Start")


def refresh(portal: Portal) -> None:
    """The refresh call: re-resolve now (optimistic) or once its delay has passed."""
    site = portal.site
    site.refreshes += 1
    delay = portal.faults.refresh_delay_seconds
    if portal.faults.reload_model == "optimistic" or delay <= 0:
        resolve(portal)
    else:
        due = portal.now() + timedelta(seconds=delay)
        # A second call while one is pending does not put the first one off.
        site.refresh_due_at = min(site.refresh_due_at or due, due)


def configuration_change(portal: Portal, settings: dict[str, str]) -> None:
    """App settings written: the site restarts (if running) and re-fetches at once."""
    site = portal.site
    site.settings = dict(settings)
    site.config_changes += 1
    resolve(portal)
    if site.state == "Running":
        site.started_at = portal.now()
    _transition(portal, "UpdateApplicationSettings")
