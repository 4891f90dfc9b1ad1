"""Where a request's CPU goes (`scripts/bench --profile`): one replica of the
shop under wrk, the logged-in page bare and as a browser asks and the add, each
measured for CPU per request (as in the peer phase) while `perf record` samples
the replica (999 Hz, no call graphs: self time only); the samples are grouped
by what they were spent in (the kernel, the allocator, compression, the
template, the Redis client, HTTP, the runtime, the layers, the session, ...)
and each group's share of the samples is multiplied by the measured CPU per
request: µs per request per group.

A symbol's group is decided by its crate path, so code inlined into a caller
counts for the caller's crate; read the groups as a map, not a ledger.
"""

import os
import re
import subprocess
import time

from harness import (
    BROWSER_HEADERS, Replica, env_int, free_port, log, log_in, reset_cart, run_wrk,
)

# (group, pattern on the shared object or the symbol), first match wins.
GROUPS = [
    ("kernel (system calls, TCP, scheduling)", r"^\[kernel|^\[vdso"),
    ("compression (brotli, flate2)", r"brotli|Brotli|flate2|miniz|deflate|crc32|adler|alloc_stdlib|alloc_no_stdlib"),
    ("allocator (mimalloc)", r" _?_?mi_|mimalloc|__rust_alloc|__rust_dealloc|__rust_realloc|__rust_no_alloc"),
    ("memcpy / memmove", r"memmove|memcpy|memset|memcmp"),
    ("template (askama) and escaping", r"askama"),
    ("Redis client (fred)", r"fred::|redis_protocol|bytes_utils"),
    ("session (tower-sessions, cookies, the shop's session code)",
     r"tower_sessions|tower_cookies|storefront::session|rmp|serde|cookie::"),
    ("HTTP (hyper, http, httparse)", r"hyper|httparse|http::|h1::"),
    ("runtime (tokio, futures)", r"tokio::|mio::|futures_util|core::future|PollFn"),
    ("layers (tower, tower-http, axum)", r"tower_http|tower::|axum|matchit"),
    ("tracing and metrics", r"tracing|metrics"),
    ("the shop's own code", r"storefront::"),
    ("formatting (core::fmt, itoa)", r"core::fmt|alloc::fmt|fmt::write|itoa|from_utf8"),
    ("buffers, hashing, collections (bytes, hashbrown, Vec, Arc)",
     r"bytes::|hashbrown|hash::|alloc::vec|raw_vec|alloc::sync|core::iter|drop_in_place|alloc::string"),
    ("libc (other)", r"libc\.so|ld-linux|libm\.so"),
]

WORKLOADS = [
    ("get_home_user", "GET / (logged in)", "/", "get.lua", True, False),
    ("get_home_user_browser", "GET / (logged in), browser headers", "/", "get.lua", True, True),
    ("post_cart_add", "POST /cart/add", "/", "cart_add.lua", True, False),
]


def group_of(dso, symbol):
    text = f"{dso} {symbol}"
    for name, pattern in GROUPS:
        if re.search(pattern, text):
            return name
    return "other"


def perf_samples(data_path):
    """{(dso, symbol): samples} from `perf report`."""
    out = subprocess.run(
        ["perf", "report", "-i", data_path, "--stdio", "--no-children", "--sort", "dso,sym",
         "--percent-limit", "0", "-F", "sample,dso,sym"],
        capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"\s*(\d+)\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if m:
            samples, dso, kind, sym = int(m.group(1)), m.group(2), m.group(3), m.group(4).strip()
            if kind == "k":
                dso = "[kernel]"
            rows[(dso, sym)] = rows.get((dso, sym), 0) + samples
    return rows


def run_profile(settings, procs, res, redis_url):
    seconds = env_int("BENCH_PROFILE_SECONDS", max(settings.seconds, 5))
    log(f"== profile: one replica under perf record (999 Hz), {seconds}s per workload")
    replica = Replica(settings, procs, "replica-profile", free_port(), redis_url)
    out = {"seconds": seconds, "workloads": {}}
    try:
        cookie = log_in(replica.port)
        run_wrk(settings, replica.port, "/", "get.lua", cookie, settings.warmup, "profile-warmup")
        for key, title, path, script, logged_in, browser in WORKLOADS:
            reset_cart(replica.port, cookie)
            data = os.path.join(settings.run_dir, f"perf-{key}.data")
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-p", str(replica.pid), "-o", data, "-q"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            r = run_wrk(settings, replica.port, path, script, cookie if logged_in else None, seconds,
                        f"profile-{key}", {"app": replica.pid}, headers=BROWSER_HEADERS if browser else None)
            perf.send_signal(2)  # SIGINT: perf writes its file and exits
            perf.wait(timeout=60)
            rows = perf_samples(data)
            total = sum(rows.values()) or 1
            cpu = r["cpu_us_per_request"]["app"]
            groups, top = {}, []
            for (dso, sym), n in sorted(rows.items(), key=lambda kv: -kv[1]):
                g = group_of(dso, sym)
                groups[g] = groups.get(g, 0) + n
                if len(top) < 25:
                    top.append({"symbol": sym[:120], "dso": dso, "percent": round(100 * n / total, 2)})
            out["workloads"][key] = {
                "title": title, "rps": r["rps"], "cpu_us_per_request": cpu, "samples": total,
                "groups": {g: {"percent": round(100 * n / total, 1), "us_per_request": round(cpu * n / total, 1)}
                           for g, n in sorted(groups.items(), key=lambda kv: -kv[1])},
                "top_symbols": top,
            }
            log(f"  {title}: {cpu} µs per request, {total} samples")
    finally:
        procs.stop(replica.proc)
    res["profile"] = out


def print_profile(res):
    p = res.get("profile")
    if not p:
        return
    print()
    print(f"where the shop's CPU goes (perf record, self time grouped by crate, x the measured CPU per request; "
          f"{p['seconds']}s per workload)")
    for w in p["workloads"].values():
        print(f"  {w['title']}: {w['cpu_us_per_request']} µs per request ({w['samples']} samples)")
        for g, v in w["groups"].items():
            print(f"    {v['us_per_request']:7.1f} µs  {v['percent']:5.1f} %  {g}")
