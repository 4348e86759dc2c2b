"""make cluster-demo, as a user runs it.

conf/cluster/demo.sh starts Redis, three gatewayd nodes that share their
rooms through it, and HAProxy in front of them (on free ports here, which
the script takes from its environment).  Through HAProxy the chat page
loads, and two people whom HAProxy sends to two different nodes chat in
one room.  SIGTERM to the script stops everything it started: no process
of it is left, nor its temporary directory.
"""
import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest
import websockets

from conftest import GATEWAYD, ROOT, free_port, sanitizer_report, wait_for

DEMO = os.path.join(ROOT, "conf", "cluster", "demo.sh")
TIMEOUT = 5


class Demo:
    def __init__(self, proc, ports, log_path, tmp):
        self.proc = proc
        self.ports = ports
        self.log_path = log_path
        self.tmp = tmp

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def url(self, scheme, path):
        return f"{scheme}://127.0.0.1:{self.ports['front']}{path}"

    def rooms(self, admin_port):
        with urllib.request.urlopen(
                f"http://127.0.0.1:{admin_port}/rooms", timeout=TIMEOUT) as r:
            return json.load(r)["rooms"]


def session_processes(sid):
    """The pids of the processes of session sid (zombies too)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the name: state, ppid, pgrp, session.
        if int(fields[3]) == sid:
            pids.append(int(name))
    return pids


@pytest.fixture
def demo(tmp_path):
    ports = {"front": free_port(), "redis": free_port(),
             "nodes": [free_port() for _ in range(3)],
             "admin": [free_port() for _ in range(3)]}
    env = dict(os.environ, TMPDIR=str(tmp_path),
               CLUSTER_PORT=str(ports["front"]),
               CLUSTER_REDIS_PORT=str(ports["redis"]),
               CLUSTER_NODE_PORTS=" ".join(map(str, ports["nodes"])),
               CLUSTER_ADMIN_PORTS=" ".join(map(str, ports["admin"])))
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        # A session of its own: whatever the demo starts stays in it.
        proc = subprocess.Popen([DEMO, GATEWAYD], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    d = Demo(proc, ports, log_path, tmp_path)

    def ready():
        if proc.poll() is not None:
            raise AssertionError("the demo stopped:\n" + d.log())
        return "cluster-demo: ready" in d.log()
    try:
        wait_for(ready, timeout=15, what="the cluster demo")
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(25)
            except subprocess.TimeoutExpired:
                pass
        # Nothing of it outlives the test, whatever happened.
        for pid in session_processes(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.wait()


async def recv_text(ws, want):
    """Messages until want; returns the ones before it."""
    seen = []
    while True:
        text = await asyncio.wait_for(ws.recv(), TIMEOUT)
        if text == want:
            return seen
        seen.append(text)


def test_chat_through_haproxy_then_stop(demo):
    # The page, as a browser gets it.
    with urllib.request.urlopen(demo.url("http", "/"), timeout=TIMEOUT) as r:
        assert r.status == 200
        assert b"gatewayd chat" in r.read()
    with urllib.request.urlopen(demo.url("http", "/chat.js"),
                                timeout=TIMEOUT) as r:
        assert r.status == 200

    async def chat():
        alice = await websockets.connect(demo.url("ws", "/chat?name=alice"))
        await recv_text(alice, "alice has joined /chat")
        bob = await websockets.connect(demo.url("ws", "/chat?name=bob"))
        await recv_text(bob, "bob has joined /chat")
        await recv_text(alice, "bob has joined /chat")

        # leastconn gave them two nodes: one room across both.
        nodes = [port for port in demo.ports["admin"]
                 if any(room["path"] == "/chat" and room["clients"]
                        for room in demo.rooms(port))]
        assert len(nodes) == 2, [demo.rooms(p) for p in demo.ports["admin"]]

        await alice.send("hi bob")
        await recv_text(bob, "alice says hi bob")
        await recv_text(alice, "alice says hi bob")
        await bob.send("hi alice")
        await recv_text(alice, "bob says hi alice")
        await recv_text(bob, "bob says hi alice")
        await bob.close()
        await recv_text(alice, "bob has left /chat")
        await alice.close()
    asyncio.run(chat())

    started = time.monotonic()
    demo.proc.send_signal(signal.SIGTERM)
    status = demo.proc.wait(20)
    log = demo.log()
    assert status == 128 + signal.SIGTERM, log
    assert time.monotonic() - started < 15, log
    assert "cluster-demo: stopping" in log
    assert sanitizer_report(log) is None, log
    # Each node stopped on its own terms, not killed.
    for name in ("gw1", "gw2", "gw3"):
        assert any(line.startswith(f"{name}: ") and
                   line.endswith("gatewayd: info: stopped")
                   for line in log.splitlines()), log
    assert session_processes(demo.proc.pid) == [], log
    assert not [p for p in os.listdir(demo.tmp)
                if p.startswith("gatewayd-cluster.")], log
    with pytest.raises(OSError):
        urllib.request.urlopen(demo.url("http", "/"), timeout=1)


# The chat page through HAProxy in a real browser (tests/test_browser.py's
# windows): two windows chat in one room of the cluster.
from test_browser import browsers  # noqa: E402,F401  (a fixture)


def test_chat_page_through_haproxy_in_the_browser(demo, browsers):
    page = demo.url("http", "/")
    alice = browsers("alice", "1000,800")
    alice.open(page)
    alice.join("/bongo", "alice", enter=True)
    alice.wait_state("open")
    alice.wait_line("alice has joined /bongo")
    bob = browsers("bob", "412,860")
    bob.open(page)
    bob.join("/bongo", "bob")
    bob.wait_state("open")
    bob.wait_line("bob has joined /bongo")
    alice.wait_line("bob has joined /bongo")
    # The nodes have them (which ones is HAProxy's choice: a browser's
    # page connections count for leastconn too; the test above shows two
    # nodes sharing a room).
    clients = sum(len(room["clients"]) for port in demo.ports["admin"]
                  for room in demo.rooms(port) if room["path"] == "/bongo")
    assert clients == 2
    alice.say("hello from one node")
    bob.wait_line("alice says hello from one node")
    bob.say("and from another")
    alice.wait_line("bob says and from another")
    assert alice.lines() == ["alice has joined /bongo",
                             "bob has joined /bongo",
                             "alice says hello from one node",
                             "bob says and from another"]
    assert alice.console_errors() == [] and bob.console_errors() == []
