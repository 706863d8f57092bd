#!/usr/bin/env python3
"""Tail latency on uneven fleets: tower-lb's algorithms, HAProxy and nginx in one run.

Three fleets of three nginx backends on 127.0.0.1:19181-19183 (nginx's echo module,
`echo_sleep`, makes each answer take a set time; `/health` always answers 200 at once):

  uneven    2 ms, 2 ms, 40 ms
  jump      2 ms, 2 ms, and one that answers in 2 ms, turns 40 ms a third into every
            measurement and 2 ms again at two thirds (nginx reloaded under load)
  failing   2 ms, 2 ms, and one that answers 503 at once (its health checks pass)

Over the same backends, these balancers run side by side:

  tower-lb LT / PTC / LC   target/release/examples/lb --algo X, --retry-on connect-failure,502,503,504
  haproxy leastconn / roundrobin
                           observe layer7 (error-limit 5, on-error mark-down), retry-on
                           conn-failure empty-response 502 503 504, retries 2, redispatch
  nginx least_conn / random two least_conn
                           max_fails=3 fail_timeout=10s, proxy_next_upstream error timeout
                           http_502 http_503 http_504

and `direct-fast`, one fast backend without a balancer (the fast backends' own latency). Each
is measured closed-loop (wrk -t1 -c32, --latency) and open-loop (a constant request rate from
the asyncio client below, latency counted from when each request was due, so a stall is not
hidden by the client waiting: no coordinated omission). It prints p50/p99 and the share of
failed requests (non-2xx, socket errors) side by side, and for each fleet the ratio of
tower-lb's best p99 to the best HAProxy/nginx p99.

    python3 benches/compare/uneven.py                       # builds the release lb, runs all
    python3 benches/compare/uneven.py --secs 3 --rate 500 --fleets uneven failing
    python3 benches/compare/uneven.py --binary target/debug/examples/lb --secs 2   # smoke run
    python3 benches/compare/uneven.py --balancers "tower-lb LT" leastconn   # a subset

Everything listens on 127.0.0.1 only. On a shared machine compare within one run only.
"""
import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import ROOT, Procs, ensure_tools, wait_http  # noqa: E402

BACKENDS = [19181, 19182, 19183]
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
FAST, SLOW = 0.002, 0.040
RETRY_ON = "connect-failure,502,503,504"
TOWER_ALGOS = ["LT", "PTC", "LC"]
BALANCERS = {  # name: port
    **{f"tower-lb {a}": 19190 + i for i, a in enumerate(TOWER_ALGOS)},
    "haproxy leastconn": 19195,
    "haproxy roundrobin": 19196,
    "nginx least_conn": 19197,
    "nginx random two least_conn": 19198,
}


def backend_conf(d, name, servers):
    """An nginx serving `servers`: (port, behaviour) with behaviour a delay in s or 503."""
    blocks = []
    for i, (port, what) in servers:
        answer = 'return 503 "busy\\n";' if what == 503 else f'echo_sleep {what}; echo "backend {i}";'
        blocks.append(f"  server {{ listen 127.0.0.1:{port} backlog=4096;\n"
                      f"    location = /health {{ return 200 \"ok\\n\"; }}\n"
                      f"    location / {{ {answer} }} }}")
    body = "\n".join(blocks)
    return f"""load_module {ECHO_MODULE};
worker_processes 1; daemon off; pid {d}/{name}.pid; error_log {d}/{name}.err warn;
events {{ worker_connections 16384; }}
http {{ access_log off; keepalive_requests 1000000; default_type text/plain;
{body}
}}"""


def haproxy_conf():
    def backend(name, balance, port):
        srv = "\n".join(f"  server b{i} 127.0.0.1:{p} check inter 2s observe layer7 error-limit 5 "
                        f"on-error mark-down" for i, p in enumerate(BACKENDS, 1))
        return f"""frontend fe_{name}
  bind 127.0.0.1:{port}
  default_backend be_{name}
backend be_{name}
  balance {balance}
  http-reuse always
{srv}
"""
    return f"""global
  nbthread 1
  maxconn 4000
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  retries 2
  option redispatch 1
  retry-on conn-failure empty-response 502 503 504
  option httpchk GET /health
{backend("lc", "leastconn", BALANCERS["haproxy leastconn"])}
{backend("rr", "roundrobin", BALANCERS["haproxy roundrobin"])}"""


