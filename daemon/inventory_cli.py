"""``secretwarden inventory``: one scan of the tenant in the foreground, printed.

For people who want the list without Prometheus: every credential of every app
registration (after the config's ``[inventory]`` filters; service principals when
``service_principals = true``), soonest expiry first, as a table, JSON or CSV. The
``[inventory]`` section need not be enabled for this command. Exit 0 after a scan, 1
when Graph could not be read (the cause on stderr), 2 for a bad config.
"""

from __future__ import annotations

import csv
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from daemon.config import Config
from daemon.inventory import InventoryService
from exporters.inventory_select import InventoryRow

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}
COLUMNS = ("app", "app_id", "credential", "kind", "key_id", "expires", "days_left", "managed")


def parse_duration(value: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w``, ``3600s``; a bare number is days."""
    m = _DURATION.match(value)
    if m is None:
        raise ValueError(f"expected a duration like 30d, 12h or 2w, got {value!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _record(row: InventoryRow, now: float) -> dict[str, str | float | bool]:
    return {
        "app": row.app_name,
        "app_id": row.app_id,
        "credential": row.credential_name,
        "kind": row.kind if row.collection == "applications" else f"sp-{row.kind}",
        "key_id": row.key_id,
        "expires": datetime.fromtimestamp(row.end, UTC).isoformat(timespec="seconds"),
        "days_left": round((row.end - now) / 86400, 1),
        "managed": row.managed,
    }


def print_rows(rows: list[InventoryRow], output: str, now: float, out: TextIO = sys.stdout) -> None:
    records = [_record(r, now) for r in rows]
    if output == "json":
        json.dump(records, out, indent=1, ensure_ascii=False)
        out.write("\n")
        return
    if output == "csv":
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return
    head = tuple(c.upper() for c in COLUMNS)
    table = [head] + [tuple(str(r[c]) for c in COLUMNS) for r in records]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip(), file=out)


async def run_inventory(
    config: Config,
    *,
    expiring_within: float | None,
    output: str,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    service = InventoryService(config)
    try:
        report = await service.scan()
    finally:
        await service.aclose()
    if not report.ok:
        print(f"secretwarden: inventory scan failed: {report.error}", file=err)
        return 1
    now = time.time()
    rows = list(service.inventory.view.rows)
    if expiring_within is not None:
        rows = [r for r in rows if r.end <= now + expiring_within]
    print_rows(rows, output, now, out)
    view = service.inventory.view
    if output == "table":
        print(
            f"\n{len(rows)} credential(s) shown; {view.applications} app registration(s) "
            f"scanned with {report.requests} Graph request(s) in {report.duration_seconds:.1f}s",
            file=out,
        )
    return 0
