#!/usr/bin/env python3
"""Side-by-side throughput of tower-lb, HAProxy and nginx on this machine.

Starts three nginx backends on 127.0.0.1:19081-19083 and, over the same backends, nginx
(19090) and HAProxy (19091) as round-robin balancers with upstream keep-alive, and tower-lb's
standalone balancer (19092, `target/release/examples/lb`). Two floors run next to them
(unless --no-floor): HAProxy in `mode tcp` (19095) and `examples/tcp_forward.rs` (19093),
forwarders that copy bytes between a client connection and a backend connection pinned to it
and parse no HTTP at all. No HTTP balancer can be much faster than they are on the same
machine: they make the same four socket calls per keep-alive request and do nothing else.
For each thread count it runs wrk against every target in turn for several rounds and prints
the median requests/s and p99 latency of each, and the ratios tower-lb/HAProxy, tower-lb/nginx
and tower-lb/direct (and floor/HAProxy, floor/tower-lb) measured pair by pair in the same
round, and the CPU time (user + system, all processes and threads)
each balancer used per request, read from /proc: on a shared, noisy machine the CPU cost per
request moves much less than requests/s. Then one round at --high-conns connections counts
errors.

    python3 benches/compare/compare.py                 # installs what is missing, builds, runs
    python3 benches/compare/compare.py --threads 1 --rounds 5 --secs 5
    python3 benches/compare/compare.py --tls           # the three terminate TLS, same certificate

With --tls, nginx, HAProxy and tower-lb terminate TLS (TLS 1.3, ALPN h2 and http/1.1 offered,
wrk speaks HTTP/1.1 over it) with one self-signed certificate made by `openssl` for the run,
and forward plain HTTP to the same backends; the L4 floors are left out (they would not
terminate TLS), and `direct` stays plain HTTP. wrk keeps its connections, so this measures the
cost of TLS records on every request, not of handshakes.

The three do the same work per request: nginx and HAProxy are configured to do what tower-lb
does by default, keep the client's Host and add X-Forwarded-For, X-Forwarded-Host and
X-Forwarded-Proto (nginx `proxy_set_header`, HAProxy `option forwardfor` and
`http-request set-header`). With --bare they add nothing and pass nginx's default Host, as
before 2026-12-05: tower-lb then does more than they do.

Everything listens on 127.0.0.1 only. The machine is shared and noisy: compare ratios from one
run, not absolute numbers across runs.
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BACKENDS = [19081, 19082, 19083]
PORTS = {"direct": BACKENDS[0], "nginx": 19090, "haproxy": 19091, "tower-lb": 19092}
# The floors: L4 forwarders, no HTTP work at all.
FLOORS = {"haproxy-tcp": 19095, "tcp-forward": 19093}
# With --tls: the certificate, key and HAProxy's combined PEM every balancer serves.
TLS = None
# Whether nginx and HAProxy add the X-Forwarded-* headers tower-lb adds (not with --bare).
FORWARDED = True


def make_certificate(d):
    """A self-signed certificate for localhost and 127.0.0.1, made with openssl, for every
    balancer; sets TLS."""
    global TLS
    cert, key, both = f"{d}/cert.pem", f"{d}/key.pem", f"{d}/both.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    with open(both, "w") as f:
        f.write(open(cert).read() + open(key).read())
    TLS = {"cert": cert, "key": key, "both": both}


def scheme(name):
    """How wrk and the readiness check reach a target: https for the balancers with --tls."""
    return "https" if TLS and name != "direct" else "http"


def ensure_tools():
    missing = [t for t in ("nginx", "haproxy", "wrk") if shutil.which(t) is None]
    if not missing:
        return
    print(f"installing {' '.join(missing)} from the OS packages", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def nginx_backends(d):
    servers = "\n".join(
        f'  server {{ listen 127.0.0.1:{p} backlog=4096; '
        f'location / {{ return 200 "Hello from backend {i}\\n"; }} }}'
        for i, p in enumerate(BACKENDS, 1)
    )
    return f"""worker_processes 1; daemon off; pid {d}/be.pid; error_log {d}/be.err warn;
