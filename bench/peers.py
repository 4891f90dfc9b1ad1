"""The peer comparison phases of the benchmark (`scripts/bench --peers`), run by
bench/run.py after (or, with --skip-standard, instead of) the standard phases:

- peers: the shop, the Flask + Flask-Session peer (bench/flask, gunicorn) and the
  axum + fred floor (bench/floor) on the same Redis, one after the other, with the
  same wrk settings: logged-in GET / with a 3-item cart, then POST /cart/add;
  ratios shop/floor and shop/Flask.
- connection curve: logged-in GET / at 1, 8, 32, 128, 512 connections on the shop
  (and the floor), req/s and p50/p99/p99.9.
- memory scale: Redis used_memory per session and per cart line at 10k, 100k and
  1M sessions (database 9, filled by pipelined writes, emptied afterwards).
- nginx keep-alive: logged-in GET / and POST /cart/add through nginx + 3
  replicas, with the shipped template (keep-alive to the replicas) and with the
  template as first shipped (`Connection: close`, a new connection per request),
  in alternating rounds.
- allocator A/B (only with BENCH_AB_BINARY): two shop binaries in alternating
  rounds, RSS after 30 logins, req/s and CPU per request of logged-in GET /.
"""

import os
import re
import signal
import statistics
import time

from resp import Redis, commandstats_delta
from harness import (
    BROWSER_HEADERS, ROOT, Replica, describe, env_int, expect, find_cart_key, fmt, free_port, http_request, log,
    log_in, memory_kb,
    merge_rounds, nginx_template, pinned, reset_cart, run_wrk, shared_host_env, start_nginx, wait_until,
)

CURVE_CONNECTIONS = (1, 8, 32, 128, 512)
MEMORY_LEVELS = (10_000, 100_000, 1_000_000)


def int_list(name, default):
    value = os.environ.get(name, "").replace(",", " ").split()
    return tuple(int(v) for v in value) if value else default


# ------------------------------------------------------------------ the peers

class Peer:
    """A target of the peer comparison: its port, the visitor's cookie there, how
    to put its cart back to 3 lines, and its processes (for CPU and RSS)."""

    def __init__(self, label, title, port, cookie, reset, pids, session_key=None):
        self.label, self.title, self.port, self.cookie = label, title, port, cookie
        self.reset, self.pids, self.session_key = reset, pids, session_key


def start_flask(settings, procs, redis_url):
    venv = settings.venv
    gunicorn = os.path.join(venv, "bin", "gunicorn")
    if not os.path.exists(gunicorn):
        raise SystemExit(f"{gunicorn} not found: scripts/bench --peers creates the venv")
    port = free_port()
    db_path = settings.database_url.removeprefix("sqlite://")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "DATABASE", "PORT"))}
    env.update(STOREFRONT_DB=db_path, REDIS_URL=redis_url, PYTHONDONTWRITEBYTECODE="1")
    argv = [gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(settings.flask_workers),
            "--worker-class", "gthread", "--threads", str(settings.flask_threads),
            "--keep-alive", "30", "--backlog", "2048", "--log-level", "warning",
            "--chdir", os.path.join(ROOT, "bench", "flask"), "app:app"]
    logfile = os.path.join(settings.run_dir, "flask.log")
    proc = procs.start("flask", pinned(settings, argv, "server"), logfile, env=env)
    wait_until(lambda: http_request(port, "GET", "/readyz", timeout=2).status == 200, "flask (gunicorn)",
               proc=proc, logfile=logfile)
    return proc, port


def start_floor(settings, procs, redis_url, cart_key, body_file, binary=None, extra_env=None):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "FLOOR", "PORT"))}
    env.update(PORT=str(port), REDIS_URL=redis_url, FLOOR_CART_KEY=cart_key, FLOOR_BODY_FILE=body_file)
    env.update(extra_env or {})
    logfile = os.path.join(settings.run_dir, "floor.log")
    proc = procs.start("floor", pinned(settings, [binary or settings.floor_binary], "server"), logfile, env=env)
    wait_until(lambda: http_request(port, "GET", "/readyz", timeout=2).status == 200, "floor",
               proc=proc, logfile=logfile)
    return proc, port


ALL_PEERS = ("shop", "floor", "flask")
SHOP_AND_FLOOR = ("shop", "floor")
SHOP = ("shop",)

# key, title, path ("stylesheet" and "image": found on the shop's page), wrk
# script, logged in (the visitor's cookie), as a browser asks (BROWSER_HEADERS),
# the peers it runs on. Neither the floor nor the Flask peer compresses: their
# browser rows would only repeat their bare ones, so only the floor's (the
# denominator of the shop's ratios) are measured.
PEER_WORKLOADS = [
    ("get_home_user", "GET / (logged in, 3-item cart)", "/", "get.lua", True, False, ALL_PEERS),
    ("get_home_user_browser", "GET / (logged in), browser headers", "/", "get.lua", True, True, SHOP_AND_FLOOR),
    ("post_cart_add", "POST /cart/add", "/", "cart_add.lua", True, False, ALL_PEERS),
    ("post_cart_add_browser", "POST /cart/add, browser headers", "/", "cart_add.lua", True, True, SHOP_AND_FLOOR),
    ("get_home_anon", "GET / (anonymous)", "/", "get.lua", False, False, SHOP),
    ("get_home_anon_browser", "GET / (anonymous), browser headers", "/", "get.lua", False, True, SHOP),
    ("get_stylesheet", "stylesheet (fingerprinted), bare", "stylesheet", "get.lua", False, False, SHOP),
    ("get_stylesheet_browser", "stylesheet, browser headers", "stylesheet", "get.lua", True, True, SHOP),
    ("get_image_browser", "product image (SVG), browser headers", "image", "get.lua", True, True, SHOP),
]
# The nginx phase and the connection curve: the two logged-in workloads, bare.
LB_WORKLOADS = [w for w in PEER_WORKLOADS if w[0] in ("get_home_user", "post_cart_add")]
# --quick: the shop and the floor, the logged-in page and the add, bare and as a browser asks.
QUICK_WORKLOADS = [w for w in PEER_WORKLOADS if w[0].startswith(("get_home_user", "post_cart_add"))]


