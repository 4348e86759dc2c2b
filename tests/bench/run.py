#!/usr/bin/python3
"""gatewayd's benchmark runner (tests/bench/README.md).

    run.py [--quick] [--runs N] [--cases A,B] [--peers A,B] [--perf]
           [--build DIR] [--out FILE]

Runs every case (a scenario with its parameters) against every peer that
can serve it, RUNS times each, interleaving the peers so that the noise of
a shared machine falls on all of them alike.  Each run gets a fresh server
on a free loopback port (for gatewayd-cluster: a redis-server and three
nodes, each on a port of its own) and one wsbench process; the server is
stopped (and any process it left behind killed) before the next run
starts, and at the end no process the runner started may still run.
Prints a table of medians with ratios to the peers, checks the targets of
the benchmark's issue, and writes every run and the medians to
BUILD/bench/results.json.

It builds nothing: `make bench` builds gatewayd, wsbench, bench_room and
floor_server first, installs redis-server, and installs Bun from npm into
BUILD/bench/bun.  It makes the TLS cases' certificate itself, with
openssl.  Standard library only.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
NOFILE = 20000          # the open-file limit of these machines
READY_TIMEOUT = 15.0    # seconds for a server to accept connections
STOP_TIMEOUT = 10.0     # seconds for a server to exit on SIGTERM
RUN_SLACK = 60.0        # seconds a wsbench run may take beyond its plan
# The most clients and per-connection programs gatewayd-client serves:
# with three descriptors each (the client's socket, the program's
# socketpair end and stderr pipe) they stay under the open-file limit.
CLIENT_MODE_MAX = 4000


# Peers ---------------------------------------------------------------------

class Peer:
    """A server to measure: how to start it and what it can serve."""

    name = "?"
    skips = {}          # scenario -> why this peer does not run it
    only_listed = False  # runs only the cases that name it
    secure = False      # serves TLS and permessage-deflate cases

    def __init__(self, runner):
        self.runner = runner

    def available(self):
        """None, or why the peer cannot run on this machine."""
        return None

    def skip(self, case):
        """None, or why this peer does not run case."""
        if case.scenario in self.skips:
            return self.skips[case.scenario]
        if (case.tls or case.deflate) and not self.secure:
            return "TLS and permessage-deflate are measured on gatewayd " \
                   "and Bun alone"
        return None

    def command(self, port, log_dir, case):
        raise NotImplementedError

    def wsbench_args(self, case):
        return []

    def connections(self, case):
        """The connections this peer is measured with in case."""
        return case.connections

    def server(self, case, log_dir, tag):
        """What run_one starts and stops: one process, by default."""
        return Server(self, case, log_dir, tag)


class Gatewayd(Peer):
    """gatewayd with the rooms /echo and /broadcast served by backends;
    its listener speaks TLS (the runner's certificate) when the case does,
    and it agrees to permessage-deflate (compression = yes, its default
    compression_no_context_takeover = yes) when the case offers it."""

    echo_backend = broadcast_backend = None
    secure = True

    def available(self):
        if not os.access(self.runner.gatewayd, os.X_OK):
            return f"{self.runner.gatewayd} is not built (make bench builds it)"
        return None

    def gateway_section(self, port, case, max_connections=NOFILE):
        tls = ""
        if case.tls:
            tls = (f"tls_certificate = {self.runner.tls_cert}\n"
                   f"tls_key = {self.runner.tls_key}\n")
        return f"""; written by tests/bench/run.py for {case.name}
[gateway]
listen = 127.0.0.1:{port}{" tls" if case.tls else ""}
{tls}max_connections = {max_connections}
log_level = warn
shutdown_timeout = 3s
stop_timeout = 1s
compression = {"yes" if case.deflate else "no"}
"""

    def resources(self):
        return f"""
[resource /echo]
backend = exec:{self.echo_backend}

[resource /broadcast]
backend = exec:{self.broadcast_backend}
"""

    def command(self, port, log_dir, case):
        config = os.path.join(log_dir, f"{self.name}.ini")
        with open(config, "w") as f:
            f.write(self.gateway_section(port, case) + self.resources())
        return [self.runner.gatewayd, "-c", config]


class GatewaydC(Gatewayd):
    name = "gatewayd-c"
    about = ("gatewayd with bench_room, the benchmark's C room backend: "
             "the gateway's own cost")

    def __init__(self, runner):
        super().__init__(runner)
        room = runner.bench_room
        self.echo_backend = f"{room} echo"
        self.broadcast_backend = f"{room} broadcast"

    def available(self):
        if not os.access(self.runner.bench_room, os.X_OK):
            return f"{self.runner.bench_room} is not built"
        return super().available()


class GatewaydBase(GatewaydC):
    """gatewayd-c with another build of gatewayd (--base): the same cases
    before and after a change, in one run."""

    name = "gatewayd-base"
    about = "gatewayd-c, with the binary given by --base"

    def command(self, port, log_dir, case):
        cmd = super().command(port, log_dir, case)
        cmd[0] = self.runner.gatewayd_base
        return cmd

    def available(self):
        if not self.runner.gatewayd_base:
            return "no --base binary"
        if not os.access(self.runner.gatewayd_base, os.X_OK):
            return f"{self.runner.gatewayd_base} is not executable"
        return super().available()


class GatewaydCluster(GatewaydC):
    """Three gatewayd nodes with [cluster] sharing the rooms of one Redis,
    bench_room behind the room on the node that holds its lease
    (ClusterServer starts them)."""

    name = "gatewayd-cluster"
    about = ("three gatewayd nodes with [cluster] on one redis-server "
             "(--save '' --appendonly no), bench_room run by the node "
             "holding the room's lease (n0, started first); wsbench spreads "
             "the clients over the nodes, the broadcast sender on n2")
    only_listed = True
    NODES = 3
    LEASE = "5s"

    def available(self):
        if not shutil.which("redis-server"):
            return "redis-server is not installed (make bench installs it)"
        return super().available()

    def server(self, case, log_dir, tag):
        return ClusterServer(self, case, log_dir, tag)

    def node_command(self, port, redis_port, node, log_dir, case):
        config = os.path.join(log_dir, f"{self.name}-{node}.ini")
        with open(config, "w") as f:
            f.write(self.gateway_section(port, case) + f"""
[cluster]
redis = 127.0.0.1:{redis_port}
node = {node}
lease = {self.LEASE}
""" + self.resources())
        return [self.runner.gatewayd, "-c", config]


class GatewaydPy(Gatewayd):
    name = "gatewayd-py"
    about = ("gatewayd with the Python example rooms: examples/echo/room.py "
             "for echo, examples/chat/room.py for broadcast (its "
             "'NAME says TEXT' broadcasts; joins and leaves are ignored)")

    def __init__(self, runner):
        super().__init__(runner)
        self.echo_room = os.path.join(ROOT, "examples", "echo", "room.py")
        self.chat_room = os.path.join(ROOT, "examples", "chat", "room.py")
        self.echo_backend = f"{PYTHON} {self.echo_room}"
        self.broadcast_backend = f"{PYTHON} {self.chat_room}"

    def available(self):
        for room in (self.echo_room, self.chat_room):
            if not os.path.exists(room):
                return f"{os.path.relpath(room, ROOT)} is missing"
        return super().available()

    def wsbench_args(self, case):
        return ["--allow-foreign"] if case.scenario == "broadcast" else []


class GatewaydClient(Gatewayd):
    """gatewayd as websocketd runs programs: a `cat` per connection."""

    name = "gatewayd-client"
    about = ("gatewayd with [resource /echo] mode = client, format = lines, "
             "backend = exec:cat: a cat per connection, as websocketd runs "
             "it")
    skips = {"broadcast": "a program per connection has no room to "
                          "broadcast in"}
    only_listed = True

    def command(self, port, log_dir, case):
        config = os.path.join(log_dir, f"{self.name}.ini")
        with open(config, "w") as f:
            f.write(self.gateway_section(port, case, CLIENT_MODE_MAX) +
                    f"max_processes = {CLIENT_MODE_MAX}\n" + """
[resource /echo]
mode = client
format = lines
backend = exec:cat
""")
        return [self.runner.gatewayd, "-c", config]


class Websocketd(Peer):
    name = "websocketd"
    about = ("Debian's websocketd running cat: a process (and four file "
             "descriptors, more while it forks) per connection")
    skips = {"broadcast": "websocketd has no rooms: a process per "
                          "connection cannot broadcast"}
    # Its file descriptors: the socket and three pipes per connection, and
    # more while it forks: at the limit of 20000 it fails from about 2600
    # connections on.
    MAX_CONNECTIONS = 2000

    def available(self):
        return None if shutil.which("websocketd") else \
            "websocketd is not installed (make bench installs it)"

    def command(self, port, log_dir, case):
        return ["websocketd", f"--port={port}", "--address=127.0.0.1",
                "--loglevel=fatal", "cat"]

    def connections(self, case):
        return min(case.connections, self.MAX_CONNECTIONS) \
            if case.scenario in ("idle", "echo") else case.connections


class PyWebsockets(Peer):
    name = "py-websockets"
    about = ("tests/bench/py_server.py: echo and broadcast in one asyncio "
             "process on Debian's python3-websockets 10.4")

    def available(self):
        r = subprocess.run([PYTHON, "-c", "import websockets"],
                           capture_output=True)
        return None if r.returncode == 0 else \
            "python3-websockets is not installed (make bench installs it)"

    def command(self, port, log_dir, case):
        return [PYTHON, os.path.join(ROOT, "tests", "bench", "py_server.py"),
                "--port", str(port)]


class Floor(Peer):
    """The yardstick, not a competitor: floor_server.c makes only the
    system calls a WebSocket server must make.  It is last in PEERS, and
    neither the ratios nor the targets are computed against it."""

    name = "floor"
    about = ("tests/bench/floor_server.c, the floor: only the system calls "
             "a WebSocket server must make, one epoll loop, no backend, no "
             "validation; the CPU it spends is what the kernel costs any "
             "server")
    skips = {"broadcast": "the floor has no rooms: it only echoes"}

    def available(self):
        if not os.access(self.runner.floor_server, os.X_OK):
            return f"{self.runner.floor_server} is not built"
        return None

    def command(self, port, log_dir, case):
        return [self.runner.floor_server, "--port", str(port)]


class Bun(Peer):
    name = "bun"
    about = ("tests/bench/bun_server.js on Bun (npm's bun, uWebSockets "
             "inside): echo, and broadcast by pub/sub, in one process; TLS "
             "and perMessageDeflate when the case asks")
    secure = True

    def __init__(self, runner):
        super().__init__(runner)
        self.script = os.path.join(ROOT, "tests", "bench", "bun_server.js")

    def available(self):
        if not os.access(self.runner.bun, os.X_OK):
            return (f"{os.path.relpath(self.runner.bun, ROOT)} is missing "
                    f"(make bench installs it from npm)")
        try:
            r = subprocess.run([self.runner.bun, "--version"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{self.runner.bun} does not run: {e}"
        if r.returncode != 0:
            return f"{self.runner.bun} does not run: {r.stderr.strip()}"
        self.about = f"{self.about} (Bun {r.stdout.strip()})"
        return None

    def command(self, port, log_dir, case):
        cmd = [self.runner.bun, self.script, "--port", str(port)]
        if case.tls:
            cmd += ["--tls-cert", self.runner.tls_cert,
                    "--tls-key", self.runner.tls_key]
        if case.deflate:
            cmd.append("--deflate")
        return cmd


PEERS = [GatewaydC, GatewaydBase, GatewaydCluster, GatewaydPy, GatewaydClient,
         Websocketd, PyWebsockets, Bun, Floor]


# Cases ---------------------------------------------------------------------

class Case:
    """One scenario with its parameters.  Options of wsbench go as keyword
    arguments (True for a flag: tls, tls_resume, deflate, first_echo);
    peers names the peers that run it (None: every peer but those that
    run only where named); tags are other names --cases selects it by."""

    def __init__(self, name, scenario, connections, duration, **params):
        self.name = name
        self.scenario = scenario
        self.connections = connections
        self.duration = duration
        self.peers = params.pop("peers", None)   # None: every peer
        self.tags = params.pop("tags", [])
        # peer -> why the case does not list it, for the notes
        self.why_not = params.pop("why_not", {})
        self.params = params            # other wsbench options
        self.tls = bool(params.get("tls") or params.get("tls_resume"))
        self.deflate = bool(params.get("deflate"))

    def wsbench_args(self, connections):
        args = ["--scenario", self.scenario, "--connections", str(connections),
                "--duration", str(self.duration)]
        for key, value in self.params.items():
            if value is True:
                args.append("--" + key.replace("_", "-"))
            elif value is not False:
                args += ["--" + key.replace("_", "-"), str(value)]
        return args

    def selected_by(self, names):
        return bool({self.name, self.scenario, *self.tags} & set(names))

    def planned_seconds(self):
        p = self.params
        return (self.duration + float(p.get("warmup", 1)) +
                float(p.get("settle", 1)) + 60)   # 60: connect and drain

    def describe(self, connections=None):
        n = connections or self.connections
        p = self.params
        how = []
        if self.tls:
            how.append("TLS, resumed sessions" if p.get("tls_resume")
                       else "TLS")
        if self.deflate:
            how.append("permessage-deflate")
        if p.get("payload") == "json":
            how.append("JSON text")
        how = f" ({', '.join(how)})" if how else ""
        if self.scenario == "echo":
            return (f"echo{how}: N={n} connections, S={p.get('size', 64)} "
                    f"bytes, W={p.get('inflight', 1)} in flight each, "
                    f"{self.duration:g} s measured")
        if self.scenario == "broadcast":
            pace = (f"{p['rate']:g} a second" if p.get("rate") else
                    f"window {p.get('window', 64)}")
            return (f"broadcast{how}: N={n} receivers and 1 sender, "
                    f"M={p.get('messages')} messages of "
                    f"{p.get('size', 64)} bytes, {pace}, "
                    f"at most {self.duration:g} s")
        if self.scenario == "idle":
            return (f"idle{how}: N={n} connections held {self.duration:g} s")
        cycle = (f", each with one echo of {p.get('size', 64)} bytes"
                 if p.get("first_echo") else "")
        return (f"connect{how}: C={n} in parallel{cycle}, "
                f"{self.duration:g} s measured")


def full_cases():
    return [
        Case("echo-100", "echo", 100, 5, size=64, inflight=1, warmup=1),
        Case("echo-1000", "echo", 1000, 5, size=64, inflight=1, warmup=1),
        # websocketd cannot hold 10000 (four descriptors per connection).
        Case("echo-10000", "echo", 10000, 5, size=64, inflight=1, warmup=1,
             peers=["gatewayd-c", "gatewayd-py", "py-websockets", "bun",
                    "floor"],
             why_not={"websocketd": f"a process and four file descriptors "
                                    f"per connection (more while it forks) "
                                    f"do not fit 10000 connections in the "
                                    f"open-file limit of {NOFILE}"}),
        # As fast as the receivers keep up: a new message whenever one
        # has reached them all, at most 64 on their way.
        Case("broadcast-1000", "broadcast", 1000, 5, size=64,
             messages=5000, window=64),
        # A steady 50 messages a second (50000 deliveries a second), which
        # every peer sustains: delivery latency without a queue.
        Case("broadcast-1000-r50", "broadcast", 1000, 5, size=64,
             messages=250, rate=50),
        # The open-file limit is 20000 per process: 15000 leaves room.
        Case("idle-15000", "idle", 15000, 2, settle=1),
        Case("connect-50", "connect", 50, 5, warmup=1),
    ] + client_cases(quick=False) + bun_cases(quick=False) + \
        cluster_cases(quick=False)


# Issue 10: a program per connection, gatewayd against websocketd.
CLIENT_PEERS = ["gatewayd-client", "websocketd"]
# Issue 12: gatewayd against Bun, with TLS and permessage-deflate.
BUN_PEERS = ["gatewayd-c", "bun"]
# The realistic message of the compression cases: wsbench's chat-like
# JSON object (--payload json), which deflate shrinks about 1.85 times.
JSON_SIZE = 1024


def client_cases(quick):
    n_echo, n_conn, secs, warm = (20, 10, 1, 0.3) if quick else \
        (100, 50, 5, 1)
    common = dict(peers=CLIENT_PEERS, tags=["client"])
    return [
        Case(f"client-echo-{n_echo}", "echo", n_echo, secs, size=64,
             inflight=1, warmup=warm, **common),
        # Each cycle spawns a cat: connect, 101, one echo, close.
        Case(f"client-connect-{n_conn}", "connect", n_conn, secs,
             warmup=warm, first_echo=True, size=64, **common),
    ]


def bun_cases(quick):
    n, n_conn, n_idle = (50, 10, 500) if quick else (1000, 50, 5000)
    secs, warm, held, settle = (1, 0.3, 0.5, 0.3) if quick else \
        (5, 1, 2, 1)
    # Broadcast: a new message as soon as one has reached every receiver,
    # at most `window` on their way: 16 KiB ones get a window of 16, to
    # stay well under the 1 MiB a client may have queued (both servers
    # close a client past it).  The message counts stop long before 5 s
    # only on a fast machine.
    sizes = [("58", 58, 20000, 64), ("1k", 1024, 10000, 64),
             ("16k", 16384, 2000, 16)]
    bun = dict(peers=BUN_PEERS)
    cases = [Case(f"broadcast-{n}-{label}", "broadcast", n, secs, size=size,
                  payload="json", messages=messages, window=window,
                  tags=["bun"], **bun)
             for label, size, messages, window in sizes]
    cases += [
        Case(f"wss-echo-{n}", "echo", n, secs, size=64, inflight=1,
             warmup=warm, tls=True, tags=["bun", "tls"], **bun),
        Case(f"wss-broadcast-{n}", "broadcast", n, secs, size=58,
             payload="json", messages=20000, window=64, tls=True,
             tags=["bun", "tls"], **bun),
        # Full handshakes, then resumed ones (a ticket of an earlier
        # connection), each with the WebSocket upgrade and close.
        Case(f"tls-connect-{n_conn}", "connect", n_conn, secs, warmup=warm,
             tls=True, tags=["bun", "tls"], **bun),
        Case(f"tls-resume-{n_conn}", "connect", n_conn, secs, warmup=warm,
             tls_resume=True, tags=["bun", "tls"], **bun),
        Case(f"deflate-echo-{n}", "echo", n, secs, size=JSON_SIZE,
             payload="json", inflight=1, warmup=warm, deflate=True,
             tags=["bun", "deflate"], **bun),
        Case(f"deflate-broadcast-{n}", "broadcast", n, secs,
             size=JSON_SIZE, payload="json", messages=10000, window=64,
             deflate=True, tags=["bun", "deflate"], **bun),
        Case(f"wss-deflate-idle-{n_idle}", "idle", n_idle, held,
             settle=settle, tls=True, deflate=True,
             tags=["bun", "tls", "deflate"], **bun),
    ]
    return cases


# The cluster: three nodes on one Redis, and gatewayd-c alone in the same
# case, interleaved run by run, for the ratios.
CLUSTER_PEERS = ["gatewayd-c", "gatewayd-cluster"]


def cluster_cases(quick):
    n, secs, warm, messages = (50, 1, 0.3, 2000) if quick else \
        (1000, 5, 1, 20000)
    common = dict(peers=CLUSTER_PEERS, tags=["cluster"])
    return [
        # broadcast-1000-58's room, its receivers spread over the nodes
        # and its sender on the last: CPU per delivery, saturated.
        Case("cluster-broadcast", "broadcast", n, secs, size=58,
             payload="json", messages=messages, window=64, **common),
        # The same room at broadcast-1000-r50's steady 50 messages a
        # second: the latency the cluster adds, without a queue (the
        # window's queue makes most of cluster-broadcast's).
        Case("cluster-broadcast-r50", "broadcast", n, secs, size=58,
             payload="json", messages=int(50 * secs), rate=50, **common),
        # echo-1000's, every message through the room's in stream to
        # bench_room on the holder and back through its out stream.
        Case("cluster-echo", "echo", n, secs, size=64, inflight=1,
             warmup=warm, **common),
    ]


def quick_cases():
    return [
        Case("echo-50", "echo", 50, 1, size=64, inflight=1, warmup=0.3),
        Case("broadcast-50", "broadcast", 50, 1, size=64, messages=2000,
             window=64),
        Case("idle-500", "idle", 500, 0.5, settle=0.3),
        Case("connect-10", "connect", 10, 1, warmup=0.3),
    ] + client_cases(quick=True) + bun_cases(quick=True) + \
        cluster_cases(quick=True)


# Processes -----------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_table():
    """{pid: ppid} of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = int(fields[1])
    return table


def descendants(pid):
    table = process_table()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in table.items()
                    if pp in frontier and p not in found}
        found |= frontier
    return found


