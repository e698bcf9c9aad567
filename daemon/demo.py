"""``secretwarden demo`` and ``secretwarden sandbox``: the daemon against a local tenant.

The demo starts the sandbox in this process (same event loop) with a portal whose
in-use secret expires in three days, writes a config for it in a temporary directory,
runs the daemon and prints where to look. :class:`DemoHooks` prints a timeline of
probe outcome changes; remediation adds its own lines through :meth:`DemoHooks.say`.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
import tempfile
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx

from daemon.app import Daemon
from daemon.config import load_config
from daemon.remediate_cli import install
from daemon.sandbox_config import write_sandbox_config
from exporters.observations import ExpiryObservation, Observed
from remediation.service import Remediator
from remediation.workflow import StepEvent
from sandbox import Sandbox
from tenant.models import KEY_ID_TAG

# The expiry probe runs once at start (the first rotation) and then only after the
# injected expiry is healed, so the second repair is always the Graph probe's heal
# (issue 15: the README's timeline must be what a run shows).
DEMO_INTERVALS = {"expiry": 60.0, "health": 3.0, "graph": 3.0, "reference": 5.0}
DEMO_EXPIRES_IN = timedelta(days=3)
# A real App Service takes minutes to cold-start and Entra seconds to propagate; the
# demo keeps both visible but short.
DEMO_FAULTS: dict[str, Any] = {
    "cold_start_seconds": 2.0,
    "propagation_delay_seconds": 2.0,
    # The sandbox's documented App Service (issue 8): only the refresh call and a
    # configuration change re-read the reference, ARM reports no activeVersion, a busy
    # site answers 409. Sign-ins reach the log after 3 s (Azure: minutes) so the demo
    # shows the old secret removed on sign-in evidence.
    "signin_log_delay_seconds": 3.0,
}
DEMO_REMEDIATION: dict[str, bool | int | float] = {
    "enabled": True,
    "heal_after_failures": 2,
    "propagation_poll_seconds": 0.5,
    "verify_poll_seconds": 0.5,
    "refresh_timeout_seconds": 8,
    "cold_start_timeout_seconds": 20,
    "step_attempts": 8,
    # Without proof, the old secret would stay 24 h; the demo's backstop is 1 minute.
    "overlap_window_hours": 1 / 60,
}
DEMO_PAUSE_SECONDS = 5.0
# The tenant inventory (docs/inventory.md) over a synthetic directory around the portal.
DEMO_DIRECTORY = {"applications": 500, "service_principals": 100, "seed": 1}
DEMO_INVENTORY: dict[str, bool | int | float | list[str]] = {
    "enabled": True,
    "interval_seconds": 60,
    "jitter_seconds": 0,
    "service_principals": True,
}


class DemoHooks:
    """Prints a short timeline as things happen (an observation hook)."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self._last: dict[tuple[str, str], bool] = {}
        self._t0 = datetime.now(UTC)

    def say(self, text: str) -> None:
        elapsed = (datetime.now(UTC) - self._t0).total_seconds()
        print(f"[{elapsed:6.1f}s] {text}", file=self.out, flush=True)

    async def on_observation(self, observed: Observed) -> None:
        key = (observed.target, observed.probe)
        ok = observed.value.ok
        if self._last.get(key) == ok:
            return
        self._last[key] = ok
        word = "ok" if ok else f"FAILING ({observed.value.error})"
        value = observed.value
        if isinstance(value, ExpiryObservation) and value.in_use and value.in_use.end:
            left = (value.in_use.end - observed.at).total_seconds() / 86400
            word += f": the in-use secret expires in {left:.1f} days"
        self.say(f"{observed.target}: {observed.probe} probe {word}")


def _finished_runs(remediator: Remediator) -> asyncio.Queue[StepEvent]:
    """A queue of the end events of every run, beside the timeline the remediator prints."""
    queue: asyncio.Queue[StepEvent] = asyncio.Queue()
    timeline = remediator.progress

    def progress(event: StepEvent) -> None:
        if timeline is not None:
            timeline(event)
        if event.step == "run" and event.phase in ("done", "failed"):
            queue.put_nowait(event)

    remediator.progress = progress
    return queue


async def _next_run_of(queue: asyncio.Queue[StepEvent], action: str | None) -> StepEvent:
    """The next finished run of ``action`` (of any action when None)."""
    while (event := await queue.get()).action != (action or event.action):
        pass
    return event


