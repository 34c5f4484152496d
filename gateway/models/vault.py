"""Provider keys at rest: AES-GCM envelopes under a key-encryption key (KEK).

Each secret gets its own random data key (DEK): the secret is sealed with the DEK, the DEK
with the KEK, and both seals are bound (as associated data) to where the envelope is stored,
so an envelope copied to another repository does not open. What is stored names the KEK that
wrapped it (`kek`: the first 16 hex digits of the KEK's SHA-256), which is what lets a
rotation run without downtime: during it, the gateway holds the new KEK first and the old
one after it (GATEWAY_ENCRYPTION_KEY="new,old"), wraps with the new, opens with either, and
`python -m gateway keys rotate-kek` re-wraps each DEK (the sealed secret itself is untouched).

A canary per KEK (a fixed text sealed with it, in Redis) tells a wrong KEK at start: the
stored canaries name the KEKs that wrapped something, and a configured KEK must open its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENVELOPE_VERSION = 1
KEK_BYTES = 32
NONCE_BYTES = 12
CANARY = b"chat-gateway key-encryption key check"
GENERATE_HINT = (
    "python -c 'import base64, secrets; "
    "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())'"
)
_SEPARATORS = re.compile(r"[\s,]+")


class VaultError(Exception):
    """An envelope that does not open (a wrong KEK, or one moved or altered), or a KEK that
    is not configured; str() never holds a secret."""


class KekMismatch(VaultError):
    """The configured KEKs do not match what Redis holds: the gateway must not start."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_keks(text: str) -> list[bytes]:
    """GATEWAY_ENCRYPTION_KEY: one or more KEKs (comma- or whitespace-separated), each 32
    random bytes in URL-safe base64 (standard base64 is accepted too)."""
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    if not parts:
        raise ValueError(f"is empty; generate a key with: {GENERATE_HINT}")
    keks = []
    for i, part in enumerate(parts):
        try:
            raw = base64.urlsafe_b64decode(
                part.replace("+", "-").replace("/", "_") + "=" * (-len(part) % 4)
            )
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEK_BYTES:
            raise ValueError(
                f"key {i + 1} is not {KEK_BYTES} bytes in URL-safe base64; "
                f"generate one with: {GENERATE_HINT}"
            )
        keks.append(raw)
    if len({kek_id(k) for k in keks}) != len(keks):
        raise ValueError("names the same key twice")
    return keks


