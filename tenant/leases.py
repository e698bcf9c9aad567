"""High availability's storage: one Azure Blob Storage lease per target, and the
target's journal as an append blob whose every append is conditional on that lease.

The blob ``journal/<target>.jsonl`` is both: an append blob (the journal, one block per
line) and the leased blob (``x-ms-lease-id`` on each Append Block is the fence: storage
refuses the append with 412 once another daemon holds the lease). Its metadata names
the holder and since when (``secretwarden status``). ``members/<daemon>`` is a small
heartbeat blob per daemon; the leadership module counts the live ones to share the
targets fairly, aging them by the server's ``Last-Modified`` (no daemon's clock).

The only code that talks to the storage account (layering: only tenant/ imports Azure
SDKs). Every call goes out once (``retry_total=0``) with a short timeout: the caller
(remediation.leadership) is the one loop that retries, on its own schedule, and must
know within its renew deadline whether a renewal worked.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

if TYPE_CHECKING:  # the blob SDK (~25 MiB) is imported only by a daemon in HA mode
    from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

from tenant.credentials import operator_credential
from tenant.endpoints import Cloud, RetryPolicy
from tenant.models import SecretValue
from tenant.ports import Identity

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
# Codes (x-ms-error-code) that say: this lease id no longer (or never) holds the blob.
LOST_CODES = frozenset(
    {
        "LeaseIdMismatchWithBlobOperation",
        "LeaseIdMismatchWithLeaseOperation",
        "LeaseIdMissing",
        "LeaseLost",
        "LeaseNotPresentWithBlobOperation",
        "LeaseNotPresentWithLeaseOperation",
        "LeaseIsBrokenAndCannotBeRenewed",
        "LeaseIsBreakingAndCannotBeAcquired",
        "LeaseAlreadyPresent",
    }
)


class StorageError(Exception):
    """A storage call failed. ``code`` is Azure's error code (or the transport's type),
    ``status`` the HTTP status (0: no answer)."""

    def __init__(self, what: str, status: int, code: str, detail: str = "") -> None:
        self.what = what
        self.status = status
        self.code = code
        msg = f"blob storage: {what}: " + (f"HTTP {status} {code}" if status else code)
        super().__init__(msg + (f" ({detail})" if detail else ""))


class LeaseTaken(StorageError):
    """409 LeaseAlreadyPresent: another daemon holds the target."""


class LeaseLost(StorageError):
    """The lease id no longer holds the blob: the fence refused a write or a renewal."""


def _code(e: HttpResponseError) -> str:
    code = getattr(e, "error_code", None)  # set by the storage SDK's error mapping
    text = str(getattr(code, "value", code) or "")
    return text or type(e).__name__


def _error(what: str, e: AzureError) -> StorageError:
    if isinstance(e, HttpResponseError) and e.status_code:
        code = _code(e)
        if code == "LeaseAlreadyPresent" and what.startswith("acquire"):
            return LeaseTaken(what, e.status_code, code)
        if code in LOST_CODES:
            return LeaseLost(what, e.status_code, code)
        return StorageError(what, e.status_code, code)
    # No answer: a refused connection, a timeout, a reset (the storage outage case).
    return StorageError(what, 0, type(e).__name__, str(e.message or "")[:200])


def journal_blob(target: str) -> str:
    return f"journal/{_SAFE.sub('_', target)}.jsonl"


def member_blob(daemon: str) -> str:
    return f"members/{_SAFE.sub('_', daemon)}"


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """What storage says about a target's lease (for ``status``, never for deciding)."""

    state: str  # available | leased | expired | breaking | broken | missing
    holder: str | None
    since: str | None  # ISO time the holder acquired it (its own clock)


@dataclass(frozen=True, slots=True)
class Acquired:
    lease_id: str
    previous_holder: str | None  # the daemon that held it last (a takeover when another)


