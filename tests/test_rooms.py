"""Rooms end to end: the chat and echo examples, pattern rooms and their
linger, authorization, and the commands a backend gives."""
import asyncio
import json
import os
import re
import signal
import time

import pytest
from websockets.exceptions import InvalidStatusCode

import wsraw

from conftest import (PYTHON, ROOT, backend_cmd, example_cmd, pid_gone,
                      read_records)
from wsclient import (assert_silent, connect, expect_close, expect_status,
                      recv, recv_json, wait_log, whoami)

TIMEOUT = 5


def chat_config(backend):
    return f"""[gateway]
[resource /bongo]
backend = {backend}
[resource /fury]
backend = {backend}
"""


async def chat_scenario(g):
    """The README's walk through Hunchensocket's chat."""
    async with connect(g, "/fury?name=carol") as carol:
        assert await recv(carol) == "carol has joined /fury"
        async with connect(g, "/bongo?name=alice") as alice:
            assert await recv(alice) == "alice has joined /bongo"
            async with connect(g, "/bongo?name=bob") as bob:
                assert await recv(alice) == "bob has joined /bongo"
                assert await recv(bob) == "bob has joined /bongo"
                await alice.send("hi")
                assert await recv(alice) == "alice says hi"
                assert await recv(bob) == "alice says hi"
            assert await recv(alice) == "bob has left /bongo"
        # /fury saw nothing of /bongo: its next message is its own.
        await carol.send("anyone?")
        assert await recv(carol) == "carol says anyone?"
        await assert_silent(carol)


async def test_chat_unix(gateway, unix_room):
    sock = unix_room([PYTHON, "examples/chat/room.py"])
    g = gateway(chat_config(f"unix:{sock}"))
    await chat_scenario(g)


async def test_chat_exec(gateway):
    g = gateway(chat_config(example_cmd("chat/room.py")))
    await chat_scenario(g)


async def test_chat_name_from_client_id(gateway):
    g = gateway(chat_config(example_cmd("chat/room.py")))
    async with connect(g, "/bongo") as anon:
        joined = await recv(anon)
        assert joined.endswith(" has joined /bongo")
        name = joined.split()[0]
        assert name.startswith("c") and name[1:].isdigit()


@pytest.mark.parametrize("room,authorize", [("/bongo", "no"),
                                            ("/fury", "yes")])
async def test_chat_backend_restart_is_silent(gateway, room, authorize):
    """The chat program killed under its room: gatewayd starts it again
    and hands it the members (resumed opens).  Nobody sees anyone join a
    second time, names are intact, and in an authorizing room a taken
    name is still refused."""
    g = gateway(f"""[gateway]
[resource {room}]
backend = {example_cmd("chat/room.py")}
authorize = {authorize}
restart_delay = 100ms
""")
    async with connect(g, f"{room}?name=alice") as alice:
        # bob comes after alice's join, or he could see it too.
        assert await recv(alice) == f"alice has joined {room}"
        async with connect(g, f"{room}?name=bob") as bob:
            assert await recv(alice) == f"bob has joined {room}"
            assert await recv(bob) == f"bob has joined {room}"
            pid = int(re.search(rf"room {room}: started backend \S+ "
                                r"\(pid (\d+)\)", g.log()).group(1))
            os.kill(pid, signal.SIGKILL)
            await wait_log(g, f"room {room}: backend resumed 2 clients")
            await alice.send("still here")
            assert await recv(alice) == "alice says still here"
            assert await recv(bob) == "alice says still here"
            await bob.send("me too")
            assert await recv(bob) == "bob says me too"
            assert await recv(alice) == "bob says me too"
            if authorize == "yes":
                await expect_status(g.url(f"{room}?name=alice"), 409)
            await assert_silent(alice)
            await assert_silent(bob)
        assert await recv(alice) == f"bob has left {room}"
    assert f"chat {room}: hello, protocol version 1, resumed" in g.log()


async def test_echo_shell_room(gateway):
    assert os.path.exists(os.path.join(ROOT, "examples", "echo", "room.sh"))
    g = gateway(f"""[gateway]
[resource /echo]
backend = {example_cmd("echo/room.sh")}
""")
    async with connect(g, "/echo") as a, connect(g, "/echo") as b:
        for text in ("hello", "with \"quotes\" and \\ and ünïcödé", "{}",
                     "", "ä€😀" * 3000, "line\nbreak\u2028"):
            await a.send(text)
            assert await recv(a) == text
        await b.send("b's own")
        assert await recv(b) == "b's own"
        await assert_silent(a)
        for data in (b"\x00\x01\xffbinary", b"", bytes(range(256)) * 100):
            await a.send(data)
            assert await recv(a) == data


