"""Autobahn 4.x: reserved opcodes.  Opcodes 3-7 (non-control) and 11-15
(control) are reserved; no extension defines them, so a frame with one
fails the connection with 1002 (RFC 6455 5.2), with or without payload,
alone, after a valid message, or inside a fragmented one.

Autobahn: 4.1.1 (3, empty), 4.1.2 (4, payload), 4.1.3 (5, after a
text, then a ping), 4.1.4 (6, payload, after a text, then a ping), 4.1.5
(7, the same), and 4.2.1-4.2.5 the same with 11-15.  Here every reserved
opcode gets every variant.  As in 3.x, "pipelined" sends everything at
once: the echo of the valid text may come before the close or not at all
(Autobahn: OK or NON-STRICT), a pong for the trailing ping never.
"""
import pytest

import wsraw
from wsraw import OP_CONT, OP_PING, OP_TEXT

from .conftest import echoes, open_echo

RESERVED = [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]
GOOD = b"Hello, world!"


def cid(opcode, payload):
    group, n = (1, opcode - 2) if opcode < 8 else (2, opcode - 10)
    return f"4.{group}.{n}-op{opcode}-{'payload' if payload else 'empty'}"


def cases():
    for opcode in RESERVED:
        for payload in (b"", b"reserved opcode payload"):
            yield pytest.param(opcode, payload, id=cid(opcode, payload))


@pytest.mark.parametrize("opcode,payload", cases())
def test_reserved_opcode_alone(echo, opcode, payload):
    """4.x.x alone: close 1002 and the end of TCP."""
    with open_echo(echo) as conn:
        conn.send_frame(opcode, payload)
        conn.expect_close(1002)


@pytest.mark.parametrize("opcode,payload", cases())
def test_reserved_opcode_after_a_message(echo, opcode, payload):
    """4.x.x ordered: the echo of the text first, then close 1002."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, GOOD)
        echoes(conn, OP_TEXT, GOOD)
        conn.send_frame(opcode, payload)
        conn.expect_close(1002)


@pytest.mark.parametrize("opcode,payload", cases())
def test_reserved_opcode_pipelined(echo, opcode, payload):
    """4.x.x as Autobahn sends it: text, reserved frame, ping in one send."""
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames(
            (OP_TEXT, GOOD), (opcode, payload), (OP_PING, b"after")))
        before, close = conn.recv_until_close()
        assert before in ([], [(True, OP_TEXT, GOOD)]), before
        assert close is not None and close[0] == 1002, close
        conn.expect_eof()


@pytest.mark.parametrize("opcode", RESERVED)
def test_reserved_opcode_not_final(echo, opcode):
    """4.x (FIN clear): a reserved opcode that starts a "fragmented"
    frame is refused the same way."""
    with open_echo(echo) as conn:
        conn.send_frame(opcode, b"x", fin=False)
        conn.expect_close(1002)


@pytest.mark.parametrize("opcode", RESERVED)
def test_reserved_opcode_inside_a_fragmented_message(echo, opcode):
    """4.x (between fragments): a reserved opcode between the fragments of
    a text message fails the connection; the message is never echoed."""
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames(
            (OP_TEXT, b"started ", {"fin": False}), (opcode, b"?"),
            (OP_CONT, b"and ended")))
        conn.expect_close(1002)


@pytest.mark.parametrize("opcode", RESERVED)
def test_reserved_opcode_refused_from_its_first_two_bytes(echo, opcode):
    """4.x (octet-wise): the close comes as soon as the first two header
    bytes are in, one at a time; the masking key and payload are never
    needed."""
    frame = wsraw.encode_frame(opcode, b"reserved")
    with open_echo(echo) as conn:
        conn.send_raw(frame[:2], split=1)
        conn.expect_close(1002)