class BlobLeases:
    """The HA storage account's container. An async context manager; one per daemon.

    ``connection_string`` (Azurite, development) or ``account_url`` + ``credential``
    (the daemon's own identity; its role: Storage Blob Data Contributor on the one
    container). ``timeout``: seconds for each call, connect and read.
    """

    def __init__(
        self,
        container: str,
        *,
        account_url: str | None = None,
        credential: AsyncTokenCredential | None = None,
        connection_string: SecretValue | None = None,
        timeout: float = 5.0,
    ) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        kwargs: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": timeout,
            "read_timeout": timeout,
        }
        if connection_string is not None:
            self._service = BlobServiceClient.from_connection_string(
                connection_string.reveal(), **kwargs
            )
        elif account_url is not None and credential is not None:
            self._service = BlobServiceClient(account_url, credential=credential, **kwargs)
        else:
            raise ValueError(
                "blob leases need a connection string, or an account URL and a credential"
            )
        self.container_name = container
        self._container: ContainerClient = self._service.get_container_client(container)
        self._created: set[str] = set()
        self.timeout = timeout
        self._owned: AsyncTokenCredential | None = None  # closed with this object

    async def __aenter__(self) -> BlobLeases:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._container.close()
        await self._service.close()
        if self._owned is not None:
            await self._owned.close()
            self._owned = None

    @classmethod
    def open(
        cls,
        container: str,
        *,
        account_url: str | None,
        connection_string: SecretValue | None,
        identity: Identity,
        cloud: Cloud,
        retry: RetryPolicy,
        timeout: float,
    ) -> BlobLeases:
        """The daemon's store: from a connection string (Azurite, development), or
        ``account_url`` with the daemon's own identity (a credential of its own, closed
        with the store)."""
        if connection_string is not None:
            return cls(container, connection_string=connection_string, timeout=timeout)
        credential = operator_credential(identity, cloud, retry)
        store = cls(container, account_url=account_url, credential=credential, timeout=timeout)
        store._owned = credential
        return store

    @property
    def where(self) -> str:
        return f"{self._service.url.rstrip('/')}/{self.container_name}"

    # -- set-up and checks --------------------------------------------------------------

    async def ensure_container(self) -> None:
        """Create the container when it is missing (an operator may have made it)."""
        try:
            await self._container.create_container()
        except ResourceExistsError:
            pass
        except AzureError as e:
            raise _error("create container", e) from None

    async def check_writable(self, daemon: str) -> None:
        """What ``secretwarden check`` asks: the account answers, and this identity can
        create a blob, lease it, append under the lease and delete it."""
        await self.ensure_container()
        blob = self._container.get_blob_client(f"check/{_SAFE.sub('_', daemon)}")
        try:
            await blob.create_append_blob()
            lease = await blob.acquire_lease(lease_duration=15)
            await blob.append_block(b"check\n", lease=lease.id)
            await lease.release()
            await blob.delete_blob()
        except AzureError as e:
            raise _error("write a test blob", e) from None

    # -- leases ------------------------------------------------------------------------

    async def _ensure_journal(self, target: str) -> None:
        if target in self._created:
            return
        blob = self._container.get_blob_client(journal_blob(target))
        try:
            await blob.create_append_blob(if_none_match="*")
        except ResourceExistsError:
            pass  # it exists (HTTP 409 BlobAlreadyExists, or 412 under a lease)
        except HttpResponseError as e:
            if e.status_code != 412:
                raise _error(f"create {journal_blob(target)}", e) from None
        except AzureError as e:
            raise _error(f"create {journal_blob(target)}", e) from None
        self._created.add(target)

    async def acquire(self, target: str, seconds: int, holder: str) -> Acquired:
        """Take the target's lease for ``seconds`` (15-60). Raises :class:`LeaseTaken`
        while another daemon holds it, :class:`StorageError` when storage fails."""
        await self._ensure_journal(target)
        blob = self._container.get_blob_client(journal_blob(target))
        what = f"acquire the lease of {target}"
        try:
            lease = await blob.acquire_lease(lease_duration=seconds)
        except ResourceNotFoundError:
            self._created.discard(target)
            raise StorageError(what, 404, "BlobNotFound") from None
        except AzureError as e:
            raise _error(what, e) from None
        try:
            props = await blob.get_blob_properties(lease=lease.id)
            previous = (props.metadata or {}).get("holder")
            since = datetime.now(UTC).isoformat(timespec="seconds")
            await blob.set_blob_metadata({"holder": holder, "since": since}, lease=lease.id)
        except AzureError as e:
            # Holding a lease nobody can see is worse than not taking it: give it back.
            with contextlib.suppress(AzureError):
                await lease.release()
            raise _error(f"label the lease of {target}", e) from None
        return Acquired(lease.id, previous)

    def _lease(self, target: str, lease_id: str | None) -> BlobLeaseClient:
        from azure.storage.blob.aio import BlobLeaseClient

        blob = self._container.get_blob_client(journal_blob(target))
        return BlobLeaseClient(blob, lease_id=lease_id)

    async def renew(self, target: str, lease_id: str) -> None:
        """Raises :class:`LeaseLost` when the lease is gone, StorageError otherwise."""
        lease = self._lease(target, lease_id)
        try:
            await lease.renew()
        except AzureError as e:
            raise _error(f"renew the lease of {target}", e) from None

    async def release(self, target: str, lease_id: str) -> None:
        lease = self._lease(target, lease_id)
        try:
            await lease.release()
        except AzureError as e:
            raise _error(f"release the lease of {target}", e) from None

    async def info(self, target: str) -> LeaseInfo:
        blob = self._container.get_blob_client(journal_blob(target))
        try:
            props = await blob.get_blob_properties()
        except ResourceNotFoundError:
            return LeaseInfo("missing", None, None)
        except AzureError as e:
            raise _error(f"read the lease of {target}", e) from None
        state = str(props.lease.state or "available")
        meta = props.metadata or {}
        return LeaseInfo(state, meta.get("holder"), meta.get("since"))

    # -- the journal ---------------------------------------------------------------------

    async def append(self, target: str, lease_id: str, data: bytes) -> None:
        """Append ``data`` (whole journal lines) as one block, only under ``lease_id``:
        raises :class:`LeaseLost` when storage says another lease (or none) holds it."""
        blob = self._container.get_blob_client(journal_blob(target))
        try:
            await blob.append_block(data, lease=lease_id)
        except AzureError as e:
            raise _error(f"append to the journal of {target}", e) from None

    async def read_journal(self, target: str) -> bytes:
        blob = self._container.get_blob_client(journal_blob(target))
        try:
            stream = await blob.download_blob()
            return await stream.readall()
        except ResourceNotFoundError:
            return b""
        except AzureError as e:
            raise _error(f"read the journal of {target}", e) from None

    # -- membership ----------------------------------------------------------------------

    async def heartbeat(self, daemon: str) -> None:
        blob = self._container.get_blob_client(member_blob(daemon))
        try:
            await blob.upload_blob(daemon.encode(), overwrite=True)
        except AzureError as e:
            raise _error("write this daemon's heartbeat", e) from None

    async def members(self, max_age: float) -> list[str]:
        """Daemons whose heartbeat is at most ``max_age`` seconds older than the newest
        (ages by the server's clock: Last-Modified)."""
        seen: list[tuple[str, datetime]] = []
        try:
            async for b in self._container.list_blobs(name_starts_with="members/"):
                if b.last_modified is not None:
                    seen.append((b.name.removeprefix("members/"), b.last_modified))
        except AzureError as e:
            raise _error("list the daemons' heartbeats", e) from None
        if not seen:
            return []
        newest = max(t for _, t in seen)
        return sorted(n for n, t in seen if (newest - t).total_seconds() <= max_age)

    async def leave(self, daemon: str) -> None:
        """Remove this daemon's heartbeat (a clean stop: the others rebalance at once)."""
        blob = self._container.get_blob_client(member_blob(daemon))
        try:
            await blob.delete_blob()
        except ResourceNotFoundError:
            pass
        except AzureError as e:
            raise _error("remove this daemon's heartbeat", e) from None
