"""The Alertmanager webhook: ``POST /api/v1/alerts`` starts a remediation.

Alertmanager's webhook payload (version 4) carries alerts; a firing alert with the
labels ``target`` (a configured target) and ``remediation`` (``rotate`` or ``heal``)
triggers that remediation. The bearer token comes from ``remediation.webhook_token_file``
and is compared in constant time; without one the endpoint answers 404 (disabled).

Answers (a JSON body lists what happened to each alert):
- 202 when at least one remediation started, or joined a run in progress or one that
  has just ended settled (coalesced: the body says so, and names the run);
- 200 "nothing to do" when every alert is resolved;
- 400 malformed body, 401 missing or wrong token, 404 disabled,
- 409 when every matching remediation is blocked by a guard (cap, backoff, circuit) or
  busy (another process, e.g. ``secretwarden rotate``, is remediating the target),
- 422 when no alert names a known target with a valid ``remediation`` label.
Alertmanager does not retry 4xx, so none of these repeat until the next notification.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from daemon.logging import get_logger
from remediation.policy import ACTIONS
from remediation.service import Remediator, TriggerResult

PATH = "/api/v1/alerts"
log = get_logger("secretwarden.webhook")


def _reply(status: int, message: str, results: list[dict[str, Any]] | None = None) -> web.Response:
    body: dict[str, Any] = {"status": message}
    if results is not None:
        body["results"] = results
    return web.json_response(body, status=status)


def _authorized(header: str | None, token: str, client: str | None) -> bool:
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    try:
        # aiohttp hands non-UTF-8 bytes over as surrogate escapes: not a token of ours
        presented = given.strip().encode("ascii")
    except UnicodeEncodeError:
        log.warning("webhook: Authorization header is not ASCII; refused", client=client)
        return False
    return hmac.compare_digest(presented, token.encode())


def _alerts(payload: Any) -> list[dict[str, Any]]:
    """The alerts of a version-4 payload; ValueError says what is malformed."""
    if not isinstance(payload, dict):
        raise ValueError("the body must be a JSON object")
    if payload.get("version") != "4":
        raise ValueError(f'unsupported payload version {payload.get("version")!r} (want "4")')
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise ValueError("'alerts' must be a list")
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise ValueError(f"alerts[{i}] must be an object")
        if alert.get("status") not in ("firing", "resolved"):
            raise ValueError(f"alerts[{i}].status must be 'firing' or 'resolved'")
        if not isinstance(alert.get("labels"), dict):
            raise ValueError(f"alerts[{i}].labels must be an object")
    return alerts


def webhook_routes(
    remediator: Remediator, token: str | Callable[[], str | None] | None
) -> list[web.RouteDef]:
    """``token``: the bearer token, or what returns the current one (a reload replaces it)."""
    current = token if callable(token) else lambda: token

    async def handle(request: web.Request) -> web.Response:
        token = current()
        if token is None:
            return _reply(404, "webhook disabled: set remediation.webhook_token_file")
        if not _authorized(request.headers.get("Authorization"), token, request.remote):
            return web.json_response(
                {"status": "unauthorized: a valid bearer token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="secretwarden"'},
            )
        try:
            alerts = _alerts(json.loads(await request.read()))
        except RecursionError:  # nesting deeper than the parser's stack: not a 500
            return _reply(400, "malformed body: nested too deeply")
        except (ValueError, UnicodeDecodeError) as exc:
            return _reply(400, f"malformed body: {exc}")
        results: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], TriggerResult] = {}
        for alert in alerts:
            labels = alert["labels"]
            name = str(labels.get("alertname", "?"))
            target = labels.get("target")
            action = labels.get("remediation")
            entry: dict[str, Any] = {"alertname": name, "target": target, "remediation": action}
            if alert["status"] == "resolved":
                entry.update(status="resolved", detail="nothing to do")
            elif not isinstance(target, str) or action not in ACTIONS:
                entry.update(
                    status="ignored",
                    detail="a firing alert needs labels target and remediation (rotate|heal)",
                )
            else:
                act = next(a for a in ACTIONS if a == action)  # typed as an Action
                key = (target, act)
                if key not in seen:
                    seen[key] = remediator.trigger(target, act, f"alertmanager: {name}")
                result = seen[key]
                entry.update(status=result.status, detail=result.detail)
            results.append(entry)
        statuses = {r["status"] for r in results}
        log.info(
            "alertmanager webhook",
            alerts=len(alerts),
            results=sorted(f"{r['target']}/{r['remediation']}:{r['status']}" for r in results),
        )
        if "started" in statuses:
            return _reply(202, "accepted", results)
        if "coalesced" in statuses:
            return _reply(202, "accepted: coalesced into a run in progress or just ended", results)
        if not alerts or statuses <= {"resolved"}:
            return _reply(200, "nothing to do", results)
        if "disabled" in statuses:
            return _reply(
                409, "remediation is off: read-only ([remediation] enabled = false)", results
            )
        if statuses & {"blocked", "busy"}:
            return _reply(409, "blocked by a guard or busy in another process", results)
        return _reply(422, "no alert names a known target and remediation", results)

    return [web.post(PATH, handle)]
