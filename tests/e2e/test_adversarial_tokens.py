"""'Prove it cannot be fooled': hostile tokens and Authorization headers.

Gap analysis against test_tokens.py / test_rules.py (which already cover the basics):
this file adds the attacks those files do not have, or only assert loosely, each with
the exact status and code and the proof (assert_denied) that the request never reached
the upstream.

Two configurations:
- `guard` (conftest, main config): inline HS256 secret (no kid) + inline JWKS, default
  max_token_bytes 8192. A kid-less secret stays a candidate key whatever kid a token
  names, so an HS256 forgery there is `bad_signature`; HS384/HS512 have no key at all
  (`unknown_key`).
- `guard_big` (here): the same JWKS and NO secret, max_token_bytes 65536 (the config
  maximum). Here no key verifies any HMAC algorithm, so every HMAC forgery is
  `unknown_key`, and a validly signed 40 KB token must pass.
"""

import base64
import datetime
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from harness import (INLINE_SECRET, JWKS_KEYS, assert_allowed, assert_denied, b64url, claims,
                     jwk_for, jwks, load_private_key, mint, now, public_pem, start_envoy,
                     stop_checked)

OWN = "/api/alice/profile"
BOB = "/api/bob/profile"
FAR_FUTURE = 4102444800  # 2100-01-01

BIG_CONFIG = {"jwks": jwks(), "max_token_bytes": 65536}


@pytest.fixture(scope="module")
def guard_big(module_path, workdir, upstream):
    envoy = start_envoy("guard-big", BIG_CONFIG, workdir, upstream)
    yield envoy
    stop_checked(envoy)


# ----------------------------------------------------------------------------- helpers

ALGS = get_default_algorithms()

# Attacker keys: never configured anywhere.
ATTACKER_ED = ed25519.Ed25519PrivateKey.generate()
ATTACKER_EC = ec.generate_private_key(ec.SECP256R1())
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_SECRET = "attacker-chosen-hmac-secret-0123456789abcdef"


def seg(part) -> str:
    """dict -> compact JSON, str -> JSON text as given, bytes -> raw bytes (both then
    base64url-encoded)."""
    if isinstance(part, dict):
        part = json.dumps(part, separators=(",", ":"))
    return b64url(part)


def sign(alg: str, key, message: bytes) -> bytes:
    """Signature of `message` with `alg`: key is a fixture file name, a private key
    object, or (HMAC) bytes/str used verbatim as the secret."""
    if alg.startswith("HS"):
        secret = key.encode() if isinstance(key, str) else key
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
                  "HS512": hashlib.sha512}[alg]
        return hmac.new(secret, message, digest).digest()
    if isinstance(key, str):
        key = load_private_key(key)
    return ALGS[alg].sign(message, key)


def forge(header, payload, key, alg: str | None = None) -> str:
    """A token over raw parts, correctly signed with `key` (see `sign`)."""
    alg = alg or header["alg"]
    signing_input = seg(header) + "." + seg(payload)
    return signing_input + "." + b64url(sign(alg, key, signing_input.encode()))


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parts(token: str) -> list[str]:
    return token.split(".")


def public_jwk(private_key) -> dict:
    pub = private_key.public_key()
    kind = {ed25519.Ed25519PublicKey: OKPAlgorithm, ec.EllipticCurvePublicKey: ECAlgorithm,
            rsa.RSAPublicKey: RSAAlgorithm}
    for cls, algorithm in kind.items():
        if isinstance(pub, cls):
            return algorithm.to_jwk(pub, as_dict=True)
    raise TypeError(pub)


def self_signed_cert_b64(private_key) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    start = datetime.datetime(2024, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(private_key.public_key()).serial_number(1)
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=9999))
            .sign(private_key, None))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def alice(**extra) -> dict:
    return claims(**extra)


# Every signing key of the main JWKS: kid -> (alg used, key file).
SIGNERS = {
    "ed-1": ("EdDSA", "ed25519.pem"),
    "ec-256": ("ES256", "p256.pem"),
    "ec-384": ("ES384", "p384.pem"),
    "rsa-1": ("RS256", "rsa2048.pem"),
}


def signed(kid: str, payload: dict | None = None) -> str:
    alg, key = SIGNERS[kid]
    return mint(payload, alg=alg, key=key, kid=kid)


# ============================================================================ algorithms


@pytest.mark.parametrize("alg", ["None", "nOnE", "NoNe", "nonE"])
def test_alg_none_unsigned_any_case_denied_unsupported_algorithm(guard, upstream, alg):
    # test_tokens covers "none"/"NONE" unsigned and four casings signed.
    token = seg({"alg": alg, "typ": "JWT"}) + "." + seg(alice()) + "."
    assert_denied(guard.request(path=OWN, token=token), 401, "unsupported_algorithm", upstream)


@pytest.mark.parametrize("alg", ["none", "None"])
def test_alg_none_with_kid_of_real_key_denied_unsupported_algorithm(guard, upstream, alg):
    token = seg({"alg": alg, "kid": "ed-1"}) + "." + seg(alice()) + "."
    assert_denied(guard.request(path=OWN, token=token), 401, "unsupported_algorithm", upstream)


