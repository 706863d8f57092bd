#!/usr/bin/env python3
"""Resident memory of tower-lb's standalone balancer holding many idle keep-alive connections.

Starts one nginx backend (127.0.0.1:19081) and `target/release/examples/lb` on 127.0.0.1:19093,
opens --conns client connections to it, sends one keep-alive request on each and reads the
response (so every connection has been through a full request, as a real idle keep-alive
connection has), then leaves them all open and idle, and reads VmRSS and VmHWM from
/proc/<pid>/status of the balancer: before the connections, with them all open, and after
--settle seconds.

    python3 benches/compare/idle_conns.py                      # 10,000 connections, 1 worker
    python3 benches/compare/idle_conns.py --conns 10000 --workers 2
    python3 benches/compare/idle_conns.py --tls                # the same over TLS (ALPN http/1.1)

With --tls the balancer terminates TLS with a self-signed certificate made by `openssl`, and
each connection does its handshake, then its request; the connections are opened one at a
time.

The open-file limit of this process (and of the balancer) must allow --conns + a few hundred;
the script raises its soft limit to the hard one.
"""
import argparse
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (nginx config, process handling)

ROOT = compare.ROOT
PORT = 19093
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def rss(pid):
    """VmRSS and VmHWM of `pid`, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def open_idle(n, batch=500, pause=0.0):
    """Opens `n` connections, each doing one request and reading its whole response, `batch`
    at a time, `pause` seconds apart."""
    conns = []
    sel = selectors.DefaultSelector()
    for start in range(0, n, batch):
        pending = {}
        for _ in range(min(batch, n - start)):
            s = socket.create_connection(("127.0.0.1", PORT))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(REQUEST)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            pending[s] = b""
            conns.append(s)
        deadline = time.time() + 30
        while pending and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                data = s.recv(65536)
                if not data:
                    raise RuntimeError("the balancer closed a connection")
                pending[s] += data
                head, sep, body = pending[s].partition(b"\r\n\r\n")
                if sep:
                    length = next(
                        (int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                         if l.lower().startswith(b"content-length:")), 0)
                    if len(body) >= length:
                        if not head.startswith(b"HTTP/1.1 200"):
                            raise RuntimeError(f"unexpected answer: {head[:40]!r}")
                        sel.unregister(s)
                        del pending[s]
        if pending:
            raise RuntimeError(f"{len(pending)} responses did not arrive")
        time.sleep(pause)
    return conns


def open_idle_tls(n):
    """Opens `n` TLS connections, one at a time, each doing one request and reading its whole
    response."""
    import ssl
    ctx = ssl._create_unverified_context()
    ctx.set_alpn_protocols(["http/1.1"])
    conns = []
    for _ in range(n):
        raw = socket.create_connection(("127.0.0.1", PORT))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(REQUEST)
        got = b""
        while True:
            data = s.recv(65536)
            if not data:
                raise RuntimeError("the balancer closed a connection")
            got += data
            head, sep, body = got.partition(b"\r\n\r\n")
            if sep:
                length = next(
                    (int(l.split(b":", 1)[1]) for l in head.split(b"\r\n")
                     if l.lower().startswith(b"content-length:")), 0)
                if len(body) >= length:
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(f"unexpected answer: {head[:40]!r}")
                    break
        conns.append(s)
    return conns


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=10_000, help="idle connections (default 10000)")
    ap.add_argument("--workers", type=int, default=1, help="balancer workers (default 1)")
    ap.add_argument("--settle", type=float, default=3, help="seconds to wait before the last reading")
    ap.add_argument("--batch", type=int, default=500, help="connections opened at a time (default 500)")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds between two batches (default 0: as fast as they are answered)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "examples", "lb"))
    ap.add_argument("--tls", action="store_true", help="TLS connections (the balancer terminates TLS)")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < a.conns + 200:
        print(f"open-file hard limit {hard} is too low for {a.conns} connections")
        return 2

    d = tempfile.mkdtemp(prefix="tower-lb-idle-")
    procs = compare.Procs(d)
    tls_args = []
    if a.tls:
        compare.make_certificate(d)
        tls_args = ["--tls-cert", compare.TLS["cert"], "--tls-key", compare.TLS["key"]]
    try:
        open(f"{d}/be.conf", "w").write(compare.nginx_backends(d))
        procs.start(["nginx", "-c", f"{d}/be.conf", "-p", d])
        lb = procs.start([a.binary, "--bind", "127.0.0.1", "--port", str(PORT), "--workers", str(a.workers),
                          "--max-connections", str(a.conns + 100),
                          "--backend", f"http://127.0.0.1:{compare.BACKENDS[0]}", *tls_args])
        proto = "https" if a.tls else "http"
        if not (compare.wait_http(compare.BACKENDS[0]) and compare.wait_http(PORT, proto=proto)):
            print(f"nothing answered; see {d}/out.log")
            return 2
        before, _ = rss(lb.pid)
        t0 = time.time()
        conns = open_idle_tls(a.conns) if a.tls else open_idle(a.conns, a.batch, a.pause)
        opened = time.time() - t0
        during, _ = rss(lb.pid)
        time.sleep(a.settle)
        after, peak = rss(lb.pid)
        per_conn = (after - before) / a.conns * 1024
        kind = "TLS " if a.tls else ""
        print(f"tower-lb, {a.workers} worker(s), {a.conns} idle {kind}keep-alive connections "
              f"(opened and used once in {opened:.1f}s):")
        print(f"  VmRSS before {before / 1024:.1f} MiB, with the connections {during / 1024:.1f} MiB, "
              f"after {a.settle:g}s {after / 1024:.1f} MiB (peak VmHWM {peak / 1024:.1f} MiB)")
        print(f"  about {per_conn:.0f} bytes per idle connection")
        for s in conns:
            s.close()
        return 0
    finally:
        procs.stop()


if __name__ == "__main__":
    sys.exit(main())
