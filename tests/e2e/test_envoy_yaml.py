"""The shipped envoy.yaml (ports swapped for free ones), i.e. the hardened combination:
Envoy normalises paths, merges slashes and rejects escaped slashes; the CORS filter sits
in front of jwt-guard. Plus scripts/run.sh end to end."""

import socket
import subprocess

import pytest

from harness import (MODULE, REPO, Envoy, Ports, assert_allowed, assert_denied, envoy_binary,
                     envoy_env, mint, stop_checked)

SECRET = "envoy-yaml-e2e-secret-0123456789abcdef0123456789"
ORIGIN = "http://localhost:3000"


def render_envoy_yaml(ports: Ports, upstream_port: int) -> str:
    text = (REPO / "envoy.yaml").read_text()
    for old, new in [("port_value: 10000", f"port_value: {ports.listener}"),
                     ("port_value: 9901", f"port_value: {ports.admin}"),
                     ("port_value: 18080", f"port_value: {upstream_port}"),
                     ("address: 0.0.0.0", "address: 127.0.0.1"),
                     ("filename: target/jwt_guard.wasm", f"filename: {MODULE}")]:
        assert text.count(old) == 1, f"envoy.yaml no longer has exactly one {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def demo(module_path, workdir, upstream):
    ports = Ports()
    envoy = Envoy("envoy-yaml", render_envoy_yaml(ports, upstream.port), workdir,
                  env=envoy_env({"BETTER_AUTH_SECRET": SECRET}), ports=ports).start()
    yield envoy
    stop_checked(envoy)


def token(sub="alice"):
    return mint({"sub": sub, "exp": 4102444800}, key=SECRET)


def auth():
    return [b"Authorization: Bearer " + token().encode()]


def test_envoy_yaml_validate_accepted(module_path):
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", "envoy.yaml", "--use-dynamic-base-id"],
        cwd=REPO, env=envoy_env({"BETTER_AUTH_SECRET": SECRET}), capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_envoy_yaml_own_path_allowed(demo, upstream):
    assert_allowed(demo.request(path="/api/alice/profile", token=token()), upstream, "alice")


def test_envoy_yaml_other_path_forbidden(demo, upstream):
    resp = demo.request(path="/api/bob/profile", token=token())
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_envoy_yaml_no_token_denied_missing_token(demo, upstream):
    assert_denied(demo.request(path="/api/alice/profile"), 401, "missing_token", upstream)


def test_envoy_yaml_dot_segments_normalised_then_forbidden(demo, upstream):
    resp = demo.raw(b"GET /api/alice/../bob/profile HTTP/1.1", auth())
    assert_denied(resp, 403, "user_mismatch", upstream)


def test_envoy_yaml_dot_segments_normalised_then_allowed(demo, upstream):
    resp = demo.raw(b"GET /api/bob/../alice/./profile HTTP/1.1", auth())
    record = assert_allowed(resp, upstream, "alice")
    assert record["path"] == "/api/alice/profile"


def test_envoy_yaml_repeated_slashes_merged_then_allowed(demo, upstream):
    resp = demo.raw(b"GET /api//alice///profile HTTP/1.1", auth())
    record = assert_allowed(resp, upstream, "alice")
    assert record["path"] == "/api/alice/profile"


@pytest.mark.parametrize("path", [b"/api/alice%2Fprofile", b"/api/alice%2f..%2fbob",
                                  b"/api/alice/%5C..%5Cbob"])
def test_envoy_yaml_escaped_slash_rejected_by_envoy(demo, upstream, path):
    resp = demo.raw(b"GET " + path + b" HTTP/1.1", auth())
    assert resp.status == 400, resp
    assert not upstream.saw(resp.test_id)


def test_envoy_yaml_encoded_dot_segments_never_reach_other_user(demo, upstream):
    resp = demo.raw(b"GET /api/alice/%2e%2e/bob/profile HTTP/1.1", auth())
    assert resp.status in (400, 403), resp
    assert not upstream.saw(resp.test_id)


def test_envoy_yaml_semicolon_denied_ambiguous_path(demo, upstream):
    resp = demo.raw(b"GET /api/alice;x=1/profile HTTP/1.1", auth())
    assert_denied(resp, 400, "ambiguous_path", upstream)


def test_envoy_yaml_preflight_from_allowed_origin_answered_by_cors(demo, upstream):
    resp = demo.request("OPTIONS", "/api/alice/profile", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert resp.status == 200, resp
    assert resp.header("access-control-allow-origin") == ORIGIN, resp
    assert "authorization" in (resp.header("access-control-allow-headers") or "").lower()
    assert not upstream.saw(resp.test_id)


def test_envoy_yaml_preflight_from_other_origin_gets_no_cors_grant(demo, upstream):
    resp = demo.request("OPTIONS", "/api/alice/profile", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert resp.header("access-control-allow-origin") is None, resp


def test_envoy_yaml_denial_to_allowed_origin_readable_by_browser(demo, upstream):
    resp = demo.request(path="/api/alice/profile", headers={"Origin": ORIGIN})
    assert_denied(resp, 401, "missing_token", upstream)
    assert resp.header("access-control-allow-origin") == ORIGIN, resp


def test_envoy_yaml_allowed_request_from_allowed_origin_has_cors_grant(demo, upstream):
    resp = demo.request(path="/api/alice/profile", token=token(), headers={"Origin": ORIGIN})
    assert_allowed(resp, upstream, "alice")
    assert resp.header("access-control-allow-origin") == ORIGIN, resp


def test_envoy_yaml_request_from_other_origin_has_no_cors_grant(demo, upstream):
    resp = demo.request(path="/api/alice/profile", token=token(),
                        headers={"Origin": "http://evil.example"})
    assert_allowed(resp, upstream, "alice")
    assert resp.header("access-control-allow-origin") is None, resp


# ----------------------------------------------------------------------------- run.sh


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_run_script_smoke_three_demo_requests_pass(module_path):
    if any(_port_in_use(p) for p in (10000, 9901, 18080)):
        pytest.skip("a demo (make run) is already using ports 10000/9901/18080")
    env = envoy_env({"BETTER_AUTH_SECRET": SECRET})
    result = subprocess.run(["bash", "scripts/run.sh", "--smoke"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=90)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert out.count("ok  ") == 3, out[-3000:]
    assert not any(_port_in_use(p) for p in (10000, 9901, 18080)), "run.sh left a process"


def test_run_script_without_secret_exits_1(module_path):
    if (REPO / ".env").exists():
        pytest.skip(".env exists here: run.sh would read the secret from it")
    result = subprocess.run(["bash", "scripts/run.sh"], cwd=REPO, env=envoy_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ".env.example" in result.stderr
