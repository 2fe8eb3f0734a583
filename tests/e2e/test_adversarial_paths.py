"""'Prove it cannot be fooled': alice's valid token aimed at bob's paths.

One table, run twice:
- `normalised`: Envoy's own path handling exactly as envoy.yaml ships it
  (normalize_path: true, merge_slashes: true, path_with_escaped_slashes_action:
  REJECT_REQUEST), main plugin configuration;
- `raw`: all of that off (the `guard` fixture), so the filter sees the bytes sent.

The expected outcome differs per mode (Envoy may answer a plain 400 itself, or rewrite
a path into /api/bob/... which the filter then forbids, or into a path of alice's), but
the invariant is the same in both and checked for every row: never a 200 for a path
that an upstream could read as bob's, and nothing under /api/bob ever reaches the
upstream. Every request is sent as exact bytes (guard.raw).
"""

import shutil
import subprocess
import uuid
from urllib.parse import unquote_to_bytes

import pytest

from harness import (MAIN_CONFIG, Response, assert_allowed, assert_denied, claims, mint,
                     start_envoy, stop_checked)


@pytest.fixture(scope="module")
def guard_normalised(module_path, workdir, upstream):
    envoy = start_envoy("guard-normalised", MAIN_CONFIG, workdir, upstream,
                        normalize_path=True, merge_slashes=True,
                        escaped_slashes="REJECT_REQUEST")
    yield envoy
    stop_checked(envoy)


FORBID = ("deny", 403, "user_mismatch")
AMBIG = ("deny", 400, "ambiguous_path")
ENVOY_400 = ("envoy", 400, None)  # Envoy's own plain-text 400: no filter involved


def ALLOW(upstream_path):  # noqa: N802 - reads like the other outcome constants
    return ("allow", 200, upstream_path)


