"""Azure reads one target's scheduled probes share, so a healthy target stays within
its request budget (issue 16; docs/performance.md has the budget per probe).

- The Key Vault secret is read at most once per ``keyvault_max_age`` for all three
  probes that need it. The daemon's own writes (a rotation, a rollback) forget it at
  once (:func:`forgetting_on_write`); a refusal or a stale-looking reference reads
  again before it is reported.
- A token request with the Key Vault value (the only test of a secret) is made at most
  once per ``secret_retest`` while Entra accepts it: a refused secret is seen within
  ``secret_retest`` plus one Graph probe interval (4 minutes and a bit at the
  defaults). A refusal is never reused.
- The Graph call with the app's token, which tests the app's Graph permissions, not
  its secret, is made once per ``graph_call_every`` while it succeeds.

Remediation's verification and ``secretwarden check`` call the probes without a
:class:`TargetReads`: every read is fresh there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from tenant.models import (
    AppRegistration,
    GraphCallOutcome,
    NewPassword,
    PasswordCredential,
    RemoveOutcome,
    SecretValue,
    SecretVersion,
    TokenOutcome,
)
from tenant.ports import AppRegistrations, SecretStore, TargetClients, TokenIssuer

Monotonic = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Pace:
    """How long a healthy answer is reused (seconds). The defaults keep a target at
    <= 40 Azure requests an hour with the default probe intervals and see a refused
    secret within 5 minutes (a test on every 4th run of the 60 s Graph probe)."""

    keyvault_max_age: float = 570.0
    secret_retest: float = 210.0
    graph_call_every: float = 870.0

    @classmethod
    def for_graph_interval(cls, seconds: float) -> Pace:
        """The defaults' proportions to the Graph probe's interval (60 s by default),
        half an interval short of a whole number so that jitter never skips a run: the
        secret is tested on every 4th run (a refusal is seen within 4 intervals plus
        jitter), the Graph call made on every 15th, Key Vault read on every 10th."""
        return cls(
            keyvault_max_age=9.5 * seconds,
            secret_retest=3.5 * seconds,
            graph_call_every=14.5 * seconds,
        )


@dataclass
class TargetReads:
    """One target's shared reads; see the module docstring."""

    pace: Pace = field(default_factory=Pace)
    clock: Monotonic = time.monotonic
    _secret: tuple[float, SecretVersion] | None = None
    _accepted: tuple[float, str, str | None] | None = None  # (at, client_id, version)
    _accepted_outcome: TokenOutcome | None = None
    _graph_ok_at: dict[str, float] = field(default_factory=dict)

    def forget(self) -> None:
        """Drop everything: the next probe reads and tests afresh."""
        self._secret = None
        self._accepted = None
        self._accepted_outcome = None
        self._graph_ok_at.clear()

    def _fresh(self, at: float, max_age: float) -> bool:
        return self.clock() - at < max_age

    async def current_secret(self, vault: SecretStore, *, fresh: bool = False) -> SecretVersion:
        """The Key Vault secret's current version, read at most once per max age."""
        if not fresh and self._secret is not None:
            at, current = self._secret
            if self._fresh(at, self.pace.keyvault_max_age):
                return current
        current = await vault.get_current()
        self._secret = (self.clock(), current)
        return current

    async def try_secret(
        self, entra: TokenIssuer, client_id: str, current: SecretVersion
    ) -> TokenOutcome:
        """Entra's answer for ``current``'s value; an acceptance is reused for
        ``secret_retest`` seconds (for the same app and Key Vault version)."""
        assert current.value is not None
        key = (client_id, current.version)
        if self._accepted is not None and self._accepted_outcome is not None:
            at, *accepted_key = self._accepted
            if tuple(accepted_key) == key and self._fresh(at, self.pace.secret_retest):
                return self._accepted_outcome
        outcome = await entra.try_secret(client_id, current.value)
        if outcome.ok:
            self._accepted, self._accepted_outcome = (self.clock(), *key), outcome
        else:
            self._accepted, self._accepted_outcome = None, None
        return outcome

    def graph_call_due(self, url: str) -> bool:
        at = self._graph_ok_at.get(url)
        return at is None or not self._fresh(at, self.pace.graph_call_every)

    def graph_called(self, url: str, outcome: GraphCallOutcome) -> None:
        if 200 <= outcome.status < 300:
            self._graph_ok_at[url] = self.clock()
        else:
            self._graph_ok_at.pop(url, None)


def forgetting_on_write(clients: TargetClients, reads: TargetReads) -> TargetClients:
    """``clients`` whose Key Vault and app-registration writes first make ``reads``
    forget (the clients remediation gets: a rotation is never hidden by a cached read)."""
    return replace(
        clients,
        vault=_ForgettingVault(clients.vault, reads),
        app=_ForgettingApp(clients.app, reads),
    )


class _ForgettingVault:
    def __init__(self, inner: SecretStore, reads: TargetReads) -> None:
        self._inner = inner
        self._reads = reads

    async def get_current(self) -> SecretVersion:
        return await self._inner.get_current()

    async def get_version(self, version: str) -> SecretVersion:
        return await self._inner.get_version(version)

    async def set_value(self, value: SecretValue, tags: Mapping[str, str]) -> SecretVersion:
        self._reads.forget()
        try:
            return await self._inner.set_value(value, tags)
        finally:
            self._reads.forget()  # a probe may have read meanwhile

    async def set_tags(self, version: str, tags: Mapping[str, str]) -> SecretVersion:
        self._reads.forget()
        try:
            return await self._inner.set_tags(version, tags)
        finally:
            self._reads.forget()

    async def list_versions(self) -> list[SecretVersion]:
        return await self._inner.list_versions()


class _ForgettingApp:
    def __init__(self, inner: AppRegistrations, reads: TargetReads) -> None:
        self._inner = inner
        self._reads = reads

    async def get_app(self) -> AppRegistration:
        return await self._inner.get_app()

    async def list_credentials(self) -> tuple[PasswordCredential, ...]:
        return await self._inner.list_credentials()

    async def find_credentials(self, display_name: str) -> tuple[PasswordCredential, ...]:
        return await self._inner.find_credentials(display_name)

    async def client_id(self) -> str:
        return await self._inner.client_id()

    async def add_password(self, display_name: str, end: datetime | None) -> NewPassword:
        self._reads.forget()
        try:
            return await self._inner.add_password(display_name, end)
        finally:
            self._reads.forget()

    async def remove_password(self, key_id: str) -> RemoveOutcome:
        self._reads.forget()
        try:
            return await self._inner.remove_password(key_id)
        finally:
            self._reads.forget()
