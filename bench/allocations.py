"""Allocations per request (`scripts/bench --allocations`): the shop built with
the `count-allocations` feature (src/alloc_count.rs) reports its allocation
totals on stderr when sent SIGUSR1; each workload of the peer comparison runs
under wrk against that build, between two such reports, and the difference is
divided by the requests wrk made. A few in-flight requests that wrk does not
count when it stops are in the difference (at most one per connection: well
under 1 % of the requests).

Counted allocations do not depend on the machine's load, so each workload runs
only briefly (BENCH_ALLOC_SECONDS, 2 s).
"""

import os
import re
import signal
import time

from harness import (
    BROWSER_HEADERS, Replica, env_int, expect, free_port, http_request, log, log_in, print_workloads, reset_cart,
    run_wrk,
)
from peers import static_paths

LINE = re.compile(r"^allocations: allocs=(\d+) deallocs=(\d+) reallocs=(\d+) bytes=(\d+)", re.M)


def totals(replica):
    """SIGUSR1, then the new report line in the replica's log."""
    def lines():
        with open(replica.logfile, errors="replace") as f:
            return LINE.findall(f.read())
    seen = len(lines())
    replica.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = lines()
        if len(found) > seen:
            return [int(x) for x in found[-1]]
        time.sleep(0.02)
    raise SystemExit(f"{replica.name} wrote no allocation report after SIGUSR1: is {replica.settings.binary} "
                     "built with --features count-allocations?")


def run_allocations(settings, procs, res, redis_url, workloads):
    binary = os.path.abspath(settings.allocations_binary)
    seconds = env_int("BENCH_ALLOC_SECONDS", 2)
    log(f"== allocations per request: {binary}, {seconds}s per workload")
    replica = Replica(settings, procs, "replica-allocations", free_port(), redis_url, binary=binary)
    try:
        cookie = log_in(replica.port)
        reset_cart(replica.port, cookie)
        page = expect(http_request(replica.port, "GET", "/", cookie=cookie), (200,), "GET / (allocations)")
        paths = static_paths(page.body)
        run_wrk(settings, replica.port, "/", "get.lua", cookie, 1, "alloc-warmup")
        rows = {}
        for key, title, path, script, logged_in, browser, labels in workloads:
            if "shop" not in labels:
                continue
            reset_cart(replica.port, cookie)
            before = totals(replica)
            r = run_wrk(settings, replica.port, paths.get(path, path), script, cookie if logged_in else None,
                        seconds, f"alloc-{key}", headers=BROWSER_HEADERS if browser else None)
            after = totals(replica)
            n = max(r["requests"], 1)
            d = [b - a for a, b in zip(before, after)]
            rows[key] = {
                "title": title, "requests": r["requests"], "errors": r["errors"],
                "allocs_per_request": round(d[0] / n, 1), "deallocs_per_request": round(d[1] / n, 1),
                "reallocs_per_request": round(d[2] / n, 1), "bytes_per_request": round(d[3] / n),
            }
            log(f"  {title}: {rows[key]['allocs_per_request']} allocations + {rows[key]['reallocs_per_request']} "
                f"reallocations per request, {rows[key]['bytes_per_request']} bytes allocated")
    finally:
        procs.stop(replica.proc)
    res["allocations"] = {"binary": binary, "seconds": seconds, "connections": settings.connections,
                          "workloads": rows}


def print_allocations(res):
    print_workloads(
        res.get("allocations"),
        lambda a: f"allocations per request (the count-allocations build, {a['seconds']}s per workload, "
                   f"{a['connections']} connections)",
        lambda r: f"{r['allocs_per_request']:7.1f} allocs  {r['reallocs_per_request']:6.1f} "
                  f"reallocs  {r['bytes_per_request']:8d} bytes  ({r['requests']} requests, {r['errors']} errors)")
