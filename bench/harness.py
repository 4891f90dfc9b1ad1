"""The pieces of the storefront benchmark that its phases share: bench/run.py
(the standard phases and the command line), bench/peers.py (the peer comparison
phases) and bench/backends.py (the backend phase) import them from here, and
this module imports none of them, so the imports point one way.

Processes started and stopped together, the shop's replicas and the environment
they start with, HTTP requests, wrk runs and the CPU they cost, the MONITOR
trace of Redis commands, the workloads and how their rounds are merged, nginx in
front of the replicas.
"""

import ctypes
import http.client
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time

from resp import Redis, commandstats_delta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRK_DIR = os.path.join(ROOT, "bench", "wrk")
DEMO_USER, DEMO_PASSWORD = "demo", "demo-pass-123"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The only variables of the caller's environment that the shop's binary (the
# replicas, `storefront migrate`) is started with: everything else it gets is set
# by the bench itself. None of them is one of the shop's settings (src/config.rs,
# src/main.rs: clap's `env = "..."`) or RUST_LOG, so a setting exported in the
# caller's shell (REDIS_URL, TOKIO_WORKER_THREADS, ...) cannot change what is
# measured, whatever settings the shop adds later.
# The shop's own settings a bench run may vary: what a write must reach before it
# is acknowledged (`REDIS_WAIT_REPLICAS=0 scripts/bench --redis sentinel` measures
# Sentinel without WAIT).
INHERITED_ENV = ("PATH", "HOME", "LANG", "TMPDIR", "REDIS_WAIT_REPLICAS", "REDIS_WAIT_TIMEOUT")
INHERITED_ENV_PREFIXES = ("LC_",)

# The login/registration throttle counts attempts in flight, and the bench logs in
# 10 times a second (more in flight when the machine is slow) and registers a
# dozen users from one address: limits far above that, so the bench measures the
# cost of logins, not the throttle (tests/accounts.rs tests the throttle).
BENCH_THROTTLE_LIMITS = {
    "LOGIN_MAX_FAILURES_PER_USER": "100000", "LOGIN_MAX_FAILURES_PER_CLIENT": "100000",
    "LOGIN_MAX_FAILURES_PER_USER_TOTAL": "100000", "REGISTER_MAX_PER_CLIENT": "100000",
}

# The four workloads, in the order they are run (the cart-changing one last, so
# the two GETs see the 3-item cart).
WORKLOADS = [
    ("get_home_user", "GET / (logged in)", "/", "get.lua", True),
    ("get_cart", "GET /cart (logged in)", "/cart", "get.lua", True),
    ("get_home_anon", "GET / (anonymous)", "/", "get.lua", False),
    ("post_cart_add", "POST /cart/add", "/", "cart_add.lua", True),
]


def log(message):
    print(f"[bench] {message}", flush=True)


def print_workloads(section, header, row):
    """A phase's summary table: a blank line, `header(section)`, then one line per
    workload of `section["workloads"]`, its title aligned and `row(workload)` after it."""
    if not section:
        return
    print()
    print(header(section))
    width = max(len(w["title"]) for w in section["workloads"].values())
    for w in section["workloads"].values():
        print(f"  {w['title']:{width}}  {row(w)}")


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


# ------------------------------------------------------------------ processes

def _die_with_parent():
    """In the child, before exec: get SIGTERM if the benchmark dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Processes:
    """Every process this run started, stopped in reverse order."""

    def __init__(self):
        self.running = []  # (name, Popen)

    def start(self, name, argv, logfile, env=None, cwd=ROOT):
        out = open(logfile, "ab")
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        out.close()
        self.running.append((name, proc))
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=15):
        entry = next((e for e in self.running if e[1] is proc), None)
        if entry is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(sig)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{entry[0]} (pid {proc.pid}) did not stop in {timeout}s: SIGKILL")
                proc.kill()
                proc.wait(timeout=5)
        self.running.remove(entry)

    def stop_all(self):
        for _, proc in reversed(list(self.running)):
            self.stop(proc)


def shop_env(settings):
    """The environment to start the shop's binary with: the allow-listed variables
    of this script's own environment (INHERITED_ENV), then `settings`."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV or k.startswith(INHERITED_ENV_PREFIXES)}
    env.update(settings)
    return env


def migrate(binary, database_url):
    """`storefront migrate`: the schema and the demo account, before any replica starts."""
    subprocess.run([binary, "migrate"], check=True, capture_output=True,
                   env=shop_env({"DATABASE_URL": database_url, "RUST_LOG": "warn"}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU time of a process and its child processes (nginx's
    workers) so far, from /proc/<pid>/stat."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += sum(cpu_seconds(int(child)) for child in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def memory_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return {"rss_kb": out.get("VmRSS"), "peak_rss_kb": out.get("VmHWM")}


def wait_until(check, what, timeout=60, proc=None, logfile=None):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (OSError, http.client.HTTPException):
            pass
        if proc is not None and proc.poll() is not None:
            tail = open(logfile, errors="replace").read()[-2000:] if logfile else ""
            raise SystemExit(f"{what} exited during start-up (status {proc.returncode}):\n{tail}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not ready after {timeout}s")
        time.sleep(0.1)


# ------------------------------------------------------------------ HTTP

class Response:
    def __init__(self, status, headers, body, seconds):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def header(self, name):
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def cookie(self, name="sid"):
        for key, value in self.headers:
            if key.lower() == "set-cookie" and value.startswith(name + "="):
                return value.split(";", 1)[0]
        return None


def http_request(port, method, path, form=None, cookie=None, timeout=30, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = dict(headers or {})
    body = None
    if form is not None:
        body = "&".join(f"{k}={v}" for k, v in form.items())
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if cookie:
        headers["Cookie"] = cookie
    started = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, resp.getheaders(), data, time.perf_counter() - started)
    finally:
        conn.close()


def expect(resp, statuses, what):
    if resp.status not in statuses:
        raise SystemExit(f"{what}: HTTP {resp.status}\n{resp.body[:500]!r}")
    return resp


def log_in(port):
    resp = expect(
        http_request(port, "POST", "/login", {"username": DEMO_USER, "password": DEMO_PASSWORD}),
        (303,), "logging in as demo",
    )
    cookie = resp.cookie()
    if not cookie:
        raise SystemExit("logging in gave no sid cookie")
    return cookie


def reset_cart(port, cookie):
    """The user's cart back to products 1, 2, 3 × 1, and no flash message pending."""
    for product in range(1, 13):
        expect(http_request(port, "POST", "/cart/update", {"product_id": product, "quantity": 0}, cookie),
               (303,), "emptying the cart")
    for product in (1, 2, 3):
        expect(http_request(port, "POST", "/cart/add", {"product_id": product, "quantity": 1}, cookie),
               (303,), "filling the cart")
    page = expect(http_request(port, "GET", "/cart", cookie=cookie), (200,), "reading the cart")
    if b"Blue Teapot" not in page.body:
        raise SystemExit("the cart page does not show the 3 items just added")


def find_cart_key(control):
    """The demo user's cart key, whatever its spelling (`cart:user:1` before cart
    keys were made slot-safe for Redis Cluster, `cart:{u1}` since): the one hash
    under cart:* that holds products 1, 2 and 3 (markers and tombstones beside it
    are not that)."""
    found = []
    cursor = b"0"
    while True:
        cursor, keys = control.call("SCAN", cursor, "MATCH", "cart:*", "COUNT", 1000)
        for key in keys:
            if control.call("TYPE", key) == "hash" and sorted(control.call("HKEYS", key)) == [b"1", b"2", b"3"]:
                found.append(key.decode())
        if cursor in (b"0", 0, "0"):
            break
    if len(found) != 1:
        raise SystemExit(f"expected one cart hash in Redis after filling the cart, found {found}")
    return found[0]


# ------------------------------------------------------------------ wrk

def machine_busy_seconds():
    """CPU time all processes on the machine have used (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU used during a measurement: by each of `pids`, by wrk (a child of this
    script, so in RUSAGE_CHILDREN once it has exited), by this script, and by
    everything else on the machine (other users' builds or tests: noise)."""

    def __init__(self, pids):
        self.pids = pids
        self.start = self._sample()

    def _sample(self):
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "wall": time.monotonic(),
            "machine": machine_busy_seconds(),
            "self": own.ru_utime + own.ru_stime,
            "children": kids.ru_utime + kids.ru_stime,
            "pids": {name: cpu_seconds(pid) for name, pid in self.pids.items()},
        }

    def stop(self, requests):
        end = self._sample()
        a = self.start
        wall = end["wall"] - a["wall"]
        per_pid = {name: end["pids"][name] - a["pids"][name] for name in self.pids}
        load = end["children"] - a["children"]
        ours = sum(per_pid.values()) + load + (end["self"] - a["self"])
        other = max(0.0, (end["machine"] - a["machine"]) - ours)
        n = max(requests, 1)
        out = {name: round(v * 1e6 / n, 1) for name, v in per_pid.items()}
        out["wrk"] = round(load * 1e6 / n, 1)
        cores = os.cpu_count() or 1
        return out, round(other / wall / cores * 100, 1)


# What a browser adds to every request besides its cookie: the encodings it
# accepts (Chrome's and Firefox's value). wrk sends none of it by itself.
BROWSER_HEADERS = {"Accept-Encoding": "gzip, deflate, br"}


def pinned(settings, argv, role):
    """`argv` under `taskset` in the pinned mode (`--pinned`): the server under
    test ("server": the shop, the floor, Flask, nginx and the replicas) on core 0,
    the load and what it depends on ("load": wrk, Redis) on core 1."""
    if not getattr(settings, "pinned", False):
        return argv
    return ["taskset", "-c", "0" if role == "server" else "1"] + list(argv)


def run_wrk(settings, port, path, script, cookie, seconds, tag, pids=None, connections=None, headers=None):
    """wrk against 127.0.0.1:port; `connections` overrides the settings' (with at
    most that many threads: wrk needs a connection per thread); `headers` are
    sent on every request besides the cookie (BROWSER_HEADERS: as a browser asks)."""
    connections = connections or settings.connections
    threads = min(settings.threads, connections)
    out = os.path.join(settings.run_dir, f"wrk-{tag}.json")
    env = dict(os.environ, BENCH_WRK_DIR=WRK_DIR, BENCH_JSON_OUT=out, BENCH_COOKIE=cookie or "",
               BENCH_THREADS=str(threads),
               BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in (headers or {}).items()))
    argv = pinned(settings, ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                             "--timeout", "5s", "-s", os.path.join(WRK_DIR, script),
                             f"http://127.0.0.1:{port}{path}"], "load")
    meter = CpuMeter(pids or {})
    text = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    with open(os.path.join(settings.run_dir, f"wrk-{tag}.txt"), "w") as f:
        f.write(text)
    with open(out) as f:
        raw = json.load(f)
    cpu, other = meter.stop(raw["requests"])
    errors = sum(raw["errors"].values())
    pct = raw["latency_us"]["percentiles"]
    return {
        "requests": raw["requests"],
        "seconds": round(raw["duration_us"] / 1e6, 3),
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": pct["50"] / 1000,
        "p90_ms": pct["90"] / 1000,
        "p99_ms": pct["99"] / 1000,
        "p99_9_ms": pct["99.9"] / 1000,
        "max_ms": raw["latency_us"]["max"] / 1000,
        "errors": errors,
        "error_detail": raw["errors"],
        # Bytes on the wire per response, headers included (wrk's bytes read).
        "bytes_per_request": round(raw["bytes"] / max(raw["requests"], 1), 1),
        "connections": connections,
        "cpu_us_per_request": cpu,
        "other_load_percent": other,
    }


