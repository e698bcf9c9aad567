"""The webhook's bearer token on a real server: exactly the token, nothing shorter or
longer, and a non-UTF-8 header is a 401 with one short log line, not a 500. The token
is read through a callable, so a reload can replace it (the old one is then refused).
No remediation is reached: every request here is refused, or carries only resolved
alerts."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client import CollectorRegistry
from test_web_auth import raw_get

from daemon.logging import configure_logging
from daemon.web import WebServer
from daemon.webhook import PATH, webhook_routes

TOKEN = "wh-9f2c1e7a-token"
RESOLVED = {"version": "4", "alerts": [{"status": "resolved", "labels": {"target": "p"}}]}


class NoRemediation:
    def trigger(self, *args: Any) -> Any:
        raise AssertionError("an unauthorised request reached the remediator")


@pytest.fixture
def log_text() -> Iterator[Callable[[], str]]:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    yield out.getvalue
    structlog.reset_defaults()
    logging.getLogger().handlers = []


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[str | None]]]:
    current: list[str | None] = [TOKEN]
    server = WebServer(CollectorRegistry(), ready=lambda: True)
    server.add_routes(webhook_routes(NoRemediation(), lambda: current[0]))  # type: ignore[arg-type]
    port = await server.start("127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}", current
    await server.stop()


async def post(base: str, authorization: str | None) -> int:
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with httpx.AsyncClient() as http:
        return (await http.post(f"{base}{PATH}", json=RESOLVED, headers=headers)).status_code


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        f"Bearer {TOKEN[:-1]}",  # a prefix
        f"Bearer {TOKEN[:1]}",
        f"Bearer {TOKEN}x",  # the token and more
        f"Bearer {TOKEN} {TOKEN}",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN.upper()}",
        TOKEN,
    ],
)
async def test_only_the_exact_token_is_accepted(
    hook: tuple[str, list[str | None]], authorization: str | None
) -> None:
    base, _ = hook
    assert await post(base, f"Bearer {TOKEN}") == 200  # resolved only: nothing to do
    assert await post(base, f"bearer {TOKEN}") == 200  # the scheme is case-insensitive
    assert await post(base, authorization) == 401


async def test_a_replaced_token_refuses_the_old_one(hook: tuple[str, list[str | None]]) -> None:
    base, current = hook
    current[0] = "wh-new-token-0001"
    assert await post(base, f"Bearer {TOKEN}") == 401
    assert await post(base, "Bearer wh-new-token-0001") == 200
    current[0] = None
    assert await post(base, "Bearer wh-new-token-0001") == 404  # disabled


@pytest.mark.parametrize("header", [b"Bearer \xff\xfe\x80", b"Bearer " + b"\xc3\xa9" * 8])
async def test_a_non_utf8_bearer_header_is_a_401_and_one_short_line(
    hook: tuple[str, list[str | None]], header: bytes, log_text: Callable[[], str]
) -> None:
    base, _ = hook
    answer = await raw_get(base, PATH, header, method=b"POST")
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
    lines = log_text().splitlines()
    assert len(lines) == 1, lines
    assert "not ASCII" in lines[0]
    assert "Traceback" not in lines[0]
    assert len(lines[0]) < 300