def static_paths(page):
    """The fingerprinted stylesheet and the first product image named on a page."""
    text = page.decode("utf-8", "replace")
    css = re.search(r'<link\b[^>]*\brel="stylesheet"[^>]*\bhref="([^"]+)"', text)
    img = re.search(r'<img\b[^>]*\bsrc="(/static/products/[^"]+)"', text)
    if not css or not img:
        raise SystemExit("the shop's page names no stylesheet or no product image under /static/products")
    return {"stylesheet": css.group(1), "image": img.group(1)}


def probe(port, path, cookie, headers):
    """One request as the workload sends it: what comes back (status, encoding, body bytes)."""
    resp = http_request(port, "GET", path, cookie=cookie, headers=headers)
    return {"path": path, "status": resp.status, "content_encoding": resp.header("content-encoding"),
            "body_bytes": len(resp.body), "content_type": resp.header("content-type")}


def measure_peers(settings, peers, control, workloads, paths):
    """Each workload on each of its peers in turn, `settings.rounds` times; medians."""
    runs = {(p.label, w[0]): [] for p in peers for w in workloads if p.label in w[6]}
    probes = {}
    for p in peers:
        p.reset()
        log(f"{p.label}: warm-up ({settings.warmup}s)")
        run_wrk(settings, p.port, "/", "get.lua", p.cookie, settings.warmup, f"peer-{p.label}-warmup")
    for round_no in range(settings.rounds):
        if settings.rounds > 1:
            log(f"peers: round {round_no + 1} of {settings.rounds}")
        for key, title, path, script, logged_in, browser, labels in workloads:
            path = paths.get(path, path)
            headers = BROWSER_HEADERS if browser else None
            for p in peers:
                if p.label not in labels:
                    continue
                p.reset()
                cookie = p.cookie if logged_in else None
                if script == "get.lua" and round_no == 0:
                    probes[(p.label, key)] = probe(p.port, path, cookie, headers)
                log(f"{p.label}: {title} for {settings.seconds}s")
                before = control.commandstats()
                r = run_wrk(settings, p.port, path, script, cookie, settings.seconds,
                            f"peer-{p.label}-{key}-{round_no}", p.pids, headers=headers)
                delta = commandstats_delta(before, control.commandstats())
                r["redis_commands"] = delta
                r["redis_commands_per_request"] = round(sum(delta.values()) / max(r["requests"], 1), 3)
                describe(title, r)
                log(f"     CPU per request: {p.label} {r['cpu_us_per_request'].get('app')} µs, Redis "
                    f"{r['cpu_us_per_request'].get('redis')} µs, wrk {r['cpu_us_per_request'].get('wrk')} µs; "
                    f"{r['bytes_per_request']:.0f} bytes per response")
                runs[(p.label, key)].append(r)
    out = {}
    for (label, key), rs in runs.items():
        merged = merge_rounds(rs)
        merged["path"] = paths.get(dict((w[0], w[2]) for w in workloads)[key], "/")
        merged["browser_headers"] = dict((w[0], w[5]) for w in workloads)[key]
        if (label, key) in probes:
            merged["probe"] = probes[(label, key)]
        out.setdefault(label, {})[key] = merged
    return out


# The req/s targets of the previous round of work (docs/PERFORMANCE.md): shop/floor
# and shop/Flask; kept as the CPU budget they imply, beside today's CPU targets.
FLOOR_TARGET, FLASK_TARGET = 0.8, 15


def cpu_budget(result, cores):
    """wrk, Redis and the server share the machine's cores, so a target's req/s is
    bounded by cores / (app + Redis + wrk CPU per request)."""
    cpu = result["cpu_us_per_request"]
    total = sum(cpu.get(k) or 0 for k in ("app", "redis", "wrk"))
    return {"total_us": round(total, 1), "bound_rps": round(cores * 1e6 / total) if total else None}


def app_cpu(result):
    return (result or {}).get("cpu_us_per_request", {}).get("app")


def ratio(a, b, digits=2):
    return round(a / b, digits) if a is not None and b else None


def cpu_ratio(a, b, digits=2):
    """a's CPU per request over b's: with several rounds, the median of the
    round-by-round ratios (each round's two runs were taken seconds apart, so a
    slow spell of the VM hits both), else the ratio of the two figures. Returns
    (ratio, [per round] or None)."""
    ra, rb = a.get("rounds"), b.get("rounds")
    if ra and rb and len(ra) == len(rb) and all("cpu_us_per_request" in x for x in ra + rb):
        per = [round(x["cpu_us_per_request"]["app"] / y["cpu_us_per_request"]["app"], digits)
               for x, y in zip(ra, rb) if y["cpu_us_per_request"].get("app")]
        if per:
            return round(statistics.median(per), digits), per
    return ratio(app_cpu(a), app_cpu(b), digits), None