def _key_bytes_variants(kid: str) -> dict[str, bytes]:
    """What an attacker might feed HMAC as 'the public key' of `kid`."""
    key_file = JWKS_KEYS[kid][0]
    pem = public_pem(key_file)
    pub = load_private_key(key_file).public_key()
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    jwk = jwk_for(key_file, kid, JWKS_KEYS[kid][1])
    material = jwk.get("x") or jwk.get("n")
    return {
        "pem": pem,
        "pem_no_newline": pem.rstrip(b"\n"),
        "der": der,
        "jwk_material_bytes": unb64(material),     # decoded x (OKP/EC) or n (RSA)
        "jwk_material_text": material.encode(),   # the base64url text itself
        "jwk_json": json.dumps(jwk, separators=(",", ":")).encode(),
    }


CONFUSION_KIDS = ["ed-1", "ec-256", "ec-384", "rsa-1"]
CONFUSION = [(kid, form) for kid in CONFUSION_KIDS for form in _key_bytes_variants(kid)]


@pytest.mark.parametrize("kid,form", CONFUSION, ids=[f"{k}-{f}" for k, f in CONFUSION])
def test_hs256_keyed_with_public_key_denied(guard, guard_big, upstream, kid, form):
    # Algorithm confusion: HS256 whose HMAC key is the configured public key of `kid`.
    secret = _key_bytes_variants(kid)[form]
    token = forge({"alg": "HS256", "kid": kid, "typ": "JWT"}, alice(), secret)
    # Main config: the kid-less HS256 secret is the only HS256 candidate -> wrong MAC.
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)
    # JWKS-only config: nothing verifies HS256 at all.
    assert_denied(guard_big.request(path=OWN, token=token), 401, "unknown_key", upstream)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
@pytest.mark.parametrize("kid", CONFUSION_KIDS)
def test_hs384_hs512_keyed_with_public_key_pem_denied_unknown_key(guard, guard_big, upstream,
                                                                 alg, kid):
    token = forge({"alg": alg, "kid": kid}, alice(), public_pem(JWKS_KEYS[kid][0]))
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)
    assert_denied(guard_big.request(path=OWN, token=token), 401, "unknown_key", upstream)


def test_hs256_keyed_with_public_key_pem_without_kid_denied(guard, guard_big, upstream):
    token = forge({"alg": "HS256"}, alice(), public_pem("ed25519.pem"))
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)
    assert_denied(guard_big.request(path=OWN, token=token), 401, "unknown_key", upstream)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_hs384_hs512_signed_with_the_real_hs256_secret_denied_unknown_key(guard, upstream,
                                                                          alg):
    # The secret is configured for HS256 only: the same secret under another HMAC
    # algorithm must find no key (test_tokens only tries another secret).
    token = forge({"alg": alg, "typ": "JWT"}, alice(), INLINE_SECRET)
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)


# ----------------------------------------------------------------------------- embedded keys


def test_eddsa_by_attacker_key_with_embedded_jwk_no_kid_denied_bad_signature(guard, upstream):
    header = {"alg": "EdDSA", "jwk": public_jwk(ATTACKER_ED)}
    token = forge(header, alice(), ATTACKER_ED)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_eddsa_by_attacker_key_with_embedded_jwk_own_kid_denied_unknown_key(guard, upstream):
    jwk = dict(public_jwk(ATTACKER_ED), kid="attacker")
    token = forge({"alg": "EdDSA", "kid": "attacker", "jwk": jwk}, alice(), ATTACKER_ED)
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)


@pytest.mark.parametrize("alg,key,kid", [
    ("EdDSA", ATTACKER_ED, "ed-1"),
    ("ES256", ATTACKER_EC, "ec-256"),
    ("RS256", ATTACKER_RSA, "rsa-1"),
    ("PS256", ATTACKER_RSA, "rsa-1"),
], ids=["EdDSA", "ES256", "RS256", "PS256"])
def test_attacker_key_embedded_as_jwk_with_configured_kid_denied_bad_signature(
        guard, upstream, alg, key, kid):
    jwk = dict(public_jwk(key), kid=kid)
    token = forge({"alg": alg, "kid": kid, "jwk": jwk}, alice(), key)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_hs256_by_attacker_secret_with_embedded_oct_jwk_denied(guard, guard_big, upstream):
    jwk = {"kty": "oct", "k": b64url(ATTACKER_SECRET), "alg": "HS256"}
    token = forge({"alg": "HS256", "jwk": jwk}, alice(), ATTACKER_SECRET)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)
    assert_denied(guard_big.request(path=OWN, token=token), 401, "unknown_key", upstream)


@pytest.mark.parametrize("member", ["jku", "x5u"])
def test_attacker_key_behind_jku_or_x5u_denied_and_never_fetched(guard, upstream, member):
    # Point the URL at the demo upstream (which logs every request): the filter must
    # not fetch it, so nothing with this path ever shows up there.
    path = f"/attacker-{member}.json"
    header = {"alg": "EdDSA", "kid": "attacker",
              member: f"http://127.0.0.1:{upstream.port}{path}"}
    token = forge(header, alice(), ATTACKER_ED)
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)
    header["kid"] = "ed-1"
    token = forge(header, alice(), ATTACKER_ED)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)
    assert not [r for r in upstream.records() if r["path"].startswith(path)]


def test_attacker_key_in_x5c_certificate_denied_bad_signature(guard, upstream):
    header = {"alg": "EdDSA", "kid": "ed-1", "x5c": [self_signed_cert_b64(ATTACKER_ED)]}
    token = forge(header, alice(), ATTACKER_ED)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


