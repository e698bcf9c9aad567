"""Graph's tenant-wide lists over the directory (sandbox/directory.py), and the admin
routes that shape it.

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

from sandbox.admin import PREFIX
from sandbox.directory import (
    KINDS,
    PROPERTIES,
    Collection,
    DirCredential,
    Directory,
    DirObject,
    Generator,
    Kind,
)
from sandbox.graph import Graph
from sandbox.portal import Portal
from sandbox.wire import JSON_UTF8, bearer, graph_error, json_response, parse_time

MAX_PAGE = 999
DEFAULT_PAGE = 100
DELTA_TOKEN_LIFETIME = timedelta(days=7)  # directory objects' delta tokens (Graph docs)
MAX_SYNTHETIC = 200_000
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
                    raise DirectoryError(
                        410,
                        "resyncRequired",
                        "The delta token is no longer valid (older than 7 days); "
                        "start a full synchronization again.",
                    )
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
        items, cursor, done = (
            _full_round(coll, upto, cursor, size, wanted)
            if mode == "f"
            else _change_round(coll, upto, cursor, size, wanted, duplicates=duplicates)
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
            raise DirectoryError(
                410,
                "resyncRequired",
                "The delta token is no longer valid; start a full synchronization again.",
            )
        return state

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
) -> tuple[list[bytes], int, bool]:
    """A tracked round: the objects changed in the log from ``cursor`` up to ``upto``,
    each in full if it exists, else as ``@removed``. With ``duplicates`` (Graph's
    documented behaviour) an object comes once per change, each time as it is now;
    without, once, at its last change (a later one defers it to the next round)."""
    log = coll.log
    items: list[bytes] = []
    while cursor < len(log) and log[cursor][0] <= upto and len(items) < size:
        seq, object_id = log[cursor]
        cursor += 1
        if not duplicates and coll.last_change(object_id) != seq:
            continue  # a later entry speaks for it
        obj = coll.objects.get(object_id)
        if obj is not None:
            items.append(obj.render(fields))
        else:
            reason = coll.removed[object_id].reason
            items.append(json.dumps({"id": object_id, "@removed": {"reason": reason}}).encode())
    done = cursor >= len(log) or log[cursor][0] > upto
    return items, cursor, done


# -- admin ------------------------------------------------------------------------------


def _admin_json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, indent=1))


def _problem(status: int, message: str) -> web.Response:
    return _admin_json({"error": f"directory: {message}"}, status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def _count(data: dict[str, Any], key: str, problems: list[str]) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SYNTHETIC:
        problems.append(f"{key} must be an integer from 0 to {MAX_SYNTHETIC}")
        return 0
    return value


class DirectoryAdmin:
    """``/_sandbox/directory...``: create the synthetic directory, read its truth, and
    change single objects (each change shows up in the next delta round)."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def routes(self) -> list[web.RouteDef]:
        obj = f"{PREFIX}/directory/{{kind}}/{{object_id}}"
        return [
            web.get(f"{PREFIX}/directory", self.get_truth),
            web.post(f"{PREFIX}/directory", self.create),
            web.get(obj, self.get_object),
            web.patch(obj, self.patch_object),
            web.delete(obj, self.delete_object),
            web.post(f"{obj}/passwords", self.add_password),
            web.post(f"{obj}/keys", self.add_key),
            web.delete(f"{obj}/credentials/{{key_id}}", self.remove_credential),
        ]

    async def get_truth(self, request: web.Request) -> web.Response:
        return _admin_json(self.directory.truth())

    async def create(self, request: web.Request) -> web.Response:
        try:
            data = await _body(request)
        except ValueError as exc:
            return _problem(400, f"body is not a JSON object: {exc}")
        problems: list[str] = []
        unknown = sorted(set(data) - {"applications", "service_principals", "seed"})
        if unknown:
            problems.append("unknown keys: " + ", ".join(unknown))
        apps = _count(data, "applications", problems)
        sps = _count(data, "service_principals", problems)
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            problems.append("seed must be an integer")
        if problems:
            return _problem(400, "; ".join(problems))
        self.directory.generate(apps, sps, seed)
        return _admin_json(self.directory.truth())

    def _find(self, request: web.Request) -> tuple[Kind, DirObject] | web.Response:
        raw_kind = request.match_info["kind"]
        if raw_kind not in KINDS:
            return _problem(404, f"kind must be one of {list(KINDS)}, got {raw_kind!r}")
        kind = raw_kind
        self.directory.sync()
        obj = self.directory.find(kind, request.match_info["object_id"].lower())
        if obj is None:
            return _problem(404, f"no {kind} object {request.match_info['object_id']!r}")
        return kind, obj

    def _synthetic(self, request: web.Request) -> tuple[Kind, DirObject] | web.Response:
        found = self._find(request)
        if not isinstance(found, web.Response) and found[1].portal:
            return _problem(
                409,
                "the portal's app registration changes through Graph (addPassword, "
                "removePassword) or the credentials/{keyId} admin routes",
            )
        return found

    async def get_object(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if isinstance(found, web.Response):
            return found
        return json_response(found[1].to_json())

    async def patch_object(self, request: web.Request) -> web.Response:
        found = self._synthetic(request)
        if isinstance(found, web.Response):
            return found
        _, obj = found
        try:
            data = await _body(request)
        except ValueError as exc:
            return _problem(400, f"body is not a JSON object: {exc}")
        problems: list[str] = []
        unknown = sorted(set(data) - {"displayName", "tags"})
        if unknown:
            problems.append("unknown keys: " + ", ".join(unknown) + " (known: displayName, tags)")
        name = data.get("displayName", obj.display_name)
        tags = data.get("tags", obj.tags)
        if not isinstance(name, str):
            problems.append("displayName must be a string")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            problems.append("tags must be a list of strings")
        if problems:
            return _problem(400, "; ".join(problems))
        obj.display_name, obj.tags = name, list(tags)
        self.directory.touch(obj)
        return json_response(obj.to_json())

    async def delete_object(self, request: web.Request) -> web.Response:
        found = self._synthetic(request)
        if isinstance(found, web.Response):
            return found
        kind, obj = found
        permanent = request.query.get("permanent", "false").lower() == "true"
        self.directory.delete(kind, obj.id, permanent=permanent)
        reason = "deleted" if permanent else "changed"
        return _admin_json({"id": obj.id, "deleted": True, "reason": reason})

    async def _add(self, request: web.Request, kind: str) -> web.Response:
        found = self._synthetic(request)
        if isinstance(found, web.Response):
            return found
        _, obj = found
        try:
            data = await _body(request)
            now = self.directory.now()
            start = parse_time(data["startDateTime"]) if data.get("startDateTime") else now
            end = (
                parse_time(data["endDateTime"])
                if data.get("endDateTime")
                else start + timedelta(days=730 if kind == "password" else 365)
            )
        except (ValueError, TypeError) as exc:
            return _problem(400, f"bad credential: {exc}")
        if end <= start:
            return _problem(400, "endDateTime must be after startDateTime")
        usage = data.get("usage", "Verify")
        if kind == "certificate" and usage not in ("Verify", "Sign"):
            return _problem(400, f"usage must be Verify or Sign, got {usage!r}")
        name = data.get("displayName")
        gen = Generator(hash((obj.id, self.directory.seq)), now, self.directory.tenant_id)
        cred: DirCredential
        if kind == "password":
            cred = gen.password()
            obj.passwords.append(cred)
        else:
            cred = gen.certificate(obj.display_name, usage)
            obj.keys.append(cred)
        cred.start, cred.end = start, end
        cred.display_name = name if isinstance(name, str) else cred.display_name
        cred.changed()
        self.directory.touch(obj)
        return json_response(cred.to_json())

    async def add_password(self, request: web.Request) -> web.Response:
        return await self._add(request, "password")

    async def add_key(self, request: web.Request) -> web.Response:
        return await self._add(request, "certificate")

    async def remove_credential(self, request: web.Request) -> web.Response:
        found = self._synthetic(request)
        if isinstance(found, web.Response):
            return found
        _, obj = found
        key_id = request.match_info["key_id"].lower()
        before = len(obj.passwords) + len(obj.keys)
        obj.passwords = [c for c in obj.passwords if c.key_id != key_id]
        obj.keys = [c for c in obj.keys if c.key_id != key_id]
        if len(obj.passwords) + len(obj.keys) == before:
            return _problem(404, f"{obj.id} has no credential with keyId {key_id!r}")
        self.directory.touch(obj)
        return _admin_json({"id": obj.id, "keyId": key_id, "removed": True})