async def test_exact_room_backend_starts_with_daemon(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    gateway(f"""[gateway]
[resource /exact]
backend = {backend_cmd("recorder.py", rec)}
""")
    records = read_records(rec, until=lambda r: len(r) >= 1)
    assert records[0] == {"type": "hello", "room": "/exact", "version": 1}


def pattern_config(rec, linger="1s", extra=""):
    return f"""[gateway]
[resource /rooms/*]
backend = {backend_cmd("scripted.py", "--record", rec)}
linger = {linger}
{extra}
"""


def hellos(rec):
    return [r["room"] for r in read_records(rec) if r["type"] == "hello"]


async def test_pattern_rooms_are_separate(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(pattern_config(rec))
    assert hellos(rec) == []          # pattern rooms wait for a client
    async with connect(g, "/rooms/a") as a, connect(g, "/rooms/b") as b, \
            connect(g, "/rooms/a") as a2:
        me_a, me_b, me_a2 = await whoami(a), await whoami(b), await whoami(a2)
        assert me_a["room"] == me_a2["room"] == "/rooms/a"
        assert me_b["room"] == "/rooms/b"
        assert me_a["pid"] == me_a2["pid"]
        assert me_a["pid"] != me_b["pid"]
        assert sorted(hellos(rec)) == ["/rooms/a", "/rooms/b"]
        # A broadcast in /rooms/a reaches its members, not /rooms/b's.
        await a.send('cmd:{"type": "broadcast", "text": "to a"}')
        assert await recv(a) == "to a"
        assert await recv(a2) == "to a"
        await b.send("b's echo")
        assert await recv(b) == "b's echo"
        await assert_silent(b)
    opens = {r["client"]: r["path"]
             for r in read_records(rec) if r["type"] == "open"}
    assert opens == {me_a["client"]: "/rooms/a", me_b["client"]: "/rooms/b",
                     me_a2["client"]: "/rooms/a"}


async def test_pattern_room_lingers(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(pattern_config(rec, linger="1s"))
    async with connect(g, "/rooms/a") as a:
        first = await whoami(a)
    # Back within the linger: the same backend.
    await asyncio.sleep(0.4)
    async with connect(g, "/rooms/a") as a:
        again = await whoami(a)
    left = time.monotonic()
    assert again["pid"] == first["pid"]
    assert hellos(rec) == ["/rooms/a"]
    # Gone about a second after the last client left.
    pid = first["pid"]
    await asyncio.sleep(0.6)
    assert not pid_gone(pid), "the backend stopped before its linger"
    await wait_log(g, f"room /rooms/a: backend (pid {pid}) exited", 3)
    elapsed = time.monotonic() - left
    assert 0.8 <= elapsed <= 3, elapsed
    assert pid_gone(pid)
    # The next client starts a new backend, which gets hello anew.
    async with connect(g, "/rooms/a") as a:
        fresh = await whoami(a)
        assert fresh["pid"] != pid
        assert fresh["room"] == "/rooms/a"
    assert hellos(rec) == ["/rooms/a", "/rooms/a"]


AUTH_CONFIG = """[gateway]
[resource /accept]
backend = {accept}
authorize = yes
[resource /reject]
backend = {reject}
authorize = yes
[resource /ignore]
backend = {ignore}
authorize = yes
authorize_timeout = 1s
[resource /scripted]
backend = {scripted}
authorize = yes
"""


@pytest.fixture
def auth_gateway(gateway, tmp_path):
    recs = {k: tmp_path / f"{k}.jsonl"
            for k in ("accept", "reject", "ignore", "scripted")}
    backends = {k: backend_cmd("recorder.py", recs[k], "--authorize", k)
                for k in ("accept", "reject", "ignore")}
    backends["scripted"] = backend_cmd("scripted.py", "--record",
                                       recs["scripted"])
    return gateway(AUTH_CONFIG.format(**backends)), recs


async def test_authorize_accept(auth_gateway):
    g, recs = auth_gateway
    async with connect(g, "/accept?x=1") as ws:
        await ws.send("through")
        assert await recv(ws) == "through"
    records = read_records(recs["accept"],
                           until=lambda r: r and r[-1]["type"] == "close")
    opens = [r for r in records if r["type"] == "open"]
    assert len(opens) == 1
    assert opens[0]["authorize"] is True
    assert opens[0]["query"] == "x=1"
    assert opens[0]["path"] == "/accept"
    assert opens[0]["remote"].startswith("127.0.0.1:")
    assert opens[0]["subprotocol"] is None
    assert [r["type"] for r in records] == ["hello", "open", "message",
                                            "close"]


def test_frames_before_the_verdict_wait_for_it(auth_gateway):
    """A client that sends frames right behind its request head, before
    the backend has accepted it, has them relayed after the accept, in
    order; a rejected client's frames reach nobody."""
    g, recs = auth_gateway
    early = (wsraw.encode_frame(wsraw.OP_TEXT, b"early 1") +
             wsraw.encode_frame(wsraw.OP_TEXT, b"early 2"))
    with wsraw.open_raw(g.port, "/accept", then=early) as conn:
        assert conn.recv_message() == (wsraw.OP_TEXT, "early 1")
        assert conn.recv_message() == (wsraw.OP_TEXT, "early 2")
        conn.send_close(1000)
        assert conn.recv_close()[0] == 1000
    records = read_records(recs["accept"],
                           until=lambda r: r and r[-1]["type"] == "close")
    assert [(r["type"], r.get("text")) for r in records[1:]] == [
        ("open", None), ("message", "early 1"), ("message", "early 2"),
        ("close", None)]

    request = wsraw.handshake_request("/reject", host="127.0.0.1") + early
    assert wsraw.http_request(g.port, request).status == 403
    records = read_records(recs["reject"],
                           until=lambda r: r and r[-1]["type"] == "open")
    assert [r["type"] for r in records] == ["hello", "open"]


async def test_authorize_reject(auth_gateway):
    g, recs = auth_gateway
    await expect_status(g.url("/reject"), 403)
    await expect_status(g.url("/reject"), 403)
    records = read_records(recs["reject"],
                           until=lambda r: sum(x["type"] == "open"
                                               for x in r) == 2)
    await asyncio.sleep(0.5)
    records = read_records(recs["reject"])
    assert [r["type"] for r in records] == ["hello", "open", "open"]


async def test_authorize_reject_status_and_reason(auth_gateway):
    g, recs = auth_gateway
    await expect_status(g.url("/scripted?verdict=reject&status=451"
                                  "&reason=not+here"), 451)
    async with connect(g, "/scripted") as ws:   # after: ordered records
        await ws.send("fine")
        assert await recv(ws) == "fine"
    records = read_records(recs["scripted"])
    rejected = [r for r in records if r["type"] == "open"][0]["client"]
    assert not [r for r in records
                if r["type"] == "close" and r["client"] == rejected]


async def test_authorize_timeout(auth_gateway):
    g, recs = auth_gateway
    start = time.monotonic()
    await expect_status(g.url("/ignore"), 504)
    elapsed = time.monotonic() - start
    assert 0.8 <= elapsed <= 3, elapsed
    records = read_records(recs["ignore"],
                           until=lambda r: r and r[-1]["type"] == "close")
    opened = [r for r in records if r["type"] == "open"]
    closed = [r for r in records if r["type"] == "close"]
    assert len(opened) == 1 and len(closed) == 1
    assert closed[0]["client"] == opened[0]["client"]
    assert closed[0]["code"] == 1006


async def test_authorize_subprotocol(auth_gateway):
    g, recs = auth_gateway
    async with connect(g, "/scripted?subprotocol=chat.v2",
                       subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        await ws.send("x")
        assert await recv(ws) == "x"
    opened = [r for r in read_records(recs["scripted"])
              if r["type"] == "open"]
    assert opened[0]["subprotocols"] == ["chat.v1", "chat.v2"]


async def test_authorize_without_subprotocol(auth_gateway):
    g, _ = auth_gateway
    async with connect(g, "/scripted", subprotocols=["chat.v1"]) as ws:
        assert ws.subprotocol is None
        await ws.send("x")
        assert await recv(ws) == "x"


async def test_authorize_subprotocol_not_offered(auth_gateway):
    g, recs = auth_gateway
    await expect_status(g.url("/scripted?subprotocol=other"), 500,
                        subprotocols=["chat.v1"])
    # The room keeps working.
    async with connect(g, "/scripted") as ws:
        await ws.send("x")
        assert await recv(ws) == "x"
    # The refused client's open is matched by a close.
    records = read_records(recs["scripted"])
    refused = [r for r in records if r["type"] == "open"][0]["client"]
    assert [r["code"] for r in records
            if r["type"] == "close" and r["client"] == refused] == [1006]


async def test_chat_authorize_name_taken(gateway):
    g = gateway(f"""[gateway]
[resource /fury]
backend = {example_cmd("chat/room.py")}
authorize = yes
""")
    async with connect(g, "/fury?name=alice") as alice:
        assert await recv(alice) == "alice has joined /fury"
        await expect_status(g.url("/fury?name=alice"), 409)
        async with connect(g, "/fury?name=bob") as bob:
            assert await recv(bob) == "bob has joined /fury"
            assert await recv(alice) == "bob has joined /fury"
        assert await recv(alice) == "bob has left /fury"
        await alice.send("still here")
        assert await recv(alice) == "alice says still here"
    # alice left: the name is free again.
    async with connect(g, "/fury?name=alice") as alice:
        assert await recv(alice) == "alice has joined /fury"


@pytest.fixture
async def three(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
[resource /cmd]
backend = {backend_cmd("scripted.py", "--record", rec)}
""")
    async with connect(g, "/cmd") as a, connect(g, "/cmd") as b, \
            connect(g, "/cmd") as c:
        ids = [(await whoami(ws))["client"] for ws in (a, b, c)]
        yield g, rec, (a, b, c), ids


async def test_broadcast_except(three):
    g, rec, (a, b, c), (ia, ib, ic) = three
    await a.send("cmd:" + json.dumps({"type": "broadcast", "text": "all"}))
    for ws in (a, b, c):
        assert await recv(ws) == "all"
    await a.send("cmd:" + json.dumps({"type": "broadcast", "text": "not b",
                                      "except": ib}))
    assert await recv(a) == "not b"
    assert await recv(c) == "not b"
    await a.send("cmd:" + json.dumps({"type": "broadcast", "text": "only b",
                                      "except": [ia, ic]}))
    assert await recv(b) == "only b"      # b's next message: not "not b"
    await a.send("ping")
    assert await recv(a) == "ping"        # a's next message: not "only b"
    await c.send("ping")
    assert await recv(c) == "ping"
    await assert_silent(b, 0.2)


async def test_binary_broadcast(three):
    g, rec, (a, b, c), ids = three
    await b.send("cmd:" + json.dumps({"type": "broadcast",
                                      "binary": "AAEC/w=="}))
    for ws in (a, b, c):
        assert await recv(ws) == b"\x00\x01\x02\xff"


async def test_send_to_list(three):
    g, rec, (a, b, c), (ia, ib, ic) = three
    await b.send("cmd:" + json.dumps({"type": "send", "client": [ia, ic],
                                      "text": "for a and c"}))
    assert await recv(a) == "for a and c"
    assert await recv(c) == "for a and c"
    await b.send("ping")
    assert await recv(b) == "ping"
    await b.send("cmd:" + json.dumps({"type": "send", "client": ic,
                                      "text": "for c"}))
    assert await recv(c) == "for c"
    await a.send("ping")
    assert await recv(a) == "ping"


async def test_backend_close_command(three):
    g, rec, (a, b, c), (ia, ib, ic) = three
    await a.send("cmd:" + json.dumps({"type": "close", "client": ib,
                                      "code": 4000, "reason": "kicked"}))
    assert await expect_close(b) == (4000, "kicked")
    records = read_records(rec, until=lambda r: any(
        x["type"] == "close" and x["client"] == ib for x in r))
    closes = [r for r in records if r["type"] == "close"]
    assert len(closes) == 1
    assert closes[0]["code"] == 4000 and closes[0]["reason"] == "kicked"
    # Default code, to a list.
    await a.send("cmd:" + json.dumps({"type": "close", "client": [ic]}))
    assert (await expect_close(c))[0] == 1000
    await a.send("still")
    assert await recv(a) == "still"


async def test_unknown_client_dropped(three):
    g, rec, (a, b, c), (ia, ib, ic) = three
    for cmd in ({"type": "send", "client": "c999999", "text": "lost"},
                {"type": "send", "client": ["c999998", ib], "text": "to b"},
                {"type": "close", "client": "c999999"},
                {"type": "accept", "client": "c999999"},
                {"type": "reject", "client": "c999999"},
                {"type": "send", "client": "nobody", "text": "lost"}):
        await a.send("cmd:" + json.dumps(cmd))
    assert await recv(b) == "to b"
    await a.send("whoami")
    assert (await recv_json(a))["client"] == ia
    await c.send("ping")
    assert await recv(c) == "ping"
    assert g.proc.poll() is None
    assert "bad record" not in g.log()


async def test_command_for_client_of_another_room(gateway, tmp_path):
    g = gateway(f"""[gateway]
[resource /one]
backend = {backend_cmd("scripted.py")}
[resource /two]
backend = {backend_cmd("scripted.py")}
""")
    async with connect(g, "/one") as one, connect(g, "/two") as two:
        i_two = (await whoami(two))["client"]
        await one.send("cmd:" + json.dumps({"type": "send", "client": i_two,
                                            "text": "cross"}))
        await one.send("cmd:" + json.dumps({"type": "close",
                                            "client": i_two}))
        await one.send("ping")
        assert await recv(one) == "ping"
        await two.send("ping")
        assert await recv(two) == "ping"


async def test_client_ids_unique(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
[resource /ids]
backend = {backend_cmd("scripted.py", "--record", rec)}
""")
    seen = []
    for _ in range(15):
        async with connect(g, "/ids") as ws:
            seen.append((await whoami(ws))["client"])
    async with connect(g, "/ids") as x, connect(g, "/ids") as y:
        seen += [(await whoami(x))["client"], (await whoami(y))["client"]]
    assert len(set(seen)) == len(seen), seen
    for cid in seen:
        assert cid[0] == "c" and cid[1:].isdigit()
    opens = [r["client"] for r in read_records(rec) if r["type"] == "open"]
    assert opens == seen


async def test_client_close_reported(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
[resource /r]
backend = {backend_cmd("recorder.py", rec)}
""")
    async with connect(g, "/r") as ws:
        await ws.send("x")
        assert await recv(ws) == "x"
        await ws.close(4001, "bye now")
    raw = g.connect_raw()
    raw.sendall(b"GET /r HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    raw.close()                           # no close frame at all
    raw = g.connect_raw()
    raw.sendall(b"GET /r HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    assert raw.recv(4096).startswith(b"HTTP/1.1 101")
    raw.sendall(b"\x88\x80abcd")          # a close frame without a code
    assert raw.recv(4096) == b"\x88\x00"  # answered the same way
    raw.close()
    records = read_records(rec, until=lambda r: sum(
        x["type"] == "close" for x in r) == 3)
    opens = [r["client"] for r in records if r["type"] == "open"]
    closes = [(r["client"], r["code"], r["reason"])
              for r in records if r["type"] == "close"]
    assert closes == [(opens[0], 4001, "bye now"), (opens[1], 1006, ""),
                      (opens[2], 1005, "")]


@pytest.fixture
async def pending(gateway, tmp_path):
    """A room with one open client and one waiting for its verdict."""
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
[resource /p]
backend = {backend_cmd("scripted.py", "--record", rec)}
authorize = yes
""")
    async with connect(g, "/p") as a:
        ia = (await whoami(a))["client"]
        waiting = asyncio.ensure_future(connect(g, "/p?verdict=ignore"))
        deadline = time.monotonic() + TIMEOUT
        while len([r for r in read_records(rec) if r["type"] == "open"]) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        ip = [r for r in read_records(rec) if r["type"] == "open"][1]["client"]
        yield g, rec, a, ia, waiting, ip
        if not waiting.done():
            waiting.cancel()
        elif not waiting.cancelled() and waiting.exception() is None:
            await waiting.result().close()


async def test_pending_client_is_not_a_member(pending):
    g, rec, a, ia, waiting, ip = pending
    await a.send("cmd:" + json.dumps({"type": "broadcast", "text": "early"}))
    assert await recv(a) == "early"
    await a.send("cmd:" + json.dumps({"type": "send", "client": ip,
                                      "text": "too early"}))
    await a.send("cmd:" + json.dumps({"type": "accept", "client": ip}))
    p = await asyncio.wait_for(waiting, TIMEOUT)
    me = await whoami(p)                 # its first message: no "early"
    assert me["client"] == ip
    await a.send("cmd:" + json.dumps({"type": "broadcast", "text": "late"}))
    assert await recv(a) == "late"
    assert await recv(p) == "late"


async def test_close_command_refuses_pending_client(pending):
    g, rec, a, ia, waiting, ip = pending
    await a.send("cmd:" + json.dumps({"type": "close", "client": ip,
                                      "code": 4000, "reason": "no"}))
    with pytest.raises(InvalidStatusCode) as e:
        await asyncio.wait_for(waiting, TIMEOUT)
    assert e.value.status_code == 403
    await a.send("ping")
    assert await recv(a) == "ping"


async def test_pending_client_hangs_up(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[gateway]
[resource /p]
backend = {backend_cmd("scripted.py", "--record", rec)}
authorize = yes
""")
    raw = g.connect_raw()
    raw.sendall(b"GET /p?verdict=ignore HTTP/1.1\r\nHost: x\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    records = read_records(rec, until=lambda r: r and r[-1]["type"] == "open")
    ip = records[-1]["client"]
    start = time.monotonic()
    raw.close()
    records = read_records(rec, until=lambda r: r and r[-1]["type"] == "close")
    assert time.monotonic() - start < 2      # not the authorize timeout
    assert (records[-1]["client"], records[-1]["code"]) == (ip, 1006)
    async with connect(g, "/p") as a:
        # A late verdict for it is dropped.
        await a.send("cmd:" + json.dumps({"type": "accept", "client": ip}))
        await a.send("ping")
        assert await recv(a) == "ping"


async def test_pattern_room_linger_zero(gateway, tmp_path):
    rec = tmp_path / "rec.jsonl"
    g = gateway(pattern_config(rec, linger="0"))
    async with connect(g, "/rooms/z") as z:
        pid = (await whoami(z))["pid"]
    await wait_log(g, f"room /rooms/z: backend (pid {pid}) exited", 3)
    async with connect(g, "/rooms/z") as z:
        assert (await whoami(z))["pid"] != pid
    assert hellos(rec) == ["/rooms/z", "/rooms/z"]


async def test_pattern_room_stubborn_backend_killed(gateway, tmp_path):
    """A backend that ignores EOF gets SIGTERM stop_timeout later."""
    g = gateway("""[gateway]
[resource /s/*]
backend = exec:/bin/sh -c 'cat >/dev/null; exec sleep 30'
linger = 0
stop_timeout = 300ms
""")
    async with connect(g, "/s/1"):
        pass
    left = time.monotonic()
    await wait_log(g, "room /s/1: backend (pid", 3)
    await wait_log(g, "still running after 300 ms; sending SIGTERM", 3)
    await wait_log(g, "killed by signal 15", 3)
    assert 0.25 <= time.monotonic() - left < 3
    assert "SIGKILL" not in g.log()


async def test_pattern_room_backend_ignoring_sigterm(gateway):
    """... and SIGKILL another stop_timeout later if it ignores SIGTERM."""
    g = gateway("""[gateway]
[resource /s/*]
backend = exec:/bin/sh -c 'trap "" TERM; cat >/dev/null; exec sleep 30'
linger = 0
stop_timeout = 300ms
""")
    async with connect(g, "/s/1") as ws:
        await ws.send("anything")
    left = time.monotonic()
    await wait_log(g, "sending SIGTERM", 3)
    await wait_log(g, "sending SIGKILL", 3)
    await wait_log(g, "room /s/1: backend (pid", 3)
    await wait_log(g, "killed by signal 9", 3)
    assert 0.5 <= time.monotonic() - left < 4


async def test_close_reason_cut_at_character(three):
    g, rec, (a, b, c), (ia, ib, ic) = three
    reason = "é" * 100                   # 200 bytes; a close frame holds 123
    await a.send("cmd:" + json.dumps({"type": "close", "client": ib,
                                      "code": 4001, "reason": reason}))
    code, got = await expect_close(b)
    assert code == 4001
    assert got == "é" * 61
    records = read_records(rec, until=lambda r: any(
        x["type"] == "close" for x in r))
    close = [r for r in records if r["type"] == "close"][0]
    assert (close["client"], close["code"]) == (ib, 4001)