def start_time(pid):
    """The process's start time (clock ticks since boot), or None: with
    the PID it names one process, whatever reuses the PID later."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


# Every process the runner started: (pid, start time, what), checked for
# leftovers at the end.
SPAWNED = []


def leftovers():
    """The processes the runner started that still run, and their
    descendants: [(pid, what)]."""
    left = []
    for pid, started, what in SPAWNED:
        if started is not None and start_time(pid) == started and alive(pid):
            left.append((pid, what))
            left += [(p, f"a child of {what}") for p in descendants(pid)]
    return left


def redis_command(port, *args, timeout=2.0):
    """One command to the Redis on loopback port: its reply as a str, int,
    None or list.  Raises OSError (and RuntimeError for an error reply)."""
    out = f"*{len(args)}\r\n"
    for a in args:
        a = str(a)
        out += f"${len(a.encode())}\r\n{a}\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        s.sendall(out.encode())
        f = s.makefile("rb")

        def reply():
            line = f.readline().decode().rstrip("\r\n")
            kind, rest = line[:1], line[1:]
            if kind == "+":
                return rest
            if kind == "-":
                raise RuntimeError(f"redis: {rest}")
            if kind == ":":
                return int(rest)
            if kind == "$":
                n = int(rest)
                return None if n < 0 else f.read(n + 2)[:-2].decode()
            if kind == "*":
                n = int(rest)
                return None if n < 0 else [reply() for _ in range(n)]
            raise OSError(f"redis: unexpected reply {line!r}")
        return reply()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is as good as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Server:
    """One running peer: one process."""

    def __init__(self, peer, case, log_dir, tag):
        self.peer = peer
        self.case = case
        self.label = peer.name
        self.port = free_port()
        self.log_dir = log_dir
        self.log_path = os.path.join(log_dir, f"{tag}.log")
        self.proc = None
        self.left = set()

    def command(self):
        return self.peer.command(self.port, self.log_dir, self.case)

    def ready(self):
        """Accepting connections?"""
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            return True
        except OSError:
            return False

    def start(self):
        cmd = self.command()
        log = open(self.log_path, "w")
        try:
            self.proc = self.spawn(cmd, log)
        finally:
            log.close()
        SPAWNED.append((self.proc.pid, start_time(self.proc.pid),
                        self.label))
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited at start "
                                   f"(status {self.proc.returncode}); see "
                                   f"{self.log_path}")
            if self.ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not listen within "
                           f"{READY_TIMEOUT:.0f} s")

    def wsbench_args(self):
        """Where wsbench connects, and whose CPU it samples."""
        return ["--port", str(self.port), "--server-pid", str(self.proc.pid)]

    def perf_targets(self):
        """[(label, pid)] to profile: label None for the one server."""
        return [(None, self.proc.pid)]

    def info(self):
        """What the run's result records about the servers."""
        return {}

    @staticmethod
    def spawn(cmd, log):
        """Start cmd in a session of its own (a ^C at the terminal reaches
        the runner alone, and the group can be killed at the end).  One
        retry: `make` in another shell may be relinking the binary."""
        for attempt in (1, 2):
            try:
                return subprocess.Popen(cmd, cwd=ROOT,
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT,
                                        start_new_session=True)
            except OSError:
                if attempt == 2:
                    raise
                time.sleep(2)
        return None

    def terminate(self):
        """Send SIGTERM (finish waits for the end)."""
        if self.proc is None:
            return
        self.left = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def finish(self):
        """Wait for the end of a terminated server, KILL it if it takes too
        long, then kill whatever it left behind.  Returns a list of
        complaints (empty when it all went away)."""
        if self.proc is None:
            return []
        problems = []
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            problems.append(f"{self.label} ignored SIGTERM for "
                            f"{STOP_TIMEOUT:.0f} s: killed")
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        # Backends in process groups of their own, cat processes of a
        # websocketd that died: give them a moment, then kill them.
        deadline = time.monotonic() + 3
        while any(alive(p) for p in self.left) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        stray = [p for p in self.left if alive(p)]
        for p in stray:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if stray:
            problems.append(f"{self.label} left {len(stray)} processes "
                            f"running: killed")
        return problems

    def stop(self):
        """TERM, then KILL; then kill whatever it left behind.  Returns a
        list of complaints (empty when it all went away)."""
        self.terminate()
        return self.finish()