def ratios(results, cores):
    shop, flask, floor = results["shop"], results.get("flask"), results.get("floor")
    out = {}
    for key in {k for label in results for k in results[label]}:
        if key not in shop:
            continue
        r = {"cpu_budget": {label: cpu_budget(results[label][key], cores) for label in results
                            if key in results[label]}}
        # What the shop's own CPU per request would have to be for a ratio target,
        # with Redis's and wrk's work per shop request as measured.
        shop_cpu = shop[key]["cpu_us_per_request"]
        shop_others = (shop_cpu.get("redis") or 0) + (shop_cpu.get("wrk") or 0)
        if floor and key in floor:
            r["shop_vs_floor_cpu"], r["shop_vs_floor_cpu_rounds"] = cpu_ratio(shop[key], floor[key])
            r["shop_vs_floor_rps"] = round(shop[key]["rps"] / floor[key]["rps"], 3)
            r["shop_vs_floor_p99"] = round(shop[key]["p99_ms"] / floor[key]["p99_ms"], 3)
            r["shop_app_us_for_floor_target"] = round(
                r["cpu_budget"]["floor"]["total_us"] / FLOOR_TARGET - shop_others, 1)
        if flask and key in flask:
            r["flask_vs_shop_cpu"], r["flask_vs_shop_cpu_rounds"] = cpu_ratio(flask[key], shop[key], 1)
            r["shop_vs_flask_rps"] = round(shop[key]["rps"] / flask[key]["rps"], 2)
            r["shop_vs_flask_p99"] = round(shop[key]["p99_ms"] / flask[key]["p99_ms"], 4)
            r["shop_app_us_for_flask_target"] = round(
                r["cpu_budget"]["flask"]["total_us"] / FLASK_TARGET - shop_others, 1)
        bare = key.removesuffix("_browser")
        if bare != key and bare in shop:
            r["browser_vs_bare_cpu"], r["browser_vs_bare_cpu_rounds"] = cpu_ratio(shop[key], shop[bare])
            r["browser_vs_bare_bytes"] = ratio(shop[key]["bytes_per_request"], shop[bare]["bytes_per_request"], 3)
        out[key] = r
    return out


def logged_in_home(settings, shop, control, file_name):
    """Logs in on `shop` with a fresh 3-item cart. Returns the session cookie, the
    home page it gets (also saved at run_dir/file_name: the body the floor sends)
    and the cart's Redis key (the key the floor reads)."""
    cookie = log_in(shop.port)
    reset_cart(shop.port, cookie)
    page = expect(http_request(shop.port, "GET", "/", cookie=cookie), (200,), f"{shop.name} GET /")
    body_file = os.path.join(settings.run_dir, file_name)
    with open(body_file, "wb") as f:
        f.write(page.body)
    return cookie, page, body_file, find_cart_key(control)


def run_peers(settings, procs, res, redis_port, redis_url, control):
    quick = getattr(settings, "quick", False)
    log("== peers: the shop" + ("" if quick else ", the Flask + Flask-Session peer") +
        ", the axum + fred floor (same Redis)")
    shop = Replica(settings, procs, "replica-peers", free_port(), redis_url)
    cookie, page, body_file, cart_key = logged_in_home(settings, shop, control, "shop-home.html")
    sid = cookie.split("=", 1)[1]
    paths = static_paths(page.body)
    if b'class="count">3<' not in page.body:
        raise SystemExit("the shop's page does not show a 3-item cart badge")
    # Before any workload: a logged-in session with no flash message pending.
    session_sizes = {"shop": control.call("MEMORY", "USAGE", sid), "shop_value": control.call("STRLEN", sid)}
    settings.session_value = control.call("GET", sid)

    peers = [Peer("shop", "storefront (axum, tower-sessions, fred), 1 process", shop.port, cookie,
                  lambda: reset_cart(shop.port, cookie), {"app": shop.pid, "redis": res["_redis_pid"]}, sid)]
    page_bytes = {"shop": len(page.body)}
    flask_proc = None
    if not quick:
        flask_proc, flask_port = start_flask(settings, procs, redis_url)
        flask_cookie = log_in(flask_port)
        reset_cart(flask_port, flask_cookie)
        flask_page = expect(http_request(flask_port, "GET", "/", cookie=flask_cookie), (200,), "flask GET /")
        if b'class="count">3<' not in flask_page.body:
            raise SystemExit("the Flask peer's page does not show a 3-item cart badge")
        flask_sid_key = f"flask:session:{flask_cookie.split('=', 1)[1]}"
        session_sizes.update(flask=control.call("MEMORY", "USAGE", flask_sid_key),
                             flask_value=control.call("STRLEN", flask_sid_key))
        page_bytes["flask"] = len(flask_page.body)
        peers.append(Peer("flask", f"Flask + Flask-Session, gunicorn {settings.flask_workers} workers x "
                          f"{settings.flask_threads} threads (gthread)", flask_port, flask_cookie,
                          lambda: reset_cart(flask_port, flask_cookie),
                          {"app": flask_proc.pid, "redis": res["_redis_pid"]}, flask_sid_key))

    floor_proc, floor_port = start_floor(settings, procs, redis_url, cart_key, body_file)

    def reset_floor():
        control.call("DEL", cart_key)
        control.call("HSET", cart_key, "1", "1", "2", "1", "3", "1")

    floor_page = expect(http_request(floor_port, "GET", "/", cookie=cookie), (200,), "floor GET /")
    if floor_page.body != page.body:
        raise SystemExit("the floor does not serve the shop's page")
    page_bytes["floor"] = len(floor_page.body)
    peers.append(Peer("floor", "floor: axum + fred, static body, one pipelined round trip", floor_port, cookie,
                      reset_floor, {"app": floor_proc.pid, "redis": res["_redis_pid"]}, sid))

    results = measure_peers(settings, peers, control, QUICK_WORKLOADS if quick else PEER_WORKLOADS, paths)
    rss = {"shop": memory_kb(shop.pid), "floor": memory_kb(floor_proc.pid)}
    if flask_proc is not None:
        rss["flask"] = flask_rss(flask_proc.pid)
    out = {
        "targets": {p.label: p.title for p in peers},
        "browser_headers": BROWSER_HEADERS,
        "static_paths": paths,
        "workloads": results,
        "ratios": ratios(results, res["machine"]["nproc"]),
        "rss": rss,
        "page_bytes": page_bytes,
        "session_key_bytes": session_sizes,
        "cart_key": cart_key,
    }
    if flask_proc is not None:
        out["flask"] = {
            "workers": settings.flask_workers, "threads": settings.flask_threads, "worker_class": "gthread",
            "requirements": open(os.path.join(ROOT, "bench", "flask", "requirements.txt")).read().split("\n")}
        procs.stop(flask_proc)
    procs.stop(floor_proc)
    res["peers"] = out
    return shop, cookie, floor_port_holder(settings, procs, redis_url, cart_key, body_file)


