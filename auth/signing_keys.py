"""The JSON Web Key Set that signs access tokens: the first key signs (its kid in the header),
every key verifies, so keys rotate by adding one in front and later dropping the old one.
Only EdDSA is accepted: `alg: none`, HMAC with a public key as secret and RSA are refused."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ["exp", "iat", "sub", "tid", "aud", "iss"]


class SigningKeyError(ValueError):
    pass


class TokenError(Exception):
    pass


class SigningKeys:
    def __init__(self, keys: list[tuple[str, Any]], signer: Any) -> None:
        self._verifiers = dict(keys)
        self.signing_kid = keys[0][0]
        self._signer = signer

    @classmethod
    def from_jwks_json(cls, text: str) -> SigningKeys:
        try:
            data = json.loads(text)
            entries = data["keys"]
        except (ValueError, KeyError, TypeError):
            raise SigningKeyError("signing keys: not a JSON Web Key Set") from None
        if not isinstance(entries, list) or not entries:
            raise SigningKeyError("signing keys: the set is empty")
        keys: list[tuple[str, Any]] = []
        signer = None
        for i, jwk in enumerate(entries):
            kid = jwk.get("kid") if isinstance(jwk, dict) else None
            if not kid:
                raise SigningKeyError("signing keys: every key needs a kid")
            if any(k == kid for k, _ in keys):
                raise SigningKeyError(f"signing keys: duplicate kid {kid}")
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise SigningKeyError(f"signing keys: key {kid} is not an Ed25519 key")
            try:
                key = OKPAlgorithm.from_jwk(json.dumps(jwk))
            except Exception:  # noqa: BLE001 - PyJWT raises several kinds for bad keys
                raise SigningKeyError(f"signing keys: key {kid} cannot be read") from None
            if i == 0:
                if not isinstance(key, Ed25519PrivateKey):
                    raise SigningKeyError("signing keys: the first key must be a private key")
                signer = key
                key = key.public_key()
            elif isinstance(key, Ed25519PrivateKey):
                key = key.public_key()
            keys.append((kid, key))
        return cls(keys, signer)

    @classmethod
    def load_file(cls, path: Path) -> SigningKeys:
        try:
            return cls.from_jwks_json(path.read_text())
        except OSError as exc:
            raise SigningKeyError(f"signing keys: cannot read {path}: {exc.strerror}") from None

    @staticmethod
    def _new_jwk(kid: str | None) -> dict[str, Any]:
        jwk = json.loads(OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate()))
        jwk.update(kid=kid or secrets.token_hex(8), alg=ALGORITHM, use="sig")
        return jwk

    @staticmethod
    def generate_jwks_json(kid: str | None = None) -> str:
        return json.dumps({"keys": [SigningKeys._new_jwk(kid)]}, indent=2)

    @staticmethod
    def rotate_jwks_json(existing: str, kid: str | None = None) -> str:
        keys = json.loads(existing)["keys"]
        return json.dumps({"keys": [SigningKeys._new_jwk(kid), *keys]}, indent=2)

    def sign(self, claims: dict[str, Any], token_type: str = "at+jwt") -> str:
        return jwt.encode(
            claims,
            self._signer,
            algorithm=ALGORITHM,
            headers={"kid": self.signing_kid, "typ": token_type},
        )

    def verify(
        self,
        token: str,
        *,
        audience: str,
        issuer: str,
        leeway: int = 10,
        token_type: str = "at+jwt",
    ) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
        key = self._verifiers.get(header.get("kid", ""))
        if key is None or header.get("alg") != ALGORITHM or header.get("typ") != token_type:
            raise TokenError("invalid token")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=audience,
                issuer=issuer,
                leeway=leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