class RedisServer(Server):
    """The cluster's Redis: no snapshots, no append-only file, its log on
    stdout."""

    def __init__(self, peer, case, log_dir, tag):
        super().__init__(peer, case, log_dir, tag)
        self.label = f"{peer.name} redis-server"

    def command(self):
        return ["redis-server", "--port", str(self.port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", self.log_dir,
                "--logfile", ""]

    def ready(self):
        try:
            return redis_command(self.port, "PING", timeout=0.5) == "PONG"
        except (OSError, RuntimeError):
            return False


class NodeServer(Server):
    """One gatewayd node of a ClusterServer."""

    def __init__(self, cluster, node):
        super().__init__(cluster.peer, cluster.case, cluster.log_dir,
                         f"{cluster.tag}-{node}")
        self.node = node
        self.redis_port = cluster.redis.port
        self.label = f"{cluster.peer.name} {node}"

    def command(self):
        return self.peer.node_command(self.port, self.redis_port, self.node,
                                      self.log_dir, self.case)


class ClusterServer:
    """A Redis and the nodes of GatewaydCluster, as one server: n0 starts
    first and takes the lease of the case's room (so it runs the room's
    bench_room), then the others; all are up once each has said so to
    Redis.  wsbench gets the nodes' ports in order (the broadcast sender
    goes to the last) and samples Redis's CPU time as well."""

    def __init__(self, peer, case, log_dir, tag):
        self.peer, self.case, self.log_dir, self.tag = \
            peer, case, log_dir, tag
        self.path = "/broadcast" if case.scenario == "broadcast" else "/echo"
        self.redis = RedisServer(peer, case, log_dir, f"{tag}-redis")
        self.names = [f"n{i}" for i in range(peer.NODES)]
        self.nodes = []
        self.holder = None

    def wait_for(self, what, test):
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if test():
                    return
            except (OSError, RuntimeError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.peer.name}: {what} within "
                           f"{READY_TIMEOUT:.0f} s")

    def lease(self):
        """The instance holding the room's lease ("NODE.BOOT"), or None."""
        return redis_command(self.redis.port, "GET",
                             f"gw:{{{self.path}}}:lease")

    def start(self):
        self.redis.start()
        for name in self.names:
            node = NodeServer(self, name)
            self.nodes.append(node)
            node.start()
            if name == self.names[0]:
                self.wait_for(f"{name} took no lease of {self.path}",
                              lambda: self.lease() is not None)
        live = lambda: {k.split(":", 2)[2].split(".")[0] for k in
                        redis_command(self.redis.port, "KEYS", "gw:node:*")}
        self.wait_for("not every node reached redis",
                      lambda: live() >= set(self.names))
        self.holder = (self.lease() or "?").split(".")[0]

    @property
    def proc(self):
        return self.nodes[0].proc if self.nodes else None

    def wsbench_args(self):
        return ["--port", ",".join(str(n.port) for n in self.nodes),
                "--server-pid", ",".join(str(n.proc.pid)
                                         for n in self.nodes),
                "--watch-pid", f"redis={self.redis.proc.pid}"]

    def perf_targets(self):
        return [(n.node, n.proc.pid) for n in self.nodes]

    def info(self):
        return {"cluster": {
            "nodes": self.names, "holder": self.holder,
            "sender": self.names[-1] if self.case.scenario == "broadcast"
            else None,
            "holder_index": self.names.index(self.holder)
            if self.holder in self.names else -1,
            "redis_port": self.redis.port}}

    def stop(self):
        """Every node at once (each says goodbye to Redis), then Redis."""
        for n in self.nodes:
            n.terminate()
        problems = [p for n in self.nodes for p in n.finish()]
        return problems + self.redis.stop()


