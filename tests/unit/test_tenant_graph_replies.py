"""tenant/graph.py reads Graph's JSON itself: the requests it builds and the replies the
sandbox never sends (a reply without secretText, one that is not JSON, an unreadable
credential), through httpx's MockTransport. tests/integration/test_tenant_clients.py
and test_tenant_retries.py run the same class against the sandbox."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken

from tenant import errors
from tenant.endpoints import PUBLIC
from tenant.graph import GraphAppRegistrations
from tenant.models import RemoveOutcome

APP = "0b5c1c55-0000-4000-8000-00000000a0a0"
CLIENT = "6a7e2f11-0000-4000-8000-00000000c0c0"
SECRET = "Xy9~not-a-real-secret-0123456789abcdefghij"
REMOVED = RemoveOutcome.REMOVED


class Token:
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        assert scopes == (PUBLIC.graph_scope,)
        return AccessToken("operator-token", 2_000_000_000)

    async def close(self) -> None:
        pass


def app_registrations(
    reply: Callable[[httpx.Request], httpx.Response], *, by_app_id: bool = False
) -> tuple[GraphAppRegistrations, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return reply(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    app = GraphAppRegistrations(
        http,
        Token(),  # type: ignore[arg-type]
        PUBLIC,
        object_id=None if by_app_id else APP,
        client_id=CLIENT if by_app_id else None,
    )
    return app, seen


def application(passwords: list[Any]) -> httpx.Response:
    return httpx.Response(
        200,
        json={"id": APP, "appId": CLIENT, "displayName": "api", "passwordCredentials": passwords},
    )


async def test_the_app_is_read_by_appid_with_select_and_the_operator_token() -> None:
    app, seen = app_registrations(
        lambda _: application(
            [
                {
                    "keyId": "5E3C6F1A-0000-4000-8000-000000000001",
                    "displayName": "old",
                    "hint": "Xy9",
                    "startDateTime": "2026-01-15T09:30:00Z",
                    "endDateTime": "2027-01-15T09:30:00.1234567Z",
                }
            ]
        ),
        by_app_id=True,
    )
    got = await app.get_app()
    url = seen[0].url
    assert url.path == f"/v1.0/applications(appId='{CLIENT}')"
    assert url.query.decode() == "$select=id,appId,displayName,passwordCredentials"
    assert seen[0].headers["Authorization"] == "Bearer operator-token"
    assert (got.object_id, got.client_id) == (APP, CLIENT)
    (cred,) = got.credentials
    assert cred.key_id == "5e3c6f1a-0000-4000-8000-000000000001"  # canonical, as before
    assert cred.end == datetime(2027, 1, 15, 9, 30, 0, 123456, tzinfo=UTC)
    assert cred.start is not None
    assert cred.start.tzinfo is not None
    # the object id is known now; the keyId goes out in its canonical form
    assert await app.remove_password("5E3C6F1A-0000-4000-8000-000000000001") is REMOVED
    assert seen[-1].url.path == f"/v1.0/applications/{APP}/removePassword"
    assert json.loads(seen[-1].content) == {"keyId": "5e3c6f1a-0000-4000-8000-000000000001"}


async def test_add_password_sends_the_end_in_utc_and_wraps_the_value_at_once() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "keyId": "5e3c6f1a-0000-4000-8000-000000000002",
                "displayName": "new",
                "hint": SECRET[:3],
                "secretText": SECRET,
                "endDateTime": "2026-07-01T10:00:00Z",
            },
        )

    app, seen = app_registrations(reply)
    end = datetime(2026, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    new = await app.add_password("new", end)
    assert json.loads(seen[0].content) == {
        "passwordCredential": {"displayName": "new", "endDateTime": "2026-07-01T10:00:00Z"}
    }
    assert new.value.reveal() == SECRET
    assert SECRET not in repr(new)
    assert new.credential.end == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "body",
    [
        {"keyId": "5e3c6f1a-0000-4000-8000-000000000002", "secretText": None},
        {"secretText": SECRET},  # a value without the keyId that names it
        [],
    ],
)
async def test_an_add_password_reply_without_secret_text_or_key_id_is_permanent(
    body: Any,
) -> None:
    app, _ = app_registrations(lambda _: httpx.Response(200, json=body))
    with pytest.raises(errors.TenantError) as caught:
        await app.add_password("new", None)
    assert caught.value.permanent
    assert "no secretText or keyId" in str(caught.value)
    assert SECRET not in str(caught.value)


async def test_an_add_password_reply_that_is_not_json_may_have_applied() -> None:
    app, _ = app_registrations(lambda _: httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(errors.Unavailable) as caught:
        await app.add_password("new", None)
    assert caught.value.maybe_applied


async def test_a_credential_that_cannot_be_read_refuses_the_whole_reply() -> None:
    app, _ = app_registrations(lambda _: application([{"keyId": "k"}, "garbage"]))
    with pytest.raises(errors.TenantError, match="passwordCredentials could not be read"):
        await app.get_app()


async def test_a_graph_error_reply_is_classified_with_its_retry_after() -> None:
    app, _ = app_registrations(
        lambda _: httpx.Response(
            429,
            json={"error": {"code": "TooManyRequests", "message": "slow down"}},
            headers={"Retry-After": "4"},
        )
    )
    with pytest.raises(errors.Throttled) as caught:
        await app.add_password("new", None)
    assert (caught.value.retry_after, caught.value.code) == (4.0, "TooManyRequests")
    assert caught.value.maybe_applied  # a write: the caller reads before acting
