"""The long-running daemon: probes on schedules, metrics, hooks, reload and shutdown.

One APScheduler job per (target, probe) with its interval, jitter, ``max_instances=1``
(a probe never overlaps itself), ``coalesce=True`` and a first run at start. Each run
is bounded by the probe's timeout; its observation is recorded in the metrics, logged
when its outcome changed, and handed to every hook in :attr:`Daemon.observers`
(the remediation policy registers there). A hook must return quickly: long work
belongs in a task of its own.
"""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import CollectorRegistry

from daemon import __version__
from daemon.config import (
    PROBE_NAMES,
    Config,
    ConfigError,
    load_checked_config,
    split_listen_address,
)
from daemon.inventory import InventoryService
from daemon.logging import OutcomeTracker, get_logger
from daemon.sdnotify import SystemdNotifier
from daemon.web import WebServer
from daemon.webconfig import WebSettings, from_section, web_settings
from exporters.expiry import probe_expiry
from exporters.graph_auth import probe_graph_auth
from exporters.health import probe_health
from exporters.metrics import Metrics
from exporters.observations import (
    ExpiryObservation,
    GraphAuthObservation,
    HealthObservation,
    Observed,
    ReferenceObservation,
)
from exporters.operator import OperatorCredentialMetrics, probe_operator_credential
from exporters.reads import Pace, TargetReads, forgetting_on_write
from exporters.reference import probe_reference
from remediation.service import Remediator
from tenant.connect import TenantSession
from tenant.operator import OperatorExpiry
from tenant.ports import TargetClients

ObservationHook = Callable[[Observed], Awaitable[None]]
# A reload step reads what it needs from the new config (raising ConfigError when it
# cannot: the reload then keeps everything as it was) and returns what applies it.
ReloadStep = Callable[[Config], Callable[[], None]]
Clock = Callable[[], datetime]
log = get_logger("secretwarden.daemon")
# How long after a probe finishes the probes' metrics are rendered again, at least: the
# probes that finish meanwhile share one render (at 500 targets ~30 finish per second).
# With many targets the delay grows to 50 renders' time, so rendering stays under ~2%
# of a core (at 500 targets a render is ~160 ms: every 8 s); and once a render costs
# more than RENDER_ON_SCRAPE_SECONDS, a scrape copies a text up to two delays old
# instead of rendering (below that, a scrape after a change renders: it is cheap, and
# the text is exact).
METRICS_REFRESH_DELAY = 1.0
RENDER_ON_SCRAPE_SECONDS = 0.02


def utcnow() -> datetime:
    return datetime.now(UTC)


def _timed_out(probe: str, seconds: float) -> Any:
    error = f"{probe} probe: no answer within {seconds:g}s"
    if probe == "expiry":
        return ExpiryObservation(ok=False, error=error)
    if probe == "health":
        return HealthObservation(ok=False, status_code=None, duration_seconds=seconds, error=error)
    if probe == "graph":
        return GraphAuthObservation(ok=False, token_ok=False, error=error)
    return ReferenceObservation(ok=False, error=error)


def _outcome(observed: Observed) -> str:
    value = observed.value
    if value.ok:
        return "ok"
    if isinstance(value, GraphAuthObservation) and value.reason:
        return f"failed:{value.reason}"
    if isinstance(value, HealthObservation):
        return f"failed:{value.status_code or 'no-answer'}"
    return "failed"


def health_http_client(config: Config) -> httpx.AsyncClient:
    ctx = config.cloud_endpoints().ssl_context()
    return httpx.AsyncClient(verify=ctx, follow_redirects=False)


class _Opened(NamedTuple):
    stack: AsyncExitStack
    clients: dict[str, TargetClients]
    http: httpx.AsyncClient
    session: TenantSession


