"""The probes' shared reads (exporters/reads.py) on a fake clock: what is reused, for
how long, and what is never reused (issue 16's request budget)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporters.reads import Pace, TargetReads, forgetting_on_write
from tenant.models import (
    GraphCallOutcome,
    SecretValue,
    SecretVersion,
    TokenFailure,
    TokenOutcome,
)
from tenant.ports import TargetClients, TargetRef

PACE = Pace(keyvault_max_age=570, secret_retest=210, graph_call_every=870)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def version(v: str) -> SecretVersion:
    return SecretVersion("s", v, SecretValue(f"value-{v}"), True, None, None, None, None, None)


class Vault:
    def __init__(self) -> None:
        self.current = version("v1")
        self.reads = 0

    async def get_current(self) -> SecretVersion:
        self.reads += 1
        return self.current

    async def set_value(self, value: SecretValue, tags: Mapping[str, str]) -> SecretVersion:
        self.current = version("v2")
        return self.current


class Entra:
    def __init__(self) -> None:
        self.accept = True
        self.tests = 0

    async def try_secret(self, client_id: str, secret: SecretValue) -> TokenOutcome:
        self.tests += 1
        if self.accept:
            return TokenOutcome(ok=True, access_token=SecretValue("token"))
        return TokenOutcome(ok=False, failure=TokenFailure.EXPIRED_SECRET, aadsts=7000222)


async def test_key_vault_is_read_once_per_max_age_and_again_when_asked() -> None:
    clock, vault = Clock(), Vault()
    reads = TargetReads(PACE, clock)
    for clock.now in (0, 100, 569):
        assert (await reads.current_secret(vault)).version == "v1"  # type: ignore[arg-type]
    assert vault.reads == 1
    clock.now = 570
    await reads.current_secret(vault)  # type: ignore[arg-type]
    await reads.current_secret(vault, fresh=True)  # type: ignore[arg-type]
    assert vault.reads == 3


async def test_an_acceptance_is_reused_for_the_retest_time_a_refusal_never() -> None:
    clock, entra = Clock(), Entra()
    reads = TargetReads(PACE, clock)
    v1 = version("v1")
    for clock.now in (0, 60, 120, 180):
        assert (await reads.try_secret(entra, "app", v1)).ok  # type: ignore[arg-type]
    assert entra.tests == 1
    clock.now, entra.accept = 240, False  # 4th run of a 60 s probe: a real test
    assert not (await reads.try_secret(entra, "app", v1)).ok  # type: ignore[arg-type]
    clock.now = 241
    assert not (await reads.try_secret(entra, "app", v1)).ok  # type: ignore[arg-type]
    assert entra.tests == 3
    # another Key Vault version is another secret: tested, not taken from the cache
    entra.accept = True
    await reads.try_secret(entra, "app", v1)  # type: ignore[arg-type]
    await reads.try_secret(entra, "app", version("v2"))  # type: ignore[arg-type]
    assert entra.tests == 5


async def test_the_graph_call_is_paced_while_it_succeeds() -> None:
    clock = Clock()
    reads = TargetReads(PACE, clock)
    url = "https://graph/v1.0/x"
    assert reads.graph_call_due(url)
    reads.graph_called(url, GraphCallOutcome(200, None, 0.1))
    clock.now = 869
    assert not reads.graph_call_due(url)
    clock.now = 870
    assert reads.graph_call_due(url)
    reads.graph_called(url, GraphCallOutcome(403, "Authorization_RequestDenied", 0.1))
    clock.now = 871
    assert reads.graph_call_due(url)  # a failure is called again on the next run


def test_the_pace_follows_the_graph_interval() -> None:
    assert Pace.for_graph_interval(60) == PACE


async def test_a_write_through_the_remediation_clients_forgets_the_shared_reads() -> None:
    clock, vault = Clock(), Vault()
    reads = TargetReads(PACE, clock)
    ref = TargetRef("t", "o", None, "https://kv", "s", "sub", "rg", "site")
    fake: Any = object()
    clients = TargetClients(ref, fake, vault, fake, fake, fake, fake)  # type: ignore[arg-type]
    assert (await reads.current_secret(vault)).version == "v1"  # type: ignore[arg-type]
    writer = forgetting_on_write(clients, reads)
    await writer.vault.set_value(SecretValue("new"), {})
    assert (await reads.current_secret(vault)).version == "v2"  # type: ignore[arg-type]
    assert vault.reads == 2