# Running -------------------------------------------------------------------

class PerfRecorder:
    """perf record on the server while wsbench measures."""

    def __init__(self, pid, seconds, path):
        self.pid, self.seconds, self.path = pid, seconds, path
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            # --no-inherit: the server alone, not the programs it spawns
            # while recording (a cat per connection).
            ["perf", "record", "-q", "-g", "--no-inherit", "-p",
             str(self.pid), "-o",
             self.path, "--", "sleep", str(self.seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def finish(self):
        if self.proc is None:
            return None
        try:
            self.proc.wait(self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        r = subprocess.run(
            ["perf", "report", "-i", self.path, "--stdio", "--no-children",
             "--sort", "symbol", "--percent-limit", "0.8"],
            capture_output=True, text=True, timeout=120)
        top = []
        for line in r.stdout.splitlines():
            # "  7.08%  [.] _int_free    -   -": [.] user, [k] kernel
            m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*?)(\s{2,}|$)", line)
            if m:
                top.append({"percent": float(m.group(1)),
                            "kernel": m.group(2) == "k",
                            "symbol": m.group(3)})
        return top[:20]


class Runner:
    def __init__(self, args):
        self.args = args
        build = os.path.join(ROOT, args.build)
        self.gatewayd = os.path.join(build, "gatewayd")
        self.gatewayd_base = args.base and os.path.abspath(args.base)
        self.wsbench = os.path.join(build, "bench", "wsbench")
        self.bench_room = os.path.join(build, "bench", "bench_room")
        self.floor_server = os.path.join(build, "bench", "floor_server")
        # bench.mk links the Bun binary npm installed here.
        self.bun = os.path.join(build, "bench", "bun", "bun")
        tls_dir = os.path.join(build, "bench", "tls")
        self.tls_cert = os.path.join(tls_dir, "cert.pem")
        self.tls_key = os.path.join(tls_dir, "key.pem")
        self.out_dir = os.path.join(build, "bench")
        self.log_dir = os.path.join(self.out_dir, "logs")
        os.makedirs(self.log_dir, exist_ok=True)
        self.results = []
        self.notes = []

    def note(self, text):
        self.notes.append(text)
        print(f"note: {text}", flush=True)

    def run_one(self, case, peer, index, perf=False):
        n = peer.connections(case)
        tag = f"{case.name}-{peer.name}-{index}"
        server = peer.server(case, self.log_dir, tag)
        result = {"case": case.name, "peer": peer.name, "run": index,
                  "connections": n}
        t0 = time.monotonic()
        try:
            server.start()
            result.update(server.info())
            cmd = [self.wsbench, "--json"] + server.wsbench_args()
            cmd += case.wsbench_args(n) + peer.wsbench_args(case)
            result["command"] = " ".join(cmd)
            result.update(self.wsbench_run(cmd, case, server, tag, perf))
            per_server_rates(result)
        except (RuntimeError, OSError) as e:
            result.update(ok=False, failure=str(e))
        finally:
            problems = server.stop()
        if problems:
            result.setdefault("problems", []).extend(problems)
        result["wall_s"] = round(time.monotonic() - t0, 2)
        self.results.append(result)
        status = "ok" if result.get("ok") else "FAILED"
        print(f"  {tag:<40} {status:<6} {headline(case, result)}"
              f"  ({result['wall_s']:.1f} s)", flush=True)
        if not result.get("ok"):
            for msg in (result.get("error_messages") or
                        [result.get("failure", "")])[:3]:
                print(f"      {msg}", flush=True)
        return result

    def wsbench_run(self, cmd, case, server, tag, perf):
        err_path = os.path.join(self.log_dir, f"{tag}.wsbench.log")
        limit = case.planned_seconds() + RUN_SLACK
        recorders = None
        with open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            out_lines = []
            # Read stdout in a thread so that stderr can be watched for
            # the measuring phase (perf starts then).
            reader = threading.Thread(
                target=lambda: out_lines.extend(proc.stdout), daemon=True)
            reader.start()
            deadline = time.monotonic() + limit
            timer = threading.Timer(limit, proc.kill)
            timer.start()
            try:
                for line in proc.stderr:
                    err.write(line)
                    if perf and recorders is None and \
                            "phase measure" in line:
                        recorders = []
                        for label, pid in server.perf_targets():
                            name = case.name + (f"-{label}" if label else "")
                            recorders.append((label, PerfRecorder(
                                pid, min(case.duration, 5), os.path.join(
                                    self.out_dir, f"perf-{name}.data"))))
                            recorders[-1][1].start()
                proc.wait(max(1, deadline - time.monotonic()))
            finally:
                timer.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            reader.join(5)
        result = {}
        if recorders:
            tops = {label: r.finish() for label, r in recorders}
            # One server: its profile; several: one per node.
            result["perf_top"] = tops[None] if None in tops else tops
        if proc.returncode < 0:
            result.update(ok=False, failure=f"wsbench killed after "
                                            f"{limit:.0f} s")
            return result
        try:
            report = json.loads(out_lines[-1])
        except (IndexError, ValueError):
            with open(err_path) as f:
                tail = f.read()[-300:]
            result.update(ok=False, failure=f"wsbench exited "
                                            f"{proc.returncode} without a "
                                            f"report: {tail}")
            return result
        result.update(report)
        result["exit_status"] = proc.returncode
        result["ok"] = bool(report.get("ok")) and proc.returncode == 0
        return result

    def make_certificate(self):
        """The TLS cases' self-signed certificate: ECDSA P-256, the key
        most sites use, made once per build directory."""
        if os.path.exists(self.tls_cert) and os.path.exists(self.tls_key):
            return
        os.makedirs(os.path.dirname(self.tls_cert), exist_ok=True)
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
             "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", self.tls_key, "-out", self.tls_cert],
            capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"run.py: openssl could not make the certificate: "
                     f"{r.stderr.strip()}")

    def run(self, cases, peers):
        total = time.monotonic()
        if any(c.tls for c in cases):
            self.make_certificate()
        for case in cases:
            runnable = []
            for peer in peers:
                # gatewayd-base goes wherever gatewayd-c does.
                name = "gatewayd-c" if peer.name == "gatewayd-base" else \
                    peer.name
                if peer.only_listed and (case.peers is None or
                                         name not in case.peers):
                    continue
                if case.peers is not None and name not in case.peers:
                    if peer.name in case.why_not:
                        self.note(f"{case.name}: {peer.name} skipped: "
                                  f"{case.why_not[peer.name]}")
                    continue
                why = peer.skip(case)
                if why:
                    self.note(f"{case.name}: {peer.name} skipped: {why}")
                    continue
                if peer.connections(case) != case.connections:
                    self.note(f"{case.name}: {peer.name} measured at "
                              f"N={peer.connections(case)}, not "
                              f"{case.connections}: with a process and four "
                              f"file descriptors per connection (more while "
                              f"it forks) it fails from about 2600 on under "
                              f"the open-file limit of {NOFILE}")
                runnable.append(peer)
            print(f"== {case.name}: {case.describe()}", flush=True)
            for index in range(self.args.runs):
                for peer in runnable:
                    self.run_one(case, peer, index)
        return time.monotonic() - total

    def run_perf(self, cases, peers):
        """Profile gatewayd-c, or gatewayd-client in the cases that name
        it instead (a program per connection)."""
        profiles = {}
        for case in cases:
            fit = [p for p in peers if not p.skip(case) and
                   (case.peers is None or p.name in case.peers) and
                   not (p.only_listed and case.peers is None)]
            # The cluster where a case has it, else the first that fits.
            peer = next((p for p in fit if p.name == "gatewayd-cluster"),
                        fit[0] if fit else None)
            if peer is None:
                self.note(f"{case.name}: no gatewayd to profile")
                continue
            print(f"== perf {case.name} ({peer.name}): {case.describe()}",
                  flush=True)
            result = self.run_one(case, peer, "perf", perf=True)
            profiles[case.name] = result.get("perf_top")
        return profiles


