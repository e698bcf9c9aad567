"""Run the ``secretwarden`` CLI with a SIGUSR2 hook that dumps a tracemalloc snapshot.

For memory investigations only (bench/soak.py --trace DIR). The first SIGUSR2 starts
tracemalloc (``SOAK_TRACE_FRAMES`` frames, 25 by default; tracing the imports and
start-up would take minutes, and growth is what is looked for; 0: no tracemalloc), and
each SIGUSR2 (after ``malloc_trim(0)`` when ``SOAK_MALLOC_TRIM`` is set) writes
``DIR/snapshot-<n>.pickle`` (n counts from 1) and, beside it, ``DIR/snapshot-<n>.json``
with counters that tracemalloc cannot see (live ``ssl.SSLContext`` objects, asyncio
tasks, gc objects by type). Not part of the daemon: nothing here is imported by it.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import ssl
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from daemon.cli import main

OUT = Path(os.environ["SOAK_TRACE_DIR"])
_count = 0


def _dump(signum: int, frame: FrameType | None) -> None:
    global _count
    _count += 1
    frames = int(os.environ.get("SOAK_TRACE_FRAMES", "25"))
    if frames and not tracemalloc.is_tracing():
        tracemalloc.start(frames)
    gc.collect()
    if os.environ.get("SOAK_MALLOC_TRIM"):  # give freed heap back: what stays is live
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    kinds = Counter(type(o).__qualname__ for o in gc.get_objects())
    records = [o for o in gc.get_objects() if type(o).__name__ == "RunRecord"]
    holders: Counter[str] = Counter()
    for r in records:
        for ref in gc.get_referrers(r):
            if ref is not records:
                holders[f"{type(ref).__qualname__} len={_len(ref)} entries={bool(r.entries)}"] += 1
    facts = {
        "run_records": len(records),
        "run_record_holders": dict(holders.most_common(20)),
        "ssl_contexts": kinds.get("SSLContext", 0),
        "objects": sum(kinds.values()),
        "by_type": dict(kinds.most_common(60)),
        "traced": tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None,
    }
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(OUT / f"snapshot-{_count}.pickle"))
    tmp = OUT / f"snapshot-{_count}.json.tmp"
    tmp.write_text(json.dumps(facts))
    tmp.rename(OUT / f"snapshot-{_count}.json")


def _len(o: object) -> int:
    try:
        return len(o)  # type: ignore[arg-type]
    except TypeError:
        return -1


_ssl_made = 0
_orig_init = ssl.SSLContext.__new__


def _counting_new(cls: type[ssl.SSLContext], *args: Any, **kwargs: Any) -> ssl.SSLContext:
    global _ssl_made
    _ssl_made += 1
    (OUT / "ssl_contexts_made").write_text(str(_ssl_made))
    made: ssl.SSLContext = _orig_init(cls, *args, **kwargs)
    return made


if __name__ == "__main__":
    ssl.SSLContext.__new__ = _counting_new  # type: ignore[method-assign,assignment]
    signal.signal(signal.SIGUSR2, _dump)
    sys.exit(main(sys.argv[1:]))
