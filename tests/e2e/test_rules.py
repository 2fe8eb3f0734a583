"""The "every option changed" configuration (conftest.RULES_CONFIG): HS256 secret from
BETTER_AUTH_SECRET via host_env_keys, one EdDSA key, issuers, audiences,
require_exp false, clock skew 0, user_claims [uid, sub], user_header x-auth-user,
realm demo-api, max_token_bytes 1024, preflight pass-through off, explicit rules."""

import pytest

from harness import (ENV_SECRET, INLINE_SECRET, assert_allowed, assert_denied, claims, craft,
                     mint, now)

ISS = "https://auth.example.com"
AUD = "https://api.example.com"
HDR = "x-auth-user"
REALM = "demo-api"


def token(sub="alice", iss=ISS, aud=AUD, ttl=600, alg="HS256", **extra):
    payload = claims(sub=sub, ttl=ttl, **extra)
    if iss is not None:
        payload["iss"] = iss
    if aud is not None:
        payload["aud"] = aud
    if alg == "EdDSA":
        return mint(payload, alg="EdDSA", key="ed25519.pem", kid="ed-1")
    return mint(payload, key=ENV_SECRET)


def denied(resp, status, code, upstream):
    return assert_denied(resp, status, code, upstream, realm=REALM)


def allowed(resp, upstream, user):
    return assert_allowed(resp, upstream, user, user_header=HDR)


# ----------------------------------------------------------------------------- key sources


def test_env_secret_hs256_token_allowed(guard_rules, upstream):
    allowed(guard_rules.request(path="/api/alice/x", token=token()), upstream, "alice")


def test_inline_secret_of_other_config_denied_bad_signature(guard_rules, upstream):
    payload = claims(iss=ISS, aud=AUD)
    resp = guard_rules.request(path="/api/alice/x", token=mint(payload, key=INLINE_SECRET))
    denied(resp, 401, "bad_signature", upstream)


def test_eddsa_token_allowed(guard_rules, upstream):
    resp = guard_rules.request(path="/api/alice/x", token=token(alg="EdDSA"))
    allowed(resp, upstream, "alice")


def test_key_absent_from_this_jwks_denied_unknown_key(guard_rules, upstream):
    payload = claims(iss=ISS, aud=AUD)
    tok = mint(payload, alg="ES256", key="p256.pem", kid="ec-256")
    denied(guard_rules.request(path="/api/alice/x", token=tok), 401, "unknown_key", upstream)


# ----------------------------------------------------------------------------- options


def test_missing_token_realm_from_config(guard_rules, upstream):
    denied(guard_rules.request(path="/api/alice/x"), 401, "missing_token", upstream)


def test_no_exp_with_require_exp_false_allowed(guard_rules, upstream):
    allowed(guard_rules.request(path="/api/alice/x", token=token(ttl=None)), upstream, "alice")


def test_exp_in_past_with_require_exp_false_denied_token_expired(guard_rules, upstream):
    resp = guard_rules.request(path="/api/alice/x", token=token(ttl=-3600))
    denied(resp, 401, "token_expired", upstream)


def test_exp_just_past_with_zero_skew_denied_token_expired(guard_rules, upstream):
    resp = guard_rules.request(path="/api/alice/x", token=token(ttl=-15))
    denied(resp, 401, "token_expired", upstream)


def test_nbf_just_ahead_with_zero_skew_denied_token_not_yet_valid(guard_rules, upstream):
    resp = guard_rules.request(path="/api/alice/x", token=token(nbf=now() + 15))
    denied(resp, 401, "token_not_yet_valid", upstream)


def test_token_over_configured_max_denied_token_too_large(guard_rules, upstream):
    tok = token(pad="x" * 1000)
    assert len(tok) > 1024
    denied(guard_rules.request(path="/api/alice/x", token=tok), 401, "token_too_large", upstream)


def test_first_user_claim_uid_wins_over_sub(guard_rules, upstream):
    tok = token(sub="alice", uid="carol")
    allowed(guard_rules.request(path="/api/carol/x", token=tok), upstream, "carol")
    denied(guard_rules.request(path="/api/alice/x", token=tok), 403, "user_mismatch", upstream)


def test_user_id_claim_not_configured_denied_missing_user(guard_rules, upstream):
    tok = token(sub=None, user_id="alice")
    denied(guard_rules.request(path="/api/alice/x", token=tok), 401, "missing_user", upstream)


def test_custom_user_header_spoofed_copy_replaced(guard_rules, upstream):
    resp = guard_rules.request(path="/api/alice/x", token=token(),
                               headers=[("X-Auth-User", "root"), ("x-auth-user", "admin")])
    allowed(resp, upstream, "alice")