# Summaries -----------------------------------------------------------------

# What the table shows per scenario: (label, dotted key, format[, scale]).
COLUMNS = {
    "echo": [("rt/s", "echo.per_second", "{:.0f}"),
             ("p50 us", "latency_us.p50", "{:.0f}"),
             ("p99 us", "latency_us.p99", "{:.0f}"),
             ("max us", "latency_us.max", "{:.0f}"),
             ("srv us/rt", "cpu_per_op_us.server", "{:.2f}"),
             ("bk us/rt", "cpu_per_op_us.backends", "{:.2f}"),
             ("gen us/rt", "cpu_per_op_us.generator", "{:.2f}"),
             ("srv cpu", "cpu.server_util", "{:.0%}"),
             ("bk cpu", "cpu.backends_util", "{:.0%}"),
             ("gen cpu", "cpu.generator_util", "{:.0%}"),
             ("deflated", "deflate.received_ratio", "{:.2f}")],
    "broadcast": [("deliv/s", "broadcast.deliveries_per_second", "{:.0f}"),
                  ("msgs/s", "broadcast.messages_per_second", "{:.0f}"),
                  ("p50 us", "latency_us.p50", "{:.0f}"),
                  ("p99 us", "latency_us.p99", "{:.0f}"),
                  ("srv us/dl", "cpu_per_op_us.server", "{:.3f}"),
                  ("bk us/dl", "cpu_per_op_us.backends", "{:.3f}"),
                  ("gen us/dl", "cpu_per_op_us.generator", "{:.3f}"),
                  ("srv cpu", "cpu.server_util", "{:.0%}"),
                  ("gen cpu", "cpu.generator_util", "{:.0%}"),
                  ("deflated", "deflate.received_ratio", "{:.2f}"),
                  ("lost", "errors.lost", "{:.0f}"),
                  ("dup", "errors.duplicated", "{:.0f}"),
                  ("reord", "errors.reordered", "{:.0f}")],
    "idle": [("held", "idle.held", "{:.0f}"),
             ("srv B/conn", "idle.server_bytes_per_conn", "{:.0f}"),
             ("+bk B/conn", "idle.with_backends_bytes_per_conn", "{:.0f}"),
             ("PSS B/conn", "idle.pss_bytes_per_conn", "{:.0f}"),
             ("srv RSS MiB", "idle.server_rss_kib", "{:.1f}", 1 / 1024),
             ("procs", "cpu.backends", "{:.0f}"),
             ("conn/s", "setup.connects_per_second", "{:.0f}")],
    "connect": [("hs/s", "connect.per_second", "{:.0f}"),
                ("p50 us", "latency_us.p50", "{:.0f}"),
                ("p99 us", "latency_us.p99", "{:.0f}"),
                ("srv us/hs", "cpu_per_op_us.server", "{:.1f}"),
                ("bk us/hs", "cpu_per_op_us.backends", "{:.1f}"),
                ("gen us/hs", "cpu_per_op_us.generator", "{:.1f}"),
                ("srv cpu", "cpu.server_util", "{:.0%}"),
                ("gen cpu", "cpu.generator_util", "{:.0%}")],
}

