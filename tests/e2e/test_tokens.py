"""Tokens against the main configuration: inline HS256 secret + inline JWKS, default
rules (user on /api/{user_id}/**, token everywhere else), default options."""

import base64
import hashlib
import hmac
import http.client
import uuid

import pytest

from harness import (INLINE_SECRET, SHADOWED_ENV_SECRET, assert_allowed, assert_denied, b64url,
                     claims, craft, mint, now, public_pem)

OWN = "/api/alice/profile"

# ----------------------------------------------------------------------------- allowed


def test_own_path_hs256_token_allowed_with_user_header(guard, upstream):
    record = assert_allowed(guard.request(path=OWN, token=mint()), upstream, "alice")
    assert record["path"] == OWN


def test_own_path_without_trailing_segments_allowed(guard, upstream):
    assert_allowed(guard.request(path="/api/alice", token=mint()), upstream, "alice")


def test_own_path_post_with_body_allowed(guard, upstream):
    resp = guard.request("POST", OWN, token=mint(), body=b'{"a":1}',
                         headers={"content-type": "application/json"})
    record = assert_allowed(resp, upstream, "alice")
    assert record["body"] == '{"a":1}'


def test_token_rule_path_valid_token_allowed_with_user_header(guard, upstream):
    assert_allowed(guard.request(path="/health/deep", token=mint()), upstream, "alice")


def test_spoofed_user_header_on_allowed_request_replaced(guard, upstream):
    resp = guard.request(path=OWN, token=mint(),
                         headers=[("X-User-Id", "bob"), ("x-user-id", "mallory")])
    assert_allowed(resp, upstream, "alice")


def test_spoofed_user_header_on_token_rule_path_replaced(guard, upstream):
    resp = guard.request(path="/other", token=mint(), headers={"X-USER-ID": "admin"})
    assert_allowed(resp, upstream, "alice")


