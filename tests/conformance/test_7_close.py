"""Autobahn 7.x: the closing handshake (RFC 6455 5.5.1, 7).  A client's
close is answered with a close echoing its code (an empty one with an
empty one), after which the server sends nothing more and closes TCP
first; bad close payloads fail the connection (1002, or 1007 for a
reason that is not UTF-8); what comes after a close is ignored.  And the
other way round: a close the server starts is bounded by close_timeout.
"""
import json
import select
import time

import pytest

import wsraw
from conftest import backend_cmd, fd_count, wait_for
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT)

from .conftest import echoes, open_echo

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000,
               3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                 5000, 65535]


def close_frame(code=None, reason=b"", **kw):
    return wsraw.encode_frame(OP_CLOSE, wsraw.close_payload(code, reason),
                              **kw)


# 7.1: close and what comes after it


def test_close_after_a_message(echo):
    """7.1.1: a text, its echo, then close 1000: close 1000 back and the
    server closes TCP."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, b"Hello World!")
        echoes(conn, OP_TEXT, b"Hello World!")
        conn.send_close(1000)
        conn.expect_close(1000)


def test_server_closes_tcp_as_soon_as_closes_are_exchanged(echo):
    """5.5.1: once it has both sent and received a close, the server MUST
    close TCP at once: its descriptors come back while the clients still
    hold their sockets open, long before close_timeout (5 s here)."""
    pid = echo.proc.pid
    base = fd_count(pid)
    conns = [open_echo(echo) for _ in range(20)]
    try:
        wait_for(lambda: fd_count(pid) == base + 20, timeout=5,
                 what="the 20 connections in the gateway")
        for conn in conns:
            conn.send_close(1000)
        for conn in conns:
            conn.expect_close(1000)
        wait_for(lambda: fd_count(pid) == base, timeout=2,
                 what="the gateway to close its 20 sockets")
    finally:
        for conn in conns:
            conn.close()


def test_close_behind_an_unread_backlog(echo):
    """5.5.1 with a backlog: the client's close comes while 16 MiB of its
    echo still wait in the gateway (the socket is full).  The gateway
    writes all of it, then the close echo, and only then closes TCP."""
    payload = b"x" * (16 << 20)
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, payload)
        # The echo is queued whole once its first byte is here.
        ready, _, _ = select.select([conn.sock], [], [], 20)
        assert ready, "no echo started"
        time.sleep(0.2)
        conn.send_close(1000)
        echoes(conn, OP_TEXT, payload, timeout=20)
        conn.expect_close(1000)


def test_second_close_is_ignored(echo):
    """7.1.2: two closes in one send: one close back, then the end of
    TCP (expect_close fails on any byte after the first close)."""
    with open_echo(echo) as conn:
        conn.send_raw(close_frame(1000) + close_frame(1001))
        conn.expect_close(1000)


@pytest.mark.parametrize("after", [
    pytest.param((OP_PING, b"ping after close"), id="7.1.3-ping"),
    pytest.param((OP_TEXT, b"text after close"), id="7.1.4-text"),
    pytest.param((OP_BINARY, b"\x00binary after close"), id="7.1.x-binary"),
    pytest.param((OP_PONG, b"pong after close"), id="7.1.x-pong"),
    pytest.param((5, b"reserved opcode after close"), id="7.1.x-garbage"),
])
def test_frames_after_close_are_ignored(echo, after):
    """7.1.3, 7.1.4 (and binary, pong, even a bad frame): frames after the
    client's close get nothing: no pong, no echo, no second close, only
    the close echo and then the end of TCP."""
    with open_echo(echo) as conn:
        conn.send_raw(close_frame(1000) + wsraw.encode_frame(*after))
        conn.expect_close(1000)


def test_frames_after_close_in_later_segments(echo):
    """7.1.4 (later): frames sent after the close echo arrived are
    dropped too; the server still closes TCP."""
    with open_echo(echo) as conn:
        conn.send_close(1000)
        assert conn.recv_close() == (1000, "")
        conn.send_raw_lenient(wsraw.frames((OP_TEXT, b"late"),
                                           (OP_PING, b"late")))
        conn.expect_eof()


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["7.1.5-text", "7.1.5-binary"])
def test_close_between_fragments(echo, opcode):
    """7.1.5: a fragment, a close, then the final continuation: the close
    is answered, the unfinished message is never echoed."""
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames((opcode, b"fragment1", {"fin": False}),
                                   (OP_CLOSE, wsraw.close_payload(1000)),
                                   (OP_CONT, b"fragment2")))
        conn.expect_close(1000)


def test_close_after_an_unfinished_fragment(echo):
    """7.1.5 (no continuation): a fragment and then a close: close 1000
    back, nothing echoed."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, b"never finished", fin=False)
        time.sleep(0.05)
        conn.send_close(1000)
        conn.expect_close(1000)