# Columns shown only when some peer has them: what only some cases measure.
OPTIONAL = {"deflate.received_ratio"}

# The number a peer is compared by, and whether more is better.
PRIMARY = {"echo": ("echo.per_second", True),
           "broadcast": ("broadcast.deliveries_per_second", True),
           "idle": ("idle.server_bytes_per_conn", False),
           "connect": ("connect.per_second", True)}


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = prefix + k
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


def per_server_rates(result):
    """Operations per second of each server of several (wsbench gives
    their counts over the whole interval)."""
    secs = (result.get("cpu") or {}).get("interval_s")
    for v in (result.get("servers") or {}).values():
        if secs:
            v["per_second"] = v["ops"] / secs


def headline(case, result):
    if "scenario" not in result:
        return ""
    flat = flatten(result)
    label, key, fmt = COLUMNS[case.scenario][0][:3]
    if case.scenario == "idle":
        label, key, fmt = COLUMNS["idle"][1][:3]
    value = flat.get(key)
    text = f"{label} {fmt.format(value)}" if value is not None else ""
    if case.scenario in ("echo", "broadcast", "connect"):
        p99 = flat.get("latency_us.p99")
        if p99 is not None:
            text += f", p99 {p99:.0f} us"
    return text


def summarize(cases, results):
    """Medians per (case, peer) over the runs that passed."""
    summary = {}
    for case in cases:
        for r in results:
            if r["case"] != case.name:
                continue
            s = summary.setdefault((case.name, r["peer"]),
                                   {"case": case.name, "peer": r["peer"],
                                    "scenario": case.scenario, "runs": 0,
                                    "failed": 0, "flat": []})
            s["runs"] += 1
            if r.get("ok"):
                s["flat"].append(flatten(r))
            else:
                s["failed"] += 1
    for s in summary.values():
        keys = set().union(*s["flat"]) if s["flat"] else set()
        s["median"] = {k: statistics.median(f[k] for f in s["flat"] if k in f)
                       for k in sorted(keys)}
        s["connections"] = s["median"].get("connections")
        del s["flat"]
    return summary


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def print_table(cases, summary, peers):
    for case in cases:
        rows = [summary[(case.name, p.name)] for p in peers
                if (case.name, p.name) in summary]
        if not rows:
            continue
        cols = [c for c in COLUMNS[case.scenario] if c[1] not in OPTIONAL or
                any(c[1] in s["median"] for s in rows)]
        primary, _ = PRIMARY[case.scenario]
        refs = [p for p in ("websocketd", "py-websockets", "bun")
                if (case.name, p) in summary and
                summary[(case.name, p)]["median"]]
        if "cluster" in case.tags and (case.name, "gatewayd-c") in summary \
                and summary[(case.name, "gatewayd-c")]["median"]:
            refs.append("gatewayd-c")
        header = ["peer", "ok"] + [c[0] for c in cols] + \
            [f"x {r}" for r in refs]
        table = [header]
        for s in rows:
            m = s["median"]
            line = [s["peer"], f"{s['runs'] - s['failed']}/{s['runs']}"]
            for col in cols:
                v = m.get(col[1])
                scale = col[3] if len(col) > 3 else 1
                line.append("-" if v is None else col[2].format(v * scale))
            for ref in refs:
                x = ratio(m.get(primary), summary[(case.name, ref)]["median"]
                          .get(primary))
                line.append("-" if x is None else f"{x:.2f}")
            table.append(line)
        print()
        print(f"{case.name}: {case.describe()}; medians")
        widths = [max(len(r[i]) for r in table) for i in range(len(header))]
        for r in table:
            print("  " + "  ".join(v.rjust(w) if i else v.ljust(w)
                                   for i, (v, w) in enumerate(zip(r, widths))))
        if "cluster" in case.tags:
            print_cluster(case, summary)
    print()
    print("rt = round trip, dl = delivery, hs = handshake; srv = the server "
          "process, bk = its children (backends), gen = wsbench; CPU % of "
          "one core over the measured interval; deflated = bytes inflated "
          "over bytes received; x PEER = the first column over that peer's "
          "(for idle: bytes per connection, lower is better)")


def print_cluster(case, summary):
    """The cluster's nodes one by one, beside gatewayd-c alone in the same
    case: each node's CPU over its own clients' operations, all nodes'
    over all operations, Redis's, and the latency and rate added."""
    cl = summary.get((case.name, "gatewayd-cluster"))
    one = summary.get((case.name, "gatewayd-c"))
    if not cl or not cl["median"]:
        return
    m = cl["median"]
    single = one["median"] if one else {}
    bcast = case.scenario == "broadcast"
    op, rate_key = ("dl", "broadcast.deliveries_per_second") if bcast else \
        ("rt", "echo.per_second")
    base_cpu = single.get("cpu_per_op_us.server")
    holder = m.get("cluster.holder_index")
    nodes = sorted({int(k.split(".")[1]) for k in m
                    if k.startswith("servers.")})
    header = ["node", "role", "clients", f"{op}/s", "srv cpu",
              f"srv us/{op}", "bk cpu", "x alone"]
    table = [header]

    def fmt(v, f):
        return "-" if v is None else f.format(v)

    interval = m.get("cpu.interval_s")
    for i in nodes:
        k = f"servers.{i}."
        roles = []
        if holder == i:
            roles.append("holder: runs bench_room")
        if bcast and i == nodes[-1]:
            roles.append("the sender's")
        cpu = m.get(k + "per_op_us")
        bk = m.get(k + "backends_s")
        table.append([
            f"n{i}", ", ".join(roles) or "members only",
            fmt(m.get(k + "connections"), "{:.0f}"),
            fmt(m.get(k + "per_second"), "{:.0f}"),
            fmt(m.get(k + "server_util"), "{:.0%}"),
            fmt(cpu, "{:.3f}"),
            fmt(bk / interval if bk is not None and interval else None,
                "{:.0%}"),
            fmt(ratio(cpu, base_cpu), "{:.2f}")])
    cpu = m.get("cpu_per_op_us.server")
    table.append(["all", "the nodes' CPU over all operations",
                  fmt(m.get("connections"), "{:.0f}"),
                  fmt(m.get(rate_key), "{:.0f}"),
                  fmt(m.get("cpu.server_util"), "{:.0%}"),
                  fmt(cpu, "{:.3f}"),
                  fmt(m.get("cpu.backends_util"), "{:.0%}"),
                  fmt(ratio(cpu, base_cpu), "{:.2f}")])
    if single:
        table.append(["alone", "gatewayd-c, one node",
                      fmt(single.get("connections"), "{:.0f}"),
                      fmt(single.get(rate_key), "{:.0f}"),
                      fmt(single.get("cpu.server_util"), "{:.0%}"),
                      fmt(base_cpu, "{:.3f}"),
                      fmt(single.get("cpu.backends_util"), "{:.0%}"),
                      "1.00"])
    print(f"  {case.name}, node by node (a node's srv us/{op} is its CPU "
          f"over its own clients' {op}s):")
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("    " + "  ".join(v.ljust(w) if i < 2 else v.rjust(w)
                                 for i, (v, w) in enumerate(zip(r, widths))))
    redis = "watched.redis."
    if m.get(redis + "util") is not None:
        per = (f"{m.get(redis + 'per_message_us', float('nan')):.1f} us per "
               f"broadcast message, " if bcast else "")
        print(f"    redis-server's own CPU: {m[redis + 'util']:.1%} of a "
              f"core, {per}{m.get(redis + 'per_op_us', float('nan')):.3f} "
              f"us per {op}")
    if single:
        parts = []
        for q in ("p50", "p99"):
            c, s1 = m.get(f"latency_us.{q}"), single.get(f"latency_us.{q}")
            if c is not None and s1 is not None:
                parts.append(f"{q} {c:.0f} us against {s1:.0f} us alone "
                             f"({c - s1:+.0f} us)")
        what = "delivery latency" if bcast else "round-trip latency"
        if parts:
            print(f"    {what}: " + "; ".join(parts))
        x = ratio(m.get(rate_key), single.get(rate_key))
        if x is not None:
            print(f"    {op}/s: {m[rate_key]:.0f} against "
                  f"{single[rate_key]:.0f} alone ({x:.2f} x)")


