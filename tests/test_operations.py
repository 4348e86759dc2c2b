"""Operating gatewayd (issue 13): what systemd and an operator see.

The service manager's side of the systemd protocols, played by the test
(PID 1 is not systemd here): a notify socket it binds and reads (READY=1,
STATUS=, RELOADING=1 with MONOTONIC_USEC, STOPPING=1, WATCHDOG=1), and
listening sockets it binds and hands over (LISTEN_FDS, LISTEN_PID).  Then
a reload on SIGHUP while a hundred clients talk, the drain on SIGTERM, the
admin listener (/metrics read by promtool and by a real Prometheus,
/healthz, /rooms) and the room tap with `gatewayd tap` and `gatewayd
inject`.

The daemon is started through a wrapper that execs it, so that LISTEN_PID
and WATCHDOG_PID can name the daemon's own pid, as systemd sets them, and
the handed-over sockets sit at descriptors 3, 4, ...
"""
import asyncio
import calendar
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import time
import urllib.parse
import uuid

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

import wsraw
from conftest import (GATEWAYD, PYTHON, ROOT, Gateway, backend_cmd,
                      example_cmd, free_port, pid_gone, read_records,
                      sanitizer_report, stop_gateway, wait_for)

TIMEOUT = 5
SAN = "build-san" in GATEWAYD
# Latency bounds: the sanitizer build is about three times slower.
SLOW = 3 if SAN else 1

# systemd's variables: none may leak in from the environment of the run.
SYSTEMD_VARS = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                "WATCHDOG_USEC", "WATCHDOG_PID")

# Put the sockets named by TEST_FDS at 3, 4, ... (by way of high numbers,
# so that none is overwritten before it is moved), set each variable named
# by TEST_SELF_PID to this process's pid, and exec the daemon: the pid
# stays, as with systemd's own fork and exec.
EXEC_WRAPPER = r"""
import fcntl, os, sys
fds = [int(f) for f in os.environ.pop("TEST_FDS", "").split(",") if f]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
for name in os.environ.pop("TEST_SELF_PID", "").split(","):
    if name:
        os.environ[name] = str(os.getpid())
os.execv(sys.argv[1], sys.argv[1:])
"""


# Helpers

def launch(tmp_path, config, name, env=None, fds=(), self_pid=(),
           ready=True):
    """Start gatewayd with config (written to NAME.ini, logging to
    NAME.log) through EXEC_WRAPPER: env adds variables, fds are listening
    sockets handed over at 3, 4, ... (LISTEN_FDS is set), self_pid names
    the variables that get the daemon's pid.  Waits for "ready" unless
    told not to.  The port of the Gateway is the first listen line's."""
    config_path = tmp_path / f"{name}.ini"
    config_path.write_text(config)
    log_path = tmp_path / f"{name}.log"
    full = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    full.update(ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
                UBSAN_OPTIONS="print_stacktrace=1")
    full.update(env or {})
    if fds:
        full["TEST_FDS"] = ",".join(str(s.fileno()) for s in fds)
        full["LISTEN_FDS"] = str(len(fds))
    full["TEST_SELF_PID"] = ",".join(self_pid)
    m = re.search(r"^listen = 127\.0\.0\.1:(\d+)", config, re.M)
    port = int(m.group(1)) if m else None
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [PYTHON, "-c", EXEC_WRAPPER, GATEWAYD, "-c", str(config_path)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=full,
            pass_fds=[s.fileno() for s in fds])
    g = Gateway(proc, port, config_path, log_path)
    if ready:
        def up():
            if proc.poll() is not None:
                raise AssertionError("gatewayd exited early:\n" + g.log())
            return "gatewayd: info: ready" in g.log()
        wait_for(up, what="gatewayd to be ready")
    return g


@pytest.fixture
def daemon(tmp_path):
    """launch(), with every daemon stopped at teardown: SIGTERM unless it
    exited already, then exit status 0 and no sanitizer report."""
    started = []

    def start(config, **kw):
        g = launch(tmp_path, config, f"gatewayd{len(started)}", **kw)
        started.append(g)
        return g

    yield start
    for g in started:
        stop_gateway(g)


def listening_socket(family=socket.AF_INET, path=None):
    """A listening socket, as systemd binds for a ListenStream=."""
    s = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_UNIX:
        s.bind(path)
    else:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s