def test_spoofed_user_header_with_non_utf8_bytes_replaced(guard, upstream):
    resp = guard.raw(b"GET " + OWN.encode() + b" HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode(), b"x-user-id: \xff\xfebob"])
    assert_allowed(resp, upstream, "alice")


def test_missing_sub_user_id_claim_used(guard, upstream):
    token = mint(claims(sub=None, user_id="alice"))
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")


def test_empty_sub_with_user_id_denied_missing_user(guard, upstream):
    # The first user claim PRESENT decides: an unusable sub is not skipped in favour of
    # user_id (deliberate in src/claims.rs; the brief's wording said "first non-empty").
    token = mint(claims(sub="", user_id="alice"))
    assert_denied(guard.request(path=OWN, token=token), 401, "missing_user", upstream)


def test_sub_and_user_id_both_present_sub_wins(guard, upstream):
    token = mint(claims(sub="alice", user_id="bob"))
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")
    assert_denied(guard.request(path="/api/bob/x", token=token), 403, "user_mismatch", upstream)


def test_user_id_with_special_characters_bound_to_encoded_segment(guard, upstream):
    token = mint(claims(sub="user@example.com"))
    resp = guard.request(path="/api/user%40example.com/x", token=token)
    assert_allowed(resp, upstream, "user@example.com")


def test_hs256_secret_latin1_bytes_denied_bad_signature(guard, upstream):
    # INLINE_SECRET contains '/', '+', '=' and a non-ASCII letter. Tokens signed with its
    # UTF-8 bytes are accepted (every HS256 test here); its Latin-1 bytes are another key.
    assert "\u00df" in INLINE_SECRET
    token = mint(key=INLINE_SECRET.encode("latin-1"))
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_inline_secret_set_env_secret_ignored(guard, upstream):
    token = mint(key=SHADOWED_ENV_SECRET)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_token_near_max_size_allowed(guard, upstream):
    token = mint(claims(pad="x" * 5800))
    assert 7000 < len(token) <= 8192
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")


def test_exp_within_clock_skew_allowed(guard, upstream):
    token = mint(claims(ttl=-20))
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")


def test_nbf_within_clock_skew_allowed(guard, upstream):
    token = mint(claims(nbf=now() + 20))
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")


def test_numeric_date_as_float_allowed(guard, upstream):
    token = mint({"sub": "alice", "exp": now() + 600.5, "nbf": now() - 1.5})
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")


# ----------------------------------------------------------------------------- user binding


def test_other_users_path_valid_token_forbidden(guard, upstream):
    resp = guard.request(path="/api/bob/profile", token=mint())
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_other_users_path_upper_case_literal_forbidden(guard, upstream):
    resp = guard.request(path="/API/bob/profile", token=mint())
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_own_path_mixed_case_literal_allowed(guard, upstream):
    assert_allowed(guard.request(path="/Api/alice/profile", token=mint()), upstream, "alice")


def test_user_segment_differing_in_case_forbidden(guard, upstream):
    resp = guard.request(path="/api/Alice/profile", token=mint())
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_user_segment_percent_encoded_own_id_allowed(guard, upstream):
    assert_allowed(guard.request(path="/api/%61lice/profile", token=mint()), upstream, "alice")


def test_user_segment_percent_encoded_other_id_forbidden(guard, upstream):
    resp = guard.request(path="/api/%62ob/profile", token=mint())
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_user_prefix_of_segment_forbidden(guard, upstream):
    resp = guard.request(path="/api/alice2/profile", token=mint())
    assert_denied(resp, 403, "user_mismatch", upstream)


# ----------------------------------------------------------------------------- Authorization


def test_no_authorization_header_denied_missing_token(guard, upstream):
    assert_denied(guard.request(path=OWN), 401, "missing_token", upstream)


def test_no_authorization_on_token_rule_path_denied_missing_token(guard, upstream):
    assert_denied(guard.request(path="/"), 401, "missing_token", upstream)


@pytest.mark.parametrize("value", [
    "Basic YWxpY2U6cGFzc3dvcmQ=",
    "Token abc.def.ghi",
    "Bearer",
    "Bearer ",
    "Bearer abc$def",
    "Bearer abc def",
    "Bearer eyJ\"x",
], ids=["basic", "other_scheme", "scheme_only", "scheme_space", "dollar", "space", "quote"])
def test_authorization_malformed_denied_invalid_authorization(guard, upstream, value):
    resp = guard.request(path=OWN, headers={"Authorization": value})
    assert_denied(resp, 401, "invalid_authorization", upstream)


def test_two_authorization_headers_denied_invalid_authorization(guard, upstream):
    token = mint().encode()
    resp = guard.raw(b"GET " + OWN.encode() + b" HTTP/1.1",
                     [b"Authorization: Bearer " + token, b"Authorization: Bearer " + token])
    assert_denied(resp, 401, "invalid_authorization", upstream)


def test_authorization_non_utf8_denied_and_vm_survives(guard, upstream):
    resp = guard.raw(b"GET " + OWN.encode() + b" HTTP/1.1",
                     [b"Authorization: Bearer \xff\xfe\xfd"])
    assert_denied(resp, 401, "invalid_authorization", upstream)
    assert_allowed(guard.request(path=OWN, token=mint()), upstream, "alice")


def test_token_over_max_bytes_denied_token_too_large(guard, upstream):
    token = mint(claims(pad="x" * 7000))
    assert len(token) > 8192
    assert_denied(guard.request(path=OWN, token=token), 401, "token_too_large", upstream)


def test_huge_opaque_token_denied_token_too_large(guard, upstream):
    resp = guard.request(path=OWN, token="a" * 20000)
    assert_denied(resp, 401, "token_too_large", upstream)


def test_opaque_session_token_denied_not_a_jwt(guard, upstream):
    resp = guard.request(path=OWN, token="Xk3sP9qLmN2vR7tY1wZ4aB6cD8eF0gH5")
    assert_denied(resp, 401, "not_a_jwt", upstream)


# ----------------------------------------------------------------------------- malformed

HS = {"alg": "HS256", "typ": "JWT"}
GOOD = {"sub": "alice", "exp": 4102444800}


def _with_segment(index: int, value: str) -> str:
    parts = craft(HS, GOOD).split(".")
    parts[index] = value
    return ".".join(parts)


MALFORMED = {
    "two_segments": craft(HS, GOOD).rsplit(".", 1)[0],
    "four_segments": craft(HS, GOOD) + ".x",
    "five_segments": craft(HS, GOOD) + ".a.b",
    "empty_header": craft(b"", GOOD),
    "payload_plus_alphabet": craft(HS, b"eyJzdWIiOiJhbGljZSJ9+A"),
    "payload_slash_alphabet": craft(HS, b"eyJzdWIiOiJhbGljZSJ9/A"),
    "signature_plus_alphabet": _with_segment(2, "ab+cd"),
    "signature_padding": _with_segment(2, craft(HS, GOOD).split(".")[2] + "="),
    "header_bad_json": craft('{"alg":"HS256"', GOOD),
    "payload_bad_json": craft(HS, '{"sub":"alice",'),
    "payload_not_utf8": craft(HS, b64url(b'{"sub":"\xff"}').encode()),
    "payload_duplicate_sub": craft(HS, '{"sub":"alice","exp":4102444800,"sub":"bob"}'),
    "payload_duplicate_exp": craft(HS, '{"sub":"alice","exp":4102444800,"exp":1}'),
    "header_duplicate_alg": craft('{"alg":"HS256","alg":"none"}', GOOD),
    "payload_array": craft(HS, "[1,2]"),
    "payload_string": craft(HS, '"alice"'),
    "payload_null": craft(HS, "null"),
    "header_array": craft('["HS256"]', GOOD),
}


@pytest.mark.parametrize("segment", [0, 1], ids=["header", "payload"])
def test_padding_inside_token_denied_401(guard, upstream, segment):
    # '=' padding on the header or payload segment: token68 allows '=' only at the very
    # end, so either invalid_authorization or malformed_token is right.
    token = _with_segment(segment, craft(HS, GOOD).split(".")[segment] + "=")
    resp = guard.request(path=OWN, token=token)
    assert resp.status == 401, resp
    assert resp.error_code() in ("invalid_authorization", "malformed_token"), resp
    assert not upstream.saw(resp.test_id)


@pytest.mark.parametrize("token", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_token_denied_malformed_token(guard, upstream, token):
    assert_denied(guard.request(path=OWN, token=token), 401, "malformed_token", upstream)


# ----------------------------------------------------------------------------- header checks


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_signed_denied_unsupported_algorithm(guard, upstream, alg):
    token = craft({"alg": alg, "typ": "JWT"}, GOOD)
    assert_denied(guard.request(path=OWN, token=token), 401, "unsupported_algorithm", upstream)


@pytest.mark.parametrize("alg", ["none", "NONE"])
def test_alg_none_empty_signature_denied_unsupported_algorithm(guard, upstream, alg):
    # The canonical unsecured JWS (RFC 7519 section 6.1): "header.payload." .
    token = craft({"alg": alg, "typ": "JWT"}, GOOD, signature="")
    assert_denied(guard.request(path=OWN, token=token), 401, "unsupported_algorithm", upstream)


@pytest.mark.parametrize("alg", ["HS999", "hs256", "RSA-OAEP", ""])
def test_unknown_alg_denied_unsupported_algorithm(guard, upstream, alg):
    token = craft({"alg": alg}, GOOD)
    assert_denied(guard.request(path=OWN, token=token), 401, "unsupported_algorithm", upstream)


@pytest.mark.parametrize("header", [{"typ": "JWT"}, {"alg": 256}, {"alg": None}],
                         ids=["absent", "number", "null"])
def test_alg_absent_or_not_string_denied_401(guard, upstream, header):
    # The contract names no code for this; either of these two is acceptable.
    resp = guard.request(path=OWN, token=craft(header, GOOD))
    assert resp.status == 401, resp
    assert resp.error_code() in ("malformed_token", "unsupported_algorithm"), resp
    assert not upstream.saw(resp.test_id)


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["http://example.com/ext"]])
def test_crit_header_denied_unsupported_crit(guard, upstream, crit):
    token = mint(headers={"crit": crit})
    assert_denied(guard.request(path=OWN, token=token), 401, "unsupported_crit", upstream)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_hmac_alg_without_secret_for_it_denied_unknown_key(guard, upstream, alg):
    token = mint(alg=alg, key=INLINE_SECRET * 2)
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)


