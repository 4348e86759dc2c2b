"""A graceful stop: SIGTERM or SIGINT closes every client with 1001, tells
the backends, lets them exit and exits 0."""
import asyncio
import re
import signal
import subprocess
import time

import pytest
from websockets.exceptions import InvalidStatusCode

from conftest import (BACKENDS, GATEWAYD, PYTHON, ROOT, backend_cmd,
                      free_port, pid_gone, read_records, wait_for)
from wsclient import (connect, expect_close, recv, whoami)

TIMEOUT = 5


async def wait_exit(proc, timeout):
    """Wait without blocking the loop: the clients must answer closes."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError("gatewayd did not exit")
        await asyncio.sleep(0.02)
    return proc.returncode


async def stop_with_clients(gateway, tmp_path, sig):
    rec = tmp_path / "rec.jsonl"
    srec = tmp_path / "scripted.jsonl"
    g = gateway(f"""[gateway]
[resource /rec]
backend = {backend_cmd("recorder.py", rec)}
[resource /pids/*]
backend = {backend_cmd("scripted.py", "--record", srec)}
""")
    clients = [await connect(g, "/rec") for _ in range(3)]
    clients += [await connect(g, "/pids/one"), await connect(g, "/pids/two")]
    for ws in clients[:3]:
        await ws.send("hi")
        assert await recv(ws) == "hi"
    pids = {(await whoami(ws))["pid"] for ws in clients[3:]}
    assert len(pids) == 2
    opens = [r["client"] for r in read_records(rec) if r["type"] == "open"]
    assert len(opens) == 3
    assert "stopping" not in g.log()

    start = time.monotonic()
    g.proc.send_signal(sig)
    results = await asyncio.gather(*(expect_close(ws) for ws in clients))
    assert [code for code, _ in results] == [1001] * len(clients)
    status = await wait_exit(g.proc, 5)
    assert status == 0, g.log()
    assert time.monotonic() - start < 4
    log = g.log()
    assert "stopping (5 clients" in log, log
    # Every backend got a close record for each of its clients ...
    closes = {r["client"]: r for r in read_records(rec)
              if r["type"] == "close"}
    assert sorted(closes) == sorted(opens)
    assert all(r["code"] == 1001 for r in closes.values())
    sclosed = [r for r in read_records(srec) if r["type"] == "close"]
    assert len(sclosed) == 2 and all(r["code"] == 1001 for r in sclosed)
    # ... and exited before gatewayd did.
    for pid in pids:
        assert pid_gone(pid), pid
        assert f"backend (pid {pid}) exited with status 0" in log, log
    assert "SIGKILL" not in log and "still running" not in log
    for ws in clients:
        await ws.close()
    return g


async def test_sigterm(gateway, tmp_path):
    await stop_with_clients(gateway, tmp_path, signal.SIGTERM)


async def test_sigint(gateway, tmp_path):
    await stop_with_clients(gateway, tmp_path, signal.SIGINT)


async def test_sigterm_idle(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
[resource /rec]
backend = {backend_cmd("recorder.py", rec)}
""")
    pid_line = [l for l in g.log().splitlines() if "started backend" in l][0]
    pid = int(pid_line.rsplit("pid ", 1)[1].rstrip(")"))
    start = time.monotonic()
    g.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(g.proc, 5) == 0
    assert time.monotonic() - start < 2
    assert pid_gone(pid)


async def test_sigterm_pending_handshake(gateway, tmp_path):
    """A client still authorizing gets 503 and its backend a close record."""
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
[resource /auth]
backend = {backend_cmd("recorder.py", rec, "--authorize", "ignore")}
authorize = yes
""")

    async def refused():
        with pytest.raises(InvalidStatusCode) as e:
            await connect(g, "/auth")
        return e.value.status_code
    pending = asyncio.ensure_future(refused())
    deadline = time.monotonic() + TIMEOUT
    while not any(r["type"] == "open" for r in read_records(rec)):
        assert time.monotonic() < deadline, "no open record"
        await asyncio.sleep(0.02)
    g.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(pending, TIMEOUT) == 503
    assert await wait_exit(g.proc, 5) == 0
    closes = [r for r in read_records(rec) if r["type"] == "close"]
    assert len(closes) == 1 and closes[0]["code"] == 1001


async def test_backend_ignoring_eof_is_killed(gateway, tmp_path):
    """A backend that does not exit on EOF gets SIGTERM after stop_timeout."""
    g = gateway("""[gateway]
[resource /stubborn]
backend = exec:/bin/sh -c 'cat >/dev/null; exec sleep 60'
stop_timeout = 500ms
""")
    async with connect(g, "/stubborn") as ws:
        start = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        assert (await expect_close(ws))[0] == 1001
    assert await wait_exit(g.proc, 5) == 0
    elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 3, elapsed
    assert "sending SIGTERM" in g.log()


async def test_sigterm_with_lingering_room(gateway, tmp_path):
    """A pattern room waiting out its linger does not delay the stop."""
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
[resource /l/*]
backend = {backend_cmd("scripted.py", "--record", rec)}
linger = 1h
""")
    async with connect(g, "/l/1") as ws:
        pid = (await whoami(ws))["pid"]
    start = time.monotonic()
    g.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(g.proc, 5) == 0
    assert time.monotonic() - start < 2
    assert pid_gone(pid)
    assert f"backend (pid {pid}) exited with status 0" in g.log()


async def test_sigterm_client_in_handshake(gateway):
    """A client that has not finished its request head gets 503."""
    g = gateway(f"""[gateway]
[resource /x]
backend = {backend_cmd("scripted.py")}
""")
    raw = g.connect_raw()
    raw.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n")
    await asyncio.sleep(0.2)
    g.proc.send_signal(signal.SIGTERM)
    reply = b""
    while True:
        chunk = await asyncio.get_running_loop().run_in_executor(
            None, raw.recv, 4096)
        if not chunk:
            break
        reply += chunk
    raw.close()
    assert reply.startswith(b"HTTP/1.1 503"), reply
    assert await wait_exit(g.proc, 5) == 0


async def test_second_signal_stops_at_once(gateway):
    """With a backend slow to stop, a second SIGTERM ends the wait."""
    g = gateway("""[gateway]
shutdown_timeout = 1h
[resource /slow]
backend = exec:/bin/sh -c 'cat >/dev/null; exec sleep 60'
stop_timeout = 1h
""")
    pid_line = [l for l in g.log().splitlines() if "started backend" in l][0]
    pid = int(pid_line.rsplit("pid ", 1)[1].rstrip(")"))
    g.proc.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.5)
    assert g.proc.poll() is None         # waiting for the backend
    start = time.monotonic()
    g.proc.send_signal(signal.SIGTERM)
    assert await wait_exit(g.proc, 5) == 0
    assert time.monotonic() - start < 2
    assert "again: stopping now" in g.log()
    deadline = time.monotonic() + 5
    while not pid_gone(pid):
        assert time.monotonic() < deadline, "the backend survived"
        await asyncio.sleep(0.02)


async def test_sigterm_unix_backend(gateway, unix_room, tmp_path):
    """A unix: backend gets the close records before its connection ends."""
    rec = tmp_path / "rec.jsonl"
    sock = unix_room([PYTHON, f"{BACKENDS}/recorder.py", str(rec)])
    g = gateway(f"""[gateway]
[resource /u]
backend = unix:{sock}
[resource /v/*]
backend = unix:{sock}
""")
    clients = [await connect(g, p) for p in ("/u", "/u", "/v/1")]
    for ws in clients:
        await ws.send("hi")
        assert await recv(ws) == "hi"
    g.proc.send_signal(signal.SIGTERM)
    results = await asyncio.gather(*(expect_close(ws) for ws in clients))
    assert [code for code, _ in results] == [1001] * 3
    assert await wait_exit(g.proc, 5) == 0
    records = read_records(rec, until=lambda r: sum(
        x["type"] == "close" for x in r) >= 3)
    opens = sorted(r["client"] for r in records if r["type"] == "open")
    closes = sorted(r["client"] for r in records if r["type"] == "close")
    assert opens == closes
    assert all(r["code"] == 1001 for r in records if r["type"] == "close")


async def test_sighup_keeps_running(gateway):
    g = gateway(f"""[gateway]
[resource /x]
backend = {backend_cmd("scripted.py")}
""")
    async with connect(g, "/x") as ws:
        g.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while "SIGHUP" not in g.log():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await ws.send("still here")
        assert await recv(ws) == "still here"
    assert g.proc.poll() is None


def test_backends_die_with_killed_daemon(tmp_path):
    """gatewayd killed outright (no stop at all): its backends read EOF
    on stdin, as PROTOCOL.md asks them to exit then.  (Under systemd the
    unit's KillMode takes the rest; a backend that does not read is not
    signalled, so that an upgrade can hand processes over.)"""
    port = free_port()
    config = tmp_path / "kill.ini"
    config.write_text(f"""[gateway]
listen = 127.0.0.1:{port}
[resource /py]
backend = {backend_cmd("scripted.py")}
[resource /sh]
backend = exec:/bin/sh -c 'while read l; do :; done'
""")
    log_path = tmp_path / "kill.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([GATEWAYD, "-c", str(config)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "ready" in log_path.read_text(), what="ready")
        pids = [int(m) for m in re.findall(r"started backend .* \(pid (\d+)\)",
                                          log_path.read_text())]
        assert len(pids) == 2
        assert not any(pid_gone(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: all(pid_gone(p) for p in pids), timeout=5,
             what="the backends to die with gatewayd")


def raw_client(g, path):
    raw = g.connect_raw()
    raw.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                .encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    return raw


@pytest.mark.parametrize("close_timeout, shutdown_timeout",
                         [("500ms", "1h"), ("1h", "500ms")])
async def test_sigterm_unresponsive_client(gateway, tmp_path, close_timeout,
                                           shutdown_timeout):
    """A client that never answers the close frame holds the stop up only
    until close_timeout or shutdown_timeout, whichever comes first."""
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
close_timeout = {close_timeout}
shutdown_timeout = {shutdown_timeout}
[resource /r]
backend = {backend_cmd("recorder.py", rec)}
""")
    raw = raw_client(g, "/r")
    try:
        read_records(rec, until=lambda r: any(x["type"] == "open" for x in r))
        start = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        assert await wait_exit(g.proc, 5) == 0
        assert 0.4 <= time.monotonic() - start < 3
        # It did get its close frame: 1001.
        raw.settimeout(1)
        assert raw.recv(4096)[:4] == b"\x88\x16\x03\xe9"
    finally:
        raw.close()
    closes = [r for r in read_records(rec) if r["type"] == "close"]
    assert [r["code"] for r in closes] == [1001]
