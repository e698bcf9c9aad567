"""`secretwarden sandbox` as a subprocess for the benchmarks, started once its describe
file is written (the bench scripts' folder is on sys.path, as for table.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def start_sandbox(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start the sandbox on a free loopback port; return the process and its describe file."""
    exe = Path(sys.executable).parent / "secretwarden"
    describe = tmp / "sandbox.json"
    proc = subprocess.Popen(
        [str(exe), "sandbox", "--listen", "127.0.0.1:0", "--describe", str(describe)],
        stderr=subprocess.DEVNULL,
    )
    while not describe.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"secretwarden sandbox exited with {proc.returncode}")
        time.sleep(0.01)
    time.sleep(0.05)  # written, not necessarily flushed
    return proc, json.loads(describe.read_text())