def floor_port_holder(settings, procs, redis_url, cart_key, body_file):
    """What the connection curve needs to start the floor again."""
    return lambda: start_floor(settings, procs, redis_url, cart_key, body_file)


def flask_rss(master_pid):
    """RSS of gunicorn's master and workers, summed."""
    total = memory_kb(master_pid)["rss_kb"] or 0
    try:
        for task in os.listdir(f"/proc/{master_pid}/task"):
            with open(f"/proc/{master_pid}/task/{task}/children") as f:
                for child in f.read().split():
                    total += memory_kb(int(child))["rss_kb"] or 0
    except FileNotFoundError:
        pass
    return {"rss_kb": total}


# ------------------------------------------------------------------ connection curve

def connection_curve(settings, procs, res, shop, cookie, start_floor_again):
    conns = int_list("BENCH_CURVE_CONNECTIONS", CURVE_CONNECTIONS)
    seconds = settings.curve_seconds
    log(f"== connection curve: logged-in GET / at {', '.join(map(str, conns))} connections, {seconds}s each")
    reset_cart(shop.port, cookie)
    targets = [("shop", shop.port, {"app": shop.pid, "redis": res["_redis_pid"]})]
    floor_proc = None
    if settings.curve_floor:
        floor_proc, floor_port = start_floor_again()
        targets.append(("floor", floor_port, {"app": floor_proc.pid, "redis": res["_redis_pid"]}))
    curve = {label: [] for label, *_ in targets}
    for c in conns:
        for label, port, pids in targets:
            log(f"{label}: GET / (logged in) at {c} connections for {seconds}s")
            r = run_wrk(settings, port, "/", "get.lua", cookie, seconds, f"curve-{label}-{c}", pids, connections=c)
            log(f"  -> {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
                f"p99.9 {r['p99_9_ms']:.2f} ms, errors {r['errors']}, other load {r['other_load_percent']}%")
            curve[label].append({k: r[k] for k in ("connections", "rps", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms",
                                                   "max_ms", "errors", "error_detail", "cpu_us_per_request",
                                                   "other_load_percent")})
    if floor_proc is not None:
        procs.stop(floor_proc)
    res["connection_curve"] = {"workload": "GET / (logged in, 3-item cart)", "seconds": seconds,
                               "threads": f"min({settings.threads}, connections)", "targets": curve}


# ------------------------------------------------------------------ Redis memory at scale

FILL_BATCH = 100_000
# ARGV: first index, count, session value, expiry (unix seconds).
FILL_SESSIONS = """
local first, count = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = first, first + count - 1 do
  redis.call('SET', string.format('s%021d', i), ARGV[3], 'EXAT', ARGV[4])
end
return count
"""
# ARGV: first index, count, key prefix, key suffix, TTL, lines: 1 writes line 1
# and the TTL, 3 adds lines 2 and 3.
FILL_CARTS = """
local first, count = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = first, first + count - 1 do
  local key = ARGV[3] .. (1000000 + i) .. ARGV[4]
  if ARGV[6] == '1' then
    redis.call('HSET', key, '1', '1')
    redis.call('EXPIRE', key, ARGV[5])
  else
    redis.call('HSET', key, '2', '1', '3', '1')
  end
end
return count
"""