events {{ worker_connections 16384; }}
http {{ access_log off; keepalive_requests 1000000;
{servers}
}}"""


def nginx_lb(d, threads):
    ups = " ".join(f"server 127.0.0.1:{p};" for p in BACKENDS)
    return f"""worker_processes {threads}; daemon off; pid {d}/lb.pid; error_log {d}/lb.err warn;
worker_rlimit_nofile {nofile_limit()};
events {{ worker_connections 16384; }}
http {{ access_log off; keepalive_requests 1000000;
  upstream be {{ {ups} keepalive 128; }}
  server {{ listen 127.0.0.1:{PORTS['nginx']} backlog=4096{nginx_tls()}
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";{nginx_forwarded()} }} }}
}}"""


def nginx_forwarded():
    """What tower-lb does to every request: Host kept, X-Forwarded-For/-Host/-Proto added."""
    if not FORWARDED:
        return ""
    return (" proxy_set_header Host $http_host;"
            " proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
            " proxy_set_header X-Forwarded-Host $http_host;"
            " proxy_set_header X-Forwarded-Proto $scheme;")


def nginx_tls():
    if not TLS:
        return ";"
    # `listen ... http2` (nginx before 1.25; later ones warn and accept it) offers ALPN h2.
    return (f" ssl http2; ssl_certificate {TLS['cert']}; ssl_certificate_key {TLS['key']}; "
            "ssl_protocols TLSv1.2 TLSv1.3;")


def nofile_limit():
    """The open-file limit this process (and so every balancer it starts) runs under."""
    try:
        import resource
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):
        return 65536


def haproxy_lb(threads, tcp=False):
    """HAProxy's configuration: an HTTP balancer, or with `tcp` the L4 floor."""
    # HAProxy refuses to start when 2 * maxconn (plus a margin) exceeds the file limit it
    # may raise to; stay within it on machines with a low hard limit. Two of them run at once.
    maxconn = max(1000, min(20000, (nofile_limit() - 400) // 4))
    srv = "\n".join(f"  server b{i} 127.0.0.1:{p}" for i, p in enumerate(BACKENDS, 1))
    mode = "tcp" if tcp else "http\n  option http-keep-alive"
    reuse = "" if tcp else "\n  http-reuse always"
    forwarded = "" if tcp else haproxy_forwarded()
    port = FLOORS["haproxy-tcp"] if tcp else PORTS["haproxy"]
    haproxy_tls = f" ssl crt {TLS['both']} alpn h2,http/1.1" if TLS and not tcp else ""
    return f"""global
  nbthread {threads}
  maxconn {maxconn}
defaults
  mode {mode}
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend fe
  bind 127.0.0.1:{port}{haproxy_tls}
  default_backend be
backend be
  balance roundrobin{reuse}{forwarded}
{srv}
"""


def haproxy_forwarded():
    """What tower-lb does to every request (HAProxy keeps Host as it came): X-Forwarded-For,
    -Host and -Proto added."""
    if not FORWARDED:
        return ""
    proto = "https" if TLS else "http"
    return ("\n  option forwardfor"
            "\n  http-request set-header X-Forwarded-Host %[req.hdr(host)]"
            f"\n  http-request set-header X-Forwarded-Proto {proto}")


def tower_lb_cmd(binary, threads):
    backends = " ".join(f"--backend http://127.0.0.1:{p}" for p in BACKENDS)
    tls = f" --tls-cert {TLS['cert']} --tls-key {TLS['key']}" if TLS else ""
    return f"{binary} --bind 127.0.0.1 --port {PORTS['tower-lb']} --workers {threads} {backends}{tls}"


def tcp_forward_cmd(binary, threads):
    backends = " ".join(f"--backend 127.0.0.1:{p}" for p in BACKENDS)
    return f"{binary} --port {FLOORS['tcp-forward']} --workers {threads} {backends}"


def wait_http(port, timeout=60, proto="http"):
    import ssl
    unverified = ssl._create_unverified_context()
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"{proto}://127.0.0.1:{port}/", timeout=1,
                                        context=unverified) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.2)
    return False


def wrk(port, conns, secs, proto="http"):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", f"{proto}://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=secs + 60,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    rps = float(m.group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return rps, p99, errors


def group_cpu(pgid):
    """CPU seconds (user + system) used so far by every process of group `pgid`."""
    ticks = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def measured(port, conns, secs, pgid, proto="http"):
    """wrk against `port`, and the CPU time per request (us) of the process group serving it."""
    before = group_cpu(pgid) if pgid else 0.0
    rps, p99, errors = wrk(port, conns, secs, proto)
    cpu = (group_cpu(pgid) - before) / (rps * secs) * 1e6 if pgid and rps else float("nan")
    return rps, p99, errors, cpu


class Procs:
    def __init__(self, d):
        self.d, self.procs = d, []

    def start(self, cmd):
        log = open(os.path.join(self.d, "out.log"), "a")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, only=None):
        for p in list(self.procs if only is None else only):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            self.procs.remove(p)


def run_threads(procs, d, binaries, threads, a):
    open(f"{d}/lb.conf", "w").write(nginx_lb(d, threads))
    open(f"{d}/lb.cfg", "w").write(haproxy_lb(threads))
    lbs = [
        procs.start(["nginx", "-c", f"{d}/lb.conf", "-p", d]),
        procs.start(["haproxy", "-f", f"{d}/lb.cfg"]),
        procs.start(["bash", "-c", "exec " + tower_lb_cmd(binaries["lb"], threads)]),
    ]
    ports = dict(PORTS)
    if a.floor:
        open(f"{d}/tcp.cfg", "w").write(haproxy_lb(threads, tcp=True))
        lbs.append(procs.start(["haproxy", "-f", f"{d}/tcp.cfg"]))
        lbs.append(procs.start(["bash", "-c", "exec " + tcp_forward_cmd(binaries["tcp_forward"], threads)]))
        ports.update(FLOORS)
    try:
        for name, port in ports.items():
            if not wait_http(port, proto=scheme(name)):
                raise RuntimeError(f"{name} on port {port} never answered 200; see {d}/out.log")
        names = list(ports)
        # The process group of each balancer (each started in a session of its own), for its
        # CPU time; `direct` is the backends' nginx, shared with the others, so not counted.
        groups = {"nginx": lbs[0].pid, "haproxy": lbs[1].pid, "tower-lb": lbs[2].pid, "direct": None}
        if a.floor:
            groups.update({"haproxy-tcp": lbs[3].pid, "tcp-forward": lbs[4].pid})
        res = {n: [] for n in names}
        for r in range(a.rounds):
            # Rotate the order each round so no target always runs first or last.
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                res[n].append(measured(ports[n], a.conns, a.secs, groups[n], scheme(n)))
        tls_note = ", balancers terminate TLS" if TLS else ""
        print(f"\n## {threads} thread(s): wrk -t1 -c{a.conns} -d{a.secs}s, {a.rounds} rounds, median{tls_note}")
        print(f"| target | rps | p99 ms | errors | balancer CPU us/request |\n|---|---:|---:|---:|---:|")
        med = {}
        for n in names:
            rps = statistics.median(x[0] for x in res[n])
            p99 = statistics.median(x[1] for x in res[n])
            cpu = statistics.median(x[3] for x in res[n]) if groups[n] else float("nan")
            med[n] = (rps, p99, cpu)
            cpu_text = f"{cpu:.2f}" if groups[n] else "-"
            print(f"| {n} | {rps:.0f} | {p99:.2f} | {sum(x[2] for x in res[n])} | {cpu_text} |")
        for other in ("haproxy", "nginx", "direct"):
            per = [res["tower-lb"][i][0] / res[other][i][0] for i in range(a.rounds)]
            print(f"ratio tower-lb/{other} rps: median {statistics.median(per):.2f} "
                  f"(rounds {', '.join(f'{x:.2f}' for x in per)})")
        print(f"ratio tower-lb/haproxy p99: {med['tower-lb'][1] / med['haproxy'][1]:.2f}")
        for other in ("haproxy", "nginx"):
            # Pair by pair too: the spread between rounds is the noise any one ratio carries.
            per = [res["tower-lb"][i][3] / res[other][i][3] for i in range(a.rounds)]
            print(f"ratio tower-lb/{other} CPU per request: {med['tower-lb'][2] / med[other][2]:.2f} "
                  f"(below 1: cheaper; rounds {', '.join(f'{x:.2f}' for x in per)})")
        if a.floor:
            print("floors (L4 forwarders, no HTTP work):")
            for floor in FLOORS:
                for other in ("haproxy", "tower-lb"):
                    per = [res[floor][i][0] / res[other][i][0] for i in range(a.rounds)]
                    print(f"  ratio {floor}/{other} rps: median {statistics.median(per):.2f} "
                          f"(rounds {', '.join(f'{x:.2f}' for x in per)})")
        if a.high_conns:
            print(f"\n{a.high_conns} connections, {a.secs}s each:")
            for n in ("haproxy", "nginx", "tower-lb"):
                rps, p99, errors = wrk(PORTS[n], a.high_conns, a.secs, scheme(n))
                print(f"  {n}: rps {rps:.0f}, p99 {p99:.2f} ms, errors {errors}")
        sys.stdout.flush()
    finally:
        procs.stop(lbs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="worker threads for every balancer, one run each (default: 1 2)")
    ap.add_argument("--conns", type=int, default=64, help="wrk connections (default 64)")
    ap.add_argument("--high-conns", type=int, default=1000,
                    help="connections for the error check round; 0 skips it (default 1000)")
    ap.add_argument("--secs", type=int, default=5, help="seconds per wrk run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per thread count (default 3)")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binaries")
    ap.add_argument("--no-floor", dest="floor", action="store_false",
                    help="skip the L4 floors (HAProxy mode tcp, examples/tcp_forward.rs)")
    ap.add_argument("--binary", help="tower-lb's binary (default: the release build of examples/lb); "
                    "implies --no-build, e.g. a debug build for a smoke run")
    ap.add_argument("--tls", action="store_true",
                    help="the balancers terminate TLS with one self-signed certificate (no floors)")
    ap.add_argument("--bare", action="store_true",
                    help="nginx and HAProxy add no X-Forwarded-* headers (tower-lb still does)")
    a = ap.parse_args()
    if a.tls:
        a.floor = False
    global FORWARDED
    FORWARDED = not a.bare

    ensure_tools()
    binaries = {n: os.path.join(ROOT, "target", "release", "examples", n) for n in ("lb", "tcp_forward")}
    if a.binary:
        binaries["lb"], a.no_build = os.path.abspath(a.binary), True
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--example", "lb", "--example", "tcp_forward"],
                       cwd=ROOT, check=True)
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    except (ValueError, OSError):
        pass

    d = tempfile.mkdtemp(prefix="tower-lb-compare-")
    procs = Procs(d)
    if a.tls:
        make_certificate(d)
    try:
        open(f"{d}/be.conf", "w").write(nginx_backends(d))
        procs.start(["nginx", "-c", f"{d}/be.conf", "-p", d])
        for p in BACKENDS:
            if not wait_http(p):
                print(f"backend {p} never answered; see {d}/out.log")
                return 2
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        print(f"# tower-lb vs HAProxy vs nginx — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"machine: {os.cpu_count()} cores, {cpu}")
        for t in a.threads:
            run_threads(procs, d, binaries, t, a)
        return 0
    finally:
        procs.stop()


if __name__ == "__main__":
    sys.exit(main())
