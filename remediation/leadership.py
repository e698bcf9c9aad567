"""Who may remediate a target: this daemon alone (:class:`Solo`), or the daemon that
holds the target's Azure Blob Storage lease (:class:`LeaseLeadership`, ``[ha] backend =
"azure_blob"``).

The runner consults it before every write (a journal line, an Azure call): it raises
:class:`NotLeader` the moment this daemon cannot prove it holds the target. Proof is
local and costs no I/O: a successful acquire or renew *started* less than
``renew_deadline`` seconds ago (monotonic clock). Storage lets the lease lapse only
``lease_seconds`` after that same renewal reached it, so a holder that is cut off
stops starting writes at least ``lease_seconds - renew_deadline`` before any other
daemon can take the lease. Each journal append also carries the lease id, so storage
itself refuses a line from a daemon that lost the lease (the fence).

Spread: every daemon heartbeats a small blob; with R live daemons and N targets each
holds at most ``ceil(N/R)`` (:func:`plan`), releasing a surplus it is not remediating
and taking free targets up to its share, so three daemons share thirty portals.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from remediation.clock import Clock, SystemClock
from tenant.leases import BlobLeases, LeaseLost, LeaseTaken, StorageError, member_blob

log = structlog.get_logger("secretwarden.ha")

RENEWAL_RESULTS = ("ok", "lost", "error")


class NotLeader(Exception):
    """This daemon cannot prove it holds ``target``'s lease: no write may start."""

    def __init__(self, target: str, why: str) -> None:
        self.target = target
        self.why = why
        super().__init__(f"target {target}: not remediating here: {why}")


class Leadership(Protocol):
    @property
    def name(self) -> str:
        """This daemon's name in storage ("" for a single daemon)."""
        ...

    def holds(self, target: str) -> bool:
        """True while this daemon may start a write for ``target``."""
        ...

    def check(self, target: str) -> None:
        """Raise :class:`NotLeader` unless :meth:`holds`."""
        ...


class Solo:
    """One daemon (``[ha] backend = "none"``): the local flock is the only guard."""

    name = ""

    def holds(self, target: str) -> bool:
        return True

    def check(self, target: str) -> None:
        return None


@dataclass(frozen=True, slots=True)
class HaSettings:
    lease_seconds: int = 30
    renew_deadline: float = 20.0
    retry: float = 5.0

    @property
    def interval(self) -> float:
        """How often the loop renews and looks for free targets: three renewals fit in
        the renew deadline, so one lost reply never costs the lease."""
        return min(self.retry, self.renew_deadline / 3)

    @property
    def member_max_age(self) -> float:
        """A daemon whose heartbeat is older than this is gone (for the fair share). A
        live one beats every ``interval``; one that has not for a lease time has lost
        its leases too, so its targets are free when it stops counting."""
        return float(self.lease_seconds)


def fair_share(targets: int, members: int) -> int:
    return math.ceil(targets / max(1, members))


def plan(held: Iterable[str], share: int, busy: Callable[[str], bool]) -> tuple[int, list[str]]:
    """(how many free targets to take, which held ones to give back): up to ``share``
    held, never giving back one that is ``busy`` (a run in progress finishes where it
    started)."""
    held = list(held)
    surplus = len(held) - share
    release = [t for t in held if not busy(t)][: max(0, surplus)]
    return max(0, share - len(held)), release


class HaMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.held = Gauge(
            "secretwarden_ha_lease_held",
            "1 while this daemon holds the target's lease (may remediate it), else 0.",
            ["target"],
            registry=registry,
        )
        self.renewals = Counter(
            "secretwarden_ha_lease_renewals_total",
            "Lease renewals by result: ok, lost (another daemon holds it now), error "
            "(storage did not answer; the lease is kept until the renew deadline).",
            ["result"],
            registry=registry,
        )
        self.takeovers = Counter(
            "secretwarden_ha_takeovers_total",
            "Leases this daemon acquired that another daemon held last.",
            ["target"],
            registry=registry,
        )
        for result in RENEWAL_RESULTS:
            self.renewals.labels(result)
        self._targets: set[str] = set()

    def set_targets(self, targets: Iterable[str]) -> None:
        wanted = set(targets)
        for gone in self._targets - wanted:
            self.held.remove_by_labels({"target": gone})
            self.takeovers.remove_by_labels({"target": gone})
        for t in wanted - self._targets:
            self.held.labels(t).set(0)
            self.takeovers.labels(t)
        self._targets = wanted