def nginx_lb_conf(d):
    def upstream(name, method):
        srv = " ".join(f"server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;" for p in BACKENDS)
        return f"  upstream {name} {{ {method}; {srv} keepalive 64; }}"

    def server(name, port):
        return (f"  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ proxy_pass http://{name}; "
                f"proxy_http_version 1.1; proxy_set_header Connection \"\"; "
                f"proxy_next_upstream error timeout http_502 http_503 http_504; }} }}")
    return f"""worker_processes 1; daemon off; pid {d}/nlb.pid; error_log {d}/nlb.err warn;
events {{ worker_connections 16384; }}
http {{ access_log off; keepalive_requests 1000000;
{upstream("lc", "least_conn")}
{upstream("r2", "random two least_conn")}
{server("lc", BALANCERS["nginx least_conn"])}
{server("r2", BALANCERS["nginx random two least_conn"])}
}}"""


def tower_lb_cmd(binary, algo, port):
    backends = [a for p in BACKENDS for a in ("--backend", f"http://127.0.0.1:{p}")]
    return [binary, "--bind", "127.0.0.1", "--port", str(port), "--algo", algo, "--workers", "1",
            "--health-interval", "2", "--retry-on", RETRY_ON, *backends]


def wrk(port, conns, secs):
    """Closed loop: (p50 ms, p99 ms, requests, failed)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=secs + 60,
    ).stdout
    unit = {"us": 0.001, "ms": 1, "s": 1000}

    def pct(p):
        m = re.search(rf"\b{p}%\s+([\d.]+)(us|ms|s)\b", out)
        return float(m.group(1)) * unit[m.group(2)] if m else float("nan")
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    total = int(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return pct(50), pct(99), total, failed


async def read_response(reader):
    """Reads one HTTP/1.1 response; returns (status, keep-alive)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip().lower()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("connection") != "close"


async def open_loop(port, rate, secs, timeout=10.0):
    """Open loop: `rate` requests a second for `secs`, each on an idle keep-alive connection or
    a new one; latency from when the request was due. Returns (p50 ms, p99 ms, requests, failed)."""
    loop = asyncio.get_running_loop()
    idle, latencies, failed = [], [], 0
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def one(due):
        nonlocal failed
        conn = idle.pop() if idle else None
        try:
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
            reader, writer = conn
            writer.write(request)
            status, keep = await asyncio.wait_for(read_response(reader), timeout)
            latencies.append((loop.time() - due) * 1000)
            if not 200 <= status < 400:
                failed += 1
            if keep:
                idle.append(conn)
            else:
                writer.close()
        except Exception:
            failed += 1
            latencies.append((loop.time() - due) * 1000)
            if conn is not None:
                conn[1].close()

    start = loop.time() + 0.05
    tasks = []
    for i in range(int(rate * secs)):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*tasks)
    for reader, writer in idle:
        writer.close()
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] if latencies else float("nan")
    return pct(50), pct(99), len(tasks), failed