JUNK_KEY_HEADERS = {
    "jwk": {"kty": "oct", "k": "AAAA"},
    "jku": "http://evil.example/jwks.json",
    "x5u": "http://evil.example/cert.pem",
    "x5c": ["not-base64!", "AAAA"],
    "x5t": "junk",
    "x5t#S256": "junk",
}


@pytest.mark.parametrize("alg,key,kid", [
    ("HS256", INLINE_SECRET, None),
    ("EdDSA", "ed25519.pem", "ed-1"),
    ("ES256", "p256.pem", "ec-256"),
    ("RS256", "rsa2048.pem", "rsa-1"),
], ids=["HS256", "EdDSA", "ES256", "RS256"])
def test_valid_token_with_junk_key_headers_allowed(guard, upstream, alg, key, kid):
    headers = dict(JUNK_KEY_HEADERS, jwk=public_jwk(ATTACKER_ED))
    token = mint(alg=alg, key=key, kid=kid, headers=headers)
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")
    headers["jwk"] = {"kty": "oct", "k": "AAAA"}
    token = mint(alg=alg, key=key, kid=kid, headers=headers)
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")


# ----------------------------------------------------------------------------- crit


@pytest.mark.parametrize("crit", [[], "exp", ["b64"], None, {}],
                         ids=["empty_list", "string", "b64", "null", "object"])
def test_any_crit_header_denied_unsupported_crit(guard, upstream, crit):
    header = {"alg": "HS256", "crit": crit}
    if crit == ["b64"]:
        header["b64"] = False
    token = forge(header, alice(), INLINE_SECRET)
    assert_denied(guard.request(path=OWN, token=token), 401, "unsupported_crit", upstream)


def test_crit_on_eddsa_token_denied_unsupported_crit(guard, upstream):
    token = mint(alg="EdDSA", key="ed25519.pem", kid="ed-1",
                 headers={"crit": ["exp"], "exp": FAR_FUTURE})
    assert_denied(guard.request(path=OWN, token=token), 401, "unsupported_crit", upstream)


# ----------------------------------------------------------------------------- kid


HOSTILE_KIDS = {
    "no_such_kid": "no-such-kid",
    "path_traversal": "../../etc/passwd",
    "dev_null": "../../../../../../../../dev/null",
    "absolute_path": "/etc/passwd",
    "sql": "' OR 1=1 --",
    "sql_union": "ed-1' UNION SELECT 'x",
    "case_variant": "ED-1",
    "trailing_space": "ed-1 ",
    "prefix": "ed-",
    "empty": "",
    "nul": "ed-1\u0000",
    "crlf": "ed-1\r\nx-user-id: bob",
    "long": "k" * 4000,
    "url": "https://evil.example/jwks.json#ed-1",
}


@pytest.mark.parametrize("kid", list(HOSTILE_KIDS.values()), ids=list(HOSTILE_KIDS))
def test_eddsa_valid_signature_hostile_kid_denied_unknown_key(guard, upstream, kid):
    # Signed by the real ed-1 key, but the kid names no configured key. (Passed through
    # `headers`: mint(kid="") would drop an empty kid.)
    token = mint(alg="EdDSA", key="ed25519.pem", headers={"kid": kid})
    assert json.loads(unb64(parts(token)[0]))["kid"] == kid
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)


@pytest.mark.parametrize("kid,secret", [
    ("../../../../../../../../dev/null", b""),
    ("/etc/passwd", Path("/etc/passwd").read_bytes()),
    ("' OR 1=1 --", b"' OR 1=1 --"),
    ("' OR 1=1 --", b"0"),
    ("no-such-kid", ATTACKER_SECRET.encode()),
], ids=["dev_null_empty_key", "etc_passwd_contents", "sql_text_as_key", "sql_zero",
        "no_such_kid"])
def test_hs256_hostile_kid_with_guessable_key_denied(guard, guard_big, upstream, kid, secret):
    token = forge({"alg": "HS256", "kid": kid}, alice(), secret)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)
    assert_denied(guard_big.request(path=OWN, token=token), 401, "unknown_key", upstream)


# ============================================================================ signatures


ALL_SIGNED = {
    "HS256": lambda payload=None: mint(payload),
    "EdDSA": lambda payload=None: signed("ed-1", payload),
    "ES256": lambda payload=None: signed("ec-256", payload),
    "ES384": lambda payload=None: signed("ec-384", payload),
    "RS256": lambda payload=None: signed("rsa-1", payload),
    "PS256": lambda payload=None: mint(payload, alg="PS256", key="rsa2048.pem", kid="rsa-1"),
}


@pytest.mark.parametrize("alg", list(ALL_SIGNED))
def test_stripped_signature_denied_malformed_token(guard, upstream, alg):
    head, payload, _ = parts(ALL_SIGNED[alg]())
    token = f"{head}.{payload}."
    assert_denied(guard.request(path=OWN, token=token), 401, "malformed_token", upstream)


@pytest.mark.parametrize("alg", list(ALL_SIGNED))
def test_signature_one_byte_short_denied_bad_signature(guard, upstream, alg):
    head, payload, sig = parts(ALL_SIGNED[alg]())
    token = f"{head}.{payload}.{b64url(unb64(sig)[:-1])}"
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


@pytest.mark.parametrize("alg", list(ALL_SIGNED))
def test_signature_one_byte_extra_denied_bad_signature(guard, upstream, alg):
    head, payload, sig = parts(ALL_SIGNED[alg]())
    longer = b64url(unb64(sig) + b"\x00")
    token = f"{head}.{payload}.{longer}"
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


