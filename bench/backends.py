"""The benchmark on other backends, run by bench/run.py for `scripts/bench
--db postgres`, `--redis sentinel|cluster` and `--backends`:

- Postgres instead of SQLite for users and products: `initdb` into a temporary
  directory, the server on a free loopback port, one database per backend.
- Redis Sentinel instead of one redis-server: a primary, a replica and three
  sentinels (`redis-sentinel://` URL: the shop asks the sentinels for the primary).
- Redis Cluster: three primaries, no replicas, `redis-cli --cluster create`
  (`redis-cluster://` URL).

For each backend: one release replica, the MONITOR trace of every workload (one
request at a time), then logged-in GET / and POST /cart/add under wrk, then 20
logins one at a time. Redis commands are counted on every data node and summed:
the one server, the Sentinel primary (what reaches the replica is replication,
not the shop's commands), all three cluster primaries. Every server listens on
127.0.0.1 only, is polled until it answers, and is stopped when the run ends.
"""

import argparse
import os
import shutil
import signal
import subprocess
import tempfile

from resp import Redis, RedisError
from harness import (
    WORKLOADS, Replica, Target, fmt, free_port, log, log_in, login_cost, measure_workloads, migrate,
    reset_cart, trace_workloads, wait_until,
)

DATABASES = ("sqlite", "postgres")
REDIS_KINDS = ("single", "sentinel", "cluster")
# `--backends` without a list: every Redis kind on SQLite, Postgres beside SQLite
# on one server, and the two distributed engines together.
DEFAULT_MATRIX = ("sqlite+single", "postgres+single", "sqlite+sentinel", "sqlite+cluster", "postgres+cluster")
BACKEND_WORKLOADS = [w for w in WORKLOADS if w[0] in ("get_home_user", "post_cart_add")]
SENTINEL_SERVICE = "shop"
# Commands a data node gets from the topology or from this script, not from the
# shop: the sentinels' hello messages (PUBLISH) and health checks, the replica's
# acknowledgements (REPLCONF), INFO and MONITOR from here.
HOUSEKEEPING = {"publish", "replconf", "psync", "sync", "ping", "info", "monitor", "select", "memory", "client"}


def parse_backends(text):
    """"sqlite+single postgres+cluster" (or "all") -> [("sqlite", "single"), ...]."""
    names = DEFAULT_MATRIX if text.strip() in ("", "all", "1") else text.replace(",", " ").split()
    out = []
    for name in names:
        db, _, kind = name.partition("+")
        if db not in DATABASES or kind not in REDIS_KINDS:
            raise SystemExit(f"unknown backend {name!r}: DB+REDIS, DB one of {DATABASES}, REDIS one of {REDIS_KINDS}")
        out.append((db, kind))
    return out


# ------------------------------------------------------------------ Postgres

def postgres_bin():
    """The newest /usr/lib/postgresql/<version>/bin (Debian's layout), else PATH."""
    root = "/usr/lib/postgresql"
    versions = sorted((d for d in os.listdir(root) if d.isdigit()), key=int) if os.path.isdir(root) else []
    if versions:
        return os.path.join(root, versions[-1], "bin")
    found = shutil.which("pg_ctl")
    if not found:
        raise SystemExit("Postgres is not installed (scripts/bench installs the postgresql package)")
    return os.path.dirname(found)


