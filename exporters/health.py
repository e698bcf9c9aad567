"""Health: ``GET <app>/health`` with blackbox_exporter semantics (a failure is a value)."""

from __future__ import annotations

import time

import httpx

from exporters.observations import HealthObservation


async def probe_health(
    http: httpx.AsyncClient,
    url: str,
    timeout: float,  # noqa: ASYNC109 -- a contract shared with remediation's verify step
) -> HealthObservation:
    """Success means a 2xx answer within ``timeout`` seconds. Never raises for the app."""
    started = time.perf_counter()
    try:
        response = await http.get(url, timeout=timeout)
    except httpx.TimeoutException:
        return HealthObservation(
            ok=False,
            status_code=None,
            duration_seconds=time.perf_counter() - started,
            error=f"GET {url}: no answer within {timeout:g}s",
        )
    except httpx.HTTPError as exc:
        return HealthObservation(
            ok=False,
            status_code=None,
            duration_seconds=time.perf_counter() - started,
            error=f"GET {url}: {type(exc).__name__}",
        )
    duration = time.perf_counter() - started
    ok = 200 <= response.status_code < 300
    return HealthObservation(
        ok=ok,
        status_code=response.status_code,
        duration_seconds=duration,
        error=None if ok else f"GET {url}: HTTP {response.status_code}",
    )