@dataclass(slots=True)
class _Held:
    lease_id: str
    proven_at: float  # monotonic start of the last acquire/renew storage confirmed
    since: datetime
    ready: bool = False  # the journal was read from storage since it was acquired
    previous: str | None = None


@dataclass
class LeaseLeadership:
    """The lease loop of one daemon. :meth:`run` until cancelled; :meth:`release_all`
    on SIGTERM/SIGHUP hands every lease over at once.

    ``on_acquired(target)`` runs after a lease is taken, before the target counts as
    held: it reads the journal from storage and resumes an unfinished run (False: it
    could not; the lease is given back). ``on_lost(target)`` is called when the
    daemon stops holding a target it held (the runner stops at its next write).
    """

    store: BlobLeases
    daemon: str
    settings: HaSettings
    targets: Callable[[], Iterable[str]]
    registry: CollectorRegistry | None = None
    clock: Clock = field(default_factory=SystemClock)
    on_acquired: Callable[[str], Awaitable[bool]] | None = None
    on_lost: Callable[[str], None] | None = None
    busy: Callable[[str], bool] = lambda _t: False
    # Each round, for every target held: finish an unfinished run (a resume that did
    # not start at the takeover, e.g. the daemon was busy, starts at the next round).
    on_held: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.metrics = HaMetrics(
            self.registry if self.registry is not None else CollectorRegistry()
        )
        self._held: dict[str, _Held] = {}
        self._stopped = False
        self.metrics.set_targets(self.targets())

    # -- what the runner asks ---------------------------------------------------------

    @property
    def name(self) -> str:
        return self.daemon

    def holds(self, target: str) -> bool:
        h = self._held.get(target)
        return h is not None and h.ready and self._proven(h)

    def _proven(self, h: _Held) -> bool:
        return self.clock.monotonic() - h.proven_at < self.settings.renew_deadline

    def check(self, target: str) -> None:
        h = self._held.get(target)
        if h is None:
            raise NotLeader(target, "this daemon does not hold its lease")
        if not h.ready:
            raise NotLeader(target, "its journal is being read from storage again")
        if not self._proven(h):
            age = self.clock.monotonic() - h.proven_at
            raise NotLeader(
                target,
                f"its lease was last renewed {age:.1f}s ago, past the "
                f"{self.settings.renew_deadline:g}s renew deadline",
            )

    def lease_id(self, target: str) -> str:
        """The lease id for a fenced append (raises NotLeader like :meth:`check`)."""
        self.check(target)
        return self._held[target].lease_id

    def held(self) -> dict[str, datetime]:
        """Targets held now, and since when (``status``)."""
        return {t: h.since for t, h in self._held.items() if self._proven(h)}

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        while not self._stopped:
            try:
                await self.tick()
            except StorageError as e:  # one bad round; the next one tries again
                log.warning("lease round failed", error=str(e))
            await self.clock.sleep(self.settings.interval)

    async def tick(self) -> None:
        targets = sorted(set(self.targets()))
        self.metrics.set_targets(targets)
        for gone in [t for t in self._held if t not in targets]:
            await self._release(gone, "target removed from the config")
        await asyncio.gather(*(self._renew(t) for t in list(self._held)))
        for t, h in list(self._held.items()):
            if not h.ready and self._proven(h):
                await self._adopt(t)
            elif self.on_held is not None and self.holds(t):
                self.on_held(t)
        try:
            await self.store.heartbeat(self.daemon)
            members = await self.store.members(self.settings.member_max_age)
        except StorageError as e:
            log.warning("lease round: membership unknown; holding what is held", error=str(e))
            return
        share = fair_share(len(targets), len(set(members) | {_member(self.daemon)}))
        free = sorted(
            (t for t in targets if t not in self._held), key=lambda t: hash((self.daemon, t))
        )
        room, release = plan(self._held, share, self.busy)
        for t in release:
            await self._release(t, f"more than the fair share ({share}) held")
        for t in free:  # in this daemon's order; most are held by others (409)
            if room <= 0:
                break
            room -= await self._acquire(t)

    async def _renew(self, target: str) -> None:
        h = self._held[target]
        started = self.clock.monotonic()
        try:
            await self.store.renew(target, h.lease_id)
        except LeaseLost as e:
            self.metrics.renewals.labels("lost").inc()
            self._drop(target, f"storage refused the renewal ({e.code})")
            return
        except StorageError as e:
            self.metrics.renewals.labels("error").inc()
            if not self._proven(h):
                self._drop(target, f"renew deadline passed; storage unreachable: {e}")
            else:
                log.warning("lease renewal failed; retrying", target=target, error=str(e))
            return
        self.metrics.renewals.labels("ok").inc()
        if target in self._held:
            h.proven_at = started

    async def _acquire(self, target: str) -> bool:
        started = self.clock.monotonic()
        try:
            got = await self.store.acquire(target, self.settings.lease_seconds, self.daemon)
        except LeaseTaken:
            return False
        except StorageError as e:
            log.warning("lease not acquired", target=target, error=str(e))
            return False
        self._held[target] = _Held(
            got.lease_id, started, self.clock.now(), previous=got.previous_holder
        )
        if got.previous_holder not in (None, self.daemon):
            self.metrics.takeovers.labels(target).inc()
        log.info("lease acquired", target=target, previous_holder=got.previous_holder)
        await self._adopt(target)
        return True

    async def _adopt(self, target: str) -> None:
        """Read the journal and resume (on_acquired) before the target counts as held."""
        h = self._held[target]
        ok = True if self.on_acquired is None else await self.on_acquired(target)
        if target not in self._held:
            return
        if ok:
            h.ready = True
            self.metrics.held.labels(target).set(1)
            if h.previous not in (None, self.daemon):
                log.warning("took over target", target=target, previous_holder=h.previous)
        else:
            await self._release(target, "its journal could not be read from storage")

    # -- one target outside the loop (``secretwarden cleanup`` in HA mode) -----------

    async def take(self, target: str) -> bool:
        """Acquire ``target``'s lease now, outside the loop and its fair share (no
        heartbeat: the daemons' shares do not count this holder), and adopt it
        (``on_acquired``) as the loop would. False: another daemon holds it, storage
        did not answer, or the adoption refused it (the lease was given back). Keep it
        with :meth:`renew_held` every ``settings.interval``."""
        return await self._acquire(target) and self.holds(target)

    async def renew_held(self) -> None:
        """One renewal of every lease held (the loop's first half)."""
        await asyncio.gather(*(self._renew(t) for t in list(self._held)))

    def resync(self, target: str) -> None:
        """A journal append failed without an answer: the local copy may lack a line
        that storage has. Read it again (and resume) before the next run."""
        h = self._held.get(target)
        if h is not None:
            h.ready = False
            self.metrics.held.labels(target).set(0)

    def _drop(self, target: str, why: str) -> None:
        h = self._held.pop(target, None)
        if h is None:
            return
        self.metrics.held.labels(target).set(0)
        log.warning("lease lost: remediation of the target stops here", target=target, why=why)
        if self.on_lost is not None:
            self.on_lost(target)

    async def _release(self, target: str, why: str) -> None:
        h = self._held.pop(target, None)
        if h is None:
            return
        self.metrics.held.labels(target).set(0)
        if self.on_lost is not None:
            self.on_lost(target)
        try:
            await self.store.release(target, h.lease_id)
        except StorageError as e:  # it lapses by itself after lease_seconds
            log.warning("lease not released", target=target, error=str(e))
            return
        log.info("lease released", target=target, why=why)

    async def release(self, targets: Iterable[str], why: str) -> None:
        """Give these leases back now: the next daemon need not wait for them to lapse."""
        await asyncio.gather(*(self._release(t, why) for t in list(targets)))

    async def release_all(self, why: str = "stopping") -> None:
        """Every lease (SIGTERM). Runs in progress must have been stopped first."""
        await self.release(list(self._held), why)

    async def close(self) -> None:
        self._stopped = True
        await self.release_all()
        try:
            await self.store.leave(self.daemon)
        except StorageError as e:
            log.warning("heartbeat not removed", error=str(e))


def _member(daemon: str) -> str:
    return member_blob(daemon).removeprefix("members/")