# name: (request target, outcome with Envoy normalisation, outcome without)
TABLE = {
    # dot segments, raw
    "dot_dot": ("/api/alice/../bob/x", FORBID, AMBIG),
    "dot_then_dot_dot": ("/api/alice/./../bob/x", FORBID, AMBIG),
    "dot_before_user": ("/api/./bob/x", FORBID, AMBIG),
    "dot_first": ("/./api/bob/x", FORBID, AMBIG),
    "dot_after_user": ("/api/bob/./x", FORBID, AMBIG),
    "dot_dot_last": ("/api/bob/x/..", FORBID, AMBIG),
    "dot_dot_pops_user": ("/api/bob/..", ALLOW("/api/"), AMBIG),
    # dot segments, percent-encoded
    "enc_dot_dot_lower": ("/api/alice/%2e%2e/bob/x", FORBID, AMBIG),
    "enc_dot_dot_upper": ("/api/alice/%2E%2E/bob/x", FORBID, AMBIG),
    "enc_dot_dot_half": ("/api/alice/.%2E/bob/x", FORBID, AMBIG),
    "enc_dot_dot_other_half": ("/api/alice/%2e./bob/x", FORBID, AMBIG),
    "enc_dot": ("/api/alice/%2e/../bob/x", FORBID, AMBIG),
    "double_enc_dot_dot": ("/api/alice/%252e%252e/bob/x", AMBIG, AMBIG),
    "overlong_utf8_dots": ("/api/alice/%c0%ae%c0%ae/bob/x", AMBIG, AMBIG),
    # encoded slash and backslash
    "enc_slash_dot_dot": ("/api/alice/..%2Fbob/x", ENVOY_400, AMBIG),
    "enc_slash_in_user": ("/api/alice%2F..%2Fbob/x", ENVOY_400, AMBIG),
    "enc_slash_lower": ("/api/alice%2f..%2fbob/x", ENVOY_400, AMBIG),
    "enc_dot_dot_slash": ("/api/alice/%2e%2e%2fbob/x", ENVOY_400, AMBIG),
    "enc_slash_bob_first": ("/api/bob%2F..%2Falice/x", ENVOY_400, AMBIG),
    "enc_backslash": ("/api/alice/..%5Cbob/x", ENVOY_400, AMBIG),
    "enc_backslash_in_user": ("/api/alice%5C..%5Cbob/x", ENVOY_400, AMBIG),
    # raw backslash (Envoy's normalisation turns it into '/')
    "backslash_dot_dot": ("/api/alice/..\\bob/x", FORBID, AMBIG),
    "backslash_in_user": ("/api/alice\\..\\bob/x", FORBID, AMBIG),
    # repeated slashes
    "double_slash_before_user": ("/api//bob/x", FORBID, AMBIG),
    "double_slash_first": ("//api/bob/x", FORBID, AMBIG),
    "double_slash_after_user": ("/api/bob//x", FORBID, AMBIG),
    # Envoy resolves '..' against the empty segment first, then merges: alice's path.
    "double_slash_dot_dot": ("/api/alice//../bob/x", ALLOW("/api/alice/bob/x"), AMBIG),
    # ';' parameters, raw and encoded
    "semicolon_in_user": ("/api/bob;alice/x", AMBIG, AMBIG),
    "semicolon_after_user": ("/api/bob;/x", AMBIG, AMBIG),
    "semicolon_then_dot_dot": ("/api/alice;/../bob/x", FORBID, AMBIG),
    "dot_dot_semicolon": ("/api/alice/..;/bob/x", FORBID, AMBIG),
    "enc_semicolon_upper": ("/api/bob%3Balice/x", AMBIG, AMBIG),
    "enc_semicolon_lower": ("/api/bob%3balice/x", AMBIG, AMBIG),
    # letter case of the literal part (literals match ignoring ASCII case)
    "literal_upper": ("/API/bob/x", FORBID, FORBID),
    "literal_mixed": ("/Api/bob/x", FORBID, FORBID),
    "user_upper": ("/API/BOB/x", FORBID, FORBID),
    # NUL and other encoded controls
    "enc_nul_in_user": ("/api/bob%00/x", ENVOY_400, AMBIG),
    "enc_nul_dot_dot": ("/api/alice/%00/../bob/x", ENVOY_400, AMBIG),
    "enc_nul_between": ("/api/bob%00alice/x", ENVOY_400, AMBIG),
    "enc_tab": ("/api/bob%09/x", AMBIG, AMBIG),
    "enc_space_after_user": ("/api/bob%20/x", FORBID, FORBID),
    # invalid escapes / invalid UTF-8 (Envoy's normalisation drops the segment via '..')
    "invalid_escape_dot_dot": ("/api/alice/%zz/../bob/x", ALLOW("/api/alice/bob/x"), AMBIG),
    "invalid_utf8_dot_dot": ("/api/alice/%ff/../bob/x", ALLOW("/api/alice/bob/x"), AMBIG),
    # percent-encoded user id: decoded once, then compared byte for byte
    "enc_user_bob": ("/api/%62ob/x", FORBID, FORBID),
    "enc_user_bob_all": ("/api/%62%6F%62/x", FORBID, FORBID),
    "enc_user_alice": ("/api/%61lice/x", ALLOW("/api/alice/x"), ALLOW("/api/%61lice/x")),
    "enc_user_alice_all": ("/api/%61%6c%69%63%65/x", ALLOW("/api/alice/x"),
                           ALLOW("/api/%61%6c%69%63%65/x")),
    # absolute-form request target (Envoy converts it to origin form + Host)
    "absolute_bob": ("http://localhost/api/bob/x", FORBID, FORBID),
    "absolute_alice": ("http://localhost/api/alice/x", ALLOW("/api/alice/x"),
                       ALLOW("/api/alice/x")),
    "absolute_other_host_bob": ("http://bob.example/api/bob/x", FORBID, FORBID),
    "absolute_with_port": ("http://localhost:80/api/bob/x", FORBID, FORBID),
    "absolute_upper_scheme_host": ("HTTP://LOCALHOST/api/bob/x", FORBID, FORBID),
    "absolute_userinfo_alice": ("http://alice@localhost/api/bob/x", FORBID, FORBID),
    "absolute_https_scheme": ("https://localhost/api/bob/x", FORBID, FORBID),
    "absolute_enc_user": ("http://localhost/api/%62ob/x", FORBID, FORBID),
    "absolute_enc_dot_dot": ("http://localhost/api/alice/%2e%2e/bob", FORBID, AMBIG),
    "absolute_dot_dot": ("http://localhost/api/alice/../bob/x", FORBID, AMBIG),
    "absolute_double_slash": ("http://localhost//api/bob/x", FORBID, AMBIG),
    # query strings are ignored by the filter
    "query_names_bob": ("/api/alice?x=/api/bob", ALLOW("/api/alice?x=/api/bob"),
                        ALLOW("/api/alice?x=/api/bob")),
    "query_dot_dot": ("/api/alice/x?../../bob/y", ALLOW("/api/alice/x?../../bob/y"),
                      ALLOW("/api/alice/x?../../bob/y")),
    "query_names_alice": ("/api/bob?u=alice", FORBID, FORBID),
    "query_user_alice": ("/api/bob/x?user=alice", FORBID, FORBID),
    "query_path_alice": ("/api/bob/x?path=/api/alice/x", FORBID, FORBID),
}