# ------------------------------------------------------------------ Redis tracing

MONITOR_LINE = re.compile(r'^(\S+) \[(\d+) ([^\]]+)\] "([^"]*)"(.*)$')


class MonitorTrace:
    """MONITOR on a side connection while a few requests are made one by one:
    tells which commands the app sent itself and which ran inside a Lua script.
    `redis_ports` may name several data nodes (every primary of a Redis Cluster):
    one MONITOR each, their lines merged in time order. `ignore_addresses` are
    client addresses whose commands are not the app's (the benchmark's own
    connection): a list for every node, or {port: [addresses]} node by node."""

    def __init__(self, redis_ports, ignore_addresses=()):
        ports = list(redis_ports) if isinstance(redis_ports, (list, tuple)) else [redis_ports]
        if isinstance(ignore_addresses, dict):
            self.ignore = {port: set(ignore_addresses.get(port, ())) for port in ports}
        else:
            self.ignore = {port: set(ignore_addresses) for port in ports}
        self.conns = [Redis(port, timeout=None) for port in ports]
        self.lines = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._collect, args=(port, conn), daemon=True)
                        for port, conn in zip(ports, self.conns)]
        for thread in self.threads:
            thread.start()
        time.sleep(0.2)

    def _collect(self, port, conn):
        ignore = self.ignore[port]
        try:
            for line in conn.monitor_lines():
                match = MONITOR_LINE.match(line)
                if match and match.group(3) not in ignore:
                    with self.lock:
                        self.lines.append(match)
        except (OSError, ValueError):
            pass

    def take(self):
        time.sleep(0.2)  # MONITOR output trails the replies a little
        with self.lock:
            lines, self.lines = self.lines, []
        return sorted(lines, key=lambda m: float(m.group(1)))

    def close(self):
        for conn in self.conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()


