"""Policy options (docs/POLICY.md), as a user sees them.

For each option: what the client gets when it passes the limit (an HTTP
status in the handshake, a close code or a dropped connection once it is
connected), that the documented default applies when nothing sets the
option, and that a [resource] setting beats the [gateway] default.

max_header_size and max_headers are covered in test_handshake.py.

Rooms are served by the recorder (one record file per room; it echoes
every message), or by the scripted backend where a test needs to drive
the backend (authorize verdicts, close commands).  Timing tests run their
clients in threads, side by side, to keep the file fast.
"""
import asyncio
import concurrent.futures
import json
import socket
import time

import pytest
import websockets
from websockets.exceptions import InvalidStatusCode

from conftest import backend_cmd, read_records, wait_for
import wsraw
from wsraw import (OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
                   RawConnection, accept_for, encode_frame, handshake_request,
                   make_key, read_response_head)

TIMEOUT = 5.0


# ---------------------------------------------------------------- helpers


@pytest.fixture
def start(gateway, tmp_path):
    """start(gateway_opts, rooms) starts gatewayd with [gateway]
    gateway_opts and one [resource PATH] per (PATH, opts) or (PATH, opts,
    backend) of rooms; backend is "recorder" (the default), "scripted", or
    extra recorder arguments as "recorder --authorize ignore".  Returns
    (gateway, {PATH: path of the room's record file})."""
    def start(gateway_opts, rooms):
        text = f"[gateway]\n{gateway_opts}\n"
        records = {}
        for room in rooms:
            path, opts = room[0], room[1]
            backend = room[2] if len(room) > 2 else "recorder"
            name = path.strip("/").replace("/", "_") or "root"
            rec = tmp_path / f"{name}.jsonl"
            records[path] = rec
            if backend.startswith("scripted"):
                cmd = backend_cmd("scripted.py", "--record", rec)
            else:
                cmd = backend_cmd("recorder.py", rec,
                                  *backend.split()[1:])
            text += f"[resource {path}]\nbackend = {cmd}\n{opts}\n"
        return gateway(text), records
    return start


def attempt(port, path, headers=(), source=None, allow_reset=False):
    """Send a valid handshake for path with extra headers and read the
    response head.  Returns a RawConnection: open when its status is 101
    (the caller closes it), else already closed, after checking that the
    server closed the connection behind its response."""
    key = make_key()
    if source is None:
        sock = wsraw.connect(port)
    else:
        sock = socket.socket()
        sock.bind((source, 0))
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", port))
    try:
        sock.sendall(handshake_request(path, key=key, extra_headers=headers))
        status, hdrs, rest = read_response_head(sock)
    except ConnectionResetError:
        sock.close()
        raise
    conn = RawConnection(sock, status, hdrs, rest)
    if status == 101:
        assert hdrs.get("sec-websocket-accept") == accept_for(key), hdrs
        return conn
    # A refusal: its body, then the end of the connection.
    try:
        conn.body = wsraw.read_until_close(
            sock, rest, time.monotonic() + TIMEOUT, status, allow_reset)
    finally:
        sock.close()
    return conn


def status_of(port, path, headers=(), **kw):
    """The status a handshake gets (the connection is closed after)."""
    conn = attempt(port, path, headers, **kw)
    conn.close()
    return conn.status


def echo_works(conn, text="still here?"):
    conn.send_text(text)
    assert conn.recv_message() == (OP_TEXT, text)


def opens(rec, n=1):
    """Wait for n open records in a record file and return them all."""
    found = read_records(rec, until=lambda rs: sum(
        r["type"] == "open" for r in rs) >= n)
    return [r for r in found if r["type"] == "open"]


def close_record(rec, client=None, remote_port=None):
    """Wait for the close record of a client (by id, or by the local port
    it connected from) and return it."""
    def find(rs):
        ids = {client} if client is not None else {
            r["client"] for r in rs if r["type"] == "open" and
            r["remote"] == f"127.0.0.1:{remote_port}"}
        closes = [r for r in rs if r["type"] == "close" and
                  r["client"] in ids]
        return closes[0] if closes else None
    return find(read_records(rec, until=find))


