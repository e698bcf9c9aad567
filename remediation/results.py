"""The typed results of remediation steps, and the typed view of what a run journaled.

Each step body returns one of these frozen records; :meth:`remediation.runner.Run.step`
journals it with :func:`dataclasses.asdict`, so the journal's keys are the fields
below. :class:`RunFacts` reads the merged journal data of a run back, typed, so no
step reads a string-keyed dict by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Planned:
    old_version: str
    old_key_ids: tuple[str, ...]
    old_unsure: str | None
    client_id: str
    credential_count: int
    in_use_end: str | None
    due: bool


@dataclass(frozen=True, slots=True)
class AddPasswordPlan:
    display_name: str
    lifetime_days: int


@dataclass(frozen=True, slots=True)
class Added:
    new_key_id: str


@dataclass(frozen=True, slots=True)
class FreeSlotCause:
    cause: str


@dataclass(frozen=True, slots=True)
class Freed:
    freed_key_id: str


@dataclass(frozen=True, slots=True)
class Propagated:
    tries: int
    seconds: float


@dataclass(frozen=True, slots=True)
class KeyVaultTarget:
    key_id: str


@dataclass(frozen=True, slots=True)
class KeyVaultWritten:
    new_version: str


@dataclass(frozen=True, slots=True)
class Compensated:
    orphans_removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RungApplied:
    rung: str


@dataclass(frozen=True, slots=True)
class Verified:
    rung: str | None
    reason: str
    proof: str | None = None  # what proves the app's version (None: unknown)
    # What the ladder established about the running processes (ISO times; see
    # remediation.decisions.Reloaded): from when the cache held the new version, the
    # latest process start ARM listed at that moment (its own clock), when the last
    # recycle of every worker after that began; and whether ARM reported any
    # activeVersion at all (the refresh rung learns from it).
    cache_at: str | None = None
    cache_mark: str | None = None
    recycled_at: str | None = None
    active_seen: bool | None = None


@dataclass(frozen=True, slots=True)
class Waited:
    seconds: float


@dataclass(frozen=True, slots=True)
class RemoveKeys:
    key_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Removed:
    removed: tuple[str, ...]
    proof: str = ""  # why removing them was safe


@dataclass(frozen=True, slots=True)
class PendingRemoval:
    """Credentials kept after a rotation (or rollback) until proof that the app no
    longer uses them, or until the overlap window ends. Journaled; the Remediator
    finishes it (a ``cleanup`` run) when proof arrives."""

    pending_key_ids: tuple[str, ...]
    keep_key_id: str  # the credential the app should be on now
    keep_version: str  # the Key Vault version holding its value
    reloaded_at: str  # ISO time of the reload that should have moved the app
    pending_since: str
    pending_until: str
    pending_why: str
    cache_at: str | None = None  # see Verified
    cache_mark: str | None = None
    recycled_at: str | None = None


@dataclass(frozen=True, slots=True)
class Rechecked:
    """After a removal: the app's own action and the Graph probe, once more."""

    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RestoreFrom:
    from_version: str


@dataclass(frozen=True, slots=True)
class Restored:
    restored_version: str


@dataclass(frozen=True, slots=True)
class RemoveNew:
    key_id: str | None


@dataclass(frozen=True, slots=True)
class RemovedNew:
    removed_new: str | None


@dataclass(frozen=True, slots=True)
class Diagnosis:
    decision: str  # rotate | reload
    kv_version: str | None
    why: str


class RunFacts:
    """The merged journal data of one run (later lines win), read with types."""

    __slots__ = ("_d",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._d = data

    def _str(self, key: str) -> str | None:
        v = self._d.get(key)
        return None if v is None else str(v)

    def _need(self, key: str) -> str:
        v = self._str(key)
        if v is None:
            raise KeyError(f"the journal of this run has no {key!r}")
        return v

    @property
    def client_id(self) -> str:
        return self._need("client_id")

    @property
    def old_version(self) -> str:
        return self._need("old_version")

    @property
    def old_key_ids(self) -> tuple[str, ...]:
        return tuple(str(k) for k in self._d.get("old_key_ids") or ())

    @property
    def old_unsure(self) -> str | None:
        return self._str("old_unsure")

    @property
    def in_use_end(self) -> str | None:
        return self._str("in_use_end")

    @property
    def due(self) -> bool:
        return bool(self._d.get("due", True))

    @property
    def display_name(self) -> str | None:
        return self._str("display_name")

    @property
    def new_key_id(self) -> str | None:
        return self._str("new_key_id")

    @property
    def new_version(self) -> str | None:
        return self._str("new_version")

    @property
    def restored_version(self) -> str | None:
        return self._str("restored_version")

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(str(k) for k in self._d.get("removed") or ())

    @property
    def decision(self) -> str | None:
        return self._str("decision")

    @property
    def kv_version(self) -> str | None:
        return self._str("kv_version")

    @property
    def reason(self) -> str | None:
        return self._str("reason")

    @property
    def rung(self) -> str | None:
        return self._str("rung")

    def pending(self) -> PendingRemoval | None:
        keys = self._d.get("pending_key_ids")
        if not keys:
            return None
        return PendingRemoval(
            tuple(str(k) for k in keys),
            self._need("keep_key_id"),
            self._need("keep_version"),
            self._need("reloaded_at"),
            self._need("pending_since"),
            self._need("pending_until"),
            self._str("pending_why") or "",
            self._str("cache_at"),
            self._str("cache_mark"),
            self._str("recycled_at"),
        )

    def old_keys(self) -> tuple[str, ...]:
        """The old credentials this run may remove (never its own new one)."""
        new = self.new_key_id
        return tuple(k for k in self.old_key_ids if k != new)
