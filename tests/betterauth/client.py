"""Start the Better Auth test issuer (server.mjs) and talk to it like a browser client.

Python 3.11 standard library only. From tests/e2e:

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "betterauth"))
    import client as betterauth

    with betterauth.start_server(alg="ES256") as issuer:
        user_id, cookie = betterauth.sign_up(issuer.base_url, "a@example.com", "pw-123456789", "A")
        token = betterauth.get_token(issuer.base_url, cookie)
        jwks = betterauth.get_jwks(issuer.base_url)

`npm ci` in tests/betterauth must have run before (the Makefile does it); this module
never installs anything.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER_SCRIPT = HERE / "server.mjs"
API_PREFIX = "/api/auth"
ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")

# Requests go straight to loopback: never through an HTTP proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BetterAuthError(RuntimeError):
    """The issuer failed to start, or answered a request with an error."""

    def __init__(self, message: str, status: int | None = None, body: str = ""):
        super().__init__(message if status is None else f"{message}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass
class Issuer:
    """A running server.mjs process."""

    proc: subprocess.Popen
    port: int
    base_url: str
    alg: str
    _stderr_tail: deque = field(default_factory=lambda: deque(maxlen=200))

    @property
    def jwks_url(self) -> str:
        return self.base_url + API_PREFIX + "/jwks"

    def stderr_tail(self) -> str:
        return "".join(self._stderr_tail)

    def stop(self, timeout: float = 5.0) -> None:
        stop_server(self, timeout)

    def __enter__(self) -> "Issuer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _drain(stream, sink: deque) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
    stream.close()


def start_server(
    alg: str = "EdDSA",
    *,
    port: int = 0,
    rotation_seconds: int | None = None,
    grace_seconds: int | None = None,
    expiration: str | None = None,
    base_url: str | None = None,
    secret: str | None = None,
    extra_env: dict[str, str] | None = None,
    node: str | None = None,
    timeout: float = 30.0,
) -> Issuer:
    """Start server.mjs and wait (at most `timeout` seconds) for its "READY <port>" line.

    port=0 (default) lets the kernel pick a free port, with no race; the real port is read
    from the READY line and the base URL (= `iss` = `aud`) becomes http://127.0.0.1:<port>
    unless `base_url` is given. `rotation_seconds` sets jwks.rotationInterval,
    `grace_seconds` jwks.gracePeriod, `expiration` jwt.expirationTime (e.g. "5s").
    `extra_env` can set any other variable server.mjs reads (JWT_ISSUER, JWT_AUDIENCE,
    JWKS_PATH, JWKS_PREMINT, HOST).
    """
    if alg not in ALGORITHMS:
        raise ValueError(f"alg must be one of {ALGORITHMS}, got {alg!r}")
    if not (HERE / "node_modules" / "better-auth").is_dir():
        raise BetterAuthError(f"{HERE}/node_modules is missing: run `npm ci` in {HERE} first")
    node = node or os.environ.get("NODE") or shutil.which("node")
    if not node:
        raise BetterAuthError("no `node` executable found (set NODE or PATH)")

    env = dict(os.environ)
    env.update(PORT=str(port), JWT_ALG=alg, BETTER_AUTH_TELEMETRY="0")
    for name in ("JWKS_ROTATION_SECONDS", "JWKS_GRACE_SECONDS", "JWT_EXPIRATION", "BETTER_AUTH_URL"):
        env.pop(name, None)
    if rotation_seconds is not None:
        env["JWKS_ROTATION_SECONDS"] = str(rotation_seconds)
    if grace_seconds is not None:
        env["JWKS_GRACE_SECONDS"] = str(grace_seconds)
    if expiration is not None:
        env["JWT_EXPIRATION"] = expiration
    if base_url is not None:
        env["BETTER_AUTH_URL"] = base_url
    if secret is not None:
        env["BETTER_AUTH_SECRET"] = secret
    env.update(extra_env or {})

    proc = subprocess.Popen(
        [node, str(SERVER_SCRIPT)],
        cwd=HERE,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stderr_tail: deque = deque(maxlen=200)
    stderr_thread = threading.Thread(target=_drain, args=(proc.stderr, stderr_tail), daemon=True)
    stderr_thread.start()

    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    line = ready[0].strip() if ready else ""
    if not line.startswith("READY "):
        timed_out = not ready
        _kill(proc)
        stderr_thread.join(2)
        why = f"no READY within {timeout:g}s" if timed_out else f"exited with {proc.returncode}"
        raise BetterAuthError(
            f"Better Auth issuer did not start ({why}); stdout={line!r}; stderr:\n"
            + "".join(stderr_tail)
        )
    # Keep draining stdout so the child can never block on a full pipe.
    stdout_rest: deque = deque(maxlen=50)
    threading.Thread(target=_drain, args=(proc.stdout, stdout_rest), daemon=True).start()

    actual_port = int(line.split()[1])
    url = base_url or f"http://127.0.0.1:{actual_port}"
    return Issuer(proc=proc, port=actual_port, base_url=url.rstrip("/"), alg=alg, _stderr_tail=stderr_tail)


def _kill(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


def stop_server(issuer: Issuer, timeout: float = 5.0) -> None:
    """Stop the server (SIGTERM, then SIGKILL after `timeout`). Safe to call twice."""
    _kill(issuer.proc, timeout)


# --- HTTP, as a browser on the issuer's own origin would do it ---------------------------

def _origin(base_url: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _request(method: str, url: str, *, body=None, headers=None, timeout: float = 10.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        raise BetterAuthError(f"{method} {url}", e.code, e.read().decode(errors="replace")) from None


def _cookie_header(headers) -> str:
    pairs = [c.split(";", 1)[0].strip() for c in headers.get_all("Set-Cookie") or []]
    return "; ".join(p for p in pairs if p)


def _post_credentials(base_url: str, path: str, body: dict) -> tuple[str, str]:
    base_url = base_url.rstrip("/")
    # Better Auth checks Origin against trustedOrigins on cookie-bearing POSTs and on any
    # POST that carries one; the base URL's own origin is always trusted. Send it as a
    # same-origin browser page would.
    _, headers, text = _request(
        "POST",
        base_url + API_PREFIX + path,
        body=body,
        headers={"Origin": _origin(base_url)},
    )
    cookie = _cookie_header(headers)
    if "session_token=" not in cookie:
        raise BetterAuthError(f"POST {path} set no session cookie (Set-Cookie: {cookie!r})")
    return json.loads(text)["user"]["id"], cookie


def sign_up(base_url: str, email: str, password: str, name: str) -> tuple[str, str]:
    """POST /api/auth/sign-up/email. Returns (user_id, cookie) where cookie is the value
    for a Cookie request header (it holds the signed better-auth.session_token).
    Better Auth's default minimum password length is 8."""
    return _post_credentials(base_url, "/sign-up/email", {"email": email, "password": password, "name": name})