MODES = ["normalised", "raw"]
CASES = [pytest.param(mode, name, id=f"{mode}-{name}") for mode in MODES for name in TABLE]


def readable_as_bobs(target: str) -> bool:
    """Whether an upstream that is lenient in every way (decodes once, then treats '\\'
    as '/', ignores empty and '.' segments, resolves '..') could read `target` as a
    path under /api/bob."""
    path = target.split("?", 1)[0]
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    decoded = unquote_to_bytes(path).replace(b"\\", b"/")
    stack: list[bytes] = []
    for segment in decoded.split(b"/"):
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if stack:
                stack.pop()
            continue
        stack.append(segment)
    return len(stack) >= 2 and stack[0].lower() == b"api" and stack[1] == b"bob"


@pytest.mark.parametrize("mode,name", CASES)
def test_alice_token_at_bobs_path(request, upstream, mode, name):
    target, expected_normalised, expected_raw = TABLE[name]
    envoy = request.getfixturevalue("guard_normalised" if mode == "normalised" else "guard")
    kind, status, detail = expected_normalised if mode == "normalised" else expected_raw

    resp = envoy.raw(b"GET " + target.encode("latin-1") + b" HTTP/1.1",
                     [b"Authorization: Bearer " + mint().encode()])
    record = upstream.record_for(resp.test_id)

    # The invariant, whatever the table says.
    if record is not None:
        assert not readable_as_bobs(record["path"]), (mode, target, record["path"])
        assert resp.status == 200 and record["headers"].get("x-user-id") == "alice", resp

    if kind == "deny":
        assert_denied(resp, status, detail, upstream)
    elif kind == "envoy":
        assert resp.status == status and resp.error_code() is None, resp
        assert record is None, record
    else:
        assert resp.status == 200, resp
        assert record is not None, f"allowed request not seen upstream: {resp!r}"
        assert record["path"] == detail, record


@pytest.mark.parametrize("target", ["/api/bob/x", "/api/bob", "/api/bob/", "/API/bob/x",
                                    "/api/bob/x?u=alice", "/api/%62ob/x"])
def test_bobs_own_token_at_bobs_path_allowed_in_both_modes(request, upstream, target):
    # The positive control of the table: the same requests with bob's token pass, so a
    # 403 above really is the user binding and not a path the filter refuses anyway.
    for name in ("guard_normalised", "guard"):
        envoy = request.getfixturevalue(name)
        resp = envoy.raw(b"GET " + target.encode() + b" HTTP/1.1",
                         [b"Authorization: Bearer " + mint(claims(sub="bob")).encode()])
        assert_allowed(resp, upstream, "bob")


