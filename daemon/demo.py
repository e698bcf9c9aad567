"""``secretwarden demo`` and ``secretwarden sandbox``: the daemon against a local tenant.

The demo starts the sandbox in this process (same event loop) with a portal whose
in-use secret expires in three days, writes a config for it in a temporary directory,
runs the daemon and prints where to look. :class:`DemoHooks` prints a timeline of
probe outcome changes; remediation adds its own lines through :meth:`DemoHooks.say`.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import signal
import sys
import tempfile
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from daemon.app import Daemon
from daemon.cli import install_extensions
from daemon.config import load_config, split_listen_address
from daemon.sandbox_config import write_sandbox_config
from exporters.observations import ExpiryObservation, Observed

DEMO_INTERVALS = {"expiry": 20.0, "health": 5.0, "graph": 10.0, "reference": 10.0}
DEMO_EXPIRES_IN = timedelta(days=3)


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


async def _maybe_await(value: Any) -> Any:
    if isinstance(value, Awaitable):
        return await value
    return value


def _new_sandbox(**wanted: Any) -> Any:
    import sandbox

    cls = sandbox.Sandbox
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in wanted.items() if k in params and v is not None}
    return cls(**kwargs)


async def run_sandbox(args: argparse.Namespace) -> int:
    """``secretwarden sandbox``: serve until Ctrl-C or SIGTERM."""
    host, port = split_listen_address(args.listen)
    sb = _new_sandbox(state_file=args.state_file)
    await sb.start(host, port)
    try:
        describe: dict[str, Any] = sb.describe()
        if args.describe:
            sb.write_describe(args.describe)
        if args.write_config:
            write_sandbox_config(describe, args.write_config)
            print(f"daemon config: {args.write_config}", file=sys.stderr)
        print(f"sandbox admin: {describe['admin_url']}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await _maybe_await(sb.stop())
    return 0


async def run_demo(
    args: argparse.Namespace, hooks: DemoHooks | None = None, out: TextIO = sys.stdout
) -> int:
    hooks = hooks or DemoHooks(out)
    with tempfile.TemporaryDirectory(prefix="secretwarden-demo-") as tmp:
        sb = _new_sandbox(in_use_expires_in=DEMO_EXPIRES_IN)
        await sb.start("127.0.0.1", 0)
        try:
            describe: dict[str, Any] = sb.describe()
            if args.describe:
                sb.write_describe(args.describe)
            config_file = Path(tmp) / "secretwarden.toml"
            listen = args.listen_address or "127.0.0.1:9877"
            write_sandbox_config(
                describe, config_file, listen_address=listen, intervals=DEMO_INTERVALS
            )
            daemon = Daemon(load_config(config_file), config_path=config_file)
            daemon.observers.append(hooks.on_observation)
            await install_extensions(daemon)
            await daemon.start()
            try:
                url = f"{daemon.web.scheme}://{daemon.listen_address}"
                print(
                    "secretwarden demo: the daemon is watching a sandbox portal whose "
                    f"in-use secret expires in {DEMO_EXPIRES_IN.days} days.\n"
                    f"  metrics:        {url}/metrics\n"
                    f"  sandbox admin:  {describe['admin_url'].rstrip('/')}/state\n"
                    f"  app health:     {describe['app_service_url'].rstrip('/')}/health\n"
                    f"  daemon config:  {config_file}"
                    + (f"\n  describe file:  {args.describe}" if args.describe else "")
                    + "\nCtrl-C to stop.",
                    file=out,
                    flush=True,
                )
                await daemon.run_until_stopped(args.duration)
            finally:
                await daemon.stop()
        finally:
            await _maybe_await(sb.stop())
    return 0