def wait_health(port, timeout=30):
    """Waits until `port` answers 200 on /health."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.1)
    return False


class Fleet:
    """The three backends: two fast ones in one nginx, the third in its own (so it can change)."""

    def __init__(self, procs, d, kind):
        self.procs, self.d, self.kind = procs, d, kind
        open(f"{d}/fast.conf", "w").write(backend_conf(d, "fast", [(1, (BACKENDS[0], FAST)), (2, (BACKENDS[1], FAST))]))
        self.third(SLOW if kind == "uneven" else 503 if kind == "failing" else FAST)
        self.fast = procs.start(["nginx", "-c", f"{d}/fast.conf", "-p", d])
        self.other = procs.start(["nginx", "-c", f"{d}/third.conf", "-p", d])
        for p in BACKENDS:
            if not wait_health(p):
                raise RuntimeError(f"backend {p} never answered; see {d}/out.log")

    def third(self, what):
        open(f"{self.d}/third.conf", "w").write(backend_conf(self.d, "third", [(3, (BACKENDS[2], what))]))

    def set_third(self, what):
        """Changes the third backend under load: nginx reloads its configuration (SIGHUP)."""
        self.third(what)
        os.kill(self.other.pid, signal.SIGHUP)

    def during(self, secs):
        """For the jump fleet, the changes within one measurement of `secs`: timers to cancel."""
        if self.kind != "jump":
            return []
        self.set_third(FAST)
        timers = [threading.Timer(secs / 3, self.set_third, (SLOW,)),
                  threading.Timer(2 * secs / 3, self.set_third, (FAST,))]
        for t in timers:
            t.start()
        return timers

    def stop(self):
        self.procs.stop([self.fast, self.other])


def measure(fleet, port, a):
    rows = {}
    for load in ("closed", "open"):
        timers = fleet.during(a.secs)
        try:
            if load == "closed":
                rows[load] = wrk(port, a.conns, a.secs)
            else:
                rows[load] = asyncio.run(open_loop(port, a.rate, a.secs))
        finally:
            for t in timers:
                t.join()
        time.sleep(0.3)
    return rows


def run_fleet(procs, d, kind, binary, a):
    fleet = Fleet(procs, d, kind)
    open(f"{d}/haproxy.cfg", "w").write(haproxy_conf())
    open(f"{d}/nlb.conf", "w").write(nginx_lb_conf(d))
    lbs = [procs.start(tower_lb_cmd(binary, algo, BALANCERS[f"tower-lb {algo}"])) for algo in TOWER_ALGOS]
    lbs.append(procs.start(["haproxy", "-f", f"{d}/haproxy.cfg"]))
    lbs.append(procs.start(["nginx", "-c", f"{d}/nlb.conf", "-p", d]))
    try:
        targets = {"direct-fast": BACKENDS[0], **BALANCERS}
        if a.balancers:
            targets = {n: p for n, p in targets.items()
                       if n == "direct-fast" or any(b.lower() in n.lower() for b in a.balancers)}
        for name, port in targets.items():
            if not wait_http(port):
                raise RuntimeError(f"{name} on port {port} never answered 200; see {d}/out.log")
        results = {}
        for name, port in targets.items():
            if kind == "jump":
                fleet.set_third(FAST)
            time.sleep(a.warmup)
            results[name] = measure(fleet, port, a)
        print(f"\n## fleet `{kind}`: closed loop wrk -t1 -c{a.conns} -d{a.secs}s; "
              f"open loop {a.rate} req/s for {a.secs}s")
        print("| balancer | closed p50 ms | closed p99 ms | closed failed | "
              "open p50 ms | open p99 ms | open failed |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, r in results.items():
            cells = []
            for load in ("closed", "open"):
                p50, p99, total, failed = r[load]
                share = 100.0 * failed / total if total else float("nan")
                cells += [f"{p50:.2f}", f"{p99:.2f}", f"{share:.2f} % ({failed}/{total})"]
            print(f"| {name} | {' | '.join(cells)} |")
        for load in ("closed", "open"):
            ours = min(((r[load][1], n) for n, r in results.items() if n.startswith("tower-lb")),
                       default=None)
            theirs = min(((r[load][1], n) for n, r in results.items()
                          if n.startswith(("haproxy", "nginx"))), default=None)
            if ours is None or theirs is None:
                continue
            print(f"{load} loop: best tower-lb p99 {ours[0]:.2f} ms ({ours[1]}) / best other "
                  f"{theirs[0]:.2f} ms ({theirs[1]}) = {ours[0] / theirs[0]:.2f}")
        sys.stdout.flush()
    finally:
        procs.stop(lbs)
        fleet.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fleets", nargs="+", default=["uneven", "jump", "failing"],
                    choices=["uneven", "jump", "failing"])
    ap.add_argument("--conns", type=int, default=32, help="wrk connections (default 32)")
    ap.add_argument("--rate", type=int, default=1000, help="open-loop requests a second (default 1000)")
    ap.add_argument("--secs", type=float, default=10, help="seconds per measurement (default 10)")
    ap.add_argument("--warmup", type=float, default=1, help="seconds before each balancer's runs")
    ap.add_argument("--binary", help="the lb binary (default: build target/release/examples/lb)")
    ap.add_argument("--balancers", nargs="+", metavar="NAME",
                    help="measure only the balancers whose name contains one of these (case "
                         "insensitive, e.g. 'tower-lb LT' 'haproxy leastconn'; direct-fast always "
                         "runs); default: all")
    a = ap.parse_args()
    a.secs = max(1, int(a.secs))

    ensure_tools()
    if not os.path.exists(ECHO_MODULE):
        print(f"{ECHO_MODULE} is missing: apt-get install libnginx-mod-http-echo")
        return 2
    binary = a.binary
    if binary is None:
        subprocess.run(["cargo", "build", "--release", "--example", "lb"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "examples", "lb")
    binary = os.path.abspath(binary)

    d = tempfile.mkdtemp(prefix="tower-lb-uneven-")
    procs = Procs(d)
    try:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        print(f"# tail latency on uneven fleets — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"machine: {os.cpu_count()} cores, {cpu}; load average {os.getloadavg()[0]:.1f}; lb: {binary}")
        for kind in a.fleets:
            run_fleet(procs, d, kind, binary, a)
        return 0
    finally:
        procs.stop()


if __name__ == "__main__":
    sys.exit(main())
