"""tcp: backends (a room's program on another host): records over TCP as
over a Unix socket; an unreachable or silent address is a backend that is
down, as a unix: one, with its clients held meanwhile."""
import asyncio
import os
import socket
import subprocess
import time

import websockets

from conftest import PYTHON, ROOT, free_port, read_records, wait_for
from wsclient import connect, expect_status, recv, wait_log

RECORDER = os.path.join(ROOT, "tests", "backends", "recorder.py")


def tcp_server(port, rec):
    proc = subprocess.Popen([PYTHON, RECORDER, str(rec), "--tcp", str(port)],
                            cwd=ROOT)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(up, what="the tcp backend")
    return proc


async def test_tcp_backend_serves_and_comes_back(gateway, tmp_path):
    """A room on tcp:127.0.0.1:PORT: hello, opens and echoes as with any
    backend; the server killed, the clients are held; started again on the
    same port, it gets the resumed hello and opens, then the held
    messages."""
    port = free_port()
    rec = tmp_path / "rec.jsonl"
    server = tcp_server(port, rec)
    g = gateway(f"""[gateway]
restart_delay = 100ms
[resource /t]
backend = tcp:127.0.0.1:{port}
""")
    try:
        async with connect(g, "/t") as a, connect(g, "/t") as b:
            await a.send("over tcp")
            assert await recv(a) == "over tcp"
            recs = read_records(rec, until=lambda r: len(r) >= 4)
            assert recs[0] == {"type": "hello", "room": "/t", "version": 1}
            server.kill()
            server.wait()
            await wait_log(g, "room /t: backend closed its connection")
            await b.send("while down")
            server = tcp_server(port, rec)
            assert await recv(b) == "while down"
            recs = read_records(rec, until=lambda r: any(
                x.get("text") == "while down" for x in r))
            hellos = [r for r in recs if r["type"] == "hello"]
            assert hellos[-1].get("resumed") is True, hellos
            assert sum(1 for r in recs if r["type"] == "open" and
                       r.get("resumed")) == 2
    finally:
        server.kill()
        server.wait()


async def test_tcp_backend_refused_and_silent(gateway, tmp_path):
    """Nobody listening: the room's backend is down (503 for a room never
    up).  A listener that never accepts, its backlog full: the connect
    gets no answer and is given up after 5 s, logged."""
    closed = free_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    # Fill the backlog: further SYNs go unanswered.
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(silent.getsockname())
        fillers.append(s)
    try:
        g = gateway(f"""[gateway]
[resource /refused]
backend = tcp:127.0.0.1:{closed}
[resource /silent]
backend = tcp:127.0.0.1:{silent.getsockname()[1]}
""")
        await wait_log(g, "room /refused: backend connection failed: "
                          "Connection refused")
        await expect_status(g.url("/refused"), 503)
        t0 = time.monotonic()
        await wait_log(g, "room /silent: cannot connect to backend: no "
                          "answer in 5000 ms", timeout=10)
        assert time.monotonic() - t0 < 8
    finally:
        for s in fillers:
            s.close()
        silent.close()


def test_tcp_backend_config_errors(tmp_path):
    from conftest import GATEWAYD
    for value, why in [("tcp:example.com:80", "not a numeric IPv4 address"),
                       ("tcp:*:80", "the address is unspecified"),
                       ("tcp:127.0.0.1", "expected")]:
        cfg = tmp_path / "t.ini"
        cfg.write_text(f"[gateway]\nlisten = 127.0.0.1:{free_port()}\n"
                       f"[resource /a]\nbackend = {value}\n")
        r = subprocess.run([GATEWAYD, "-t", "-c", str(cfg)],
                           capture_output=True, text=True)
        assert r.returncode == 1, r
        assert f"{cfg}:4: backend: '{value}': " in r.stderr, r.stderr
        assert why in r.stderr, r.stderr
