"""Rooms across hosts (docs/CLUSTER.md): three real gatewayd nodes and a
real redis-server on free loopback ports, the rooms' backends real
processes, and real kills.

Every node runs the same config but its node name; the room's backend
runs on the node holding its lease (its log says "this node runs its
backend now"), and the resilient.py backend records what each of its
processes gets into RECORD_DIR/PID.jsonl, so a test can tell the records
of the first holder's backend from those of the next.
"""
import asyncio
import base64
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

from conftest import (PYTHON, backend_cmd, free_port, launch_gateway,
                      start_unix_room, stop_gateway, wait_for)
from test_resilience import (backend_pids, count, expect_close, read_records,
                             records_of)
from wsraw import handshake_request, make_key, read_response_head

TIMEOUT = 10
LEASE_MS = 1000
HOLDING = "this node runs its backend now"


class Redis:
    """redis-server on a free port, its data (an append-only file) in
    a directory of its own, so that a restart finds what it had."""

    def __init__(self, directory, *extra):
        self.dir = directory
        self.port = free_port()
        self.extra = list(extra)
        self.password = None
        if "--requirepass" in extra:
            self.password = extra[extra.index("--requirepass") + 1]
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "a")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--dir", str(self.dir)] + self.extra,
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.ping(), what="redis-server")

    def command(self, *args):
        """One command in RESP (after AUTH, with a password); the raw
        reply."""
        commands = [args]
        if self.password is not None:
            commands.insert(0, ("AUTH", self.password))
        out = b""
        for cmd in commands:
            out += b"*%d\r\n" % len(cmd)
            for a in cmd:
                a = a.encode() if isinstance(a, str) else a
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as s:
            s.sendall(out)
            time.sleep(0.05)
            reply = s.recv(1 << 20)
        if self.password is not None:
            reply = reply.split(b"\r\n", 1)[1]    # AUTH's +OK
        return reply

    def ping(self):
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


class Cluster:
    """Three nodes gw1..gw3 of one config (with "{backend}"'s value) and
    a Redis."""

    def __init__(self, tmp_path, resources, n=3, listen_extra="",
                 cluster_extra="", lease_ms=LEASE_MS, redis_args=(),
                 expect_ready=True, admin=False):
        self.tmp = tmp_path
        self.redis = Redis(tmp_path, *redis_args)
        self.nodes = []
        self.killed = set()
        self.admin_ports = []
        for i in range(1, n + 1):
            port = free_port()
            self.admin_ports.append(free_port())
            config = (f"[gateway]\nlisten = 127.0.0.1:{port}{listen_extra}\n"
                      + (f"admin_listen = 127.0.0.1:{self.admin_ports[-1]}\n"
                         if admin else "") +
                      f"log_level = debug\n"
                      f"[cluster]\nredis = 127.0.0.1:{self.redis.port}\n"
                      f"node = gw{i}\nlease = {lease_ms}ms\n" +
                      cluster_extra + resources)
            self.nodes.append(launch_gateway(config, port,
                                             tmp_path / f"gw{i}",
                                             expect_ready))

    def url(self, i, path):
        return self.nodes[i].url(path)

    def holder(self, room, timeout=TIMEOUT):
        """The index of the node running room's backend (the last one to
        take it)."""
        def find():
            best = None
            for i, g in enumerate(self.nodes):
                if i in self.killed:
                    continue
                log = g.log()
                at = log.rfind(f"room {room}: {HOLDING}")
                if at >= 0 and "giving its backend up" not in log[at:]:
                    best = i
            return best
        return wait_for(lambda: (lambda h: h + 1 if h is not None else None)
                        (find()), timeout, what=f"a holder of {room}") - 1

    def kill(self, i):
        self.nodes[i].proc.kill()
        self.nodes[i].proc.wait()
        self.killed.add(i)

    def stop(self):
        for i, g in enumerate(self.nodes):
            if i not in self.killed:
                stop_gateway(g)
        self.redis.stop()