def answer_pings(conn, seconds):
    """Read for seconds, answering each ping with a pong of its payload.
    Returns the times of the pings since the call.  Any other frame fails
    the test."""
    t0 = time.monotonic()
    pings = []
    while True:
        left = t0 + seconds - time.monotonic()
        if left <= 0:
            return pings
        try:
            f = conn.recv_frame(timeout=left)
        except TimeoutError:
            return pings
        assert f.opcode == OP_PING, f"unexpected frame {f}"
        pings.append(time.monotonic() - t0)
        conn.send_frame(OP_PONG, f.payload)


def in_parallel(*calls):
    """Run the functions side by side; return their results in order,
    re-raising the first failure."""
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


# ------------------------------------------------------------------ origins


ORIGIN_ROOMS = [
    ("/inherit", ""),
    ("/own", "origins = http://localhost:3000"),
    ("/cleared", "origins ="),
]
ORIGINS = "origins = https://app.example.org, https://*.example.com"


@pytest.mark.parametrize("origin,status", [
    ("https://app.example.org", 101),
    ("HTTPS://App.Example.ORG", 101),        # compared without regard to case
    ("https://sub.example.com", 101),
    ("https://a.b.example.com", 101),
    ("https://example.com", 403),            # the wildcard needs a label
    ("https://evilexample.com", 403),
    ("http://sub.example.com", 403),         # same scheme ...
    ("https://sub.example.com:8443", 403),   # ... and port
    ("https://app.example.org:8443", 403),
    ("https://other.example.org", 403),
    ("https://app.example.org.evil.net", 403),
    ("null", 403),
    ("", 403),                               # not an origin: only * has it
    ("https://app.example.org/", 403),
    ("https://app.example.org:443", 403),
    ("https://SUB.EXAMPLE.COM", 101),
    ("https://.example.com", 403),
    ("http://localhost:3000", 403),          # only /own's
])
def test_origins_gateway_list(start, origin, status):
    g, rec = start(ORIGINS, ORIGIN_ROOMS)
    assert status_of(g.port, "/inherit", [("Origin", origin)]) == status
    if status == 403:
        # the refusal happens before the room hears of the client
        with attempt(g.port, "/inherit") as conn:
            echo_works(conn)
        assert len(opens(rec["/inherit"])) == 1


def test_origins_refusal_body_and_no_record(start):
    g, rec = start(ORIGINS, ORIGIN_ROOMS)
    conn = attempt(g.port, "/inherit", [("Origin", "https://evil.net")])
    assert conn.status == 403
    assert conn.headers.get("connection", "").lower() == "close"
    assert int(conn.headers["content-length"]) == len(conn.body)
    with attempt(g.port, "/inherit",
                 [("Origin", "https://sub.example.com")]) as conn:
        echo_works(conn)
    (o,) = opens(rec["/inherit"])
    assert o["headers"]["origin"] == "https://sub.example.com"


def test_origins_no_origin_header_is_let_in(start):
    g, _ = start(ORIGINS, ORIGIN_ROOMS)
    with attempt(g.port, "/inherit") as conn:
        assert conn.status == 101
        echo_works(conn)
    with attempt(g.port, "/own") as conn:
        assert conn.status == 101


def test_origins_two_origin_headers_is_400(start):
    g, _ = start(ORIGINS, ORIGIN_ROOMS)
    good = ("Origin", "https://app.example.org")
    assert status_of(g.port, "/inherit", [good, good]) == 400
    assert status_of(g.port, "/inherit",
                     [good, ("Origin", "https://evil.net")]) == 400
    assert status_of(g.port, "/cleared",
                     [("Origin", "https://a.net"),
                      ("Origin", "https://b.net")]) == 400


def test_origins_resource_overrides_gateway(start):
    g, _ = start(ORIGINS, ORIGIN_ROOMS)
    assert status_of(g.port, "/own",
                     [("Origin", "http://localhost:3000")]) == 101
    assert status_of(g.port, "/own",
                     [("Origin", "https://app.example.org")]) == 403
    assert status_of(g.port, "/own",
                     [("Origin", "https://sub.example.com")]) == 403
    # an empty origins = in a resource clears the gateway's list
    for origin in ("https://evil.net", "null", "https://app.example.org"):
        assert status_of(g.port, "/cleared", [("Origin", origin)]) == 101


def test_origins_default_lets_any_origin_in(start):
    g, _ = start("", [("/r", "")])
    for origin in ("https://evil.net", "null", "http://localhost:1",
                   "not an origin at all"):
        assert status_of(g.port, "/r", [("Origin", origin)]) == 101


