"""valgrind's memcheck on a full run of the daemon: clients and rooms
coming and going, every kind of backend, a backend killed and restarted,
then SIGTERM.  memcheck must report no error and no leak (definite,
indirect or possible), and the daemon must exit 0.

The daemon runs under valgrind, not through the conftest fixture (same
config-writing approach); its backends (Python) are not traced: no
--trace-children.  Skipped under the sanitizer build (ASan and valgrind do
not mix) and when valgrind is not installed.  Everything waits with long
timeouts: memcheck makes the daemon 20-50 times slower.
"""
import asyncio
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest
import websockets
from websockets.exceptions import InvalidStatusCode

import wsraw
from conftest import (BACKENDS, GATEWAYD, PYTHON, ROOT, backend_cmd,
                      example_cmd, free_port, read_records, start_unix_room,
                      wait_for)

VALGRIND = shutil.which("valgrind")
SLOW = 30          # seconds for any one step under memcheck

VALGRIND_ARGS = [
    "--leak-check=full",
    "--show-leak-kinds=definite,indirect,possible",
    "--errors-for-leak-kinds=definite,indirect,possible",
    "--error-exitcode=99",
    "--track-fds=no",
]


def _sanitized(path):
    """Whether the binary is built with AddressSanitizer."""
    if "build-san" in path:
        return True
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(_sanitized(GATEWAYD),
                       reason="GATEWAYD is the sanitizer build: ASan and "
                              "valgrind do not mix"),
    pytest.mark.skipif(VALGRIND is None, reason="valgrind is not installed"),
]


# The daemon under memcheck