def sign_in(base_url: str, email: str, password: str) -> tuple[str, str]:
    """POST /api/auth/sign-in/email. Returns (user_id, cookie) for a new session."""
    return _post_credentials(base_url, "/sign-in/email", {"email": email, "password": password})


def get_token(base_url: str, cookie: str) -> str:
    """GET /api/auth/token with the session cookie: the jwt plugin signs a fresh JWT."""
    _, _, text = _request("GET", base_url.rstrip("/") + API_PREFIX + "/token", headers={"Cookie": cookie})
    return json.loads(text)["token"]


def get_session_jwt(base_url: str, cookie: str) -> str:
    """GET /api/auth/get-session: the jwt plugin adds the JWT as the `set-auth-jwt` header."""
    _, headers, _ = _request("GET", base_url.rstrip("/") + API_PREFIX + "/get-session", headers={"Cookie": cookie})
    token = headers.get("set-auth-jwt")
    if not token:
        raise BetterAuthError("get-session returned no set-auth-jwt header (no session?)")
    return token


def get_jwks(base_url: str, path: str = "/jwks") -> dict:
    """GET /api/auth/jwks (or another jwks path). Returns the parsed JSON: {"keys": [...]}."""
    _, _, text = _request("GET", base_url.rstrip("/") + API_PREFIX + path)
    return json.loads(text)


def decode_unverified(token: str) -> tuple[dict, dict]:
    """(header, payload) of a compact JWS, without verifying anything."""

    def part(s: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))

    h, p, _ = token.split(".")
    return part(h), part(p)


def wait_for_new_kid(base_url: str, cookie: str, old_kid: str, timeout: float = 30.0, step: float = 0.5) -> str:
    """Sign tokens until one carries a kid other than `old_kid` (after a rotation interval
    has passed). Returns that token."""
    deadline = time.monotonic() + timeout
    while True:
        token = get_token(base_url, cookie)
        if decode_unverified(token)[0].get("kid") != old_kid:
            return token
        if time.monotonic() > deadline:
            raise BetterAuthError(f"still signing with kid {old_kid} after {timeout:g}s")
        time.sleep(step)