@pytest.fixture
def cluster(tmp_path):
    made = []

    def make(resources, **kw):
        c = Cluster(tmp_path, resources, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.stop()


def connect(url, **kw):
    kw.setdefault("open_timeout", TIMEOUT)
    kw.setdefault("compression", None)
    return websockets.connect(url, **kw)


async def recv(ws, timeout=TIMEOUT):
    return await asyncio.wait_for(ws.recv(), timeout)


async def quiet(ws, seconds=0.5):
    """Nothing arrives for seconds."""
    try:
        msg = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    raise AssertionError(f"unexpected message {msg!r}")


def chat_room(path="/chat"):
    return (f"[resource {path}]\nbackend = exec:/usr/bin/python3 "
            f"{os.path.join(os.path.dirname(__file__), '..', 'examples', 'chat', 'room.py')}\n")


# 1. The README's chat with clients spread over the nodes

async def test_chat_across_three_nodes(cluster):
    c = cluster(chat_room())
    c.holder("/chat")
    alice = await connect(c.url(0, "/chat?name=alice"))
    assert await recv(alice) == "alice has joined /chat"
    bob = await connect(c.url(1, "/chat?name=bob"))
    assert await recv(bob) == "bob has joined /chat"
    assert await recv(alice) == "bob has joined /chat"
    carol = await connect(c.url(2, "/chat?name=carol"))
    for ws in (alice, bob, carol):
        assert await recv(ws) == "carol has joined /chat"
    await bob.send("hello from node 2")
    for ws in (alice, bob, carol):
        assert await recv(ws) == "bob says hello from node 2"
    await carol.send("and from node 3")
    for ws in (alice, bob, carol):
        assert await recv(ws) == "carol says and from node 3"
    await alice.close()
    for ws in (bob, carol):
        assert await recv(ws) == "alice has left /chat"
    await bob.close()
    await carol.close()


# 2. Commands by cluster-wide id, binary messages, an authorizing room

async def whoami(ws):
    await ws.send("whoami")
    return json.loads(await recv(ws))["client"]


async def test_commands_across_nodes(cluster, tmp_path):
    rec = tmp_path / "rec.jsonl"
    c = cluster("[resource /s]\nbackend = " +
                backend_cmd("scripted.py", "--record", rec) + "\n")
    c.holder("/s")
    ws = [await connect(c.url(i, "/s")) for i in range(3)]
    ids = [await whoami(w) for w in ws]
    # Ids are unique across the cluster and name their node.
    assert len(set(ids)) == 3
    for i, cid in enumerate(ids):
        assert cid.startswith("c") and f"@gw{i + 1}." in cid, cid

    # send to one client on another node
    await ws[0].send("cmd:" + json.dumps(
        {"type": "send", "client": ids[2], "text": "to node 3"}))
    assert await recv(ws[2]) == "to node 3"
    # send to a list spanning two nodes
    await ws[0].send("cmd:" + json.dumps(
        {"type": "send", "client": [ids[1], ids[2]], "text": "two"}))
    assert await recv(ws[1]) == "two"
    assert await recv(ws[2]) == "two"
    # broadcast except a client of another node
    await ws[2].send("cmd:" + json.dumps(
        {"type": "broadcast", "text": "all but 2", "except": [ids[1]]}))
    assert await recv(ws[0]) == "all but 2"
    assert await recv(ws[2]) == "all but 2"
    await quiet(ws[1])
    await quiet(ws[0], 0.1)
    # binary both ways: echoed back to its sender, and broadcast
    await ws[1].send(b"\x00\xffbin")
    assert await recv(ws[1]) == b"\x00\xffbin"
    await ws[1].send("cmd:" + json.dumps(
        {"type": "broadcast",
         "binary": base64.b64encode(b"\x01\x02").decode()}))
    for w in ws:
        assert await recv(w) == b"\x01\x02"
    # close by id, from a client of another node
    await ws[0].send("cmd:" + json.dumps(
        {"type": "close", "client": ids[1], "code": 4001,
         "reason": "bye"}))
    assert await expect_close(ws[1]) == (4001, "bye")
    # The backend saw every member's records, whatever its node.
    records = read_records(rec, until=lambda r: any(
        x.get("type") == "close" and x["client"] == ids[1] for x in r))
    assert {r["client"] for r in records if r.get("type") == "open"} == \
        set(ids)
    await ws[0].close()
    await ws[2].close()


async def test_authorizing_room_across_nodes(cluster, tmp_path):
    rec = tmp_path / "rec.jsonl"
    c = cluster("[resource /auth]\nauthorize = yes\nbackend = " +
                backend_cmd("scripted.py", "--record", rec) + "\n")
    h = c.holder("/auth")
    other = (h + 1) % 3
    # accepted on a node that does not run the backend, with the
    # subprotocol the backend chose
    ws = await connect(c.url(other, "/auth?verdict=accept&subprotocol=chat"),
                       subprotocols=["chat", "other"])
    assert ws.subprotocol == "chat"
    cid = await whoami(ws)
    assert f"@gw{other + 1}." in cid
    # rejected with the status and reason the backend gave
    with pytest.raises(InvalidStatusCode) as e:
        await connect(c.url((h + 2) % 3, "/auth?verdict=reject&status=451"))
    assert e.value.status_code == 451
    await ws.close()


# 3. kill -9 of the node that runs the room's backend

class Sender:
    """A client sending numbered messages every interval."""

    def __init__(self, name, ws, pad=0):
        self.name, self.ws, self.sent, self.pad = name, ws, 0, pad
        self.got = []
        self.closed = None
        self.task = None

    async def run(self, interval, stop):
        while not stop.is_set():
            await self.ws.send(f"{self.name}-{self.sent:05d}" +
                               "." * self.pad)
            self.sent += 1
            await asyncio.sleep(interval)

    async def read(self):
        try:
            async for m in self.ws:
                self.got.append(m)
        except ConnectionClosed:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason)


def resilient_room(cluster, tmp_path, n=3):
    """A cluster of n nodes whose room /room is resilient.py's, recording
    into tmp_path/rec, with a holder; the cluster and the directory."""
    rec = tmp_path / "rec"
    rec.mkdir()
    c = cluster("[resource /room]\nbackend = " +
                backend_cmd("resilient.py", rec, "--no-echo") + "\n", n=n)
    c.holder("/room")
    return c, rec


def all_records(rec_dir):
    """Every backend process's records, by pid, in start order (pids
    grow: the test starts far fewer processes than pid_max)."""
    return {pid: records_of(rec_dir, pid)
            for pid in sorted(backend_pids(rec_dir))}


