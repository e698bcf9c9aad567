"""Microsoft.Web's per-instance view, minimally: the site's scale-out instances
(``WebApps_ListInstanceIdentifiers``) and each instance's processes with their start
time (``WebApps_ListInstanceProcesses``), shaped as the REST spec shapes them.

A minimal stand-in written by the daemon side of issue 13 until the sandbox's own
process model lands: one instance whose worker process started when the site last
(re)started; a Stopped site runs none.
"""

from __future__ import annotations

from typing import Any

from sandbox.portal import Portal
from sandbox.wire import graph_time

INSTANCE_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
WORKER_PID = 4242
# The addresses ARM reports for the site's outbound calls (documentation ranges).
OUTBOUND = ("20.42.0.10", "20.42.0.11")
POSSIBLE_OUTBOUND = ("20.42.0.10", "20.42.0.11", "20.42.0.12")


def instances_json(portal: Portal, site_id: str) -> dict[str, Any]:
    return {
        "value": [
            {
                "id": f"{site_id}/instances/{INSTANCE_ID}",
                "name": INSTANCE_ID,
                "type": "Microsoft.Web/sites/instances",
                "properties": {"state": "READY" if portal.site.state == "Running" else "STOPPED"},
            }
        ],
        "nextLink": None,
    }


def processes_json(portal: Portal, site_id: str, instance_id: str) -> dict[str, Any] | None:
    """None: no such instance."""
    if instance_id.lower() != INSTANCE_ID:
        return None
    site = portal.site
    if site.state != "Running":
        return {"value": [], "nextLink": None}
    started = site.started_at
    base = f"{site_id}/instances/{INSTANCE_ID}/processes"
    return {
        "value": [
            {
                "id": f"{base}/{WORKER_PID}",
                "name": str(WORKER_PID),
                "type": "Microsoft.Web/sites/instances/processes",
                "properties": {
                    "identifier": WORKER_PID,
                    "name": "w3wp",
                    "start_time": graph_time(started) if started else None,
                    "is_scm_site": False,
                    "is_webjob": False,
                },
            }
        ],
        "nextLink": None,
    }
