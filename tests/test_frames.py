"""Frames and messages (RFC 6455 sections 5 to 7) through the gateway.

Valid traffic goes through the websockets library, as a user's client would
send it; what no library sends (unmasked frames, reserved bits, bad UTF-8,
fragments in a chosen order) goes through wsraw.  The room's backend is the
recorder, which logs every record it gets and echoes each message to its
sender.

Every protocol error is checked the way a user sees it: the code in the
server's close frame, then the server closing TCP.
"""
import asyncio
import base64
import os
import socket

import pytest
import websockets

from conftest import backend_cmd, read_records
import wsraw
from wsraw import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT


@pytest.fixture
def room(gateway, tmp_path):
    """Start gatewayd with one room, /echo, served by the recorder.
    Returns start(gateway_opts="") -> (gateway, path of the record file)."""
    def start(gateway_opts=""):
        records = tmp_path / "records.jsonl"
        g = gateway(f"[gateway]\n{gateway_opts}\n"
                    f"[resource /echo]\n"
                    f"backend = {backend_cmd('recorder.py', records)}\n")
        return g, records
    return start


def connect(g, **kw):
    return websockets.connect(g.url("/echo"), max_size=None,
                              open_timeout=5, close_timeout=5, **kw)


def raw(g, **kw):
    return wsraw.open_raw(g.port, "/echo", **kw)


def records_of(records, port, until=None):
    """The records of the client connected from local port, waiting until
    until (a predicate on them) holds."""
    remote = f"127.0.0.1:{port}"

    def mine(rs):
        ids = {r["client"] for r in rs
               if r["type"] == "open" and r["remote"] == remote}
        return [r for r in rs if r.get("client") in ids]
    found = read_records(records, until=lambda rs: mine(rs) and (
        until is None or until(mine(rs))))
    return mine(found)


def close_record(records, port):
    (close,) = [r for r in records_of(
        records, port, until=lambda rs: any(r["type"] == "close"
                                            for r in rs))
        if r["type"] == "close"]
    return close


def failed_with(conn, code):
    """The server's close frame has code, then the server closes TCP.
    Returns the close reason."""
    got = conn.recv_close()
    assert got is not None and got[0] == code, got
    conn.expect_eof()
    return got[1]


def utf8_text(size):
    """A str whose UTF-8 encoding is exactly size bytes, mixing 1- to
    4-byte characters so that some straddle every chunk boundary."""
    unit = "a\u20ac\u00e9\U0001F600"            # 1 + 3 + 2 + 4 bytes
    text = unit * (size // 10) + "a" * (size % 10)
    assert len(text.encode()) == size
    return text


# Round trips


@pytest.mark.parametrize("text", [
    "hello",
    "h\u00e9llo \u2603 \U0001F600 \u4e2d\u6587",
    "quotes \" backslash \\ newline \n tab \t nul \x00 ctl \x1f del \x7f",
    "\ufeff\uffff\U0010FFFF",
])
async def test_text_round_trip(room, text):
    g, records = room()
    async with connect(g) as ws:
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), 5) == text
    rs = read_records(records, until=lambda rs: any(
        r["type"] == "message" for r in rs))
    (msg,) = [r for r in rs if r["type"] == "message"]
    assert msg["text"] == text and "binary" not in msg


async def test_binary_round_trip(room):
    g, records = room()
    data = bytes(range(256))
    async with connect(g) as ws:
        await ws.send(data)
        got = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(got, bytes) and got == data
    rs = read_records(records, until=lambda rs: any(
        r["type"] == "message" for r in rs))
    (msg,) = [r for r in rs if r["type"] == "message"]
    assert base64.b64decode(msg["binary"]) == data
    assert "text" not in msg


async def test_empty_messages(room):
    g, _ = room()
    async with connect(g) as ws:
        await ws.send("")
        assert await asyncio.wait_for(ws.recv(), 5) == ""
        await ws.send(b"")
        assert await asyncio.wait_for(ws.recv(), 5) == b""


def test_empty_messages_raw(room):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, b"")
        assert conn.recv_message() == (OP_TEXT, "")
        conn.send_frame(OP_BINARY, b"")
        assert conn.recv_message() == (OP_BINARY, b"")
        # an empty message in fragments
        conn.send_frame(OP_TEXT, b"", fin=False)
        conn.send_frame(OP_CONT, b"", fin=True)
        assert conn.recv_message() == (OP_TEXT, "")


