"""Backends that misbehave, die, or are not there, and the order of
records.  Failing backends are tested here with on_backend_down = close,
whose clients see the failure; tests/test_resilience.py covers hold."""
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time

from websockets.exceptions import ConnectionClosed, InvalidStatusCode

from conftest import (PYTHON, BACKENDS, GATEWAYD, backend_cmd, free_port,
                      read_records)
from wsclient import (assert_silent, connect, expect_close, expect_status,
                      recv, wait_log, whoami)

TIMEOUT = 5
SCRIPTED = os.path.join(BACKENDS, "scripted.py")


@contextlib.asynccontextmanager
async def connect_after_restart(g, path, timeout=TIMEOUT):
    """Connect to a room whose backend just failed: it answers 502 until
    the backend is started again, after restart_delay."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            ws = await connect(g, path)
            break
        except InvalidStatusCode as e:
            if e.status_code != 502 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    try:
        yield ws
    finally:
        await ws.close()


def two_rooms(a="/a", b="/b", rec=None, extra=""):
    args = ("--record", rec) if rec else ()
    return f"""[gateway]
on_backend_down = close
[resource {a}]
backend = {backend_cmd("scripted.py", *args)}
{extra}
[resource {b}]
backend = {backend_cmd("scripted.py", *args)}
"""


async def test_garbage_lines(gateway):
    g = gateway(two_rooms(extra="max_message_size = 1K"))
    async with connect(g, "/a") as a, connect(g, "/b") as b:
        me = (await whoami(a))["client"]
        garbage = [
            "this is not JSON",
            "[1, 2, 3]",
            '"a string"',
            "{}",
            '{"type": "frobnicate", "client": "%s"}' % me,
            '{"type": "send", "text": "no client"}',
            '{"type": "send", "client": "%s", "binary": "!!not base64"}' % me,
            '{"type": "send", "client": "%s", "binary": "AAE"}' % me,
            '{"type": "send", "client": "%s"}' % me,
            '{"type": "send", "client": 7, "text": "x"}',
            '{"type": "close", "client": "%s", "code": 1005}' % me,
            '{"type": "send", "client": "%s", "text": "x", "text": "y"}' % me,
            '{"type": "send", "client": "%s", "text": "x"' % me,
            '{"type": "send", "client": "%s", "text": "\\ud800"}' % me,
        ]
        # At most 10 bad lines a second are logged: two batches.
        for line in garbage[:7]:
            await a.send("cmd:" + line)
        await a.send("whoami")
        await recv(a)
        await asyncio.sleep(1.05)
        for line in garbage[7:]:
            await a.send("cmd:" + line)
        # 1K messages: a line longer than 6K + 64K is over the limit.
        await a.send("huge:100000")
        await a.send("cmd:" + json.dumps({"type": "send", "client": me,
                                          "text": "after the garbage"}))
        assert await recv(a) == "after the garbage"
        await b.send("b is fine")
        assert await recv(b) == "b is fine"
        await a.send("a is fine")
        assert await recv(a) == "a is fine"
        await assert_silent(a)
        assert g.proc.poll() is None
        log = g.log()
        bad = [line for line in log.splitlines() if "bad record" in line]
        assert len(bad) == len(garbage), log
        assert all("room /a:" in line for line in bad), bad
        assert "room /a: record line longer than" in log, log
    # Garbage from a backend is not a failure of the room.
    assert "backend closed" not in g.log()


async def test_bad_record_log_rate_limited(gateway):
    g = gateway(two_rooms())
    async with connect(g, "/a") as a:
        await whoami(a)
        await a.send("cmd:" + "\n".join(f"garbage {i}" for i in range(50)))
        await a.send("ping")
        assert await recv(a) == "ping"
        logged = g.log().count("bad record")
        assert 10 <= logged < 50, g.log()
        await asyncio.sleep(1.05)
        await a.send("cmd:more garbage")
        await a.send("ping")
        assert await recv(a) == "ping"
        await wait_log(g, "bad record from backend (not JSON: '[' or '{' "
                          "expected near 'more'): more garbage")
        assert "(more suppressed)" in g.log()


async def test_huge_line_split_in_pieces_then_valid(gateway):
    """A long line discarded across several reads, then a good line."""
    g = gateway(two_rooms(extra="max_message_size = 1K"))
    async with connect(g, "/a") as a:
        await whoami(a)
        for size in (71000, 300000, 1000000):
            await a.send(f"huge:{size}")
            await a.send(f"size {size}")
            assert await recv(a) == f"size {size}"
        assert g.log().count("record line longer than") == 2, g.log()


async def test_exec_backend_exits(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(two_rooms(rec=rec) + "authorize = yes\n")
    async with connect(g, "/a") as a1, connect(g, "/a") as a2, \
            connect(g, "/b") as b:
        first = await whoami(a1)
        # A client waiting for its verdict when the backend dies gets 502.
        pending = asyncio.ensure_future(
            expect_status(g.url("/b?verdict=ignore"), 502))
        await asyncio.sleep(0.3)
        await b.send("whoami")
        b_pid = json.loads(await recv(b))["pid"]
        await b.send("exit")
        assert (await expect_close(b))[0] == 1011
        await pending
        # /a is untouched.
        await a1.send("still chatting")
        assert await recv(a1) == "still chatting"
        await a2.send("me too")
        assert await recv(a2) == "me too"
        # /b is started again after restart_delay.
        async with connect_after_restart(g, "/b") as b2:
            again = await whoami(b2)
            assert again["pid"] != b_pid
            await b2.send("works")
            assert await recv(b2) == "works"
        assert (await whoami(a1))["pid"] == first["pid"]
    assert [r["room"] for r in read_records(rec)
            if r["type"] == "hello"].count("/b") == 2
    assert "room /b: backend (pid %d) exited with status 3" % b_pid in g.log()


async def test_exec_backend_exits_all_clients_closed(gateway):
    g = gateway(two_rooms())
    async with connect(g, "/a") as a1, connect(g, "/a") as a2, \
            connect(g, "/a") as a3, connect(g, "/b") as b:
        await whoami(a2)
        await a1.send("exit:0")
        for ws in (a1, a2, a3):
            code, reason = await expect_close(ws)
            assert code == 1011
        await b.send("b lives")
        assert await recv(b) == "b lives"


async def test_pattern_room_backend_exits(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /p/*]
backend = {backend_cmd("scripted.py", "--record", rec)}
""")
    async with connect(g, "/p/x") as x, connect(g, "/p/y") as y:
        await whoami(y)
        await x.send("exit")
        assert (await expect_close(x))[0] == 1011
        await y.send("y lives")
        assert await recv(y) == "y lives"
    async with connect(g, "/p/x") as x:
        assert (await whoami(x))["room"] == "/p/x"
    assert [r["room"] for r in read_records(rec) if r["type"] == "hello"
            ].count("/p/x") == 2


