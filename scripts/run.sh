#!/usr/bin/env bash
# Run the jwt-guard demo: the echo upstream on 127.0.0.1:18080 and Envoy (envoy.yaml) on
# :10000 with the filter, then print curl commands to try it. CTRL-C stops both.
#
#   make run                      # builds the module and the venv first, then this
#   scripts/run.sh [--smoke]      # --smoke: send the three demo requests, check, exit
#
# Settings: BETTER_AUTH_SECRET (from .env if that file exists, else the environment),
# ENVOY (default .venv/bin/envoy), PYTHON (default .venv/bin/python).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SMOKE=0
case "${1:-}" in
  --smoke) SMOKE=1 ;;
  "") ;;
  -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "run.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

ENVOY=${ENVOY:-$([ -x .venv/bin/envoy ] && echo .venv/bin/envoy || echo envoy)}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
MODULE=target/jwt_guard.wasm
RUN_DIR=target/run
LISTEN_PORT=10000 ADMIN_PORT=9901 UPSTREAM_PORT=18080   # as in envoy.yaml

if [ -f .env ]; then
  set -a
  # shellcheck disable=SC1091
  . ./.env
  set +a
fi
if [ -z "${BETTER_AUTH_SECRET:-}" ]; then
  cat >&2 <<'EOF'
run.sh: BETTER_AUTH_SECRET is not set.
  The filter verifies HS256 tokens with it (Envoy passes it into the Wasm VM).
  Create .env from the example and put a long random secret in it:
      cp .env.example .env && $EDITOR .env
  (for example: BETTER_AUTH_SECRET=$(openssl rand -base64 32)), or export it.
EOF
  exit 1
fi
export BETTER_AUTH_SECRET

if ! command -v "$ENVOY" >/dev/null 2>&1; then
  echo "run.sh: no envoy at '$ENVOY' (make venv)" >&2
  exit 1
fi
[ -f "$MODULE" ] || { echo "run.sh: $MODULE is missing (make build)" >&2; exit 1; }

port_busy() {
  "$PYTHON" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
for port in $LISTEN_PORT $ADMIN_PORT $UPSTREAM_PORT; do
  if port_busy "$port"; then
    echo "run.sh: port $port is already in use (another 'make run'?); stop that first" >&2
    exit 1
  fi
done

mkdir -p "$RUN_DIR"
: > "$RUN_DIR/envoy.log"
UPSTREAM_PID="" ENVOY_PID=""
cleanup() {
  trap - EXIT INT TERM
  [ -n "$ENVOY_PID" ] && kill "$ENVOY_PID" 2>/dev/null || true
  [ -n "$UPSTREAM_PID" ] && kill "$UPSTREAM_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

"$PYTHON" demo/upstream.py --port "$UPSTREAM_PORT" --log "$RUN_DIR/upstream-requests.jsonl" \
  2> "$RUN_DIR/upstream.log" &
UPSTREAM_PID=$!

# Envoy's own log goes to a file; its stdout (the access log) stays on this terminal.
"$ENVOY" -c envoy.yaml --concurrency 1 --use-dynamic-base-id \
  --log-path "$RUN_DIR/envoy.log" --log-level info &
ENVOY_PID=$!

ready=0
for _ in $(seq 1 200); do   # 20 s
  if ! kill -0 "$ENVOY_PID" 2>/dev/null || ! kill -0 "$UPSTREAM_PID" 2>/dev/null; then
    break
  fi
  if "$PYTHON" -c "import urllib.request as u, sys; u.urlopen(sys.argv[1], timeout=1)" \
      "http://127.0.0.1:$ADMIN_PORT/ready" 2>/dev/null && port_busy "$UPSTREAM_PORT"; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "run.sh: Envoy or the upstream did not become ready; last lines of $RUN_DIR/envoy.log:" >&2
  tail -n 25 "$RUN_DIR/envoy.log" >&2 || true
  tail -n 5 "$RUN_DIR/upstream.log" >&2 || true
  exit 1
fi

TOKEN=$("$PYTHON" -W ignore scripts/mint_token.py alice --ttl 3600)
BASE="http://localhost:$LISTEN_PORT"

if [ "$SMOKE" = 1 ]; then
  TOKEN="$TOKEN" BASE="$BASE" "$PYTHON" - <<'EOF'
import os, sys, urllib.error, urllib.request
base, token = os.environ["BASE"], os.environ["TOKEN"]
cases = [("/api/alice/profile", token, 200), ("/api/bob/profile", token, 403),
         ("/api/alice/profile", None, 401)]
failed = 0
for path, tok, want in cases:
    req = urllib.request.Request(base + path)
    if tok:
        req.add_header("Authorization", "Bearer " + tok)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            got, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        got, body = err.code, err.read()
    ok = got == want
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {path} token={'yes' if tok else 'no'}: {got} "
          f"(want {want}) {body[:100].decode(errors='replace').strip()}")
sys.exit(1 if failed else 0)
EOF
  exit $?
fi

cat <<EOF

jwt-guard demo is up: Envoy on $BASE (admin http://127.0.0.1:$ADMIN_PORT),
echo upstream on 127.0.0.1:$UPSTREAM_PORT. Logs in $RUN_DIR/. CTRL-C stops both.
A token for user "alice", valid for 1 hour, is in the commands below.

# 200: alice on her own path (the upstream echoes the x-user-id: alice it received)
curl -i -H 'Authorization: Bearer $TOKEN' $BASE/api/alice/profile

# 403 user_mismatch: alice on bob's path
curl -i -H 'Authorization: Bearer $TOKEN' $BASE/api/bob/profile

# 401 missing_token: no token at all
curl -i $BASE/api/alice/profile

# Another user's token (needs the same BETTER_AUTH_SECRET in your shell or .env), counters:
#   (set -a; [ -f .env ] && . ./.env; $PYTHON scripts/mint_token.py bob --ttl 600)
#   curl -s 'http://127.0.0.1:$ADMIN_PORT/stats?filter=jwt_guard'

Access log (one line per request):
EOF

wait "$ENVOY_PID" || true
echo "run.sh: Envoy exited; see $RUN_DIR/envoy.log" >&2
