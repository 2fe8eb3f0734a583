"""ES512 (ECDSA P-521), which Better Auth can sign with and jsonwebtoken lacks: a JWKS
holding only a P-521 key (published without "alg"), in an Envoy of its own so that a
module without ES512 support fails only these tests."""

import pytest

from harness import (assert_allowed, assert_denied, claims, envoy_env, jwk_for, mint, start_envoy,
                     stop_checked)


@pytest.fixture(scope="module")
def guard_es512(module_path, workdir, upstream):
    config = {"jwks": {"keys": [jwk_for("p521.pem", "ec-521"),
                                jwk_for("p256.pem", "ec-256", "ES256")]}}
    envoy = start_envoy("guard-es512", config, workdir, upstream, env=envoy_env())
    yield envoy
    stop_checked(envoy)


def test_es512_token_own_path_allowed(guard_es512, upstream):
    token = mint(alg="ES512", key="p521.pem", kid="ec-521")
    assert_allowed(guard_es512.request(path="/api/alice/x", token=token), upstream, "alice")


def test_es512_token_other_path_forbidden(guard_es512, upstream):
    token = mint(alg="ES512", key="p521.pem", kid="ec-521")
    resp = guard_es512.request(path="/api/bob/x", token=token)
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_es512_token_tampered_denied_bad_signature(guard_es512, upstream):
    header, _, sig = mint(alg="ES512", key="p521.pem", kid="ec-521").split(".")
    other = mint(claims(sub="bob"), alg="ES512", key="p521.pem", kid="ec-521").split(".")[1]
    resp = guard_es512.request(path="/api/bob/x", token=".".join([header, other, sig]))
    assert_denied(resp, 401, "bad_signature", upstream)


def test_es512_token_with_p256_kid_denied_unknown_key(guard_es512, upstream):
    token = mint(alg="ES512", key="p521.pem", kid="ec-256")
    resp = guard_es512.request(path="/api/alice/x", token=token)
    assert_denied(resp, 401, "unknown_key", upstream)


def test_hs256_token_without_any_secret_denied_unknown_key(guard_es512, upstream):
    # This Envoy has no secret at all (inline or env): HS256 has no key.
    resp = guard_es512.request(path="/api/alice/x", token=mint())
    assert_denied(resp, 401, "unknown_key", upstream)