class Postgres:
    """One server for the whole run, on a free loopback port, trust authentication,
    Debian's default settings (fsync on). Its data directory is a temporary one the
    postgres user can reach (as root, Postgres runs as that user: it refuses root);
    removed by stop()."""

    def __init__(self, settings, procs):
        self.bin = postgres_bin()
        self.procs = procs
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="storefront-bench-pg.")
        self.as_pg = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            # setpriv execs Postgres itself (no watching parent in between) and
            # keeps the parent-death signal that a change of user would clear.
            self.as_pg = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig", "keep"]
        data = os.path.join(self.dir, "data")
        log(f"postgres: initdb, then listening on 127.0.0.1:{self.port}")
        init = subprocess.run(self.as_pg + [os.path.join(self.bin, "initdb"), "-D", data, "-U", "postgres",
                                            "--auth=trust", "-E", "UTF8", "--no-sync"],
                              cwd=self.dir, capture_output=True, text=True)
        if init.returncode != 0:
            raise SystemExit(f"initdb failed:\n{init.stdout}{init.stderr}")
        self.logfile = os.path.join(settings.run_dir, "postgres.log")
        self.proc = procs.start("postgres", self.as_pg + [
            os.path.join(self.bin, "postgres"), "-D", data, "-p", str(self.port), "-k", self.dir,
            "-c", "listen_addresses=127.0.0.1"], self.logfile, cwd=self.dir)
        wait_until(self.ready, "postgres", proc=self.proc, logfile=self.logfile)

    def ready(self):
        return subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0

    def version(self):
        out = subprocess.run([os.path.join(self.bin, "postgres"), "--version"], capture_output=True, text=True)
        return out.stdout.strip()

    def create_database(self, name):
        subprocess.run([os.path.join(self.bin, "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        name], check=True, capture_output=True)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        self.procs.stop(self.proc, signal.SIGINT)  # fast shutdown: clients cut, no waiting for them
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ Redis topologies

def ping(port):
    conn = Redis(port, timeout=1)
    try:
        return conn.call("PING") == "PONG"
    finally:
        conn.close()


def info_field(port, section, field):
    conn = Redis(port, timeout=1)
    try:
        return conn.info(section).get(field)
    finally:
        conn.close()


class RedisTopology:
    """The Redis processes of one backend. `data` are the nodes the shop's
    commands land on (counted); `others` the replica and the sentinels. As a
    Target's `redis`, commandstats() sums every data node."""

    def __init__(self, settings, procs, kind, tag):
        self.settings, self.procs, self.kind, self.tag = settings, procs, kind, tag
        self.data, self.others = [], []  # (name, port, Popen)
        self.controls = []

    def start_server(self, name, port, extra=(), group=None):
        logfile = os.path.join(self.settings.run_dir, f"{name}.log")
        proc = self.procs.start(name, [
            "redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", self.settings.run_dir, "--logfile", "", "--daemonize", "no", *extra], logfile)
        (self.data if group is None else group).append((name, port, proc))
        wait_until(lambda: ping(port), name, proc=proc, logfile=logfile)
        return port

    def start_sentinel(self, name, primary_port):
        port = free_port()
        conf = os.path.join(self.settings.run_dir, f"{name}.conf")  # sentinels rewrite their own file
        with open(conf, "w") as f:
            f.write(f"bind 127.0.0.1\nport {port}\ndir {self.settings.run_dir}\n"
                    f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary_port} 2\n"
                    f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n"
                    f"sentinel failover-timeout {SENTINEL_SERVICE} 5000\n")
        logfile = os.path.join(self.settings.run_dir, f"{name}.log")
        proc = self.procs.start(name, ["redis-server", conf, "--sentinel"], logfile)
        self.others.append((name, port, proc))
        wait_until(lambda: ping(port), name, proc=proc, logfile=logfile)
        return port

    @classmethod
    def start(cls, settings, procs, kind, tag):
        self = cls(settings, procs, kind, tag)
        log(f"redis ({kind}): starting")
        if kind == "single":
            port = self.start_server(f"redis-{tag}", free_port())
            self.url = f"redis://127.0.0.1:{port}/0"
        elif kind == "sentinel":
            primary = self.start_server(f"redis-{tag}-primary", free_port())
            replica = self.start_server(f"redis-{tag}-replica", free_port(),
                                        ["--replicaof", "127.0.0.1", str(primary)], group=self.others)
            sentinels = [self.start_sentinel(f"redis-{tag}-sentinel-{i + 1}", primary) for i in range(3)]
            wait_until(lambda: info_field(replica, "replication", "master_link_status") == "up",
                       "the replica in sync")
            # Every sentinel knows the replica and the two others (they meet through
            # the primary's hello channel every 2 s): the topology as in production.
            for port in sentinels:
                wait_until(lambda: self.sentinel_settled(port), f"sentinel on {port} settled", timeout=30)
            self.url = (f"redis-sentinel://127.0.0.1:{sentinels[0]}/0?sentinelServiceName={SENTINEL_SERVICE}" +
                        "".join(f"&node=127.0.0.1:{p}" for p in sentinels[1:]))
        elif kind == "cluster":
            ports = [self.start_server(f"redis-{tag}-{i + 1}", free_port(), [
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{tag}-{i + 1}.conf",
                # The bus port too (port + 10000 by default, past 65535 for a high free port).
                "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000"]) for i in range(3)]
            made = subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                                   "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True)
            if made.returncode != 0:
                raise SystemExit(f"redis-cli --cluster create failed:\n{made.stdout}{made.stderr}")
            for port in ports:
                wait_until(lambda: info_cluster_ok(port), f"cluster state ok on {port}")
            self.url = f"redis-cluster://127.0.0.1:{ports[0]}?" + "&".join(f"node=127.0.0.1:{p}" for p in ports[1:])
        else:
            raise ValueError(kind)
        self.controls = [Redis(port) for _, port, _ in self.data]
        # Every client of a data node now is the topology's (the replica's link, the
        # sentinels) or this script's: none of their commands is the shop's.
        self.foreign = {port: client_addresses(conn) for (_, port, _), conn in zip(self.data, self.controls)}
        return self

    @staticmethod
    def sentinel_settled(port):
        conn = Redis(port, timeout=1)
        try:
            reply = conn.call("SENTINEL", "MASTER", SENTINEL_SERVICE)
        finally:
            conn.close()
        fields = {reply[i].decode(): reply[i + 1].decode() for i in range(0, len(reply) - 1, 2)}
        return fields.get("num-other-sentinels") == "2" and fields.get("num-slaves") == "1"

    @property
    def data_ports(self):
        return [port for _, port, _ in self.data]

    def pids(self):
        """Every Redis process of the backend, for CpuMeter ("redis…" names)."""
        return {f"redis:{name}": proc.pid for name, _, proc in self.data + self.others}

    def commandstats(self):
        """{command: calls} summed over the data nodes, the topology's own traffic left out."""
        total = {}
        for conn in self.controls:
            for cmd, calls in conn.commandstats().items():
                if cmd.split("|")[0] not in HOUSEKEEPING:
                    total[cmd] = total.get(cmd, 0) + calls
        return total

    def keys_per_node(self):
        return {name: conn.call("DBSIZE") for (name, _, _), conn in zip(self.data, self.controls)}

    def node_of(self, key):
        """The data node that holds `key` (on a cluster: the primary of its slot)."""
        found = []
        for (name, _, _), conn in zip(self.data, self.controls):
            try:
                if conn.call("EXISTS", key) == 1:
                    found.append(name)
            except RedisError:  # MOVED: another primary's slot
                pass
        return found[0] if len(found) == 1 else None

    def stop(self):
        for conn in self.controls:
            conn.close()
        for _, _, proc in reversed(self.data + self.others):
            self.procs.stop(proc)


def info_cluster_ok(port):
    conn = Redis(port, timeout=1)
    try:
        return b"cluster_state:ok" in conn.call("CLUSTER", "INFO")
    finally:
        conn.close()


def client_addresses(conn):
    text = conn.call("CLIENT", "LIST").decode()
    return [field[len("addr="):] for line in text.splitlines() for field in line.split() if field.startswith("addr=")]


# ------------------------------------------------------------------ one backend

def run_backend(settings, procs, db, kind, postgres):
    name = f"{db}+{kind}"
    tag = f"{db}-{kind}"
    log(f"== backend {name}")
    if db == "postgres":
        database_url = postgres.create_database(f"shop_{db}_{kind}")
    else:
        database_url = f"sqlite://{settings.run_dir}/{tag}.db"
    s = argparse.Namespace(**vars(settings))
    s.database_url = database_url
    migrate(settings.binary, database_url)
    redis = RedisTopology.start(settings, procs, kind, tag)
    replica = None
    try:
        replica = Replica(s, procs, f"replica-{tag}", free_port(), redis.url)
        port = replica.port
        cookie = log_in(port)
        reset_cart(port, cookie)
        trace = trace_workloads(s, redis.data_ports, port, cookie, redis.foreign)
        for key, t in trace.items():
            log(f"  trace {key}: {t['app_per_request']} commands/request sent by the app "
                f"({t['all_per_request']} incl. Lua)")
        reset_cart(port, cookie)
        pids = {"replica": replica.pid, **redis.pids()}
        workloads = measure_workloads(s, [Target(name, port, cookie, redis, pids, trace)], BACKEND_WORKLOADS)[name]
        login = login_cost(port, replica.pid, settings.login_samples)
        log(f"  -> login p50 {login['latency_p50_ms']} ms, p99 {login['latency_p99_ms']} ms, "
            f"{login['cpu_ms_per_login']} ms replica CPU each")
        return {
            "db": db,
            "redis": kind,
            "redis_url": redis.url,
            "redis_data_nodes": redis.data_ports,
            "keys_per_data_node": redis.keys_per_node(),
            # What a logged-in page reads: its session and the user's cart (a
            # cluster may put them on two primaries: two round trips in parallel).
            "session_key_node": redis.node_of(cookie.split("=", 1)[1]),
            "cart_key_node": redis.node_of("cart:{u1}"),
            "trace": trace,
            "workloads": workloads,
            "login": login,
        }
    finally:
        if replica is not None:
            procs.stop(replica.proc)
        redis.stop()


def run_backends(settings, procs, res, backends):
    res["backends"] = {}
    postgres = None
    try:
        for db, kind in backends:
            if db == "postgres" and postgres is None:
                postgres = Postgres(settings, procs)
                res["versions"]["postgres"] = postgres.version()
            res["backends"][f"{db}+{kind}"] = run_backend(settings, procs, db, kind, postgres)
    finally:
        if postgres is not None:
            postgres.stop()


# ------------------------------------------------------------------ report

def cpu_cell(r):
    """CPU per request: the replica, every Redis process of the backend, wrk."""
    cpu = r["cpu_us_per_request"]
    redis = sum(v for k, v in cpu.items() if k.startswith("redis"))
    return f"{cpu['replica']:.0f}+{redis:.0f}+{cpu['wrk']:.0f}"


def print_backends(res):
    st = res["settings"]
    print()
    print(f"storefront on other backends — {st['seconds']}s per workload, {st['connections']} connections, "
          f"wrk -t{st['threads']}, {res['machine']['nproc']} cores ({res['machine']['cpu_model']}); "
          f"logins: {st['login_samples']} one at a time")
    print()
    header = ("backend", "workload", "req/s", "p50 ms", "p99 ms", "errors", "cmd/req", "incl. Lua", "traced",
              "CPU µs/req", "other load")
    rows = []
    for name, b in res["backends"].items():
        first = True
        for key, title, *_ in BACKEND_WORKLOADS:
            r, t = b["workloads"][key], b["trace"][key]
            rows.append((name if first else "", title, fmt(r["rps"], 0), fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                         str(r["errors"]), fmt(r.get("redis_app_commands_per_request")),
                         fmt(r["redis_commands_per_request"]), fmt(t["app_per_request"]), cpu_cell(r),
                         f"{r['other_load_percent']:.0f}%"))
            first = False
        login, t = b["login"], b["trace"]["post_login"]
        rows.append(("", "POST /login (one at a time)", "-", fmt(login["latency_p50_ms"]),
                     fmt(login["latency_p99_ms"]), "0", "-", fmt(t["all_per_request"]), fmt(t["app_per_request"]),
                     f"{login['cpu_ms_per_login'] * 1000:.0f}", "-"))
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(c).ljust(widths[i]) if i in (0, 1) else str(c).rjust(widths[i])
                        for i, c in enumerate(row)))
    print()
    print("cmd/req: Redis commands per request sent by the shop under load (INFO commandstats of every data node, "
          "summed; EVALSHA counts 1); incl. Lua: with the commands inside its scripts; traced: sent per request, "
          "requests one at a time under MONITOR on every data node. CPU: replica + all Redis processes + wrk.")
    for name, b in res["backends"].items():
        print(f"  {name}: keys per data node {b['keys_per_data_node']}; the visitor's session on "
              f"{b['session_key_node']}, the cart on {b['cart_key_node']}")
    print()