async def test_messages_keep_their_order(room):
    g, _ = room()
    async with connect(g) as ws:
        sent = [f"m{i}" if i % 2 else f"m{i}".encode() for i in range(200)]
        for m in sent:
            await ws.send(m)
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in sent]
        assert got == sent


@pytest.mark.parametrize("size", [64 * 1024, 1024 * 1024],
                         ids=["64KiB", "1MiB"])
@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_large_messages_echo_intact(room, size, kind):
    g, _ = room("max_message_size = 2M")
    msg = utf8_text(size) if kind == "text" else os.urandom(size)
    async with connect(g) as ws:
        await ws.send(msg)
        got = await asyncio.wait_for(ws.recv(), 20)
        assert type(got) is type(msg) and len(got) == len(msg)
        assert got == msg


def test_large_message_in_many_fragments_and_small_pieces(room):
    g, _ = room("max_message_size = 2M")
    data = utf8_text(1024 * 1024).encode()
    pieces = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    # split each fragment's bytes unevenly so characters, headers and
    # masking keys straddle TCP segments
    with raw(g) as conn:
        for i, piece in enumerate(pieces):
            conn.send_frame(OP_TEXT if i == 0 else OP_CONT, piece,
                            fin=i == len(pieces) - 1, split=4093)
        assert conn.recv_message(timeout=20) == (OP_TEXT, data.decode())


# Fragments and control frames


def test_fragmented_message_arrives_as_one(room):
    g, records = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, "Hel", fin=False)
        conn.send_frame(OP_CONT, "lo, ", fin=False)
        conn.send_frame(OP_CONT, "world", fin=True)
        f = conn.recv_frame()
        assert f == (True, OP_TEXT, b"Hello, world")
        port = conn.local_port
    msgs = [r for r in records_of(records, port, until=lambda rs: any(
        r["type"] == "close" for r in rs)) if r["type"] == "message"]
    assert [m["text"] for m in msgs] == ["Hello, world"]


def test_fragmented_binary_message(room):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_BINARY, b"\x00\x01", fin=False)
        conn.send_frame(OP_CONT, b"", fin=False)
        conn.send_frame(OP_CONT, b"\xfe\xff", fin=True)
        assert conn.recv_message() == (OP_BINARY, b"\x00\x01\xfe\xff")


def test_ping_between_fragments_is_answered_at_once(room):
    g, records = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, "frag", fin=False)
        conn.send_frame(OP_PING, b"between")
        # the pong comes while the message is still open
        assert conn.recv_frame() == (True, OP_PONG, b"between")
        conn.send_frame(OP_PONG, b"unsolicited")        # ignored
        conn.send_frame(OP_CONT, "ment", fin=False)
        conn.send_frame(OP_PING, b"")
        assert conn.recv_frame() == (True, OP_PONG, b"")
        conn.send_frame(OP_CONT, "ed", fin=True)
        assert conn.recv_frame() == (True, OP_TEXT, b"fragmented")
        port = conn.local_port
    msgs = [r for r in records_of(records, port, until=lambda rs: any(
        r["type"] == "close" for r in rs)) if r["type"] == "message"]
    assert [m["text"] for m in msgs] == ["fragmented"]


async def test_ping_gets_pong_with_its_payload(room):
    g, _ = room()
    async with connect(g) as ws:
        waiter = await ws.ping(b"x")
        await asyncio.wait_for(waiter, 5)
        waiter = await ws.ping(b"\x00\xff" * 62)         # 124 bytes
        await asyncio.wait_for(waiter, 5)


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(125))],
                         ids=["empty", "one", "125"])
def test_ping_gets_pong_with_same_payload_raw(room, payload):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_PING, payload, split=1)
        assert conn.recv_frame() == (True, OP_PONG, payload)


# Invalid UTF-8


@pytest.mark.parametrize("payload", [
    b"\xff",
    b"ok \xc3\x28",                 # bad continuation byte
    b"\xc0\xaf",                    # overlong '/'
    b"\xed\xa0\x80",                # UTF-16 surrogate
    b"\xf4\x90\x80\x80",            # above U+10FFFF
    b"truncated \xe2\x82",          # ends inside a character
], ids=["ff", "bad-continuation", "overlong", "surrogate", "too-big",
        "truncated"])