@pytest.mark.parametrize("alg", list(ALL_SIGNED))
def test_signature_half_length_denied_bad_signature(guard, upstream, alg):
    head, payload, sig = parts(ALL_SIGNED[alg]())
    token = f"{head}.{payload}.{b64url(unb64(sig)[: len(unb64(sig)) // 2])}"
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


@pytest.mark.parametrize("alg", ["ES256", "ES384"])
def test_ecdsa_signature_as_der_instead_of_raw_denied_bad_signature(guard, upstream, alg):
    # JWS wants r||s; a DER-encoded ECDSA signature of the same message must not verify.
    head, payload, sig = parts(ALL_SIGNED[alg]())
    raw = unb64(sig)
    half = len(raw) // 2
    der = encode_dss_signature(int.from_bytes(raw[:half], "big"),
                               int.from_bytes(raw[half:], "big"))
    token = f"{head}.{payload}.{b64url(der)}"
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_eddsa_signature_with_non_canonical_s_denied_bad_signature(guard, upstream):
    # S + L (L = the Ed25519 group order) satisfies the verification equation of a
    # lenient verifier; RFC 8032 section 5.1.7 requires S < L. Accepting it would make
    # tokens malleable.
    order = 2**252 + 27742317777372353535851937790883648493
    head, payload, sig = parts(signed("ed-1"))
    raw = unb64(sig)
    s_value = int.from_bytes(raw[32:], "little") + order
    forged = raw[:32] + s_value.to_bytes(32, "little")
    token = f"{head}.{payload}.{b64url(forged)}"
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


@pytest.mark.parametrize("alg,key,kid", [
    ("ES256", ATTACKER_EC, "ec-256"),
    ("RS256", ATTACKER_RSA, "rsa-1"),
    ("PS256", ATTACKER_RSA, "rsa-1"),
    ("EdDSA", ATTACKER_ED, None),
    ("RS256", ATTACKER_RSA, None),
], ids=["ES256", "RS256", "PS256", "EdDSA_no_kid", "RS256_no_kid"])
def test_signed_by_unconfigured_key_denied_bad_signature(guard, upstream, alg, key, kid):
    header = {"alg": alg} if kid is None else {"alg": alg, "kid": kid}
    token = forge(header, alice(), key)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_eddsa_signed_by_ed_2_under_kid_ed_1_denied_bad_signature(guard, upstream):
    token = mint(alg="EdDSA", key="ed25519-b.pem", kid="ed-1")
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


@pytest.mark.parametrize("alg", list(ALL_SIGNED))
def test_valid_signature_over_altered_payload_denied_bad_signature(guard, upstream, alg):
    # alice's real token, payload swapped for bob's, signature kept: aimed at bob.
    head, _, sig = parts(ALL_SIGNED[alg]())
    _, bob_payload, _ = parts(ALL_SIGNED[alg](claims(sub="bob")))
    token = f"{head}.{bob_payload}.{sig}"
    assert_denied(guard.request(path=BOB, token=token), 401, "bad_signature", upstream)


@pytest.mark.parametrize("alg", list(ALL_SIGNED))
def test_valid_signature_after_cached_use_then_altered_payload_denied(guard, upstream, alg):
    # A verified token used first (a verified-token cache, if any, now holds it), then
    # the same signature over a changed payload: must still be bad_signature.
    token = ALL_SIGNED[alg]()
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")
    head, _, sig = parts(token)
    payload = json.loads(unb64(parts(token)[1]))
    payload["sub"] = "bob"
    forged = f"{head}.{seg(payload)}.{sig}"
    assert_denied(guard.request(path=BOB, token=forged), 401, "bad_signature", upstream)
    assert_denied(guard.request(path=BOB, token=token), 403, "user_mismatch", upstream)


def test_header_swapped_kid_signature_kept_denied_bad_signature(guard, upstream):
    _, payload, sig = parts(signed("ed-1"))
    token = f"{seg({'alg': 'EdDSA', 'kid': 'ed-2', 'typ': 'JWT'})}.{payload}.{sig}"
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_header_swapped_rs256_to_ps256_signature_kept_denied_bad_signature(guard, upstream):
    token = signed("rsa-1")
    head = json.loads(unb64(parts(token)[0]))
    head["alg"] = "PS256"
    forged = ".".join([seg(head)] + parts(token)[1:])
    assert_denied(guard.request(path=OWN, token=forged), 401, "bad_signature", upstream)


# ----------------------------------------------------------------------------- base64 forms


def _token_with_dash_or_underscore_in(index: int) -> str:
    """A valid HS256 token whose segment `index` uses '-' or '_' (so that the standard
    alphabet spells it differently)."""
    for n in range(1000):
        token = mint(claims(jti=f"n{n}", note="??>>~~" * (n % 3)))
        if set(parts(token)[index]) & set("-_"):
            return token
    raise AssertionError("no token with '-' or '_' found")


def _std(segment: str) -> str:
    return segment.replace("-", "+").replace("_", "/")


@pytest.mark.parametrize("index", [0, 1, 2], ids=["header", "payload", "signature"])
def test_segment_in_standard_alphabet_denied_malformed_token(guard, upstream, index):
    if index == 0:
        # Force '-' or '_' into the header: kid chosen so its base64 contains one.
        token = mint(kid=None, headers={"x": "??>>"})
        assert set(parts(token)[0]) & set("-_"), token
    else:
        token = _token_with_dash_or_underscore_in(index)
    pieces = parts(token)
    pieces[index] = _std(pieces[index])
    assert_denied(guard.request(path=OWN, token=".".join(pieces)), 401, "malformed_token",
                  upstream)


