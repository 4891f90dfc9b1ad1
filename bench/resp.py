"""A tiny Redis client (RESP2 over a socket), enough for the benchmark: INFO,
MEMORY USAGE, binary-safe GET, pipelined writes and MONITOR. The standard library
only, so `scripts/bench` needs no pip install."""

import socket


class RedisError(Exception):
    pass


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class Redis:
    def __init__(self, port, host="127.0.0.1", timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass

    def local_address(self):
        host, port = self.sock.getsockname()[:2]
        return f"{host}:{port}"

    def _read(self):
        line = self.file.readline()
        if not line:
            raise RedisError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RedisError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(encode(*args))
        reply = self._read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def pipeline(self, commands, batch=10_000):
        """Sends encoded commands in batches and reads every reply; returns the number of errors."""
        errors = 0
        for start in range(0, len(commands), batch):
            chunk = commands[start : start + batch]
            self.sock.sendall(b"".join(chunk))
            for _ in chunk:
                if isinstance(self._read(), RedisError):
                    errors += 1
        return errors

    def info(self, section):
        text = self.call("INFO", section).decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and ":" in line:
                key, value = line.split(":", 1)
                out[key] = value
        return out

    def commandstats(self):
        """{command: calls} from INFO commandstats."""
        stats = {}
        for key, value in self.info("commandstats").items():
            if key.startswith("cmdstat_"):
                fields = dict(part.split("=", 1) for part in value.split(","))
                stats[key[len("cmdstat_") :]] = int(fields["calls"])
        return stats

    def monitor_lines(self):
        """After MONITOR: yields each monitored line (blocks)."""
        self.sock.sendall(encode("MONITOR"))
        ok = self._read()
        if ok != "OK":
            raise RedisError(f"MONITOR answered {ok!r}")
        while True:
            line = self.file.readline()
            if not line:
                return
            yield line.decode(errors="replace").rstrip("\r\n")[1:]


def commandstats_delta(before, after, exclude=("info", "monitor", "select", "memory", "client", "ping")):
    delta = {}
    for cmd, calls in after.items():
        if cmd in exclude:
            continue
        d = calls - before.get(cmd, 0)
        if d:
            delta[cmd] = d
    return delta