def kek_id(kek: bytes) -> str:
    """Names a KEK without revealing it (a 256-bit random key: its hash leaks nothing)."""
    return hashlib.sha256(kek).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One sealed secret as stored (JSON), with what may be shown of it."""

    kek: str  # which KEK wrapped the DEK
    wrapped_dek: str
    dek_nonce: str
    ciphertext: str
    nonce: str
    fingerprint: str
    last4: str
    created_at: int

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": ENVELOPE_VERSION,
                "kek": self.kek,
                "wdek": self.wrapped_dek,
                "wn": self.dek_nonce,
                "ct": self.ciphertext,
                "n": self.nonce,
                "fp": self.fingerprint,
                "last4": self.last4,
                "at": self.created_at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> Envelope:
        d: dict[str, Any] = json.loads(raw)
        if d.get("v") != ENVELOPE_VERSION:
            raise VaultError(f"unknown envelope version {d.get('v')!r}")
        return cls(
            kek=d["kek"],
            wrapped_dek=d["wdek"],
            dek_nonce=d["wn"],
            ciphertext=d["ct"],
            nonce=d["n"],
            fingerprint=d["fp"],
            last4=d["last4"],
            created_at=int(d["at"]),
        )


class Vault:
    """The configured KEKs: the first wraps, every one unwraps."""

    def __init__(self, keks: list[bytes], *, fingerprint_secret: bytes) -> None:
        if not keks:
            raise ValueError("a vault needs at least one KEK")
        self._keks = {kek_id(k): AESGCM(k) for k in keks}
        self.current = kek_id(keks[0])
        self._fingerprint_secret = fingerprint_secret

    @property
    def kek_ids(self) -> list[str]:
        return list(self._keks)

    def fingerprint(self, secret: str) -> str:
        """Tells two stored keys apart, or a key changed, without confirming a guess of it
        offline (keyed by a secret shared through Redis, not a plain hash)."""
        mac = hmac.new(self._fingerprint_secret, secret.encode(), hashlib.sha256)
        return "hmac-sha256:" + mac.hexdigest()[:16]

    def seal(self, secret: str, *, aad: bytes, at: int) -> Envelope:
        dek = AESGCM.generate_key(bit_length=256)
        nonce, dek_nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(dek).encrypt(nonce, secret.encode(), aad)
        wrapped = self._keks[self.current].encrypt(dek_nonce, dek, self._dek_aad(aad))
        return Envelope(
            kek=self.current,
            wrapped_dek=_b64(wrapped),
            dek_nonce=_b64(dek_nonce),
            ciphertext=_b64(ciphertext),
            nonce=_b64(nonce),
            fingerprint=self.fingerprint(secret),
            last4=secret[-4:],
            created_at=at,
        )

    def open(self, envelope: Envelope, *, aad: bytes) -> str:
        dek = self._unwrap(envelope, aad)
        try:
            return (
                AESGCM(dek)
                .decrypt(_unb64(envelope.nonce), _unb64(envelope.ciphertext), aad)
                .decode()
            )
        except (InvalidTag, ValueError):
            raise VaultError("a stored provider key does not open: altered or moved") from None

    def rewrap(self, envelope: Envelope, *, aad: bytes) -> Envelope | None:
        """The same sealed secret, its DEK wrapped by the current KEK; None when it already is."""
        if envelope.kek == self.current:
            return None
        dek = self._unwrap(envelope, aad)
        dek_nonce = os.urandom(NONCE_BYTES)
        wrapped = self._keks[self.current].encrypt(dek_nonce, dek, self._dek_aad(aad))
        return Envelope(
            kek=self.current,
            wrapped_dek=_b64(wrapped),
            dek_nonce=_b64(dek_nonce),
            ciphertext=envelope.ciphertext,
            nonce=envelope.nonce,
            fingerprint=envelope.fingerprint,
            last4=envelope.last4,
            created_at=envelope.created_at,
        )

    def _unwrap(self, envelope: Envelope, aad: bytes) -> bytes:
        kek = self._keks.get(envelope.kek)
        if kek is None:
            raise VaultError(
                f"a stored provider key is wrapped by KEK {envelope.kek}, which "
                "GATEWAY_ENCRYPTION_KEY does not hold"
            )
        try:
            return kek.decrypt(
                _unb64(envelope.dek_nonce), _unb64(envelope.wrapped_dek), self._dek_aad(aad)
            )
        except (InvalidTag, ValueError):
            raise VaultError(f"KEK {envelope.kek} does not open a stored provider key") from None

    @staticmethod
    def _dek_aad(aad: bytes) -> bytes:
        return b"dek|" + aad

    # -- the canaries --------------------------------------------------------------------

    def canary(self) -> str:
        """CANARY sealed with the current KEK: proof, in Redis, that it wrapped something."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keks[self.current].encrypt(nonce, CANARY, b"canary")
        return _b64(nonce) + "." + _b64(sealed)

    def check(self, canaries: dict[str, str]) -> None:
        """Raise KekMismatch unless every KEK that wrapped something is configured and each
        configured KEK opens its own canary."""
        for kid, kek in self._keks.items():
            stored = canaries.get(kid)
            if stored is None:
                continue
            nonce, _, sealed = stored.partition(".")
            try:
                if kek.decrypt(_unb64(nonce), _unb64(sealed), b"canary") != CANARY:
                    raise InvalidTag
            except (InvalidTag, ValueError):
                raise KekMismatch(
                    f"GATEWAY_ENCRYPTION_KEY: KEK {kid} does not open its check value in Redis"
                ) from None
        missing = sorted(set(canaries) - set(self._keks))
        if missing:
            raise KekMismatch(
                "GATEWAY_ENCRYPTION_KEY does not hold the key-encryption key that wrapped the "
                f"stored provider keys (KEK {', '.join(missing)}; configured: "
                f"{', '.join(self._keks)}): a wrong key? During a rotation, list the new key "
                "first and the old one after it"
            )


def refuse_without_vault(canaries: dict[str, str]) -> None:
    """A gateway without a KEK must not start over stored provider keys it cannot open."""
    if canaries:
        raise KekMismatch(
            "Redis holds provider keys wrapped by KEK "
            f"{', '.join(sorted(canaries))}, but no GATEWAY_ENCRYPTION_KEY (or "
            "encryption_key_file) is configured"
        )
