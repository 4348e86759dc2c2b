"""Autobahn 5.x: fragmentation (RFC 6455 5.4).  A fragmented message is
reassembled and echoed as one; control frames may come between its
fragments and are answered at once; control frames themselves cannot be
fragmented; a continuation needs an open message and a new data frame
needs none open.  Every protocol error closes with 1002.
"""
import time

import pytest

import wsraw
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT)

from .conftest import echoes, open_echo, still_echoes

FRAG1, FRAG2 = b"fragment1", b"fragment2"


def pong(conn, payload):
    assert conn.recv_frame() == (True, OP_PONG, payload)


def send_each(conn, frames, how):
    """Send frames all at once ("once"), one send each with a pause
    between ("framewise") or byte by byte ("octetwise")."""
    if how == "once":
        conn.send_raw(b"".join(frames))
    elif how == "framewise":
        for f in frames:
            conn.send_raw(f)
            time.sleep(0.01)
    else:
        conn.send_raw(b"".join(frames), split=1)


HOWS = ["once", "framewise", "octetwise"]


# Fragmented control frames


@pytest.mark.parametrize("opcode,payload", [
    pytest.param(OP_PING, FRAG1, id="5.1-ping"),
    pytest.param(OP_PONG, FRAG1, id="5.2-pong"),
    pytest.param(OP_CLOSE, wsraw.close_payload(1000, "bye"), id="5.x-close"),
    pytest.param(OP_CLOSE, b"", id="5.x-close-empty"),
])
def test_fragmented_control_frame_fails_1002(echo, opcode, payload):
    """5.1, 5.2 (and close): a control frame with FIN clear, followed by
    a continuation, fails the connection with 1002; a fragmented ping
    gets no pong, a fragmented close no close echo."""
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames((opcode, payload, {"fin": False}),
                                           (OP_CONT, FRAG2)))
        conn.expect_close(1002)


def test_fragmented_ping_inside_a_message_fails_1002(echo):
    """5.1 (inside a message): a fragmented ping between data fragments
    is still refused."""
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames(
            (OP_TEXT, FRAG1, {"fin": False}), (OP_PING, b"p", {"fin": False}),
            (OP_CONT, FRAG2)))
        conn.expect_close(1002)


# Valid fragmentation


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_two_fragments(echo, opcode, how):
    """5.3 (at once), 5.4 (frame by frame), 5.5 (octet by octet): a
    message in two fragments comes back as one."""
    with open_echo(echo) as conn:
        send_each(conn, wsraw.fragment(opcode, FRAG1 + FRAG2, len(FRAG1)),
                  how)
        echoes(conn, opcode, FRAG1 + FRAG2)


@pytest.mark.parametrize("how", HOWS)
def test_two_fragments_with_ping_between(echo, how):
    """5.6 (at once), 5.7 (frame by frame), 5.8 (octet by octet): the
    pong comes before the message's echo, which is whole."""
    frames = [wsraw.encode_frame(OP_TEXT, FRAG1, fin=False),
              wsraw.encode_frame(OP_PING, b"ping payload"),
              wsraw.encode_frame(OP_CONT, FRAG2)]
    with open_echo(echo) as conn:
        send_each(conn, frames, how)
        pong(conn, b"ping payload")
        echoes(conn, OP_TEXT, FRAG1 + FRAG2)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_unsolicited_pong_between_fragments_is_ignored(echo, opcode):
    """5.x (pong between fragments): an unsolicited pong inside a
    fragmented message changes nothing: the echo is the next frame."""
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames(
            (opcode, FRAG1, {"fin": False}), (OP_PONG, b"unsolicited"),
            (OP_CONT, b"-", {"fin": False}), (OP_PONG, b""),
            (OP_CONT, FRAG2)))
        echoes(conn, opcode, FRAG1 + b"-" + FRAG2)


@pytest.mark.parametrize("how", ["once", "framewise"])
def test_five_fragments_with_pings_between(echo, how):
    """5.19 (frame by frame, with pauses), 5.20 (the same): a text in 5
    fragments with a ping after each of the first four: four pongs in
    order, each as its ping arrives, then the whole message."""
    parts = [f"fragment{i}".encode() for i in range(1, 6)]
    with open_echo(echo) as conn:
        for i, part in enumerate(parts):
            frame = wsraw.encode_frame(OP_TEXT if i == 0 else OP_CONT, part,
                                       fin=i == 4)
            if i < 4:
                frame += wsraw.encode_frame(OP_PING, f"pongme {i}".encode())
            conn.send_raw(frame)
            if how == "framewise" and i < 4:
                pong(conn, f"pongme {i}".encode())      # before the next
                time.sleep(0.02)
        if how == "once":
            for i in range(4):
                pong(conn, f"pongme {i}".encode())
        echoes(conn, OP_TEXT, b"".join(parts))


@pytest.mark.parametrize("how", ["once", "octetwise"])
def test_text_in_one_byte_fragments(echo, how):
    """5.x (1-byte fragments): every byte of a text, multi-byte characters
    included, in its own fragment: one message comes back."""
    data = "\u03ba\u1f79\u03c3\u03bc\u03b5 \U0001F600 ok".encode()
    with open_echo(echo) as conn:
        send_each(conn, wsraw.fragment(OP_TEXT, data, 1), how)
        echoes(conn, OP_TEXT, data)