class Daemon:
    """Compose config, tenant clients, probes, metrics, web server and scheduler."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: Path | None = None,
        registry: CollectorRegistry | None = None,
        clock: Clock = utcnow,
        notifier: SystemdNotifier | None = None,
        listen_address: str | None = None,
        web: WebSettings | None = None,
        web_config_file: Path | None = None,
    ) -> None:
        """``web``: the checked web settings (daemon.webconfig.web_settings), by default
        ``config.web``'s; ``web_config_file``: the Prometheus web config file they came
        from, read again on reload."""
        self.config = config
        self.config_path = config_path
        self.registry = registry if registry is not None else CollectorRegistry()
        self.clock = clock
        self.notifier = notifier or SystemdNotifier()
        self.metrics = Metrics(self.registry, __version__)
        self.operator = OperatorCredentialMetrics(self.registry)
        self._session: TenantSession | None = None
        self._operator_said: tuple[str, datetime | None, str] | None = None
        self.observers: list[ObservationHook] = []
        # Called on stop, before the tenant clients close (remediation cancels its runs
        # here; their journal stays unfinished and resumes on the next start).
        self.stop_hooks: list[Callable[[], Awaitable[None]]] = []
        # Called at the end of start, once the targets are open (high availability
        # starts its lease loop here).
        self.start_hooks: list[Callable[[], Awaitable[None]]] = []
        self.remediator: Remediator | None = None
        self.latest: dict[tuple[str, str], Observed] = {}
        self.listen_address = listen_address or config.web.listen_address
        # The tenant-wide inventory ([inventory]); its summary exists only when enabled.
        self.inventory = InventoryService(config, self.registry)
        self.web_config_file = web_config_file
        self.web = WebServer(
            self.registry,
            ready=self.ready,
            settings=web or from_section(config.web),
            exposition=self.inventory.exposition,
            prerendered=self.metrics.exposition,
        )
        # Secrets read outside the config proper (the webhook token): read again on reload.
        self.reload_steps: list[ReloadStep] = []
        self._clients: dict[str, TargetClients] = {}
        # The scheduled probes' shared Azure reads per target (exporters/reads.py).
        self._reads: dict[str, TargetReads] = {}
        self._stack: AsyncExitStack | None = None
        self._retired: list[AsyncExitStack] = []  # a replaced config's, until unused
        self._http: httpx.AsyncClient | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._outcomes = OutcomeTracker()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._probing: set[asyncio.Task[Any]] = set()  # scheduled probe runs under way
        self._stopping = False
        self._reload_lock = asyncio.Lock()
        self._refresh: asyncio.TimerHandle | None = None  # the metrics' next render

    # lifecycle --------------------------------------------------------------------

    def clients(self, target: str) -> TargetClients:
        """The open tenant clients of a target (for remediation): its Key Vault and
        app-registration writes make the probes' shared reads forget what they hold."""
        reads = self._target_reads(target)
        return forgetting_on_write(self._clients[target], reads)

    def health_client(self) -> httpx.AsyncClient:
        """The open HTTP client of the health probe (for remediation's verification);
        replaced on reload like the tenant clients."""
        assert self._http is not None, "the daemon has not started"
        return self._http

    def _target_reads(self, target: str) -> TargetReads:
        reads = self._reads.get(target)
        if reads is None:
            graph = self.config.probes.graph.interval_seconds
            reads = self._reads[target] = TargetReads(Pace.for_graph_interval(graph))
        return reads

    def ready(self) -> bool:
        """True once every (target, probe) has reported at least once."""
        wanted = {(t.name, p) for t in self.config.targets for p in PROBE_NAMES}
        return wanted <= self.latest.keys()

    async def _open_targets(self, config: Config) -> _Opened:
        """Every target's tenant clients and the health client, closed by ``stack``;
        nothing stays open when opening fails."""
        stack = AsyncExitStack()
        try:
            identity = config.identity_value()
            session = TenantSession(
                identity,
                config.cloud_endpoints(),
                config.retry_policy(),
                on_request=self.metrics.count_azure_request,
            )
            await stack.enter_async_context(session)
            clients = {}
            for target in config.targets:
                clients[target.name] = await stack.enter_async_context(
                    session.target(config.target_ref(target))
                )
            http = await stack.enter_async_context(health_http_client(config))
        except BaseException:
            await stack.aclose()
            raise
        return _Opened(stack, clients, http, session)

    async def _close_targets(self) -> None:
        for retired in self._retired:
            await retired.aclose()
        self._retired.clear()
        if self._stack is not None:
            await self._stack.aclose()
        self._stack, self._clients, self._http, self._session = None, {}, None, None

    async def _retire(self, stack: AsyncExitStack, config: Config) -> None:
        """Close a replaced config's clients once nothing can still be using them:
        after the runs of its targets' remediations, and after any probe that started
        before the reload has met its timeout."""
        if self.remediator is not None:
            runs = [self.remediator.wait(t.name) for t in config.targets]
            await asyncio.gather(*runs, return_exceptions=True)  # their outcomes are not ours
        await asyncio.sleep(max(config.probes.schedule(p).timeout_seconds for p in PROBE_NAMES))
        self._retired.remove(stack)
        await stack.aclose()

    def _export_intervals(self, config: Config) -> None:
        for target in config.targets:
            for probe in PROBE_NAMES:
                seconds = config.probes.schedule(probe).interval_seconds
                self.metrics.probe_interval.labels(target=target.name, probe=probe).set(seconds)
        self.metrics.changed()

    def _schedule(self, config: Config, first_run: datetime) -> None:
        scheduler = self._scheduler
        assert scheduler is not None

        def every(
            job: Callable[..., Awaitable[object]],
            job_id: str,
            interval: float,
            jitter: float,
            args: tuple[str, ...] = (),
        ) -> None:
            """One job: no overlap, missed runs coalesced, the first one at ``first_run``."""
            scheduler.add_job(
                job,
                IntervalTrigger(seconds=interval, jitter=jitter),
                args=args,
                id=job_id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, math.ceil(interval)),
                next_run_time=first_run,
                replace_existing=True,
            )

        for target in config.targets:
            for probe in PROBE_NAMES:
                sched = config.probes.schedule(probe)
                every(
                    self._scheduled_probe,
                    f"{target.name}/{probe}",
                    sched.interval_seconds,
                    sched.jitter_seconds,
                    (target.name, probe),
                )
        expiry = config.probes.expiry  # the daemon's own credential, on the expiry schedule
        every(
            self.check_operator_credential,
            "operator",
            expiry.interval_seconds,
            expiry.jitter_seconds,
        )
        inv = config.inventory
        if inv.enabled:
            every(self._scheduled_inventory, "inventory", inv.interval_seconds, inv.jitter_seconds)

    async def check_operator_credential(self) -> OperatorExpiry | None:
        """Export when the daemon's own credential expires (exporters/operator.py); one
        log line when what is known about it changes. None before the daemon starts."""
        if self._session is None:
            return None
        task = asyncio.current_task()
        if task is not None:
            self._probing.add(task)
        try:
            configured = self.config.identity.credential_expires_at
            got = await probe_operator_credential(self._session, configured, self.operator)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            return None
        finally:
            if task is not None:
                self._probing.discard(task)
        said = (got.source, got.end, got.why)
        if said != self._operator_said:
            self._operator_said = said
            log.info(
                "operator credential",
                kind=got.kind,
                expires=got.end.isoformat() if got.end else None,
                source=got.source or None,
                note=got.why or None,
            )
        return got

    async def _scheduled_inventory(self) -> None:
        """The scheduler's inventory job (cancelled by :meth:`stop` like a probe)."""
        task = asyncio.current_task()
        assert task is not None
        self._probing.add(task)
        try:
            await self.inventory.scan()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        finally:
            self._probing.discard(task)

    async def start(self, *, serve_web: bool = True, schedule: bool = True) -> None:
        """Start the web server (first: a port in use fails before Azure is touched),
        open every target, and start the schedules (first runs now). Raises
        daemon.web.StartError when it cannot listen, with nothing left running."""
        if serve_web:
            host, port = split_listen_address(self.listen_address)
            bound = await self.web.start(host, port)
            self.listen_address = f"{host}:{bound}"
        try:
            opened = await self._open_targets(self.config)
        except BaseException:
            await self.web.stop()
            raise
        self._stack, self._clients, self._http, self._session = opened
        self.metrics.set_targets(t.name for t in self.config.targets)
        self._export_intervals(self.config)
        self.metrics.config_reloaded(True, self.clock())
        if schedule:
            self._scheduler = AsyncIOScheduler(timezone=UTC)
            self._scheduler.start()
            self._schedule(self.config, datetime.now(UTC))
        if self.notifier.watchdog_seconds:
            self._spawn(self._watchdog(self.notifier.watchdog_seconds / 2))
        for hook in self.start_hooks:
            await hook()
        self.notifier.ready(self._status_line())
        log.info(
            "daemon started",
            version=__version__,
            targets=[t.name for t in self.config.targets],
            listen=self.listen_address if serve_web else None,
        )

    async def stop(self) -> None:
        self._stopping = True
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        self.notifier.stopping()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        # Probe runs under way would otherwise fail inside the clients closed below.
        for task in list(self._probing):
            task.cancel()
        await asyncio.gather(*self._probing, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for hook in self.stop_hooks:
            await hook()
        await self.web.stop()
        await self.inventory.aclose()
        await self._close_targets()
        log.info("daemon stopped")

    def request_stop(self) -> None:
        self._stop.set()

    async def run_until_stopped(self, duration: float | None = None) -> None:
        """Serve until SIGTERM/SIGINT (or ``duration`` seconds); SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        try:
            if duration is None:
                await self._stop.wait()
            else:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), duration)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background; a failure is logged, never lost."""
        self._spawn(coro)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # a background task (a reload, the watchdog) must not fail unseen
            log.error("background task failed", task=repr(task.get_coro()), exc_info=exc)

    async def _watchdog(self, every: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(every)

    def _status_line(self) -> str:
        total = len(self.config.targets) * len(PROBE_NAMES)
        ok = sum(1 for o in self.latest.values() if o.value.ok)
        return f"{len(self.config.targets)} target(s); {ok}/{total} probes passing"

    # reload -----------------------------------------------------------------------

    async def reload(self, path: Path | None = None) -> bool:
        """Re-read the config and every file it names (the operator's secret, the
        webhook token, the web config file, the TLS certificate and key); keep the
        running config if any of them is bad. What a reload cannot change is logged."""
        path = path or self.config_path
        if path is None:
            return False
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                new = load_checked_config(path)
                web = web_settings(new, self.web_config_file)
                commits = [step(new) for step in self.reload_steps]
                opened = await self._open_targets(new)  # reads the operator's secret again
            except ConfigError as exc:
                problems = exc.problems
            except Exception as exc:  # an SDK refused the new identity or cloud
                # only the type: an SDK's message is not ours to vouch for
                problems = [f"opening the targets failed: unexpected {type(exc).__name__}"]
            else:
                problems = []
            if problems:
                self.metrics.config_reloaded(False, self.clock())
                log.error("config reload failed; keeping the running config", problems=problems)
                self.notifier.ready(self._status_line())
                return False
            if new.web.listen_address != self.config.web.listen_address:
                log.warning("web.listen_address changed; it takes effect after a restart")
            for what in self.web.apply(web):
                log.warning("web setting changed; it takes effect after a restart", setting=what)
            for commit in commits:
                commit()
            live = {"enabled": False, "builtin_triggers": True}  # read at each observation
            if new.remediation.model_copy(update=live) != (
                self.config.remediation.model_copy(update=live)
            ):
                log.warning(
                    "remediation settings changed; all but 'enabled' and 'builtin_triggers' "
                    "take effect after a restart"
                )
            if self._scheduler is not None:
                self._scheduler.remove_all_jobs()
            old, old_stack = self.config, self._stack
            self.config = new
            self._stack, self._clients, self._http, self._session = opened
            for reads in self._reads.values():
                reads.forget()  # new clients, maybe a new identity or vault
            if old_stack is not None:
                # Probes and remediation runs already under way keep the old clients.
                self._retired.append(old_stack)
                self._spawn(self._retire(old_stack, old))
            for gone in {t.name for t in old.targets} - {t.name for t in new.targets}:
                self._outcomes.forget(gone)
                for probe in PROBE_NAMES:
                    self.latest.pop((gone, probe), None)
            self.metrics.set_targets(t.name for t in new.targets)
            self._export_intervals(new)
            if self.remediator is not None:
                self.remediator.targets_changed()
            self.metrics.config_reloaded(True, self.clock())
            await self.inventory.configure(new)
            if self._scheduler is not None:
                self._schedule(new, datetime.now(UTC))
            log.info("config reloaded", targets=[t.name for t in new.targets])
            self.notifier.ready(self._status_line())
            return True

    # probes -----------------------------------------------------------------------

    async def _probe(self, target: str, probe: str, paced: bool) -> Any:
        config = self.config
        section = config.target(target)
        if probe == "health":
            assert self._http is not None
            timeout = config.probes.health.timeout_seconds
            return await probe_health(self._http, section.health_url, timeout)
        clients = self._clients[target]
        reads = self._target_reads(target) if paced else None
        if probe == "expiry":
            return await probe_expiry(clients, self.clock(), reads)
        if probe == "graph":
            url = config.graph_probe_url(section)
            return await probe_graph_auth(clients, url, reads)
        return await probe_reference(clients, reads)

    async def _scheduled_probe(self, target: str, probe: str) -> None:
        """The scheduler's job: one run, which :meth:`stop` may cancel."""
        task = asyncio.current_task()
        assert task is not None  # APScheduler runs coroutine jobs as tasks
        self._probing.add(task)
        try:
            await self.run_probe(target, probe, paced=True)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # shutting down: a run cut short is neither a result nor a failure
        finally:
            self._probing.discard(task)

    async def run_probe(self, target: str, probe: str, *, paced: bool = False) -> Observed:
        """Run one probe once, record it, log a change, and call the hooks. ``paced``
        (the scheduler's runs): share the target's Azure reads and reuse a healthy
        answer for a while (exporters/reads.py); otherwise every read is fresh."""
        seconds = self.config.probes.schedule(probe).timeout_seconds
        started = time.perf_counter()
        try:
            async with asyncio.timeout(seconds):
                value = await self._probe(target, probe, paced)
        except TimeoutError:
            value = _timed_out(probe, seconds)
        duration = time.perf_counter() - started
        observed = Observed(target=target, probe=probe, at=self.clock(), value=value)
        if all(t.name != target for t in self.config.targets):
            # A reload removed the target while this run was under way: recording it
            # would bring its series (and alerts) back, and hooks would act on it.
            return observed
        self.latest[(target, probe)] = observed
        self.metrics.record(observed, duration)
        self._refresh_metrics_soon()
        self._log_change(observed)
        for hook in list(self.observers):
            try:
                await hook(observed)
            except Exception:
                log.exception("observation hook failed", target=target, probe=probe)
        return observed

    def _refresh_metrics_soon(self) -> None:
        """Render the probes' metrics once, in a worker thread, shortly after a probe
        finished (every probe that finishes meanwhile shares the render), so that the
        next scrape copies text instead of rendering it."""
        if self._refresh is not None or self._stopping:
            return

        def due() -> None:
            self._refresh = None
            if self.metrics.stale:
                self._spawn(asyncio.to_thread(self.metrics.refresh))

        delay = max(METRICS_REFRESH_DELAY, 50 * self.metrics.render_seconds)
        costly = self.metrics.render_seconds > RENDER_ON_SCRAPE_SECONDS
        self.metrics.fresh_for = 2 * delay if costly else 0.0
        self._refresh = asyncio.get_running_loop().call_later(delay, due)

    async def run_all_once(self) -> list[Observed]:
        """Every probe of every target once, concurrently (for ``check`` and tests)."""
        jobs = [self.run_probe(t.name, p) for t in self.config.targets for p in PROBE_NAMES]
        return list(await asyncio.gather(*jobs))

    def _log_change(self, observed: Observed) -> None:
        outcome = _outcome(observed)
        previous = self._outcomes.changed(observed.target, observed.probe, outcome)
        if previous is None:
            return
        value = observed.value
        fields: dict[str, Any] = {
            "target": observed.target,
            "probe": observed.probe,
            "outcome": outcome,
            "previous": previous,
        }
        if value.error:
            fields["error"] = value.error
        if not value.ok:
            log.warning("probe outcome changed", **fields)
        else:
            log.info("probe outcome changed", **fields)
        self.notifier.status(self._status_line())