def check_every_message(records_by_pid, senders):
    """Every message of every sender reached a backend, each client's in
    order; a repeat is marked redelivered."""
    for recs in records_by_pid.values():
        for r in recs:
            if r.get("type") == "message" and "text" in r:
                r["text"] = r["text"].rstrip(".")
    for s in senders:
        seen = []
        for recs in records_by_pid.values():
            for r in recs:
                if r.get("type") == "message" and \
                        r.get("text", "").startswith(s.name + "-"):
                    if r.get("text") in seen:
                        assert r.get("redelivered") is True, r
                    else:
                        seen.append(r["text"])
        want = [f"{s.name}-{i:05d}" for i in range(s.sent)]
        assert sorted(seen) == want, (s.name, len(seen), s.sent)
        # In order within each backend process.
        for recs in records_by_pid.values():
            mine = [r["text"] for r in recs if r.get("type") == "message"
                    and r.get("text", "").startswith(s.name + "-")
                    and not r.get("redelivered")]
            assert mine == sorted(mine), (s.name, mine[:20])


def all_delivered(rec, senders, timeout=TIMEOUT):
    """Wait until every sender's last message is at a backend, then check
    them all (check_every_message); the records by pid."""
    def done(by_pid):
        texts = {r.get("text", "").rstrip(".") for rs in by_pid.values()
                 for r in rs if r.get("type") == "message"}
        return all(f"{s.name}-{s.sent - 1:05d}" in texts for s in senders)
    by_pid = wait_for(lambda: (lambda b: b if done(b) else None)(
        all_records(rec)), timeout, what="every message at a backend")
    check_every_message(by_pid, senders)
    return by_pid


async def test_holder_killed_clients_on_other_nodes_lose_nothing(
        cluster, tmp_path):
    c, rec = resilient_room(cluster, tmp_path)
    h = c.holder("/room")
    others = [i for i in range(3) if i != h]
    victims = [await connect(c.url(h, "/room")) for _ in range(2)]
    senders = []
    for i in others:
        for k in range(3):
            senders.append(Sender(f"n{i}c{k}", await connect(c.url(i, "/room"))))
    first = wait_for(lambda: backend_pids(rec), what="the backend")[0]
    read_records(rec / f"{first}.jsonl",
                 until=lambda r: count(r, "open") == 2 + len(senders))
    opens = {r["client"]: r for r in records_of(rec, first)
             if r.get("type") == "open"}
    victim_ids = [cid for cid in opens if f"@gw{h + 1}." in cid]
    assert len(victim_ids) == 2
    stop = asyncio.Event()
    readers = [asyncio.ensure_future(s.read()) for s in senders]
    tasks = [asyncio.ensure_future(s.run(0.025, stop)) for s in senders]
    await asyncio.sleep(0.5)
    c.kill(h)
    killed_at = time.monotonic()
    await asyncio.sleep(2.5 * LEASE_MS / 1000 + 1)
    stop.set()
    await asyncio.gather(*tasks)
    new_holder = c.holder("/room")
    assert new_holder in others

    by_pid = all_delivered(rec, senders)
    # The survivors stayed connected.
    for s in senders:
        assert s.closed is None, (s.name, s.closed)
    # The new backend: a resumed hello, a resumed open of every member
    # still connected, and a 1006 close for each client of the dead node.
    new = [pid for pid in by_pid if pid != first]
    assert len(new) == 1, by_pid.keys()
    recs = by_pid[new[0]]
    assert recs[0]["type"] == "hello" and recs[0].get("resumed") is True
    resumed = {r["client"] for r in recs
               if r.get("type") == "open" and r.get("resumed")}
    survivors = {cid for cid in opens if cid not in victim_ids}
    assert survivors <= resumed, (survivors, resumed)
    closes = wait_for(lambda: (lambda r: r if {x["client"] for x in r if
                      x.get("type") == "close"} >= set(victim_ids) else None)
                      (records_of(rec, new[0])), TIMEOUT,
                      what="the dead node's clients' close records")
    for x in closes:
        if x.get("type") == "close" and x["client"] in victim_ids:
            assert x["code"] == 1006, x
    # ... within the lease (and its renewal tick) of the kill, give or take
    # the time this test took to look.
    assert time.monotonic() - killed_at < 2.5 * LEASE_MS / 1000 + 1 + \
        TIMEOUT
    # Messages reach the survivors still: the room carries on.
    await senders[0].ws.send("cmd-free text")
    for s in senders:
        await s.ws.close()
    await asyncio.gather(*readers)


# 4. kill -9 of a node that does not run the backend

async def test_other_node_killed_its_clients_closed(cluster, tmp_path):
    rec = tmp_path / "rec.jsonl"
    c = cluster("[resource /s]\nbackend = " +
                backend_cmd("scripted.py", "--record", rec) + "\n")
    h = c.holder("/s")
    victim, survivor = (h + 1) % 3, (h + 2) % 3
    v = [await connect(c.url(victim, "/s")) for _ in range(3)]
    vids = [await whoami(w) for w in v]
    s = await connect(c.url(survivor, "/s"))
    sid = await whoami(s)
    c.kill(victim)
    killed_at = time.monotonic()
    records = read_records(rec, timeout=4 * LEASE_MS / 1000 + TIMEOUT,
                           until=lambda r: {x["client"] for x in r if
                                            x.get("type") == "close"}
                           >= set(vids))
    took = time.monotonic() - killed_at
    # Within the lease (its key lives a tick less, and the holder reaps
    # every tick), give or take the machine's load.
    assert took < LEASE_MS / 1000 + 0.8, took
    for x in records:
        if x.get("type") == "close" and x["client"] in vids:
            assert x["code"] == 1006, x
    # The room carries on.
    await s.send("still here")
    assert await recv(s) == "still here"
    assert sid not in {x["client"] for x in records
                       if x.get("type") == "close"}
    await s.close()