def memory_scale(settings, res, redis_port, sid, cart_key):
    levels = int_list("BENCH_MEMORY_LEVELS", MEMORY_LEVELS)
    conn = Redis(redis_port, timeout=120)
    value = getattr(settings, "session_value", None) or conn.call("GET", sid)
    # The cart key with another user id in it: `cart:user:1` -> `cart:user:<n>`.
    m = re.search(r"\d+(?!.*\d)", cart_key)
    prefix, suffix = (cart_key[:m.start()], cart_key[m.end():]) if m else (cart_key + ":", "")
    conn.call("SELECT", 9)
    out = []
    deadline = int(time.time()) + 3600
    for n in levels:
        conn.call("FLUSHDB")
        time.sleep(0.2)
        used = lambda: int(conn.info("memory")["used_memory"])  # noqa: E731
        log(f"Redis memory: {n} sessions (database 9), then a 1-line cart each, then 2 more lines each")
        started = time.monotonic()
        base = used()
        # Written by Lua scripts in batches (database 9 of a standalone Redis, bench
        # only): far faster than sending 1M commands from Python. Session ids are
        # 22 characters like tower-sessions' own; cart keys are the shop's cart key
        # with user ids from 1,000,000 up.
        for start in range(0, n, FILL_BATCH):
            count = min(FILL_BATCH, n - start)
            conn.call("EVAL", FILL_SESSIONS, 0, start, count, value, deadline)
        after_sessions = used()
        for start in range(0, n, FILL_BATCH):
            count = min(FILL_BATCH, n - start)
            conn.call("EVAL", FILL_CARTS, 0, start, count, prefix, suffix, 30 * 86400, 1)
        after_one_line = used()
        for start in range(0, n, FILL_BATCH):
            count = min(FILL_BATCH, n - start)
            conn.call("EVAL", FILL_CARTS, 0, start, count, prefix, suffix, 30 * 86400, 3)
        after_three_lines = used()
        first_cart = f"{prefix}1000000{suffix}"
        dbsize = conn.call("DBSIZE")
        if dbsize != 2 * n:
            raise SystemExit(f"Redis memory: expected {2 * n} keys in database 9, found {dbsize}")
        encoding = conn.call("OBJECT", "ENCODING", first_cart).decode()
        conn.call("FLUSHDB")
        row = {
            "sessions": n,
            "keys": dbsize,
            "session_value_bytes": len(value),
            "used_memory_sessions_bytes": after_sessions - base,
            "per_session_bytes": round((after_sessions - base) / n, 1),
            "per_cart_with_one_line_bytes": round((after_one_line - after_sessions) / n, 1),
            "per_extra_cart_line_bytes": round((after_three_lines - after_one_line) / (2 * n), 1),
            "per_session_with_3_line_cart_bytes": round((after_three_lines - base) / n, 1),
            "total_mib_sessions_and_carts": round((after_three_lines - base) / 2**20, 1),
            "cart_encoding": encoding,
            "fill_seconds": round(time.monotonic() - started, 1),
        }
        log(f"  -> per session {row['per_session_bytes']} B, cart with 1 line {row['per_cart_with_one_line_bytes']} B, "
            f"each further line {row['per_extra_cart_line_bytes']} B; {row['total_mib_sessions_and_carts']} MiB "
            f"in all ({row['fill_seconds']}s)")
        out.append(row)
    conn.close()
    res["memory_scale"] = {
        "how": "database 9 emptied, N copies of the real logged-in session value (SET .. EXAT, 22-character keys), "
               "then N cart hashes with one line (HSET + EXPIRE), then 2 more lines each, written by Lua scripts in "
               "batches of 100k; INFO memory used_memory deltas divided by N",
        "cart_key_template": f"{prefix}<n>{suffix}",
        "levels": out,
    }


# ------------------------------------------------------------------ nginx keep-alive

def without_keepalive(template):
    """The nginx template as it was first shipped: no idle connections
    kept to the replicas (the upstream block's keepalive lines gone),
    `Connection: close` on every proxied request."""
    start = template.index("upstream storefront {")
    end = template.index("\n    }", start)
    block = template[start:end]
    kept = [line for line in block.splitlines()
            if not re.match(r"\s*keepalive(_timeout|_requests)?\s+\S+;", line)]
    closed = template[:start] + "\n".join(kept) + template[end:]
    closed = closed.replace('proxy_set_header Connection "";', "proxy_set_header Connection close;")
    if len(kept) != len(block.splitlines()) - 3 or closed.count("proxy_set_header Connection close;") != 1:
        raise SystemExit("nginx A/B: the template's keepalive lines were not where expected")
    return closed


def nginx_keepalive(settings, procs, res, redis_url):
    """nginx + 3 replicas, keep-alive (shipped) against Connection: close (before),
    alternating, `BENCH_NGINX_ROUNDS` rounds (2); each workload `settings.seconds`."""
    rounds = env_int("BENCH_NGINX_ROUNDS", 2)
    if rounds < 1:
        return
    shipped = nginx_template()
    variants = [("keepalive", shipped), ("close", without_keepalive(shipped))]
    log(f"== nginx + 3 replicas: keep-alive (shipped template) vs Connection: close, {rounds} alternating rounds")
    # Like scripts/cluster: the 3 replicas share the host's cores.
    replicas = [Replica(settings, procs, f"lb-replica-{i + 1}", free_port(), redis_url, shared_host_env(3))
                for i in range(3)]
    runs = {(name, key): [] for name, _ in variants for key, *_ in LB_WORKLOADS}
    try:
        for round_no in range(rounds):
            for name, template in (variants if round_no % 2 == 0 else variants[::-1]):
                nginx, port = start_nginx(settings, procs, [r.port for r in replicas], template, f"nginx-{name}")
                cookie = log_in(port)
                run_wrk(settings, port, "/", "get.lua", cookie, settings.warmup, f"lb-{name}-{round_no}-warm")
                pids = {r.name: r.pid for r in replicas}
                pids.update(nginx=nginx.pid, redis=res["_redis_pid"])
                for key, title, path, script, *_ in LB_WORKLOADS:
                    reset_cart(port, cookie)
                    log(f"nginx ({name}), round {round_no + 1}: {title} for {settings.seconds}s")
                    r = run_wrk(settings, port, path, script, cookie, settings.seconds,
                                f"lb-{name}-{key}-{round_no}", pids)
                    describe(title, r)
                    runs[(name, key)].append(r)
                procs.stop(nginx, signal.SIGQUIT)
    finally:
        for r in replicas:
            procs.stop(r.proc)
    out = {name: {key: merge_rounds(runs[(name, key)]) for key, *_ in LB_WORKLOADS} for name, _ in variants}
    res["nginx_keepalive"] = {
        "replicas": 3, "rounds": rounds,
        "replica_env": shared_host_env(3),
        "how": "the same 3 replicas behind nginx started from the shipped template, then from the same "
               "template without its keepalive lines and with `Connection: close` (the template as first "
               "shipped), alternating; merged rounds",
        "workloads": out,
        "ratio_keepalive_vs_close_rps": {key: round(out["keepalive"][key]["rps"] / out["close"][key]["rps"], 3)
                                         for key, *_ in LB_WORKLOADS},
    }


