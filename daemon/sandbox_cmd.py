"""``secretwarden sandbox``: the local stand-in for the tenant, served until stopped.

Kept apart from the demo so that starting the sandbox imports neither the Azure SDKs
nor the remediation stack (the sandbox must be up in well under two seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from daemon.config import split_listen_address
from daemon.sandbox_config import write_sandbox_config
from sandbox import Sandbox


async def run_sandbox(args: argparse.Namespace) -> int:
    """``secretwarden sandbox``: serve until Ctrl-C or SIGTERM."""
    host, port = split_listen_address(args.listen)
    sb = Sandbox(state_file=args.state_file)
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
        await sb.stop()
    return 0
