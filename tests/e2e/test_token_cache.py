"""The verified-token cache (token_cache_entries, default 1024) in the real module,
observed through its counter `wasmcustom.jwt_guard.token_cache.hits`: a token seen
again is answered from the cache, the path binding is still decided per request, and
distinct or failing tokens never hit."""

import pytest

from harness import (INLINE_SECRET, assert_allowed, assert_denied, claims, mint, start_envoy,
                     stop_checked)

HITS = "wasmcustom.jwt_guard.token_cache.hits"


def hits(envoy) -> int:
    return envoy.stats("token_cache").get(HITS, 0)


def test_repeated_token_is_served_from_cache_binding_still_checked(guard, upstream):
    token = mint(claims(jti="cache-repeat"), alg="ES384", key="p384.pem", kid="ec-384")
    before = hits(guard)
    assert_allowed(guard.request(path="/api/alice/x", token=token), upstream, "alice")
    assert hits(guard) == before  # first sight: verified, then cached

    for _ in range(5):
        assert_allowed(guard.request(path="/api/alice/x", token=token), upstream, "alice")
    assert hits(guard) == before + 5

    # A cached token still only opens its own user's paths.
    resp = guard.request(path="/api/bob/x", token=token)
    assert_denied(resp, 403, "user_mismatch", upstream)
    assert hits(guard) == before + 6


def test_distinct_and_failing_tokens_never_hit(guard, upstream):
    before = hits(guard)
    for i in range(5):
        token = mint(claims(jti=f"cache-distinct-{i}"))
        assert_allowed(guard.request(path="/api/alice/x", token=token), upstream, "alice")
    expired = mint(claims(ttl=-3600))
    for _ in range(3):
        resp = guard.request(path="/api/alice/x", token=expired)
        assert_denied(resp, 401, "token_expired", upstream)
    assert hits(guard) == before


@pytest.mark.parametrize("tamper", ["payload", "signature"])
def test_tampered_copy_of_cached_token_is_verified_afresh(guard, upstream, tamper):
    token = mint(claims(jti=f"cache-tamper-{tamper}"))
    assert_allowed(guard.request(path="/api/alice/x", token=token), upstream, "alice")
    header, payload, signature = token.split(".")
    if tamper == "payload":
        forged = ".".join([header, payload[:-2] + ("A" if payload[-2] != "A" else "B")
                           + payload[-1], signature])
    else:
        forged = ".".join([header, payload, signature[:-2] + ("A" if signature[-2] != "A"
                                                               else "B") + signature[-1]])
    before = hits(guard)
    resp = guard.request(path="/api/alice/x", token=forged)
    assert resp.status == 401, resp
    assert resp.error_code() in ("bad_signature", "malformed_token"), resp
    assert hits(guard) == before


@pytest.fixture(scope="module")
def small_cache(module_path, workdir, upstream):
    envoy = start_envoy("token-cache-3", {"secret": INLINE_SECRET, "token_cache_entries": 3},
                        workdir, upstream)
    yield envoy
    stop_checked(envoy)


def test_full_cache_evicts_the_oldest_insertion(small_cache, upstream):
    a, b, c, d = (mint(claims(jti=f"cache-evict-{name}")) for name in "abcd")

    def hit(token) -> bool:
        before = hits(small_cache)
        assert_allowed(small_cache.request(path="/api/alice/x", token=token), upstream,
                       "alice")
        return hits(small_cache) == before + 1

    assert [hit(t) for t in (a, b, c)] == [False, False, False]
    assert hit(a)            # a hit does not renew: a is still the oldest insertion
    assert not hit(d)        # verified, cached, evicting a
    assert not hit(a)        # verified afresh, cached again, evicting b
    assert [hit(c), hit(d), hit(a)] == [True, True, True]
    assert not hit(b)