# ------------------------------------------------------------------ allocator A/B

def allocator_ab(settings, procs, res, redis_url):
    other = os.environ.get("BENCH_AB_BINARY", "")
    if not other:
        return
    env_b = dict(item.split("=", 1) for item in os.environ.get("BENCH_AB_ENV", "").split() if "=" in item)
    variants = [("A", settings.binary, {}), ("B", os.path.abspath(other), env_b)]
    rounds = env_int("BENCH_AB_ROUNDS", 3)
    logins = env_int("BENCH_AB_LOGINS", 30)
    seconds = settings.seconds
    log(f"== allocator A/B: A={settings.binary}, B={other} {env_b or ''}; {rounds} alternating rounds: "
        f"{logins} logins, then GET / (logged in) for {seconds}s")
    rows = {"A": [], "B": []}
    for round_no in range(rounds):
        for name, binary, extra in (variants if round_no % 2 == 0 else variants[::-1]):
            replica = Replica(settings, procs, f"ab-{name}-{round_no}", free_port(), redis_url, extra, binary)
            rss_start = memory_kb(replica.pid)["rss_kb"]
            for _ in range(logins):
                cookie = log_in(replica.port)
            time.sleep(0.5)
            rss_logins = memory_kb(replica.pid)
            reset_cart(replica.port, cookie)
            run_wrk(settings, replica.port, "/", "get.lua", cookie, settings.warmup, f"ab-{name}-{round_no}-warm")
            r = run_wrk(settings, replica.port, "/", "get.lua", cookie, seconds, f"ab-{name}-{round_no}",
                        {"app": replica.pid})
            rss_end = memory_kb(replica.pid)
            procs.stop(replica.proc)
            row = {"round": round_no + 1, "rps": r["rps"], "p99_ms": r["p99_ms"], "errors": r["errors"],
                   "rss_start_mb": round(rss_start / 1024, 1),
                   "rss_after_logins_mb": round(rss_logins["rss_kb"] / 1024, 1),
                   "rss_after_run_mb": round(rss_end["rss_kb"] / 1024, 1),
                   "peak_rss_mb": round(rss_end["peak_rss_kb"] / 1024, 1),
                   "app_cpu_us_per_request": r["cpu_us_per_request"].get("app"),
                   "other_load_percent": r["other_load_percent"]}
            log(f"  {name} round {round_no + 1}: {row['rps']:.0f} req/s, p99 {row['p99_ms']:.2f} ms, "
                f"{row['app_cpu_us_per_request']} µs CPU/req; RSS after "
                f"{logins} logins {row['rss_after_logins_mb']} MB, after the run {row['rss_after_run_mb']} MB")
            rows[name].append(row)
    med = statistics.median
    summary = {name: {"rps": round(med(r["rps"] for r in rs), 1),
                      "app_cpu_us_per_request": med(r["app_cpu_us_per_request"] or 0 for r in rs),
                      "rss_after_logins_mb": round(med(r["rss_after_logins_mb"] for r in rs), 1),
                      "rss_after_run_mb": round(med(r["rss_after_run_mb"] for r in rs), 1)}
               for name, rs in rows.items()}
    res["allocator_ab"] = {"A": settings.binary, "B": os.path.abspath(other), "B_env": env_b, "logins": logins,
                           "seconds": seconds, "rounds": rows, "medians": summary,
                           "rps_ratio_B_vs_A": round(summary["B"]["rps"] / summary["A"]["rps"], 3)}


# ------------------------------------------------------------------ entry point and report

def run_peer_phases(settings, procs, res, redis_proc, redis_port, redis_url, control):
    res["_redis_pid"] = redis_proc.pid
    if os.environ.get("BENCH_AB_ONLY") == "1":
        allocator_ab(settings, procs, res, redis_url)
        res.pop("_redis_pid", None)
        return
    if os.environ.get("BENCH_NGINX_ONLY") == "1":
        nginx_keepalive(settings, procs, res, redis_url)
        res.pop("_redis_pid", None)
        return
    try:
        shop, cookie, start_floor_again = run_peers(settings, procs, res, redis_port, redis_url, control)
        if getattr(settings, "quick", False):
            procs.stop(shop.proc)
            return
        connection_curve(settings, procs, res, shop, cookie, start_floor_again)
        nginx_keepalive(settings, procs, res, redis_url)
        rss = memory_kb(shop.pid)
        res["peers"]["rss"]["shop_after_curve"] = rss
        sid = cookie.split("=", 1)[1]
        cart_key = res["peers"]["cart_key"]
        procs.stop(shop.proc)
        memory_scale(settings, res, redis_port, sid, cart_key)
        allocator_ab(settings, procs, res, redis_url)
    finally:
        res.pop("_redis_pid", None)


