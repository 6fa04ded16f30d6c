"""Bank answers signed with a shared per-bank key (HMAC-SHA256 over the body), so the
gateway knows an answer comes from its bank, as the bank knows a call comes from the
gateway by its bearer token: they authenticate each other."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Bank-Signature"


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(key: bytes, body: bytes, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(sign(key, body), header.strip())
