"""Microsoft Graph beta ``GET /beta/auditLogs/signIns``: service principal sign-ins.

Served to the operator while it holds AuditLog.Read.All (fault
``operator_can_read_signins``); a sign-in is listed ``signin_log_delay_seconds`` (plus up
to ``signin_log_jitter_seconds``) after it happened, so out of order, and with
``signin_log_duplicates`` some twice. As the beta API does, it lists only interactive
user sign-ins unless ``$filter`` asks for ``signInEventTypes/any(t: t eq
'servicePrincipal')``; the app's user sign-ins (``app_user_flow_signins``) are the
interactive ones. Reads are throttled per caller (``signin_reads_per_10s``: 429 with
Retry-After), and every ``signin_nonpremium_403_every``-th read answers 403
``Authentication_RequestFromNonPremiumTenantOrB2CTenant``. Newest first; ``$top`` and
``@odata.nextLink`` page it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sandbox.graph import Graph
from sandbox.portal import APP_DISPLAY_NAME, Portal
from sandbox.signins import SignIn
from sandbox.wire import bearer, graph_error, json_response, parse_time

SIGNINS_PATH = "/beta/auditLogs/signIns"
_CONTEXT = "https://graph.microsoft.com/beta/$metadata#auditLogs/signIns"

_EVENT_TYPE = re.compile(
    r"^signInEventTypes/any\(\s*(\w+)\s*:\s*\1\s+eq\s+'(\w+)'\s*\)$", re.IGNORECASE
)
_COMPARE = re.compile(r"^(\w+(?:/\w+)?)\s+(eq|ne|ge|gt|le|lt)\s+(.+)$", re.IGNORECASE)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "le": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
}


class BadFilter(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Query:
    event_types: frozenset[str]
    clauses: tuple[Callable[[SignIn], bool], ...]

    def matches(self, s: SignIn) -> bool:
        return s.kind.lower() in self.event_types and all(c(s) for c in self.clauses)


def parse_filter(text: str | None) -> Query:
    """The ``$filter`` subset Graph documents for sign-ins that the daemon needs:
    ``appId``, ``servicePrincipalCredentialKeyId``, ``createdDateTime``,
    ``status/errorCode`` and ``signInEventTypes/any(...)``, joined by ``and``."""
    event_types = {"interactiveuser"}  # the beta API's default
    clauses: list[Callable[[SignIn], bool]] = []
    if text:
        explicit: set[str] = set()
        for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
            part = part.strip()
            while part.startswith("(") and part.endswith(")") and not _EVENT_TYPE.match(part):
                part = part[1:-1].strip()
            m = _EVENT_TYPE.match(part)
            if m is not None:
                explicit.add(m.group(2).lower())
                continue
            clauses.append(_clause(part))
        if explicit:
            event_types = explicit
    return Query(frozenset(event_types), tuple(clauses))


def _clause(part: str) -> Callable[[SignIn], bool]:
    m = _COMPARE.match(part)
    if m is None:
        raise BadFilter(f"Invalid filter clause: {part}")
    field, op, raw = m.group(1).lower(), _OPS[m.group(2).lower()], m.group(3).strip()
    if field in ("appid", "serviceprincipalcredentialkeyid"):
        if not (raw.startswith("'") and raw.endswith("'")):
            raise BadFilter(f"Invalid filter clause: {field} takes a quoted string")
        want = raw[1:-1].lower()
        if field == "appid":
            return lambda s: op(s.app_id.lower(), want)
        return lambda s: op((s.key_id or "").lower(), want)
    if field == "createddatetime":
        try:
            when = parse_time(raw)
        except ValueError as exc:
            raise BadFilter(f"Invalid filter clause: {exc}") from None
        return lambda s: op(s.at, when)
    if field == "status/errorcode":
        try:
            code = int(raw)
        except ValueError:
            raise BadFilter("Invalid filter clause: status/errorCode takes a number") from None
        return lambda s: op(s.error_code, code)
    raise BadFilter(f"Invalid filter clause: unsupported property '{m.group(1)}'")


class AuditLogs:
    def __init__(self, portal: Portal, graph: Graph, base_url: str) -> None:
        self.portal = portal
        self.graph = graph
        self.base_url = base_url

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/beta/{tail:.*}", self.dispatch)]

    def visible(self, now: datetime) -> list[SignIn]:
        return [s for s in self.portal.signins if s.visible_at <= now]

    def throttled(self, caller: str, now: datetime) -> web.Response | None:
        """429 with Retry-After once ``caller`` read ``signin_reads_per_10s`` times in
        the last 10 s (Graph's limit for sign-ins: 5 requests per 10 s per app)."""
        limit = self.portal.faults.signin_reads_per_10s
        window = timedelta(seconds=10)
        recent = [t for t in self.portal.signin_reads.get(caller, []) if t > now - window]
        if limit is not None and len(recent) >= limit:
            self.portal.signin_reads[caller] = recent
            wait = max(1, math.ceil((recent[0] + window - now).total_seconds()))
            return graph_error(
                429,
                "TooManyRequests",
                "Too many requests. Please try again later.",
                now,
                headers={"Retry-After": str(wait)},
            )
        self.portal.signin_reads[caller] = [*recent, now]
        return None

    def nonpremium(self, now: datetime) -> web.Response | None:
        every = self.portal.faults.signin_nonpremium_403_every
        self.portal.signin_read_count += 1
        if every is None or self.portal.signin_read_count % every:
            return None
        return graph_error(
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
            now,
        )

    async def dispatch(self, request: web.Request) -> web.Response:
        tok = self.graph.check_token(bearer(request))
        if isinstance(tok, web.Response):
            return tok
        now = self.portal.now()
        if request.path.rstrip("/").lower() != SIGNINS_PATH.lower():
            return graph_error(
                400,
                "BadRequest",
                f"Resource not found for the segment '{request.path.rsplit('/', 1)[-1]}'.",
                now,
            )
        faults = self.portal.faults
        if tok.client_id != self.portal.ids.operator_client_id or not (
            faults.operator_can_read_signins
        ):
            return graph_error(
                403,
                "Authorization_RequestDenied",
                "Calling principal does not have required MSGraph permissions AuditLog.Read.All",
                now,
            )
        refused = self.throttled(tok.client_id, now) or self.nonpremium(now)
        if refused is not None:
            return refused
        try:
            query = parse_filter(request.query.get("$filter"))
            top = int(request.query.get("$top", "1000"))
            skip = int(request.query.get("$skiptoken", "0"))
        except BadFilter as exc:
            return graph_error(400, "BadRequest", str(exc), now)
        except ValueError:
            return graph_error(400, "BadRequest", "Invalid $top or $skiptoken value.", now)
        top = max(1, min(top, 1000))
        found = sorted(
            (s for s in self.visible(now) if query.matches(s)),
            key=lambda s: (s.at, s.visible_at),
            reverse=True,
        )
        page = found[skip : skip + top]
        body: dict[str, Any] = {"@odata.context": _CONTEXT}
        if skip + top < len(found):
            params = {k: v for k, v in request.query.items() if k != "$skiptoken"}
            params["$skiptoken"] = str(skip + top)
            body["@odata.nextLink"] = f"{self.base_url}{SIGNINS_PATH}?{urlencode(params)}"
        body["value"] = [s.to_graph(APP_DISPLAY_NAME) for s in page]
        return json_response(body)