# 5. Redis stopped for 3 s and started again

async def test_redis_restart_rooms_hold_and_resume(cluster, tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    local = tmp_path / "local.jsonl"
    c = cluster("[resource /room]\nbackend = " +
                backend_cmd("resilient.py", rec, "--no-echo") + "\n" +
                "[resource /local]\ncluster = no\nbackend = " +
                backend_cmd("scripted.py", "--record", local) + "\n")
    c.holder("/room")
    senders = [Sender(f"n{i}", await connect(c.url(i, "/room")))
               for i in range(3)]
    lone = await connect(c.url(1, "/local"))
    readers = [asyncio.ensure_future(s.read()) for s in senders]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(s.run(0.05, stop)) for s in senders]
    await asyncio.sleep(0.5)
    c.redis.stop()
    await asyncio.sleep(1)
    # A local room does not notice.
    await lone.send("local echo")
    assert await recv(lone) == "local echo"
    await asyncio.sleep(2)
    c.redis.start()
    for g in c.nodes:
        wait_for(lambda: g.log().count("cluster: connected to redis") >= 2,
                 TIMEOUT, what="the nodes back on redis")
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(*tasks)

    by_pid = all_delivered(rec, senders)
    for s in senders:
        assert s.closed is None, (s.name, s.closed)
    for g in c.nodes:
        log = g.log()
        # Said once, not once per message or per retry.
        assert log.count("shared rooms hold their clients") == 1, \
            log[-3000:]
    for s in senders:
        await s.ws.close()
    await lone.close()
    await asyncio.gather(*readers)


# 6. Through HAProxy: one address, three nodes, one room

def haproxy_config(front, nodes):
    servers = "\n".join(
        f"    server gw{i + 1} 127.0.0.1:{g.port} send-proxy-v2"
        for i, g in enumerate(nodes))
    return f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend ws
    bind 127.0.0.1:{front}
    default_backend gateways
backend gateways
    balance leastconn
{servers}
"""


async def test_three_hundred_clients_through_haproxy(cluster, tmp_path):
    rec = tmp_path / "rec.jsonl"
    c = cluster("[resource /s]\nbackend = " +
                backend_cmd("scripted.py", "--record", rec) + "\n",
                listen_extra=" proxy")
    c.holder("/s")
    front = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_config(front, c.nodes))
    proxy = subprocess.Popen(["haproxy", "-f", str(cfg)],
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", front), 1).close()
                return True
            except OSError:
                return False
        wait_for(up, what="haproxy")
        clients = []
        for _ in range(300):
            clients.append(await connect(f"ws://127.0.0.1:{front}/s"))
        ids = await asyncio.gather(*(whoami(w) for w in clients))
        assert len(set(ids)) == 300
        per_node = {n: sum(1 for i in ids if f"@gw{n}." in i)
                    for n in (1, 2, 3)}
        assert all(v >= 50 for v in per_node.values()), per_node
        # One room: a broadcast reaches all of them.
        await clients[0].send("cmd:" + json.dumps(
            {"type": "broadcast", "text": "to the 300"}))
        got = await asyncio.gather(*(recv(w) for w in clients))
        assert got == ["to the 300"] * 300
        # The backend saw the clients' own address (PROXY v2), not
        # a missing one.
        opens = [r for r in read_records(rec) if r.get("type") == "open"]
        assert len(opens) == 300
        assert all(o["remote"].startswith("127.0.0.1:") for o in opens), \
            opens[0]
        await asyncio.gather(*(w.close() for w in clients))
    finally:
        proxy.terminate()
        proxy.wait(10)


# 7. 1000 members over three nodes, 10,000 broadcasts

def raw_member(port, path):
    """A member on a raw socket, read in bulk by the caller."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.sendall(handshake_request(path, key=make_key()))
    status, _headers, rest = read_response_head(s)
    assert status == 101
    return s, rest


