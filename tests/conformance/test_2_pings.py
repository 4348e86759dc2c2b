"""Autobahn 2.x: pings and pongs.  A ping is answered by a pong with the
same payload (RFC 6455 5.5.2, 5.5.3); a control frame of more than 125
bytes fails the connection with 1002 (5.5); an unsolicited pong is
ignored (5.5.3).
"""
import time

import pytest

import wsraw
from wsraw import OP_CONT, OP_PING, OP_PONG, OP_TEXT

from .conftest import echoes, open_echo, still_echoes


def pong(conn, payload):
    """The next frame is a final pong carrying payload."""
    assert conn.recv_frame() == (True, OP_PONG, payload)


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="2.1-empty"),
    pytest.param(b"Hello, world!", id="2.2-small-text"),
    pytest.param(b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff", id="2.3-small-binary"),
    pytest.param(bytes(range(125)), id="2.4-125-binary"),
    pytest.param(("\u00e9" * 62 + "x").encode(), id="2.4-125-text"),
])
def test_ping_gets_identical_pong(echo, data):
    """2.1-2.4: ping with no, small and 125-byte payloads, text or binary
    bytes alike: a pong with the same payload, then the connection goes
    on."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_PING, data)
        pong(conn, data)
        still_echoes(conn)


@pytest.mark.parametrize("n", [126, 127, 65535],
                         ids=["2.5-126", "2.5-127", "2.5-65535"])
def test_ping_over_125_bytes_fails_1002(echo, n):
    """2.5: a ping of 126 bytes (or more, with a 16-bit length) is a
    protocol error: close 1002, no pong, then the server closes TCP."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_PING, b"*" * n)
        conn.expect_close(1002)


def test_ping_over_125_bytes_fails_from_its_header(echo):
    """2.5 (header only): the length alone is enough; no payload byte is
    needed for the close."""
    with open_echo(echo) as conn:
        frame = wsraw.encode_frame(OP_PING, b"*" * 126)
        conn.send_raw(frame[:4])
        conn.expect_close(1002)


@pytest.mark.parametrize("split,delay", [(1, 0.0), (1, 0.002), (3, 0.0)],
                         ids=["2.6-bytewise", "2.6-bytewise-slow",
                              "2.6-chunks-3"])
def test_ping_sent_in_pieces(echo, split, delay):
    """2.6: a 125-byte ping written byte by byte (and in 3-byte chunks):
    one pong with the whole payload."""
    data = bytes(range(125))
    with open_echo(echo) as conn:
        conn.send_frame(OP_PING, data, split=split, delay=delay)
        pong(conn, data)
        still_echoes(conn)


@pytest.mark.parametrize("data", [b"", b"unsolicited pong payload"],
                         ids=["2.7-empty", "2.8-payload"])
def test_unsolicited_pong_is_ignored(echo, data):
    """2.7, 2.8: an unsolicited pong gets no answer; the next frame the
    client sees is the echo of the message it sent after the pong."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_PONG, data)
        still_echoes(conn, b"after the pong")


def test_unsolicited_pong_then_ping(echo):
    """2.9: an unsolicited pong, then a ping: exactly one pong, the
    ping's."""
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames((OP_PONG, b"unsolicited"),
                                   (OP_PING, b"solicited")))
        pong(conn, b"solicited")
        still_echoes(conn)


@pytest.mark.parametrize("split", [None, 1], ids=["2.10-at-once",
                                                  "2.11-bytewise"])
def test_ten_pings_ten_pongs_in_order(echo, split):
    """2.10, 2.11: ten pings in a row (in one send, or byte by byte): ten
    pongs, in the same order, each with its ping's payload."""
    payloads = [f"payload-{i}".encode() for i in range(10)]
    data = wsraw.frames(*[(OP_PING, p) for p in payloads])
    with open_echo(echo) as conn:
        conn.send_raw(data, split=split)
        for p in payloads:
            pong(conn, p)
        still_echoes(conn)


def test_many_pings_in_a_burst(echo):
    """2.10 (volume): 500 pings of 125 bytes in one send: 500 pongs in
    order."""
    payloads = [i.to_bytes(2, "big") * 62 + b"!" for i in range(500)]
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames(*[(OP_PING, p) for p in payloads]))
        for p in payloads:
            pong(conn, p)
        still_echoes(conn)


def test_ping_between_fragments(echo):
    """2.x / 5.6: a ping between the fragments of a text message is
    answered at once, before the message is complete; the message then
    comes back whole."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, b"fragment one, ", fin=False)
        conn.send_frame(OP_PING, b"in between")
        pong(conn, b"in between")
        conn.send_frame(OP_CONT, b"fragment two", fin=True)
        echoes(conn, OP_TEXT, b"fragment one, fragment two")


def test_message_then_ping_both_answered(echo):
    """2.x (ordering): a message then a ping in one send: the pong is the
    gateway's own answer and needs no backend, so it may come before the
    echo or after it; both come, each exactly once."""
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames((OP_TEXT, b"first"),
                                   (OP_PING, b"second")))
        got = [conn.recv_frame(), conn.recv_frame()]
        assert sorted(got, key=lambda f: f.opcode) == [
            (True, OP_TEXT, b"first"), (True, OP_PONG, b"second")]
        still_echoes(conn)


def test_ping_with_zero_mask_and_slow_header(echo):
    """2.6 (timing): a ping whose header bytes come 50 ms apart is still
    one ping."""
    with open_echo(echo) as conn:
        frame = wsraw.encode_frame(OP_PING, b"slow", mask_key=b"\0\0\0\0")
        for i in range(len(frame)):
            conn.send_raw(frame[i:i + 1])
            time.sleep(0.05 if i < 6 else 0)
        pong(conn, b"slow")