async def test_unix_backend_missing_at_start(gateway, unix_room, tmp_path):
    sock = tmp_path / "room.sock"
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /u]
backend = unix:{sock}
""")
    assert g.proc.poll() is None
    assert f"warn: room /u: cannot connect to backend unix:{sock}" \
        in g.log()
    await expect_status(g.url("/u"), 502)
    # A socket file nobody listens on any more is no better.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()
    await expect_status(g.url("/u"), 502)
    await wait_log(g, "Connection refused")
    sock.unlink()         # unix_room waits for the file to appear
    assert unix_room([PYTHON, SCRIPTED], name="room.sock") == str(sock)
    async with connect_after_restart(g, "/u") as ws:
        me = await whoami(ws)
        assert me["room"] == "/u"
        await ws.send("hello")
        assert await recv(ws) == "hello"


async def test_unix_backend_drops_connection(gateway, unix_room, tmp_path):
    rec = tmp_path / "rec.jsonl"
    sock = unix_room([PYTHON, SCRIPTED, "--record", str(rec)])
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /u]
backend = unix:{sock}
[resource /v]
backend = unix:{sock}
""")
    async with connect(g, "/u") as u1, connect(g, "/u") as u2, \
            connect(g, "/v") as v:
        await whoami(u2)
        await u1.send("drop")
        assert (await expect_close(u1))[0] == 1011
        assert (await expect_close(u2))[0] == 1011
        await v.send("v lives")
        assert await recv(v) == "v lives"
        # /u reconnects after restart_delay.
        async with connect_after_restart(g, "/u") as u3:
            await u3.send("back")
            assert await recv(u3) == "back"
    assert "room /u: backend closed its connection" in g.log()
    assert [r["room"] for r in read_records(rec) if r["type"] == "hello"
            ].count("/u") == 2