def test_thousand_members_ten_thousand_broadcasts(cluster, tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    # No pings: the members compare the bytes they read.
    # The default lease: a loaded machine (the sanitizer build's run)
    # must not move the room while it works.
    c = cluster("[resource /b]\nping_interval = 0\nbackend = " +
                backend_cmd("resilient.py", rec, "--no-echo") + "\n",
                lease_ms=5000)
    c.holder("/b")
    members = [raw_member(c.nodes[i % 3].port, "/b") for i in range(1000)]
    pid = wait_for(lambda: backend_pids(rec), what="the backend")[0]
    read_records(rec / f"{pid}.jsonl", timeout=30,
                 until=lambda r: count(r, "open") == 1000)
    joined = time.monotonic()
    n = 10000
    # What every member must read: each broadcast's unmasked text frame,
    # in order (8 digits each).
    want = b"".join(b"\x81\x08%08d" % i for i in range(n))
    sender = socket.create_connection(("127.0.0.1", c.nodes[0].port))
    sender.sendall(handshake_request("/b", key=make_key()))
    read_response_head(sender)
    from wsraw import encode_frame
    sender.sendall(encode_frame(1, b"burst:%d:100" % n))
    import selectors
    sel = selectors.DefaultSelector()
    got = {}
    for i, (s, rest) in enumerate(members):
        s.setblocking(False)
        got[i] = bytearray(rest)
        sel.register(s, selectors.EVENT_READ, i)
    deadline = time.monotonic() + 120
    pending = set(range(1000))
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(1):
            i = key.data
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            assert data, f"member {i} closed after {len(got[i])} bytes"
            got[i] += data
            if len(got[i]) >= len(want):
                sel.unregister(key.fileobj)
                pending.discard(i)
    assert not pending, f"{len(pending)} members short, e.g. " \
        f"{min(len(got[i]) for i in pending)} of {len(want)} bytes"
    took = time.monotonic() - joined
    for i in range(1000):
        assert bytes(got[i]) == want, f"member {i} differs"
    print(f"10,000 broadcasts to 1000 members over 3 nodes: {took:.1f} s")
    for s, _ in members:
        s.close()
    sender.close()


# 8. Redis away past hold_timeout: the shared rooms' clients get 1012

async def test_redis_away_past_hold_timeout(cluster, tmp_path):
    rec = tmp_path / "rec.jsonl"
    c = cluster("[resource /s]\nhold_timeout = 1s\nbackend = " +
                backend_cmd("scripted.py", "--record", rec) + "\n" +
                "[resource /local]\ncluster = no\nbackend = " +
                backend_cmd("scripted.py") + "\n")
    c.holder("/s")
    shared = [await connect(c.url(i, "/s")) for i in range(3)]
    local = await connect(c.url(0, "/local"))
    c.redis.stop()
    started = time.monotonic()
    for ws in shared:
        code, _reason = await expect_close(ws, timeout=TIMEOUT)
        assert code == 1012
    took = time.monotonic() - started
    assert 0.9 < took < 1 + 2 * LEASE_MS / 5000 + 1.5, took
    # A local room is not held by Redis.
    await local.send("still local")
    assert await recv(local) == "still local"
    await local.close()
    # Later clients of the shared room wait for Redis afresh.
    late = await connect(c.url(1, "/s"))
    c.redis.start()
    await late.send("after")
    assert await recv(late) == "after"
    await late.close()


# 9. A backend that stops reading: the room's stream stays bounded

async def test_stream_max_pauses_clients(cluster, tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    c = cluster("[resource /room]\nbackend_buffer = 4K\nbackend = " +
                backend_cmd("resilient.py", rec, "--no-echo") + "\n", n=2,
                cluster_extra="stream_max = 100\n")
    await _stream_max(c, rec)


async def _stream_max(c, rec):
    h = c.holder("/room")
    pid = wait_for(lambda: backend_pids(rec), what="the backend")[0]
    staller = await connect(c.url(h, "/room"))
    await staller.send("stall:3")
    read_records(rec / f"{pid}.jsonl", until=lambda r: any(
        x.get("text") == "stall:3" for x in r))
    # 1000-byte messages: one read of a client (64 KiB) is 65 of them.
    senders = [Sender(f"n{i}", await connect(c.url(i, "/room")), pad=990)
               for i in range(2)]
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(s.run(0, stop)) for s in senders]
    peak = 0
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        reply = c.redis.command("XLEN", "gw:{/room}:in")
        peak = max(peak, int(reply[1:].split(b"\r\n")[0]))
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    # Paused near stream_max (docs/CLUSTER.md): each of the 2 nodes counts
    # its own records on top of the last length it read (half of
    # stream_max once reading again), so together they may write up to
    # (2 + 1) / 2 * stream_max, and each client's last read (65) more.
    assert 100 <= peak <= 100 * 3 // 2 + 2 * 66, peak
    all_delivered(rec, senders, timeout=30)
    for s in senders:
        await s.ws.close()
    await staller.close()


# 10. A pattern room: its first client is news to the backend, and the
# room leaves nothing in Redis once it has ended everywhere

async def test_pattern_room_fresh_then_gone(cluster):
    c = cluster(chat_room("/rooms/*").replace("[resource /rooms/*]",
                                              "[resource /rooms/*]\nlinger = 0"))
    alice = await connect(c.url(1, "/rooms/kitchen?name=alice"))
    assert await recv(alice) == "alice has joined /rooms/kitchen"
    bob = await connect(c.url(2, "/rooms/kitchen?name=bob"))
    assert await recv(bob) == "bob has joined /rooms/kitchen"
    assert await recv(alice) == "bob has joined /rooms/kitchen"
    await alice.close()
    await bob.close()

    def keys():
        reply = c.redis.command("KEYS", "gw:{/rooms/kitchen}:*")
        return reply.startswith(b"*0\r\n")
    wait_for(keys, TIMEOUT, what="the room's keys gone from redis")
    # Made again, it starts afresh.
    carol = await connect(c.url(0, "/rooms/kitchen?name=carol"))
    assert await recv(carol) == "carol has joined /rooms/kitchen"
    await carol.close()


# 11. A link to Redis that stalls (no error, no answer)

class Stall:
    """A TCP relay to Redis that can be frozen: while frozen it moves no
    byte either way, as a link whose packets are lost does."""

    def __init__(self, target):
        import threading
        self.target = target
        self.frozen = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(x, y),
                                 daemon=True).start()

    def _pump(self, x, y):
        while True:
            try:
                data = x.recv(65536)
            except OSError:
                return
            if not data:
                y.close()
                return
            while self.frozen.is_set():
                time.sleep(0.01)
            try:
                y.sendall(data)
            except OSError:
                return

    def close(self):
        self.sock.close()
        for s in self.conns:
            s.close()


