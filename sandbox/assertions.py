"""Entra's certificate sign-in: a client assertion (a JWT signed with the app's key).

azure-identity's CertificateCredential posts ``client_assertion_type=...jwt-bearer``
and a JWT whose header names the certificate (``x5t#S256``, or ``x5t``) and whose
signature is PS256 (RS256 for ADFS). The sandbox checks it the way Entra does: the
certificate must be one registered for the operator (``POST /_sandbox/operator/
certificates``), the signature must verify, ``iss``/``sub`` must be the client id, the
audience the token endpoint, and the assertion not expired. Refusals are Entra's
AADSTS700027 / 700024 (docs/azure-behaviour.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def thumbprints(pem: bytes) -> tuple[str, str, rsa.RSAPublicKey, datetime]:
    """(x5t#S256, x5t, public key, not-after) of a PEM certificate, as JWT headers name it."""
    cert = x509.load_pem_x509_certificate(pem)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("only RSA certificates are accepted (as Entra's client assertions)")
    der = cert.public_bytes(Encoding.DER)
    s256 = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    s1 = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode().rstrip("=")  # noqa: S324
    return s256, s1, key, cert.not_valid_after_utc


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def assertion_problem(
    assertion: str,
    client_id: str,
    registered: dict[str, tuple[rsa.RSAPublicKey, datetime]],
    now: datetime,
) -> tuple[int, str] | None:
    """(AADSTS code, message) when Entra would refuse the assertion; None when valid.
    ``registered`` maps a thumbprint (x5t#S256 or x5t, base64url without padding) to
    the certificate's public key and end."""
    try:
        head_b64, body_b64, sig_b64 = assertion.split(".")
        header: dict[str, Any] = json.loads(_b64(head_b64))
        claims: dict[str, Any] = json.loads(_b64(body_b64))
        signature = _b64(sig_b64)
    except ValueError:
        return 50027, "Invalid JWT token. Token format not valid."
    named = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
    found = registered.get(named)
    if found is None:
        return 700027, (
            f"Client assertion failed signature validation. (Reason - The key was not found., "
            f"Thumbprint of key used by client: '{named}'.)"
        )
    key, end = found
    if end <= now:
        return 700027, "Client assertion contains an expired certificate."
    signed = f"{head_b64}.{body_b64}".encode()
    scheme: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        if header.get("alg") == "PS256"
        else padding.PKCS1v15()
    )
    try:
        key.verify(signature, signed, scheme, hashes.SHA256())
    except InvalidSignature:
        return 700027, "Client assertion failed signature validation."
    aud = claims.get("aud")
    if not isinstance(aud, str) or not aud.endswith("/oauth2/v2.0/token"):
        return 700023, "Client assertion audience claim does not match Realm issuer."
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return 700023, "Client assertion audience or issuer is not valid."
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now.timestamp():
        return 700024, "Client assertion is not within its valid time range."
    return None
