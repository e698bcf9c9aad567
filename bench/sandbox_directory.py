"""The sandbox's tenant-wide directory under an inventory's load; prints a table.
Run: .venv/bin/python bench/sandbox_directory.py

Issue 10's exporter must scan 10,000 apps in at most 10 s and 15 requests; the sandbox
must not be what makes it slow. The sandbox runs as ``secretwarden sandbox`` in its own
process (as in the demo), and this client reads raw bytes (no JSON parsing), so the
page times are the sandbox's own serving time plus loopback TLS.

- ``POST directory`` of 10,000 apps and 2,000 service principals;
- a full list scan, ``$top=999`` and the inventory's ``$select``: the first (each
  object rendered once and cached) and a repeat;
- a first delta round with ``Prefer: odata.maxpagesize=999``, then an unchanged one.
"""

from __future__ import annotations

import signal
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sandbox_proc import start_sandbox
from table import print_table  # bench/table.py: the script's folder is on sys.path

APPS, SPS, RUNS = 10_000, 2_000, 5
SELECT = "id,appId,displayName,tags,passwordCredentials,keyCredentials"


def token(client: httpx.Client, d: dict[str, Any]) -> dict[str, str]:
    resp = client.post(
        f"{d['authority']}/{d['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": d["operator"]["client_id"],
            "client_secret": d["operator"]["client_secret"],
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def scan(
    client: httpx.Client, url: str, headers: dict[str, str], link: str
) -> tuple[float, list[float], int, int, str | None]:
    """Follow ``link`` annotations from ``url``: (wall, page times, requests, bytes, last)."""
    times: list[float] = []
    size = 0
    t0 = time.perf_counter()
    next_url: str | None = url
    last: str | None = None
    while next_url:
        t1 = time.perf_counter()
        resp = client.get(next_url, headers=headers)
        times.append(time.perf_counter() - t1)
        resp.raise_for_status()
        size += len(resp.content)
        # the links sit before "value": find them without parsing the whole page
        head = resp.content[:4096].decode(errors="replace")
        next_url = _annotation(head, "@odata.nextLink")
        last = _annotation(head, link) or last
    return time.perf_counter() - t0, times, len(times), size, last


def _annotation(head: str, name: str) -> str | None:
    key = f'"{name}":"'
    at = head.find(key)
    if at < 0:
        return None
    start = at + len(key)
    return head[start : head.index('"', start)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proc, d = start_sandbox(Path(tmp))
        try:
            ctx = ssl.create_default_context(cafile=d["ca_file"])
            with httpx.Client(verify=ctx, timeout=60) as client:
                rows = run(client, d)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    print_table(rows)


def run(client: httpx.Client, d: dict[str, Any]) -> list[tuple[str, str]]:
    admin, graph = d["admin_url"], d["graph_url"]
    body = {"applications": APPS, "service_principals": SPS, "seed": 1}
    creates = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        client.post(admin + "directory", json=body).raise_for_status()
        creates.append(time.perf_counter() - t0)
    h = token(client, d)
    url = f"{graph}/applications?$top=999&$select={SELECT}"
    cold_wall, cold_pages, requests, size, _ = scan(client, url, h, "")
    warm = [scan(client, url, h, "") for _ in range(RUNS)]
    warm_pages = [t for w in warm for t in w[1]]
    prefer = h | {"Prefer": "odata.maxpagesize=999"}
    delta_url = f"{graph}/applications/delta?$select={SELECT}"
    delta = scan(client, delta_url, prefer, "@odata.deltaLink")
    assert delta[4] is not None
    unchanged = [scan(client, delta[4], prefer, "@odata.deltaLink") for _ in range(RUNS)]
    truth = client.get(admin + "directory").json()

    def spread(times: list[float]) -> str:
        return f"{ms(statistics.median(times))} / {ms(max(times))}"

    return [
        ("apps listed (truth)", str(truth["applications"])),
        (f"POST directory, {APPS} apps + {SPS} SPs (median)", ms(statistics.median(creates))),
        ("full scan, first: requests", str(requests)),
        ("full scan, first: wall", ms(cold_wall)),
        ("full scan, first: page median / max", spread(cold_pages)),
        (f"full scan, repeat: wall (median of {RUNS})", ms(statistics.median(w[0] for w in warm))),
        ("full scan, repeat: page median / max", spread(warm_pages)),
        ("full scan bytes", f"{size / 1e6:.1f} MB"),
        ("delta first round: requests / wall", f"{delta[2]} / {ms(delta[0])}"),
        ("delta unchanged: requests", str(unchanged[0][2])),
        ("delta unchanged: wall (median)", ms(statistics.median(u[0] for u in unchanged))),
    ]


if __name__ == "__main__":
    main()
