"""The Wasm module never writes a secret, a token, key material or a user id to the log.

One Envoy at `--log-level trace --component-log-level wasm:trace` with three listeners,
each with its own jwt-guard plugin configuration:
- `inline`: inline HS256 secret (BETTER_AUTH_SECRET is ALSO set in Envoy's environment,
  to a value the plugin must ignore), an inline JWKS with every fixture key (EdDSA x2,
  ES256, ES384, ES512, RSA), an `oct` key (HS512, its `k`) and an encryption-use RSA key
  that the plugin skips with a warning;
- `env`: the HS256 secret from an environment variable through host_env_keys;
- `short`: an inline secret shorter than 32 bytes (the plugin warns about it).
A mixed batch goes through them: a valid token of every algorithm for a distinct user,
and bad ones (other user's path, bad signature, tampered, expired, alg none, opaque,
malformed, too large, ambiguous path, missing). Then Envoy is stopped and its complete
log (log file + stdout/stderr) is read.

SCOPE: at trace level Envoy core itself logs every request header, the Authorization
header included, and its bootstrap with the plugin configuration (inline secret and
JWKS). That is Envoy's own logging (do not run Envoy at debug/trace in production with
real tokens), not the module's. So the no-leak assertion covers exactly the log records
emitted by the Wasm module, i.e. the records whose first line contains "wasm log"
(Envoy's prefix for proxy_log calls), continuation lines of a multi-line message
included. Two controls keep the test honest: the module must have logged something at
debug/trace during the batch (so the assertion is not vacuous), and the same search
must find the tokens in Envoy's own lines (so the search itself works).
"""

import copy
import re
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from harness import (JWKS_KEYS, Envoy, Ports, b64url, bootstrap, claims, craft, envoy_env,
                     free_port, jwk_for, load_private_key, mint, public_pem, stop_checked,
                     wasm_filter)

RUN = uuid.uuid4().hex[:10]
INLINE_SECRET = f"log-inline-secret-{RUN}-0123456789abcdef"
ENV_SECRET = f"log-env-secret-{RUN}-0123456789abcdef"
SHADOWED_SECRET = f"log-shadowed-secret-{RUN}-0123456789"
SHORT_SECRET = f"short-{RUN}"  # 16 bytes: below the 32-byte minimum, draws a warning
OCT_SECRET = f"log-oct-hs512-secret-{RUN}-0123456789abcdef0123456789abcdef"
ENV_NAME = "JWT_GUARD_LOG_TEST_SECRET"

KEY_FILES = ["ed25519.pem", "ed25519-b.pem", "p256.pem", "p384.pem", "p521.pem",
             "rsa2048.pem"]


def _jwks() -> dict:
    keys = [jwk_for(JWKS_KEYS[kid][0], kid, JWKS_KEYS[kid][1]) for kid in JWKS_KEYS]
    keys.append(jwk_for("p521.pem", "ec-521"))
    keys.append({"kty": "oct", "kid": "oct-1", "alg": "HS512", "k": b64url(OCT_SECRET)})
    keys.append(dict(jwk_for("rsa2048.pem", "rsa-enc"), use="enc"))  # skipped, warned
    return {"keys": keys}


JWKS = _jwks()
CONFIGS = {
    "inline": {"secret": INLINE_SECRET, "jwks": JWKS},
    "env": {"secret_env": ENV_NAME, "jwks": {"keys": JWKS["keys"][:2]}},
    "short": {"secret": SHORT_SECRET},
}


def user(tag: str) -> str:
    return f"user-{tag}-{RUN}"


@pytest.fixture(scope="module")
def traced(module_path, workdir, upstream):
    """Envoy at trace with one listener per configuration; yields (envoy, ports)."""
    keys = ("BETTER_AUTH_SECRET", ENV_NAME)
    ports = Ports()
    listener_ports = {"inline": ports.listener, "env": free_port(), "short": free_port()}
    config = bootstrap(ports, upstream.port, [wasm_filter(CONFIGS["inline"], keys)])
    template = config["static_resources"]["listeners"][0]
    for name in ("env", "short"):
        listener = copy.deepcopy(template)
        listener["name"] = f"ingress-{name}"
        listener["address"]["socket_address"]["port_value"] = listener_ports[name]
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["http_filters"][0] = wasm_filter(CONFIGS[name], keys)
        config["static_resources"]["listeners"].append(listener)
    env = envoy_env({"BETTER_AUTH_SECRET": SHADOWED_SECRET, ENV_NAME: ENV_SECRET})
    envoy = Envoy("log-hygiene", config, workdir, env=env, ports=ports, log_level="trace",
                  component_log_level="wasm:trace").start()
    views = {}
    for name, port in listener_ports.items():
        view = copy.copy(envoy)
        view.ports = Ports(listener=port, admin=ports.admin)
        views[name] = view
    yield envoy, views
    if envoy.alive():
        envoy.stop()


