"""``/_sandbox/directory...``: create the synthetic directory, read its truth, and change
single objects; each change shows up in the next delta round (docs/sandbox.md)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aiohttp import web

from sandbox.admin import PREFIX
from sandbox.directory import KINDS, DirCredential, Directory, DirObject, Kind
from sandbox.directory_gen import Generator, populate
from sandbox.wire import json_response, parse_time

MAX_SYNTHETIC = 200_000


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
        populate(self.directory, apps, sps, seed)
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
        changed = tuple(f for f in ("displayName", "tags") if f in data)
        obj.display_name, obj.tags = name, list(tags)
        self.directory.touch(obj, changed)
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
        self.directory.touch(
            obj, ("passwordCredentials",) if kind == "password" else ("keyCredentials",)
        )
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
        self.directory.touch(obj, ("passwordCredentials", "keyCredentials"))
        return _admin_json({"id": obj.id, "keyId": key_id, "removed": True})