def test_close_behind_a_large_message(echo):
    """7.1.6 (INFORMATIONAL in Autobahn): 256 KiB of text, a small text, a
    ping and a close in one send.  The pong comes before the close echo;
    echoes of the texts may come before it (intact, in order) or never;
    nothing comes after it but the end of TCP."""
    big = b"BAsd7&jh23" * 26214 + b"BAsd"                # 262144 bytes
    msgs = [big, b"Hello World!"]
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames((OP_TEXT, big), (OP_TEXT, msgs[1]),
                                   (OP_PING, b"ping"),
                                   (OP_CLOSE, wsraw.close_payload(1000))))
        before, close = conn.recv_until_close(timeout=10)
        assert close == (1000, "")
        conn.expect_eof()
    assert (True, OP_PONG, b"ping") in before, before
    texts = [f.payload for f in before if f.opcode == OP_TEXT]
    assert texts == msgs[:len(texts)]
    assert all(f.fin and f.opcode in (OP_TEXT, OP_PONG) for f in before)


# 7.3: close frame payloads


def test_empty_close(echo):
    """7.3.1: a close with no payload is answered with a close that is
    empty or carries 1000 (RFC 6455 5.5.1 only says "typically echoes"),
    and the server then closes TCP."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_CLOSE, b"")
        got = conn.recv_close()
        assert got is None or got[0] == 1000, got
        conn.expect_eof()


@pytest.mark.parametrize("payload,code", [
    pytest.param(b"\x03", 1002, id="7.3.2-one-byte"),
    pytest.param(wsraw.close_payload(1000), 1000, id="7.3.3-code-only"),
    pytest.param(wsraw.close_payload(1000, "Hello World!"), 1000,
                 id="7.3.4-code-and-reason"),
    pytest.param(wsraw.close_payload(1000, "*" * 123), 1000,
                 id="7.3.5-123-byte-reason"),
    pytest.param(wsraw.close_payload(1000, "*" * 124), 1002,
                 id="7.3.6-124-byte-reason"),
    pytest.param(wsraw.close_payload(1000, "\u00e9" * 61 + "*"), 1000,
                 id="7.3.5-123-byte-utf8-reason"),
])
def test_close_payloads(echo, payload, code):
    """7.3.2-7.3.6: a code, with or without a reason of up to 123 bytes,
    gets its code back; one byte, or a reason of 124 bytes (a 126-byte
    control frame), fails with 1002.  Each time the server then closes
    TCP."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_CLOSE, payload)
        conn.expect_close(code)


@pytest.mark.parametrize("split", [1, 2, 3])
def test_close_sent_in_pieces(echo, split):
    """7.3.4 (in pieces): a close with a reason written in chunks of 1, 2
    and 3 bytes is one close."""
    with open_echo(echo) as conn:
        conn.send_close(4000, "piece by piece", split=split)
        conn.expect_close(4000)


# 7.5: the reason must be UTF-8


@pytest.mark.parametrize("reason", [
    pytest.param(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"
                 b"edited", id="7.5.1-surrogate"),
    pytest.param(b"\xff", id="7.5.x-ff"),
    pytest.param(b"bye \xc0\xaf", id="7.5.x-overlong"),
    pytest.param(b"bye \xf4\x90\x80\x80", id="7.5.x-above-10ffff"),
    pytest.param(b"bye \xe2\x82", id="7.5.x-cut-character"),
    pytest.param(b"\x80 bye", id="7.5.x-lone-continuation"),
])
def test_close_reason_not_utf8_fails_1007(echo, reason):
    """7.5.1: a close whose reason is not valid UTF-8 fails the
    connection with 1007."""
    with open_echo(echo) as conn:
        conn.send_close(1000, reason)
        conn.expect_close(1007)