def shorten_args(rest, replacements):
    args = re.findall(r'"((?:[^"\\]|\\.)*)"', rest)
    out = []
    for arg in args:
        for real, alias in replacements.items():
            arg = arg.replace(real, alias)
        if len(arg) > 24:
            arg = f"<{len(arg)} chars>"
        out.append(arg)
    return " ".join(out)


def summarize_trace(lines, requests, replacements):
    app, lua = {}, {}
    for m in lines:
        bucket = lua if m.group(3) == "lua" else app
        cmd = m.group(4).lower()
        bucket[cmd] = bucket.get(cmd, 0) + 1
    return {
        "requests": requests,
        "app_commands": app,
        "lua_commands": lua,
        "app_per_request": round(sum(app.values()) / requests, 3),
        "all_per_request": round((sum(app.values()) + sum(lua.values())) / requests, 3),
    }


def trace_workloads(settings, redis_port, port, cookie, ignore_addresses):
    """A few requests of each workload, one at a time, under MONITOR (on every
    data node when `redis_port` is a list; see MonitorTrace)."""
    n = settings.trace_requests
    sid = cookie.split("=", 1)[1]
    replacements = {sid: "<sid>"}
    monitor = MonitorTrace(redis_port, ignore_addresses=ignore_addresses)
    traces = {}
    try:
        def run(key, do_one):
            monitor.take()
            do_one()
            first = monitor.take()
            for _ in range(n - 1):
                do_one()
            rest = monitor.take()
            summary = summarize_trace(first + rest, n, replacements)
            summary["one_request"] = [
                ("lua: " if m.group(3) == "lua" else "") + m.group(4).upper() + " " + shorten_args(m.group(5), replacements)
                for m in first
            ]
            traces[key] = summary

        run("get_home_user", lambda: expect(http_request(port, "GET", "/", cookie=cookie), (200,), "GET /"))
        run("get_cart", lambda: expect(http_request(port, "GET", "/cart", cookie=cookie), (200,), "GET /cart"))
        run("get_home_anon", lambda: expect(http_request(port, "GET", "/"), (200,), "GET / anon"))
        # Products 4..12 in turn, as under load: the session keeps the last three
        # flash messages, and writing back an unchanged list is no write at all.
        counter = iter(range(10**6))

        def next_product():
            return 4 + next(counter) % 9
        run("post_cart_add", lambda: expect(
            http_request(port, "POST", "/cart/add", {"product_id": next_product(), "quantity": 1}, cookie),
            (303,), "add"))
        run("post_cart_update", lambda: expect(
            http_request(port, "POST", "/cart/update", {"product_id": next_product(), "quantity": 0}, cookie),
            (303,), "update"))
        # The flash messages those left are read (and so removed) by the next page:
        # that is one session write, traced here so it is seen.
        run("get_cart_after_change", lambda: expect(
            http_request(port, "GET", "/cart", cookie=cookie), (200,), "GET /cart"))
        traces["get_cart_after_change"]["note"] = (
            "first GET after a cart change: takes the flash message (one session SET); "
            "the other requests of the sample write nothing")
        logins = []

        def one_login():
            logins.append(log_in(port))
        run("post_login", one_login)
        for login_cookie in logins:
            replacements[login_cookie.split("=", 1)[1]] = "<new sid>"
        traces["post_login"]["one_request"] = [
            line.replace(logins[0].split("=", 1)[1], "<new sid>") for line in traces["post_login"]["one_request"]
        ]
    finally:
        monitor.close()
    return traces