def hs256(payload: dict, secret: str) -> str:
    return craft({"alg": "HS256", "typ": "JWT"}, payload, secret=secret)


def _batch() -> list[tuple[str, str, str | None, int]]:
    """(listener, path, token, expected status) for the whole mixed batch."""
    out = []
    valid = [
        ("inline", "HS256", INLINE_SECRET, None),
        ("inline", "HS512", OCT_SECRET, "oct-1"),
        ("inline", "EdDSA", "ed25519.pem", "ed-1"),
        ("inline", "EdDSA", "ed25519-b.pem", "ed-2"),
        ("inline", "ES256", "p256.pem", "ec-256"),
        ("inline", "ES384", "p384.pem", "ec-384"),
        ("inline", "ES512", "p521.pem", "ec-521"),
        ("inline", "RS256", "rsa2048.pem", "rsa-1"),
        ("inline", "RS384", "rsa2048.pem", "rsa-1"),
        ("inline", "RS512", "rsa2048.pem", "rsa-1"),
        ("inline", "PS256", "rsa2048.pem", "rsa-1"),
        ("inline", "PS384", "rsa2048.pem", "rsa-1"),
        ("inline", "PS512", "rsa2048.pem", "rsa-1"),
        ("env", "HS256", ENV_SECRET, None),
        ("env", "EdDSA", "ed25519.pem", "ed-1"),
        ("short", "HS256", SHORT_SECRET, None),
    ]
    for i, (listener, alg, key, kid) in enumerate(valid):
        name = user(f"{alg.lower()}{i}")
        payload = claims(sub=name, email=f"{name}@example.com")
        token = (hs256(payload, key) if alg == "HS256"
                 else mint(payload, alg=alg, key=key, kid=kid))
        out.append((listener, f"/api/{name}/profile", token, 200))
        out.append((listener, f"/api/{user('victim')}/profile", token, 403))
        out.append((listener, "/other", token, 200))
        head, payload, sig = token.split(".")
        tampered = b64url(('{"sub":"%s","exp":4102444800}' % user("forged")).encode())
        out.append((listener, f"/api/{name}/x", f"{head}.{tampered}.{sig}", 401))
    secret_for = {"inline": INLINE_SECRET, "env": ENV_SECRET, "short": SHORT_SECRET}
    for listener, secret in secret_for.items():
        name = user(f"bad-{listener}")
        own = f"/api/{name}/x"
        bad = [
            mint(claims(sub=name), key=SHADOWED_SECRET),                  # bad signature
            hs256(claims(sub=name, ttl=-3600), secret),                    # expired
            hs256(claims(sub=name, nbf=4102444800), secret),              # not yet valid
            hs256(claims(sub=name, ttl=None), secret),                     # missing exp
            craft({"alg": "none"}, claims(sub=name), signature=""),        # alg none
            craft({"alg": "HS256", "crit": ["x"]}, claims(sub=name), secret=secret),
            mint(claims(sub=name), alg="EdDSA", key="ed25519.pem", kid="nope"),
            f"opaque-session-{RUN}-Xk3sP9qLmN2vR7tY1wZ4",                 # not a JWT
            craft({"alg": "HS256"}, '{"sub":"%s","sub":"x"}' % name, secret=secret),
            hs256(claims(sub=name, pad="p" * 9000), secret),               # too large
        ]
        out += [(listener, own, token, 401) for token in bad]
        out.append((listener, own, None, 401))                             # missing
        out.append((listener, f"/api/{name}/../x", hs256(claims(sub=name), secret), 400))
    return out


