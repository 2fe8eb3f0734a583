"""Better Auth's own tokens through Envoy: a real Better Auth 1.7.25 server (see
tests/betterauth) signs users up and issues JWTs; jwt-guard fetches its JWKS through an
Envoy cluster, using the `better_auth` shorthand (JWKS path, issuer and audience)."""

import socket
import sys
import time
import urllib.parse
import uuid

import pytest

from harness import REPO, Envoy, Ports, assert_allowed, assert_denied, bootstrap, stop_checked
from harness import envoy_env, wasm_filter

sys.path.insert(0, str(REPO / "tests" / "betterauth"))
import client as betterauth  # noqa: E402

PASSWORD = "correct-horse-battery-staple"


def issuer_cluster(port: int) -> dict:
    return {
        "name": "better_auth",
        "type": "STATIC",
        "connect_timeout": "0.5s",
        "load_assignment": {
            "cluster_name": "better_auth",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def start_guard(name, workdir, upstream, issuer_port, base_url, concurrency=1,
                **timing) -> Envoy:
    """Envoy with jwt-guard configured only through `better_auth` (no secret, no JWKS)."""
    plugin = {"better_auth": {"base_url": base_url, "cluster": "better_auth", **timing}}
    ports = Ports()
    config = bootstrap(ports, upstream.port, [wasm_filter(plugin, host_env_keys=())])
    config["static_resources"]["clusters"].append(issuer_cluster(issuer_port))
    return Envoy(name, config, workdir, env=envoy_env(), ports=ports,
                 concurrency=concurrency).start()


def new_user(issuer) -> tuple[str, str, str]:
    """Signs a user up the way a browser app does; returns (user id, cookie, JWT)."""
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    user_id, cookie = betterauth.sign_up(issuer.base_url, email, PASSWORD, "Test User")
    return user_id, cookie, betterauth.get_token(issuer.base_url, cookie)


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = ("A" if signature[5] != "A" else "B")
    return ".".join([header, payload, signature[:5] + flipped + signature[6:]])


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def npm_installed():
    if not (REPO / "tests" / "betterauth" / "node_modules" / "better-auth").is_dir():
        pytest.fail("tests/betterauth/node_modules missing: run `make e2e` (it runs npm ci)")


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256", "PS256", "ES512"])
def test_better_auth_token_own_path_allowed_other_denied(alg, npm_installed, workdir, upstream):
    with betterauth.start_server(alg) as issuer:
        envoy = start_guard(f"ba-{alg}", workdir, upstream, issuer.port, issuer.base_url)
        try:
            user_id, _, token = new_user(issuer)
            header, _ = betterauth.decode_unverified(token)
            assert header["alg"] == alg

            assert_allowed(envoy.request(path=f"/api/{user_id}/notes", token=token),
                           upstream, user_id)
            other = envoy.request(path="/api/someone-else/notes", token=token)
            assert_denied(other, 403, "user_mismatch", upstream)
            forged = envoy.request(path=f"/api/{user_id}/notes", token=tampered(token))
            assert_denied(forged, 401, "bad_signature", upstream)

            stats = envoy.stats()
            assert stats["wasmcustom.jwt_guard.jwks.fetch_ok"] >= 1
            assert stats["wasmcustom.jwt_guard.jwks.keys"] >= 1
        finally:
            stop_checked(envoy)


def test_four_workers_share_one_fetch(npm_installed, workdir, upstream):
    with betterauth.start_server("EdDSA") as issuer:
        envoy = start_guard("ba-workers", workdir, upstream, issuer.port, issuer.base_url,
                            concurrency=4)
        try:
            user_id, _, token = new_user(issuer)
            # Fresh connections are spread over the four workers (four VMs).
            for _ in range(24):
                resp = envoy.request(path=f"/api/{user_id}/notes", token=token)
                assert_allowed(resp, upstream, user_id)
            stats = envoy.stats()
            assert stats["wasmcustom.jwt_guard.jwks.fetch_ok"] == 1, stats
            assert stats.get("wasmcustom.jwt_guard.jwks.fetch_failed", 0) == 0, stats
            workers = envoy.stats("listener.127.0.0.1")
            busy = [n for n, v in workers.items()
                    if n.endswith("downstream_cx_total") and ".worker_" in n and v > 0]
            assert len(busy) >= 2, workers  # more than one worker really served
        finally:
            stop_checked(envoy)


def test_better_auth_session_token_denied_not_a_jwt(npm_installed, workdir, upstream):
    with betterauth.start_server("EdDSA") as issuer:
        envoy = start_guard("ba-opaque", workdir, upstream, issuer.port, issuer.base_url)
        try:
            user_id, cookie, _ = new_user(issuer)
            # The session cookie's value is the opaque session token (signed, '<id>.<sig>').
            session = urllib.parse.unquote(cookie.split("=", 1)[1].split(";")[0])
            for opaque in (session, session.split(".")[0]):
                resp = envoy.request(path=f"/api/{user_id}/notes", token=opaque)
                assert_denied(resp, 401, "not_a_jwt", upstream)
        finally:
            stop_checked(envoy)


def test_better_auth_key_rotation_followed_without_restart(npm_installed, workdir, upstream):
    # A new key every 3 s; old keys stay published for a day. The scheduled refresh is
    # far away (300 s), so only the unknown-kid refetch can pick the new key up.
    with betterauth.start_server("EdDSA", rotation_seconds=3, grace_seconds=86400) as issuer:
        envoy = start_guard("ba-rotation", workdir, upstream, issuer.port, issuer.base_url,
                            refresh_seconds=300, min_refetch_seconds=1)
        try:
            user_id, cookie, old_token = new_user(issuer)
            own = f"/api/{user_id}/notes"
            assert_allowed(envoy.request(path=own, token=old_token), upstream, user_id)

            old_kid = betterauth.decode_unverified(old_token)[0]["kid"]
            new_token = betterauth.wait_for_new_kid(issuer.base_url, cookie, old_kid)
            # The first request with the new kid waits for the refetch, body and all.
            body = b'{"note": "' + b"y" * 70000 + b'"}'
            resp = envoy.request("POST", own, token=new_token, body=body,
                                 headers={"content-type": "application/json"})
            record = assert_allowed(resp, upstream, user_id)
            assert record["body"] == body.decode()
            assert envoy.stats()["wasmcustom.jwt_guard.jwks.kid_refetch"] >= 1

            # The old key is still published: its tokens keep working.
            assert_allowed(envoy.request(path=own, token=old_token), upstream, user_id)
        finally:
            stop_checked(envoy)


def test_unknown_kid_flood_causes_rate_limited_fetches(npm_installed, workdir, upstream):
    with betterauth.start_server("EdDSA") as issuer:
        envoy = start_guard("ba-flood", workdir, upstream, issuer.port, issuer.base_url,
                            refresh_seconds=300, min_refetch_seconds=60)
        try:
            user_id, _, token = new_user(issuer)
            header, payload, signature = token.split(".")
            import base64
            import json
            forged_header = base64.urlsafe_b64encode(json.dumps(
                {"alg": "EdDSA", "kid": "forged"}).encode()).rstrip(b"=").decode()
            forged = ".".join([forged_header, payload, signature])
            for _ in range(30):
                resp = envoy.request(path=f"/api/{user_id}/notes", token=forged)
                assert_denied(resp, 401, "unknown_key", upstream)
            stats = envoy.stats()
            # One initial fetch, at most one refetch for the whole flood.
            assert stats["wasmcustom.jwt_guard.jwks.kid_refetch"] <= 1
            assert stats["wasmcustom.jwt_guard.jwks.fetch_ok"] <= 2
        finally:
            stop_checked(envoy)


def test_issuer_outage_keeps_last_good_keys(npm_installed, workdir, upstream):
    issuer = betterauth.start_server("EdDSA")
    envoy = start_guard("ba-outage", workdir, upstream, issuer.port, issuer.base_url,
                        refresh_seconds=1, timeout_ms=500)
    try:
        user_id, _, token = new_user(issuer)
        own = f"/api/{user_id}/notes"
        assert_allowed(envoy.request(path=own, token=token), upstream, user_id)

        issuer.stop()
        wait_for(lambda: envoy.stats()["wasmcustom.jwt_guard.jwks.fetch_failed"] >= 2, 15,
                 "failed refreshes while the issuer is down")
        # Still verifying against the last good keys.
        assert_allowed(envoy.request(path=own, token=token), upstream, user_id)

        # The issuer comes back (in-memory storage: new keys, new users); nothing
        # restarts on the Envoy side.
        issuer = betterauth.start_server("EdDSA", port=issuer.port)
        user_id, _, token = new_user(issuer)
        resp = envoy.request(path=f"/api/{user_id}/notes", token=token)
        assert_allowed(resp, upstream, user_id)
    finally:
        issuer.stop()
        stop_checked(envoy)

    # Envoy's log file is complete once it has stopped.
    log = envoy.log_text().splitlines()
    warnings = [line for line in log if "JWKS fetch from cluster" in line]
    assert len(warnings) == 1, warnings  # once per failure streak
    assert any("JWKS fetch recovered" in line for line in log)


def test_no_keys_yet_denied_503_and_public_path_unaffected(npm_installed, workdir, upstream):
    # Nothing listens on the issuer's port: the first fetch fails.
    dead_port = Ports().admin
    envoy = start_guard("ba-nokeys", workdir, upstream, dead_port, "http://127.0.0.1:1",
                        timeout_ms=300)
    try:
        with betterauth.start_server("EdDSA") as issuer:
            user_id, _, token = new_user(issuer)  # signed by a key Envoy cannot fetch
        resp = envoy.request(path=f"/api/{user_id}/notes", token=token)
        assert_denied(resp, 503, "keys_unavailable", upstream)
        assert resp.header("retry-after") == "1"
        # A body arriving while the request waits for keys must not carry it upstream.
        post = envoy.request("POST", f"/api/{user_id}/notes", token=token,
                             body=b'{"note": "' + b"x" * 70000 + b'"}',
                             headers={"content-type": "application/json"})
        assert_denied(post, 503, "keys_unavailable", upstream)
        # Requests that need no key are not held back.
        missing = envoy.request(path=f"/api/{user_id}/notes")
        assert_denied(missing, 401, "missing_token", upstream)
    finally:
        stop_checked(envoy)


def test_request_waiting_for_keys_holds_its_body(npm_installed, workdir, upstream):
    # An issuer that accepts connections and never answers: the first fetch hangs
    # until its timeout, and a request needing keys waits that long, body included.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)
        port = black_hole.getsockname()[1]
        envoy = start_guard("ba-hang", workdir, upstream, port, f"http://127.0.0.1:{port}",
                            timeout_ms=4000)
        try:
            with betterauth.start_server("EdDSA") as issuer:
                user_id, _, token = new_user(issuer)
            started = time.monotonic()
            resp = envoy.request("POST", f"/api/{user_id}/notes", token=token,
                                 body=b'{"note": "' + b"z" * 200000 + b'"}',
                                 headers={"content-type": "application/json"})
            waited = time.monotonic() - started
            assert_denied(resp, 503, "keys_unavailable", upstream)
            print(f"waited {waited:.2f} s")
            assert waited < 10, waited  # bounded by the fetch timeout, not hung
        finally:
            stop_checked(envoy)
