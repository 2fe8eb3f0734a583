"""Hand check of the Better Auth issuer: every algorithm, then key rotation.

    cd tests/betterauth && npm ci && ../../.venv/bin/python selfcheck.py [ALG ...]

Starts server.mjs once per algorithm, signs up a user, fetches a token and the JWKS,
prints what it sees and verifies the token with PyJWT (if installed) against the JWKS.
Exits non-zero on the first failed check.
"""

from __future__ import annotations

import sys
import time

import client as ba

KEY_MEMBERS = {"OKP": ("crv", "x"), "EC": ("crv", "x", "y"), "RSA": ("n", "e")}
EXPECTED = {
    "EdDSA": ("OKP", "Ed25519"),
    "ES256": ("EC", "P-256"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}


def pyjwt_verify(token: str, jwks: dict, base_url: str) -> str:
    try:
        import jwt  # PyJWT
    except ImportError:
        return "PyJWT not installed: skipped"
    header = jwt.get_unverified_header(token)
    jwk_set = jwt.PyJWKSet.from_dict(jwks)
    key = next(k for k in jwk_set.keys if k.key_id == header["kid"])
    claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=base_url, issuer=base_url)
    return f"PyJWT {jwt.__version__} verified (sub={claims['sub']})"


def check_alg(alg: str) -> None:
    t0 = time.monotonic()
    with ba.start_server(alg) as issuer:
        started = time.monotonic() - t0
        url = issuer.base_url
        user_id, cookie = ba.sign_up(url, f"{alg.lower()}@example.com", "correct-horse-battery", alg)
        token = ba.get_token(url, cookie)
        header, payload = ba.decode_unverified(token)
        jwks = ba.get_jwks(url)
        keys = {k["kid"]: k for k in jwks["keys"]}
        key = keys.get(header["kid"])
        kty, crv = EXPECTED[alg]
        print(f"== {alg}: started in {started:.2f}s at {url}")
        print(f"   header  {header}")
        print(f"   claims  {sorted(payload)}")
        print(f"   iss={payload['iss']} aud={payload['aud']} sub={payload['sub']} exp-iat={payload['exp'] - payload['iat']}")
        print(f"   jwks    {len(jwks['keys'])} key(s); members of the token's key: {sorted(key) if key else None}")
        assert header["alg"] == alg, header
        assert payload["sub"] == user_id and payload["iss"] == url and payload["aud"] == url, payload
        assert key is not None, f"kid {header['kid']} not in JWKS"
        assert key["kty"] == kty and key.get("alg") == alg, key
        assert all(m in key for m in KEY_MEMBERS[kty]), key
        if crv:
            assert key["crv"] == crv, key
        assert ba.decode_unverified(ba.get_session_jwt(url, cookie))[0]["kid"] == header["kid"]
        print(f"   {pyjwt_verify(token, jwks, url)}")


def check_rotation(alg: str = "EdDSA", interval: int = 3) -> None:
    with ba.start_server(alg, rotation_seconds=interval) as issuer:
        url = issuer.base_url
        _, cookie = ba.sign_up(url, "rotate@example.com", "correct-horse-battery", "R")
        first = ba.get_token(url, cookie)
        kid1 = ba.decode_unverified(first)[0]["kid"]
        same = ba.get_token(url, cookie)
        assert ba.decode_unverified(same)[0]["kid"] == kid1
        time.sleep(interval + 1)
        jwks_before = {k["kid"] for k in ba.get_jwks(url)["keys"]}
        second = ba.get_token(url, cookie)
        kid2 = ba.decode_unverified(second)[0]["kid"]
        jwks = ba.get_jwks(url)
        kids = [k["kid"] for k in jwks["keys"]]
        print(f"== rotation ({alg}, rotationInterval={interval}s)")
        print(f"   kid before {kid1}; after sleeping {interval + 1}s JWKS still {sorted(jwks_before)} until a signing")
        print(f"   kid after  {kid2}; JWKS now {kids}")
        assert kid2 != kid1 and kid1 in kids and kid2 in kids, (kid1, kid2, kids)
        print(f"   old token: {pyjwt_verify(first, jwks, url)}")
        print(f"   new token: {pyjwt_verify(second, jwks, url)}")


def main(argv: list[str]) -> int:
    for alg in argv or ba.ALGORITHMS:
        check_alg(alg)
    if not argv:
        check_rotation()
    print("selfcheck: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
