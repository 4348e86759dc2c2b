"""systemctl restart through systemd's fd store (issue 14): on SIGTERM,
with GATEWAYD_FDSTORE set and systemd restarting the unit, gatewayd puts
its state and every descriptor it names in the store, and the next
process takes them back from LISTEN_FDS by name.

PID 1 here is not systemd: the test plays the service manager, as
sd_notify(3) and sd_listen_fds(3) describe it.  Its notify socket keeps
the descriptors of FDSTORE=1 messages under their FDNAME (dropping those
of FDSTOREREMOVE=1), and it starts the next process with them at 3, 4,
... and LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES set.
GATEWAYD_FDSTORE=always stands for systemd's answer that the unit's job
is a restart (asked on the system bus otherwise)."""
import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
import uuid

import pytest
import websockets

import wsraw
from conftest import (GATEWAYD, PYTHON, ROOT, Gateway, backend_cmd,
                      free_port, read_records, stop_gateway, wait_for)
from test_operations import EXEC_WRAPPER, SYSTEMD_VARS

TIMEOUT = 10


class FdStore:
    """The service manager's end of sd_notify(3), with its fd store."""

    def __init__(self):
        name = f"gatewayd-test-{uuid.uuid4().hex}"
        self.address = "@" + name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name)
        self.sock.setblocking(False)
        self.fds = {}           # FDNAME -> descriptor (ours)
        self.messages = []
        self.removed = []
        # Read all along, as systemd does: the socket's queue holds a
        # few messages, and a sender blocks on a full one.
        self.lock = threading.Lock()
        self.running = True
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while self.running:
            select.select([self.sock], [], [], 0.05)
            self.poll()

    def poll(self):
        with self.lock:
            self._poll()

    def _poll(self):
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 65536, 16)
            except (BlockingIOError, OSError):
                return
            fields = dict(line.split("=", 1)
                          for line in data.decode().split("\n") if line)
            self.messages.append(fields)
            name = fields.get("FDNAME", "stored")
            if fields.get("FDSTORE") == "1":
                assert len(fds) == 1, fields
                assert name not in self.fds, f"{name} stored twice"
                self.fds[name] = fds[0]
            elif fields.get("FDSTOREREMOVE") == "1":
                self.removed.append(name)
                fd = self.fds.pop(name, None)
                if fd is not None:
                    os.close(fd)
            else:
                for fd in fds:
                    os.close(fd)

    def drop_hung_up(self):
        """What systemd does to a stored descriptor that hangs up."""
        for name, fd in list(self.fds.items()):
            p = select.poll()
            p.register(fd, select.POLLIN)
            for _, ev in p.poll(0):
                if ev & (select.POLLHUP | select.POLLERR):
                    os.close(self.fds.pop(name))

    def close(self):
        self.running = False
        self.reader.join()
        self.sock.close()
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