def test_exec_backend_not_executable_refused_at_start(tmp_path):
    """A program that does not exist or cannot be run is a FILE:LINE
    error of -t and of the start, not a room that never answers."""
    config = tmp_path / "bad.ini"
    config.write_text(f"""[gateway]
listen = 127.0.0.1:{free_port()}
[resource /missing]
backend = exec:{tmp_path}/no/such/program --flag
[resource /notexec]
backend = exec:{tmp_path}
[resource /pattern/*]
backend = exec:no-such-program-on-path
""")
    for args in (["-t", "-c", str(config)], ["-c", str(config)]):
        r = subprocess.run([GATEWAYD] + args, capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, r
        assert (f"{config}:4: backend: cannot run "
                f"'{tmp_path}/no/such/program': No such file or directory"
                ) in r.stderr, r.stderr
        assert (f"{config}:6: backend: cannot run '{tmp_path}': "
                "Is a directory") in r.stderr, r.stderr
        assert (f"{config}:8: backend: program 'no-such-program-on-path' "
                "not found on PATH") in r.stderr, r.stderr
        assert "ready" not in r.stderr


async def test_exec_backend_gone_after_start(gateway, tmp_path):
    """A program that can no longer be run (removed after the start): a
    room whose backend never came up turns clients away with 503 at once
    and logs why; a room that was up holds its clients as ever."""
    prog = tmp_path / "room.sh"
    prog.write_text("#!/bin/sh\nexec /usr/bin/python3 "
                    f"{BACKENDS}/scripted.py\n")
    prog.chmod(0o755)
    g = gateway(f"""[gateway]
restart_delay = 50ms
[resource /pattern/*]
backend = exec:{prog}
[resource /ok]
backend = {backend_cmd("scripted.py")}
""")
    async with connect(g, "/pattern/1") as ws:
        await ws.send("fine")
        assert await recv(ws) == "fine"
    prog.chmod(0o644)
    await expect_status(g.url("/pattern/2"), 503)
    await expect_status(g.url("/pattern/3"), 503)
    await wait_log(g, f"room /pattern/2: cannot run backend {prog}: "
                      "Permission denied")
    async with connect(g, "/ok") as ws:
        await ws.send("fine")
        assert await recv(ws) == "fine"


async def test_exec_backend_stderr_logged(gateway):
    g = gateway(two_rooms("/err", "/other"))
    async with connect(g, "/err") as ws:
        await ws.send("stderr:something went wrong: \x01 <here>")
        assert await recv(ws) == "ok"
        await wait_log(g, "room /err: backend: something went wrong: "
                          "\\x01 <here>")


async def test_records_in_order(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /order]
backend = {backend_cmd("recorder.py", rec)}
""")
    n = 200
    async with connect(g, "/order") as ws:
        for i in range(n):
            await ws.send(f"message {i}")
        echoes = [await recv(ws) for _ in range(n)]
    assert echoes == [f"message {i}" for i in range(n)]
    records = read_records(rec, until=lambda r: r and r[-1]["type"] == "close")
    assert [r["text"] for r in records if r["type"] == "message"] == \
        [f"message {i}" for i in range(n)]
    assert [r["type"] for r in records] == \
        ["hello", "open"] + ["message"] * n + ["close"]


async def test_records_in_order_binary_and_text(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /order]
backend = {backend_cmd("recorder.py", rec)}
""")
    sent = [bytes([i % 256]) * (i % 7) if i % 2 else f"t{i}"
            for i in range(100)]
    async with connect(g, "/order") as ws:
        for m in sent:
            await ws.send(m)
        echoes = [await recv(ws) for _ in sent]
    assert echoes == sent


async def test_line_limit_boundary(gateway):
    """A line of exactly the limit is a record; one byte more is not."""
    g = gateway(two_rooms(extra="max_message_size = 1K"))
    limit = 1024 * 6 + 65536
    async with connect(g, "/a") as a:
        me = (await whoami(a))["client"]
        line = json.dumps({"type": "send", "client": me, "text": "%s"})
        await a.send(f"pad:{limit + 1}:" + line % "over")
        await a.send(f"pad:{limit}:" + line % "at the limit")
        assert await recv(a) == "at the limit"
        await assert_silent(a, 0.2)
        assert g.log().count("record line longer than 71680 bytes") == 1


