"""Basic auth for the web endpoints, verified off the event loop.

Hashes: bcrypt (``$2y$``/``$2b$``/``$2a$``, as ``htpasswd -B`` and the Prometheus
exporter-toolkit write them) and ``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>``
(``secretwarden hash-password``). Both are slow on purpose (about 0.07 s for bcrypt
cost 10, 0.2 s for PBKDF2 at 600,000 rounds), so a failed login must never run on the
event loop that also pings the systemd watchdog and times the probes:

- a verification runs in a worker thread (both libraries release the GIL), at most
  ``verify_threads`` at once and ``max_waiting`` queued; beyond that a request is
  refused at once with 503 (:attr:`Verdict.BUSY`) instead of queueing without end;
- each client (an IP address, an IPv6 /64) has a token bucket of attempts that need
  a verification: ``failure_burst`` at once, then ``failures_per_minute``; an empty
  bucket answers 429 (:attr:`Verdict.THROTTLED`) without hashing anything. A success
  gives its token back, so a scraper with the right password never runs dry;
- a verified (user, password) is cached (bounded, keyed by a SHA-256), so a scrape
  every 15 s costs one hash lookup, not a key derivation, even during an attack;
- an unknown user is verified against a dummy hash (:func:`dummy_hash`) of the scheme
  and cost of the cheapest configured hash, made of random bytes when the users are
  set, so it never matches. With users of one cost (the usual case) an unknown name
  takes as long as a known one: timing tells no usernames. The exporter-toolkit uses a
  fixed cost-10 dummy; the cheapest configured cost is as fast for cost-10 users and
  tells nothing for users of another cost either. An unknown name never costs more than
  the cheapest user (a cost-18 user cannot make every guess take 15 s).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

import bcrypt

from daemon.logging import get_logger

ITERATIONS = 600_000
_BCRYPT = re.compile(r"\$2[aby]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
# bcrypt reads 72 bytes of a password; Go's bcrypt (exporter-toolkit) refuses longer
# ones, and so do we (after the same amount of work as any other wrong password).
BCRYPT_MAX_PASSWORD = 72
log = get_logger("secretwarden.web")


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def hash_bcrypt(password: str, cost: int = 10) -> str:
    """A ``$2y$`` bcrypt hash, as ``htpasswd -nB`` writes it (passwords of 72 bytes at most)."""
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
    return "$2y$" + hashed[4:]


def checked_users(users: dict[str, str]) -> dict[str, str]:
    """``users`` (name -> hash) when every hash is one we can verify; otherwise raise
    ValueError naming the first bad user (a pydantic validator of both config files)."""
    for user, hashed in users.items():
        if (problem := hash_problem(hashed)) is not None:
            raise ValueError(f"user {user!r}: {problem}")
    return users


def hash_problem(hashed: str) -> str | None:
    """Why ``hashed`` is not a hash we can verify (None when it is one)."""
    if hashed.startswith(BCRYPT_PREFIXES):
        # parsed, not tried: trying costs a whole verification per user at every load
        match = _BCRYPT.fullmatch(hashed)
        if match is None or not 4 <= int(match["cost"]) <= 31:
            return "not a valid bcrypt hash ($2y$<cost 04-31>$<53 characters of salt and hash>)"
        return None
    if hashed.startswith("pbkdf2_sha256$"):
        parts = hashed.split("$")
        if len(parts) != 4 or not parts[1].isdigit() or int(parts[1]) < 1:
            return "not a valid pbkdf2_sha256$<iterations>$<salt>$<hash> hash"
        try:
            base64.b64decode(parts[2], validate=True)
            base64.b64decode(parts[3], validate=True)
        except binascii.Error:
            return "not a valid pbkdf2_sha256 hash (salt or hash is not base64)"
        return None
    return (
        "expected a bcrypt hash ($2y$..., from `htpasswd -nB`) or a pbkdf2_sha256$... hash "
        "(from `secretwarden hash-password`), not a plain password"
    )


_BCRYPT_ALPHABET = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def dummy_hash(hashes: Iterable[str]) -> str:
    """A hash no password matches, costing what the cheapest of ``hashes`` costs to
    verify (same scheme and cost); random salt and digest, so building it hashes nothing."""
    cheapest = min(hashes, key=_work, default=None)
    if cheapest is None:
        return ""
    if cheapest.startswith(BCRYPT_PREFIXES):
        cost = int(cheapest[4:6])
        salt = bcrypt.gensalt(cost).decode()  # "$2b$NN$" + 22 characters: no hashing
        return salt + "".join(secrets.choice(_BCRYPT_ALPHABET) for _ in range(31))
    iterations = int(cheapest.split("$")[1])
    b64 = base64.b64encode
    salt, digest = b64(secrets.token_bytes(16)).decode(), b64(secrets.token_bytes(32)).decode()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def _work(hashed: str) -> float:
    """A rough cost of verifying ``hashed``, to compare hashes of either scheme."""
    if hashed.startswith(BCRYPT_PREFIXES):
        return float(2 ** int(hashed[4:6]))  # bcrypt cost 10 ~ 600,000 PBKDF2 rounds / 200
    return int(hashed.split("$")[1]) / 200


def verify_password(password: str | bytes, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed`` (slow: call it off the event loop)."""
    raw = password.encode() if isinstance(password, str) else password
    try:
        if hashed.startswith(BCRYPT_PREFIXES):
            # same work for a too-long password, then refused
            ok = bcrypt.checkpw(raw[:BCRYPT_MAX_PASSWORD], hashed.encode("ascii"))
            return ok and len(raw) <= BCRYPT_MAX_PASSWORD
        scheme, iterations, salt, digest = hashed.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha256", raw, base64.b64decode(salt), int(iterations))
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(expected, got)


