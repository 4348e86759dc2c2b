"""Autobahn 9.x: limits and volume.  Messages up to 16 MiB, in one frame
and in fragments of 64 KiB and 1 MiB (conf/echo.ini allows 20M), come
back intact; a thousand small messages in a burst come back in order; a
message over max_message_size fails the connection with 1009, decided
from the frame header before its payload is read.

Autobahn's 9.1-9.4 go up to 16 MiB in every combination; the four 16 MiB
cases here (text and binary, whole, 64 KiB and 1 MiB fragments) keep the
suite quick, and 4 MiB cases fill in the other combinations.
"""
import os
import time

import pytest

import wsraw
from conftest import example_cmd
from wsraw import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT

from .conftest import echoes, open_echo, still_echoes

MiB = 1 << 20
KiB = 1 << 10
ECHO_LIMIT = 20 * MiB          # conf/echo.ini


def text_payload(n):
    unit = "a\u20ac\u00e9\U0001F600".encode()
    return unit * (n // len(unit)) + b"a" * (n % len(unit))


def payload(opcode, n):
    return text_payload(n) if opcode == OP_TEXT else os.urandom(n)


@pytest.mark.parametrize("opcode,size,frag", [
    pytest.param(OP_TEXT, 16 * MiB, None, id="9.1.6-text-16MiB"),
    pytest.param(OP_BINARY, 16 * MiB, None, id="9.2.6-binary-16MiB"),
    pytest.param(OP_TEXT, 16 * MiB, 64 * KiB,
                 id="9.3.x-text-16MiB-in-64KiB-frames"),
    pytest.param(OP_BINARY, 16 * MiB, MiB,
                 id="9.4.x-binary-16MiB-in-1MiB-frames"),
    pytest.param(OP_TEXT, 4 * MiB, MiB, id="9.3.x-text-4MiB-in-1MiB-frames"),
    pytest.param(OP_BINARY, 4 * MiB, 64 * KiB,
                 id="9.4.x-binary-4MiB-in-64KiB-frames"),
    pytest.param(OP_TEXT, 4 * MiB, None, id="9.1.4-text-4MiB"),
    pytest.param(OP_BINARY, 4 * MiB, None, id="9.2.4-binary-4MiB"),
])
def test_large_message(echo, opcode, size, frag):
    """9.1-9.4: a large message, whole or in fragments of frag bytes,
    comes back byte for byte; the connection goes on."""
    data = payload(opcode, size)
    with open_echo(echo) as conn:
        if frag is None:
            conn.send_frame(opcode, data)
        else:
            conn.send_raw(b"".join(wsraw.fragment(opcode, data, frag)))
        echoes(conn, opcode, data, timeout=60)
        still_echoes(conn)


@pytest.mark.parametrize("chunk", [257, 64 * KiB],
                         ids=["9.5.x-chunks-257", "9.5.x-chunks-64KiB"])
def test_large_frame_written_in_chunks(echo, chunk):
    """9.5.x, 9.6.x: a 1 MiB text frame written in chunks of 257 bytes
    and of 64 KiB: one message, intact."""
    data = text_payload(MiB)
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, data, split=chunk)
        echoes(conn, OP_TEXT, data, timeout=30)