@pytest.mark.parametrize("alg", ["HS256", "EdDSA", "RS256"])
def test_signature_with_base64_padding_denied_malformed_token(guard, upstream, alg):
    token = ALL_SIGNED[alg]()
    sig = parts(token)[2]
    padding = "=" * (-len(sig) % 4) or "=="
    assert_denied(guard.request(path=OWN, token=token + padding), 401, "malformed_token",
                  upstream)


@pytest.mark.parametrize("index", [0, 1], ids=["header", "payload"])
def test_padded_inner_segment_denied_invalid_authorization(guard, upstream, index):
    # '=' inside the credentials is not token68 (RFC 7235: '=' only at the very end), so
    # the Authorization header itself is refused.
    for n in range(50):
        token = mint(claims(jti="p" * n), headers={"x": "y" * n})
        if len(parts(token)[index]) % 4:
            break
    pieces = parts(token)
    pieces[index] += "=" * (-len(pieces[index]) % 4)
    assert_denied(guard.request(path=OWN, token=".".join(pieces)), 401,
                  "invalid_authorization", upstream)


def test_signature_with_noncanonical_trailing_bits_denied_malformed_token(guard, upstream):
    # The last of the 43 base64url characters of a 32-byte MAC carries 4 data bits and
    # 2 zero bits; setting a zero bit gives another string that lenient decoders read
    # as the same bytes. It must not be accepted as the same (valid) signature.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = mint()
    sig = parts(token)[2]
    assert len(sig) == 43
    last = alphabet.index(sig[-1])
    tweaked = sig[:-1] + alphabet[last | 0b0001]
    assert tweaked != sig and unb64(tweaked) == unb64(sig)  # lenient decoders agree
    forged = ".".join(parts(token)[:2] + [tweaked])
    assert_denied(guard.request(path=OWN, token=forged), 401, "malformed_token", upstream)


# ----------------------------------------------------------------------------- segments


def test_segment_counts_with_valid_pieces_denied(guard, upstream):
    token = mint()
    head, payload, sig = parts(token)
    cases = {
        f"{head}.{payload}": "malformed_token",           # 2 segments
        f"{token}.{sig}": "malformed_token",              # 4
        f"{token}.": "malformed_token",                   # 4, empty last
        f"{token}.{sig}.{sig}": "malformed_token",        # 5
        f"{head}.{payload}.{sig}.{payload}.{sig}": "malformed_token",
        f".{token}": "malformed_token",                   # empty first segment
        # An empty payload is valid base64url (of nothing); the payload's JSON is only
        # parsed once the signature holds, so a foreign signature is what fails first.
        f"{head}..{sig}": "bad_signature",
        forge({"alg": "HS256"}, "", INLINE_SECRET): "malformed_token",  # signed, empty
    }
    for value, code in cases.items():
        assert_denied(guard.request(path=OWN, token=value), 401, code, upstream)


def test_jwe_shaped_five_segment_token_denied_malformed_token(guard, upstream):
    header = seg({"alg": "RSA-OAEP", "enc": "A256GCM"})
    token = ".".join([header, "AAAA", "BBBB", "CCCC", "DDDD"])
    assert_denied(guard.request(path=OWN, token=token), 401, "malformed_token", upstream)


def test_header_segment_alone_denied_not_a_jwt(guard, upstream):
    head = parts(mint())[0]
    assert_denied(guard.request(path=OWN, token=head), 401, "not_a_jwt", upstream)


# ============================================================================ claims


@pytest.mark.parametrize("exp", [1, 0, -1, 1_000_000_000, now() - 86400 * 365],
                         ids=["one", "zero", "negative", "2001", "last_year"])
def test_exp_far_in_the_past_denied_token_expired(guard, upstream, exp):
    token = mint({"sub": "alice", "exp": exp})
    assert_denied(guard.request(path=OWN, token=token), 401, "token_expired", upstream)


@pytest.mark.parametrize("exp", ['"4102444800"', '"never"', "true", "{}"],
                         ids=["numeric_string", "word", "bool", "object"])
def test_exp_not_a_number_denied_invalid_claim(guard, upstream, exp):
    token = forge({"alg": "HS256"}, '{"sub":"alice","exp":%s}' % exp, INLINE_SECRET)
    assert_denied(guard.request(path=OWN, token=token), 401, "invalid_claim", upstream)


def test_exp_missing_on_eddsa_token_denied_missing_exp(guard, upstream):
    token = signed("ed-1", claims(ttl=None))
    assert_denied(guard.request(path=OWN, token=token), 401, "missing_exp", upstream)


@pytest.mark.parametrize("nbf", [FAR_FUTURE, now() + 120], ids=["year_2100", "two_minutes"])
def test_nbf_in_the_future_denied_token_not_yet_valid(guard, upstream, nbf):
    token = signed("ed-1", claims(nbf=nbf))
    assert_denied(guard.request(path=OWN, token=token), 401, "token_not_yet_valid", upstream)


@pytest.mark.parametrize("sub", ['""', "123", "0", '["bob"]', '["alice"]', "true", "null",
                                 '{"id":"alice"}', "1.5"],
                         ids=["empty", "number", "zero", "array_bob", "array_alice", "bool",
                              "null", "object", "float"])
