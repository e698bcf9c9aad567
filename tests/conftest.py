"""Shared fixtures: one sandbox tenant per test session, reset before each test.

Use ``sb`` in a test::

    def test_something(sb):
        d = sb.describe                      # the describe file's facts (dict)
        sb.faults(cold_start_seconds=0.2)    # POST faults (merged; returns the faults)
        sb.admin("POST", f"credentials/{key_id}/expire")
        state = sb.state()                   # GET state (the whole tenant as JSON)

``sb`` resets the tenant (``POST reset``) before the test, which also resets every
fault to the session defaults: no cold start, no latency, no injections, the app's
background Intune sync OFF (``app_sync_interval_seconds`` = 0) so counters stay
deterministic, and (for now) the KINDER_THAN_AZURE reload model (tests/helpers.py). ``sbp`` is the
same on a second tenant with the sandbox's documented defaults (issue 8). A test that
wants the background sync turns it on with ``sb.faults(app_sync_interval_seconds=0.05)``.

``sandbox`` is the session-scoped :class:`sandbox.SandboxThread` itself (``.portal`` for
in-process inspection; prefer the admin API).

For tests that go through ``tenant/``: ``sandbox_cloud`` (custom endpoints and the CA),
``operator`` (the identity the daemon signs in as) and ``target_ref`` (the portal as a
:class:`tenant.ports.TargetRef`; ``dataclasses.replace`` it to point elsewhere).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.keyvault.secrets._shared import http_challenge_cache
from azurite import Azurite, azurite
from helpers import KINDER_THAN_AZURE, PRE_ISSUE_13

from sandbox import SandboxThread
from sandbox.testing import SandboxHandle, ShiftedClock
from tenant.endpoints import PUBLIC, Cloud
from tenant.models import SecretValue
from tenant.ports import Identity, TargetRef

SESSION_FAULTS: dict[str, Any] = {
    "app_sync_interval_seconds": 0.0,
    "cold_start_seconds": 0.0,
    **KINDER_THAN_AZURE,
}
# The sandbox as it starts by default (the pessimistic reload model of issue 8), quiet
# and warm; the process, token and sign-in behaviours of issue 13 as before it
# (PRE_ISSUE_13), since these tests are about the reference's cache. The new behaviours'
# own tests use the sandbox's full defaults (``sbd``).
DEFAULT_FAULTS: dict[str, Any] = {
    "app_sync_interval_seconds": 0.0,
    "cold_start_seconds": 0.0,
    **PRE_ISSUE_13,
}


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxThread]:
    ca_dir: Path = tmp_path_factory.mktemp("sandbox-ca")
    with SandboxThread(ca_dir=ca_dir, faults=SESSION_FAULTS) as thread:
        yield thread


@pytest.fixture(scope="session")
def _pessimistic_clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture(scope="session")
def pessimistic_sandbox(
    tmp_path_factory: pytest.TempPathFactory, _pessimistic_clock: ShiftedClock
) -> Iterator[SandboxThread]:
    ca_dir: Path = tmp_path_factory.mktemp("sandbox-ca-default")
    with SandboxThread(ca_dir=ca_dir, faults=DEFAULT_FAULTS, now=_pessimistic_clock) as thread:
        yield thread


@pytest.fixture(scope="session")
def _defaults_clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture(scope="session")
def defaults_sandbox(
    tmp_path_factory: pytest.TempPathFactory, _defaults_clock: ShiftedClock
) -> Iterator[SandboxThread]:
    """The sandbox with every default of its own (issue 13's pessimistic process, token
    and sign-in model included), quiet and warm, on a clock the test moves."""
    ca_dir: Path = tmp_path_factory.mktemp("sandbox-ca-pessimistic")
    faults = {"app_sync_interval_seconds": 0.0, "cold_start_seconds": 0.0}
    with SandboxThread(ca_dir=ca_dir, faults=faults, now=_defaults_clock) as thread:
        yield thread


@pytest.fixture
def sbd(defaults_sandbox: SandboxThread, _defaults_clock: ShiftedClock) -> Iterator[SandboxHandle]:
    """Like ``sbp``, with every sandbox default (no PRE_ISSUE_13 kindness)."""
    http_challenge_cache.clear()
    d = defaults_sandbox.describe()
    ctx = ssl.create_default_context(cafile=d["ca_file"])
    with httpx.Client(verify=ctx, timeout=10) as client:
        handle = SandboxHandle(
            describe=d, client=client, thread=defaults_sandbox, clock=_defaults_clock
        )
        handle.reset()
        yield handle


@pytest.fixture(scope="session")
def _sandbox_client(sandbox: SandboxThread) -> Iterator[httpx.Client]:
    ctx = ssl.create_default_context(cafile=sandbox.describe()["ca_file"])
    with httpx.Client(verify=ctx, timeout=10) as client:
        yield client


@pytest.fixture
def sb(sandbox: SandboxThread, _sandbox_client: httpx.Client) -> SandboxHandle:
    # The Key Vault SDK remembers each vault's challenge for the whole process; forget
    # it so every test meets the challenge as a fresh process would.
    http_challenge_cache.clear()
    handle = SandboxHandle(describe=sandbox.describe(), client=_sandbox_client, thread=sandbox)
    handle.reset()
    return handle


@pytest.fixture
def sbp(
    pessimistic_sandbox: SandboxThread, _pessimistic_clock: ShiftedClock
) -> Iterator[SandboxHandle]:
    """Like ``sb``, on a tenant with the sandbox's own (documented, pessimistic) defaults
    and a clock the test moves: ``sbp.advance(seconds)``."""
    http_challenge_cache.clear()
    d = pessimistic_sandbox.describe()
    ctx = ssl.create_default_context(cafile=d["ca_file"])
    with httpx.Client(verify=ctx, timeout=10) as client:
        handle = SandboxHandle(
            describe=d, client=client, thread=pessimistic_sandbox, clock=_pessimistic_clock
        )
        handle.reset()
        yield handle


@pytest.fixture(scope="session")
def sandbox_cloud(sandbox: SandboxThread) -> Cloud:
    d = sandbox.describe()
    return PUBLIC.with_custom(
        authority=d["authority"],
        graph_url=d["graph_url"],
        arm_url=d["arm_url"],
        ca_file=Path(d["ca_file"]),
    )


@pytest.fixture(scope="session")
def operator(sandbox: SandboxThread) -> Identity:
    d = sandbox.describe()
    return Identity(
        kind="client_secret",
        tenant_id=d["tenant_id"],
        client_id=d["operator"]["client_id"],
        client_secret=SecretValue(d["operator"]["client_secret"]),
    )


@pytest.fixture(scope="session")
def target_ref(sandbox: SandboxThread) -> TargetRef:
    d = sandbox.describe()
    return TargetRef(
        tenant_id=d["tenant_id"],
        app_object_id=d["app"]["object_id"],
        app_client_id=d["app"]["client_id"],
        key_vault_url=d["key_vault_url"],
        secret_name=d["secret_name"],
        subscription_id=d["subscription_id"],
        resource_group=d["resource_group"],
        site_name=d["site_name"],
    )


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite (blob service) per test session, on a free port, its data in a
    temporary directory (the high-availability tests; each uses its own container)."""
    with azurite(tmp_path_factory.mktemp("azurite") / "data") as server:
        yield server
