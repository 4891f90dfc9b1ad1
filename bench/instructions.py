"""Instructions per request (`scripts/bench --instructions`): the shop and the
floor each run under valgrind's callgrind, which counts every user-space
instruction the process executes; the logged-in `GET /` and `POST /cart/add`
run under wrk (4 connections) between a `callgrind_control --zero` and a
`--dump`, and the dump's total is divided by the requests wrk made.

Unlike CPU time, the count does not move with the machine's load or the other
processes on it (it leaves out the kernel: system calls, TCP, scheduling), so
the shop/floor ratio of one run is the same in the next. Under callgrind a
process runs ~50x slower, on one thread: each server gets one tokio worker
(TOKIO_WORKER_THREADS=1), the same for both.
"""

import os
import re
import subprocess

from harness import Replica, env_int, free_port, log, print_workloads, reset_cart, run_wrk
from peers import logged_in_home, start_floor

WORKLOADS = (
    ("get_home_user", "GET / (logged in, 3-item cart)", "get.lua"),
    ("post_cart_add", "POST /cart/add", "cart_add.lua"),
)
CONNECTIONS = 4
TOTALS = re.compile(rb"^(?:totals|summary): (\d+)", re.M)


def under_callgrind(settings, binary, name):
    """A wrapper that runs `binary` under callgrind, its dumps at run_dir/callgrind.NAME.N."""
    out = os.path.join(settings.run_dir, f"callgrind.{name}")
    wrapper = os.path.join(settings.run_dir, f"callgrind-{name}.sh")
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file="{out}" "{binary}" "$@"\n')
    os.chmod(wrapper, 0o755)
    return wrapper, out


def counted(pid, out, run):
    """Instructions executed while `run()` ran: zero the counters, run, dump."""
    before = {f for f in os.listdir(os.path.dirname(out)) if f.startswith(os.path.basename(out) + ".")}
    subprocess.run(["callgrind_control", "--zero", str(pid)], check=True, capture_output=True)
    result = run()
    subprocess.run(["callgrind_control", "--dump", str(pid)], check=True, capture_output=True)
    dumps = [f for f in os.listdir(os.path.dirname(out))
             if f.startswith(os.path.basename(out) + ".") and f not in before]
    if len(dumps) != 1:
        raise SystemExit(f"callgrind wrote {len(dumps)} dumps for one measurement ({out})")
    with open(os.path.join(os.path.dirname(out), dumps[0]), "rb") as f:
        found = TOTALS.search(f.read())
    if not found:
        raise SystemExit(f"no instruction total in {dumps[0]}")
    return int(found.group(1)), result


def run_instructions(settings, procs, res, redis_url, control):
    seconds = env_int("BENCH_INSTR_SECONDS", 5)
    log(f"== instructions per request (callgrind): the shop and the floor, {seconds}s per workload, "
        f"{CONNECTIONS} connections")
    one_worker = {"TOKIO_WORKER_THREADS": "1"}
    wrapper, shop_out = under_callgrind(settings, settings.binary, "shop")
    shop = Replica(settings, procs, "replica-callgrind", free_port(), redis_url, one_worker, wrapper)
    cookie, _, body_file, cart_key = logged_in_home(settings, shop, control, "callgrind-home.html")

    wrapper, floor_out = under_callgrind(settings, settings.floor_binary, "floor")
    floor_proc, floor_port = start_floor(settings, procs, redis_url, cart_key, body_file, wrapper, one_worker)

    targets = (("shop", shop.port, shop.pid, shop_out, lambda: reset_cart(shop.port, cookie)),
               ("floor", floor_port, floor_proc.pid, floor_out, lambda: None))
    rows = {}
    try:
        for name, port, pid, out, reset in targets:
            run_wrk(settings, port, "/", "get.lua", cookie, 2, f"callgrind-{name}-warmup", connections=CONNECTIONS)
            for key, title, script in WORKLOADS:
                reset()
                instructions, r = counted(pid, out, lambda: run_wrk(
                    settings, port, "/", script, cookie, seconds, f"callgrind-{name}-{key}",
                    connections=CONNECTIONS))
                if r["errors"]:
                    raise SystemExit(f"{name} {title}: {r['errors']} errors under callgrind")
                per = round(instructions / max(r["requests"], 1))
                rows.setdefault(key, {"title": title})[name] = {"requests": r["requests"],
                                                                "instructions_per_request": per}
                log(f"  {name} {title}: {per:,} instructions per request ({r['requests']} requests)")
    finally:
        procs.stop(shop.proc)
        procs.stop(floor_proc)
    for row in rows.values():
        row["shop_over_floor"] = round(row["shop"]["instructions_per_request"]
                                       / row["floor"]["instructions_per_request"], 2)
    res["instructions"] = {"seconds": seconds, "connections": CONNECTIONS, "workloads": rows}


def print_instructions(res):
    print_workloads(
        res.get("instructions"),
        lambda a: f"user-space instructions per request (callgrind, one tokio worker each, {a['seconds']}s per "
                  f"workload, {a['connections']} connections)",
        lambda r: f"shop {r['shop']['instructions_per_request']:9,}  "
                  f"floor {r['floor']['instructions_per_request']:9,}  shop/floor {r['shop_over_floor']:.2f}x")
