#!/usr/bin/env python3
"""Checks the simulator against the real balancer on one fleet.

Runs examples/fleets/validate.toml for real: three nginx backends (echo module, `echo_sleep`)
answering in 2, 2 and 40 ms, the standalone balancer (release build) in front with each
algorithm asked, and an open-loop Poisson client at the fleet's rate; then runs the
simulator on the same fleet and prints both p99s and their ratio. The simulated p99 should be
within 20 % of the real one.

The backends are calibrated first: `echo_sleep 0.002` does not answer in 2.00 ms as seen
by a client (nginx's timers have millisecond granularity, and the client's own request and
parsing time is in every measured latency: about 1 ms more at the median with this asyncio
client). So the same client measures each backend directly, without a balancer, at the fleet's
rate, and the simulator is given each backend as a log-normal with the measured median and
p99 (sigma = ln(p99 / p50) / 2.326) instead of the nominal fixed time. What the simulator
still predicts on its own is what the balancer does with them: which backend each request
goes to. `--nominal` runs the simulator on the fleet file's fixed times instead.

    cargo build --release --example lb --example simulate
    python3 benches/simcheck/simcheck.py [--algo RR,LC] [--seconds 30] [--calibrate-seconds 10]

Needs nginx with the echo module (Debian: nginx, libnginx-mod-http-echo). Loopback only; run it
on a quiet machine: the client, nginx and the balancer share its cores.
"""

import argparse
import asyncio
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLEET = os.path.join(ROOT, "examples/fleets/validate.toml")
LB = os.path.join(ROOT, "target/release/examples/lb")
SIMULATE = os.path.join(ROOT, "target/release/examples/simulate")
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on 127.0.0.1:{port} after {deadline} s")


def fixed_ms(backend):
    latency = backend["latency"]
    if latency.get("dist") != "fixed":
        sys.exit(f"{FLEET}: backend {backend['name']}: only fixed latencies can be served by echo_sleep")
    return latency["ms"]


def start_nginx(fleet, workdir):
    if not shutil.which("nginx") or not os.path.exists(ECHO_MODULE):
        sys.exit("needs nginx with the echo module: apt install nginx libnginx-mod-http-echo")
    ports = [free_port() for _ in fleet["backend"]]
    servers = "\n".join(
        f"""    server {{
        listen 127.0.0.1:{port};
        location /health {{ return 200 "ok\\n"; }}
        location / {{ echo_sleep {fixed_ms(b) / 1000:.3f}; echo "{b['name']}"; }}
    }}"""
        for port, b in zip(ports, fleet["backend"])
    )
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""load_module {ECHO_MODULE};
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
{servers}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", workdir, "-c", conf])
    for port in ports:
        wait_port(port)
    return proc, ports


async def open_loop(port, rate, seconds, seed):
    """Poisson arrivals at `rate`/s for `seconds`; each request on an idle keep-alive
    connection, or a new one. Returns the latencies in ms (from the arrival, so a wait for a
    connection counts) and the non-200 count."""
    rng = random.Random(seed)
    idle = []
    latencies, errors = [], 0
    request = b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n"

    async def one(arrival):
        nonlocal errors
        conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        reader, writer = conn
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
        if length:
            await reader.readexactly(int(length.group(1)))
        else:
            # Chunked (what the echo module sends): size line, data, CRLF, until size 0.
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        latencies.append((time.perf_counter() - arrival) * 1e3)
        if not head.startswith(b"HTTP/1.1 200"):
            errors += 1
        idle.append(conn)

    tasks = []
    start = time.perf_counter()
    at = 0.0
    while at < seconds:
        at += rng.expovariate(rate)
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(start + at)))
    await asyncio.gather(*tasks)
    for _, writer in idle:
        writer.close()
    return latencies, errors


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(q * len(values) + 0.999999) - 1))]


Z99 = 2.3263  # the standard normal's 99th percentile