def first_line_time(log, text):
    """The time stamp (ISO, sortable) of the first log line with text."""
    for line in log.splitlines():
        if text in line:
            return line.split(" ", 1)[0]
    return None


async def test_stalled_holder_gives_the_backend_up_first(cluster, tmp_path):
    c, rec = resilient_room(cluster, tmp_path, n=2)
    stall = Stall(c.redis.port)
    try:
        # Node 0 again, through the relay, and holding the room; then
        # node 1 again.
        texts = [g.config_path.read_text() for g in c.nodes]
        for g in c.nodes:
            stop_gateway(g)
        c.nodes[0] = launch_gateway(texts[0].replace(
            f"redis = 127.0.0.1:{c.redis.port}",
            f"redis = 127.0.0.1:{stall.port}"), c.nodes[0].port,
            tmp_path / "relayed")
        await asyncio.to_thread(c.nodes[0].wait_log, HOLDING)
        c.nodes[1] = launch_gateway(texts[1], c.nodes[1].port,
                                    tmp_path / "direct")
        ws = [await connect(c.url(i, "/room")) for i in range(2)]
        await ws[0].send("one")
        await ws[1].send("two")
        await asyncio.sleep(0.3)
        stall.frozen.set()
        log = await asyncio.to_thread(c.nodes[1].wait_log, HOLDING,
                                      TIMEOUT)
        stall.frozen.clear()
        gave_up = first_line_time(c.nodes[0].log(),
                                  "its lease was not renewed in time")
        took = first_line_time(log, HOLDING)
        assert gave_up is not None, c.nodes[0].log()[-3000:]
        # Never two backends: the stalled holder let go first.
        assert gave_up < took, (gave_up, took)
        # Both nodes' clients carry on, and the room too.
        for w in ws:
            await w.send("after")

        def arrived(by_pid):
            texts = [r.get("text") for rs in by_pid.values() for r in rs]
            return texts.count("after") >= 2 and "one" in texts and \
                "two" in texts
        await asyncio.to_thread(wait_for, lambda: (lambda b: b if arrived(b)
                                else None)(all_records(rec)), TIMEOUT)
        for w in ws:
            await w.close()
    finally:
        stall.close()


async def test_node_cut_off_past_its_lease_rejoins(cluster, tmp_path):
    c, rec = resilient_room(cluster, tmp_path, n=1)
    stall = Stall(c.redis.port)
    try:
        text = c.nodes[0].config_path.read_text().replace(
            f"redis = 127.0.0.1:{c.redis.port}",
            f"redis = 127.0.0.1:{stall.port}").replace("gw1", "gw2")
        port = free_port()
        c.nodes.append(launch_gateway(text.replace(
            str(c.nodes[0].port), str(port)), port, tmp_path / "relayed"))
        ws = await connect(c.url(1, "/room"))
        await ws.send("before")
        pid = wait_for(lambda: backend_pids(rec), what="the backend")[0]
        read_records(rec / f"{pid}.jsonl", until=lambda r: any(
            x.get("text") == "before" for x in r))
        cid = [x for x in records_of(rec, pid)
               if x.get("type") == "open"][0]["client"]
        stall.frozen.set()
        # Taken for gone: the backend hears it closed.
        await asyncio.to_thread(read_records, rec / f"{pid}.jsonl",
                                TIMEOUT, lambda r: any(
                                    x.get("type") == "close" and
                                    x["client"] == cid for x in r))
        stall.frozen.clear()
        # Back: it opens again, and what it says arrives.
        await ws.send("after")
        recs = await asyncio.to_thread(
            read_records, rec / f"{pid}.jsonl", TIMEOUT, lambda r: any(
                x.get("text") == "after" for x in r))
        recs = await asyncio.to_thread(
            read_records, rec / f"{pid}.jsonl", TIMEOUT, lambda r: [
                x["type"] for x in r if x.get("client") == cid and
                x["type"] != "message"] == ["open", "close", "open"])
        kinds = [(x["type"], x.get("code")) for x in recs
                 if x.get("client") == cid and x["type"] != "message"]
        assert kinds == [("open", None), ("close", 1006), ("open", None)], \
            kinds
        assert [x.get("text") for x in recs if x.get("type") == "message"
                and x["client"] == cid][-1] == "after"
        await ws.close()
    finally:
        stall.close()


# 12. A node is not upgraded in place: a new process is a new node

async def test_upgrade_refused_on_a_node(cluster, tmp_path):
    c = cluster(chat_room(), n=1)
    c.holder("/chat")
    ws = await connect(c.url(0, "/chat?name=dora"))
    assert await recv(ws) == "dora has joined /chat"
    c.nodes[0].proc.send_signal(signal.SIGUSR2)
    await asyncio.to_thread(c.nodes[0].wait_log,
                            "upgrade refused: not available with [cluster]")
    # Nothing else changed: the client is there, the node goes on.
    await ws.send("still")
    assert await recv(ws) == "dora says still"
    assert c.nodes[0].proc.poll() is None
    await ws.close()