@pytest.mark.parametrize("sizes", [
    pytest.param([0, 0], id="5.x-empty-empty"),
    pytest.param([0, 0, 0, 0, 0], id="5.x-five-empty"),
    pytest.param([0, 5, 0], id="5.x-empty-first-and-last"),
    pytest.param([5, 0], id="5.x-empty-last"),
    pytest.param([0, 5], id="5.x-empty-first"),
    pytest.param([2, 0, 0, 3], id="5.x-empty-middle"),
])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_empty_fragments(echo, opcode, sizes):
    """5.x (empty fragments): zero-length text, binary and continuation
    frames are fragments like any other."""
    data = b"abcde"[:sum(sizes)]
    with open_echo(echo) as conn:
        conn.send_raw(b"".join(wsraw.fragment(opcode, data, sizes)))
        echoes(conn, opcode, data)
        still_echoes(conn)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_a_thousand_fragments(echo, opcode):
    """5.x (many fragments): a message in 1000 fragments of 1 to 7 bytes,
    with a ping after every hundredth: ten pongs, then the message."""
    data = ("\u00e9\u20ac" * 900).encode()[:4000]
    sizes = [1 + i % 7 for i in range(999)]
    sizes.append(len(data) - sum(sizes))
    assert sizes[-1] > 0 and len(sizes) == 1000
    frames = wsraw.fragment(opcode, data, sizes)
    out = []
    for i, f in enumerate(frames):
        out.append(f)
        if i % 100 == 50:
            out.append(wsraw.encode_frame(OP_PING, str(i).encode()))
    with open_echo(echo) as conn:
        conn.send_raw(b"".join(out))
        for i in range(50, 1000, 100):
            pong(conn, str(i).encode())
        echoes(conn, opcode, data)


def test_fragmented_messages_back_to_back(echo):
    """5.x (one after another): three fragmented messages in one send,
    text, binary, text: three echoes in order."""
    msgs = [(OP_TEXT, b"one two three"), (OP_BINARY, b"\x00\x01\x02\x03"),
            (OP_TEXT, b"four five")]
    data = b"".join(b"".join(wsraw.fragment(op, m, 3)) for op, m in msgs)
    with open_echo(echo) as conn:
        conn.send_raw(data)
        for op, m in msgs:
            echoes(conn, op, m)


# Continuations without a message, data frames inside one


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("fin", [True, False], ids=["fin", "nofin"])
def test_continuation_without_start_fails_1002(echo, fin, how):
    """5.9-5.11 (FIN set), 5.12-5.14 (FIN clear): a continuation with no
    message open, then a text: close 1002; the text is never echoed."""
    frames = [wsraw.encode_frame(OP_CONT, FRAG2, fin=fin),
              wsraw.encode_frame(OP_TEXT, b"never echoed")]
    with open_echo(echo) as conn:
        try:
            send_each(conn, frames, how)
        except (BrokenPipeError, ConnectionResetError):
            pass
        conn.expect_close(1002)


def test_continuation_after_a_finished_message_fails_1002(echo):
    """5.15 ordered: text fragment, final continuation (a whole message,
    echoed), then a continuation with FIN clear (no message open): close
    1002; the text after it is never echoed."""
    with open_echo(echo) as conn:
        conn.send_raw(b"".join(wsraw.fragment(OP_TEXT, FRAG1 + FRAG2, 9)))
        echoes(conn, OP_TEXT, FRAG1 + FRAG2)
        conn.send_raw_lenient(wsraw.frames(
            (OP_CONT, b"fragment3", {"fin": False}),
            (OP_TEXT, b"fragment4")))
        conn.expect_close(1002)


def test_continuation_after_a_finished_message_pipelined(echo):
    """5.15 as Autobahn sends it, all at once: close 1002, preceded by the
    echo of the first message or by nothing (OK or NON-STRICT)."""
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames(
            (OP_TEXT, FRAG1, {"fin": False}), (OP_CONT, FRAG2),
            (OP_CONT, b"fragment3", {"fin": False}),
            (OP_TEXT, b"fragment4")))
        before, close = conn.recv_until_close()
        assert before in ([], [(True, OP_TEXT, FRAG1 + FRAG2)]), before
        assert close is not None and close[0] == 1002, close
        conn.expect_eof()


@pytest.mark.parametrize("first_fin", [False, True],
                         ids=["5.16-nofin", "5.17-fin"])
def test_orphan_continuation_then_message_twice(echo, first_fin):
    """5.16, 5.17: (continuation, text fragment, final continuation) twice:
    the first frame already fails the connection; nothing is echoed."""
    group = [(OP_CONT, FRAG1, {"fin": first_fin}),
             (OP_TEXT, FRAG2, {"fin": False}), (OP_CONT, b"fragment3")]
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames(*(group * 2)))
        conn.expect_close(1002)


@pytest.mark.parametrize("second", [
    pytest.param((OP_TEXT, True), id="5.18-text-in-text"),
    pytest.param((OP_TEXT, False), id="5.18-text-nofin-in-text"),
    pytest.param((OP_BINARY, True), id="5.x-binary-in-text"),
])
@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_new_data_frame_inside_a_message_fails_1002(echo, first, second):
    """5.18: a text (or binary) frame while a fragmented message is open
    is a protocol error: close 1002, nothing echoed."""
    opcode, fin = second
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames(
            (first, FRAG1, {"fin": False}), (opcode, FRAG2, {"fin": fin})))
        conn.expect_close(1002)


def test_new_data_frame_after_control_frames_inside_a_message(echo):
    """5.18 (with control frames between): pings and pongs between do not
    close the open message; the text frame after them still fails it
    (the ping before it is answered first)."""
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames(
            (OP_TEXT, FRAG1, {"fin": False}), (OP_PING, b"p"),
            (OP_PONG, b"q"), (OP_TEXT, FRAG2)))
        pong(conn, b"p")
        conn.expect_close(1002)