def test_unusable_sub_denied_missing_user_on_own_and_other_path(guard, upstream, sub):
    token = forge({"alg": "HS256"}, '{"sub":%s,"exp":%d}' % (sub, FAR_FUTURE), INLINE_SECRET)
    assert_denied(guard.request(path=OWN, token=token), 401, "missing_user", upstream)
    assert_denied(guard.request(path=BOB, token=token), 401, "missing_user", upstream)


@pytest.mark.parametrize("sub", ['"bob"', "42", '["alice"]'], ids=["bob", "number", "array"])
def test_unusable_sub_never_falls_back_to_user_id(guard, upstream, sub):
    # sub present decides, even when user_id names the path's user.
    payload = '{"sub":%s,"user_id":"alice","exp":%d}' % (sub, FAR_FUTURE)
    token = forge({"alg": "HS256"}, payload, INLINE_SECRET)
    resp = guard.request(path=OWN, token=token)
    if sub == '"bob"':
        assert_denied(resp, 403, "user_mismatch", upstream)
    else:
        assert_denied(resp, 401, "missing_user", upstream)


DUPLICATES = {
    "sub_own_then_victim": '{"sub":"alice","sub":"bob","exp":%d}',
    "sub_victim_then_own": '{"sub":"bob","sub":"alice","exp":%d}',
    "sub_escaped_name": '{"sub":"alice","s\\u0075b":"bob","exp":%d}',
    "sub_same_value": '{"sub":"alice","sub":"alice","exp":%d}',
    "user_id_without_sub": '{"user_id":"alice","user_id":"bob","exp":%d}',
    "exp_late_then_early": '{"sub":"alice","exp":%d,"exp":1}',
    "iss_twice": '{"sub":"alice","iss":"a","iss":"b","exp":%d}',
}


@pytest.mark.parametrize("template", list(DUPLICATES.values()), ids=list(DUPLICATES))
@pytest.mark.parametrize("signer", ["HS256", "EdDSA"])
def test_duplicate_claims_validly_signed_denied_malformed_token(guard, upstream, template,
                                                                signer):
    payload = template % FAR_FUTURE
    if signer == "HS256":
        token = forge({"alg": "HS256"}, payload, INLINE_SECRET)
    else:
        token = forge({"alg": "EdDSA", "kid": "ed-1"}, payload, "ed25519.pem")
    for path in (OWN, BOB):
        assert_denied(guard.request(path=path, token=token), 401, "malformed_token", upstream)


@pytest.mark.parametrize("header", [
    '{"alg":"EdDSA","kid":"ed-1","kid":"ed-2"}',
    '{"alg":"EdDSA","kid":"ed-1","k\\u0069d":"ed-2"}',
    '{"alg":"EdDSA","alg":"EdDSA","kid":"ed-1"}',
    '{"alg":"EdDSA","kid":"ed-1","crit":[],"crit":[]}',
], ids=["kid_twice", "kid_escaped", "alg_twice_same", "crit_twice"])
def test_duplicate_header_members_validly_signed_denied_malformed_token(guard, upstream,
                                                                         header):
    token = forge(header, alice(), "ed25519.pem", alg="EdDSA")
    assert_denied(guard.request(path=OWN, token=token), 401, "malformed_token", upstream)


BAD_UTF8 = {
    "payload_ff": (None, b'{"sub":"alice","exp":4102444800,"name":"\xff"}'),
    "payload_overlong_slash": (None, b'{"sub":"alice","exp":4102444800,"n":"\xc0\xaf"}'),
    "payload_surrogate_bytes": (None, b'{"sub":"alice","exp":4102444800,"n":"\xed\xa0\x80"}'),
    "payload_lone_surrogate_escape": (None, b'{"sub":"alice\\ud800","exp":4102444800}'),
    "payload_truncated_sequence": (None, b'{"sub":"alic\xc3","exp":4102444800}'),
    "payload_bom": (None, b'\xef\xbb\xbf{"sub":"alice","exp":4102444800}'),
    "header_ff": (b'{"alg":"HS256","x":"\xff"}', None),
    "header_bom": (b'\xef\xbb\xbf{"alg":"HS256"}', None),
}


@pytest.mark.parametrize("header,payload", list(BAD_UTF8.values()), ids=list(BAD_UTF8))
def test_invalid_utf8_or_bom_validly_signed_denied_malformed_token(guard, upstream, header,
                                                                   payload):
    token = forge(header or {"alg": "HS256"}, payload or alice(), INLINE_SECRET, alg="HS256")
    assert_denied(guard.request(path=OWN, token=token), 401, "malformed_token", upstream)


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize("where", ["payload", "header"])
def test_deeply_nested_json_within_default_limit_denied_malformed_token(guard, upstream,
                                                                         where):
    # 2,500 levels still fit in 8192 bytes of token; serde_json's depth limit refuses it.
    deep = _nested(2500)
    if where == "payload":
        token = forge({"alg": "HS256"}, '{"sub":"alice","exp":%d,"x":%s}' % (FAR_FUTURE, deep),
                      INLINE_SECRET)
    else:
        token = forge('{"alg":"HS256","x":%s}' % deep, alice(), INLINE_SECRET, alg="HS256")
    assert len(token) <= 8192
    assert_denied(guard.request(path=OWN, token=token), 401, "malformed_token", upstream)
    assert_allowed(guard.request(path=OWN, token=mint()), upstream, "alice")


