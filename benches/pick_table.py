#!/usr/bin/env python3
"""Prints the markdown tables of benches/RESULTS.md from the last `cargo bench --bench pick` run.

Reads criterion's medians from target/criterion (or the directory given as an argument); with
`--cpu`, the groups of a `PICK_CLOCK=cpu` run (named `cpu-RR`, ...).
"""

import json
import sys
from pathlib import Path

ARGS = [a for a in sys.argv[1:] if a != "--cpu"]
PREFIX = "cpu-" if "--cpu" in sys.argv[1:] else ""
ROOT = Path(ARGS[0] if ARGS else "target/criterion")
ALGOS = ["RR", "WRR", "SRR", "LC", "PTC", "SIH", "LT", "Random"]
SIZES = [3, 100, 10000]
O1 = {"RR", "WRR", "PTC", "SIH", "Random"}


def median(group, *parts):
    path = ROOT.joinpath(PREFIX + group, *map(str, parts), "new", "estimates.json")
    try:
        return json.loads(path.read_text())["median"]["point_estimate"]
    except FileNotFoundError:
        return None


def ns(x):
    return "–" if x is None else f"{x:.0f}"


def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def per_algorithm():
    clock = "CPU" if PREFIX else "wall"
    print(f"Median ns per request, {clock} time (pick + call + response + drop, request built "
          "in the loop).")
    print()
    only, plain = median("baseline", "request_only"), median("baseline", "request_plain")
    print(f"Baseline: the request sent straight to the backend costs {ns(only)} ns with its "
          f"`PeerAddr` extension, {ns(plain)} ns without (`Request::new(())`).")
    print()
    print("| algo | request only | ours 3 | ours 100 | ours 10 000 "
          "| tower p2c 3 | tower p2c 100 | tower p2c 10 000 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    # Per algorithm: (request only, ours at SIZES, tower p2c at SIZES), read once for both tables.
    rows = {
        algo: (median(algo, "request_only"),
               [median(algo, "tower-lb", n) for n in SIZES],
               [median(algo, "tower-p2c", n) for n in SIZES])
        for algo in ALGOS
    }
    for algo, (base, ours, theirs) in rows.items():
        print(f"| {algo} | {ns(base)} | " + " | ".join(map(ns, ours + theirs)) + " |")
    ewma = [median("LT", "tower-p2c-peak-ewma", n) for n in SIZES]
    if any(ewma):
        print("| *tower p2c + PeakEwma (LT's like-for-like)* | | | | | "
              + " | ".join(map(ns, ewma)) + " |")
    print()
    print("Derived: the balancer's own cost (minus the group's `request_only`), ours / tower p2c "
          "(totals), and 10 000 / 3 backends (totals; ≈ 1 means O(1)).")
    print()
    print("| algo | own 3 | own 100 | own 10 000 | ≤ 100 ns own at 10 000 "
          "| ours/p2c 3 | ours/p2c 100 | ours/p2c 10 000 | 10 000 / 3 |")
    print("|---|---:|---:|---:|:---:|---:|---:|---:|---:|")
    for algo, (base, ours, theirs) in rows.items():
        own = [None if o is None or base is None else o - base for o in ours]
        ok = "–" if own[2] is None else ("yes" if own[2] <= 100 else "**no**")
        scale = ratio(ours[2], ours[0])
        if algo in O1:
            scale += " (O(1))"
        cells = [ns(x) for x in own] + [ok] + [ratio(o, t) for o, t in zip(ours, theirs)] + [scale]
        print(f"| {algo} | " + " | ".join(cells) + " |")
    if any(ewma):
        lt = rows["LT"][1]
        print()
        print("LT / (tower p2c + PeakEwma): "
              + ", ".join(f"{n}: {ratio(a, b)}" for n, a, b in zip(SIZES, lt, ewma)))


def threads():
    print()
    what = ("process CPU time / threads / requests of all threads (the wall time if each "
            "thread had a core to itself)" if PREFIX else "wall time / requests of all threads")
    print(f"One shared balancer, 100 backends: {what}, median ns "
          "(perfect scaling halves it at 2 threads).")
    print()
    print("| | 1 thread | 2 threads | 2 / 1 |")
    print("|---|---:|---:|---:|")
    rows = [("request only (no balancer)", "request_only"), ("RR", "RR"), ("LC", "LC"),
            ("PTC", "PTC"), ("tower p2c in a `Buffer` (tokio tasks)", "tower-p2c-buffer")]
    for label, name in rows:
        one, two = median("threads", name, 1), median("threads", name, 2)
        print(f"| {label} | {ns(one)} | {ns(two)} | {ratio(two, one)} |")


if __name__ == "__main__":
    per_algorithm()
    threads()
