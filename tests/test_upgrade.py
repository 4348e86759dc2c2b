"""The upgrade (SIGUSR2, gatewayd upgrade, POST /upgrade): a new gatewayd
started from the binary at the running one's path takes over the
listeners, the rooms with their journals and backends, and every plain
TCP client with its frame parser, queued output and liveness; real
processes and sockets throughout.

After an upgrade the daemon's pid changes: the new process is a child of
the old one, which exits (status 0) once the new one is ready.  So that
the test can see the new daemon's exit status, and the backends' (the old
daemon spawned them, and they outlive it), pytest makes itself a child
subreaper for this module (prctl PR_SET_CHILD_SUBREAPER): what the old
daemon leaves behind becomes pytest's child, and is reaped here.  The
`daemon` fixture wraps conftest's `gateway`: it follows the daemon across
upgrades (the new pid comes from the old process's log line), stops the
last one with SIGTERM at the end (exit status 0), and kills and reports
any process of the daemon's left behind.

pytest reaps those orphans late (at the end of a test), as a slow init
would.  An upgraded daemon then takes an exited backend's process group
for one still running (test_upgraded_daemon_stops_as_quickly_as_a_fresh_
one): its stop waits stop_timeout, so the other tests set a short one to
stay quick.
"""
import asyncio
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import ssl
import queue
import subprocess
import threading
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

import conftest
import wsdeflate
import wsraw
from conftest import (BACKENDS, GATEWAYD, PYTHON, backend_cmd, free_port,
                      pid_gone, read_records, wait_for)

TIMEOUT = 5
SAN = "build-san" in GATEWAYD
SCRIPTED = os.path.join(BACKENDS, "scripted.py")
PR_SET_CHILD_SUBREAPER = 36

OLD_LINE = re.compile(r"upgrade: pid (\d+) took over (\d+) clients in (\d+) "
                      r"rooms; stopping with the rest")
NEW_LINE = re.compile(r"upgrade: took over (\d+) clients in (\d+) rooms "
                      r"from pid (\d+)")


# Processes

def _prctl(option, value):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl")


def proc_stat(pid):
    """[state, ppid, pgrp, ...] of /proc/PID/stat; None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid):
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children(pid):
    """The pids whose parent is pid (zombies included)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = proc_stat(name)
            if fields is not None and int(fields[1]) == pid:
                found.append(int(name))
    return found


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def reap(pid, timeout=20.0):
    """Wait for pid, a child of ours (a subreaper's orphan counts): its
    exit code as Popen gives it (-N for a signal)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {pid} did not exit in {timeout} s")
        time.sleep(0.01)


def fd_links(pid):
    """{fd: readlink} of a process."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return out


def fd_cloexec(pid, fd):
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return bool(int(line.split()[1], 8) & 0o2000000)
    raise AssertionError(f"no flags for fd {fd} of {pid}")


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    """Orphans of the daemons (the new daemon once the old one exits, the
    backends the old one spawned) become pytest's children."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    yield
    _prctl(PR_SET_CHILD_SUBREAPER, 0)
    # Every fixture is done: a zombie child left is an orphan nobody
    # waited for.
    for pid in children(os.getpid()):
        fields = proc_stat(pid)
        if fields is not None and fields[0] == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


class Daemon:
    """A gatewayd started by the gateway fixture, followed across
    upgrades: .pid is the process serving now."""

    def __init__(self, g):
        self.g = g
        self.pid = g.proc.pid
        self.pids = [self.pid]
        self.seen = {}          # every process of the daemons' trees:
                                # {pid: its start time}

    def __getattr__(self, name):
        return getattr(self.g, name)

    def note_tree(self):
        for pid in descendants(self.pid):
            fields = proc_stat(pid)
            if fields is not None:
                self.seen.setdefault(pid, fields[19])

    def backends(self):
        """The daemon's child processes that are running."""
        return sorted(p for p in children(self.pid) if alive(p))

    def upgrade(self, trigger=None, timeout=15.0, wait_old=True):
        """Upgrade (SIGUSR2 unless trigger, a function, does it), wait
        for the new process to take over and the old one to exit with
        status 0; returns (clients, rooms) the new one says it took over
        (.said keeps what the old one says it handed over).  Without
        wait_old, the old one's exit is left to old_exited()."""
        mark = self.upgrade_start(trigger)
        return self.upgrade_wait(mark, timeout, wait_old)

    def upgrade_start(self, trigger=None):
        """The first half of upgrade(): its mark for upgrade_wait."""
        self.note_tree()
        mark = (self.pid, len(OLD_LINE.findall(self.g.log())),
                self.g.log().count("upgrade failed"))
        if trigger is None:
            os.kill(self.pid, signal.SIGUSR2)
        else:
            trigger()
        return mark

    def upgrade_wait(self, mark, timeout=15.0, wait_old=True):
        old, before, failures = mark

        def taken():
            log = self.g.log()
            new = [m for m in NEW_LINE.finditer(log)
                   if int(m.group(3)) == old]
            olds = [m for m in OLD_LINE.finditer(log)]
            if len(olds) > before and new:
                return olds[-1], new[-1]
            if "upgrade failed" in log[-2000:] and \
                    log.count("upgrade failed") > failures:
                raise AssertionError("upgrade failed:\n" + log[-3000:])
            return None
        o, n = wait_for(taken, timeout, what="the new process to take over")
        new = int(o.group(1))
        assert new != old
        self.pid = new
        self.pids.append(new)
        # What the old process says it handed over, what the new one
        # says it took.
        self.said = (int(o.group(2)), int(o.group(3)))
        if wait_old:
            self.old_exited()
        return int(n.group(1)), int(n.group(2))

    def old_exited(self):
        """The process before the last upgrade has exited with status 0,
        and the new one is pytest's child now."""
        old, new = self.pids[-2:]
        status = self.wait_exit(old)
        assert status == 0, f"the old process {old} exited with {status}:\n" \
            + self.g.log()[-3000:]
        assert alive(new)
        assert int(proc_stat(new)[1]) == os.getpid()

    def wait_exit(self, pid, timeout=20.0):
        if pid == self.g.proc.pid:
            try:
                return self.g.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"the old process {pid} did not exit")
        return reap(pid, timeout)

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Stop the daemon serving now; its exit code."""
        self.note_tree()
        if self.pid == self.g.proc.pid:
            return self.g.stop(sig, timeout)
        if alive(self.pid):
            os.kill(self.pid, sig)
        try:
            return reap(self.pid, timeout)
        except AssertionError:
            os.kill(self.pid, signal.SIGKILL)
            reap(self.pid)
            raise

    def finish(self):
        """Stop the last daemon (exit 0), then make sure that nothing of
        the daemons' is left running."""
        errors = []
        for pid in self.pids[1:-1]:
            if alive(pid):
                errors.append(f"gatewayd {pid} still running after it "
                              "handed over")
                self.seen.setdefault(pid, proc_stat(pid)[19])
        # A new process the test did not follow (it failed halfway).
        for m in OLD_LINE.finditer(self.g.log()):
            pid = int(m.group(1))
            if pid not in self.pids and alive(pid) and \
                    str(self.g.config_path).encode() in open(
                        f"/proc/{pid}/cmdline", "rb").read():
                errors.append(f"gatewayd {pid} was not followed")
                self.pids.insert(-1, pid)
                self.pid = pid
        try:
            if self.pid != self.g.proc.pid and proc_stat(self.pid):
                status = self.stop()
                if status != 0:
                    errors.append(f"the upgraded gatewayd {self.pid} exited "
                                  f"with {status}")
        except (AssertionError, ChildProcessError) as e:
            errors.append(repr(e))
        left = []
        for pid, started in sorted(self.seen.items()):
            fields = proc_stat(pid)
            if fields is None or fields[19] != started:
                continue        # gone (the number may serve another now)
            if fields[0] not in ("Z", "X"):
                left.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if int(fields[1]) == os.getpid():
                try:
                    reap(pid, 5)
                except (AssertionError, ChildProcessError):
                    pass
        if left:
            errors.append(f"processes left behind (killed): {left}")
        return errors