# 13. AUTH, SELECT and a Unix socket

async def test_password_db_and_unix_socket(cluster, tmp_path):
    sock = tmp_path / "redis.sock"
    c = cluster(chat_room(), n=2, cluster_extra=(
        f"password = s3cret\ndb = 3\n"),
        redis_args=("--requirepass", "s3cret", "--unixsocket", str(sock),
                    "--unixsocketperm", "700"))
    c.holder("/chat")
    # Node 2 again, through the Unix socket.
    text = c.nodes[1].config_path.read_text().replace(
        f"redis = 127.0.0.1:{c.redis.port}", f"redis = unix:{sock}")
    stop_gateway(c.nodes[1])
    c.nodes[1] = launch_gateway(text, c.nodes[1].port, tmp_path / "unix")
    await asyncio.to_thread(c.nodes[1].wait_log,
                            f"connected to redis at unix:{sock} as node gw2")
    a = await connect(c.url(0, "/chat?name=ann"))
    assert await recv(a) == "ann has joined /chat"
    b = await connect(c.url(1, "/chat?name=ben"))
    assert await recv(b) == "ben has joined /chat"
    assert await recv(a) == "ben has joined /chat"
    # In database 3, not 0.
    assert b"gw:{/chat}:lease" in c.redis.command(
        "EVAL", "redis.call('SELECT', '3') "
        "return redis.call('KEYS', 'gw:*')", "0")
    assert c.redis.command("KEYS", "gw:*") == b"*0\r\n"
    await a.close()
    await b.close()


async def test_wrong_password_holds_and_says_so(cluster, tmp_path):
    c = cluster(chat_room(), n=1, cluster_extra="password = wrong\n",
                redis_args=("--requirepass", "s3cret"), expect_ready=True)
    log = await asyncio.to_thread(c.nodes[0].wait_log, "WRONGPASS")
    assert "refused this node's setup" in log
    await asyncio.sleep(1.5)
    # Said once, though it is tried again and again.
    assert c.nodes[0].log().count("WRONGPASS") == 1
    # No backend without Redis: a client of the shared room waits.
    assert HOLDING not in c.nodes[0].log()


# 14. What /metrics says of the cluster

def metrics(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=5) as r:
        text = r.read().decode()
    return {line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("gatewayd_cluster_")}


async def test_cluster_metrics(cluster):
    c = cluster(chat_room(), n=2, admin=True)
    h = c.holder("/chat")
    m = [metrics(p) for p in c.admin_ports]
    assert [x["gatewayd_cluster_redis_up"] for x in m] == [1, 1]
    assert [x["gatewayd_cluster_rooms_held"] for x in m] == \
        [1 if i == h else 0 for i in range(2)]
    ws = await connect(c.url(0, "/chat?name=eve"))
    assert await recv(ws) == "eve has joined /chat"
    c.redis.stop()
    await asyncio.to_thread(c.nodes[0].wait_log, "unreachable")
    await ws.send("while redis is away")
    # What eve said waits on her node; nobody runs the backend.
    await asyncio.to_thread(wait_for, lambda: metrics(c.admin_ports[0])[
        "gatewayd_cluster_records_waiting"] >= 1, TIMEOUT)
    m = [metrics(p) for p in c.admin_ports]
    assert [x["gatewayd_cluster_redis_up"] for x in m] == [0, 0]
    assert [x["gatewayd_cluster_rooms_held"] for x in m] == [0, 0]
    c.redis.start()
    assert await recv(ws) == "eve says while redis is away"
    assert metrics(c.admin_ports[0])["gatewayd_cluster_records_waiting"] == 0
    await ws.close()


# 15. One of a node's two connections cut: one outage, then all works

async def test_command_connection_killed(cluster):
    c = cluster(chat_room(), n=1)
    c.holder("/chat")
    ws = await connect(c.url(0, "/chat?name=fay"))
    assert await recv(ws) == "fay has joined /chat"
    lines = c.redis.command("CLIENT", "LIST").decode().split("\n")
    ids = [re.search(r"\bid=(\d+)", l).group(1) for l in lines
           if "cmd=xread" not in l and "cmd=client" not in l and "id=" in l]
    assert ids, lines
    for i in ids:
        c.redis.command("CLIENT", "KILL", "ID", i)
    await asyncio.to_thread(wait_for, lambda: c.nodes[0].log().count(
        "cluster: connected to redis") >= 2, TIMEOUT)
    await ws.send("after the cut")
    assert await recv(ws) == "fay says after the cut"
    await asyncio.sleep(2.5)    # past the reader's old BLOCK
    log = c.nodes[0].log()
    assert log.count("shared rooms hold their clients") == 1, log[-3000:]
    await ws.send("and later")
    assert await recv(ws) == "fay says and later"
    await ws.close()


# 16. A client that came while Redis was away: one open, then its words