def app_bound(us):
    if us is None:
        return "(not measured)"
    if us <= 0:
        return "below zero (Redis's and wrk's work per shop request alone exceed the budget)"
    return f"<= {us} µs"


def peer_targets(res):
    """The targets of the CPU-per-request work, from a --peers (or --quick) run:
    each with what was wanted, what was measured and PASS/MISS; a target whose
    inputs this run did not measure is left out."""
    out = []

    def add(name, wanted, measured, ok, note=""):
        if measured is not None:
            out.append({"target": name, "wanted": wanted, "measured": measured, "pass": bool(ok), "note": note})

    p = res.get("peers")
    if not p:
        return out
    w, r = p["workloads"], p["ratios"]
    shop, floor, flask = w["shop"], w.get("floor", {}), w.get("flask", {})

    def cpu_note(key, *labels):
        return ", ".join(f"{label} {app_cpu(w[label][key]):.1f} µs" for label in labels
                         if key in w.get(label, {}) and app_cpu(w[label][key]) is not None)

    def rounds_note(key, field):
        per = r.get(key, {}).get(field + "_rounds")
        return f"; median of the rounds' ratios {per}" if per else ""

    for key, title in (("get_home_user", "logged-in GET /"), ("post_cart_add", "POST /cart/add")):
        v = r.get(key, {}).get("shop_vs_floor_cpu")
        add(f"{title}: shop CPU/req vs the floor's", "<= 1.5x", v, v is not None and v <= 1.5,
            cpu_note(key, "shop", "floor") + rounds_note(key, "shop_vs_floor_cpu"))
    v = r.get("get_home_user", {}).get("flask_vs_shop_cpu")
    add("logged-in GET /: Flask CPU/req vs the shop's", ">= 30x", v, v is not None and v >= 30,
        cpu_note("get_home_user", "flask", "shop") + rounds_note("get_home_user", "flask_vs_shop_cpu") +
        (f"; POST /cart/add: {r['post_cart_add'].get('flask_vs_shop_cpu')}x" if "post_cart_add" in r else ""))
    v = r.get("get_home_user", {}).get("shop_vs_flask_p99")
    if v is not None:
        add("logged-in GET /: shop p99 vs Flask's", "<= 0.1", v, v <= 0.1,
            f"shop {shop['get_home_user']['p99_ms']:.2f} ms, Flask {flask['get_home_user']['p99_ms']:.2f} ms")
    v = r.get("get_home_user_browser", {}).get("browser_vs_bare_cpu")
    if v is not None:
        b = shop["get_home_user_browser"]
        add("logged-in GET / with browser headers: CPU/req vs the same page bare", "<= 1.5x", v, v <= 1.5,
            f"{app_cpu(b):.1f} vs {app_cpu(shop['get_home_user']):.1f} µs; "
            f"{b['bytes_per_request']:.0f} vs {shop['get_home_user']['bytes_per_request']:.0f} bytes per response"
            f" ({(b.get('probe') or {}).get('content_encoding') or 'not compressed'})" +
            rounds_note("get_home_user_browser", "browser_vs_bare_cpu"))
    css = shop.get("get_stylesheet_browser")
    if css:
        add("stylesheet with Accept-Encoding: CPU/req", "<= 30 µs", app_cpu(css), (app_cpu(css) or 1e9) <= 30,
            f"{(css.get('probe') or {}).get('content_encoding') or 'not compressed'}, "
            f"{css['bytes_per_request']:.0f} bytes per response; without Accept-Encoding "
            f"{app_cpu(shop['get_stylesheet']):.1f} µs" if "get_stylesheet" in shop else "")
    lb = res.get("nginx_keepalive", {}).get("workloads", {}).get("keepalive", {}).get("get_home_user")
    if lb and "get_home_user" in shop:
        v = round(lb["rps"] / shop["get_home_user"]["rps"], 3)
        errors = sum(x["errors"] for x in res["nginx_keepalive"]["workloads"]["keepalive"].values())
        add("nginx + 3 replicas vs one replica direct: req/s, logged-in GET /", ">= 0.5x, 0 errors", v,
            v >= 0.5 and errors == 0,
            f"{lb['rps']:.0f} vs {shop['get_home_user']['rps']:.0f} req/s; errors through nginx: {errors}")
    # After the peer workloads (32 connections), as the standard phases measure it;
    # the connection curve's 512 connections leave their buffers behind (noted).
    rss, curve = p["rss"].get("shop"), p["rss"].get("shop_after_curve")
    if rss and rss.get("rss_kb"):
        mb = round(rss["rss_kb"] / 1024, 1)
        note = f"peak {rss['peak_rss_kb'] / 1024:.1f} MB" if rss.get("peak_rss_kb") else ""
        if curve and curve.get("rss_kb"):
            note += (f"; after the connection curve (up to 512 connections) {curve['rss_kb'] / 1024:.1f} MB, "
                     f"peak {curve['peak_rss_kb'] / 1024:.1f} MB")
        add("the shop's RSS after the peer workloads", "<= 30 MB", mb, mb <= 30, note)
    return out


def print_targets(targets, heading):
    if not targets:
        return
    print()
    print(heading)
    for t in targets:
        print(f"{'PASS' if t['pass'] else 'MISS'}  {t['target']}: {fmt(t['measured'])} (wanted {t['wanted']})" +
              (f" — {t['note']}" if t["note"] else ""))