@pytest.mark.parametrize("size", [0, 64, 4096])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["9.7.x-text", "9.8.x-binary"])
def test_thousand_messages_in_a_burst(echo, opcode, size):
    """9.7.x, 9.8.x (burst): 1000 messages of size bytes, each different,
    in one send: 1000 echoes in the order sent."""
    msgs = [i.to_bytes(4, "big") * (size // 4) + b"*" * (size % 4)
            if opcode == OP_BINARY else
            (f"{i:04d}" * (size // 4 + 1)).encode()[:size]
            for i in range(1000)]
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames(*[(opcode, m) for m in msgs]))
        for m in msgs:
            echoes(conn, opcode, m, timeout=20)


def test_thousand_messages_one_by_one(echo):
    """9.7.x (round trips, as Autobahn measures them): 1000 text messages
    of 64 bytes, each sent after the previous echo."""
    with open_echo(echo) as conn:
        start = time.monotonic()
        for i in range(1000):
            m = f"{i:04d}".encode() * 16
            conn.send_frame(OP_TEXT, m)
            echoes(conn, OP_TEXT, m)
        assert time.monotonic() - start < 60


def test_burst_with_pings_keeps_both_orders(echo):
    """9.x (mixed): 300 messages with a ping after every tenth, in one
    send: the pongs come in ping order and the echoes in message order
    (the two streams may interleave: pongs need no backend)."""
    frames, msgs, pings = [], [], []
    for i in range(300):
        msgs.append(f"message {i}".encode())
        frames.append((OP_TEXT, msgs[-1]))
        if i % 10 == 9:
            pings.append(f"ping {i}".encode())
            frames.append((OP_PING, pings[-1]))
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames(*frames))
        got_msgs, got_pongs = [], []
        while len(got_msgs) < len(msgs) or len(got_pongs) < len(pings):
            f = conn.recv_frame(timeout=20)
            assert f.fin and f.opcode in (OP_TEXT, OP_PONG), f
            (got_msgs if f.opcode == OP_TEXT else got_pongs).append(
                f.payload)
        assert got_msgs == msgs
        assert got_pongs == pings


# max_message_size: 1009


def test_echo_ini_limit_refuses_a_bigger_header(echo):
    """9.x (conf/echo.ini's 20M): a frame header announcing 20 MiB + 1
    is refused with 1009 at once, without any payload."""
    with open_echo(echo) as conn:
        frame_head = wsraw.encode_frame(OP_BINARY, b"", length=ECHO_LIMIT + 1)
        conn.send_raw(frame_head)
        conn.expect_close(1009)


def test_echo_ini_limit_counts_fragments(echo):
    """9.x (20M, fragmented): 1 MiB in a first fragment, then a header
    announcing 19 MiB + 1 more: 1009 from that header alone."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_BINARY, b"f" * MiB, fin=False)
        conn.send_raw(wsraw.encode_frame(OP_CONT, b"",
                                         length=ECHO_LIMIT - MiB + 1))
        conn.expect_close(1009)


@pytest.fixture
def small(gateway):
    """gatewayd serving the echo room with max_message_size = 64K."""
    return gateway("[gateway]\nmax_message_size = 64K\n[resource /echo]\n"
                   f"backend = {example_cmd('echo/room.py')}\n")


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_limit_is_inclusive_and_fragments_add_up(small, opcode):
    """9.x (at the limit): 64 KiB whole and in 1000 fragments pass; 64 KiB
    + 1 whole fails with 1009."""
    data = payload(opcode, 64 * KiB)
    with open_echo(small) as conn:
        conn.send_frame(opcode, data)
        echoes(conn, opcode, data)
        sizes = [65] * 999 + [64 * KiB - 65 * 999]
        conn.send_raw(b"".join(wsraw.fragment(opcode, data, sizes)))
        echoes(conn, opcode, data)
        conn.send_frame(opcode, payload(opcode, 64 * KiB + 1))
        conn.expect_close(1009)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_fragment_crossing_the_limit_fails_1009(small, opcode):
    """9.x (over the limit in fragments): 40 KiB, a ping (answered: control
    frames do not count), then the header of a fragment of 24 KiB + 1:
    1009 from that header, its payload never sent."""
    with open_echo(small) as conn:
        conn.send_frame(opcode, payload(opcode, 40 * KiB), fin=False)
        conn.send_frame(OP_PING, b"p" * 125)
        assert conn.recv_frame() == (True, OP_PONG, b"p" * 125)
        conn.send_raw(wsraw.encode_frame(OP_CONT, b"", fin=True,
                                         length=24 * KiB + 1))
        conn.expect_close(1009)


def test_sixteen_mib_over_a_small_limit_fails_from_the_header(small):
    """9.x (Autobahn's 16 MiB against a small limit): the 64-bit length
    alone fails the frame with 1009; none of the 16 MiB is sent."""
    with open_echo(small) as conn:
        conn.send_raw(wsraw.encode_frame(OP_TEXT, b"", length=16 * MiB))
        conn.expect_close(1009)


def test_message_at_the_default_limit_reaches_a_prompt_reader(gateway):
    """9.x (defaults): with no size options at all, a client that sends a
    message of exactly max_message_size (1 MiB) and then reads gets the
    echo and keeps its connection: it is no slow consumer."""
    g = gateway("[resource /echo]\n"
                f"backend = {example_cmd('echo/room.py')}\n")
    data = os.urandom(MiB)
    with open_echo(g) as conn:
        conn.send_frame(OP_BINARY, data)
        echoes(conn, OP_BINARY, data, timeout=20)
        still_echoes(conn)