def _needles(batch) -> dict[str, str]:
    """Every string that must not appear in a module log line -> what it is."""
    needles = {}

    def add(value: str, what: str, minimum: int = 12):
        if value and len(value) >= minimum:
            needles[value] = what

    for secret, what in [(INLINE_SECRET, "inline secret"), (ENV_SECRET, "env secret"),
                         (SHADOWED_SECRET, "shadowed env secret"),
                         (SHORT_SECRET, "short secret"), (OCT_SECRET, "oct key secret")]:
        add(secret, what)
        add(b64url(secret), what + " (base64url)")
        add(secret.encode().hex()[:24], what + " (hex)")
        add(", ".join(str(b) for b in secret.encode()[:10]), what + " (byte list)")
    for key in JWKS["keys"]:
        for member in ("x", "y", "n", "k", "d"):
            if member in key:
                add(key[member], f"JWK {key['kid']}.{member}")
                add(key[member][:40], f"JWK {key['kid']}.{member} (prefix)")
    for key_file in KEY_FILES:
        private = load_private_key(key_file).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        for pem, what in [(private, "private"), (public_pem(key_file).decode(), "public")]:
            for line in pem.splitlines():
                if not line.startswith("-----"):
                    add(line, f"{key_file} {what} PEM line", minimum=16)
    for _, path, token, _ in batch:
        if token:
            add(token, "token")
            for i, segment in enumerate(token.split(".")):
                add(segment, f"token segment {i}", minimum=16)
        for match in re.findall(r"user-[a-z0-9-]+-" + RUN, path + (token or "")):
            add(match, "user id", minimum=8)
    for tag in ("victim", "forged"):
        add(user(tag), "user id", minimum=8)
    return needles


RECORD_START = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\]")


def log_records(text: str) -> list[str]:
    """Envoy log records: a line starting with a timestamp, plus any continuation
    lines (a multi-line message) up to the next timestamp."""
    records: list[str] = []
    for line in text.splitlines():
        if RECORD_START.match(line) or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return records


def test_log_records_joins_continuation_lines():
    text = "[2026-01-01 00:00:00.000][1][debug][wasm] x wasm log a: one\ntwo\n" \
           "[2026-01-01 00:00:00.001][1][info][main] y"
    assert log_records(text) == ["[2026-01-01 00:00:00.000][1][debug][wasm] x wasm log a: "
                                 "one\ntwo", "[2026-01-01 00:00:00.001][1][info][main] y"]


def test_trace_log_of_mixed_batch_has_no_secret_in_module_lines(traced, upstream):
    envoy, views = traced
    batch = _batch()
    for listener, path, token, status in batch:
        resp = views[listener].request(path=path, token=token)
        assert resp.status == status, (listener, path, token and token[:40], resp)

    stop_checked(envoy)  # flushes the log; fails on a VM crash
    text = envoy.log_text()
    records = log_records(text)
    module = [r for r in records if "wasm log" in r.split("\n", 1)[0]]
    envoy_own = [r for r in records if "wasm log" not in r.split("\n", 1)[0]]
    needles = _needles(batch)
    print(f"log: {len(text)} bytes, {len(records)} records, {len(module)} from the module, "
          f"{len(needles)} needles")

    # Control 1: the module did log at debug/trace during the batch.
    level = re.compile(r"^\[[^\]]+\]\[\d+\]\[(trace|debug)\]")
    per_request = [r for r in module if level.match(r) and "jwt-guard: denied:" in r]
    assert len(per_request) >= 50, module[:20]
    assert any("jwt-guard: allowed" in r for r in module), module[:20]
    # ... and at configuration time (the warnings are the lines most likely to quote).
    assert any("shorter than 32 bytes" in r for r in module), module[:20]
    assert any("skipped" in r for r in module), module[:20]

    # Control 2: the very same search finds tokens in Envoy's own trace lines.
    own_text = "\n".join(envoy_own)
    found = [what for needle, what in needles.items() if needle in own_text]
    assert "token" in found, "Envoy's own trace logging no longer shows tokens: " \
                             "the search cannot be trusted"

    leaks = []
    for record in module:
        for needle, what in needles.items():
            if needle in record:
                leaks.append(f"{what}: {record[:300]}")
    assert not leaks, f"{len(leaks)} leak(s) in module log lines:\n" + "\n".join(leaks[:20])