@pytest.mark.parametrize("reason", [
    "\u03ba\u1f79\u03c3\u03bc\u03b5", "\uffff\ufffe", "\U0010FFFF", "\x00",
], ids=["7.5.x-kosme", "7.5.x-noncharacters", "7.5.x-last-code-point",
        "7.5.x-nul"])
def test_close_reason_valid_utf8(echo, reason):
    """7.5.x (valid): multi-byte, noncharacter and NUL reasons are valid
    UTF-8: the code comes back."""
    with open_echo(echo) as conn:
        conn.send_close(1000, reason)
        conn.expect_close(1000)


# 7.7, 7.9, 7.13: close codes


@pytest.mark.parametrize("code", VALID_CODES,
                         ids=[f"7.7.{i + 1}-{c}"
                              for i, c in enumerate(VALID_CODES)])
def test_valid_close_code_is_echoed(echo, code):
    """7.7.1-7.7.13: a close with a valid code (and a reason) gets a
    close with the same code, then the end of TCP."""
    with open_echo(echo) as conn:
        conn.send_close(code, "reason")
        conn.expect_close(code)


@pytest.mark.parametrize("code", [1012, 1013, 1014],
                         ids=["7.7.x-1012", "7.7.x-1013", "7.7.x-1014"])
def test_registered_close_codes_are_echoed(echo, code):
    """7.7.x (INFORMATIONAL in Autobahn, which predates their
    registration): 1012-1014 are IANA-registered codes the gateway
    accepts (docs: 1007-1014 are valid): echoed."""
    with open_echo(echo) as conn:
        conn.send_close(code)
        conn.expect_close(code)


@pytest.mark.parametrize("code", INVALID_CODES,
                         ids=[f"7.9.{i + 1}-{c}"
                              for i, c in enumerate(INVALID_CODES)])
def test_invalid_close_code_fails_1002(echo, code):
    """7.9.x, 7.13.x: codes that are never sent on the wire (0-999,
    1004-1006, 1015, unassigned 1016-2999, 5000 and up) fail the
    connection with 1002."""
    with open_echo(echo) as conn:
        conn.send_close(code)
        conn.expect_close(1002)


# The server closes first: close_timeout


@pytest.fixture
def scripted(gateway):
    """gatewayd with close_timeout = 1s and tests/backends/scripted.py at
    /s: each client can make the backend close it."""
    return gateway("[gateway]\nclose_timeout = 1s\n"
                   f"[resource /s]\nbackend = {backend_cmd('scripted.py')}\n")


def kicked(g, code=4000, reason="kicked"):
    """A client at /s that asked its backend to close it: returns the
    connection and the time the server's close frame arrived."""
    conn = wsraw.open_raw(g.port, "/s")
    conn.send_text("whoami")
    op, me = conn.recv_message()
    client = json.loads(me)["client"]
    cmd = {"type": "close", "client": client, "code": code,
           "reason": reason}
    conn.send_text("cmd:" + json.dumps(cmd))
    assert conn.recv_close() == (code, reason)
    return conn, time.monotonic()


def test_unanswered_server_close_is_dropped_after_close_timeout(scripted):
    """7.x (server-initiated, unanswered): the backend closes the client
    with 4000; the client never answers the close; close_timeout = 1s
    later the server drops TCP (FIN or reset) by itself."""
    conn, t0 = kicked(scripted)
    with conn:
        how = conn.expect_drop(timeout=6)
        elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed <= 3.0, (elapsed, how)


def test_answered_server_close_ends_at_once(scripted):
    """7.x (server-initiated, answered): once the client answers the close
    the server closes TCP right away, well before close_timeout."""
    conn, t0 = kicked(scripted, 1000, "")
    with conn:
        conn.send_close(1000)
        conn.expect_eof(timeout=3)
        elapsed = time.monotonic() - t0
    assert elapsed < 0.7, elapsed


def test_data_after_a_server_close_is_ignored(scripted):
    """7.x (server-initiated, data in flight): after the server's close the
    client's text and ping get no echo and no pong; its close ends the
    connection."""
    conn, _ = kicked(scripted, 4001, "bye")
    with conn:
        conn.send_raw(wsraw.frames((OP_TEXT, b"in flight"),
                                   (OP_PING, b"in flight"),
                                   (OP_CLOSE, wsraw.close_payload(4001))))
        conn.expect_eof(timeout=3)