def test_invalid_utf8_text_closes_1007(room, payload):
    g, records = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, payload)
        failed_with(conn, 1007)
        port = conn.local_port
    assert close_record(records, port)["code"] == 1007
    assert not [r for r in records_of(records, port)
                if r["type"] == "message"]


def test_invalid_utf8_split_across_fragments_closes_1007(room):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, b"euro \xe2\x82", fin=False)   # valid so far
        conn.send_frame(OP_CONT, b"\x28 no", fin=True)         # not \x80-\xbf
        failed_with(conn, 1007)


def test_text_ending_inside_a_character_across_fragments_closes_1007(room):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, b"a\xf0\x9f", fin=False)
        conn.send_frame(OP_CONT, b"\x98", fin=True)             # 3 of 4
        failed_with(conn, 1007)


def test_invalid_utf8_fails_before_the_message_ends(room):
    # fail fast: the bad first fragment is enough, no final frame needed
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, b"bad \xff", fin=False)
        failed_with(conn, 1007)


def test_character_split_across_fragments_is_fine(room):
    g, _ = room()
    euro = "\u20ac".encode()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, b"1 " + euro[:1], fin=False)
        conn.send_frame(OP_CONT, euro[1:2], fin=False)
        conn.send_frame(OP_CONT, euro[2:] + b" \xf0\x9f\x98", fin=False)
        conn.send_frame(OP_CONT, b"\x80", fin=True)
        assert conn.recv_message() == (OP_TEXT, "1 \u20ac \U0001F600")


def test_invalid_utf8_in_binary_is_fine(room):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_BINARY, b"\xff\xc0\xed\xa0\x80")
        assert conn.recv_message() == (OP_BINARY, b"\xff\xc0\xed\xa0\x80")


# max_message_size


def test_message_at_max_message_size_passes_and_one_more_byte_closes_1009(
        room):
    g, records = room("max_message_size = 1000")
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, "t" * 1000)
        assert conn.recv_message() == (OP_TEXT, "t" * 1000)
        conn.send_frame(OP_BINARY, b"b" * 1000)
        assert conn.recv_message() == (OP_BINARY, b"b" * 1000)
        conn.send_frame(OP_TEXT, "t" * 1001)
        failed_with(conn, 1009)
        port = conn.local_port
    assert close_record(records, port)["code"] == 1009


async def test_too_big_message_from_a_library_client_closes_1009(room):
    g, _ = room("max_message_size = 1000")
    async with connect(g) as ws:
        await ws.send(b"b" * 1000)
        assert await asyncio.wait_for(ws.recv(), 5) == b"b" * 1000
        await ws.send(b"b" * 1001)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            await asyncio.wait_for(ws.recv(), 5)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1009


def test_fragmented_message_over_max_message_size_closes_1009(room):
    g, _ = room("max_message_size = 1000")
    with raw(g) as conn:
        conn.send_frame(OP_BINARY, b"x" * 500, fin=False)
        conn.send_frame(OP_CONT, b"x" * 500, fin=True)
        assert conn.recv_message() == (OP_BINARY, b"x" * 1000)
        conn.send_frame(OP_TEXT, "x" * 600, fin=False)
        conn.send_frame(OP_CONT, "x" * 401, fin=True)
        failed_with(conn, 1009)


def test_too_big_message_is_refused_from_its_header(room):
    # the header announces 1001 bytes; no payload byte is ever sent
    g, _ = room("max_message_size = 1000")
    with raw(g) as conn:
        frame = wsraw.encode_frame(OP_BINARY, b"y" * 1001)
        conn.send_raw(frame[:8])                # 2 + 2 length + 4 mask
        failed_with(conn, 1009)


def test_control_frames_do_not_count_toward_max_message_size(room):
    g, _ = room("max_message_size = 10")
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, "12345", fin=False)
        conn.send_frame(OP_PING, b"p" * 125)
        assert conn.recv_frame() == (True, OP_PONG, b"p" * 125)
        conn.send_frame(OP_CONT, "67890", fin=True)
        assert conn.recv_message() == (OP_TEXT, "1234567890")


# Protocol errors


def test_unmasked_client_frame_closes_1002(room):
    g, records = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, "hello", mask=False)
        reason = failed_with(conn, 1002)
        port = conn.local_port
    close = close_record(records, port)
    assert close["code"] == 1002
    assert close["reason"] == reason != ""


