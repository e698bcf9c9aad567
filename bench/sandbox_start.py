"""Sandbox start-up benchmark; prints a table. Run: .venv/bin/python bench/sandbox_start.py

Issue 2 promises a sandbox "in well under two seconds". Two measures: ``Sandbox.start()``
in a running event loop (what the tests and the demo pay), and the whole
``secretwarden sandbox`` command from exec until its describe file exists (what a user
pays: interpreter, imports, CA, listener).
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from table import print_table  # bench/table.py: the script's folder is on sys.path

from sandbox import Sandbox

RUNS = 9


async def in_process(fresh_ca: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        ca_dir = Path(tmp)
        if not fresh_ca:  # a CA already on disk is reused
            warm = Sandbox(ca_dir=ca_dir)
            await warm.start()
            await warm.stop()
        sb = Sandbox(ca_dir=ca_dir)
        t0 = time.perf_counter()
        await sb.start()
        elapsed = time.perf_counter() - t0
        await sb.stop()
        return elapsed


def command() -> float:
    exe = Path(sys.executable).parent / "secretwarden"
    with tempfile.TemporaryDirectory() as tmp:
        describe = Path(tmp) / "s.json"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [str(exe), "sandbox", "--listen", "127.0.0.1:0", "--describe", str(describe)],
            stderr=subprocess.DEVNULL,
        )
        try:
            while not describe.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"secretwarden sandbox exited with {proc.returncode}")
                time.sleep(0.002)
            return time.perf_counter() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


def row(name: str, samples: list[float]) -> tuple[str, str]:
    ms = sorted(s * 1000 for s in samples)
    return name, f"{statistics.median(ms):8.1f} ms median  {ms[-1]:8.1f} ms max  (n={len(ms)})"


def main() -> None:
    rows = [
        row("Sandbox.start(), new CA", [asyncio.run(in_process(True)) for _ in range(RUNS)]),
        row("Sandbox.start(), CA reused", [asyncio.run(in_process(False)) for _ in range(RUNS)]),
        row("`secretwarden sandbox` to describe file", [command() for _ in range(RUNS)]),
    ]
    print_table(rows)


if __name__ == "__main__":
    main()