class Verdict(Enum):
    OK = "ok"
    DENIED = "denied"  # 401
    THROTTLED = "throttled"  # 429: this client failed too often
    BUSY = "busy"  # 503: too many verifications already waiting


@dataclass(frozen=True)
class AuthLimits:
    verify_threads: int = 1  # verifications at once; each keeps one core busy
    max_waiting: int = 16  # queued beyond the running ones; more get 503 at once
    failure_burst: float = 5  # attempts a client may verify at once...
    failures_per_minute: float = 30  # ...and then this many a minute
    clients_tracked: int = 10_000  # the least recently seen client is forgotten first
    cache_size: int = 64  # verified (user, password) pairs


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second."""

    __slots__ = ("capacity", "rate", "stamp", "tokens", "told")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.tokens, self.stamp = capacity, now
        self.told = False  # the log has said this client ran dry (reset when it may again)

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        self.told = False
        return True

    def give_back(self) -> None:
        self.tokens = min(self.capacity, self.tokens + 1)


def client_key(remote: str | None) -> str:
    """The throttled unit: an IPv4 address or an IPv6 /64 (one host's usual share)."""
    if not remote:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _credentials(header: str) -> tuple[bytes, bytes] | None:
    """(user, password) of a ``Basic`` header; None when it is malformed (non-ASCII
    bytes included: aiohttp hands those over as surrogate escapes)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


class BasicAuth:
    """The users and their hashes; :meth:`check` answers a request's header."""

    def __init__(
        self,
        users: Mapping[str, str],
        limits: AuthLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits or AuthLimits()
        self._clock = clock
        self._clients: OrderedDict[str, TokenBucket] = OrderedDict()
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None
        self._waiting = 0
        self.set_users(users)

    def set_users(self, users: Mapping[str, str]) -> None:
        """Replace the users (a reload); forgets every cached success."""
        self._users = {u.encode(): h for u, h in users.items()}
        self._good.clear()
        self._dummy = dummy_hash(users.values())

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def _bucket(self, client: str, now: float) -> TokenBucket:
        bucket = self._clients.get(client)
        if bucket is None:
            rate = self.limits.failures_per_minute / 60
            bucket = self._clients[client] = TokenBucket(self.limits.failure_burst, rate, now)
            while len(self._clients) > self.limits.clients_tracked:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        return bucket

    async def check(self, header: str | None, remote: str | None = None) -> Verdict:
        if not self._users:
            return Verdict.OK
        if not header:
            return Verdict.DENIED  # no credentials at all: nothing to verify, nothing to count
        creds = _credentials(header)
        client = client_key(remote)
        now = self._clock()
        if creds is None:
            bucket = self._bucket(client, now)
            if bucket.take(now):  # one line per malformed header, until the client is throttled
                log.warning("basic auth: malformed Authorization header", client=client)
                return Verdict.DENIED
            return Verdict.THROTTLED
        user, password = creds
        key = hashlib.sha256(len(user).to_bytes(4, "big") + user + password).digest()
        if key in self._good:
            self._good.move_to_end(key)
            return Verdict.OK
        bucket = self._bucket(client, now)
        if not bucket.take(now):
            if not bucket.told:  # one line as the client runs dry, not one per request
                bucket.told = True
                log.warning(
                    "basic auth: too many failed logins; refusing this client for a while",
                    client=client,
                )
            return Verdict.THROTTLED
        if self._waiting >= self.limits.verify_threads + self.limits.max_waiting:
            bucket.give_back()
            return Verdict.BUSY
        hashed = self._users.get(user)
        self._waiting += 1
        try:
            # An unknown user is checked against the dummy: the cheapest user's work,
            # never a match (and `hashed is not None` below, whatever bcrypt says).
            matched = await self._verify(password, hashed if hashed is not None else self._dummy)
        finally:
            self._waiting -= 1
        if not (matched and hashed is not None):
            return Verdict.DENIED
        bucket.give_back()
        self._good[key] = None
        while len(self._good) > self.limits.cache_size:
            self._good.popitem(last=False)
        return Verdict.OK

    async def _verify(self, password: bytes, hashed: str) -> bool:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.limits.verify_threads, thread_name_prefix="basic-auth"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, verify_password, password, hashed)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