async def test_crlf_and_blank_lines(gateway):
    g = gateway(two_rooms())
    async with connect(g, "/a") as a:
        me = (await whoami(a))["client"]
        line = json.dumps({"type": "send", "client": me, "text": "crlf"})
        await a.send("cmd:\n\r\n" + line + "\r\n")
        assert await recv(a) == "crlf"
        await a.send("cmd:" + json.dumps({"type": "send", "client": me,
                                          "text": "nul\u0000inside"}))
        assert await recv(a) == "nul\x00inside"
        await a.send("ping")
        assert await recv(a) == "ping"
    assert "bad record" not in g.log()


async def test_output_before_exit_is_applied(gateway):
    """What a backend wrote just before it died still reaches its client."""
    g = gateway(two_rooms())
    for i in range(5):
        async with connect_after_restart(g, "/a") as a:
            me = (await whoami(a))["client"]
            await a.send("cmd:" + json.dumps({"type": "send", "client": me,
                                              "text": f"last words {i}"}))
            await a.send("exit")
            assert await recv(a) == f"last words {i}"
            assert (await expect_close(a))[0] == 1011


LAST_WORDS = """\
import json, os, sys
for line in sys.stdin:
    r = json.loads(line)
    if r["type"] == "open":
        sys.stdout.write("".join(json.dumps(
            {"type": "send", "client": r["client"], "text": f"{i:05d}" + "x" * 100})
            + "\\n" for i in range(3000)))
        sys.stdout.flush()
        os._exit(0)
"""


async def test_much_output_before_exit_is_applied(gateway, tmp_path):
    """A backend that writes 3000 records (420 KB, more than its socket
    holds) and exits at once: the client gets every message, in order,
    then 1011; what still sat in the socket when the exit was noticed is
    read too."""
    script = tmp_path / "last_words.py"
    script.write_text(LAST_WORDS)
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /w]
backend = exec:{PYTHON} {script}
restart_delay = 10s
""")
    async with connect(g, "/w", max_size=None) as ws:
        got = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                got.append(await asyncio.wait_for(ws.recv(), 10))
        assert [m[:5] for m in got] == [f"{i:05d}" for i in range(3000)]
        assert ws.close_code == 1011


async def test_backend_dies_mid_line(gateway):
    """A backend that exits in the middle of a record: the part is not
    carried out, and the log says how much was dropped."""
    g = gateway("""[gateway]
[resource /cut]
backend = exec:/bin/sh -c "read hello; printf '{\\"type\\":\\"broadcast\\"'; sleep 0.2"
restart_delay = 10s
""")
    await wait_log(g, "room /cut: backend ended in the middle of a line: "
                   "19 bytes discarded")
    assert "bad record" not in g.log()


async def test_backend_exits_at_once(gateway):
    g = gateway("""[gateway]
on_backend_down = close
[resource /false]
backend = exec:/bin/false
authorize = yes
[resource /false2]
backend = exec:/bin/false
""")
    for _ in range(3):
        await expect_status(g.url("/false"), 502)
    # Without authorize the client may get its 101 before the exit is
    # noticed; then it is closed with 1011.
    try:
        async with connect(g, "/false2") as ws:
            assert (await expect_close(ws))[0] == 1011
    except InvalidStatusCode as e:
        assert e.status_code == 502
    assert g.proc.poll() is None


async def test_backend_closes_output_and_lingers(gateway, tmp_path):
    """A backend that closes its records but does not exit is lost, and
    killed after stop_timeout."""
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /quiet]
backend = exec:/bin/sh -c 'read line; exec 0<&- 1>&-; exec sleep 30'
stop_timeout = 300ms
[resource /ok]
backend = {backend_cmd("scripted.py")}
""")
    # The backend of the exact room quits its records right after hello:
    # a client gets its 101, then 1011; or 502, once the loss is known.
    try:
        async with connect(g, "/quiet") as ws:
            assert (await expect_close(ws))[0] == 1011
    except InvalidStatusCode as e:
        assert e.status_code == 502
    # EOF, or EPIPE when the open record is written first.
    log = g.log()
    assert "room /quiet: backend closed its output" in log or \
        "room /quiet: backend connection failed: Broken pipe" in log, log
    await wait_log(g, "sending SIGTERM")
    await wait_log(g, "killed by signal 15")
    async with connect(g, "/ok") as ws:
        await ws.send("ok")
        assert await recv(ws) == "ok"


