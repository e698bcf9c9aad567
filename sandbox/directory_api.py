"""Graph's tenant-wide lists over the directory (sandbox/directory.py).

- ``GET /v1.0/applications`` and ``/v1.0/servicePrincipals``: ``$select``, ``$top``
  (default 100, 1-999, else 400), ``@odata.nextLink`` with an opaque ``$skiptoken``.
- ``GET /v1.0/applications/delta`` (and ``/delta()``, ``/microsoft.graph.delta()``; the
  same for servicePrincipals): pages sized by ``Prefer: odata.maxpagesize`` (default
  100; ``$top`` is ignored), ``@odata.nextLink`` then ``@odata.deltaLink`` on the last
  page; a deltaLink answers what changed since, removed objects as ``@removed``.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web

from sandbox.directory import (
    PROPERTIES,
    Collection,
    Directory,
    Kind,
)
from sandbox.graph import Graph
from sandbox.portal import Portal
from sandbox.wire import JSON_UTF8, bearer, graph_error

MAX_PAGE = 999
DEFAULT_PAGE = 100
DELTA_TOKEN_LIFETIME = timedelta(days=7)  # directory objects' delta tokens (Graph docs)
_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#"
_COLLECTION = r"{coll:(?i:applications|serviceprincipals)}"
_DELTA = r"{fn:(?i:(?:microsoft\.graph\.)?delta(?:\(\))?)/?}"
_PREFER_PAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
_LINK_SAFE = "$,()'=:@"


class DirectoryError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def kind_of(name: str) -> Kind:
    return "applications" if name.lower().rstrip("/") == "applications" else "servicePrincipals"


def encode_token(state: list[Any]) -> str:
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, what: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        state = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise DirectoryError(400, "Request_BadRequest", f"Invalid {what}.") from exc
    if not isinstance(state, list) or not state:
        raise DirectoryError(400, "Request_BadRequest", f"Invalid {what}.")
    return state


def parse_select(kind: Kind, raw: str | None) -> tuple[str, ...]:
    """Canonical property names of ``$select`` (case-insensitive, as Graph's)."""
    if not raw:
        return ()
    canonical = {p.lower(): p for p in PROPERTIES[kind]}
    fields: list[str] = []
    for name in (f.strip() for f in raw.split(",")):
        if not name:
            continue
        if name.lower() not in canonical:
            type_name = "application" if kind == "applications" else "servicePrincipal"
            raise DirectoryError(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'.",
            )
        if canonical[name.lower()] not in fields:
            fields.append(canonical[name.lower()])
    return tuple(fields)


_UNMODELLED = ("$filter", "$orderby", "$search", "$expand", "$count", "$skip")


def _query(request: web.Request) -> dict[str, str]:
    """OData system query options, names lower-cased (Graph accepts any case).

    Options the sandbox does not model are refused rather than ignored, so that no
    client believes it filtered or sorted when it did not."""
    q = {k.lower(): v for k, v in request.query.items()}
    for name in _UNMODELLED:
        if name in q:
            raise DirectoryError(
                400,
                "Request_UnsupportedQuery",
                f"The query option '{name}' is not modelled by the sandbox (docs/sandbox.md).",
            )
    return q


def _page(body_head: dict[str, Any], items: list[bytes]) -> web.Response:
    head = json.dumps(body_head, separators=(",", ":"))[:-1]  # drop the closing brace
    sep = "," if body_head else ""
    body = b"".join((head.encode(), sep.encode(), b'"value":[', b",".join(items), b"]}"))
    return web.Response(body=body, headers={"Content-Type": JSON_UTF8})


class DirectoryGraph:
    """The Graph routes; register before :class:`sandbox.graph.Graph`'s catch-all."""

    def __init__(self, directory: Directory, graph: Graph, portal: Portal, base_url: str) -> None:
        self.directory = directory
        self.graph = graph
        self.portal = portal
        self.base_url = base_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"/v1.0/{_COLLECTION}/{_DELTA}", self.delta),
            web.get(f"/v1.0/{_COLLECTION}", self.list_objects),
            web.get(f"/v1.0/{_COLLECTION}/", self.list_objects),
        ]

    async def _guard(self, request: web.Request) -> web.Response | None:
        tok = self.graph.check_token(bearer(request))
        if isinstance(tok, web.Response):
            return tok
        if tok.client_id != self.portal.ids.operator_client_id:
            return graph_error(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
                self.portal.now(),
            )
        delay = self.portal.faults.graph_page_latency_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        return None

    def _error(self, exc: DirectoryError) -> web.Response:
        return graph_error(exc.status, exc.code, exc.message, self.portal.now())

    def _cap(self, size: int) -> int:
        cap = self.portal.faults.graph_page_size_cap
        return min(size, cap) if cap is not None else size

    def _context(self, kind: Kind, fields: tuple[str, ...]) -> str:
        return f"{_CONTEXT}{kind}({','.join(fields)})" if fields else f"{_CONTEXT}{kind}"

    # -- list ---------------------------------------------------------------------

    async def list_objects(self, request: web.Request) -> web.Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        kind = kind_of(request.match_info["coll"])
        try:
            q = _query(request)
            fields = parse_select(kind, q.get("$select"))
            top = self._top(q.get("$top"))
            after = -1
            if "$skiptoken" in q:
                state = decode_token(q["$skiptoken"], "$skiptoken")
                if state[0] != "l" or state[1] != kind or not isinstance(state[2], int):
                    raise DirectoryError(400, "Request_BadRequest", "Invalid $skiptoken.")
                after = state[2]
        except DirectoryError as exc:
            return self._error(exc)
        self.directory.sync()
        coll = self.directory.collections[kind]
        ordered = coll.ordered()
        start = coll.after(after)
        page = ordered[start : start + self._cap(top)]
        head: dict[str, Any] = {"@odata.context": self._context(kind, fields)}
        if start + len(page) < len(ordered):
            params = [(k, v) for k, v in request.query.items() if k.lower() != "$skiptoken"]
            params.append(("$skiptoken", encode_token(["l", kind, page[-1].order])))
            query = "&".join(f"{k}={quote(v, safe=_LINK_SAFE)}" for k, v in params)
            head["@odata.nextLink"] = f"{self.base_url}{request.path}?{query}"
        return _page(head, [obj.render(fields) for obj in page])

    @staticmethod
    def _top(raw: str | None) -> int:
        if raw is None:
            return DEFAULT_PAGE
        try:
            top = int(raw)
        except ValueError:
            top = -1
        if not 1 <= top <= MAX_PAGE:
            raise DirectoryError(
                400,
                "Request_UnsupportedQuery",
                f"Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive.",
            )
        return top

    # -- delta --------------------------------------------------------------------

    async def delta(self, request: web.Request) -> web.Response:
        denied = await self._guard(request)
        if denied is not None:
            return denied
        kind = kind_of(request.match_info["coll"])
        size, applied = self._max_page_size(request)
        directory = self.directory
        directory.sync()
        now_ts = int(self.portal.now().timestamp())
        visible = directory.visible_seq(self.portal.faults.graph_delta_lag_seconds)
        try:
            q = _query(request)
            selected = parse_select(kind, q.get("$select"))
            if q.get("$deltatoken", "").lower() == "latest":
                return self._delta_page(kind, selected, [], None, visible, applied)
            if "$deltatoken" in q:
                # ["d", generation, kind, fields, since, issued]
                state = self._state(q["$deltatoken"], "$deltatoken", "d", kind, 6)
                if now_ts - int(state[5]) > DELTA_TOKEN_LIFETIME.total_seconds():
                    raise self._expired("older than 7 days")
                fields = selected or tuple(state[3])
                since, upto = int(state[4]), max(visible, int(state[4]))
                cursor = bisect.bisect_right(
                    directory.collections[kind].log, since, key=lambda e: e[0]
                )
                mode = "i"
            elif "$skiptoken" in q:
                # ["s", generation, kind, fields, since, upto, mode, cursor]
                state = self._state(q["$skiptoken"], "$skiptoken", "s", kind, 8)
                fields = selected or tuple(state[3])
                since, upto, mode, cursor = int(state[4]), int(state[5]), state[6], int(state[7])
            else:
                fields, since, upto, mode, cursor = selected, 0, visible, "f", -1
        except (DirectoryError, ValueError, TypeError) as exc:
            err = exc if isinstance(exc, DirectoryError) else None
            return self._error(err or DirectoryError(400, "Request_BadRequest", "Invalid token."))
        coll = directory.collections[kind]
        wanted = fields if not fields or "id" in fields else ("id", *fields)
        duplicates = self.portal.faults.graph_delta_duplicates
        partial = self.portal.faults.graph_delta_partial
        items, cursor, done = (
            _full_round(coll, upto, cursor, size, wanted)
            if mode == "f"
            else _change_round(
                coll, upto, cursor, size, wanted, duplicates=duplicates, partial=partial
            )
        )
        skip = (
            None if done else [directory.generation, kind, list(fields), since, upto, mode, cursor]
        )
        return self._delta_page(kind, fields, items, skip, upto, applied)

    def _state(self, token: str, what: str, tag: str, kind: Kind, length: int) -> list[Any]:
        state = decode_token(token, what)
        if state[0] != tag or len(state) != length or state[2] != kind:
            raise DirectoryError(400, "Request_BadRequest", f"Invalid {what}.")
        if state[1] != self.directory.generation:
            raise self._expired("the directory was reset")
        return state

    def _expired(self, why: str) -> DirectoryError:
        """An expired or unknown delta token: 410 Gone ``resyncRequired``, or (fault
        ``graph_delta_expired_status`` 400, the default) 400 ``syncStateNotFound``."""
        if self.portal.faults.graph_delta_expired_status == 400:
            return DirectoryError(
                400,
                "syncStateNotFound",
                f"The sync state for this delta token was not found ({why}); "
                "start a full synchronization again.",
            )
        return DirectoryError(
            410,
            "resyncRequired",
            f"The delta token is no longer valid ({why}); start a full synchronization again.",
        )

    def _max_page_size(self, request: web.Request) -> tuple[int, int | None]:
        """The page size ``Prefer: odata.maxpagesize`` asks for (capped at 999)."""
        m = _PREFER_PAGE.search(request.headers.get("Prefer", ""))
        if m is None:
            return self._cap(DEFAULT_PAGE), None
        asked = max(1, min(int(m.group(1)), MAX_PAGE))
        return self._cap(asked), asked

    def _delta_page(
        self,
        kind: Kind,
        fields: tuple[str, ...],
        items: list[bytes],
        skip: list[Any] | None,
        upto: int,
        applied: int | None,
    ) -> web.Response:
        path = f"{self.base_url}/v1.0/{kind}/delta"
        head: dict[str, Any] = {"@odata.context": self._context(kind, fields)}
        if skip is not None:
            head["@odata.nextLink"] = f"{path}?$skiptoken={encode_token(['s', *skip])}"
        else:
            issued = int(self.portal.now().timestamp())
            token = encode_token(["d", self.directory.generation, kind, list(fields), upto, issued])
            head["@odata.deltaLink"] = f"{path}?$deltatoken={token}"
        resp = _page(head, items)
        if applied is not None:
            resp.headers["Preference-Applied"] = f"odata.maxpagesize={applied}"
        return resp