def test_ten_thousand_levels_over_default_limit_denied_token_too_large(guard, upstream):
    token = forge({"alg": "HS256"}, '{"sub":"alice","x":%s}' % _nested(10_000), INLINE_SECRET)
    assert len(token) > 8192
    assert_denied(guard.request(path=OWN, token=token), 401, "token_too_large", upstream)


@pytest.mark.parametrize("where", ["payload", "header"])
def test_ten_thousand_levels_validly_signed_denied_malformed_token(guard_big, upstream, where):
    deep = _nested(10_000)
    if where == "payload":
        payload = '{"sub":"alice","exp":%d,"x":%s}' % (FAR_FUTURE, deep)
        token = forge({"alg": "EdDSA", "kid": "ed-1"}, payload, "ed25519.pem")
    else:
        header = '{"alg":"EdDSA","kid":"ed-1","x":%s}' % deep
        token = forge(header, alice(), "ed25519.pem", alg="EdDSA")
    assert 20_000 < len(token) <= 65536
    assert_denied(guard_big.request(path=OWN, token=token), 401, "malformed_token", upstream)
    # The VM survived (a stack overflow would trap it and fail every later request).
    assert_allowed(guard_big.request(path=OWN, token=signed("ed-1")), upstream, "alice")


def _forty_kb_payload() -> dict:
    return claims(pad="x" * 40_000)


def test_40kb_claim_default_limit_denied_token_too_large(guard, upstream):
    token = mint(_forty_kb_payload())
    assert len(token) > 40_000
    assert_denied(guard.request(path=OWN, token=token), 401, "token_too_large", upstream)


@pytest.mark.parametrize("kid", ["ed-1", "rsa-1", "ec-256"])
def test_40kb_claim_validly_signed_with_65536_limit_allowed(guard_big, upstream, kid):
    token = signed(kid, _forty_kb_payload())
    assert 40_000 < len(token) <= 65536
    record = assert_allowed(guard_big.request(path=OWN, token=token), upstream, "alice")
    assert record["headers"]["authorization"] == "Bearer " + token


def test_40kb_claim_with_65536_limit_other_user_forbidden(guard_big, upstream):
    token = signed("ed-1", claims(sub="alice", pad="x" * 40_000))
    assert_denied(guard_big.request(path=BOB, token=token), 403, "user_mismatch", upstream)


def test_40kb_claim_tampered_with_65536_limit_denied_bad_signature(guard_big, upstream):
    head, payload, sig = parts(signed("ed-1", _forty_kb_payload()))
    tampered = seg(claims(sub="bob", pad="x" * 40_000))
    token = f"{head}.{tampered}.{sig}"
    assert_denied(guard_big.request(path=BOB, token=token), 401, "bad_signature", upstream)


def test_token_over_envoy_header_limit_never_reaches_upstream(guard_big, upstream):
    # Envoy's default request-header limit (60 KiB) is below the filter's 65536 maximum:
    # Envoy itself answers 431 before any filter runs.
    token = signed("ed-1", claims(pad="x" * 64_000))
    resp = guard_big.request(path=OWN, token=token)
    assert resp.status == 431, resp
    assert not upstream.saw(resp.test_id)


def test_token_used_then_expiring_denied_token_expired(guard_rules, upstream):
    # guard_rules has clock_skew_seconds 0. A token verified (and so possibly cached)
    # while valid must stop working the second its exp passes.
    exp = now() + 3
    payload = {"sub": "alice", "exp": exp, "iss": "https://auth.example.com",
               "aud": "https://api.example.com"}
    token = mint(payload, alg="EdDSA", key="ed25519.pem", kid="ed-1")
    for _ in range(2):
        assert_allowed(guard_rules.request(path="/api/alice/x", token=token), upstream,
                       "alice", user_header="x-auth-user")
    time.sleep(max(0.0, exp - time.time()) + 0.2)
    assert_denied(guard_rules.request(path="/api/alice/x", token=token), 401, "token_expired",
                  upstream, realm="demo-api")


# ----------------------------------------------------------------------------- iss / aud


def test_eddsa_wrong_issuer_denied_wrong_issuer(guard_rules, upstream):
    payload = claims(iss="https://evil.example.com", aud="https://api.example.com")
    token = mint(payload, alg="EdDSA", key="ed25519.pem", kid="ed-1")
    assert_denied(guard_rules.request(path="/api/alice/x", token=token), 401, "wrong_issuer",
                  upstream, realm="demo-api")


def test_eddsa_wrong_audience_denied_wrong_audience(guard_rules, upstream):
    payload = claims(iss="https://auth.example.com", aud="https://evil.example.com")
    token = mint(payload, alg="EdDSA", key="ed25519.pem", kid="ed-1")
    assert_denied(guard_rules.request(path="/api/alice/x", token=token), 401, "wrong_audience",
                  upstream, realm="demo-api")


# ============================================================================ headers


@pytest.mark.parametrize("template", [
    "bearer {t}", "BEARER {t}", "bEaReR {t}", "Bearer  {t}", "Bearer     {t}",
    "Bearer {t} ", "Bearer {t}   ", "Bearer {t}\t", "  Bearer {t}", "\tBearer {t}",
], ids=["lower", "upper", "mixed", "two_spaces", "five_spaces", "trailing_space",
        "trailing_spaces", "trailing_tab", "leading_spaces", "leading_tab"])