def check_targets(summary, info):
    """The issues' targets, for gatewayd with the C room backend (and, for
    a program per connection, gatewayd-client); info gets the figures
    that have no target but that the issues ask to see."""
    def m(case, peer, key):
        s = summary.get((case, peer))
        return s["median"].get(key) if s else None

    checks = []

    def check(name, value, limit, ok, note=None):
        c = {"target": name, "value": value, "limit": limit, "pass": None}
        if value is not None and limit is not None:
            c["pass"] = bool(ok(value, limit))
        if note:
            c["note"] = note
        checks.append(c)

    gw_rt = m("echo-1000", "gatewayd-c", "echo.per_second")
    wd_rt = m("echo-1000", "websocketd", "echo.per_second")
    check("echo N=1000: round trips/s >= 3 x websocketd", gw_rt,
          wd_rt and 3 * wd_rt, lambda v, lim: v >= lim)
    gw_p99 = m("echo-1000", "gatewayd-c", "latency_us.p99")
    wd_p99 = m("echo-1000", "websocketd", "latency_us.p99")
    check("echo N=1000: p99 < 1/3 of websocketd's (us)", gw_p99,
          wd_p99 and wd_p99 / 3, lambda v, lim: v < lim)
    check("broadcast N=1000: gateway CPU per delivery <= 0.5 us",
          m("broadcast-1000", "gatewayd-c", "cpu_per_op_us.server"), 0.5,
          lambda v, lim: v <= lim)
    check("idle N=15000: gateway RSS per connection <= 2 KiB (bytes)",
          m("idle-15000", "gatewayd-c", "idle.server_bytes_per_conn"), 2048,
          lambda v, lim: v <= lim)
    gw_hs = m("connect-50", "gatewayd-c", "connect.per_second")
    wd_hs = m("connect-50", "websocketd", "connect.per_second")
    check("connect: handshakes/s >= 2 x websocketd", gw_hs,
          wd_hs and 2 * wd_hs, lambda v, lim: v >= lim)
    check("connect: gateway CPU per handshake <= 25 us",
          m("connect-50", "gatewayd-c", "cpu_per_op_us.server"), 25,
          lambda v, lim: v <= lim)
    e100 = m("echo-100", "gatewayd-c", "echo.per_second")
    e10k = m("echo-10000", "gatewayd-c", "echo.per_second")
    check("echo N=10000: round trips/s >= 80% of N=100's", e10k,
          e100 and 0.8 * e100, lambda v, lim: v >= lim)

    # Issue 10: a program per connection, against websocketd.
    for case, what, key, times in (
            ("client-echo-100", "round trips/s", "echo.per_second", 1.5),
            ("client-connect-50", "handshakes/s (spawn, echo, close)",
             "connect.per_second", 2)):
        gw = m(case, "gatewayd-client", key)
        wd = m(case, "websocketd", key)
        check(f"{case}: gatewayd-client {what} >= {times:g} x websocketd",
              gw, wd and times * wd, lambda v, lim: v >= lim)
    spawn = m("client-connect-50", "gatewayd-client", "cpu_per_op_us.server")
    if spawn is not None:
        wd = m("client-connect-50", "websocketd", "cpu_per_op_us.server")
        kids = m("client-connect-50", "gatewayd-client",
                 "cpu_per_op_us.backends")
        info.append(
            f"client-connect-50: gatewayd's own CPU per spawn (the daemon "
            f"alone, its cat processes not counted): {spawn:.1f} us"
            + (f"; websocketd's {wd:.1f} us" if wd is not None else "")
            + (f"; the cat processes' {kids:.1f} us" if kids is not None
               else ""))

    # Issue 12: against Bun, with the same certificate and deflate.
    def vs_bun(case, what, key, unit, more_is_better=False):
        gw = m(case, "gatewayd-c", key)
        bun = m(case, "bun", key)
        note = None
        if key.startswith("cpu_per_op_us."):
            bk = m(case, "gatewayd-c", "cpu_per_op_us.backends")
            if bk is not None and gw is not None:
                note = (f"gateway alone; bench_room adds {bk:.3g} {unit}, "
                        f"{gw + bk:.4g} together")
        if more_is_better:
            check(f"{case}: {what} >= Bun's", gw, bun,
                  lambda v, lim: v >= lim, note)
        else:
            check(f"{case}: {what} <= Bun's ({unit})", gw, bun,
                  lambda v, lim: v <= lim, note)

    cpu = "cpu_per_op_us.server"
    for size in ("58", "1k", "16k"):
        vs_bun(f"broadcast-1000-{size}", "CPU per delivery", cpu, "us")
    vs_bun("wss-echo-1000", "CPU per round trip", cpu, "us")
    vs_bun("wss-broadcast-1000", "CPU per delivery", cpu, "us")
    for case, what in (("tls-connect-50", "full"),
                       ("tls-resume-50", "resumed")):
        vs_bun(case, f"CPU per {what} TLS handshake", cpu, "us")
        vs_bun(case, f"{what} TLS handshakes/s", "connect.per_second",
               "/s", more_is_better=True)
    vs_bun("deflate-echo-1000", "CPU per round trip", cpu, "us")
    vs_bun("deflate-broadcast-1000", "CPU per delivery", cpu, "us")
    plain = m("broadcast-1000-1k", "gatewayd-c", cpu)
    check("deflate-broadcast-1000: CPU per delivery <= 2 x the same "
          "messages plain (broadcast-1000-1k) (us)",
          m("deflate-broadcast-1000", "gatewayd-c", cpu),
          plain and 2 * plain, lambda v, lim: v <= lim)
    vs_bun("wss-deflate-idle-5000", "RSS per idle connection",
           "idle.server_bytes_per_conn", "bytes")

    # The cluster: each node's CPU per delivery (over its own receivers')
    # within 1.5 x that of one gatewayd-c in the same case and run.
    single = m("cluster-broadcast", "gatewayd-c", cpu)
    cl = summary.get(("cluster-broadcast", "gatewayd-cluster"))
    if cl:
        med = cl["median"]
        nodes = sorted({int(k.split(".")[1]) for k in med
                        if k.startswith("servers.")})
        for i in nodes:
            check(f"cluster-broadcast: node n{i}'s CPU per delivery <= "
                  f"1.5 x one node's (us)", med.get(f"servers.{i}.per_op_us"),
                  single and 1.5 * single, lambda v, lim: v <= lim)
        total = med.get(cpu)
        if total is not None and single:
            info.append(f"cluster-broadcast: the nodes' CPU together, over "
                        f"all deliveries: {total:.3f} us, "
                        f"{total / single:.2f} x one node's {single:.3f} us")
    for case, op in (("cluster-broadcast", "delivery"),
                     ("cluster-broadcast-r50", "delivery"),
                     ("cluster-echo", "round trip")):
        cl = summary.get((case, "gatewayd-cluster"))
        one = summary.get((case, "gatewayd-c"))
        if not cl or not one:
            continue
        a, b = cl["median"], one["median"]
        lat = [f"{q} {a[f'latency_us.{q}'] - b[f'latency_us.{q}']:+.0f} us"
               for q in ("p50", "p99")
               if f"latency_us.{q}" in a and f"latency_us.{q}" in b]
        if lat:
            info.append(f"{case}: {op} latency added by the cluster: "
                        + ", ".join(lat))
        redis = a.get("watched.redis.per_message_us" if op == "delivery"
                      else "watched.redis.per_op_us")
        if redis is not None:
            info.append(f"{case}: redis-server's CPU per "
                        f"{'broadcast message' if op == 'delivery' else op}:"
                        f" {redis:.2f} us")
    return checks