def _full_round(
    coll: Collection, upto: int, cursor: int, size: int, fields: tuple[str, ...]
) -> tuple[list[bytes], int, bool]:
    """The first round: every object whose last change is in the snapshot (``<= upto``),
    in listing order after ``cursor``; later changes come in the next round."""
    ordered = coll.ordered()
    i = coll.after(cursor)
    items: list[bytes] = []
    while i < len(ordered) and len(items) < size:
        obj = ordered[i]
        if obj.seq <= upto:
            items.append(obj.render(fields))
        cursor = obj.order
        i += 1
    return items, cursor, i >= len(ordered)


def _change_round(
    coll: Collection,
    upto: int,
    cursor: int,
    size: int,
    fields: tuple[str, ...],
    *,
    duplicates: bool,
    partial: bool = False,
) -> tuple[list[bytes], int, bool]:
    """A tracked round: the objects changed in the log from ``cursor`` up to ``upto``,
    each in full if it exists, else as ``@removed``. With ``duplicates`` (Graph's
    documented behaviour) an object comes once per change, each time as it is now;
    without, once, at its last change (a later one defers it to the next round). With
    ``partial`` (and ``duplicates``), an update whose changed properties are known carries
    only ``id`` and those (Graph: "at least the properties that have been updated")."""
    log = coll.log
    items: list[bytes] = []
    while cursor < len(log) and log[cursor][0] <= upto and len(items) < size:
        seq, object_id = log[cursor]
        cursor += 1
        if not duplicates and coll.last_change(object_id) != seq:
            continue  # a later entry speaks for it
        obj = coll.objects.get(object_id)
        changed = coll.changed.get(seq) if partial and duplicates else None
        if obj is not None and changed is not None:
            shown = tuple(f for f in (fields or PROPERTIES[obj.kind]) if f in changed)
            items.append(obj.render(("id", *shown)))
        elif obj is not None:
            items.append(obj.render(fields))
        else:
            reason = coll.removed[object_id].reason
            items.append(json.dumps({"id": object_id, "@removed": {"reason": reason}}).encode())
    done = cursor >= len(log) or log[cursor][0] > upto
    return items, cursor, done
