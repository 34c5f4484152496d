"""JWTs: which key verifies which algorithm, the claims checked beside the signature (`aud`,
`iss`, `exp`, a non-empty `sub`, string profile claims), and our own words for every
refusal: PyJWT's messages (one held `<generator object Algorithm.check_crypto_key_type...>`)
never reach a client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import exceptions as jwt_errors

from gateway.errors import Unauthorized

if TYPE_CHECKING:
    from gateway.settings import Settings

PROFILE_CLAIMS = ("name", "family_name", "email")
MAX_PROFILE_CHARS = 320

# PyJWT's refusals, most specific first, in our words
_REFUSALS: tuple[tuple[type[jwt_errors.PyJWTError], str], ...] = (
    (jwt_errors.ImmatureSignatureError, "invalid JWT: not valid yet (nbf or iat)"),
    (jwt_errors.InvalidAudienceError, "invalid JWT: audience (aud) not accepted"),
    (jwt_errors.InvalidIssuerError, "invalid JWT: issuer (iss) not accepted"),
    (jwt_errors.InvalidSubjectError, "invalid JWT: sub must be a string"),
    (jwt_errors.InvalidSignatureError, "invalid JWT: the signature does not verify"),
    (jwt_errors.DecodeError, "invalid JWT: malformed"),
)


def public_key_algorithm(pem: str) -> tuple[str, Any]:
    """The one algorithm a PEM public key verifies (RS256 for RSA, ES256 for P-256), and the
    key loaded once. A key of another kind is a ValueError (settings refuse it at start)."""
    key = load_pem_public_key(pem.encode())
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256", key
    raise ValueError("must be a PEM RSA public key (RS256) or EC P-256 public key (ES256)")


class JwtVerifier:
    def __init__(self, settings: Settings) -> None:
        self.keys: dict[str, Any] = {}
        if settings.jwt_secret:
            self.keys["HS256"] = settings.jwt_secret
        if settings.jwt_public_key:
            alg, key = public_key_algorithm(settings.jwt_public_key)
            self.keys[alg] = key
        self.audience = list(settings.jwt_audience) or None
        self.issuer = settings.jwt_issuer
        self.required = ["sub", "exp"] if settings.jwt_require_exp else ["sub"]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims, or Unauthorized saying, in our words, what is wrong."""
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            key = self.keys.get(alg) if isinstance(alg, str) else None
            if not isinstance(alg, str) or key is None:
                known = isinstance(alg, str) and alg in jwt.algorithms.get_default_algorithms()
                shown = f" {alg!r}" if known else ""  # never echo what a caller made up
                raise Unauthorized(f"JWT algorithm{shown} is not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                # iat only says when the token was made: an identity provider whose clock
                # runs a second ahead must not have its fresh tokens refused (exp, nbf count)
                options={"require": self.required, "verify_iat": False},
            )
        except jwt_errors.MissingRequiredClaimError as exc:  # exc.claim is one of ours
            raise Unauthorized(f"invalid JWT: the {exc.claim} claim is required") from None
        except jwt_errors.ExpiredSignatureError:
            raise Unauthorized("token expired", code="token_expired") from None
        except jwt_errors.PyJWTError as exc:
            said = next((m for cls, m in _REFUSALS if isinstance(exc, cls)), "invalid JWT")
            raise Unauthorized(said) from None
        except (TypeError, ValueError):  # a header or claim of an unexpected JSON type
            raise Unauthorized("invalid JWT: malformed") from None
        _check_claims(claims)
        return claims


def _check_claims(claims: dict[str, Any]) -> None:
    if claims["sub"] == "":
        raise Unauthorized("invalid JWT: sub must not be empty")
    for name in PROFILE_CLAIMS:
        value = claims.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_PROFILE_CHARS):
            raise Unauthorized(
                f"invalid JWT: {name} must be a string of at most {MAX_PROFILE_CHARS} characters"
            )