def print_peers_table(res):
    p = res["peers"]
    print()
    print(f"peers — same Redis, one after the other, wrk -t{res['settings']['threads']} "
          f"-c{res['settings']['connections']}, {res['settings']['seconds']}s each"
          f"{' x ' + str(res['settings']['rounds']) + ' rounds (medians)' if res['settings']['rounds'] > 1 else ''}"
          f"{'; pinned: servers on core 0, wrk and Redis on core 1' if res['settings'].get('pinned') else ''}; "
          f"browser headers: cookie + " + ", ".join(f"{k}: {v}" for k, v in p.get("browser_headers", {}).items()))
    header = ("workload", "target", "req/s", "p50 ms", "p99 ms", "errors", "Redis cmd/req", "CPU µs/req",
              "Redis µs", "wrk µs", "bytes/resp", "encoding", "other load")
    rows = []
    for key, title, *_ in PEER_WORKLOADS:
        first = True
        for label in ("shop", "floor", "flask"):
            r = p["workloads"].get(label, {}).get(key)
            if not r:
                continue
            cpu = r["cpu_us_per_request"]
            rows.append((title if first else "", label, fmt(r["rps"], 0), fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                         str(r["errors"]), fmt(r["redis_commands_per_request"]), fmt(cpu.get("app"), 1),
                         fmt(cpu.get("redis"), 1), fmt(cpu.get("wrk"), 1), fmt(r.get("bytes_per_request"), 0),
                         (r.get("probe") or {}).get("content_encoding") or ("-" if "probe" in r else ""),
                         f"{r['other_load_percent']:.0f}%"))
            first = False
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(c).ljust(widths[i]) if i in (0, 1, 11) else str(c).rjust(widths[i])
                        for i, c in enumerate(row)))
    print("CPU per request of the server's own processes (utime + stime from /proc during the timed run, "
          "divided by the requests); bytes per response as read by wrk, headers included")
    for key, title, *_ in PEER_WORKLOADS:
        r = p["ratios"].get(key)
        if not r:
            continue
        parts = []
        if r.get("shop_vs_floor_cpu") is not None:
            parts.append(f"shop/floor CPU {r['shop_vs_floor_cpu']}x, req/s {r['shop_vs_floor_rps']}")
        if r.get("flask_vs_shop_cpu") is not None:
            parts.append(f"Flask/shop CPU {r['flask_vs_shop_cpu']}x, shop/Flask req/s {r['shop_vs_flask_rps']}, "
                         f"p99 {r['shop_vs_flask_p99']}")
        if r.get("browser_vs_bare_cpu") is not None:
            parts.append(f"browser/bare CPU {r['browser_vs_bare_cpu']}x, bytes {r['browser_vs_bare_bytes']}x")
        if parts:
            print(f"  {title}: " + "; ".join(parts))
    print("RSS: " + ", ".join(f"{k} {v['rss_kb'] / 1024:.1f} MB" for k, v in p["rss"].items()) +
          "; session key (MEMORY USAGE): " + ", ".join(
              f"{k} {p['session_key_bytes'][k]} B" for k in ("shop", "flask") if k in p["session_key_bytes"]))


def print_peer_phases(res):
    if "peers" in res:
        print_peers_table(res)
    if "connection_curve" in res:
        c = res["connection_curve"]
        print()
        print(f"connection curve — {c['workload']}, {c['seconds']}s per point")
        for label, points in c["targets"].items():
            for pt in points:
                print(f"  {label:5} {pt['connections']:4} conn: {pt['rps']:8.0f} req/s  p50 {pt['p50_ms']:7.2f}  "
                      f"p99 {pt['p99_ms']:7.2f}  p99.9 {pt['p99_9_ms']:7.2f} ms  errors {pt['errors']}  "
                      f"other load {pt['other_load_percent']:.0f}%")
    if "nginx_keepalive" in res:
        n = res["nginx_keepalive"]
        print()
        print(f"nginx + {n['replicas']} replicas — keep-alive to the replicas vs Connection: close "
              f"({n['rounds']} alternating rounds, merged)")
        for key, title, *_ in LB_WORKLOADS:
            for name in ("keepalive", "close"):
                r = n["workloads"][name][key]
                cpu = r["cpu_us_per_request"]
                per_process = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
                print(f"  {title:32} {name:9} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f}  p99 {r['p99_ms']:6.2f} ms"
                      f"  errors {r['errors']}; CPU µs/req: {per_process}")
            print(f"  {title}: keep-alive / close req/s {n['ratio_keepalive_vs_close_rps'][key]} (target >= 2)")
    if "memory_scale" in res:
        print()
        print("Redis memory at scale (used_memory deltas)")
        for row in res["memory_scale"]["levels"]:
            print(f"  {row['sessions']:>8} sessions: {row['per_session_bytes']} B/session, "
                  f"{row['per_cart_with_one_line_bytes']} B/cart with 1 line, {row['per_extra_cart_line_bytes']} B per "
                  f"further line; {row['total_mib_sessions_and_carts']} MiB with 3-line carts")
    if "allocator_ab" in res:
        a = res["allocator_ab"]
        print()
        print(f"allocator A/B ({len(a['rounds']['A'])} alternating rounds): B/A req/s {a['rps_ratio_B_vs_A']}")
        for name in ("A", "B"):
            m = a["medians"][name]
            print(f"  {name}: {m['rps']:.0f} req/s, {m.get('app_cpu_us_per_request')} µs CPU/req, "
                  f"RSS after {a['logins']} logins {m['rss_after_logins_mb']} MB, "
                  f"after the run {m['rss_after_run_mb']} MB  ({a[name]})")
    print()