class Memchecked:
    def __init__(self, tmp_path, config):
        self.port = free_port()
        self.config_path = tmp_path / "gatewayd.ini"
        self.config_path.write_text(
            f"[gateway]\nlisten = 127.0.0.1:{self.port}\n" + config)
        self.log_path = tmp_path / "gatewayd.log"
        self.vg_log_path = tmp_path / "valgrind.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [VALGRIND] + VALGRIND_ARGS +
                [f"--log-file={self.vg_log_path}", GATEWAYD,
                 "-c", str(self.config_path)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def vg_log(self):
        try:
            with open(self.vg_log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout=60):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("gatewayd exited early:\n" + self.log()
                                     + "\n" + self.vg_log())
            return "gatewayd: info: ready" in self.log()
        wait_for(ready, timeout, 0.1, what="gatewayd under valgrind")

    def wait_log(self, pattern, timeout=SLOW, start=0):
        """The first match of the regex pattern in the log after offset
        start."""
        def found():
            if self.proc.poll() is not None:
                raise AssertionError("gatewayd exited:\n" + self.log())
            return re.compile(pattern).search(self.log(), start)
        return wait_for(found, timeout, 0.05, what=f"{pattern!r} in the log")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# Clients

async def connect(url, **kw):
    return await websockets.connect(url, open_timeout=SLOW,
                                    close_timeout=SLOW, ping_interval=None,
                                    **kw)


async def echo(ws, msg):
    await ws.send(msg)
    try:
        got = await asyncio.wait_for(ws.recv(), SLOW)
    except asyncio.TimeoutError:
        raise AssertionError(f"{ws.path}: no echo of {msg[:40]!r} in "
                             f"{SLOW} s") from None
    assert got == msg, (ws.path, got, msg)


def drop(ws):
    """End the TCP connection with a reset, no close frame."""
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    ws.transport.abort()


async def chat_client(url, messages, ending):
    """Connect, echo each message (str: text, bytes: binary), then end:
    "close" (close handshake) or "drop" (reset)."""
    ws = await connect(url)
    for m in messages:
        await echo(ws, m)
    if ending == "close":
        await ws.close()
        assert ws.close_code == 1000
    else:
        drop(ws)


async def unix_clients(url, clients):
    """Clients of the unix: room one after the other: recorder.py --listen
    loses a line it has read ahead when it writes a reply (a TextIOWrapper
    used for both reading and writing drops its read buffer on write), so
    two of its clients chatting at once could lose a message."""
    for messages, ending in clients:
        await chat_client(url, messages, ending)


async def expect_status(url, status):
    with pytest.raises(InvalidStatusCode) as e:
        ws = await connect(url)
        await ws.close()
    assert e.value.status_code == status


def invalid_frame_client(port, path):
    """An unmasked frame: the daemon closes with 1002."""
    with wsraw.open_raw(port, path, timeout=SLOW) as c:
        c.send_frame(wsraw.OP_TEXT, "first")
        assert c.recv_message(SLOW) == (wsraw.OP_TEXT, "first")
        c.send_raw(wsraw.encode_frame(wsraw.OP_TEXT, b"bare", mask=False))
        assert c.recv_close(SLOW)[0] == 1002


def backend_pid(m, room, after=0):
    """The pid of the latest backend the daemon started for room, from the
    log after offset after."""
    match = m.wait_log(rf"room {re.escape(room)}: started backend \S+ "
                       rf"\(pid (\d+)\)", start=after)
    return int(match.group(1))


async def scenario(m, port):
    url = m.url
    # The long-lived /echo client: it stays through the backend's restart
    # and is still connected at SIGTERM (closed with 1001 by the stop).
    stayer = await connect(url("/echo"))
    await echo(stayer, "hello")
    room_stayer = await connect(url("/rooms/stay"))
    await echo(room_stayer, b"\x00\x01stay")

    # Wave 1: clients coming and going across rooms, concurrently.
    await asyncio.gather(
        chat_client(url("/echo"), ["a", b"\xff\x00b", "c" * 3000], "close"),
        chat_client(url("/echo?x=1"), ["d"], "drop"),
        chat_client(url("/rooms/a"), ["e", b"f"], "close"),
        chat_client(url("/rooms/b"), [b"g" * 70000], "drop"),
        chat_client(url("/rooms/a"), ["h"], "close"),
        chat_client(url("/auth-ok"), ["i", b"j"], "close"),
        unix_clients(url("/unix"), [(["k", b"l"], "close"),
                                    (["m"], "drop")]),
        expect_status(url("/auth-no"), 403),
        expect_status(url("/nope"), 404),
        asyncio.to_thread(invalid_frame_client, port, "/rooms/c"),
    )

    # Kill the exact room's backend: it is started again and the stayer,
    # held meanwhile, chats on.
    log_at = len(m.log())
    pid = int(re.findall(r"room /echo: started backend \S+ \(pid (\d+)\)",
                         m.log())[-1])
    os.kill(pid, signal.SIGKILL)
    m.wait_log(rf"room /echo: backend \(pid {pid}\) killed", start=log_at)
    new_pid = backend_pid(m, "/echo", after=log_at)
    assert new_pid != pid
    m.wait_log(r"room /echo: backend resumed", start=log_at)
    await echo(stayer, "after the restart")

    # Wave 2: the pattern rooms (linger 0) have stopped; they start again.
    await asyncio.gather(
        chat_client(url("/rooms/a"), ["n", b"o"], "close"),
        chat_client(url("/rooms/d"), ["p"], "drop"),
        chat_client(url("/echo"), [b"q"], "close"),
        chat_client(url("/unix"), ["r"], "close"),
        chat_client(url("/auth-ok"), ["s"], "drop"),
    )
    # Wave 3, staggered over ~2 s: pattern rooms stopping (linger 0) as
    # their last client leaves and starting again for the next one.
    async def later(delay, *args):
        await asyncio.sleep(delay)
        await chat_client(*args)
    await asyncio.gather(*[
        later(0.25 * i, url(f"/rooms/{'xy'[i % 2]}"),
              [f"w{i}", bytes([i]) * (i * 100)], ("close", "drop")[i % 3 == 2])
        for i in range(8)])
    # A client still in its handshake at the stop.
    half = socket.create_connection(("127.0.0.1", port), timeout=SLOW)
    half.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    return stayer, room_stayer, half


def test_memcheck_full_run(tmp_path):
    t0 = time.monotonic()
    rec_ok = tmp_path / "auth-ok.jsonl"
    rec_no = tmp_path / "auth-no.jsonl"
    rec_unix = tmp_path / "unix.jsonl"
    sock_path = str(tmp_path / "unix.sock")
    room_programs = []
    unix_backend = start_unix_room(
        [PYTHON, os.path.join(BACKENDS, "recorder.py"), str(rec_unix)],
        sock_path, room_programs)
    try:
        m = Memchecked(tmp_path, f"""\
handshake_timeout = 30s
authorize_timeout = 30s
close_timeout = 5s
shutdown_timeout = 30s
restart_delay = 100ms

[resource /echo]
backend = {example_cmd("echo/room.py")}

[resource /rooms/*]
backend = {example_cmd("echo/room.py")}
linger = 0

[resource /auth-ok]
backend = {backend_cmd("recorder.py", rec_ok, "--authorize", "accept")}
authorize = yes

[resource /auth-no]
backend = {backend_cmd("recorder.py", rec_no, "--authorize", "reject")}
authorize = yes

[resource /unix]
backend = unix:{sock_path}
""")
        try:
            m.wait_ready()
            startup = time.monotonic() - t0

            async def run():
                stayer, room_stayer, half = await scenario(m, m.port)
                try:
                    # The stop, with clients still connected.
                    m.proc.send_signal(signal.SIGTERM)
                    for ws in (stayer, room_stayer):
                        await asyncio.wait_for(ws.wait_closed(), SLOW)
                        assert ws.close_code == 1001, ws.close_code
                finally:
                    half.close()
            asyncio.run(run())
            status = m.proc.wait(SLOW)
        finally:
            m.kill()
    finally:
        unix_backend.terminate()
        unix_backend.wait(5)

    vg = m.vg_log()
    summary = [line for line in vg.splitlines()
               if re.search(r"ERROR SUMMARY|lost:|heap blocks|in use at exit",
                            line)]
    print(f"startup under memcheck {startup:.1f} s, whole run "
          f"{time.monotonic() - t0:.1f} s; valgrind says:")
    print("\n".join(summary))
    assert status == 0, \
        f"gatewayd under valgrind exited {status}:\n{vg}\n{m.log()[-3000:]}"
    assert re.search(r"ERROR SUMMARY: 0 errors", vg), vg
    assert "All heap blocks were freed" in vg or \
        re.search(r"definitely lost: 0 bytes", vg), vg
    # The authorizing rooms saw what they should have.
    assert [r["type"] for r in read_records(rec_no)] == ["hello", "open"]
    assert "message" in [r["type"] for r in read_records(rec_ok)]
