"""Signing webhook deliveries, and checking a signature on the receiving side.

Every delivery carries ``X-EdgeFarm-Signature: t=<unix seconds>,v1=<hex>`` where
``<hex>`` is HMAC-SHA256, keyed with the webhook's secret, over
``"<t>.<raw body>"``. A receiver recomputes it over the bytes it received and
refuses a timestamp older than a few minutes, so a captured delivery cannot be
replayed later. ``verify`` does both and is all a Python receiver needs.
"""

import hashlib
import hmac
import time
from typing import Dict, Optional

SIGNATURE_HEADER = "X-EdgeFarm-Signature"
EVENT_HEADER = "X-EdgeFarm-Event"
DELIVERY_HEADER = "X-EdgeFarm-Delivery"
#: How old a signed timestamp a receiver accepts by default.
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """The signature header is missing, malformed, wrong or too old."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={int(timestamp)},v1={signature(secret, timestamp, body)}"


def _fields(header: str) -> Dict[str, str]:
    fields = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields[key] = value
    return fields


def verify(secret: str, header: Optional[str], body: bytes, *,
           tolerance: float = DEFAULT_TOLERANCE_SECONDS, now: Optional[float] = None) -> int:
    """Check a delivery's signature header against its raw body; returns its timestamp,
    raises ``SignatureError`` when it does not match or is older than ``tolerance``."""
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    fields = _fields(header)
    try:
        timestamp = int(fields["t"])
        sent = fields["v1"]
    except (KeyError, ValueError):
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: {header!r}")
    if not hmac.compare_digest(signature(secret, timestamp, body), sent):
        raise SignatureError("the signature does not match the body")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance:
        raise SignatureError(f"the signature is {age:.0f} s old (more than {tolerance:.0f} s)")
    return timestamp
