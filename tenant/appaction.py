"""The app's own Graph-backed action (the runbook's "Sync from Intune"), called the way
a user's browser would: a plain GET of a per-target URL, no operator token.

A 2xx is ok; anything else (including no reply at all) is a failed outcome, never an
exception. ``detail`` carries only a short code from the app's JSON error body
(``code``, or ``graph_error``) or the transport error's type: never the body itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from tenant.models import AppActionOutcome

_DETAIL_MAX = 120


class HttpAppAction:
    """:class:`~tenant.ports.AppAction` over the session's shared httpx client."""

    def __init__(
        self, http: httpx.AsyncClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._http = http
        self._clock = clock

    async def run(self, url: str) -> AppActionOutcome:
        started = self._clock()
        try:
            response = await self._http.get(url, follow_redirects=False)
        except httpx.HTTPError as e:
            return AppActionOutcome(
                url=url,
                ok=False,
                status=0,
                duration_seconds=self._clock() - started,
                detail=type(e).__name__,
            )
        duration = self._clock() - started
        ok = 200 <= response.status_code < 300
        return AppActionOutcome(
            url=url,
            ok=ok,
            status=response.status_code,
            duration_seconds=duration,
            detail=None if ok else _detail(response),
        )


def _detail(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or None
    if isinstance(body, dict):
        for key in ("code", "graph_error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:_DETAIL_MAX]
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])[:_DETAIL_MAX]
    return response.reason_phrase or None
