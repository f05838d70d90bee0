"""Test access tokens for the gateway's token check, minted like Keycloak would sign them.

Writes into DIR: jwks-1.json (key k1, plus an encryption key the gateway must skip),
jwks-2.json (k1 and k2: Keycloak after a key rotation) and tokens.json, one token per case,
every one valid except for what its name says. Runs on the control node (python3-cryptography).

    python3 auth_tokens.py DIR --issuer https://gw1/realms/msa --audience echo --role echo-reader
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict:
    numbers = key.public_key().public_numbers()
    return {
        "kid": kid,
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "n": _b64(_uint(numbers.n)),
        "e": _b64(_uint(numbers.e)),
    }


def _sign(key: rsa.RSAPrivateKey, kid: str, claims: dict, alg: str = "RS256") -> str:
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()) if alg == "RS256" else b""
    return signing_input + "." + _b64(signature)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--role", required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)

    k1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    k2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption_key = dict(_jwk(k1, "enc-1"), use="enc", alg="RSA-OAEP")
    (args.dir / "jwks-1.json").write_text(json.dumps({"keys": [_jwk(k1, "k1"), encryption_key]}))
    (args.dir / "jwks-2.json").write_text(json.dumps({"keys": [_jwk(k1, "k1"), _jwk(k2, "k2"), encryption_key]}))

    now = int(time.time())
    valid = {
        "iss": args.issuer,
        "aud": [args.audience, "account"],
        "sub": "0b9e1a52-test-subject",
        "typ": "Bearer",
        "preferred_username": "alice",
        "iat": now,
        "exp": now + 3600,
        "realm_access": {"roles": ["offline_access", args.role]},
        "resource_access": {args.audience: {"roles": ["other"]}},
    }

    def claims(**changes: object) -> dict:
        return {**valid, **changes}

    good = _sign(k1, "k1", valid)
    head, body, signature = good.split(".")
    forged_body = _b64(json.dumps(claims(sub="admin")).encode())
    tokens = {
        "valid": good,
        "client_role": _sign(
            k1, "k1", claims(realm_access={"roles": []}, resource_access={args.audience: {"roles": [args.role]}})
        ),
        "tampered": f"{head}.{forged_body}.{signature}",
        "expired": _sign(k1, "k1", claims(exp=now - 600, iat=now - 900)),
        "wrong_audience": _sign(k1, "k1", claims(aud="some-other-client")),
        "wrong_issuer": _sign(k1, "k1", claims(iss=args.issuer.replace("/realms/", "/realms/x"))),
        "alg_none": _sign(k1, "k1", valid, alg="none"),
        "id_token": _sign(k1, "k1", claims(typ="ID")),
        "missing_role": _sign(k1, "k1", claims(realm_access={"roles": ["offline_access"]}, resource_access={})),
        "unknown_key": _sign(k2, "not-a-key", valid),
        "rotated": _sign(k2, "k2", valid),
    }
    (args.dir / "tokens.json").write_text(json.dumps(tokens, indent=1))


if __name__ == "__main__":
    main()
