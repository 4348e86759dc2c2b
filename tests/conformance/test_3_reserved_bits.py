"""Autobahn 3.x: reserved bits.  No extension is negotiated, so a frame
with any of RSV1-RSV3 set fails the connection with 1002 (RFC 6455 5.2),
whatever its opcode; what the client sent before the bad frame is handled
first.

rsv below is the 3-bit field as Autobahn numbers it: 4 is RSV1, 2 is RSV2,
1 is RSV3.  Autobahn's cases are 3.1 (rsv 1, text), 3.2 (rsv 2, text after
a valid text), 3.3 (rsv 3, the same, frame by frame), 3.4 (rsv 4, octet
by octet), 3.5 (rsv 5, binary), 3.6 (rsv 6, ping) and 3.7 (rsv 7, close);
here every value meets every kind of frame, in three ways:

  ordered    a valid text, its echo awaited, then the bad frame: the
             client sees the echo, then the close 1002 (Autobahn: OK)
  pipelined  a valid text, the bad frame and a ping in one send, as
             Autobahn sends them: the close 1002 comes, no pong; the
             echo may come first or not at all, since it comes from the
             backend after the gateway has failed the connection and
             RFC 6455 7.1.7 lets nothing follow the close (Autobahn:
             OK or NON-STRICT)
  bytewise   the same bytes one at a time
"""
import pytest

import wsraw
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT)

from .conftest import echoes, open_echo

GOOD = b"Hello, world!"

# kind -> the frames of the bad part: (opcode, payload, keywords) with the
# reserved bits added to the last frame
KINDS = {
    "text": [(OP_TEXT, b"reserved")],
    "binary": [(OP_BINARY, b"\x00\xffreserved")],
    "ping": [(OP_PING, b"reserved")],
    "pong": [(OP_PONG, b"reserved")],
    "close": [(OP_CLOSE, wsraw.close_payload(1000))],
    "empty-text": [(OP_TEXT, b"")],
    "continuation": [(OP_TEXT, b"first half, ", {"fin": False}),
                     (OP_CONT, b"second half")],
}
AUTOBAHN = {(1, "text"): "3.1", (2, "text"): "3.2", (3, "text"): "3.3",
            (4, "text"): "3.4", (5, "binary"): "3.5", (6, "ping"): "3.6",
            (7, "close"): "3.7"}


def bad_frames(kind, rsv):
    specs = [list(s) + [{}] if len(s) == 2 else list(s)
             for s in KINDS[kind]]
    specs[-1][2] = dict(specs[-1][2], rsv=rsv)
    return wsraw.frames(*[tuple(s) for s in specs])


def cases():
    for rsv in range(1, 8):
        for kind in KINDS:
            cid = AUTOBAHN.get((rsv, kind), "3.x")
            yield pytest.param(rsv, kind, id=f"{cid}-rsv{rsv}-{kind}")


@pytest.mark.parametrize("rsv,kind", cases())
def test_reserved_bits_ordered(echo, rsv, kind):
    """3.x ordered: echo first, then close 1002 and the end of TCP."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, GOOD)
        echoes(conn, OP_TEXT, GOOD)
        conn.send_raw(bad_frames(kind, rsv))
        conn.expect_close(1002)


@pytest.mark.parametrize("mode", ["pipelined", "bytewise"])
@pytest.mark.parametrize("rsv,kind", cases())
def test_reserved_bits_pipelined(echo, rsv, kind, mode):
    """3.x pipelined and bytewise (Autobahn's way): close 1002; before it
    nothing, or the echo of the valid text; never a pong for the ping
    behind the bad frame."""
    data = (wsraw.encode_frame(OP_TEXT, GOOD) + bad_frames(kind, rsv) +
            wsraw.encode_frame(OP_PING, b"after"))
    with open_echo(echo) as conn:
        conn.send_raw_lenient(data, split=1 if mode == "bytewise" else None)
        before, close = conn.recv_until_close()
        assert before in ([], [(True, OP_TEXT, GOOD)]), before
        assert close is not None and close[0] == 1002, close
        conn.expect_eof()


@pytest.mark.parametrize("rsv", range(1, 8))
def test_reserved_bits_refused_from_the_first_two_bytes(echo, rsv):
    """3.x (header only): the first two header bytes, one at a time, are
    enough for the close 1002; the masking key and payload never come."""
    frame = wsraw.encode_frame(OP_TEXT, b"reserved", rsv=rsv)
    with open_echo(echo) as conn:
        conn.send_raw(frame[:2], split=1)
        conn.expect_close(1002)