def print_targets(checks, info):
    print()
    print("targets (gatewayd-c unless named):")
    unmeasured = 0
    for c in checks:
        if c["value"] is None:
            unmeasured += 1     # its case did not run, or failed
            continue
        verdict = {True: "pass", False: "FAIL", None: "n/a "}[c["pass"]]
        value = "-" if c["value"] is None else f"{c['value']:.4g}"
        limit = "-" if c["limit"] is None else f"{c['limit']:.4g}"
        note = f"; {c['note']}" if c.get("note") else ""
        print(f"  {verdict}  {c['target']}: {value} (limit {limit}{note})")
    if unmeasured:
        print(f"  ({unmeasured} more not measured: their cases did not "
              f"run, or failed)")
    for line in info:
        print(f"  info  {line}")


def machine():
    info = {"cpus": os.cpu_count(), "kernel": os.uname().release}
    try:
        with open("/proc/loadavg") as f:
            info["loadavg_at_start"] = f.read().split()[:3]
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def raise_nofile():
    """ulimit -n 20000, for the runner and every process it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: small N, about a second each, "
                             "one run")
    parser.add_argument("--runs", type=int,
                        help="runs per case and peer (3; --quick: 1)")
    parser.add_argument("--cases", help="comma-separated case names, "
                        "scenarios or tags: client (issue 10's cases), bun "
                        "(issue 12's), tls, deflate (default: all)")
    parser.add_argument("--peers", help="comma-separated peers (default: "
                        "all): " + ", ".join(p.name for p in PEERS))
    parser.add_argument("--perf", action="store_true",
                        help="profile gatewayd-c (gatewayd-client in its "
                             "cases, each node of gatewayd-cluster in the "
                             "cluster cases) with perf instead: under the "
                             "--cases "
                             "given, else under echo-1000, broadcast-1000 "
                             "and connect-50")
    parser.add_argument("--build", default="build",
                        help="the build directory (build)")
    parser.add_argument("--out", help="results file "
                        "(BUILD/bench/results.json)")
    parser.add_argument("--base", metavar="GATEWAYD",
                        help="another gatewayd binary, run as the peer "
                        "gatewayd-base beside gatewayd-c (make "
                        "bench-base REV=...)")
    parser.add_argument("--list", action="store_true",
                        help="list the cases and peers, and exit")
    args = parser.parse_args()
    if args.runs is None:
        args.runs = 1 if args.quick or args.perf else 3
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    runner = Runner(args)
    cases = quick_cases() if args.quick else full_cases()
    if args.cases:
        wanted = args.cases.split(",")
        cases = [c for c in cases if c.selected_by(wanted)]
        if not cases:
            parser.error(f"no case matches {args.cases}")
    peers = [cls(runner) for cls in PEERS]
    if args.peers:
        wanted = args.peers.split(",")
        unknown = set(wanted) - {p.name for p in peers}
        if unknown:
            parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
        peers = [p for p in peers if p.name in wanted]
    if args.list:
        width = max(len(x.name) for x in cases + peers)
        for c in cases:
            print(f"{c.name:<{width}}  {c.describe()}")
        for p in peers:
            print(f"{p.name:<{width}}  {p.about}")
        return 0

    if not os.access(runner.wsbench, os.X_OK):
        sys.exit(f"run.py: {runner.wsbench} is not built: run make bench")
    for p in list(peers):
        why = p.available()
        if why:
            runner.note(f"{p.name} skipped: {why}")
            peers.remove(p)
    if not peers:
        sys.exit("run.py: no peer can run")
    nofile = raise_nofile()
    if nofile < NOFILE:
        runner.note(f"the open-file limit is {nofile}, not {NOFILE}: the "
                    f"largest cases will fail")

    if args.perf:
        gws = [p for p in peers if p.name in ("gatewayd-c", "gatewayd-client",
                                              "gatewayd-cluster")]
        if not gws or not shutil.which("perf"):
            sys.exit("run.py: --perf needs gatewayd-c (or gatewayd-client) "
                     "and perf (apt-get install linux-perf)")
        perf_cases = cases if args.cases else [c for c in cases if c.name in (
            "echo-1000", "broadcast-1000", "connect-50",
            "echo-50", "broadcast-50", "connect-10")]
        profiles = runner.run_perf(perf_cases, gws)
        for name, top in profiles.items():
            # A cluster's: one profile per node.
            tops = top.items() if isinstance(top, dict) else [(None, top)]
            for node, rows in tops:
                print(f"\nperf, gatewayd (self time), {name}"
                      + (f", node {node}:" if node else ":"))
                for row in rows or []:
                    where = "kernel" if row["kernel"] else "user"
                    print(f"  {row['percent']:6.2f}%  {where:<6}  "
                          f"{row['symbol']}")
        out = args.out or os.path.join(runner.out_dir, "perf.json")
        with open(out, "w") as f:
            json.dump({"machine": machine(), "profiles": profiles,
                       "runs": runner.results}, f, indent=1)
        print(f"\nwrote {os.path.relpath(out, ROOT)}")
        return 0

    print(f"machine: {machine()}; open-file limit {nofile}; "
          f"{args.runs} run(s) per case and peer", flush=True)
    for p in peers:
        print(f"peer {p.name}: {p.about}")
    elapsed = runner.run(cases, peers)
    summary = summarize(cases, runner.results)
    print_table(cases, summary, peers)
    info = []
    checks = check_targets(summary, info) if not args.quick else []
    if checks:
        print_targets(checks, info)
    for note in runner.notes:
        print(f"note: {note}")
    failed = [r for r in runner.results if not r.get("ok")]
    problems = [p for r in runner.results for p in r.get("problems", [])]
    for pid, what in leftovers():
        problems.append(f"{what} (pid {pid}) still runs after its run")
    out = args.out or os.path.join(runner.out_dir, "results.json")
    with open(out, "w") as f:
        json.dump({"machine": machine(), "runs_per_case": args.runs,
                   "quick": args.quick, "elapsed_s": round(elapsed, 1),
                   "peers": {p.name: p.about for p in peers},
                   "cases": {c.name: c.describe() for c in cases},
                   "notes": runner.notes,
                   "summary": list(summary.values()),
                   "targets": checks, "info": info,
                   "runs": runner.results}, f, indent=1)
    print(f"\n{len(runner.results)} runs in {elapsed:.0f} s, "
          f"{len(failed)} failed; wrote {os.path.relpath(out, ROOT)}")
    for p in problems:
        print(f"problem: {p}")
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
