"""Basic-auth password hashes for the web endpoints, with the standard library only.

Format: ``pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>``. Prometheus's
exporter-toolkit uses bcrypt; bcrypt is not in the standard library and PBKDF2-SHA256
at 600,000 iterations (OWASP's 2023 figure) is as slow to brute-force per guess, so we
keep the dependency list short. A verified header is cached (keyed by its SHA-256) so a
scrape every 15 s does not pay the key derivation each time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

ITERATIONS = 600_000


def hash_password(password: str, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"pbkdf2_sha256${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    try:
        scheme, iterations, salt, digest = hashed.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(expected, got)


class BasicAuth:
    def __init__(self, users: dict[str, str]) -> None:
        self._users = dict(users)
        self._good: set[bytes] = set()

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    def check(self, header: str | None) -> bool:
        if not self._users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        key = hashlib.sha256(header.encode()).digest()
        if key in self._good:
            return True
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except ValueError:
            return False
        hashed = self._users.get(user)
        if hashed is None or not verify_password(password, hashed):
            return False
        self._good.add(key)
        return True