async def _script(
    daemon: Daemon, describe: dict[str, Any], hooks: DemoHooks, target: str = "portal"
) -> None:
    """What the demo shows: the policy rotating the soon-expiring secret, then the
    daemon healing an injected expiry. Only the sandbox's admin API is used to break
    things, as a user would."""
    assert daemon.remediator is not None  # installed before start
    finished = _finished_runs(daemon.remediator)
    first = await _next_run_of(finished, "rotate")
    hooks.say(f"{target}: rotation {first.phase}: {first.detail}")
    if "pending removal" in first.detail:
        hooks.say(
            f"{target}: the old secret stays until proof the app left it "
            "(secretwarden_credential_pending_removal = 1)"
        )
        cleaned = await _next_run_of(finished, "cleanup")
        hooks.say(f"{target}: pending removal {cleaned.phase}: {cleaned.detail}")
    await asyncio.sleep(DEMO_PAUSE_SECONDS)
    state = await _admin(describe, "GET", "state")
    current = state["keyvault"]["current_version"]
    [version] = [v for v in state["keyvault"]["versions"] if v["version"] == current]
    in_use = version["tags"].get(KEY_ID_TAG)
    hooks.say(f"demo: expiring the in-use secret {in_use} now; Graph will answer 401")
    await _admin(describe, "POST", f"credentials/{in_use}/expire")
    # The Graph probe's 401s notice first (heal); the expiry probe, next due a minute
    # after the start, would rotate instead: both end in a fresh secret.
    healed = await _next_run_of(finished, None)
    hooks.say(f"{target}: {healed.action} {healed.phase}: {healed.detail}")
    hooks.say("demo: the app is healthy on a fresh secret; still watching (Ctrl-C to stop)")


async def _admin(
    describe: dict[str, Any], method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    ctx = ssl.create_default_context(cafile=describe["ca_file"])
    async with httpx.AsyncClient(verify=ctx, timeout=10) as client:
        url = describe["admin_url"].rstrip("/") + "/" + path
        response = await client.request(method, url, json=body)
        response.raise_for_status()
        return response.json() if response.content else None


def demo_log_file() -> Path:
    """Where ``secretwarden demo`` writes the daemon's log unless told (``--log.file``)."""
    return Path(tempfile.gettempdir()) / "secretwarden-demo.log"


async def run_demo(
    args: argparse.Namespace,
    hooks: DemoHooks | None = None,
    out: TextIO = sys.stdout,
    *,
    log_file: Path | None = None,
) -> int:
    """Exit 0 after a clean stop; 2 with one line on stderr when the daemon cannot
    listen (a port in use), like ``secretwarden run``."""
    from daemon.web import StartError

    hooks = hooks or DemoHooks(out)
    with tempfile.TemporaryDirectory(prefix="secretwarden-demo-") as tmp:
        sb = Sandbox(in_use_expires_in=DEMO_EXPIRES_IN, faults=DEMO_FAULTS)
        await sb.start("127.0.0.1", 0)
        try:
            describe: dict[str, Any] = sb.describe()
            if args.describe:
                sb.write_describe(args.describe)
            config_file = Path(tmp) / "secretwarden.toml"
            listen = args.listen_address or "127.0.0.1:9877"
            write_sandbox_config(
                describe,
                config_file,
                listen_address=listen,
                intervals=DEMO_INTERVALS,
                remediation=DEMO_REMEDIATION,
                inventory=DEMO_INVENTORY,
            )
            await _admin(describe, "POST", "directory", DEMO_DIRECTORY)
            daemon = Daemon(load_config(config_file), config_path=config_file)
            daemon.observers.append(hooks.on_observation)
            install(daemon, say=hooks.say)
            script = asyncio.create_task(_script(daemon, describe, hooks))
            try:
                try:
                    await daemon.start()
                except StartError as exc:
                    print(f"secretwarden demo: {exc}", file=sys.stderr, flush=True)
                    return 2
                url = f"{daemon.web.scheme}://{daemon.listen_address}"
                print(
                    "secretwarden demo: the daemon is watching a sandbox portal whose "
                    f"in-use secret expires in {DEMO_EXPIRES_IN.days} days; it will rotate "
                    "it, then heal an expiry the demo injects.\n"
                    f"  metrics:        {url}/metrics (with {DEMO_DIRECTORY['applications']} "
                    "more app registrations in the tenant inventory)\n"
                    f"  sandbox admin:  {describe['admin_url'].rstrip('/')}/state\n"
                    f"  app health:     {describe['app_service_url'].rstrip('/')}/health\n"
                    f"  daemon config:  {config_file}"
                    + (f"\n  daemon log:     {log_file} (JSON lines)" if log_file else "")
                    + (f"\n  describe file:  {args.describe}" if args.describe else "")
                    + "\nCtrl-C to stop.",
                    file=out,
                    flush=True,
                )
                await daemon.run_until_stopped(args.duration)
            finally:
                script.cancel()
                with suppress(asyncio.CancelledError):
                    await script
                await daemon.stop()
        finally:
            await sb.stop()
    return 0