@pytest.fixture
def daemon(gateway):
    """Like gateway, but returns a Daemon; at teardown the daemon serving
    then gets SIGTERM and must exit 0 (the gateway fixture then checks
    the first process's status and the log), and no process of the
    daemons' may be left."""
    made = []

    def start(config, **kw):
        d = Daemon(gateway(config, **kw))
        made.append(d)
        return d
    yield start
    errors = []
    for d in made:
        errors += d.finish()
    assert not errors, "\n".join(errors) + "\n" + \
        "\n".join(d.log()[-3000:] for d in made)


def admin_get(port, path, method="GET"):
    req = (f"{method} {path} HTTP/1.1\r\nHost: gatewayd\r\n"
           "Content-Length: 0\r\nConnection: close\r\n\r\n").encode()
    return wsraw.http_request(port, req, timeout=15)


def metrics(port):
    """The unlabelled samples of /metrics: {name: value}."""
    r = admin_get(port, "/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            out[name] = float(value)
    return out


def ctl(*args, timeout=30):
    """gatewayd's subcommand with args: (status, stdout, stderr)."""
    p = subprocess.run([GATEWAYD, *args], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def count(records, kind):
    return sum(1 for r in records if r.get("type") == kind)


def texts_by_client(records):
    out = {}
    for r in records:
        if r.get("type") == "message":
            out.setdefault(r["client"], []).append(r.get("text"))
    return out


async def async_wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def connect(g, path, **kw):
    kw.setdefault("open_timeout", TIMEOUT)
    return websockets.connect(g.url(path), **kw)


async def recv(ws, timeout=TIMEOUT):
    return await asyncio.wait_for(ws.recv(), timeout)


async def expect_close(ws, timeout=TIMEOUT):
    """Wait for the server to close ws: (code, reason, the messages that
    came before the close)."""
    got = []

    async def closed():
        try:
            while True:
                got.append(await ws.recv())
        except ConnectionClosed:
            pass
        await ws.wait_closed()
    await asyncio.wait_for(closed(), timeout)
    return ws.close_code, ws.close_reason, got


class Chatter:
    """A websockets client that sends numbered messages and collects what
    comes back; .closed is set if the connection ends."""

    def __init__(self, n, room, ws):
        self.n = n
        self.room = room
        self.ws = ws
        self.sent = []          # every message, in order
        self.echoed = []        # those the backend echoes
        self.got = []
        self.closed = None
        self.errors = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for msg in self.ws:
                self.got.append(msg)
        except ConnectionClosed:
            pass
        except Exception as e:      # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        self.closed = (self.ws.close_code, self.ws.close_reason)

    async def send(self, text, echo=True):
        try:
            await self.ws.send(text)
        except Exception as e:      # noqa: BLE001
            self.errors.append(repr(e))
            return
        self.sent.append(text)
        if echo:
            self.echoed.append(text)


class RawClient(threading.Thread):
    """A raw WebSocket client in a thread of its own: it sends the bytes
    it is handed (in order), answers pings while it waits, reassembles
    the messages it receives, and keeps the close frames and errors.  With
    reading false it reads nothing (its output piles up in gatewayd) until
    told to start."""

    def __init__(self, port, path, rcvbuf=None, reading=True,
                 answer_pings=True):
        super().__init__(daemon=True)
        self.answer_pings = answer_pings
        self.ended = None       # when the connection ended
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
        key = wsraw.make_key()
        sock.sendall(wsraw.handshake_request(path, key=key))
        status, headers, rest = wsraw.read_response_head(sock)
        assert status == 101, (status, headers)
        assert headers["sec-websocket-accept"] == wsraw.accept_for(key)
        self.conn = wsraw.RawConnection(sock, status, headers, rest)
        self.path = path
        self.out = queue.Queue()
        self.messages = []
        self.pings = []         # monotonic times
        self.pongs = []         # payloads of our pings answered
        self.closes = []
        self.errors = []
        self.reading = threading.Event()
        if reading:
            self.reading.set()
        self.done = threading.Event()
        self._parts = []
        self.start()

    def send(self, data):
        self.out.put(data)

    def run(self):
        while not self.done.is_set():
            try:
                while True:
                    self.conn.send_raw(self.out.get_nowait())
            except queue.Empty:
                pass
            except OSError as e:
                self.errors.append(repr(e))
                return
            if not self.reading.is_set():
                time.sleep(0.01)
                continue
            try:
                f = self.conn.recv_frame(0.02)
            except TimeoutError:
                continue
            except (EOFError, OSError) as e:
                self.ended = time.monotonic()
                if not self.done.is_set():
                    self.errors.append(repr(e))
                return
            if f.opcode == wsraw.OP_PING:
                self.pings.append(time.monotonic())
                if self.answer_pings:
                    self.conn.send_frame(wsraw.OP_PONG, f.payload)
            elif f.opcode == wsraw.OP_PONG:
                self.pongs.append(f.payload)
            elif f.opcode == wsraw.OP_CLOSE:
                self.ended = time.monotonic()
                self.closes.append(wsraw.parse_close(f.payload))
                return
            else:
                self._parts.append(f.payload)
                if f.fin:
                    self.messages.append(b"".join(self._parts).decode())
                    self._parts = []

    def wait_messages(self, n, timeout=10):
        wait_for(lambda: len(self.messages) >= n or self.closes or
                 self.errors, timeout,
                 what=f"{n} messages on {self.path} (have "
                 f"{len(self.messages)})")
        assert not self.closes and not self.errors, (self.closes,
                                                     self.errors)

    def close(self):
        """A close frame of ours, and the server's answer."""
        self.send(wsraw.encode_frame(wsraw.OP_CLOSE,
                                     wsraw.close_payload(1000)))
        wait_for(lambda: self.closes or self.errors or not self.is_alive(),
                 TIMEOUT, what="the close handshake")
        self.done.set()
        self.join(TIMEOUT)
        self.conn.close()
        return self.closes

    def abort(self):
        self.done.set()
        self.join(TIMEOUT)
        self.conn.close()


# 1. The issue's scenario: 200 clients chatting in 10 rooms, twice

N_ROOMS = 10            # 5 exec:, 5 unix:
PER_ROOM = 20
CHAT_EVERY = 0.15       # seconds between a chatter's messages
PENDING = 5             # clients whose output piles up, in rooms 0..4
PENDING_MSGS = 25
PENDING_SIZE = 6000


def fragment_plan(i, rnd):
    """What fragmented client i sends in round rnd: (the message, the
    bytes before the upgrade, the bytes after).  Some stop inside a
    UTF-8 character, some inside a frame's payload or header, one inside
    a ping frame."""
    text = f"frag{i}-r{rnd}-h\u00e9llo-" + "z" * (40 + i) + f"-end{i}"
    data = text.encode()
    cut = data.index("\u00e9".encode()) + 1 if i % 3 == 0 else 12
    first = wsraw.encode_frame(wsraw.OP_TEXT, data[:cut], fin=False)
    middle = wsraw.encode_frame(wsraw.OP_CONT, data[cut:cut + 10], fin=False)
    last = wsraw.encode_frame(wsraw.OP_CONT, data[cut + 10:], fin=True)
    ping = wsraw.encode_frame(wsraw.OP_PING, f"p{i}r{rnd}".encode())
    if i % 4 == 1:          # stops inside the last frame's payload
        before, after = first + middle + last[:9], last[9:]
    elif i % 4 == 2:        # stops inside the last frame's header
        before, after = first + middle + last[:1], last[1:]
    elif i == 3:            # stops inside a ping between fragments
        before, after = first + ping[:5], ping[5:] + middle + last
    else:                   # between frames
        before, after = first, middle + last
    return text, before, after


async def test_clients_in_ten_rooms_kept_across_two_upgrades(
        unix_room, daemon, tmp_path):
    """200 clients chat in 5 exec: and 5 unix: rooms with pings every
    second, 10 clients are in the middle of a fragmented message (and some
    in the middle of a frame), 5 have output piled up in gatewayd; SIGUSR2
    twice while they chat.  Nobody sees a close or an error; every echo
    and every backend record comes once, in order; the ids, the backend
    processes and connections are the same (no new hello, no new open);
    the daemon's pid changes and the old process exits 0."""
    started = time.monotonic()
    rec = tmp_path / "rec"
    rec.mkdir()
    sock = unix_room([PYTHON, SCRIPTED, "--record", str(rec / "unix.jsonl")])
    admin = free_port()
    rooms = [f"/e{k}" for k in range(5)] + [f"/u{k}" for k in range(5)]
    body = "".join(
        f"[resource /e{k}]\nbackend = "
        f"{backend_cmd('scripted.py', '--record', rec / f'e{k}.jsonl')}\n"
        for k in range(5))
    body += "".join(f"[resource /u{k}]\nbackend = unix:{sock}\n"
                    for k in range(5))
    d = daemon(f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
ping_interval = 1s
pong_timeout = 5s
send_buffer = 16K
stop_timeout = 300ms
{body}""")
    files = [rec / f"e{k}.jsonl" for k in range(5)] + [rec / "unix.jsonl"]

    def all_records():
        return [r for f in files for r in read_records(f)]

    wait_for(lambda: count(all_records(), "hello") == N_ROOMS,
             what="every room's hello")
    exec_pids = d.backends()
    assert len(exec_pids) == 5, exec_pids

    chatters = []
    for k, room in enumerate(rooms):
        wss = await asyncio.gather(*(connect(d, f"{room}?n={k}-{j}")
                                     for j in range(PER_ROOM)))
        chatters += [Chatter(f"{k}-{j}", room, ws)
                     for j, ws in enumerate(wss)]
    frags = [RawClient(d.port, f"{room}?frag={i}")
             for i, room in enumerate(rooms)]
    pending = [RawClient(d.port, f"{rooms[i if i < 3 else i + 2]}?pending="
                         f"{i}", rcvbuf=4096, reading=False)
               for i in range(PENDING)]
    n_clients = len(chatters) + len(frags) + len(pending)
    wait_for(lambda: count(all_records(), "open") == n_clients,
             what="every open record")
    opens = {r["client"]: r for r in all_records() if r["type"] == "open"}
    ids = {r["query"]: r["client"] for r in opens.values()}

    stop = asyncio.Event()

    async def chat(c):
        k = 0
        while not stop.is_set():
            await c.send(f"{c.n}:{k}")
            k += 1
            await asyncio.sleep(CHAT_EVERY)

    for rnd in (1, 2):
        stop.clear()
        chats = [asyncio.ensure_future(chat(c)) for c in chatters]
        await asyncio.sleep(0.5)
        plans = [fragment_plan(i, rnd) for i in range(len(frags))]
        for f, (_, before, _) in zip(frags, plans):
            f.send(before)
        for p in pending:
            p.reading.clear()
        await asyncio.sleep(0.1)
        for i, p in enumerate(pending):
            for m in range(PENDING_MSGS):
                p.send(wsraw.encode_frame(wsraw.OP_TEXT, (
                    f"pending{i}-r{rnd}-{m:03d}-".ljust(PENDING_SIZE, "y")
                ).encode()))
        # The echoes pile up in gatewayd, the fragments reach its parser.
        least = PENDING * PENDING_MSGS * PENDING_SIZE // 2
        await async_wait(lambda: metrics(admin)["gatewayd_output_bytes"]
                         >= least, 10, "output to pile up")
        await asyncio.sleep(0.3)
        old = d.pid
        clients, n_rooms = await asyncio.to_thread(d.upgrade)
        assert (clients, n_rooms) == (n_clients, N_ROOMS)
        assert d.said == (n_clients, N_ROOMS)
        # The output that waited went over: nobody has read it yet.
        assert metrics(admin)["gatewayd_output_bytes"] >= least
        for f, (_, _, after) in zip(frags, plans):
            f.send(after)
        for p in pending:
            p.reading.set()
        await asyncio.sleep(1.2)
        stop.set()
        await asyncio.gather(*chats)
        for i, (f, (text, _, _)) in enumerate(zip(frags, plans)):
            f.wait_messages(rnd)
            assert f.messages[rnd - 1] == text, (i, f.messages)
        assert frags[3].pongs[-1] == f"p3r{rnd}".encode()
        for i, p in enumerate(pending):
            p.wait_messages(rnd * PENDING_MSGS)
            got = p.messages[(rnd - 1) * PENDING_MSGS:]
            assert [m[:20] for m in got] == [
                f"pending{i}-r{rnd}-{m:03d}-".ljust(20, "y")
                for m in range(PENDING_MSGS)]
            assert all(len(m) == PENDING_SIZE for m in got)
        await async_wait(lambda: all(len(c.got) >= len(c.echoed)
                                     for c in chatters), 15, "every echo")
        for c in chatters:
            assert c.closed is None and not c.errors, (c.n, c.closed,
                                                       c.errors)
            assert c.got == c.echoed, (c.n, c.got[-5:], c.echoed[-5:])
        # The same backends: processes running, not restarted.
        assert sorted(p for p in exec_pids if alive(p)) == exec_pids
        assert int(proc_stat(exec_pids[0])[1]) == os.getpid()
        assert d.pid != old
        # Liveness went over: the idle raw clients are pinged still.
        since = time.monotonic() - 1.0
        await async_wait(lambda: all(any(t > since for t in f.pings)
                                     for f in frags), 5, "pings")

    # Commands naming the ids of before still reach their clients.
    by_room = {}
    for c in chatters:
        by_room.setdefault(c.room, []).append(c)
    for room, cs in by_room.items():
        others = [ids[f"n={c.n}"] for c in cs[1:]]
        await cs[0].send("cmd:" + json.dumps({
            "type": "send", "client": others, "text": f"hi {room}"}),
            echo=False)
    await async_wait(lambda: all(c.got[-1:] == [f"hi {c.room}"]
                                 for cs in by_room.values() for c in cs[1:]),
                     10, "the commands' messages")

    # Every record once, in order, by the same backends.
    records = all_records()
    by_client = texts_by_client(records)
    for c in chatters:
        assert by_client[ids[f"n={c.n}"]] == c.sent, c.n
    for i, f in enumerate(frags):
        assert by_client[ids[f"frag={i}"]] == f.messages
    assert count(records, "hello") == N_ROOMS
    assert not [r for r in records if r.get("resumed") or
                r.get("redelivered")]
    assert count(records, "open") == n_clients
    assert count(records, "close") == 0
    assert sorted(p for p in exec_pids if alive(p)) == exec_pids
    assert len(d.pids) == 3 and len(set(d.pids)) == 3

    for c in chatters:
        assert c.closed is None and not c.errors
    await asyncio.gather(*(c.ws.close() for c in chatters))
    for f in frags + pending:
        assert f.close() == [(1000, "")]
    wait_for(lambda: count(all_records(), "close") == n_clients,
             what="the close records")
    assert {r["code"] for r in all_records() if r["type"] == "close"} == \
        {1000}
    print(f"200 clients, two upgrades: {time.monotonic() - started:.1f} s")


# 2. gatewayd upgrade, POST /upgrade, GET /upgrade

def chat_config(admin, rec):
    return f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
stop_timeout = 300ms
[resource /chat]
backend = {backend_cmd("scripted.py", "--record", rec)}
"""


async def whoami(ws):
    await ws.send("whoami")
    return json.loads(await recv(ws))


async def echo(ws, text):
    await ws.send(text)
    got = await recv(ws)
    assert got == text, (got, text)


async def test_upgrade_by_subcommand_and_admin(daemon, tmp_path):
    """gatewayd upgrade -a ADMIN (and -c FILE) prints "upgraded: ..." and
    exits 0; a raw POST /upgrade is answered 200; GET /upgrade 405 and
    no upgrade.  The client and its backend stay the same throughout; a
    tap does not go over (its connection ends with the old process)."""
    admin = free_port()
    rec = tmp_path / "chat.jsonl"
    d = daemon(chat_config(admin, rec))
    addr = f"127.0.0.1:{admin}"
    async with connect(d, "/chat") as ws:
        me = await whoami(ws)
        r = admin_get(admin, "/upgrade")
        assert (r.status, r.body) == (405, b"POST /upgrade\n")
        assert "upgrade: starting" not in d.log()
        tap = subprocess.Popen([GATEWAYD, "tap", "-a", addr, "/chat"],
                               stdout=subprocess.PIPE, text=True)
        try:
            await asyncio.sleep(0.3)
            await echo(ws, "before")
            result = {}

            def by_ctl():
                result["ctl"] = ctl("upgrade", "-a", addr)
            old = d.pid
            await asyncio.to_thread(d.upgrade, by_ctl)
            status, out, err = result["ctl"]
            assert status == 0, (out, err)
            assert out == f"upgraded: pid {old} handed over to a new " \
                "process\n", (out, err)
            # The tap was the old process's: it ends.
            tap_out, _ = await asyncio.to_thread(tap.communicate,
                                                 timeout=TIMEOUT)
            assert '"before"' in tap_out
        finally:
            if tap.poll() is None:
                tap.kill()
                tap.wait()
        await echo(ws, "after ctl -a")

        def by_ctl_c():
            result["ctl"] = ctl("upgrade", "-c", str(d.config_path))
        old = d.pid
        await asyncio.to_thread(d.upgrade, by_ctl_c)
        assert result["ctl"][0] == 0, result["ctl"]
        assert result["ctl"][1].startswith(f"upgraded: pid {old} ")
        await echo(ws, "after ctl -c")

        def by_post():
            result["post"] = admin_get(admin, "/upgrade", "POST")
        old = d.pid
        await asyncio.to_thread(d.upgrade, by_post)
        r = result["post"]
        assert r.status == 200, r
        assert r.body == f"upgraded: pid {old} handed over to a new " \
            "process\n".encode()
        await echo(ws, "after POST")
        assert await whoami(ws) == me
        assert len(set(d.pids)) == 4
    records = read_records(rec, until=lambda r: count(r, "close") == 1)
    assert count(records, "hello") == 1 and count(records, "open") == 1
    assert texts_by_client(records)[me["client"]] == [
        "whoami", "before", "after ctl -a", "after ctl -c", "after POST",
        "whoami"]


# 3. A new binary that fails: nothing changes

FAILING = "#!/bin/sh\necho 'a broken build' >&2\nexit 1\n"


def install(path, data, mode=0o755):
    """Put data at path as an install does: a new file renamed over."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.rename(tmp, path)


def all_cloexec(pid):
    """The descriptors of pid from 3 up that would survive an exec."""
    return [fd for fd in fd_links(pid) if fd > 2 and not fd_cloexec(pid, fd)]


async def test_failed_upgrade_changes_nothing(daemon, tmp_path,
                                              monkeypatch):
    """The daemon runs from a copy of the binary; the file at that path is
    replaced by a script that exits 1, then by the real daemon with the
    config made invalid, then with a room's resource changed: SIGUSR2
    and gatewayd upgrade (which exits 1, "upgrade failed: ...") change
    nothing (same pid, clients chatting without a close, no descriptor
    gained or left open across exec), and the log says why.  A reload
    (for the changed resource) then the upgrade succeeds."""
    exe = tmp_path / "bin" / "gatewayd"
    exe.parent.mkdir()
    shutil.copy(GATEWAYD, exe)
    monkeypatch.setattr(conftest, "GATEWAYD", str(exe))
    admin = free_port()
    rec = tmp_path / "chat.jsonl"
    config = chat_config(admin, rec) + f"""[resource /p/*]
backend = {backend_cmd("scripted.py")}
"""
    d = daemon(config)
    config = d.config_path.read_text()
    pid = d.pid
    assert os.readlink(f"/proc/{pid}/exe") == str(exe)
    addr = f"127.0.0.1:{admin}"
    clients = [await connect(d, f"/chat?n={i}") for i in range(3)]
    ids = [(await whoami(ws))["client"] for ws in clients]
    backend = d.backends()
    fds = fd_links(pid)
    assert all_cloexec(pid) == []

    async def still_the_same(what):
        assert d.pid == pid and alive(pid), what
        for i, ws in enumerate(clients):
            await echo(ws, f"{what} {i}")
            assert ws.close_code is None
        assert d.backends() == backend
        assert fd_links(pid) == fds, what
        assert all_cloexec(pid) == [], what

    async def fails(reason, trigger):
        n = d.log().count("upgrade failed")
        if trigger == "signal":
            os.kill(pid, signal.SIGUSR2)
        else:
            status, out, err = await asyncio.to_thread(ctl, "upgrade", "-a",
                                                       addr)
            assert status == 1, (out, err)
            assert out == f"upgrade failed: {reason}\n", (out, err)
        log = await async_wait(lambda: d.log().count("upgrade failed") > n
                               and d.log(), 15, "upgrade failed")
        assert f"upgrade failed: {reason}; carrying on" in log, log[-2000:]
        assert "took over" not in log
        await still_the_same(f"{reason} ({trigger})")
        return log

    exited = "the new process exited with status 1 (its log says why)"
    install(exe, FAILING.encode())
    for how in ("signal", "ctl"):
        log = await fails(exited, how)
    assert log.count("a broken build") == 2

    install(exe, open(GATEWAYD, "rb").read())
    d.config_path.write_text(config.replace("[resource /chat]",
                                            "[resource /chat"))
    for how in ("signal", "ctl"):
        log = await fails(exited, how)
    assert log.count("configuration is invalid") == 2, log[-2000:]

    # A room's resource that changed: reload it first.
    d.config_path.write_text(config.replace(f"--record {rec}",
                                            f"--record {rec}.2"))
    log = await fails(exited, "signal")
    assert "the configuration changed: reload it (SIGHUP) first" in log
    assert "upgrade: room /chat: its resource /chat is not the same" in log

    # A backend spawned now inherits nothing.
    async with connect(d, "/p/x") as px:
        spawned = (await whoami(px))["pid"]
        assert sorted(fd_links(spawned)) == [0, 1, 2]

    os.kill(pid, signal.SIGHUP)
    await async_wait(lambda: "reload: " in d.log() and "applied" in
                     d.log(), 10, "the reload")
    for ws in clients:
        await echo(ws, "reloaded")
    backend = d.backends()
    await asyncio.to_thread(d.upgrade)
    assert d.pid != pid
    for i, ws in enumerate(clients):
        await echo(ws, f"upgraded {i}")
        assert (await whoami(ws))["client"] == ids[i]
    for ws in clients:
        await ws.close()


async def test_clients_wait_in_the_backlog_while_the_new_binary_starts(
        daemon, tmp_path, monkeypatch):
    """The new binary takes a second to start (a wrapper that sleeps,
    then runs the real one): meanwhile the old process is blocked, a new
    client waits in the listener's backlog and is served by the new
    process, and a message a member sent meanwhile is answered then."""
    exe = tmp_path / "bin" / "gatewayd"
    exe.parent.mkdir()
    shutil.copy(GATEWAYD, exe)
    monkeypatch.setattr(conftest, "GATEWAYD", str(exe))
    rec = tmp_path / "chat.jsonl"
    d = daemon(chat_config(free_port(), rec))
    member = await connect(d, "/chat")
    await echo(member, "before")
    install(exe, f"#!/bin/sh\nsleep 1\nexec {GATEWAYD} \"$@\"\n".encode())
    mark = d.upgrade_start()
    await async_wait(lambda: "upgrade: starting" in d.log(), 5, "the start")
    await member.send("meanwhile")
    started = time.monotonic()
    async with connect(d, "/chat?late") as late:
        waited = time.monotonic() - started
        assert "upgrade: took over 1 clients" in d.log()
        await echo(late, "late")
    assert waited > 0.5, waited
    assert await recv(member) == "meanwhile"
    await asyncio.to_thread(d.upgrade_wait, mark)
    assert os.readlink(f"/proc/{d.pid}/exe") == GATEWAYD
    await echo(member, "after")
    await member.close()


async def test_liveness_goes_over(daemon, tmp_path):
    """Pings, pong deadlines and idle timeouts run on from where they
    were: a client pinged before the upgrade that never answers is
    dropped pong_timeout after that ping, one that sent its last message
    before it is closed idle_timeout after that message (not counted
    afresh from the upgrade), and one that keeps talking stays."""
    rec = tmp_path / "r.jsonl"
    d = daemon(f"""[gateway]
ping_interval = 1s
pong_timeout = 2s
stop_timeout = 300ms
[resource /r]
idle_timeout = 3s
backend = {backend_cmd("scripted.py", "--record", rec)}
[resource /m]
backend = {backend_cmd("scripted.py", "--record", rec)}
""")
    talker = await connect(d, "/r?talker")
    mute = RawClient(d.port, "/m?mute", answer_pings=False)
    idle = RawClient(d.port, "/r?idle")
    idle.send(wsraw.encode_frame(wsraw.OP_TEXT, b"last words"))
    said = time.monotonic()
    idle.wait_messages(1)
    wait_for(lambda: mute.pings, what="the mute client's ping")
    pinged = mute.pings[0]
    await asyncio.sleep(0.5)
    await asyncio.to_thread(d.upgrade)
    k = 0
    while not (mute.ended and idle.ended):
        assert time.monotonic() - said < 8, "the two are still there"
        await echo(talker, f"talk {k}")
        await asyncio.sleep(0.2)
        k += 1
    assert mute.closes == [] and len(mute.pings) == 1
    assert 1.7 <= mute.ended - pinged <= 2.7, mute.ended - pinged
    assert idle.closes == [(1001, "idle timeout")], idle.closes
    assert 2.7 <= idle.ended - said <= 3.7, idle.ended - said
    assert len(idle.pings) >= 2             # answered, and pinged again
    idle.abort()
    mute.abort()
    # Both rooms record into the one file.
    closes = {r["client"]: (r["code"], r["reason"]) for r in read_records(
        rec, until=lambda r: count(r, "close") == 2) if r["type"] == "close"}
    opens = {r["query"]: r["client"] for r in read_records(rec)
             if r["type"] == "open"}
    assert closes == {opens["mute"]: (1006, "pong timeout"),
                      opens["idle"]: (1001, "idle timeout")}
    assert talker.close_code is None
    await talker.close()


# 4. TLS clients and handshakes do not go over

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A test CA and a certificate for 127.0.0.1: (cert, key, client
    context)."""
    import trustme
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = root / "cert.pem", root / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return cert, key, ctx


async def test_tls_clients_and_handshakes_closed(daemon, tmp_path, certs):
    """TLS clients get close 1001 "server upgrading" while the plain
    clients of their room carry on, and the room's backend gets a close
    record for each of them; a client whose backend has not yet let it in
    (authorize = yes) and one in the middle of its HTTP request get 503.
    The TLS listener goes over: a new wss client is served."""
    cert, key, ctx = certs
    tls_port = free_port()
    rec, auth = tmp_path / "r.jsonl", tmp_path / "auth.jsonl"
    d = daemon(f"""[gateway]
listen = 127.0.0.1:{{port}}
listen = 127.0.0.1:{tls_port} tls
tls_certificate = {cert}
tls_key = {key}
stop_timeout = 300ms
[resource /r]
backend = {backend_cmd("scripted.py", "--record", rec)}
[resource /auth]
authorize = yes
backend = {backend_cmd("scripted.py", "--record", auth)}
""")
    wss = f"wss://127.0.0.1:{tls_port}"
    plain = [await connect(d, f"/r?plain={i}") for i in range(3)]
    secure = [await websockets.connect(f"{wss}/r?tls={i}", ssl=ctx,
                                       open_timeout=TIMEOUT)
              for i in range(3)]
    let_in = await connect(d, "/auth?verdict=accept")
    plain_ids = [(await whoami(ws))["client"] for ws in plain]
    tls_ids = [(await whoami(ws))["client"] for ws in secure]
    waiting = wsraw.connect(d.port)
    waiting.sendall(wsraw.handshake_request("/auth?verdict=ignore"))
    halfway = wsraw.connect(d.port)
    halfway.sendall(wsraw.handshake_request("/r")[:30])
    records = read_records(auth, until=lambda r: count(r, "open") == 2)
    waiting_id = records[-1]["client"]
    assert records[-1]["authorize"] is True

    # The old process stays until its TLS clients have answered its close.
    clients, rooms = await asyncio.to_thread(d.upgrade, wait_old=False)
    assert (clients, rooms) == (4, 2)
    for ws in secure:
        code, reason, got = await expect_close(ws)
        assert (code, reason, got) == (1001, "server upgrading", [])
    for sock in (waiting, halfway):
        status, headers, rest = wsraw.read_response_head(sock)
        assert status == 503, (status, headers, rest)
        sock.close()
    await asyncio.to_thread(d.old_exited)
    for i, ws in enumerate(plain):
        await echo(ws, f"still here {i}")
        assert (await whoami(ws))["client"] == plain_ids[i]
    await echo(let_in, "let in")
    # The new process has the TLS listener, and the certificate.
    async with websockets.connect(f"{wss}/r?late", ssl=ctx,
                                  open_timeout=TIMEOUT) as late:
        await echo(late, "wss after the upgrade")
        late_id = (await whoami(late))["client"]

    closes = [r for r in read_records(rec, until=lambda r: any(
        x["type"] == "close" and x["client"] == late_id for x in r))
        if r["type"] == "close"]
    assert [r["code"] for r in closes if r["client"] == late_id] == [1000]
    closes = [r for r in closes if r["client"] != late_id]
    assert sorted(r["client"] for r in closes) == sorted(tls_ids)
    assert {(r["code"], r["reason"]) for r in closes} == \
        {(1001, "server upgrading")}
    closes = [r for r in read_records(auth, until=lambda r: count(
        r, "close") == 1) if r["type"] == "close"]
    assert [(r["client"], r["code"]) for r in closes] == [(waiting_id, 1001)]
    for ws in plain + [let_in]:
        assert ws.close_code is None
        await ws.close()
    # The old process's log line counts the clients that went.
    assert d.said == (4, 2), d.said


# 5. permessage-deflate: shared streams go over, a client's own do not

async def test_deflate_clients(daemon, tmp_path):
    """A client with zlib streams of its own (compression_no_context_
    takeover = no) is closed 1001; one with the default, shared streams,
    goes over (in the middle of a compressed fragmented message) and keeps
    exchanging compressed messages."""
    own_rec, shared_rec = tmp_path / "own.jsonl", tmp_path / "shared.jsonl"
    d = daemon(f"""[gateway]
stop_timeout = 300ms
[resource /own]
compression_no_context_takeover = no
backend = {backend_cmd("scripted.py", "--record", own_rec)}
[resource /shared]
backend = {backend_cmd("scripted.py", "--record", shared_rec)}
""")
    own = wsdeflate.open_deflate(d.port, "/own")
    shared = wsdeflate.open_deflate(d.port, "/shared")
    try:
        assert not own.agreement.server_no_context_takeover
        assert shared.agreement.server_no_context_takeover
        assert shared.agreement.client_no_context_takeover

        def exchange(conn, text):
            conn.send_message(wsraw.OP_TEXT, text)
            opcode, data, compressed = conn.recv_message(controls=True)
            assert (opcode, data.decode(), compressed) == \
                (wsraw.OP_TEXT, text, True)
        for k in range(3):
            exchange(own, f"own {k} " + "abc" * 200)
            exchange(shared, f"shared {k} " + "abc" * 200)
        straddling = "straddling " + "xyz" * 400
        payload = shared.compress(straddling.encode())
        first = bytearray(wsraw.encode_frame(wsraw.OP_TEXT, payload[:10],
                                             fin=False))
        first[0] |= 0x40
        shared.conn.send_raw(bytes(first))
        rest = wsraw.encode_frame(wsraw.OP_CONT, payload[10:], fin=True)
        shared.conn.send_raw(rest[:7])
        time.sleep(0.3)

        await asyncio.to_thread(d.upgrade, wait_old=False)
        assert own.recv_close() == (1001, "server upgrading")
        own.conn.send_frame(wsraw.OP_CLOSE, wsraw.close_payload(1001))
        await asyncio.to_thread(d.old_exited)
        shared.conn.send_raw(rest[7:])
        opcode, data, compressed = shared.recv_message(controls=True)
        assert (data.decode(), compressed) == (straddling, True)
        for k in range(3, 6):
            exchange(shared, f"shared {k} " + "abc" * 200)
        shared.conn.send_frame(wsraw.OP_CLOSE, wsraw.close_payload(1000))
        assert shared.recv_close() == (1000, "")
    finally:
        own.close()
        shared.close()
    own_records = read_records(own_rec, until=lambda r: count(r, "close"))
    assert [(r["code"], r["reason"]) for r in own_records
            if r["type"] == "close"] == [(1001, "server upgrading")]
    shared_records = read_records(shared_rec,
                                  until=lambda r: count(r, "close"))
    assert [r["text"] for r in shared_records if r["type"] == "message"] == \
        [f"shared {k} " + "abc" * 200 for k in range(3)] + [straddling] + \
        [f"shared {k} " + "abc" * 200 for k in range(3, 6)]
    assert [r["code"] for r in shared_records if r["type"] == "close"] == \
        [1000]


# 6. mode = client: the program keeps running

LINE_PROGRAM = """#!/bin/sh
echo "pid $$"
while read -r line; do
    case "$line" in
    exit) exit 3 ;;
    *) echo "echo $line" ;;
    esac
done
"""


async def test_client_mode_program_kept(daemon, tmp_path):
    """A client of a mode = client room keeps its program (same pid)
    across the upgrade and goes on talking to it; when the program exits
    after the upgrade (status 3), the client is closed 1000 and the log
    says its status is unknown.  A program the new daemon started has
    its status known again (1011)."""
    prog = tmp_path / "lines.sh"
    prog.write_text(LINE_PROGRAM)
    prog.chmod(0o755)
    d = daemon(f"""[gateway]
stop_timeout = 300ms
[resource /lines]
mode = client
backend = exec:{prog}
""")
    a = await connect(d, "/lines")
    b = await connect(d, "/lines")
    pid_a = int((await recv(a)).split()[1])
    pid_b = int((await recv(b)).split()[1])
    assert sorted(d.backends()) == sorted([pid_a, pid_b])
    await a.send("one")
    assert await recv(a) == "echo one"

    clients, rooms = await asyncio.to_thread(d.upgrade)
    assert (clients, rooms) == (2, 2)
    assert alive(pid_a) and alive(pid_b)
    assert int(proc_stat(pid_a)[1]) == os.getpid()     # not restarted
    await a.send("two")
    assert await recv(a) == "echo two"
    await b.send("three")
    assert await recv(b) == "echo three"

    await a.send("exit")
    code, reason, got = await expect_close(a)
    assert (code, got) == (1000, []), (code, reason, got)
    log = d.log()
    assert re.search(rf"c\d+: backend \(pid {pid_a}\) exited; its status is "
                     r"unknown \(it was started before the upgrade\)", log), \
        log[-2000:]
    await b.send("four")
    assert await recv(b) == "echo four"

    c = await connect(d, "/lines")
    pid_c = int((await recv(c)).split()[1])
    assert int(proc_stat(pid_c)[1]) == d.pid
    await c.send("exit")
    code, reason, got = await expect_close(c)
    assert code == 1011, (code, reason)
    assert f"backend (pid {pid_c}) exited with status 3" in d.log()
    await b.close()
    wait_for(lambda: pid_gone(pid_b), what="b's program to end")


# 7. delivery = ack: the journal and its numbering go over

ACK_PROGRAM = r"""
import json, os, sys
log = open(sys.argv[1], "a", buffering=1)
hold = False
for line in sys.stdin:
    r = json.loads(line)
    r["pid"] = os.getpid()
    log.write(json.dumps(r) + "\n")
    text = r.get("text")
    if text == "hold":
        hold = True
    elif text == "release":
        hold = False
    if r.get("type") == "message" and not r.get("redelivered"):
        sys.stdout.write(json.dumps({"type": "send", "client": r["client"],
                                     "text": text}) + "\n")
    if "seq" in r and not hold:
        sys.stdout.write(json.dumps({"type": "ack", "seq": r["seq"]}) + "\n")
    sys.stdout.flush()
"""


async def test_ack_delivery_numbering_and_journal(daemon, tmp_path):
    """delivery = ack: the seq numbers go on across the upgrade with no
    gap and no reuse, and the records the backend has not acknowledged
    (before and after the upgrade) are kept: killed after the upgrade,
    the backend's successor gets every one of them again, marked
    redelivered, with its number."""
    prog = tmp_path / "ack.py"
    prog.write_text(ACK_PROGRAM)
    rec = tmp_path / "ack.jsonl"
    admin = free_port()
    d = daemon(f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
stop_timeout = 300ms
[resource /ack]
delivery = ack
restart_delay = 100ms
backend = exec:{PYTHON} {prog} {rec}
""")
    ws = await connect(d, "/ack")
    for k in range(5):
        await echo(ws, f"acked {k}")
    await echo(ws, "hold")
    held = [f"held {k}" for k in range(5)]
    for text in held:
        await echo(ws, text)
    unconfirmed = metrics(admin)["gatewayd_backend_unconfirmed_bytes"]
    assert unconfirmed > 0
    before = read_records(rec)
    pid = before[0]["pid"]

    await asyncio.to_thread(d.upgrade)
    assert metrics(admin)["gatewayd_backend_unconfirmed_bytes"] == \
        unconfirmed
    after = [f"after {k}" for k in range(5)]
    for text in after:
        await echo(ws, text)
    records = read_records(rec)
    assert {r["pid"] for r in records} == {pid}
    seqs = [r["seq"] for r in records if "seq" in r]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    by_seq = {r["seq"]: r for r in records if "seq" in r}
    first_held = next(s for s, r in by_seq.items() if r.get("text") ==
                      "hold")

    # The successor of a killed backend gets what was not acknowledged.
    os.kill(pid, signal.SIGKILL)
    new = read_records(rec, until=lambda r: any(
        x.get("text") == after[-1] and x["pid"] != pid for x in r))
    new = [r for r in new if r["pid"] != pid]
    assert new[0]["type"] == "hello" and new[0].get("resumed") is True
    again = [r for r in new if r.get("redelivered")]
    assert [r["seq"] for r in again] == list(range(first_held,
                                                  seqs[-1] + 1))
    assert [r.get("text") for r in again] == ["hold"] + held + after
    await echo(ws, "release")
    last = read_records(rec, until=lambda r: r[-1].get("text") ==
                        "release")[-1]
    # Numbers are never reused: the resumed open took one too.
    assert last["seq"] > seqs[-1]
    assert ws.close_code is None
    await ws.close()


# 8. The upgraded daemon reloads and stops

async def test_upgraded_daemon_reloads_and_stops(unix_room, daemon,
                                                 tmp_path):
    """After an upgrade, SIGHUP reloads (a new resource is served, the
    clients stay) and SIGTERM stops: clients get 1001, the backends their
    close records and EOF (the exec: one exits 0), the daemon exits 0."""
    erec, urec = tmp_path / "e.jsonl", tmp_path / "u.jsonl"
    sock = unix_room([PYTHON, SCRIPTED, "--record", str(urec)])
    d = daemon(f"""[gateway]
stop_timeout = 500ms
[resource /e]
backend = {backend_cmd("scripted.py", "--record", erec)}
[resource /u]
backend = unix:{sock}
""")
    e = await connect(d, "/e")
    u = await connect(d, "/u")
    backend = (await whoami(e))["pid"]
    await whoami(u)
    await asyncio.to_thread(d.upgrade)
    await echo(e, "upgraded")
    await echo(u, "upgraded")

    d.config_path.write_text(d.config_path.read_text() +
                             f"[resource /added]\nbackend = "
                             f"{backend_cmd('scripted.py')}\n")
    os.kill(d.pid, signal.SIGHUP)
    await async_wait(lambda: "reload: " in d.log() and " applied" in
                     d.log(), 10, "the reload")
    async with connect(d, "/added") as added:
        await echo(added, "added")
    await echo(e, "reloaded")
    await echo(u, "reloaded")

    pid = d.pid
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    for ws in (e, u):
        code, reason, _ = await expect_close(ws)
        assert (code, reason) == (1001, "server shutting down")
    status = await asyncio.to_thread(reap, pid)
    took = time.monotonic() - started
    assert status == 0, d.log()[-3000:]
    assert reap(backend, 5) == 0        # it read EOF and exited
    for path in (erec, urec):
        assert [(r["code"], r["reason"]) for r in read_records(path)
                if r["type"] == "close"] == [(1001, "server shutting down")]
    assert "stopped" in d.log().splitlines()[-1]
    print(f"the upgraded daemon stopped in {took:.2f} s")


async def test_upgraded_daemon_stops_as_quickly_as_a_fresh_one(daemon,
                                                               tmp_path):
    """SIGTERM to an upgraded daemon whose exec: backend exits at once on
    EOF: the stop takes as long as a fresh daemon's, not stop_timeout.

    A backend taken over is not the new daemon's child: it learns of its
    exit from a pidfd, which fires when the process becomes a zombie,
    before its new parent (here pytest, a subreaper that reaps late; in
    production init, or a container's pid 1 that may never reap) has
    reaped it.  The daemon then finds the dead process's group still
    there (kill(-pgid, 0) counts zombies), takes it for a child left
    running, sends it SIGTERM, waits stop_timeout and logs "still running
    after ...; sending SIGKILL"."""
    def config(rec):
        return f"""[gateway]
stop_timeout = 2s
[resource /e]
backend = {backend_cmd("scripted.py", "--record", rec)}
"""
    fresh = daemon(config(tmp_path / "fresh.jsonl"))
    async with connect(fresh, "/e") as ws:
        await whoami(ws)
    started = time.monotonic()
    assert fresh.stop() == 0
    fresh_took = time.monotonic() - started

    d = daemon(config(tmp_path / "up.jsonl"))
    async with connect(d, "/e") as ws:
        backend = (await whoami(ws))["pid"]
    await asyncio.to_thread(d.upgrade)
    started = time.monotonic()
    assert d.stop() == 0
    took = time.monotonic() - started
    assert reap(backend, 5) == 0
    log = d.log()
    assert f"backend (pid {backend}) exited; its status is unknown" in log
    assert "still running after" not in log, log[-1500:]
    assert took < fresh_took + 1.0, (took, fresh_took)


# Descriptors

async def test_no_descriptor_leak(unix_room, daemon, tmp_path):
    """After an upgrade the new daemon holds what a fresh one with the
    same clients holds, plus a pidfd per exec: backend, every descriptor
    close-on-exec; again after a second upgrade.  The backends (spawned
    before the upgrade, and after it) hold none of the daemon's
    sockets."""
    sock = unix_room([PYTHON, SCRIPTED])
    admin = free_port()
    d = daemon(f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
stop_timeout = 300ms
[resource /e0]
backend = {backend_cmd("scripted.py")}
[resource /e1]
backend = {backend_cmd("scripted.py")}
[resource /u]
backend = unix:{sock}
[resource /p/*]
backend = {backend_cmd("scripted.py")}
""")
    clients = []
    for room in ("/e0", "/e1", "/u", "/p/a"):
        clients += [await connect(d, room) for _ in range(4)]
    pids = {room: {(await whoami(ws))["pid"] for ws in clients[k * 4:k * 4 +
                                                                4]}
            for k, room in enumerate(("/e0", "/e1", "/u", "/p/a"))}
    assert all(len(p) == 1 for p in pids.values())
    n_exec = 3                  # /e0, /e1, /p/a

    def kinds(pid):
        out = {}
        for link in fd_links(pid).values():
            kind = link.split(":")[0] if ":" in link else "file"
            out[kind] = out.get(kind, 0) + 1
        return out

    fresh = kinds(d.pid)
    assert fresh["socket"] == 2 + len(clients) + n_exec + 1
    for rnd in (1, 2):
        await asyncio.to_thread(d.upgrade)
        now = kinds(d.pid)
        expect = dict(fresh)
        expect["anon_inode"] = expect.get("anon_inode", 0) + n_exec
        assert now == expect, (rnd, now, fresh, fd_links(d.pid))
        assert all_cloexec(d.pid) == [], rnd
        assert sum("pidfd" in link for link in fd_links(d.pid).values()) \
            == n_exec
        for ws in clients:
            await whoami(ws)
    async with connect(d, "/p/b") as late:
        spawned = (await whoami(late))["pid"]
        # Spawned before the upgrades, and after them.
        backends = sorted(pids["/e0"] | pids["/e1"] | pids["/p/a"] |
                          {spawned})
        assert len(backends) == n_exec + 1
        assert int(proc_stat(spawned)[1]) == d.pid
        daemon_fds = set(fd_links(d.pid).values())
        for pid in backends:
            links = fd_links(pid)
            assert sorted(links) == [0, 1, 2], (pid, links)
            # Its stdin and stdout are its end of a socket pair, its
            # stderr a pipe the daemon reads.
            assert links[0] == links[1] and links[0] not in daemon_fds
            assert links[2] in daemon_fds
    for ws in clients:
        await ws.close()
