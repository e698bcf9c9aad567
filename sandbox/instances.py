"""The site's workers: one process per instance, each with the Key Vault value it read
when it started, its start time and its own Graph token cache.

A worker reads the platform's cache (``Site.resolved_value``) only when it starts
(``process_model: start_only``), so a refresh or re-fetch changes what ``activeVersion``
reports without changing what a running process holds. Restart, Start and a
configuration change recycle the workers one after another,
``instance_recycle_stagger_seconds`` apart (:mod:`sandbox.reload` schedules them).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sandbox.platform import Platform
from sandbox.site import Worker

# The site's outbound addresses (TEST-NET-3: documentation addresses, never routed).
OUTBOUND_IPS = ("203.0.113.10", "203.0.113.11", "203.0.113.12", "203.0.113.13")
POSSIBLE_OUTBOUND_IPS = (*OUTBOUND_IPS, "203.0.113.14", "203.0.113.15", "203.0.113.16")


def instance_id(site_name: str, index: int) -> str:
    """A 64-hex instance id, as App Service lists them, stable per site and slot."""
    return hashlib.sha256(f"{site_name}/instance/{index}".encode()).hexdigest()


def start(platform: Platform, w: Worker, at: datetime) -> None:
    """A new process: it reads the platform's cache now and has no token yet."""
    site = platform.site
    w.started_at = at
    w.version, w.value = site.resolved_version, site.resolved_value
    w.recycle_at = None
    w.pid += 4  # a new process id, as Windows hands them out
    w.drop_tokens()


def new_worker(platform: Platform, index: int, at: datetime) -> Worker:
    w = Worker(
        id=instance_id(platform.ids.site_name, index),
        ip=OUTBOUND_IPS[index % len(OUTBOUND_IPS)],
        pid=4000 + 100 * index,
        started_at=None,
    )
    start(platform, w, at)
    return w


def token_lifetime(platform: Platform) -> float:
    """A worker's token lifetime: ``app_token_lifetime_seconds`` +- the jitter, at random
    (Entra's are 60-90 minutes); 0 means the worker caches no token."""
    f = platform.faults
    if f.app_token_lifetime_seconds <= 0:
        return 0.0
    jitter = f.app_token_lifetime_jitter_seconds
    return max(1.0, f.app_token_lifetime_seconds + platform.rng.uniform(-jitter, jitter))


def schedule_recycle(platform: Platform, at: datetime) -> None:
    """Restart every worker, one after another from ``at``."""
    stagger = timedelta(seconds=platform.faults.instance_recycle_stagger_seconds)
    for i, w in enumerate(platform.site.instances):
        due = at + stagger * i
        w.recycle_at = due if w.recycle_at is None else min(w.recycle_at, due)


def fit_count(platform: Platform) -> None:
    """Scale to ``instances``: a new instance starts now; extra ones go away."""
    site, want = platform.site, platform.faults.instances
    if len(site.instances) > want:
        del site.instances[want:]
    while len(site.instances) < want:
        w = new_worker(platform, len(site.instances), platform.now())
        if site.state != "Running":
            w.stop()
        site.instances.append(w)


def pick(platform: Platform) -> Worker | None:
    """The running worker that takes the next request (round robin), or None."""
    site = platform.site
    running = [w for w in site.instances if w.running]
    if not running:
        return None
    site.next_worker = (site.next_worker + 1) % len(running)
    return running[site.next_worker]