def test_origins_star_lets_null_in(start):
    g, _ = start("origins = https://a.example.org *", [("/r", "")])
    for origin in ("null", "https://evil.net", "https://a.example.org"):
        assert status_of(g.port, "/r", [("Origin", origin)]) == 101


# ------------------------------------------------------------- subprotocols


SUBPROTOCOL_ROOMS = [
    ("/inherit", ""),
    ("/own", "subprotocols = other"),
    ("/required", "subprotocol_required = yes"),
    ("/auth", "authorize = yes", "scripted"),
]


def connect(g, path, **kw):
    return websockets.connect(g.url(path), open_timeout=TIMEOUT,
                              close_timeout=TIMEOUT, **kw)


async def echo_async(ws, text="hello"):
    await ws.send(text)
    assert await asyncio.wait_for(ws.recv(), TIMEOUT) == text


async def test_subprotocol_server_preference_wins(start):
    g, rec = start("subprotocols = chat.v2 chat", SUBPROTOCOL_ROOMS)
    async with connect(g, "/inherit", subprotocols=["chat", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response_headers.get_all("Sec-WebSocket-Protocol") == \
            ["chat.v2"]
        await echo_async(ws)
    (o,) = opens(rec["/inherit"])
    assert o["subprotocol"] == "chat.v2"
    assert o["subprotocols"] == ["chat", "chat.v2"]


def test_subprotocol_in_raw_101(start):
    g, _ = start("subprotocols = chat.v2 chat", SUBPROTOCOL_ROOMS)
    with attempt(g.port, "/inherit",
                 [("Sec-WebSocket-Protocol", "chat, chat.v2")]) as conn:
        assert conn.status == 101
        assert conn.headers["sec-websocket-protocol"] == "chat.v2"
    # names compare case-sensitively
    with attempt(g.port, "/inherit",
                 [("Sec-WebSocket-Protocol", "Chat, CHAT.V2")]) as conn:
        assert conn.status == 101
        assert "sec-websocket-protocol" not in conn.headers
    with attempt(g.port, "/inherit",
                 [("Sec-WebSocket-Protocol", "x, chat")]) as conn:
        assert conn.headers["sec-websocket-protocol"] == "chat"
    # an offer over two header lines is one list
    with attempt(g.port, "/inherit",
                 [("Sec-WebSocket-Protocol", "chat"),
                  ("Sec-WebSocket-Protocol", "chat.v2")]) as conn:
        assert conn.headers["sec-websocket-protocol"] == "chat.v2"


async def test_subprotocol_none_offered_in_list(start):
    g, rec = start("subprotocols = chat.v2 chat", SUBPROTOCOL_ROOMS)
    async with connect(g, "/inherit", subprotocols=["other"]) as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response_headers
        await echo_async(ws)
    async with connect(g, "/inherit") as ws:
        assert ws.subprotocol is None
        await echo_async(ws)
    first, second = opens(rec["/inherit"], 2)
    assert first["subprotocol"] is None
    assert first["subprotocols"] == ["other"]
    assert second["subprotocol"] is None
    assert second["subprotocols"] == []


async def test_subprotocol_required_refuses_with_400(start):
    g, rec = start("subprotocols = chat.v2 chat", SUBPROTOCOL_ROOMS)
    for offer in (["other"], None, ["CHAT"]):
        with pytest.raises(InvalidStatusCode) as e:
            async with connect(g, "/required", subprotocols=offer):
                pass
        assert e.value.status_code == 400
    async with connect(g, "/required", subprotocols=["other", "chat"]) as ws:
        assert ws.subprotocol == "chat"
        await echo_async(ws)
    assert len(opens(rec["/required"])) == 1


async def test_subprotocol_resource_overrides_gateway(start):
    g, rec = start("subprotocols = chat.v2 chat", SUBPROTOCOL_ROOMS)
    async with connect(g, "/own", subprotocols=["chat", "other"]) as ws:
        assert ws.subprotocol == "other"
    async with connect(g, "/own", subprotocols=["chat", "chat.v2"]) as ws:
        assert ws.subprotocol is None
    first, second = opens(rec["/own"], 2)
    assert first["subprotocol"] == "other"
    assert second["subprotocol"] is None


async def test_subprotocol_default_is_none(start):
    g, rec = start("", [("/r", "")])
    async with connect(g, "/r", subprotocols=["chat", "chat.v2"]) as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response_headers
        await echo_async(ws)
    (o,) = opens(rec["/r"])
    assert o["subprotocol"] is None
    assert o["subprotocols"] == ["chat", "chat.v2"]


async def test_subprotocol_required_with_empty_list_refuses_all(start):
    g, _ = start("", [("/r", "subprotocol_required = yes")])
    for offer in (["chat"], None):
        with pytest.raises(InvalidStatusCode) as e:
            async with connect(g, "/r", subprotocols=offer):
                pass
        assert e.value.status_code == 400


async def test_subprotocol_authorize_accept_confirms_rooms_choice(start):
    g, rec = start("subprotocols = chat.v2 chat", SUBPROTOCOL_ROOMS)
    async with connect(g, "/auth?verdict=accept",
                       subprotocols=["chat", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response_headers.get_all("Sec-WebSocket-Protocol") == \
            ["chat.v2"]
        await echo_async(ws)
    (o,) = opens(rec["/auth"])
    assert o["authorize"] is True
    assert o["subprotocol"] == "chat.v2"
    assert o["subprotocols"] == ["chat", "chat.v2"]


async def test_subprotocol_authorize_accept_overrides_rooms_choice(start):
    g, rec = start("subprotocols = chat.v2 chat", SUBPROTOCOL_ROOMS)
    async with connect(g, "/auth?verdict=accept&subprotocol=chat",
                       subprotocols=["chat", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response_headers.get_all("Sec-WebSocket-Protocol") == \
            ["chat"]
        await echo_async(ws)
    # an offered subprotocol outside the room's list is the backend's to
    # choose too
    async with connect(g, "/auth?verdict=accept&subprotocol=other",
                       subprotocols=["other", "chat"]) as ws:
        assert ws.subprotocol == "other"
        await echo_async(ws)
    first, second = opens(rec["/auth"], 2)
    assert first["subprotocol"] == "chat.v2"
    assert second["subprotocol"] == "chat"


async def test_subprotocol_authorize_accept_without_any(start):
    g, rec = start("subprotocols = chat.v2 chat", SUBPROTOCOL_ROOMS)
    async with connect(g, "/auth?verdict=accept",
                       subprotocols=["other"]) as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response_headers
        await echo_async(ws)
    (o,) = opens(rec["/auth"])
    assert o["subprotocol"] is None


# ------------------------------------------------- ping_interval, pong_timeout


PING_GATEWAY = "ping_interval = 500ms\npong_timeout = 500ms"
PING_ROOMS = [
    ("/inherit", ""),
    ("/noping", "ping_interval = 0"),
    ("/patient", "pong_timeout = 1500ms"),
]


def test_ping_interval_pings_a_silent_client(start):
    g, rec = start(PING_GATEWAY, PING_ROOMS)

    def answering():
        with wsraw.open_raw(g.port, "/inherit") as conn:
            t0 = time.monotonic()
            f = conn.recv_frame(timeout=2)
            first = time.monotonic() - t0
            assert f.opcode == OP_PING, f
            assert 0.3 <= first <= 1.2, first
            conn.send_frame(OP_PONG, f.payload)
            # answered, it stays open past several intervals
            pings = answer_pings(conn, 2.2)
            assert len(pings) >= 3, pings
            echo_works(conn)
            conn.send_close(1000)
            assert conn.expect_close(1000) == ""

    def unpinged():
        # ping_interval = 0 in the resource: never pinged, never dropped
        with wsraw.open_raw(g.port, "/noping") as conn:
            with pytest.raises(TimeoutError):
                conn.recv_frame(timeout=1.5)
            echo_works(conn)
            conn.send_close(1000)
            conn.expect_close(1000)

    in_parallel(answering, unpinged)


def test_ping_interval_counts_from_last_frame(start):
    """A client that keeps talking is not pinged."""
    g, _ = start(PING_GATEWAY, PING_ROOMS)
    with wsraw.open_raw(g.port, "/inherit") as conn:
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            conn.send_text("x")
            assert conn.recv_data(timeout=2) == (OP_TEXT, b"x")
            time.sleep(0.1)


def test_pong_timeout_drops_a_silent_client(start):
    g, rec = start(PING_GATEWAY, PING_ROOMS)

    def silent(path, drop_after):
        with wsraw.open_raw(g.port, path) as conn:
            t0 = time.monotonic()
            f = conn.recv_frame(timeout=2)
            assert f.opcode == OP_PING, f
            assert 0.3 <= time.monotonic() - t0 <= 1.2
            # nothing more (no close frame): the end of TCP
            how = conn.expect_drop(timeout=drop_after + 2)
            dropped = time.monotonic() - t0
            return conn.local_port, how, dropped

    (port1, how1, t1), (port2, how2, t2) = in_parallel(
        lambda: silent("/inherit", 1.0), lambda: silent("/patient", 2.0))
    assert how1 in ("eof", "reset")
    assert 0.85 <= t1 <= 1.8, t1            # 500ms + 500ms
    assert how2 in ("eof", "reset")
    assert 1.85 <= t2 <= 2.8, t2            # 500ms + 1500ms (resource's)
    for path, port in (("/inherit", port1), ("/patient", port2)):
        close = close_record(rec[path], remote_port=port)
        assert close["code"] == 1006, close
        assert close["reason"] == "pong timeout", close


def test_ping_interval_shorter_than_pong_timeout(start):
    """ping_interval = 300ms, pong_timeout = 2s: a silent client that
    answers each ping is pinged again 300 ms after its pong."""
    g, _ = start("ping_interval = 300ms\npong_timeout = 2s", [("/r", "")])
    with wsraw.open_raw(g.port, "/r") as conn:
        pings = answer_pings(conn, 1.6)
        # expected near 0.3, 0.6, 0.9, 1.2, 1.5; seen: 0.3 only (then 2.3)
        assert len(pings) >= 3, pings
        echo_works(conn)


def test_ping_and_idle_defaults(start):
    """ping_interval is 30s and idle_timeout off by default: a silent
    client hears nothing for well over a second, and stays."""
    g, rec = start("", [("/r", "")])
    with wsraw.open_raw(g.port, "/r") as conn:
        with pytest.raises(TimeoutError):
            conn.recv_frame(timeout=1.5)
        echo_works(conn)
        port = conn.local_port
    close = close_record(rec["/r"], remote_port=port)
    assert close["code"] == 1006


# -------------------------------------------------------------- idle_timeout


def idle_client(g, path, ping_every=None):
    """A client that sends no data message.  It answers the gateway's
    pings, and with ping_every sends its own pings that often.  Returns
    (its local port, pings answered, seconds until the close frame, code,
    reason) after completing the close handshake."""
    with wsraw.open_raw(g.port, path) as conn:
        t0 = time.monotonic()
        next_ping = t0 if ping_every else float("inf")
        answered = 0
        while True:
            now = time.monotonic()
            assert now - t0 < 5, "no close frame"
            if now >= next_ping:
                conn.send_frame(OP_PING, b"mine")
                next_ping = now + ping_every
            try:
                f = conn.recv_frame(timeout=min(0.05, 5 - (now - t0)))
            except TimeoutError:
                continue
            if f.opcode == OP_PING:
                answered += 1
                conn.send_frame(OP_PONG, f.payload)
            elif f.opcode == OP_PONG:
                assert f.payload == b"mine"
            else:
                break
        closed = time.monotonic() - t0
        assert f.opcode == OP_CLOSE, f
        code, reason = wsraw.parse_close(f.payload)
        conn.send_close(code)
        conn.expect_eof()
        return conn.local_port, answered, closed, code, reason


def test_idle_timeout(start):
    g, rec = start("idle_timeout = 1s",
                   [("/inherit", ""), ("/noidle", "idle_timeout = 0"),
                    ("/long", "idle_timeout = 2s")])

    def chatty():
        """A message every 300 ms: open for 3 s and more."""
        with wsraw.open_raw(g.port, "/inherit") as conn:
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:
                conn.send_text("tick")
                assert conn.recv_message(timeout=2) == (OP_TEXT, "tick")
                time.sleep(0.3)
            echo_works(conn)

    def unlimited():
        with wsraw.open_raw(g.port, "/noidle") as conn:
            with pytest.raises(TimeoutError):
                conn.recv_frame(timeout=2.5)
            echo_works(conn)

    silent, pinging, longer, _, _ = in_parallel(
        lambda: idle_client(g, "/inherit"),
        # the client's own pings do not count as messages either
        lambda: idle_client(g, "/inherit", ping_every=0.2),
        lambda: idle_client(g, "/long"), chatty, unlimited)
    for port, _, closed, code, reason in (silent, pinging):
        assert (code, reason) == (1001, "idle timeout")
        assert 0.9 <= closed <= 1.8, closed
        close = close_record(rec["/inherit"], remote_port=port)
        assert (close["code"], close["reason"]) == (1001, "idle timeout")
    _, _, closed, code, reason = longer
    assert (code, reason) == (1001, "idle timeout")
    assert 1.9 <= closed <= 2.8, closed     # the resource's 2s


def test_idle_timeout_ignores_answered_pings(start):
    # (pong_timeout no longer than ping_interval: see
    # test_ping_interval_shorter_than_pong_timeout)
    g, rec = start("idle_timeout = 1s\nping_interval = 300ms\n"
                   "pong_timeout = 300ms", [("/r", "")])
    port, answered, closed, code, reason = idle_client(g, "/r")
    assert (code, reason) == (1001, "idle timeout")
    assert answered >= 2, answered
    assert 0.9 <= closed <= 1.8, closed
    close = close_record(rec["/r"], remote_port=port)
    assert (close["code"], close["reason"]) == (1001, "idle timeout")


# ------------------------------------------------------------ max_frame_size


FRAME_ROOMS = [
    ("/inherit", ""),
    ("/own", "max_frame_size = 2000"),
    ("/zero", "max_frame_size = 0"),
]
FRAME_GATEWAY = "max_frame_size = 1000\nmax_message_size = 10000"


def test_max_frame_size_frame_over_it_is_1009(start):
    g, rec = start(FRAME_GATEWAY, FRAME_ROOMS)
    with wsraw.open_raw(g.port, "/inherit") as conn:
        conn.send_binary(b"a" * 1000)
        assert conn.recv_data() == (OP_BINARY, b"a" * 1000)
        conn.send_binary(b"b" * 1001)
        conn.expect_close(1009)
        port = conn.local_port
    assert close_record(rec["/inherit"], remote_port=port)["code"] == 1009


def test_max_frame_size_refused_at_its_header(start):
    g, _ = start(FRAME_GATEWAY, FRAME_ROOMS)
    with wsraw.open_raw(g.port, "/inherit") as conn:
        # only the header, announcing 1001 bytes: no payload needed
        conn.send_raw(encode_frame(OP_TEXT, b"", length=1001))
        conn.expect_close(1009)


def test_max_frame_size_fragments_under_it_pass(start):
    g, _ = start(FRAME_GATEWAY, FRAME_ROOMS)
    with wsraw.open_raw(g.port, "/inherit") as conn:
        msg = bytes(range(256)) * 11 + b"z" * 184          # 3000 bytes
        for f in wsraw.fragment(OP_BINARY, msg, 1000):
            conn.send_raw(f)
        assert conn.recv_data() == (OP_BINARY, msg)
        text = "é" * 1500                                  # 3000 bytes
        for f in wsraw.fragment(OP_TEXT, text, 1000):      # cut mid-char
            conn.send_raw(f)
        assert conn.recv_data() == (OP_TEXT, text.encode())
        # max_message_size still counts the whole message
        for f in wsraw.fragment(OP_BINARY, b"m" * 10001, 1000):
            conn.send_raw_lenient(f)
        conn.expect_close(1009)


def test_max_frame_size_resource_overrides_gateway(start):
    g, _ = start(FRAME_GATEWAY, FRAME_ROOMS)
    with wsraw.open_raw(g.port, "/own") as conn:
        conn.send_binary(b"a" * 2000)
        assert conn.recv_data() == (OP_BINARY, b"a" * 2000)
        conn.send_binary(b"a" * 2001)
        conn.expect_close(1009)


def test_max_frame_size_zero_means_max_message_size(start):
    g, _ = start(FRAME_GATEWAY, FRAME_ROOMS)
    with wsraw.open_raw(g.port, "/zero") as conn:
        conn.send_binary(b"a" * 10000)
        assert conn.recv_data() == (OP_BINARY, b"a" * 10000)
        conn.send_raw(encode_frame(OP_BINARY, b"", length=10001))
        conn.expect_close(1009)


def test_max_frame_size_default_is_max_message_size(start):
    g, _ = start("", [("/r", "")])
    big = b"q" * (1024 * 1024)                 # 1M, the default limit
    with wsraw.open_raw(g.port, "/r") as conn:
        conn.send_binary(big)
        assert conn.recv_data(timeout=15) == (OP_BINARY, big)
        conn.send_raw(encode_frame(OP_BINARY, b"", length=len(big) + 1))
        conn.expect_close(1009)


# --------------------------------------------------------------- max_clients


def test_max_clients_full_room_is_503(start):
    g, rec = start("max_clients = 2", [("/a", ""), ("/b", ""),
                                       ("/own", "max_clients = 3"),
                                       ("/free", "max_clients = 0")])
    a1 = attempt(g.port, "/a")
    a2 = attempt(g.port, "/a")
    with a1, a2:
        assert (a1.status, a2.status) == (101, 101)
        refusal = attempt(g.port, "/a")
        assert refusal.status == 503
        assert b"full" in refusal.body
        # another room is unaffected
        b = [attempt(g.port, "/b") for _ in range(2)]
        assert [c.status for c in b] == [101, 101]
        for c in b:
            echo_works(c)
            c.close()
        echo_works(a1)
        echo_works(a2)
        # once one leaves, a new one gets in
        a1.send_close(1000)
        a1.expect_close(1000)
        a1.close()
        a3 = wait_for(lambda: (lambda c: c if c.status == 101 else None)(
            attempt(g.port, "/a")), timeout=5, what="a place in /a")
        with a3:
            echo_works(a3)
            assert status_of(g.port, "/a") == 503
    # the refused clients never reached the room
    records = read_records(rec["/a"])
    assert sum(r["type"] == "open" for r in records) == 3


def test_max_clients_resource_overrides_gateway(start):
    g, _ = start("max_clients = 2", [("/a", ""),
                                     ("/own", "max_clients = 3"),
                                     ("/free", "max_clients = 0")])
    own = [attempt(g.port, "/own") for _ in range(3)]
    free = [attempt(g.port, "/free") for _ in range(6)]
    try:
        assert [c.status for c in own] == [101] * 3
        assert status_of(g.port, "/own") == 503
        assert [c.status for c in free] == [101] * 6
        for c in own + free:
            echo_works(c)
    finally:
        for c in own + free:
            c.close()


def test_max_clients_counts_authorizing_clients(start):
    g, _ = start("", [("/pending",
                       "max_clients = 2\nauthorize = yes",
                       "recorder --authorize ignore")])
    waiting = []
    try:
        for _ in range(2):
            sock = wsraw.connect(g.port)
            sock.sendall(handshake_request("/pending"))
            waiting.append(sock)
        # both are in the room, waiting for a verdict
        time.sleep(0.3)
        for sock in waiting:
            sock.settimeout(0.1)
            with pytest.raises(socket.timeout):
                sock.recv(1)
        assert status_of(g.port, "/pending") == 503
    finally:
        for sock in waiting:
            sock.close()


def test_max_clients_rejected_client_frees_its_place(start):
    g, rec = start("", [("/p", "max_clients = 1\nauthorize = yes",
                         "scripted")])
    for _ in range(3):
        assert status_of(g.port, "/p?verdict=reject&status=409") == 409
    with attempt(g.port, "/p") as conn:
        assert conn.status == 101
        echo_works(conn)
        assert status_of(g.port, "/p") == 503


def test_max_clients_default_is_no_limit(start):
    g, _ = start("", [("/r", "")])
    conns = [attempt(g.port, "/r") for _ in range(12)]
    try:
        assert [c.status for c in conns] == [101] * 12
        for c in conns:
            echo_works(c)
    finally:
        for c in conns:
            c.close()


# --------------------------------------------------- max_connections_per_ip


def test_max_connections_per_ip_is_429(start):
    g, _ = start("max_connections_per_ip = 3", [("/r", "")])
    conns = [attempt(g.port, "/r") for _ in range(3)]
    try:
        assert [c.status for c in conns] == [101] * 3
        for _ in range(2):
            refusal = attempt(g.port, "/r", allow_reset=True)
            assert refusal.status == 429
        # a connection that has not sent its request counts as well: it
        # is refused at once, before any request
        sock = wsraw.connect(g.port)
        with sock:
            sock.settimeout(TIMEOUT)
            status, _, _ = read_response_head(sock)
            assert status == 429
        # another client address is unaffected
        other = attempt(g.port, "/r", source="127.0.0.2")
        with other:
            assert other.status == 101
            echo_works(other)
        for c in conns:
            echo_works(c)
        # once one has gone, a new one gets in
        conns.pop().close()
        conns.append(wait_for(
            lambda: (lambda c: c if c.status == 101 else None)(
                attempt(g.port, "/r", allow_reset=True)),
            timeout=5, what="a free slot for 127.0.0.1"))
        echo_works(conns[-1])
        assert attempt(g.port, "/r", allow_reset=True).status == 429
    finally:
        for c in conns:
            c.close()


def test_max_connections_per_ip_counts_handshaking(start):
    g, _ = start("max_connections_per_ip = 2", [("/r", "")])
    held = [wsraw.connect(g.port) for _ in range(2)]
    try:
        for s in held:
            s.sendall(b"GET /r HTTP/1.1\r\n")      # half a request head
        assert attempt(g.port, "/r", allow_reset=True).status == 429
    finally:
        for s in held:
            s.close()
    conn = wait_for(lambda: (lambda c: c if c.status == 101 else None)(
        attempt(g.port, "/r", allow_reset=True)), timeout=5,
        what="a free slot")
    with conn:
        echo_works(conn)


def test_max_connections_per_ip_default_is_no_limit(start):
    g, _ = start("", [("/r", "")])
    conns = [attempt(g.port, "/r") for _ in range(12)]
    try:
        assert [c.status for c in conns] == [101] * 12
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------- close reason cut


CLOSE_REASONS = [
    # (id, reason sent by the backend, reason the client must get)
    ("2byte-200", "é" * 100, "é" * 61),               # 200 bytes -> 122
    ("ascii-200", "x" * 200, "x" * 123),
    ("3byte-199", "a" + "€" * 66, "a" + "€" * 40),     # 199 bytes -> 121
    ("4byte-200", "😀" * 50, "😀" * 30),               # 200 bytes -> 120
    ("4byte-162", "ab" + "😀" * 40, "ab" + "😀" * 30),  # 162 bytes -> 122
    ("exactly-123", "é" * 61 + "x", "é" * 61 + "x"),  # whole
    ("2byte-124", "é" * 62, "é" * 61),                # 124 bytes -> 122
    ("short", "kicked", "kicked"),
]


@pytest.mark.parametrize("reason,expected", [c[1:] for c in CLOSE_REASONS],
                         ids=[c[0] for c in CLOSE_REASONS])
def test_backend_close_reason_is_cut_at_a_character(start, reason,
                                                    expected):
    """A backend's close reason over 123 bytes reaches the client cut at a
    character boundary: valid UTF-8, a prefix of the original.  The
    record is sent with \\u escapes, then as raw UTF-8."""
    g, rec = start("", [("/s", "", "scripted")])
    for ascii_json in (True, False):
        with wsraw.open_raw(g.port, "/s") as conn:
            conn.send_text("whoami")
            me = json.loads(conn.recv_message()[1])["client"]
            cmd = {"type": "close", "client": me, "code": 4000,
                   "reason": reason}
            conn.send_text("cmd:" + json.dumps(cmd, ensure_ascii=ascii_json))
            f = conn.recv_frame()
            assert f.opcode == OP_CLOSE, f
            assert int.from_bytes(f.payload[:2], "big") == 4000
            raw = f.payload[2:]
            assert len(raw) <= 123, len(raw)
            got = raw.decode("utf-8")               # valid UTF-8
            assert reason.startswith(got)
            assert got == expected
            conn.send_close(4000)
            conn.expect_eof()
        assert close_record(rec["/s"], client=me)["code"] == 4000


# ------------------------------------------------------------------ defaults


def test_all_defaults_together(start):
    """A gateway that sets no policy option: any origin, no subprotocol,
    no client limits, no idle close, no ping within a second."""
    g, rec = start("", [("/r", "")])
    conns = [attempt(g.port, "/r", [("Origin", f"https://site{i}.net"),
                                    ("Sec-WebSocket-Protocol", "chat")])
             for i in range(5)]
    try:
        for c in conns:
            assert c.status == 101
            assert "sec-websocket-protocol" not in c.headers
        time.sleep(1.2)
        for c in conns:
            echo_works(c)
            c.send_close(1000)
            c.expect_close(1000)
    finally:
        for c in conns:
            c.close()
    for o in opens(rec["/r"], 5):
        assert o["subprotocol"] is None