def test_preflight_with_pass_through_off_denied_missing_token(guard_rules, upstream):
    resp = guard_rules.request("OPTIONS", "/api/alice/x", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"})
    denied(resp, 401, "missing_token", upstream)


# ----------------------------------------------------------------------------- iss / aud


def test_second_configured_issuer_allowed(guard_rules, upstream):
    resp = guard_rules.request(path="/api/alice/x", token=token(iss="https://auth2.example.com"))
    allowed(resp, upstream, "alice")


@pytest.mark.parametrize("iss", ["https://evil.example.com", "https://auth.example.com/",
                                 "HTTPS://AUTH.EXAMPLE.COM", ""])
def test_unlisted_issuer_denied_wrong_issuer(guard_rules, upstream, iss):
    resp = guard_rules.request(path="/api/alice/x", token=token(iss=iss))
    denied(resp, 401, "wrong_issuer", upstream)


def test_absent_issuer_denied_wrong_issuer(guard_rules, upstream):
    resp = guard_rules.request(path="/api/alice/x", token=token(iss=None))
    denied(resp, 401, "wrong_issuer", upstream)


@pytest.mark.parametrize("iss", [5, ["https://auth.example.com"], True, {"a": 1}],
                         ids=["number", "array", "bool", "object"])
def test_issuer_not_a_string_denied_invalid_claim(guard_rules, upstream, iss):
    tok = craft({"alg": "HS256"}, dict(claims(), iss=iss, aud=AUD), secret=ENV_SECRET)
    denied(guard_rules.request(path="/api/alice/x", token=tok), 401, "invalid_claim", upstream)


@pytest.mark.parametrize("aud", ["https://admin.example.com",
                                 ["https://other.example.com", "https://api.example.com"],
                                 ["https://api.example.com"]],
                         ids=["second_string", "array_second", "array_single"])
def test_listed_audience_allowed(guard_rules, upstream, aud):
    allowed(guard_rules.request(path="/api/alice/x", token=token(aud=aud)), upstream, "alice")


@pytest.mark.parametrize("aud", ["https://other.example.com", ["https://other.example.com"],
                                 [], "https://api.example.com/"],
                         ids=["string", "array", "empty_array", "trailing_slash"])
def test_unlisted_audience_denied_wrong_audience(guard_rules, upstream, aud):
    resp = guard_rules.request(path="/api/alice/x", token=token(aud=aud))
    denied(resp, 401, "wrong_audience", upstream)


def test_absent_audience_denied_wrong_audience(guard_rules, upstream):
    resp = guard_rules.request(path="/api/alice/x", token=token(aud=None))
    denied(resp, 401, "wrong_audience", upstream)


@pytest.mark.parametrize("aud", [5, {"a": "https://api.example.com"}, True,
                                 ["https://api.example.com", 5]],
                         ids=["number", "object", "bool", "array_with_number"])
def test_audience_not_string_or_array_denied_invalid_claim(guard_rules, upstream, aud):
    tok = craft({"alg": "HS256"}, dict(claims(), iss=ISS, aud=aud), secret=ENV_SECRET)
    denied(guard_rules.request(path="/api/alice/x", token=tok), 401, "invalid_claim", upstream)


# ----------------------------------------------------------------------------- rules


@pytest.mark.parametrize("path", ["/public", "/public/", "/public/a/b/c.css",
                                  "/public/a?x=1", "/docs/intro"])
def test_public_path_without_token_allowed(guard_rules, upstream, path):
    allowed(guard_rules.request(path=path), upstream, None)


def test_public_path_spoofed_user_header_stripped(guard_rules, upstream):
    resp = guard_rules.request(path="/public/x", headers={"x-auth-user": "alice"})
    allowed(resp, upstream, None)


def test_public_path_with_valid_token_spoofed_header_stripped(guard_rules, upstream):
    resp = guard_rules.request(path="/public/x", token=token(),
                               headers={"x-auth-user": "bob"})
    record = upstream.record_for(resp.test_id)
    assert resp.status == 200 and record is not None, resp
    assert record["headers"].get(HDR) in (None, "alice"), record


@pytest.mark.parametrize("path", ["/PUBLIC/x", "/Public/x", "/publicity", "/docs/a/b", "/docs"])
def test_path_not_matching_public_rule_exactly_denied_missing_token(guard_rules, upstream,
                                                                   path):
    denied(guard_rules.request(path=path), 401, "missing_token", upstream)


def test_public_path_dot_segments_denied_ambiguous_path(guard_rules, upstream):
    resp = guard_rules.raw(b"GET /public/../api/bob/x HTTP/1.1")
    assert_denied(resp, 400, "ambiguous_path", upstream, realm=REALM)


def test_catch_all_token_rule_valid_token_allowed(guard_rules, upstream):
    allowed(guard_rules.request(path="/anything/else", token=token()), upstream, "alice")


def test_catch_all_token_rule_root_without_token_denied_missing_token(guard_rules, upstream):
    denied(guard_rules.request(path="/"), 401, "missing_token", upstream)


def test_single_segment_user_rule_own_id_allowed(guard_rules, upstream):
    allowed(guard_rules.request(path="/u/alice", token=token()), upstream, "alice")


def test_single_segment_user_rule_other_id_forbidden(guard_rules, upstream):
    denied(guard_rules.request(path="/u/bob", token=token()), 403, "user_mismatch", upstream)


def test_single_segment_user_rule_extra_segment_falls_to_token_rule(guard_rules, upstream):
    allowed(guard_rules.request(path="/u/bob/extra", token=token()), upstream, "alice")


def test_wildcard_and_named_segment_rule_own_id_allowed(guard_rules, upstream):
    resp = guard_rules.request(path="/orgs/acme/members/alice/settings", token=token())
    allowed(resp, upstream, "alice")


@pytest.mark.parametrize("path", ["/orgs/acme/members/bob/settings", "/orgs/acme/members/bob",
                                  "/ORGS/acme/MEMBERS/bob/x"])
def test_wildcard_and_named_segment_rule_other_id_forbidden(guard_rules, upstream, path):
    denied(guard_rules.request(path=path, token=token()), 403, "user_mismatch", upstream)


def test_wildcard_segment_is_not_bound_to_user(guard_rules, upstream):
    resp = guard_rules.request(path="/orgs/bob/members/alice", token=token())
    allowed(resp, upstream, "alice")