@pytest.mark.parametrize("rsv", [4, 2, 1], ids=["rsv1", "rsv2", "rsv3"])
def test_rsv_bit_closes_1002(room, rsv):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, "hello", rsv=rsv)
        failed_with(conn, 1002)


@pytest.mark.parametrize("opcode", [3, 7, 0xB, 0xF])
def test_reserved_opcode_closes_1002(room, opcode):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(opcode, b"?")
        failed_with(conn, 1002)


def _frames(*frames):
    """The bytes of several client frames, each (opcode, payload) or
    (opcode, payload, encode_frame keywords)."""
    return b"".join(wsraw.encode_frame(f[0], f[1], **(f[2] if len(f) > 2
                                                      else {}))
                    for f in frames)


@pytest.mark.parametrize("data", [
    _frames((OP_CONT, b"orphan")),
    _frames((OP_TEXT, b"a", {"fin": False}), (OP_TEXT, b"b")),
    _frames((OP_BINARY, b"a", {"fin": False}), (OP_BINARY, b"b")),
    _frames((OP_PING, b"p", {"fin": False})),
    _frames((OP_PING, b"p" * 126)),
    _frames((OP_PONG, b"p" * 126)),
    _frames((OP_CLOSE, b"\x03")),
    _frames((OP_CLOSE, wsraw.close_payload(1005))),
    _frames((OP_CLOSE, wsraw.close_payload(1006))),
    _frames((OP_CLOSE, wsraw.close_payload(999))),
    _frames((OP_CLOSE, wsraw.close_payload(2999))),
    _frames((OP_CLOSE, wsraw.close_payload(5000))),
    # a 16-bit length that fits in 7 bits
    b"\x81\xfe\x00\x05" + b"\x00" * 4 + b"hello",
    # a 64-bit length that fits in 16 bits
    b"\x82\xff" + (5).to_bytes(8, "big") + b"\x00" * 4 + b"hello",
], ids=["orphan-continuation", "text-inside-text", "binary-inside-binary",
        "fragmented-ping", "ping-126", "pong-126", "close-1-byte",
        "close-1005", "close-1006", "close-999", "close-2999", "close-5000",
        "non-minimal-16", "non-minimal-64"])
def test_protocol_errors_close_1002(room, data):
    g, records = room()
    with raw(g) as conn:
        conn.send_raw(data)
        failed_with(conn, 1002)
        port = conn.local_port
    assert close_record(records, port)["code"] == 1002


def test_close_reason_not_utf8_closes_1007(room):
    g, _ = room()
    with raw(g) as conn:
        conn.send_close(1000, b"bad \xff")
        failed_with(conn, 1007)


def test_protocol_error_close_record_has_1002(room):
    g, records = room()
    with raw(g) as conn:
        conn.send_text("before")
        assert conn.recv_message() == (OP_TEXT, "before")
        conn.send_frame(OP_TEXT, "x", rsv=4)
        failed_with(conn, 1002)
        port = conn.local_port
    rs = records_of(records, port, until=lambda rs: any(
        r["type"] == "close" for r in rs))
    assert [r["type"] for r in rs] == ["open", "message", "close"]
    assert rs[-1]["code"] == 1002 and rs[-1]["reason"]


async def test_protocol_error_leaves_the_other_clients_working(room):
    g, records = room()
    async with connect(g) as a, connect(g) as b:
        await a.send("a1")
        assert await asyncio.wait_for(a.recv(), 5) == "a1"
        with raw(g) as bad:
            bad.send_frame(OP_TEXT, "x", mask=False)
            failed_with(bad, 1002)
        for ws, name in ((a, "a"), (b, "b")):
            await ws.send(name + "2")
            assert await asyncio.wait_for(ws.recv(), 5) == name + "2"
        with raw(g) as late:                    # newcomers too
            late.send_text("late")
            assert late.recv_message() == (OP_TEXT, "late")


# Close handshake


async def test_client_close_with_code_and_reason(room):
    g, records = room()
    ws = await connect(g)
    port = ws.local_address[1]
    await ws.send("hi")
    assert await asyncio.wait_for(ws.recv(), 5) == "hi"
    await asyncio.wait_for(ws.close(1000, "bye now"), 5)
    assert ws.close_code == 1000                # the server's echo
    close = close_record(records, port)
    assert close["code"] == 1000
    assert close["reason"] == "bye now"