def test_readable_as_bobs_helper():
    assert readable_as_bobs("/api/bob/x")
    assert readable_as_bobs("/API/%62ob")
    assert readable_as_bobs("/api/alice/..%2Fbob/x")
    assert readable_as_bobs("//api//bob")
    assert readable_as_bobs("/api/alice\\..\\bob/x")
    assert not readable_as_bobs("/api/alice/bob/x")
    assert not readable_as_bobs("/api/alice?x=/api/bob")
    assert not readable_as_bobs("/api/")


# ----------------------------------------------------------------------------- HTTP/2
# The same binding over HTTP/2 (h2c with prior knowledge, curl + nghttp2): headers are
# separate fields there, and :path is taken as sent (--path-as-is).


def _curl_has_http2() -> bool:
    if not shutil.which("curl"):
        return False
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    return "HTTP2" in out


needs_h2 = pytest.mark.skipif(not _curl_has_http2(), reason="curl without HTTP/2")


def h2_request(envoy, path: str, headers=(), tmp_dir=None) -> Response:
    test_id = uuid.uuid4().hex
    head_file = tmp_dir / f"h2-{test_id}.headers"
    args = ["curl", "-s", "--http2-prior-knowledge", "--path-as-is", "-o", "-",
            "-D", str(head_file), "--max-time", "10",
            f"http://127.0.0.1:{envoy.ports.listener}{path}", "-H", f"x-test-id: {test_id}"]
    for header in headers:
        args += ["-H", header]
    result = subprocess.run(args, capture_output=True, timeout=20)
    lines = head_file.read_text().splitlines()
    assert lines and lines[0].startswith("HTTP/2 "), (lines, result.stderr)
    status = int(lines[0].split()[1])
    pairs = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]
             if ":" in line]
    return Response(status, pairs, result.stdout, test_id)


H2_TABLE = {
    "own": ("/api/alice/x", [], ("allow",), ("allow",)),
    "bob": ("/api/bob/x", [], FORBID, FORBID),
    "bob_upper_literal": ("/API/bob/x", [], FORBID, FORBID),
    "dot_dot": ("/api/alice/../bob/x", [], FORBID, AMBIG),
    "enc_slash": ("/api/alice/..%2Fbob/x", [], ENVOY_400, AMBIG),
    "double_slash": ("/api//bob/x", [], FORBID, AMBIG),
    "semicolon": ("/api/bob;alice/x", [], AMBIG, AMBIG),
    "two_authorization_fields": ("/api/alice/x", ["authorization: Bearer {t}"],
                                 ("deny", 401, "invalid_authorization"),
                                 ("deny", 401, "invalid_authorization")),
}
H2_CASES = [pytest.param(mode, name, id=f"{mode}-{name}") for mode in MODES for name in H2_TABLE]


@needs_h2
@pytest.mark.parametrize("mode,name", H2_CASES)
def test_http2_alice_token_at_bobs_path(request, upstream, workdir, mode, name):
    path, extra, expected_normalised, expected_raw = H2_TABLE[name]
    envoy = request.getfixturevalue("guard_normalised" if mode == "normalised" else "guard")
    expected = expected_normalised if mode == "normalised" else expected_raw
    token = mint()
    headers = ["Authorization: Bearer " + token] + [h.format(t=token) for h in extra]
    resp = h2_request(envoy, path, headers, tmp_dir=workdir)
    record = upstream.record_for(resp.test_id)
    if record is not None:
        assert not readable_as_bobs(record["path"]), (mode, path, record["path"])
    if expected[0] == "allow":
        assert_allowed(resp, upstream, "alice")
    elif expected[0] == "deny":
        assert_denied(resp, expected[1], expected[2], upstream)
    else:
        assert resp.status == expected[1] and resp.error_code() is None, resp
        assert record is None, record


@needs_h2
@pytest.mark.parametrize("query", ["?access_token={t}", "?token={t}"])
def test_http2_token_in_query_ignored_denied_missing_token(guard, upstream, workdir, query):
    resp = h2_request(guard, "/api/alice/x" + query.format(t=mint()), tmp_dir=workdir)
    assert_denied(resp, 401, "missing_token", upstream)