def test_kid_matching_no_key_denied_unknown_key(guard, upstream):
    token = mint(alg="EdDSA", key="ed25519.pem", kid="no-such-kid")
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)


def test_es256_token_with_p384_kid_denied_unknown_key(guard, upstream):
    token = mint(alg="ES256", key="p256.pem", kid="ec-384")
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)


def test_ps256_token_with_rs256_only_key_denied_unknown_key(guard, upstream):
    token = mint(alg="PS256", key="rsa2048.pem", kid="rsa-rs256")
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)


def test_eddsa_token_with_rsa_kid_denied_unknown_key(guard, upstream):
    token = mint(alg="EdDSA", key="ed25519.pem", kid="rsa-1")
    assert_denied(guard.request(path=OWN, token=token), 401, "unknown_key", upstream)


def test_hs256_signed_with_rsa_public_key_as_secret_denied(guard, upstream):
    # Algorithm confusion: the RSA public key (PEM) used as an HMAC secret.
    header = {"alg": "HS256", "kid": "rsa-1"}
    unsigned = craft(header, GOOD).rsplit(".", 1)[0]
    mac = hmac.new(public_pem("rsa2048.pem"), unsigned.encode(), hashlib.sha256).digest()
    resp = guard.request(path=OWN, token=unsigned + "." + b64url(mac))
    assert resp.status == 401, resp
    assert resp.error_code() in ("unknown_key", "bad_signature"), resp
    assert not upstream.saw(resp.test_id)


