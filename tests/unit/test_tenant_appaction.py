"""How the app's own action is judged from its HTTP reply (tenant.appaction). The
integration tests call the sandbox's real action; this table covers the replies the
sandbox does not give (redirects, the 2xx boundary, error body shapes), through httpx's
own MockTransport."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tenant.appaction import HttpAppAction
from tenant.models import AppActionOutcome

URL = "https://app.example/api/action"
TOKEN_CODE = "InvalidAuthenticationToken"


def ticking() -> Callable[[], float]:
    times: Iterator[float] = iter([10.0, 10.5])
    return lambda: next(times)


async def run(handler: Callable[[httpx.Request], httpx.Response]) -> AppActionOutcome:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return await HttpAppAction(http, clock=ticking()).run(URL)


@pytest.mark.parametrize(
    ("status", "body", "ok", "detail"),
    [
        (200, {"synced": 3}, True, None),
        (204, None, True, None),
        (300, None, False, "Multiple Choices"),
        (502, {"code": "AADSTS7000215", "graph_error": "invalid_client"}, False, "AADSTS7000215"),
        (502, {"graph_error": "invalid_client"}, False, "invalid_client"),
        (
            401,
            {"error": {"code": "InvalidAuthenticationToken"}},
            False,
            "InvalidAuthenticationToken",
        ),
        (500, {"error": "a sentence, not a code"}, False, "Internal Server Error"),
        (500, {"code": ""}, False, "Internal Server Error"),
        (503, "<html>starting</html>", False, "Service Unavailable"),
        (502, {"code": "X" * 500}, False, "X" * 120),
    ],
)
async def test_the_reply_decides(status: int, body: object, ok: bool, detail: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body) if body is not None else httpx.Response(status)

    outcome = await run(handler)
    assert outcome.url == URL
    assert outcome.ok is ok
    assert outcome.status == status
    assert outcome.detail == detail
    assert outcome.duration_seconds == 0.5


async def test_a_redirect_is_not_followed_and_not_ok() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login":
            return httpx.Response(200)
        return httpx.Response(302, headers={"Location": "https://app.example/login"})

    outcome = await run(handler)
    assert (outcome.ok, outcome.status) == (False, 302)


async def test_no_reply_is_status_zero_with_the_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    outcome = await run(handler)
    assert (outcome.ok, outcome.status, outcome.detail) == (False, 0, "ConnectError")
    assert outcome.duration_seconds == 0.5
    assert outcome.url == URL
