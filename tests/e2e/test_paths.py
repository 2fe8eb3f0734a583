"""Paths against the main configuration, with Envoy's own normalisation OFF, so the
filter sees exactly what the client sent (raw sockets for what http.client refuses)."""

import pytest

from harness import assert_allowed, assert_denied, mint

AMBIGUOUS = {
    "dot_dot": "/api/alice/../bob/profile",
    "dot": "/api/alice/./profile",
    "leading_dot_dot": "/api/../api/bob/x",
    "trailing_dot_dot": "/api/alice/x/..",
    "encoded_dot_dot_lower": "/api/alice/%2e%2e/bob/profile",
    "encoded_dot_dot_upper": "/api/alice/%2E%2E/bob/profile",
    "encoded_dot_dot_mixed": "/api/alice/.%2e/bob/profile",
    "encoded_dot": "/api/alice/%2e/profile",
    "encoded_slash": "/api/alice%2Fbob/profile",
    "encoded_slash_lower": "/api/alice%2fbob/profile",
    "encoded_backslash": "/api/alice/%5C../bob",
    "encoded_nul": "/api/alice/%00/profile",
    "encoded_percent": "/api/alice/%252e%252e/profile",
    "raw_backslash": "/api/alice\\..\\bob/profile",
    "empty_segment": "/api//alice/profile",
    "empty_segment_after_user": "/api/alice//profile",
    "semicolon": "/api/alice;jsessionid=1/profile",
    "semicolon_in_user": "/api/bob;alice/profile",
    "invalid_escape": "/api/alice/%zz",
    "truncated_escape": "/api/alice/%4",
    "trailing_percent": "/api/alice/profile%",
}


@pytest.mark.parametrize("path", list(AMBIGUOUS.values()), ids=list(AMBIGUOUS))
def test_ambiguous_path_valid_token_denied_ambiguous_path(guard, upstream, path):
    resp = guard.raw(b"GET " + path.encode() + b" HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode()])
    assert_denied(resp, 400, "ambiguous_path", upstream)


@pytest.mark.parametrize("path", ["/api/alice/../bob/profile", "/api//alice/profile",
                                  "/x/%2e%2e/api/bob"])
def test_ambiguous_path_without_token_denied_ambiguous_path(guard, upstream, path):
    resp = guard.raw(b"GET " + path.encode() + b" HTTP/1.1")
    assert_denied(resp, 400, "ambiguous_path", upstream)


def test_ambiguous_path_on_token_rule_path_denied_ambiguous_path(guard, upstream):
    resp = guard.raw(b"GET /static/../api/bob/x HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode()])
    assert_denied(resp, 400, "ambiguous_path", upstream)


def test_trailing_slash_own_path_allowed(guard, upstream):
    assert_allowed(guard.request(path="/api/alice/", token=mint()), upstream, "alice")


def test_dots_inside_segment_allowed(guard, upstream):
    resp = guard.request(path="/api/alice/file..name/.hidden/v1.2", token=mint())
    assert_allowed(resp, upstream, "alice")


def test_valid_escapes_in_trailing_segments_allowed(guard, upstream):
    resp = guard.request(path="/api/alice/a%20b/%C3%A9", token=mint())
    record = assert_allowed(resp, upstream, "alice")
    assert record["path"] == "/api/alice/a%20b/%C3%A9"


def test_query_naming_other_user_ignored_allowed(guard, upstream):
    resp = guard.request(path="/api/alice/profile?user=bob&path=/api/bob", token=mint())
    assert_allowed(resp, upstream, "alice")


def test_query_with_ambiguous_characters_ignored_allowed(guard, upstream):
    resp = guard.raw(b"GET /api/alice/profile?a=../..;x&b=%2F%00%zz&c=// HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode()])
    assert_allowed(resp, upstream, "alice")


def test_query_naming_own_user_on_other_path_forbidden(guard, upstream):
    resp = guard.request(path="/api/bob/profile?user=alice", token=mint())
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_absolute_form_target_own_path_allowed(guard, upstream):
    resp = guard.raw(b"GET http://evil.example/api/alice/profile HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode()])
    record = assert_allowed(resp, upstream, "alice")
    assert record["path"] == "/api/alice/profile"


def test_absolute_form_target_other_path_forbidden(guard, upstream):
    resp = guard.raw(b"GET http://evil.example/api/bob/profile HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode()])
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_absolute_form_target_with_dot_segments_denied_ambiguous_path(guard, upstream):
    resp = guard.raw(b"GET http://evil.example/api/alice/../bob HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode()])
    assert_denied(resp, 400, "ambiguous_path", upstream)


# Targets Envoy's HTTP/1 codec refuses before any filter runs: the filter's own checks
# for these are defence in depth (unit-tested); here we only prove nothing got through.
@pytest.mark.parametrize("target", [b"/api/alice/x#frag", b"api/alice/profile", b"*",
                                    b"/api/\xc3\xa9"],
                         ids=["fragment", "relative", "asterisk", "raw_utf8"])
def test_target_refused_by_envoy_codec_never_reaches_upstream(guard, upstream, target):
    resp = guard.raw(b"GET " + target + b" HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode()])
    assert resp.status == 400, resp
    assert not upstream.saw(resp.test_id)