async def test_client_joined_while_redis_away_opens_once(cluster, tmp_path):
    rec = tmp_path / "rec.jsonl"
    c = cluster("[resource /s]\nbackend = " +
                backend_cmd("scripted.py", "--record", rec) + "\n", n=2)
    c.holder("/s")
    c.redis.stop()
    await asyncio.to_thread(c.nodes[1].wait_log, "unreachable")
    ws = await connect(c.url(1, "/s"))
    await ws.send("said while away")
    c.redis.start()
    assert await recv(ws) == "said while away"
    cid = [r for r in read_records(rec) if r.get("type") == "message"
           and r.get("text") == "said while away"][0]["client"]
    opens = [r for r in read_records(rec)
             if r.get("type") == "open" and r["client"] == cid]
    assert len(opens) == 1, opens
    await ws.close()


# 17. Entries in a room's streams that no node wrote

async def test_foreign_stream_entries_are_skipped(cluster, tmp_path):
    rec = tmp_path / "rec.jsonl"
    c = cluster("[resource /s]\nbackend = " +
                backend_cmd("scripted.py", "--record", rec) + "\n", n=2)
    c.holder("/s")
    ws = [await connect(c.url(i, "/s")) for i in range(2)]
    ids = [await whoami(w) for w in ws]
    # Not JSON, an ack, a record with no newline, one of two lines, a
    # field the nodes do not use.
    for field, value in (("c", "{not json"), ("c", '{"type":"ack","seq":5}'),
                         ("r", '{"type":"message","client":"x","text":"a"}'),
                         ("r", '{"type":"close","client":"x","code":1000,'
                               '"reason":""}\n{"type":"open"}\n'),
                         ("zz", "whatever")):
        key = "gw:{/s}:out" if field == "c" else "gw:{/s}:in"
        assert c.redis.command("XADD", key, "*", field, value) \
            .startswith(b"$")
    # The room goes on: a command and a message still pass, both ways.
    await ws[0].send("cmd:" + json.dumps(
        {"type": "send", "client": ids[1], "text": "still fine"}))
    assert await recv(ws[1]) == "still fine"
    await ws[1].send("echo me")
    assert await recv(ws[1]) == "echo me"
    records = read_records(rec)
    assert not [r for r in records if r.get("client") == "x"], records
    logs = "".join(g.log() for g in c.nodes)
    assert "an entry of its out stream skipped" in logs
    assert "an entry of its in stream skipped: not one line" in logs
    for w in ws:
        await w.close()


# 18. unix: and tcp: backends: reached by whichever node holds the room

@pytest.mark.parametrize("kind", ["unix", "tcp"])
async def test_socket_backends_follow_the_lease(cluster, room_programs,
                                                tmp_path, kind):
    rec = tmp_path / "rec.jsonl"
    recorder = os.path.join(os.path.dirname(__file__), "backends",
                            "recorder.py")
    if kind == "unix":
        target = str(tmp_path / "room.sock")
        start_unix_room([PYTHON, recorder, str(rec)], target, room_programs)
    else:
        from test_tcp_backend import tcp_server
        port = free_port()
        room_programs.append(tcp_server(port, rec))
        target = f"127.0.0.1:{port}"
    c = cluster(f"[resource /s]\nbackend = {kind}:{target}\n", n=2)
    h = c.holder("/s")
    ws = [await connect(c.url(i, "/s")) for i in range(2)]
    for i, w in enumerate(ws):
        await w.send(f"from node {i}")
        assert await recv(w) == f"from node {i}"
    # Its node gone, the other reaches the same program, resumed.
    c.kill(h)
    survivor = ws[1 - h]
    new = c.holder("/s")
    assert new == 1 - h
    await survivor.send("after")
    # What the dead holder's backend may not have read comes again
    # (redelivered, and this backend echoes it), then the new message.
    got = [await recv(survivor, timeout=TIMEOUT * 2)]
    while got[-1] != "after":
        got.append(await recv(survivor, timeout=TIMEOUT * 2))
    assert set(got[:-1]) <= {f"from node {1 - h}"}, got
    hellos = [r for r in read_records(rec) if r.get("type") == "hello"]
    assert len(hellos) == 2 and hellos[1].get("resumed") is True, hellos
    await survivor.close()


# 19. While Redis is away, a room holds up to hold_buffer

async def test_redis_away_holds_up_to_hold_buffer(cluster):
    c = cluster("[resource /s]\nhold_buffer = 4K\nbackend = " +
                backend_cmd("scripted.py") + "\n", n=1, admin=True)
    c.holder("/s")
    ws = await connect(c.url(0, "/s"))
    c.redis.stop()
    await asyncio.to_thread(c.nodes[0].wait_log, "unreachable")
    sent = 0

    async def flood():
        nonlocal sent
        for i in range(300):
            await ws.send(f"{i:04d}" + "." * 996)
            sent += 1
    task = asyncio.ensure_future(flood())
    await asyncio.sleep(1.5)
    waiting = metrics(c.admin_ports[0])["gatewayd_cluster_records_waiting"]
    # hold_buffer (4 records of 1 KiB) and what one read of the client
    # holds (64 KiB): not all 300.
    assert 4 <= waiting <= 4 + 66 + 2, waiting
    assert sent < 300 or waiting < 300
    c.redis.start()
    await asyncio.wait_for(task, TIMEOUT)
    got = [await recv(ws) for _ in range(300)]
    assert [g[:4] for g in got] == [f"{i:04d}" for i in range(300)]
    await ws.close()