def calibrated_fleet(fleet, ports, seconds, workdir):
    """Measures each backend directly with the open-loop client at the fleet's rate and writes
    the fleet with each backend's latency a log-normal of the measured p50 and p99; returns
    the file's path and the (name, p50, p99) measured."""
    measured = []
    for port, b in zip(ports, fleet["backend"]):
        latencies, errors = asyncio.run(open_loop(port, fleet["rate"], seconds, fleet.get("seed", 1)))
        if errors:
            sys.exit(f"backend {b['name']} answered {errors} requests with an error while calibrating")
        measured.append((b["name"], quantile(latencies, 0.5), quantile(latencies, 0.99)))
    lines = [f"{k} = {fleet[k]!r}" for k in ("rate", "requests", "clients", "seed") if k in fleet]
    for name, p50, p99 in measured:
        sigma = max(0.0, math.log(p99 / p50) / Z99)
        lines += ["", "[[backend]]", f"name = {name!r}",
                  f'latency = {{ dist = "lognormal", median_ms = {p50:.4f}, sigma = {sigma:.4f} }}']
    path = os.path.join(workdir, "calibrated.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path, measured


def simulated(fleet_path, algo, requests):
    out = subprocess.run(
        [SIMULATE, fleet_path, "--algo", algo, "--requests", str(requests), "--out", os.path.join(tempfile.gettempdir(), "simcheck")],
        check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] == algo:
            return float(cells[1]), float(cells[2])
    sys.exit(f"no row for {algo} in:\n{out}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", default="RR,LC,PTC,LT")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--calibrate-seconds", type=float, default=10.0,
                        help="seconds each backend is measured directly (default 10)")
    parser.add_argument("--nominal", action="store_true",
                        help="simulate the fleet file's fixed latencies, not the measured ones")
    args = parser.parse_args()
    for binary in (LB, SIMULATE):
        if not os.path.exists(binary):
            sys.exit(f"{binary} is missing: cargo build --release --example lb --example simulate")
    with open(FLEET, "rb") as f:
        fleet = tomllib.load(f)
    rate = fleet["rate"]
    workdir = tempfile.mkdtemp(prefix="simcheck-")
    nginx, ports = start_nginx(fleet, workdir)
    rows = []
    try:
        sim_fleet, measured = FLEET, []
        if not args.nominal:
            sim_fleet, measured = calibrated_fleet(fleet, ports, args.calibrate_seconds, workdir)
        for algo in args.algo.split(","):
            port = free_port()
            cmd = [LB, "--bind", "127.0.0.1", "--port", str(port), "--workers", "1", "--algo", algo]
            for p in ports:
                cmd += ["--backend", f"http://127.0.0.1:{p}"]
            lb = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
            try:
                wait_port(port)
                time.sleep(0.5)
                latencies, errors = asyncio.run(open_loop(port, rate, args.seconds, fleet.get("seed", 1)))
            finally:
                lb.send_signal(signal.SIGTERM)
                lb.wait(timeout=40)
            real_p50, real_p99 = quantile(latencies, 0.5), quantile(latencies, 0.99)
            sim_p50, sim_p99 = simulated(sim_fleet, algo, len(latencies))
            rows.append((algo, len(latencies), errors, real_p50, real_p99, sim_p50, sim_p99))
    finally:
        nginx.send_signal(signal.SIGQUIT)
        nginx.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"fleet {os.path.relpath(FLEET, ROOT)} at {rate}/s, {args.seconds:g} s per algorithm")
    if measured:
        print(f"backends measured directly ({args.calibrate_seconds:g} s each), simulated as log-normals:")
        for name, p50, p99 in measured:
            print(f"  {name:<8} p50 {p50:.2f} ms  p99 {p99:.2f} ms")
    else:
        print("simulated with the fleet file's nominal latencies")
    print(f"{'algo':<6} {'requests':>8} {'errors':>6} {'real p50':>9} {'real p99':>9} {'sim p50':>8} {'sim p99':>8} {'sim/real p99':>12}")
    ok = True
    for algo, n, errors, rp50, rp99, sp50, sp99 in rows:
        ratio = sp99 / rp99
        ok &= 0.8 <= ratio <= 1.2
        print(f"{algo:<6} {n:>8} {errors:>6} {rp50:>9.2f} {rp99:>9.2f} {sp50:>8.2f} {sp99:>8.2f} {ratio:>12.2f}")
    print("within 20 %" if ok else "NOT within 20 % for every algorithm")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