def combine_traces(traces):
    """All traces together: which commands the app sends, which run inside Lua."""
    out = {"app_commands": {}, "lua_commands": {}}
    for trace in traces.values():
        for kind in out:
            for cmd, n in trace[kind].items():
                out[kind][cmd] = out[kind].get(cmd, 0) + n
    return out


def app_commands(delta, trace):
    """Commands the app sent itself, from INFO commandstats deltas: a command that
    the trace saw only inside Lua scripts is not counted; one seen both ways is
    split in the trace's proportion."""
    total = 0.0
    for cmd, calls in delta.items():
        a = trace["app_commands"].get(cmd, 0)
        b = trace["lua_commands"].get(cmd, 0)
        total += calls * (a / (a + b) if a + b else 1.0)
    return total


# ------------------------------------------------------------------ one phase

def shared_host_env(replicas):
    """What scripts/cluster gives each of several replicas on one host: the
    host's cores divided among them (tokio worker threads), at least one each."""
    split = str(max(1, (os.cpu_count() or 1) // replicas))
    return {"TOKIO_WORKER_THREADS": os.environ.get("TOKIO_WORKER_THREADS", split)}


class Replica:
    """One shop replica, started and ready; `binary` instead of the settings' one
    (the allocation-counting build, one under callgrind)."""

    def __init__(self, settings, procs, name, port, redis_url, extra_env=None, binary=None):
        self.name, self.port, self.settings = name, port, settings
        # The shop's settings are exactly the ones set here, the phase's `extra_env`
        # and BENCH_REPLICA_ENV's: none is inherited from the caller (shop_env).
        env = shop_env(dict(
            PORT=str(port), BIND="127.0.0.1", DATABASE_URL=settings.database_url,
            REPLICA_NAME=name, RUST_LOG=settings.rust_log, LOG_FORMAT="json",
            TRUSTED_PROXIES="127.0.0.1",
        ))
        env.update(BENCH_THROTTLE_LIMITS)
        if redis_url:
            env["REDIS_URL"] = redis_url
        env.update(settings.replica_env)
        env.update(extra_env or {})
        self.logfile = os.path.join(settings.run_dir, f"{name}.log")
        self.proc = procs.start(name, pinned(settings, [binary or settings.binary, "serve"], "server"), self.logfile,
                                env=env)
        self.pid = self.proc.pid
        wait_until(lambda: http_request(port, "GET", "/readyz", timeout=2).status == 200,
                   f"replica {name}", proc=self.proc, logfile=self.logfile)


class Target:
    """What a workload is sent to: a replica (or nginx), the visitor's cookie there,
    the Redis connection whose commandstats to read (None: in-memory store), and
    the processes whose CPU to count."""

    def __init__(self, label, port, cookie, redis, pids, traces=None):
        self.label, self.port, self.cookie, self.redis, self.pids, self.traces = \
            label, port, cookie, redis, pids, traces


def measure_workload(settings, target, key, title, path, script, logged_in, round_no=0):
    log(f"{target.label}: {title} for {settings.seconds}s")
    redis = target.redis
    before = redis.commandstats() if redis else None
    result = run_wrk(settings, target.port, path, script, target.cookie if logged_in else None, settings.seconds,
                     f"{target.label}-{key}-{round_no}", target.pids)
    if redis:
        delta = commandstats_delta(before, redis.commandstats())
        result["redis_commands"] = delta
        result["redis_commands_per_request"] = round(sum(delta.values()) / max(result["requests"], 1), 3)
        if target.traces:
            sent = app_commands(delta, combine_traces(target.traces))
            result["redis_app_commands_per_request"] = round(sent / max(result["requests"], 1), 3)
            # wrk does not count the requests still in flight when it stops (at
            # most one per connection), though their commands reached Redis.
            result["redis_app_commands_per_request_low"] = round(
                sent / (result["requests"] + settings.connections), 3)
        result["session_writes"] = delta.get("set", 0)
    describe(title, result)
    return result


def merge_rounds(runs):
    """Several rounds of one measurement: the median of each number, the commands
    summed over all rounds, and each round's figures kept in `rounds`."""
    if len(runs) == 1:
        return runs[0]
    med = statistics.median
    out = dict(runs[len(runs) // 2])
    for field in ("rps", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "other_load_percent",
                  "bytes_per_request"):
        out[field] = round(med(r[field] for r in runs), 3)
    out["requests"] = sum(r["requests"] for r in runs)
    out["errors"] = sum(r["errors"] for r in runs)
    out["cpu_us_per_request"] = {k: round(med(r["cpu_us_per_request"][k] for r in runs), 1)
                                 for k in runs[0]["cpu_us_per_request"]}
    if "redis_commands" in runs[0]:
        total = {}
        for r in runs:
            for cmd, n in r["redis_commands"].items():
                total[cmd] = total.get(cmd, 0) + n
        out["redis_commands"] = total
        out["redis_commands_per_request"] = round(sum(total.values()) / max(out["requests"], 1), 3)
        if "redis_app_commands_per_request" in runs[0]:
            sent = sum(r["redis_app_commands_per_request"] * r["requests"] for r in runs)
            out["redis_app_commands_per_request"] = round(sent / max(out["requests"], 1), 3)
            out["redis_app_commands_per_request_low"] = round(
                sent / (out["requests"] + len(runs) * runs[0]["connections"]), 3)
        if "session_writes" in runs[0]:
            out["session_writes"] = sum(r["session_writes"] for r in runs)
    out["rounds"] = [{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "other_load_percent", "cpu_us_per_request")}
                     for r in runs]
    return out


def measure_workloads(settings, targets, workloads=WORKLOADS):
    """Each workload on each target in turn (Redis, then in-memory, then the next
    workload), so that a change in background load hits both sides alike;
    `settings.rounds` times over, keeping the medians."""
    runs = {(t.label, key): [] for t in targets for key, *_ in workloads}
    for t in targets:
        log(f"{t.label}: warm-up ({settings.warmup}s)")
        run_wrk(settings, t.port, "/", "get.lua", t.cookie, settings.warmup, f"{t.label}-warmup")
    for round_no in range(settings.rounds):
        if round_no:
            # Back to the 3-item cart, flash messages read: as in the first round.
            for t in targets:
                reset_cart(t.port, t.cookie)
        if settings.rounds > 1:
            log(f"round {round_no + 1} of {settings.rounds}")
        for key, title, path, script, logged_in in workloads:
            for t in targets:
                runs[(t.label, key)].append(
                    measure_workload(settings, t, key, title, path, script, logged_in, round_no))
    return {t.label: {key: merge_rounds(runs[(t.label, key)]) for key, *_ in workloads} for t in targets}


def describe(title, r):
    extra = ""
    if "redis_commands_per_request" in r:
        extra = f", Redis {r.get('redis_app_commands_per_request', r['redis_commands_per_request'])} cmd/req"
    if r.get("other_load_percent", 0) >= 5:
        extra += f"; WARNING: other processes used {r['other_load_percent']}% of the machine meanwhile"
    log(f"  -> {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
        f"errors {r['errors']}{extra}")


# ------------------------------------------------------------------ the cost of a login

def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def login_cost(port, pid, n):
    """CPU the replica spends per login (argon2 verify dominates), logins one at a time."""
    log(f"CPU per login: {n} logins one after another")
    cpu_before = cpu_seconds(pid)
    times = []
    for _ in range(n):
        resp = expect(http_request(port, "POST", "/login", {"username": DEMO_USER, "password": DEMO_PASSWORD}),
                      (303,), "login")
        times.append(resp.seconds)
    cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / n
    times.sort()
    return {
        "samples": n,
        "cpu_ms_per_login": round(cpu_ms, 1),
        "latency_p50_ms": round(percentile(times, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(times, 99) * 1000, 1),
        "max_logins_per_second_per_core": round(1000 / cpu_ms, 1) if cpu_ms else None,
    }


# ------------------------------------------------------------------ nginx

def nginx_template():
    with open(os.path.join(ROOT, "deploy", "nginx", "storefront.conf.template")) as f:
        return f.read()


def start_nginx(settings, procs, upstream_ports, template=None, name="nginx"):
    """nginx in front of the replicas, from the shipped template (or `template`)."""
    prefix = os.path.join(settings.run_dir, name)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    port = free_port()
    template = template or nginx_template()
    servers = "\n        ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstream_ports)
    # The same four placeholders scripts/cluster fills with envsubst; nginx's own
    # $variables are left alone.
    conf = (template.replace("${LB_LISTEN}", f"127.0.0.1:{port}")
            .replace("${LB_UPSTREAM_SERVERS}", servers)
            .replace("${LB_ACCESS_LOG}", "logs/access.log")
            .replace("${LB_ERROR_LOG}", "logs/error.log"))
    conf_path = os.path.join(prefix, "nginx.conf")
    with open(conf_path, "w") as f:
        f.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    args = [nginx, "-p", prefix + "/", "-c", conf_path, "-e", "logs/error.log"]
    test = subprocess.run(args + ["-t"], capture_output=True, text=True)
    if test.returncode != 0:
        raise SystemExit(f"nginx rejected {conf_path}:\n{test.stderr}")
    logfile = os.path.join(prefix, "logs", "stdout.log")
    proc = procs.start(name, pinned(settings, args + ["-g", "daemon off;"], "server"), logfile)
    wait_until(lambda: http_request(port, "GET", "/healthz", timeout=2).status == 200, name,
               proc=proc, logfile=logfile)
    return proc, port


# ------------------------------------------------------------------ report

def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)