async def test_largest_messages_round_trip(gateway, tmp_path):
    """A message of max_message_size in the longest JSON form (all \\u00XX
    escapes) goes to the backend and back."""
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /big]
backend = {backend_cmd("recorder.py", rec)}
max_message_size = 256K
""")
    size = 256 * 1024
    async with connect(g, "/big", max_size=None) as ws:
        for msg in ("\x01" * size, os.urandom(size), "é" * (size // 2),
                    "small"):
            await ws.send(msg)
            assert await recv(ws, 20) == msg
    assert "bad record" not in g.log()
    assert "longer than" not in g.log()


async def test_stderr_without_newline_at_exit(gateway):
    g = gateway("""[gateway]
on_backend_down = close
[resource /x]
backend = exec:/bin/sh -c 'read line; printf "last gasp" >&2; exit 0'
""")
    await wait_log(g, "room /x: backend: last gasp")
    await wait_log(g, "room /x: backend (pid")


async def test_pattern_rooms_on_one_unix_socket(gateway, unix_room, tmp_path):
    rec = tmp_path / "rec.jsonl"
    sock = unix_room([PYTHON, SCRIPTED, "--record", str(rec)])
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /u/*]
backend = unix:{sock}
linger = 0
[resource /none/*]
backend = unix:{tmp_path}/absent.sock
""")
    async with connect(g, "/u/a") as a, connect(g, "/u/b") as b:
        assert (await whoami(a))["room"] == "/u/a"
        assert (await whoami(b))["room"] == "/u/b"
        await a.send("cmd:" + json.dumps({"type": "broadcast", "text": "A"}))
        assert await recv(a) == "A"
        await assert_silent(b)
    for _ in range(2):
        await expect_status(g.url("/none/x"), 502)
    async with connect(g, "/u/a") as a:
        assert (await whoami(a))["room"] == "/u/a"
    hello = [r["room"] for r in read_records(rec) if r["type"] == "hello"]
    assert sorted(hello) == ["/u/a", "/u/a", "/u/b"]


async def test_many_clients_broadcast(gateway):
    g = gateway(two_rooms())
    clients = [await connect(g, "/a") for _ in range(60)]
    try:
        await clients[0].send("cmd:" + json.dumps(
            {"type": "broadcast", "text": "everyone"}))
        got = await asyncio.gather(*(recv(ws) for ws in clients))
        assert got == ["everyone"] * len(clients)
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_exec_backend_inherits_no_descriptors(gateway):
    """A spawned backend holds its stdin/stdout and stderr, nothing of
    gatewayd's: no listener, client or other backend's socket."""
    g = gateway("""[gateway]
on_backend_down = close
[resource /fds/*]
backend = exec:/bin/sh -c 'ls -l /proc/self/fd >&2; exec cat >/dev/null'
""")
    async with connect(g, "/fds/1"), connect(g, "/fds/1"):
        async with connect(g, "/fds/2"):
            await wait_log(g, "room /fds/2: backend: total")
            await asyncio.sleep(0.2)
    lines = [line.split("room /fds/2: backend: ", 1)[1]
             for line in g.log().splitlines()
             if "room /fds/2: backend: " in line and "->" in line]
    fds = {int(line.split(" -> ")[0].split()[-1]) for line in lines}
    assert fds == {0, 1, 2, 3}, "\n".join(lines)   # 3: ls's own directory


async def test_long_stderr_line_logged_whole(gateway):
    """A stderr line longer than a log line is logged in pieces, all of it."""
    script = ('read l; head -c 5000 /dev/zero | tr "\\\\0" a >&2; '
              'echo END >&2; exec cat >/dev/null')
    g = gateway(f"""[gateway]
on_backend_down = close
[resource /long]
backend = exec:/bin/sh -c '{script}'
""")
    async with connect(g, "/long"):
        await wait_log(g, "aaaEND")
    logged = "".join(line.split("room /long: backend: ", 1)[1]
                     for line in g.log().splitlines()
                     if "room /long: backend: " in line)
    assert logged.count("a") == 5000, len(logged)