@pytest.mark.parametrize("code,reason", [
    (1000, "bye"), (1001, ""), (3000, "app"), (4999, "\u00e9t\u00e9"),
    (1000, "r" * 123),
])
def test_client_close_code_is_echoed_raw(room, code, reason):
    g, records = room()
    with raw(g) as conn:
        conn.send_close(code, reason, split=2)
        assert conn.recv_close() == (code, "")
        conn.expect_eof()
        port = conn.local_port
    close = close_record(records, port)
    assert (close["code"], close["reason"]) == (code, reason)


def test_client_close_without_payload(room):
    g, records = room()
    with raw(g) as conn:
        conn.send_close()
        assert conn.recv_close() is None        # an empty close back
        conn.expect_eof()
        port = conn.local_port
    close = close_record(records, port)
    assert close["code"] == 1005
    assert close["reason"] == ""


def test_data_after_the_client_close_is_not_relayed(room):
    g, records = room()
    with raw(g) as conn:
        conn.send_raw(_frames((OP_CLOSE, wsraw.close_payload(1000)),
                              (OP_TEXT, b"after close")))
        assert conn.recv_close() == (1000, "")
        conn.expect_eof()
        port = conn.local_port
    rs = records_of(records, port, until=lambda rs: any(
        r["type"] == "close" for r in rs))
    assert [r["type"] for r in rs] == ["open", "close"]


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_dropped_connection_is_recorded_as_1006(room, how):
    g, records = room()
    conn = raw(g)
    conn.send_text("still here")
    assert conn.recv_message() == (OP_TEXT, "still here")
    port = conn.local_port
    conn.close() if how == "fin" else conn.abort()
    close = close_record(records, port)
    assert close["code"] == 1006


def test_connection_dropped_inside_a_frame_is_recorded_as_1006(room):
    g, records = room()
    conn = raw(g)
    port = conn.local_port
    conn.send_raw(wsraw.encode_frame(OP_TEXT, "x" * 100)[:50])
    conn.close()
    close = close_record(records, port)
    assert close["code"] == 1006
    assert not [r for r in records_of(records, port)
                if r["type"] == "message"]


def test_message_right_before_a_drop_is_relayed_first(room):
    g, records = room()
    conn = raw(g)
    port = conn.local_port
    conn.send_raw(wsraw.encode_frame(OP_TEXT, "last words") +
                  wsraw.encode_frame(OP_BINARY, b"\x01\x02"))
    conn.close()
    rs = records_of(records, port, until=lambda rs: any(
        r["type"] == "close" for r in rs))
    assert [(r["type"], r.get("text", r.get("binary"))) for r in rs[1:]] == [
        ("message", "last words"), ("message", "AQI="), ("close", None)]
    assert rs[-1]["code"] == 1006


def test_close_frame_then_half_close_is_a_clean_close(room):
    g, records = room()
    with raw(g) as conn:
        conn.send_close(1000, "done")
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.recv_close() == (1000, "")
        conn.expect_eof()
        port = conn.local_port
    close = close_record(records, port)
    assert (close["code"], close["reason"]) == (1000, "done")


def test_input_after_the_close_handshake_is_drained(room):
    # the server lingers: what comes after the close is read and dropped,
    # and the server still ends with an orderly close
    g, records = room()
    with raw(g) as conn:
        conn.send_close(1000)
        assert conn.recv_close() == (1000, "")
        conn.send_raw(b"\x00" * 100000)
        conn.expect_eof()
        port = conn.local_port
    assert close_record(records, port)["code"] == 1000


@pytest.mark.parametrize("length,code", [
    (1 << 63, 1002),                # top bit set
    ((1 << 63) - 1, 1009),          # announced, far over the limit
    (1 << 32, 1009),
])
def test_huge_announced_lengths(room, length, code):
    g, _ = room()
    with raw(g) as conn:
        head = bytes([0x82, 0xFF]) + length.to_bytes(8, "big")
        conn.send_raw(head + b"\x00\x00\x00\x00")
        failed_with(conn, code)


def test_frame_sent_byte_by_byte(room):
    g, _ = room()
    with raw(g) as conn:
        conn.send_frame(OP_TEXT, "\u00e9" * 70, split=1)      # 16-bit length
        assert conn.recv_message() == (OP_TEXT, "\u00e9" * 70)
        conn.send_frame(OP_TEXT, "a", fin=False, split=1)
        conn.send_frame(OP_CONT, "b", split=1)
        assert conn.recv_message() == (OP_TEXT, "ab")
