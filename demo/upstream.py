#!/usr/bin/env python3
"""Demo upstream for jwt-guard: a tiny HTTP/1.1 echo server (standard library only).

Every request, whatever its method, is answered with 200 and a JSON body
{"method": ..., "path": ..., "headers": {...}} describing what arrived, so you can see
what Envoy forwarded (for example the x-user-id header set by the filter). Header names
are lower-cased; a header sent more than once shows as a list of its values.

    python3 demo/upstream.py [--port PORT] [--host HOST] [--log FILE]

The port comes from --port, else the first positional argument, else $UPSTREAM_PORT,
else 18080. With --log FILE, one JSON line per received request is appended to FILE
(and flushed before the response is sent), so a test can prove that a request denied by
the filter never reached the upstream.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm
    # holds the body until the peer's delayed ACK (~40 ms) on a keep-alive connection.
    disable_nagle_algorithm = True
    server_version = "jwt-guard-demo-upstream"
    sys_version = ""

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {}
        for name, value in self.headers.items():
            key = name.lower()
            if key in headers:
                prev = headers[key]
                headers[key] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                headers[key] = value
        record = {"method": self.command, "path": self.path, "headers": headers}
        if body:
            record["body"] = body.decode("utf-8", "replace")
        self.server.record(record)
        payload = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def log_message(self, fmt, *args):  # one short line per request on stderr
        if not self.server.quiet:
            sys.stderr.write("upstream: %s\n" % (fmt % args))


for _method in METHODS:
    setattr(EchoHandler, "do_" + _method, EchoHandler._handle)


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, log_path=None, quiet=False):
        super().__init__(address, EchoHandler)
        self.log_path = log_path
        self.quiet = quiet
        self._lock = threading.Lock()

    def record(self, record):
        if not self.log_path:
            return
        line = json.dumps(dict(record, time=time.time()), sort_keys=True) + "\n"
        with self._lock, open(self.log_path, "a", encoding="utf-8") as log:
            log.write(line)
            log.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port_pos", nargs="?", type=int, metavar="PORT")
    parser.add_argument("--port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--log", metavar="FILE", help="append one JSON line per request")
    parser.add_argument("--quiet", action="store_true", help="no per-request stderr line")
    args = parser.parse_args(argv)
    port = args.port or args.port_pos or int(os.environ.get("UPSTREAM_PORT", "18080"))
    server = EchoServer((args.host, port), log_path=args.log, quiet=args.quiet)
    sys.stderr.write("upstream: listening on http://%s:%d\n" % (args.host, port))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