# ----------------------------------------------------------------------------- signatures


def test_hs256_wrong_secret_denied_bad_signature(guard, upstream):
    token = mint(key="not-the-secret-" + "0" * 32)
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_tampered_payload_denied_bad_signature(guard, upstream):
    header, _, signature = mint().split(".")
    forged = b64url('{"sub":"alice","exp":%d}' % (now() + 7200))
    token = ".".join([header, forged, signature])
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_signature_of_other_user_token_denied_bad_signature(guard, upstream):
    alice, bob = mint(), mint(claims(sub="bob"))
    token = ".".join(bob.split(".")[:2] + [alice.split(".")[2]])
    assert_denied(guard.request(path="/api/bob/x", token=token), 401, "bad_signature",
                  upstream)


def test_empty_signature_hs256_denied_401(guard, upstream):
    # An empty third segment: the contract allows either code.
    resp = guard.request(path=OWN, token=craft(HS, GOOD, signature=""))
    assert resp.status == 401, resp
    assert resp.error_code() in ("malformed_token", "bad_signature"), resp
    assert not upstream.saw(resp.test_id)


def test_eddsa_signed_by_other_key_same_kid_denied_bad_signature(guard, upstream):
    token = mint(alg="EdDSA", key="ed25519-b.pem", kid="ed-1")
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


def test_truncated_rsa_signature_denied_bad_signature(guard, upstream):
    head, payload, sig = mint(alg="RS256", key="rsa2048.pem", kid="rsa-1").split(".")
    short = b64url(base64.urlsafe_b64decode(sig + "==")[:-1])
    token = ".".join([head, payload, short])
    assert_denied(guard.request(path=OWN, token=token), 401, "bad_signature", upstream)


# ----------------------------------------------------------------------------- JWKS algorithms


@pytest.mark.parametrize("alg,key,kid", [
    ("EdDSA", "ed25519.pem", "ed-1"),
    ("EdDSA", "ed25519-b.pem", "ed-2"),
    ("ES256", "p256.pem", "ec-256"),
    ("ES384", "p384.pem", "ec-384"),
    ("RS256", "rsa2048.pem", "rsa-1"),
    ("RS384", "rsa2048.pem", "rsa-1"),
    ("RS512", "rsa2048.pem", "rsa-1"),
    ("PS256", "rsa2048.pem", "rsa-1"),
    ("PS384", "rsa2048.pem", "rsa-1"),
    ("RS256", "rsa2048.pem", "rsa-rs256"),
])
def test_jwks_signed_token_valid_allowed(guard, upstream, alg, key, kid):
    token = mint(alg=alg, key=key, kid=kid)
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")


@pytest.mark.parametrize("alg,key,kid", [
    ("EdDSA", "ed25519.pem", "ed-1"),
    ("ES256", "p256.pem", "ec-256"),
    ("PS256", "rsa2048.pem", "rsa-1"),
])
def test_jwks_signed_token_other_users_path_forbidden(guard, upstream, alg, key, kid):
    token = mint(alg=alg, key=key, kid=kid)
    resp = guard.request(path="/api/bob/profile", token=token)
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_better_auth_shaped_eddsa_token_allowed(guard, upstream):
    # Better Auth: header {alg, kid} without typ, iss = aud = base URL, exp = iat + 900,
    # the user object spread into the payload.
    iat = now()
    payload = {"sub": "alice", "iat": iat, "exp": iat + 900, "iss": "http://localhost:3000",
               "aud": "http://localhost:3000", "id": "alice", "email": "alice@example.com",
               "emailVerified": False, "name": "Alice", "image": None}
    token = mint(payload, alg="EdDSA", key="ed25519.pem", kid="ed-1")
    assert_allowed(guard.request(path=OWN, token=token), upstream, "alice")


# ----------------------------------------------------------------------------- time claims


def test_expired_token_denied_token_expired(guard, upstream):
    token = mint(claims(ttl=-3600))
    assert_denied(guard.request(path=OWN, token=token), 401, "token_expired", upstream)