def test_authorization_scheme_case_and_spaces_allowed(guard, upstream, template):
    value = template.format(t=mint()).encode()
    resp = guard.raw(b"GET " + OWN.encode() + b" HTTP/1.1", [b"Authorization: " + value])
    assert_allowed(resp, upstream, "alice")


@pytest.mark.parametrize("template", [
    "Bearer\t{t}", "Bearer \t{t}", "Bearer\t \t{t}", "Bearer {t}\tx", "Bearer {t} x",
    "Bearer {t}, Bearer {t}", "Bearer {t},", "Bearer: {t}", "Bearer={t}", "Bearer{t}",
    "Bearer \"{t}\"", "Bearer\xa0{t}", "Bearer {t}\xa0", "Bearer\r{t}",
], ids=["tab", "space_tab", "tabs_mixed", "tab_then_junk", "space_then_junk",
        "comma_joined", "trailing_comma", "colon", "equals", "no_separator", "quoted",
        "nbsp", "trailing_nbsp", "bare_cr"])
def test_authorization_malformed_whitespace_denied_invalid_authorization(guard, upstream,
                                                                         template):
    value = template.format(t=mint()).encode("latin-1")
    resp = guard.raw(b"GET " + OWN.encode() + b" HTTP/1.1", [b"Authorization: " + value])
    assert_denied(resp, 401, "invalid_authorization", upstream)


@pytest.mark.parametrize("second", [
    b"Authorization: Bearer {t}", b"authorization: Bearer {t}",
    b"AUTHORIZATION: Basic YWxpY2U6cHc=", b"Authorization: Bearer {bob}",
], ids=["same_token", "lower_name_same_token", "basic", "other_token"])
def test_two_authorization_headers_denied_invalid_authorization(guard, upstream, second):
    token, bob = mint().encode(), mint(claims(sub="bob")).encode()
    second = second.replace(b"{t}", token).replace(b"{bob}", bob)
    resp = guard.raw(b"GET " + OWN.encode() + b" HTTP/1.1",
                     [b"Authorization: Bearer " + token, second])
    assert_denied(resp, 401, "invalid_authorization", upstream)


@pytest.mark.parametrize("value", [b"Bearer {t}\x0b", b"Bearer {t}\x00"],
                         ids=["vertical_tab", "nul"])
def test_authorization_with_control_bytes_refused_by_envoy_codec(guard, upstream, value):
    # Envoy's HTTP/1 codec answers a plain 400 itself; nothing reaches the filter.
    value = value.replace(b"{t}", mint().encode())
    resp = guard.raw(b"GET " + OWN.encode() + b" HTTP/1.1", [b"Authorization: " + value])
    assert resp.status == 400 and resp.error_code() is None, resp
    assert not upstream.saw(resp.test_id)


@pytest.mark.parametrize("empty_first", [False, True], ids=["empty_second", "empty_first"])
def test_empty_second_authorization_header_dropped_by_envoy_allowed(guard, upstream,
                                                                    empty_first):
    # Envoy drops an empty-valued header before any filter runs, so the filter (and the
    # upstream) see exactly one Authorization header. Not a second credential.
    lines = [b"Authorization: Bearer " + mint().encode(), b"Authorization:"]
    if empty_first:
        lines.reverse()
    resp = guard.raw(b"GET " + OWN.encode() + b" HTTP/1.1", lines)
    record = assert_allowed(resp, upstream, "alice")
    assert isinstance(record["headers"]["authorization"], str), record


def _token_elsewhere(token: str) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Ways a client might offer the token without an Authorization header:
    name -> (query suffix, extra headers)."""
    return {
        "query_access_token": (f"?access_token={token}", []),
        "query_token": (f"?token={token}", []),
        "query_jwt": (f"?jwt={token}", []),
        "query_authorization": (f"?authorization=Bearer%20{token}", []),
        "cookie_token": ("", [("Cookie", f"token={token}")]),
        "cookie_access_token": ("", [("Cookie", f"a=b; access_token={token}")]),
        "cookie_better_auth": ("", [("Cookie", f"better-auth.session_token={token}")]),
        "cookie_authorization": ("", [("Cookie", f"Authorization=Bearer {token}")]),
        "x_access_token_header": ("", [("X-Access-Token", token)]),
        "x_auth_token_header": ("", [("X-Auth-Token", token)]),
        "proxy_authorization": ("", [("Proxy-Authorization", f"Bearer {token}")]),
        "x_forwarded_authorization": ("", [("X-Forwarded-Authorization", f"Bearer {token}")]),
        "query_and_cookie": (f"?access_token={token}", [("Cookie", f"token={token}")]),
    }


ELSEWHERE = list(_token_elsewhere("T"))


@pytest.mark.parametrize("where", ELSEWHERE)
@pytest.mark.parametrize("path", [OWN, "/other/resource"], ids=["user_rule", "token_rule"])
def test_token_outside_authorization_ignored_denied_missing_token(guard, upstream, where,
                                                                  path):
    query, headers = _token_elsewhere(mint())[where]
    resp = guard.request(path=path + query, headers=headers)
    assert_denied(resp, 401, "missing_token", upstream)


def test_bad_authorization_not_rescued_by_valid_token_in_query_or_cookie(guard, upstream):
    good = mint()
    bad = mint(key="wrong-secret-" + "0" * 32)
    resp = guard.request(path=f"{OWN}?access_token={good}&token={good}", token=bad,
                         headers=[("Cookie", f"token={good}; access_token={good}")])
    assert_denied(resp, 401, "bad_signature", upstream)
