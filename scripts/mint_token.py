#!/usr/bin/env python3
"""Mint an HS256 JWT for trying jwt-guard by hand (needs PyJWT: use .venv/bin/python).

    scripts/mint_token.py [SUB] [--ttl SECONDS] [--iss URL] [--aud URL] [--claim k=v ...]

The secret is read from the environment variable named by --secret-env (default
BETTER_AUTH_SECRET), used as the raw bytes of the string, as the filter does. Prints the
token alone on stdout. Examples:

    BETTER_AUTH_SECRET=... scripts/mint_token.py alice --ttl 3600
    curl -H "Authorization: Bearer $(scripts/mint_token.py alice)" localhost:10000/api/alice/x
"""

import argparse
import json
import os
import sys
import time

try:
    import jwt
except ImportError:  # pragma: no cover
    sys.exit("mint_token.py needs PyJWT: run it with .venv/bin/python (make venv)")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Mint an HS256 JWT for jwt-guard.")
    parser.add_argument("sub", nargs="?", default="alice", help="the user id (sub claim)")
    parser.add_argument("--ttl", type=int, default=3600,
                        help="seconds until exp (default 3600; 0 or less: already expired)")
    parser.add_argument("--no-exp", action="store_true", help="leave exp out")
    parser.add_argument("--iss", help="iss claim")
    parser.add_argument("--aud", action="append", help="aud claim (repeat for an array)")
    parser.add_argument("--claim", action="append", default=[], metavar="NAME=JSON",
                        help="extra claim; the value is parsed as JSON, else kept as a string")
    parser.add_argument("--secret-env", default="BETTER_AUTH_SECRET",
                        help="environment variable holding the HS256 secret")
    args = parser.parse_args(argv)

    secret = os.environ.get(args.secret_env, "")
    if not secret:
        sys.exit(f"mint_token.py: ${args.secret_env} is not set (see .env.example)")

    now = int(time.time())
    claims = {"sub": args.sub, "iat": now}
    if not args.no_exp:
        claims["exp"] = now + args.ttl
    if args.iss:
        claims["iss"] = args.iss
    if args.aud:
        claims["aud"] = args.aud[0] if len(args.aud) == 1 else args.aud
    for item in args.claim:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--claim wants NAME=VALUE, got {item!r}")
        try:
            claims[name] = json.loads(value)
        except ValueError:
            claims[name] = value
    print(jwt.encode(claims, secret.encode("utf-8"), algorithm="HS256"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
