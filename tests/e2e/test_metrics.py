"""The filter's counters in Envoy's admin /stats."""

import pytest

from harness import mint

PREFIX = "wasmcustom.jwt_guard."
CODES = ["missing_token", "invalid_authorization", "token_too_large", "not_a_jwt",
         "malformed_token", "unsupported_algorithm", "unsupported_crit", "unknown_key",
         "bad_signature", "token_expired", "token_not_yet_valid", "missing_exp",
         "invalid_claim", "wrong_issuer", "wrong_audience", "missing_user", "user_mismatch",
         "ambiguous_path"]


def test_stats_every_counter_defined_at_start(guard):
    stats = guard.stats("jwt_guard")
    expected = [PREFIX + "allowed"] + [PREFIX + "denied." + code for code in CODES]
    missing = [name for name in expected if name not in stats]
    assert not missing, f"missing from /stats: {missing}; have {sorted(stats)}"


def test_stats_requests_counted_by_outcome(guard):
    before = guard.stats("jwt_guard")
    for _ in range(2):
        assert guard.request(path="/api/alice/x", token=mint()).status == 200
    assert guard.request(path="/api/bob/x", token=mint()).status == 403
    assert guard.request(path="/api/alice/x").status == 401
    assert guard.request(path="/api/alice/x", token="opaque").status == 401
    after = guard.stats("jwt_guard")

    def delta(name):
        return after.get(PREFIX + name, 0) - before.get(PREFIX + name, 0)

    assert delta("allowed") == 2, after
    assert delta("denied.user_mismatch") == 1, after
    assert delta("denied.missing_token") == 1, after
    assert delta("denied.not_a_jwt") == 1, after
    assert delta("denied.bad_signature") == 0, after


@pytest.mark.parametrize("code", ["ambiguous_path", "malformed_token"])
def test_stats_denial_counter_increments(guard, code):
    before = guard.stats("jwt_guard").get(PREFIX + "denied." + code, 0)
    if code == "ambiguous_path":
        resp = guard.raw(b"GET /api/alice/../bob HTTP/1.1")
    else:
        resp = guard.request(path="/api/alice/x", token="a.b.c")
    assert resp.error_code() == code, resp
    assert guard.stats("jwt_guard").get(PREFIX + "denied." + code, 0) == before + 1