class NotifySocket:
    """The service manager's end of sd_notify(3): an abstract datagram
    socket whose messages are kept, in order, as dicts (with the time each
    came), and read through a cursor that expect() moves forward."""

    def __init__(self):
        name = f"gatewayd-test-{uuid.uuid4().hex}"
        self.address = "@" + name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name)
        self.sock.setblocking(False)
        self.messages = []       # [(monotonic time, {KEY: value})]
        self.cursor = 0

    def poll(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            fields = dict(line.split("=", 1)
                          for line in data.decode().split("\n") if line)
            self.messages.append((time.monotonic(), fields))

    async def expect(self, pred, timeout=TIMEOUT, what="a notify message"):
        """The next message (after the cursor) for which pred holds; the
        cursor moves past it."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            for i in range(self.cursor, len(self.messages)):
                if pred(self.messages[i][1]):
                    self.cursor = i + 1
                    return self.messages[i][1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what}; got {self.messages}")
            await asyncio.sleep(0.01)

    def close(self):
        self.sock.close()


def has(key, value=None):
    return lambda m: key in m and (value is None or m[key] == value)


async def http_get(addr, path, timeout=TIMEOUT):
    """GET path on a fresh connection to addr (HOST:PORT or a Unix socket
    path): (status, body)."""
    if addr.startswith("/"):
        conn = asyncio.open_unix_connection(addr)
    else:
        host, port = addr.rsplit(":", 1)
        conn = asyncio.open_connection(host, int(port))
    reader, writer = await asyncio.wait_for(conn, timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: gatewayd\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), data
    return int(head.split(b" ", 2)[1]), body


async def rooms(admin):
    status, body = await http_get(admin, "/rooms")
    assert status == 200, body
    return {r["path"]: r for r in json.loads(body)["rooms"]}


async def wait_until(predicate, timeout=TIMEOUT, what="condition"):
    """predicate may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_log(g, text, timeout=TIMEOUT, count=1):
    await wait_until(lambda: g.log().count(text) >= count, timeout,
                     f"{text!r} (x{count}) in the log")
    return g.log()


async def wait_exit(proc, timeout):
    """Wait without blocking the loop (the clients answer closes)."""
    await wait_until(lambda: proc.poll() is not None, timeout,
                     "gatewayd to exit")
    return proc.returncode


def ws_connect(port, path, **kw):
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("compression", None)
    return websockets.connect(f"ws://127.0.0.1:{port}{path}", **kw)


async def echo(ws, text="ping"):
    await ws.send(text)
    assert await asyncio.wait_for(ws.recv(), TIMEOUT) == text


async def wait_closed(ws):
    """Wait until the server has closed ws; its close code."""
    try:
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    except asyncio.TimeoutError:
        raise AssertionError("the client was not closed")
    return ws.close_code


def parse_metrics(text):
    """{'name{labels}': value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


async def gatewayd_ctl(*args, timeout=TIMEOUT):
    """Run `gatewayd tap|inject ...`: (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        GATEWAYD, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


def whole_records(path):
    """The records a recorder logged so far, but a last line still being
    written."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def opens_by_query(records):
    """{query: client id} of the open records."""
    return {r["query"]: r["client"] for r in records if r["type"] == "open"}


def texts_of(records, client):
    return [r["text"] for r in records
            if r["type"] == "message" and r["client"] == client]


# The systemd notify protocol

async def test_notify_ready_status_reload_stopping(daemon, tmp_path):
    """READY=1 once listening, STATUS= with what is live, RELOADING=1 with
    the monotonic clock then READY=1 around a SIGHUP, STOPPING=1 on
    SIGTERM."""
    notify = NotifySocket()
    try:
        g = daemon(f"""[gateway]
listen = 127.0.0.1:{free_port()}
[resource /r]
backend = {backend_cmd("recorder.py", tmp_path / "rec.jsonl")}
""", env={"NOTIFY_SOCKET": notify.address})
        await notify.expect(has("READY", "1"), what="READY=1")
        assert notify.cursor == 1, notify.messages     # nothing before it
        # Accepting as READY=1 says.
        async with ws_connect(g.port, "/r") as a:
            await echo(a)
        await notify.expect(has("STATUS", "0 clients, 1 rooms"))
        async with ws_connect(g.port, "/r") as a, \
                ws_connect(g.port, "/r") as b:
            await notify.expect(has("STATUS", "2 clients, 1 rooms"),
                                timeout=3)
            before = time.monotonic_ns() // 1000
            g.proc.send_signal(signal.SIGHUP)
            m = await notify.expect(has("RELOADING", "1"),
                                    what="RELOADING=1")
            after = time.monotonic_ns() // 1000
            usec = int(m["MONOTONIC_USEC"])
            assert before <= usec <= after, (before, usec, after)
            await notify.expect(has("READY", "1"),
                                what="READY=1 after RELOADING=1")
            await wait_log(g, "reload: ")
            assert "applied" in g.log()
            await echo(a)
            await echo(b)
            g.proc.send_signal(signal.SIGTERM)
            await notify.expect(has("STOPPING", "1"), what="STOPPING=1")
            assert (await asyncio.gather(wait_closed(a), wait_closed(b))
                    == [1001, 1001])
        assert await wait_exit(g.proc, TIMEOUT) == 0
        notify.poll()
        assert not any("READY" in m for _, m in
                       notify.messages[notify.cursor:]), notify.messages
    finally:
        notify.close()


async def test_watchdog(daemon, tmp_path):
    """WATCHDOG_USEC=1s for the daemon's own pid: WATCHDOG=1 every 0.5 s.
    For another pid (the variables were meant for someone else): none."""
    config = """[gateway]
listen = 127.0.0.1:{port}
[resource /r]
backend = exec:/bin/cat
mode = client
"""
    mine, other = NotifySocket(), NotifySocket()
    try:
        g = daemon(config.replace("{port}", str(free_port())),
                   env={"NOTIFY_SOCKET": mine.address,
                        "WATCHDOG_USEC": "1000000"},
                   self_pid=("WATCHDOG_PID",))
        g2 = daemon(config.replace("{port}", str(free_port())),
                    env={"NOTIFY_SOCKET": other.address,
                         "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
        assert "watchdog: WATCHDOG=1 every 500 ms" in g.log()
        await mine.expect(has("WATCHDOG", "1"), what="a first WATCHDOG=1")
        times = [mine.messages[mine.cursor - 1][0]]
        for _ in range(3):
            await mine.expect(has("WATCHDOG", "1"), timeout=2,
                              what="WATCHDOG=1")
            times.append(mine.messages[mine.cursor - 1][0])
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(0.35 <= gap <= 0.75 for gap in gaps), gaps
        other.poll()
        assert not any("WATCHDOG" in m for _, m in other.messages), \
            other.messages
        assert "watchdog" not in g2.log()
    finally:
        mine.close()
        other.close()


# Socket activation

async def test_socket_activation(daemon, tmp_path):
    """Sockets handed over at 3 and 4 serve their listen lines (a client
    and an admin one); a line with no socket is bound as usual."""
    ws_sock, admin_sock = listening_socket(), listening_socket()
    p1, p2 = ws_sock.getsockname()[1], admin_sock.getsockname()[1]
    p3 = free_port()
    try:
        g = daemon(f"""[gateway]
listen = 127.0.0.1:{p1}
listen = 127.0.0.1:{p3}
admin_listen = 127.0.0.1:{p2}
[resource /r]
backend = exec:/bin/cat
mode = client
""", fds=(ws_sock, admin_sock), self_pid=("LISTEN_PID",))
        log = g.log()
        assert f"listening on 127.0.0.1:{p1} (from systemd)" in log, log
        assert f"listening on 127.0.0.1:{p2} (admin) (from systemd)" in log
        assert re.search(rf"listening on 127\.0\.0\.1:{p3}\n", log), log
        for port in (p1, p3):
            async with ws_connect(port, "/r") as ws:
                await echo(ws, "hi")
        assert await http_get(f"127.0.0.1:{p2}", "/healthz") == (200, b"ok\n")
    finally:
        ws_sock.close()
        admin_sock.close()


def test_socket_activation_unmatched_socket(tmp_path):
    """A socket handed over that no listen line names: exit 1, naming it."""
    named, stray = listening_socket(), listening_socket()
    p1, p2 = named.getsockname()[1], stray.getsockname()[1]
    g = None
    try:
        g = launch(tmp_path, f"""[gateway]
listen = 127.0.0.1:{p1}
[resource /r]
backend = exec:/bin/cat
mode = client
""", "stray", fds=(named, stray), self_pid=("LISTEN_PID",), ready=False)
        status = g.proc.wait(TIMEOUT)
        log = g.log()
        assert status == 1, log
        assert (f"inherited socket 127.0.0.1:{p2} (descriptor 4) matches no "
                f"listen line of {g.config_path}") in log, log
        assert "ready" not in log
        assert sanitizer_report(log) is None, log
    finally:
        if g is not None and g.proc.poll() is None:
            g.proc.kill()
            g.proc.wait()
        named.close()
        stray.close()


async def test_restart_on_inherited_socket_keeps_pending_client(daemon,
                                                                tmp_path):
    """The socket outlives the daemon (systemd holds it): a client that
    connects while no daemon runs waits in the backlog and is served by
    the next one."""
    sock = listening_socket()
    port = sock.getsockname()[1]
    config = f"""[gateway]
listen = 127.0.0.1:{port}
[resource /r]
backend = exec:/bin/cat
mode = client
"""
    try:
        first = daemon(config, fds=(sock,), self_pid=("LISTEN_PID",))
        async with ws_connect(port, "/r") as ws:
            await echo(ws, "one")
            first.proc.send_signal(signal.SIGTERM)
            assert await wait_closed(ws) == 1001
            assert await wait_exit(first.proc, TIMEOUT) == 0
        # No daemon: the kernel completes the TCP handshake and queues the
        # connection; the WebSocket handshake waits for an answer.
        pending = asyncio.ensure_future(ws_connect(port, "/r",
                                                   open_timeout=15))
        await asyncio.sleep(0.3)
        assert not pending.done()
        daemon(config, fds=(sock,), self_pid=("LISTEN_PID",))
        ws = await asyncio.wait_for(pending, TIMEOUT)
        try:
            await echo(ws, "two")
        finally:
            await ws.close()
    finally:
        sock.close()


# Reload

class Talker:
    """A client that sends numbered messages until told to stop, and keeps
    what it receives and how it was closed."""

    def __init__(self, ws, key):
        self.ws, self.key = ws, key
        self.sent, self.got = [], []
        self.close = None

    async def talk(self, stop, interval):
        n = 0
        try:
            while not stop.is_set():
                text = f"{self.key}.{n}"
                await self.ws.send(text)
                self.sent.append(text)
                n += 1
                await asyncio.sleep(interval)
        except ConnectionClosed:
            pass

    async def listen(self):
        try:
            async for msg in self.ws:
                self.got.append(msg)
        except ConnectionClosed:
            pass
        self.close = (self.ws.close_code, self.ws.close_reason)


async def test_reload_under_traffic(daemon, tmp_path):
    """SIGHUP while 100 clients talk in four rooms: one room is kept with
    the same backend, one chat room is kept, one is removed, one changes
    its backend; a listen line is added and one removed.

    The changed room's old backend takes 2 ms over each message, which is
    slower than its members talk: at the switch it has read messages it
    has not answered yet.  It answers them after its EOF, and those
    answers must reach the members as any other (in order, before the new
    backend's), or the members would notice the reload."""
    p_keep, p_gone, p_new = free_port(), free_port(), free_port()
    rec = {k: tmp_path / f"{k}.jsonl"
           for k in ("keep", "gone", "old", "new", "added")}
    def recorder(k, *args):
        return backend_cmd("recorder.py", rec[k], *args)
    rooms_v1 = f"""[resource /keep]
backend = {recorder("keep")}
[resource /chat]
backend = {example_cmd("chat/room.py")}
"""
    g = daemon(f"""[gateway]
listen = 127.0.0.1:{p_keep}
listen = 127.0.0.1:{p_gone}
{rooms_v1}[resource /gone]
backend = {recorder("gone")}
[resource /changed]
backend = {recorder("old", "--delay", "0.002")}
""")
    # 40 in /keep, half of them through the listener that goes; 10 in the
    # chat; 20 in /gone; 30 in /changed.
    specs = ([(p_keep if i % 2 else p_gone, "/keep", f"k{i}")
              for i in range(40)] +
             [(p_keep, "/chat", f"chat{i}") for i in range(10)] +
             [(p_keep, "/gone", f"g{i}") for i in range(20)] +
             [(p_keep, "/changed", f"x{i}") for i in range(30)])
    conns = await asyncio.gather(*(
        ws_connect(port, f"{path}?name={key}") for port, path, key in specs))
    talkers = {key: Talker(ws, key)
               for (_, _, key), ws in zip(specs, conns)}
    by_room = {}
    for _, path, key in specs:
        by_room.setdefault(path, []).append(talkers[key])
    listeners = []
    try:
        # Every open is known to its backend before the traffic starts.
        for k, n in (("keep", 40), ("gone", 20), ("old", 30)):
            read_records(rec[k], until=lambda r, n=n: sum(
                x["type"] == "open" for x in r) == n)
        listeners += [asyncio.ensure_future(t.listen())
                      for t in talkers.values()]
        stop = asyncio.Event()
        senders = [asyncio.ensure_future(t.talk(stop, 0.02))
                   for t in talkers.values()]
        await asyncio.sleep(0.5)
        g.config_path.write_text(f"""[gateway]
listen = 127.0.0.1:{p_keep}
listen = 127.0.0.1:{p_new}
{rooms_v1}[resource /changed]
backend = {recorder("new")}
[resource /added]
backend = {recorder("added")}
""")
        g.proc.send_signal(signal.SIGHUP)
        log = await wait_log(g, "reload: ")
        assert "applied" in log, log
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*senders)

        # Kept and changed rooms: every message answered, in order, and
        # nobody closed.
        echoed = by_room["/keep"] + by_room["/changed"]

        def all_echoed():
            return all(len(t.got) >= len(t.sent) for t in echoed)
        try:
            await wait_until(all_echoed, 5, "the echoes")
        except AssertionError:
            pass
        for t in echoed:
            assert t.close is None, (t.key, t.close)
            assert len(t.sent) > 20, (t.key, len(t.sent))
        for t in by_room["/keep"]:
            assert t.got == t.sent, (t.key, len(t.sent), len(t.got))
        # The chat: each member saw every member's messages in order.
        chat = by_room["/chat"]
        expected = {t.key: [f"{t.key} says {s}" for s in t.sent]
                    for t in chat}

        def chat_done():
            return all(sum(" says " in m for m in t.got) >=
                       sum(map(len, expected.values())) for t in chat)
        await wait_until(chat_done, 10, "the chat broadcasts")
        for t in chat:
            assert t.close is None, (t.key, t.close)
            for sender, lines in expected.items():
                seen = [m for m in t.got if m.startswith(sender + " says ")]
                assert seen == lines, (t.key, sender)

        # The kept room's backend is the same process: one hello, every
        # message in order.
        keep = read_records(rec["keep"])
        assert [r["type"] for r in keep].count("hello") == 1
        ids = opens_by_query(keep)
        for t in by_room["/keep"]:
            assert texts_of(keep, ids[f"name={t.key}"]) == t.sent, t.key
        assert not any(r["type"] == "close" for r in keep)

        # The removed room's clients: 1001 "room removed"; its backend got
        # their close records.
        for t in by_room["/gone"]:
            await wait_until(lambda t=t: t.close is not None, TIMEOUT,
                             f"{t.key} closed")
            assert t.close == (1001, "room removed"), (t.key, t.close)
        gone = read_records(rec["gone"], until=lambda r: sum(
            x["type"] == "close" for x in r) == 20)
        assert {r["code"] for r in gone if r["type"] == "close"} == {1001}

        # Listeners: the new line accepts, the removed one does not, the
        # kept one goes on; the new room serves.
        async with ws_connect(p_new, "/added") as ws:
            await echo(ws, "new room")
        async with ws_connect(p_keep, "/keep") as ws:
            await echo(ws)
        with pytest.raises(OSError):
            await ws_connect(p_gone, "/keep")

        # The changed room: the new backend took the members over through
        # the resume path; between the two backends each message was
        # written once, in order.
        def switched():
            old, new = whole_records(rec["old"]), whole_records(rec["new"])
            return all(len(texts_of(old, c)) + len(texts_of(new, c)) >=
                       len(talkers[q[5:]].sent)
                       for q, c in opens_by_query(old).items())
        try:
            await wait_until(switched, 5, "the changed room's records")
        except AssertionError:
            pass        # the comparison below says what is missing
        old, new = whole_records(rec["old"]), whole_records(rec["new"])
        assert new[0] == {"type": "hello", "room": "/changed", "version": 1,
                          "resumed": True}, new[0]
        resumed = [r for r in new if r["type"] == "open"]
        old_opens = [r for r in old if r["type"] == "open"]
        assert [r["client"] for r in resumed] == \
            [r["client"] for r in old_opens]
        assert all(r["resumed"] is True for r in resumed)
        assert [r["type"] for r in new[1:31]] == ["open"] * 30
        ids = opens_by_query(old)
        for t in by_room["/changed"]:
            c = ids[f"name={t.key}"]
            written = texts_of(old, c) + texts_of(new, c)
            assert written == t.sent, (
                f"{t.key}: {len(t.sent)} sent, {len(texts_of(old, c))} "
                f"written to the old backend and {len(texts_of(new, c))} "
                f"to the new one; never written: "
                f"{sorted(set(t.sent) - set(written))}")
            assert texts_of(new, c), t.key      # the new one took over
        assert not any(r["type"] == "close" for r in old + new)
        assert "room /changed: backend is now" in g.log()

        # The answers of the old backend to what it had read before the
        # switch reach the members too, in order.
        lost = {t.key: sorted(set(t.sent) - set(t.got))
                for t in by_room["/changed"] if t.got != t.sent}
        assert not lost, (
            f"{sum(map(len, lost.values()))} of "
            f"{sum(len(t.sent) for t in by_room['/changed'])} messages of "
            f"{len(lost)} clients never answered (or out of order), such as "
            f"{next(iter(lost.items()))}")
    finally:
        await asyncio.gather(*(ws.close() for ws in conns),
                             return_exceptions=True)
        await asyncio.gather(*listeners, return_exceptions=True)


async def test_reload_changes_a_busy_backend(daemon, tmp_path):
    """The smallest case of a backend changed by a reload: the old one is
    behind (1 ms a message, with 500 KB to read) when the reload comes.
    It gets what was queued for it, then EOF, and answers it all; the new
    one starts once the old one has ended.  Each message is written to
    one backend, and answered, in order: the member notices nothing."""
    old_rec, new_rec = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    config = """[gateway]
listen = 127.0.0.1:{port}
[resource /busy]
backend = {backend}
"""
    port = free_port()
    g = daemon(config.format(port=port, backend=backend_cmd(
        "recorder.py", old_rec, "--delay", "0.001")))
    sent = [f"{i:04d} " + "x" * 500 for i in range(1000)]
    async with ws_connect(port, "/busy") as ws:
        got = []

        async def receive():
            async for msg in ws:
                got.append(msg)
        receiver = asyncio.ensure_future(receive())
        for text in sent:
            await ws.send(text)
        await asyncio.sleep(0.2)
        g.config_path.write_text(config.format(port=port, backend=backend_cmd(
            "recorder.py", new_rec)))
        g.proc.send_signal(signal.SIGHUP)
        await wait_log(g, "applied")
        try:
            await wait_until(lambda: len(got) >= len(sent), 5, "the echoes")
        except AssertionError:
            pass
        receiver.cancel()
        # The new backend starts once the old one has ended.
        await wait_until(lambda: len(whole_records(new_rec)) >= 2, 10,
                         "the new backend's hello and open")
        old, new = whole_records(old_rec), whole_records(new_rec)
        client = [r for r in old if r["type"] == "open"][0]["client"]
        assert new[:2] == [
            {"type": "hello", "room": "/busy", "version": 1, "resumed": True},
            dict([r for r in old if r["type"] == "open"][0], resumed=True)]
        to_old, to_new = texts_of(old, client), texts_of(new, client)
        assert to_old, (len(to_old), len(to_new))
        missing = sorted(set(sent) - set(to_old + to_new))
        assert to_old + to_new == sent, (
            f"{len(to_old)} messages written to the old backend, "
            f"{len(to_new)} to the new one, {len(missing)} to neither, "
            f"from {missing[0][:4]} to {missing[-1][:4]}" if missing else
            "written out of order")
        unanswered = sorted(set(sent) - set(got))
        assert got == sent, (
            f"{len(unanswered)} of {len(sent)} messages never answered, "
            f"from {unanswered[0][:4]} to {unanswered[-1][:4]}"
            if unanswered else "answers out of order")


async def test_failed_reload_changes_nothing(daemon, tmp_path):
    """A syntax error, a program that is not there, and a listen line whose
    port is taken: the log says why with FILE:LINE, the rooms and
    listeners are as they were, and READY=1 follows RELOADING=1."""
    notify = NotifySocket()
    held = listening_socket()
    held_port = held.getsockname()[1]
    rec = tmp_path / "rec.jsonl"
    port = free_port()
    v1 = f"""[gateway]
listen = 127.0.0.1:{port}
[resource /r]
backend = {backend_cmd("recorder.py", rec)}
"""
    try:
        g = daemon(v1, env={"NOTIFY_SOCKET": notify.address})
        await notify.expect(has("READY", "1"))
        path = g.config_path
        bad = [
            (v1 + "this is not ini\n",
             f"{path}:5: syntax error"),
            (v1 + "[resource /x]\nbackend = exec:/nonexistent/program\n",
             f"{path}:6: backend: "),
            # Also removes /r and adds /x: none of it may happen.
            (f"""[gateway]
listen = 127.0.0.1:{port}
listen = 127.0.0.1:{held_port}
[resource /x]
backend = {backend_cmd("recorder.py", rec)}
""", f"{path}:3: cannot listen on 127.0.0.1:{held_port}: "
     "Address already in use"),
        ]
        async with ws_connect(port, "/r") as ws:
            await echo(ws)
            for n, (text, why) in enumerate(bad, 1):
                path.write_text(text)
                g.proc.send_signal(signal.SIGHUP)
                await notify.expect(has("RELOADING", "1"))
                await notify.expect(has("READY", "1"),
                                    what="READY=1 after a failed reload")
                log = await wait_log(g, "nothing changed", count=n)
                assert why in log, log
                assert "applied" not in log
                await echo(ws, f"still here {n}")
                async with ws_connect(port, "/r") as other:
                    await echo(other)
                with pytest.raises(InvalidStatusCode) as e:
                    await ws_connect(port, "/x")
                assert e.value.status_code == 404
            # The held port stays someone else's.
            with socket.create_connection(("127.0.0.1", held_port)):
                pass
            assert len(held.accept()) == 2
        assert [r["type"] for r in read_records(rec)].count("hello") == 1
    finally:
        held.close()
        notify.close()


async def test_reload_applies_idle_timeout_to_open_clients(daemon,
                                                          tmp_path):
    """An idle_timeout set by a reload closes a client that was open and
    idle before it, as it closes a new one: 1001 "idle timeout" once it
    has been idle that long."""
    config = """[gateway]
listen = 127.0.0.1:{port}
{extra}[resource /r]
backend = exec:/bin/cat
mode = client
"""
    port = free_port()
    g = daemon(config.format(port=port, extra=""))
    async with ws_connect(port, "/r") as before:
        await echo(before)
        g.config_path.write_text(config.format(
            port=port, extra="idle_timeout = 500ms\n"))
        g.proc.send_signal(signal.SIGHUP)
        await wait_log(g, "applied")
        start = time.monotonic()
        async with ws_connect(port, "/r") as after:
            assert await wait_closed(after) == 1001
            assert after.close_reason == "idle timeout"
            assert 0.4 < time.monotonic() - start < 1.5
        try:
            await asyncio.wait_for(before.wait_closed(), 2)
        except asyncio.TimeoutError:
            raise AssertionError("the client open before the reload is "
                                 "still open 2 s after it, idle")
        assert (before.close_code, before.close_reason) == \
            (1001, "idle timeout")


async def test_reload_applies_log_level(daemon, tmp_path):
    config = """[gateway]
listen = 127.0.0.1:{port}
log_level = {level}
[resource /r]
backend = exec:/bin/cat
mode = client
"""
    port = free_port()
    g = daemon(config.format(port=port, level="info"))
    async with ws_connect(port, "/r"):
        pass
    assert "gatewayd: debug:" not in g.log()
    for n, level in enumerate(("debug", "info"), 1):
        g.config_path.write_text(config.format(port=port, level=level))
        g.proc.send_signal(signal.SIGHUP)
        await wait_log(g, "applied", count=n)
        before = g.log().count("gatewayd: debug:")
        async with ws_connect(port, "/r") as ws:
            await echo(ws, "x")
        await asyncio.sleep(0.1)
        debug = g.log().count("gatewayd: debug:") - before
        if level == "debug":
            assert debug > 0, g.log()
            assert re.search(r"gatewayd: debug: c\d+: connected from",
                             g.log()), g.log()
        else:
            assert debug == 0, g.log()


# Drain

async def test_drain(daemon, tmp_path):
    """SIGTERM with clients in two rooms, one of whose backends outlives
    its EOF: every client gets 1001, every backend its close records,
    /healthz says 503 throughout, and the daemon exits 0 once the
    stubborn backend is stopped, within shutdown_timeout."""
    notify = NotifySocket()
    rec, stubborn = tmp_path / "rec.jsonl", tmp_path / "stubborn.jsonl"
    admin = f"127.0.0.1:{free_port()}"
    try:
        g = daemon(f"""[gateway]
listen = 127.0.0.1:{free_port()}
admin_listen = {admin}
shutdown_timeout = 5s
[resource /rec]
backend = {backend_cmd("recorder.py", rec)}
[resource /stubborn]
backend = exec:/bin/sh -c 'cat > {stubborn}; exec sleep 60'
stop_timeout = 2s
""", env={"NOTIFY_SOCKET": notify.address})
        clients = [await ws_connect(g.port, "/rec") for _ in range(3)]
        clients += [await ws_connect(g.port, "/stubborn") for _ in range(2)]
        for ws in clients[:3]:
            await echo(ws)
        opens = {}
        for path, n in ((rec, 3), (stubborn, 2)):
            opens[path] = sorted(r["client"] for r in read_records(
                path, until=lambda r, n=n: sum(
                    x["type"] == "open" for x in r) == n)
                if r["type"] == "open")
        assert await http_get(admin, "/healthz") == (200, b"ok\n")

        statuses = []

        async def poll_health():
            while g.proc.poll() is None:
                try:
                    statuses.append((await http_get(admin, "/healthz"))[0])
                except (OSError, AssertionError, asyncio.TimeoutError) as e:
                    # The listener closes once the loop has ended.
                    if "gatewayd: info: stopped" not in g.log():
                        statuses.append(repr(e))
                await asyncio.sleep(0.05)

        start = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        await notify.expect(has("STOPPING", "1"))
        poller = asyncio.ensure_future(poll_health())
        codes = await asyncio.gather(*(wait_closed(ws) for ws in clients))
        assert codes == [1001] * 5
        assert await wait_exit(g.proc, 6) == 0, g.log()
        elapsed = time.monotonic() - start
        await poller
        assert 1.8 <= elapsed < 5, elapsed
        assert len(statuses) >= 10, statuses
        assert set(statuses) == {503}, statuses
        for path in (rec, stubborn):
            closes = [r for r in read_records(path) if r["type"] == "close"]
            assert sorted(r["client"] for r in closes) == opens[path]
            assert {r["code"] for r in closes} == {1001}
        log = g.log()
        assert "still running after 2000 ms; sending SIGTERM" in log, log
        assert "shutdown_timeout passed" not in log
    finally:
        notify.close()


async def test_drain_second_sigterm(daemon, tmp_path):
    """A second SIGTERM during a drain that would last: exit 0 at once."""
    admin = f"127.0.0.1:{free_port()}"
    g = daemon(f"""[gateway]
listen = 127.0.0.1:{free_port()}
admin_listen = {admin}
shutdown_timeout = 5s
[resource /stubborn]
backend = exec:/bin/sh -c 'cat >/dev/null; exec sleep 60'
stop_timeout = 1h
""")
    pid = int(re.search(r"started backend .* \(pid (\d+)\)", g.log())[1])
    ws = await ws_connect(g.port, "/stubborn")
    g.proc.send_signal(signal.SIGTERM)
    assert await wait_closed(ws) == 1001
    await asyncio.sleep(0.3)
    assert g.proc.poll() is None
    assert (await http_get(admin, "/healthz"))[0] == 503
    start = time.monotonic()
    g.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(g.proc, TIMEOUT) == 0
    assert time.monotonic() - start < 1, time.monotonic() - start
    assert "again: stopping now" in g.log()
    await wait_until(lambda: pid_gone(pid), TIMEOUT, "the backend to die")


# The admin listener

async def test_metrics_rooms_healthz(daemon, tmp_path):
    """/metrics against traffic whose counts are known, accepted by
    promtool; /rooms and /healthz."""
    rec = tmp_path / "rec.jsonl"
    admin = f"127.0.0.1:{free_port()}"
    started = time.time()
    g = daemon(f"""[gateway]
listen = 127.0.0.1:{free_port()}
admin_listen = {admin}
[resource /chat]
backend = {backend_cmd("recorder.py", rec)}
[resource /strict]
backend = {backend_cmd("recorder.py", tmp_path / "strict.jsonl")}
origins = https://good.example
""")
    clients = [await ws_connect(g.port, f"/chat?name=n{i}") for i in range(5)]
    try:
        # 7 messages, each echoed to its sender.
        for i, ws in enumerate(clients + clients[:2]):
            await echo(ws, f"m{i}")
        # 2 closed by their clients with 4000.
        for ws in clients[3:]:
            await ws.close(code=4000)
        read_records(rec, until=lambda r: sum(
            x["type"] == "close" for x in r) == 2)
        # One 404, one 403.
        with pytest.raises(InvalidStatusCode) as e:
            await ws_connect(g.port, "/nowhere")
        assert e.value.status_code == 404
        with pytest.raises(InvalidStatusCode) as e:
            await ws_connect(g.port, "/strict",
                             origin="https://evil.example")
        assert e.value.status_code == 403

        status, body = await http_get(admin, "/metrics")
        assert status == 200, body
        check = subprocess.run(["promtool", "check", "metrics"], input=body,
                               capture_output=True, timeout=10)
        assert check.returncode == 0, check.stdout + check.stderr
        m = parse_metrics(body.decode())
        expected = {
            # 5 clients, the 404, the 403 and this scrape.
            "gatewayd_connections_accepted_total": 8,
            "gatewayd_connections_refused_total": 0,
            "gatewayd_clients_opened_total": 5,
            'gatewayd_clients{state="open"}': 3,
            'gatewayd_clients{state="handshake"}': 0,
            'gatewayd_clients{state="closing"}': 0,
            "gatewayd_messages_received_total": 7,
            "gatewayd_messages_sent_total": 7,
            'gatewayd_closes_total{code="4xxx"}': 2,
            'gatewayd_http_errors_total{status="404"}': 1,
            'gatewayd_http_errors_total{status="403"}': 1,
            "gatewayd_rooms": 2,
            'gatewayd_room_clients{room="/chat"}': 3,
            'gatewayd_room_clients{room="/strict"}': 0,
            'gatewayd_room_backend_up{room="/chat"}': 1,
            "gatewayd_backends_up": 2,
            "gatewayd_processes": 2,
            "gatewayd_backend_starts_total": 2,
            "gatewayd_backend_failures_total": 0,
            "gatewayd_protocol_errors_total": 0,
            "gatewayd_records_malformed_total": 0,
            "gatewayd_clients_held": 0,
            "gatewayd_output_bytes": 0,
        }
        assert {k: m.get(k) for k in expected} == expected
        assert not [k for k in m if k.startswith("gatewayd_closes_total")
                    and k != 'gatewayd_closes_total{code="4xxx"}']
        assert sorted(k for k in m if k.startswith(
            "gatewayd_http_errors_total")) == [
            'gatewayd_http_errors_total{status="403"}',
            'gatewayd_http_errors_total{status="404"}']
        assert m["gatewayd_received_bytes_total"] > 0
        assert m["gatewayd_sent_bytes_total"] > 0
        fds = len(os.listdir(f"/proc/{g.proc.pid}/fd"))
        assert 0 < m["process_open_fds"] and \
            abs(m["process_open_fds"] - fds) <= 3, (m["process_open_fds"], fds)
        assert m["process_resident_memory_bytes"] > 1 << 20
        assert abs(m["process_start_time_seconds"] - started) < 10
        assert m["process_cpu_seconds_total"] > 0

        # /rooms: the live rooms, their clients and backends.
        records = read_records(rec)
        ids = opens_by_query(records)
        live = await rooms(admin)
        assert sorted(live) == ["/chat", "/strict"]
        chat = live["/chat"]
        assert chat["mode"] == "room" and chat["resource"] == "/chat"
        assert sorted(c["id"] for c in chat["clients"]) == \
            sorted(ids[f"name=n{i}"] for i in range(3))
        assert {c["state"] for c in chat["clients"]} == {"open"}
        assert all(c["bytes_in"] > 0 and c["bytes_out"] > 0
                   for c in chat["clients"])
        backend = chat["backend"]
        assert backend["state"] == "up" and backend["kind"] == "exec"
        assert backend["queued"] == 0 and backend["paused"] is False
        with open(f"/proc/{backend['pid']}/cmdline", "rb") as f:
            assert b"recorder.py" in f.read()
        assert live["/strict"]["clients"] == []
        assert chat["taps"] == 0 and chat["held_messages"] == 0

        # /healthz; what else the admin listener answers.
        assert await http_get(admin, "/healthz") == (200, b"ok\n")
        assert (await http_get(admin, "/nothing"))[0] == 404
        assert (await http_get(admin, "/tap/chat"))[0] == 426

        # The rest close: the gauges follow.
        for ws in clients[:3]:
            await ws.close()
        read_records(rec, until=lambda r: sum(
            x["type"] == "close" for x in r) == 5)
        m = parse_metrics((await http_get(admin, "/metrics"))[1].decode())
        assert m['gatewayd_clients{state="open"}'] == 0
        assert m['gatewayd_room_clients{room="/chat"}'] == 0
        assert m['gatewayd_closes_total{code="1000"}'] == 3
        assert m["gatewayd_connections_accepted_total"] == 8 + 5
    finally:
        await asyncio.gather(*(ws.close() for ws in clients),
                             return_exceptions=True)


async def prom_query(addr, query):
    status, body = await http_get(
        addr, "/api/v1/query?query=" + urllib.parse.quote(query))
    assert status == 200, body
    result = json.loads(body)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def test_prometheus_scrapes_metrics(daemon, tmp_path):
    """A real Prometheus scraping the admin listener every second sees
    gatewayd_messages_received_total move as a client talks."""
    admin = f"127.0.0.1:{free_port()}"
    g = daemon(f"""[gateway]
listen = 127.0.0.1:{free_port()}
admin_listen = {admin}
[resource /r]
backend = exec:/bin/cat
mode = client
""")
    prom_addr = f"127.0.0.1:{free_port()}"
    (tmp_path / "prometheus.yml").write_text(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: gatewayd
    static_configs:
      - targets: ['{admin}']
""")
    with open(tmp_path / "prometheus.log", "w") as log:
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address={prom_addr}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        async def prom_ready():
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                return (await http_get(prom_addr, "/-/ready"))[0] == 200
            except OSError:
                return False
        await wait_until(prom_ready, 10, "Prometheus to be ready")
        query = "gatewayd_messages_received_total"
        async with ws_connect(g.port, "/r") as ws:
            for i in range(3):
                await echo(ws, f"{i}")
            # Its service discovery hands the target over after about 5 s.
            assert await wait_until(
                lambda: prom_query(prom_addr, f"{query} == 3"), 15,
                "Prometheus to see 3 messages") == 3
            assert await prom_query(prom_addr, 'up{job="gatewayd"}') == 1
            for i in range(4):
                await echo(ws, f"{i}")
            assert await wait_until(
                lambda: prom_query(prom_addr, f"{query} == 7"), 5,
                "Prometheus to see 7 messages") == 7
    finally:
        prom.terminate()
        try:
            prom.wait(5)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()


# The tap

def tap_line(line):
    direction, record = line.split(" ", 1)
    assert direction in ("<", ">"), line
    return direction, json.loads(record)


async def test_tap_and_inject(daemon, tmp_path):
    """`gatewayd tap` prints a chat session's records in order; `gatewayd
    inject` makes a client receive a broadcast; a bad record and an
    unknown room are refused."""
    admin = f"127.0.0.1:{free_port()}"
    g = daemon(f"""[gateway]
listen = 127.0.0.1:{free_port()}
admin_listen = {admin}
[resource /chat]
backend = {example_cmd("chat/room.py")}
""")
    tap = await asyncio.create_subprocess_exec(
        GATEWAYD, "tap", "-a", admin, "/chat", stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        await wait_until(async_taps(admin, "/chat", 1), TIMEOUT,
                         "the tap to be attached")
        async with ws_connect(g.port, "/chat?name=alice") as alice:
            assert await asyncio.wait_for(alice.recv(), TIMEOUT) == \
                "alice has joined /chat"
            await alice.send("hello")
            assert await asyncio.wait_for(alice.recv(), TIMEOUT) == \
                "alice says hello"
            assert await gatewayd_ctl(
                "inject", "-a", admin, "/chat",
                '{"type":"broadcast","text":"hi"}') == (0, "ok\n", "")
            assert await asyncio.wait_for(alice.recv(), TIMEOUT) == "hi"
            status, out, _ = await gatewayd_ctl(
                "inject", "-a", admin, "/chat", '{"type":"nonsense"}')
            assert status == 1 and out.startswith("error: "), out
            status, out, _ = await gatewayd_ctl(
                "inject", "-a", admin, "/chat", "not json")
            assert status == 1 and out.startswith("error: "), out
            status, out, err = await gatewayd_ctl(
                "inject", "-a", admin, "/nowhere",
                '{"type":"broadcast","text":"hi"}')
            assert status == 1 and "404" in err, (out, err)
            status, out, err = await gatewayd_ctl("tap", "-a", admin,
                                                  "/nowhere")
            assert status == 1 and "404" in err, (out, err)
        lines = []
        while len(lines) < 7:
            line = await asyncio.wait_for(tap.stdout.readline(), TIMEOUT)
            assert line, (lines, await tap.stderr.read())
            lines.append(tap_line(line.decode().rstrip("\n")))
        opened = lines[0][1]
        alice_id = opened["client"]
        assert lines[0][0] == "<" and opened["type"] == "open"
        assert opened["query"] == "name=alice" and opened["path"] == "/chat"
        assert lines[1:] == [
            (">", {"type": "broadcast", "text": "alice has joined /chat"}),
            ("<", {"type": "message", "client": alice_id, "text": "hello"}),
            (">", {"type": "broadcast", "text": "alice says hello"}),
            (">", {"type": "broadcast", "text": "hi"}),
            ("<", {"type": "close", "client": alice_id, "code": 1000,
                   "reason": ""}),
            (">", {"type": "broadcast", "text": "alice has left /chat"}),
        ]
        # The tap and inject connections are the admin listener's, not
        # clients (gatewayd_clients leaves them out): what they carry is
        # not client traffic, or a tap would double a room's message rate
        # on a dashboard.  Alice sent 1 message and received 3.
        m = parse_metrics((await http_get(admin, "/metrics"))[1].decode())
        assert (m["gatewayd_messages_received_total"],
                m["gatewayd_messages_sent_total"]) == (1, 3)
    finally:
        if tap.returncode is None:
            tap.kill()
            await tap.wait()


def async_taps(admin, path, n):
    async def check():
        return (await rooms(admin))[path]["taps"] == n
    return check


def raw_tap(path, room):
    """A tap over the Unix admin socket that never reads: a small receive
    buffer, the handshake read byte by byte so that nothing past it is
    taken from the socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(TIMEOUT)
    s.connect(path)
    s.sendall(wsraw.handshake_request(f"/tap{room}"))
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = s.recv(1)
        assert byte, head
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


async def test_stalled_tap_is_dropped(daemon, tmp_path):
    """A tap that stops reading is closed: 1008 "tap too slow", after the
    frames it was sent, whole.  The room's clients go on meanwhile with
    normal latency.  The admin listener on a Unix socket path serves
    `gatewayd inject -a PATH` too."""
    admin = str(tmp_path / "admin.sock")
    g = daemon(f"""[gateway]
listen = 127.0.0.1:{free_port()}
admin_listen = {admin}
close_timeout = 1s
[resource /chat]
backend = {backend_cmd("recorder.py", tmp_path / "rec.jsonl")}
""")
    loop = asyncio.get_running_loop()
    stalled = raw_tap(admin, "/chat")
    try:
        await wait_until(async_taps(admin, "/chat", 1), TIMEOUT,
                         "the tap to be attached")
        async with ws_connect(g.port, "/chat") as flood, \
                ws_connect(g.port, "/chat") as pinger:
            rtts = []

            async def ping(n):
                for i in range(n):
                    t = time.monotonic()
                    await echo(pinger, f"ping {i}")
                    rtts.append(time.monotonic() - t)
                    await asyncio.sleep(0.02)

            async def receive(n):
                return [await asyncio.wait_for(flood.recv(), TIMEOUT)
                        for _ in range(n)]

            async def read_once_dropped():
                # At once, within close_timeout, as a tap that wakes up.
                await wait_until(async_taps(admin, "/chat", 0), TIMEOUT,
                                 "the stalled tap to be dropped")
                return await loop.run_in_executor(None, read_to_close,
                                                  stalled)

            # First a message whose tap line (300 KB) is more than the
            # Unix socket holds: the tap is left with a frame half sent.
            # Then 400 of 2 KB, two tap lines each: 1.6 MB for the tap,
            # much more than its 256 KB hold.
            end = asyncio.ensure_future(read_once_dropped())
            await echo(flood, "big " + "x" * 300000)
            sent = [f"{i:04d}" + "x" * 2000 for i in range(400)]
            pings = asyncio.ensure_future(ping(30))
            got = asyncio.ensure_future(receive(len(sent)))
            for text in sent:
                await flood.send(text)
            assert await got == sent
            await pings
            print(f"round trips during the flood: median "
                  f"{statistics.median(rtts) * 1000:.1f} ms, max "
                  f"{max(rtts) * 1000:.1f} ms")
            assert statistics.median(rtts) < 0.05 * SLOW, rtts
            assert max(rtts) < 0.5 * SLOW, rtts
            # The room goes on; inject through the Unix socket path.
            assert await gatewayd_ctl(
                "inject", "-a", admin, "/chat",
                '{"type":"broadcast","text":"hi"}') == (0, "ok\n", "")
            assert await asyncio.wait_for(pinger.recv(), TIMEOUT) == "hi"
            assert await asyncio.wait_for(flood.recv(), TIMEOUT) == "hi"
            await echo(pinger)
            assert await end == (1008, "tap too slow")
    finally:
        stalled.close()


def read_to_close(sock):
    """Read a tap's frames up to its close frame: (code, reason), or what
    went wrong instead."""
    conn = wsraw.RawConnection(sock)
    frames = 0
    while True:
        try:
            frame = conn.recv_frame(timeout=TIMEOUT)
        except EOFError as e:
            return (f"the stream ends inside a frame, after {frames} whole "
                    f"ones, with no close frame ({e})")
        frames += 1
        if frame.opcode == wsraw.OP_CLOSE:
            return wsraw.parse_close(frame.payload)
        if frame.payload[:2] not in (b"< ", b"> "):
            return (f"frame {frames} is not a tap line: "
                    f"{frame.payload[:40]!r}")


async def test_admin_listener_answers_a_full_gateway(daemon, tmp_path):
    """At max_connections, clients get 503, but the admin listener still
    answers: its connections are counted apart."""
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    g = daemon(f"""[gateway]
listen = 127.0.0.1:{port}
admin_listen = {admin}
max_connections = 2
[resource /echo]
backend = exec:cat
mode = client
""")
    async with ws_connect(port, "/echo"), ws_connect(port, "/echo"):
        r = wsraw.http_request(port, wsraw.handshake_request("/echo"))
        assert r.status == 503 and b"too many connections" in r.body
        status, body = await http_get(admin, "/healthz")
        assert status == 200 and body == b"ok\n"
        status, body = await http_get(admin, "/metrics")
        assert status == 200
        m = parse_metrics(body.decode())
        assert m["gatewayd_connections_refused_total"] >= 1
        for name in ("gatewayd_hold_timeouts_total",
                     "gatewayd_authorize_timeouts_total",
                     "gatewayd_records_redelivered_total",
                     "gatewayd_backend_unconfirmed_bytes"):
            assert name in m, name


def test_log_lines_stamped_or_prioritised(tmp_path):
    """Log lines to a file start with the UTC time (milliseconds) and the
    level; to the journal (JOURNAL_STREAM set) with the syslog priority,
    and no time: the journal stamps them."""
    config = tmp_path / "g.ini"
    config.write_text(f"""[gateway]
listen = 127.0.0.1:{free_port()}
[resource /e]
backend = exec:cat
mode = client
""")
    for journal in (False, True):
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS
               and k != "JOURNAL_STREAM"}
        if journal:
            env["JOURNAL_STREAM"] = "8:12345"
        before = time.time()
        proc = subprocess.Popen([GATEWAYD, "-c", str(config)],
                                stderr=subprocess.PIPE, env=env, text=True)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        lines = err.splitlines()
        assert lines, err
        for line in lines:
            if journal:
                assert re.match(r"<[3467]>\S", line), line
                continue
            m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d{3}Z "
                         r"gatewayd: (error|warn|info|debug): \S", line)
            assert m, line
            stamp = calendar.timegm(time.strptime(m.group(1),
                                                  "%Y-%m-%dT%H:%M:%S"))
            assert before - 2 <= stamp <= time.time() + 1, line