def test_expired_beyond_skew_denied_token_expired(guard, upstream):
    token = mint(claims(ttl=-90))
    assert_denied(guard.request(path=OWN, token=token), 401, "token_expired", upstream)


def test_expired_eddsa_token_denied_token_expired(guard, upstream):
    token = mint(claims(ttl=-3600), alg="EdDSA", key="ed25519.pem", kid="ed-1")
    assert_denied(guard.request(path=OWN, token=token), 401, "token_expired", upstream)


def test_future_nbf_denied_token_not_yet_valid(guard, upstream):
    token = mint(claims(nbf=now() + 3600))
    assert_denied(guard.request(path=OWN, token=token), 401, "token_not_yet_valid", upstream)


def test_no_exp_denied_missing_exp(guard, upstream):
    token = mint(claims(ttl=None))
    assert_denied(guard.request(path=OWN, token=token), 401, "missing_exp", upstream)


@pytest.mark.parametrize("payload", [
    {"sub": "alice", "exp": "4102444800"},
    {"sub": "alice", "exp": None},
    {"sub": "alice", "exp": [4102444800]},
    {"sub": "alice", "exp": 4102444800, "nbf": "yesterday"},
    {"sub": "alice", "exp": 4102444800, "nbf": True},
], ids=["exp_string", "exp_null", "exp_array", "nbf_string", "nbf_bool"])
def test_time_claim_not_a_number_denied_invalid_claim(guard, upstream, payload):
    assert_denied(guard.request(path=OWN, token=mint(payload)), 401, "invalid_claim", upstream)


# ----------------------------------------------------------------------------- user claim


@pytest.mark.parametrize("payload", [
    claims(sub=None),
    claims(sub=""),
    claims(sub=None, user_id=""),
    claims(sub=123),
    claims(sub=["alice"]),
    claims(sub=None, user_id=42),
    claims(sub={"id": "alice"}),
    dict(claims(sub=None), sub=None),
    claims(sub="alice\r\nx-user-id: bob"),
    claims(sub="alice\u0000"),
], ids=["absent", "empty", "user_id_empty", "number", "array", "user_id_number", "object",
        "null", "crlf", "nul"])
def test_token_without_usable_user_denied_missing_user(guard, upstream, payload):
    token = mint(payload)
    assert_denied(guard.request(path=OWN, token=token), 401, "missing_user", upstream)


# ----------------------------------------------------------------------------- preflight


def test_cors_preflight_without_token_passes(guard, upstream):
    resp = guard.request("OPTIONS", OWN, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    record = assert_allowed(resp, upstream, None)
    assert record["method"] == "OPTIONS"


def test_cors_preflight_with_spoofed_user_header_stripped(guard, upstream):
    resp = guard.request("OPTIONS", OWN, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET",
        "x-user-id": "alice"})
    assert_allowed(resp, upstream, None)


def test_options_without_request_method_denied_missing_token(guard, upstream):
    resp = guard.request("OPTIONS", OWN, headers={"Origin": "http://localhost:3000"})
    assert_denied(resp, 401, "missing_token", upstream)


def test_options_without_origin_denied_missing_token(guard, upstream):
    resp = guard.request("OPTIONS", OWN, headers={"Access-Control-Request-Method": "GET"})
    assert_denied(resp, 401, "missing_token", upstream)


def test_get_with_preflight_headers_denied_missing_token(guard, upstream):
    resp = guard.request("GET", OWN, headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"})
    assert_denied(resp, 401, "missing_token", upstream)


# ----------------------------------------------------------------------------- connections


def test_keep_alive_connection_mixed_requests_no_state_leak(guard, upstream):
    conn = http.client.HTTPConnection("127.0.0.1", guard.ports.listener, timeout=10)
    steps = [("/api/alice/x", mint(), 200, "alice"),
             ("/api/alice/x", None, 401, None),
             ("/api/bob/x", mint(claims(sub="bob")), 200, "bob"),
             ("/api/bob/x", mint(), 403, None),
             ("/other", mint(claims(sub=None, user_id="carol")), 200, "carol")]
    try:
        for path, token, status, user in steps:
            tid = uuid.uuid4().hex
            headers = {"x-test-id": tid, "x-user-id": "spoofed"}
            if token:
                headers["Authorization"] = "Bearer " + token
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == status, (path, resp.status)
            record = upstream.record_for(tid)
            if status == 200:
                assert record and record["headers"].get("x-user-id") == user, record
            else:
                assert record is None, record
    finally:
        conn.close()