def start(tmp_path, config, name, store, pass_store=False):
    """gatewayd with config, NOTIFY_SOCKET at the store and
    GATEWAYD_FDSTORE=always; with pass_store, started as systemd starts
    it after a restart: the stored descriptors at 3, 4, ..."""
    config_path = tmp_path / "gatewayd.ini"
    config_path.write_text(config)
    log_path = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    env.update(NOTIFY_SOCKET=store.address, GATEWAYD_FDSTORE="always",
               ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    fds = []
    if pass_store:
        names = list(store.fds)
        fds = [store.fds[n] for n in names]
        env.update(TEST_FDS=",".join(str(fd) for fd in fds),
                   LISTEN_FDS=str(len(fds)),
                   LISTEN_FDNAMES=":".join(names),
                   TEST_SELF_PID="LISTEN_PID")
    port = int(config.split("listen = 127.0.0.1:")[1].split()[0])
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [PYTHON, "-c", EXEC_WRAPPER, GATEWAYD, "-c", str(config_path)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
            pass_fds=fds)
    g = Gateway(proc, port, config_path, log_path)

    def up():
        if proc.poll() is not None:
            raise AssertionError("gatewayd exited early:\n" + g.log())
        return "gatewayd: info: ready" in g.log()
    wait_for(up, what="gatewayd to be ready")
    return g


def unix_server(tmp_path, rec):
    sock = str(tmp_path / "room.sock")
    proc = subprocess.Popen(
        [PYTHON, os.path.join(ROOT, "tests", "backends", "recorder.py"),
         str(rec), "--listen", sock], cwd=ROOT)
    wait_for(lambda: os.path.exists(sock), what="the unix backend")
    return proc, sock


async def echo(ws, text):
    await ws.send(text)
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def test_restart_through_the_fd_store(tmp_path):
    """Clients in a unix: room and an exec: room, one of them in the
    middle of a fragmented message, stay connected across a restart
    through the store; the unix backend notices nothing; the exec room's
    backend (killed by systemd with the unit) is started again and gets
    the resumed opens; a client that left while no process ran is
    reported gone (1006); everything is taken out of the store."""
    store = FdStore()
    server, sock = unix_server(tmp_path, tmp_path / "unix.jsonl")
    exec_rec = tmp_path / "exec.jsonl"
    config = f"""[gateway]
listen = 127.0.0.1:{free_port()}
[resource /u]
backend = unix:{sock}
[resource /e]
backend = {backend_cmd("recorder.py", exec_rec)}
"""
    old = new = None
    clients = []
    try:
        old = start(tmp_path, config, "old", store)
        url = f"ws://127.0.0.1:{old.port}"
        clients = [await websockets.connect(url + p)
                   for p in ["/u"] * 3 + ["/e"] * 3]
        for i, ws in enumerate(clients):
            assert await echo(ws, f"before {i}") == f"before {i}"
        raw = wsraw.open_raw(old.port, "/u")
        raw.send_frame(wsraw.OP_TEXT, "half ", fin=False)
        leaver = wsraw.open_raw(old.port, "/u")
        leaver.send_frame(wsraw.OP_TEXT, "bye soon")
        assert leaver.recv_message(TIMEOUT) == (wsraw.OP_TEXT, "bye soon")

        old.proc.send_signal(signal.SIGTERM)
        # Read as systemd does, while the daemon stores (the socket's
        # queue holds a few messages only).
        deadline = time.monotonic() + TIMEOUT
        while old.proc.poll() is None and time.monotonic() < deadline:
            store.poll()
            time.sleep(0.01)
        assert old.proc.wait(1) == 0, old.log()
        store.poll()
        assert "gatewayd-state" in store.fds, store.messages
        assert "restart: 8 clients in 2 rooms wait in systemd's fd store" \
            in old.log(), old.log()
        # While nobody runs: one is reset (the store drops it: its
        # socket hangs up), one sends.
        leaver.abort()
        await clients[0].send("while down")
        time.sleep(0.2)
        store.drop_hung_up()

        new = start(tmp_path, config, "new", store, pass_store=True)
        assert "restart: took over 7 clients in 2 rooms" in new.log(), \
            new.log()
        assert await asyncio.wait_for(clients[0].recv(), TIMEOUT) == \
            "while down"
        for i, ws in enumerate(clients):
            assert await echo(ws, f"after {i}") == f"after {i}"
        raw.send_frame(wsraw.OP_CONT, "whole", fin=True)
        assert raw.recv_message(TIMEOUT) == (wsraw.OP_TEXT, "half whole")
        # The unix backend: one connection, one hello, no resumed open;
        # the leaver's close came (1006: it went while nobody ran).
        recs = read_records(tmp_path / "unix.jsonl", until=lambda r: any(
            x["type"] == "close" for x in r))
        assert [r["type"] for r in recs].count("hello") == 1, recs
        assert not any(r.get("resumed") for r in recs), recs
        closes = [r for r in recs if r["type"] == "close"]
        assert [c["code"] for c in closes] == [1006], closes
        # The exec room's backend started again, with resumed opens.
        recs = read_records(exec_rec, until=lambda r: sum(
            x["type"] == "hello" for x in r) == 2)
        hellos = [r for r in recs if r["type"] == "hello"]
        assert hellos[1].get("resumed") is True, hellos
        resumed = [r for r in recs if r["type"] == "open" and
                   r.get("resumed")]
        assert len(resumed) == 3, recs
        # Everything taken out of the store.
        store.poll()
        assert store.fds == {}, (store.fds, store.messages)
        assert "gatewayd-state" in store.removed
    finally:
        for ws in clients:
            await ws.close()
        if new is not None:
            new.proc.send_signal(signal.SIGINT)     # a plain stop
            assert new.proc.wait(TIMEOUT) == 0, new.log()
        if old is not None and old.proc.poll() is None:
            old.proc.kill()
        server.terminate()
        server.wait()
        store.close()


async def test_sigint_stops_as_ever(tmp_path):
    """SIGINT (and SIGTERM without GATEWAYD_FDSTORE) is a plain stop:
    nothing goes to the store, clients get 1001."""
    store = FdStore()
    g = None
    try:
        g = start(tmp_path, f"""[gateway]
listen = 127.0.0.1:{free_port()}
[resource /e]
backend = exec:cat
mode = client
""", "g", store)
        ws = await websockets.connect(f"ws://127.0.0.1:{g.port}/e")
        g.proc.send_signal(signal.SIGINT)
        store.poll()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert ws.close_code == 1001
        assert g.proc.wait(TIMEOUT) == 0
        store.poll()
        assert store.fds == {}, store.messages
    finally:
        if g is not None and g.proc.poll() is None:
            g.proc.kill()
        store.close()
