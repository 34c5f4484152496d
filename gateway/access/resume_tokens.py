"""Resume tokens: what a browser's EventSource (which cannot send headers) presents instead
of a bearer token to attach to one message's stream. HMAC-signed with a secret every worker
shares, valid for that one message until it expires."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

RESUME_TOKEN_TTL = 900


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def resume_token(secret: bytes, message_id: str, ttl: int = RESUME_TOKEN_TTL) -> str:
    body = f"{message_id}:{int(time.time()) + ttl}"
    sig = hmac.new(secret, body.encode(), hashlib.sha256).digest()[:18]
    return f"{_b64(body.encode())}.{_b64(sig)}"


def check_resume_token(secret: bytes, token: str, message_id: str) -> bool:
    try:
        body_b64, sig_b64 = token.split(".")
        body = base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4))
        sig = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
    except ValueError:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).digest()[:18]
    if not hmac.compare_digest(sig, expected):
        return False
    mid, _, expires = body.decode().rpartition(":")
    return mid == message_id and expires.isdigit() and int(expires) >= time.time()
