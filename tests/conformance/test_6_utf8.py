"""Autobahn 6.x: UTF-8 handling.  A text message must be valid UTF-8
(RFC 6455 8.1, RFC 3629); a valid one is echoed byte for byte, however it
is fragmented, and an invalid one fails the connection with 1007.

The cases are Markus Kuhn's UTF-8 decoder capability and stress test
(kuhn_utf8.py, numbered as Autobahn numbers them).  Each is sent

  whole          one text frame (Autobahn 6.5-6.23)
  bytewise       one frame per byte (Autobahn 6.2.4, 6.3.2)
  split          in two fragments, at every position (Autobahn 6.2.2,
                 6.3.1 in spirit), a new connection each time for
                 invalid cases
  octetwise      one frame written byte by byte (Autobahn 6.2.3)

and "fail fast" (Autobahn 6.4): the gateway validates text as it arrives,
so the close 1007 comes as soon as the byte that makes the text invalid
has arrived, before the frame or message is complete.  Where that byte
is, is computed here from the Unicode Standard's table of well-formed
byte sequences (Table 3-7), independently of the gateway's validator.
"""
import time

import pytest

import wsraw
from wsraw import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT

from . import kuhn_utf8
from .conftest import echoes, open_echo, still_echoes

# Unicode Table 3-7, well-formed UTF-8 byte sequences: a first byte range
# and the ranges of the bytes that follow it
WELL_FORMED = [
    ((0x00, 0x7F),),
    ((0xC2, 0xDF), (0x80, 0xBF)),
    ((0xE0, 0xE0), (0xA0, 0xBF), (0x80, 0xBF)),
    ((0xE1, 0xEC), (0x80, 0xBF), (0x80, 0xBF)),
    ((0xED, 0xED), (0x80, 0x9F), (0x80, 0xBF)),
    ((0xEE, 0xEF), (0x80, 0xBF), (0x80, 0xBF)),
    ((0xF0, 0xF0), (0x90, 0xBF), (0x80, 0xBF), (0x80, 0xBF)),
    ((0xF1, 0xF3), (0x80, 0xBF), (0x80, 0xBF), (0x80, 0xBF)),
    ((0xF4, 0xF4), (0x80, 0x8F), (0x80, 0xBF), (0x80, 0xBF)),
]


def fail_point(data):
    """The length of the shortest prefix of data that no valid UTF-8
    string starts with (the bad byte is its last), or None when every
    prefix could still become valid (data is valid, or only cut short)."""
    pending = []
    for i, b in enumerate(data):
        if pending:
            lo, hi = pending.pop(0)
            if not lo <= b <= hi:
                return i + 1
            continue
        for row in WELL_FORMED:
            if row[0][0] <= b <= row[0][1]:
                pending = list(row[1:])
                break
        else:
            return i + 1
    return None


def test_fail_point_reference():
    """The reference itself, on the cases whose answer is known."""
    assert fail_point(b"\xed\xa0\x80") == 2          # surrogate at A0
    assert fail_point(b"\xe0\x80\xaf") == 2          # overlong at 80
    assert fail_point(b"\xf4\x90\x80\x80") == 2      # > U+10FFFF at 90
    assert fail_point(b"ab\xc0") == 3                # C0 never starts
    assert fail_point(b"\xce\xba\xe1\xbd") is None   # only cut short
    for case in kuhn_utf8.CASES:
        if case.valid:
            assert fail_point(case.data) is None, case


def ids(cases):
    return [f"{c.id}-kuhn{c.section}" for c in cases]


FAIL_FAST = [c for c in kuhn_utf8.INVALID if fail_point(c.data)]


def send_invalid(conn, data):
    conn.send_raw_lenient(data)
    conn.expect_close(1007)


# 6.1: empty text


@pytest.mark.parametrize("sizes", [[0], [0, 0, 0], [0, 6, 0]],
                         ids=["6.1.1-empty", "6.1.2-empty-fragments",
                              "6.1.3-empty-around-middle"])
def test_empty_text(echo, sizes):
    """6.1.1-6.1.3: empty text, in one frame or as empty fragments
    (around a "middle" one): echoed as sent."""
    data = b"middle"[:sum(sizes)]
    with open_echo(echo) as conn:
        conn.send_raw(b"".join(wsraw.fragment(OP_TEXT, data, sizes)))
        echoes(conn, OP_TEXT, data)


# Valid text: echoed identically, however it is cut


@pytest.mark.parametrize("case", kuhn_utf8.VALID, ids=ids(kuhn_utf8.VALID))
def test_valid_text_echoes(echo, case):
    """6.2, 6.5-6.7, 6.9, 6.11, 6.22, 6.23 (valid): whole, one frame per
    byte, in two fragments at every position and written byte by byte:
    every time the same bytes come back, on one connection."""
    data = case.data
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, data)
        echoes(conn, OP_TEXT, data)
        conn.send_raw(b"".join(wsraw.fragment(OP_TEXT, data, 1)))
        echoes(conn, OP_TEXT, data)
        for i in range(1, len(data)):
            conn.send_raw(b"".join(wsraw.fragment(
                OP_TEXT, data, [i, len(data) - i])))
            echoes(conn, OP_TEXT, data)
        conn.send_frame(OP_TEXT, data, split=1)
        echoes(conn, OP_TEXT, data)


# Invalid text: 1007


@pytest.mark.parametrize("case", kuhn_utf8.INVALID,
                         ids=ids(kuhn_utf8.INVALID))
def test_invalid_text_whole_fails_1007(echo, case):
    """6.3, 6.6, 6.8, 6.10-6.21 (invalid), whole: close 1007 and the end
    of TCP; nothing is echoed."""
    with open_echo(echo) as conn:
        send_invalid(conn, wsraw.encode_frame(OP_TEXT, case.data))


@pytest.mark.parametrize("case", kuhn_utf8.INVALID,
                         ids=ids(kuhn_utf8.INVALID))
def test_invalid_text_one_frame_per_byte_fails_1007(echo, case):
    """6.x (invalid), one frame per byte: close 1007."""
    with open_echo(echo) as conn:
        send_invalid(conn, b"".join(wsraw.fragment(OP_TEXT, case.data, 1)))


@pytest.mark.parametrize("case", kuhn_utf8.INVALID,
                         ids=ids(kuhn_utf8.INVALID))
def test_invalid_text_in_two_fragments_fails_1007(echo, case):
    """6.x (invalid), in two fragments, split at every position in turn,
    a connection each: close 1007 every time."""
    data = case.data
    for i in range(1, len(data)):
        with open_echo(echo) as conn:
            send_invalid(conn, b"".join(wsraw.fragment(
                OP_TEXT, data, [i, len(data) - i])))


@pytest.mark.parametrize("case", FAIL_FAST, ids=ids(FAIL_FAST))
def test_invalid_text_fails_at_the_bad_byte(echo, case):
    """6.4.x (fail fast) for every Kuhn case with a bad byte: the text
    frame announces 100 bytes more than the case, and only the case's
    bytes up to the bad one are sent; close 1007 arrives before anything
    more is.  Then a non-final fragment holding exactly those bytes: the
    same."""
    k = fail_point(case.data)
    head = case.data[:k]
    with open_echo(echo) as conn:
        frame = wsraw.encode_frame(OP_TEXT, head + b"x" * 100)
        conn.send_raw(frame[:len(frame) - 100])
        conn.expect_close(1007)
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, head, fin=False)
        conn.expect_close(1007)


# 6.4: fail fast, Autobahn's own cases


FRAG_A, FRAG_B, FRAG_C = kuhn_utf8.KOSME, b"\xf4\x90\x80\x80", b"edited"


@pytest.mark.parametrize("parts", [
    pytest.param((FRAG_A, FRAG_B), id="6.4.1-bad-second-fragment"),
    pytest.param((FRAG_A + FRAG_B[:1], FRAG_B[1:]),
                 id="6.4.2-bad-across-fragments"),
])
def test_fail_fast_across_fragments(echo, parts):
    """6.4.1, 6.4.2: a text in three fragments whose second makes it
    invalid (U+110000): the close 1007 comes before the third is sent."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, parts[0], fin=False)
        time.sleep(0.05)
        conn.send_frame(OP_CONT, parts[1], fin=False)
        conn.expect_close(1007)
        conn.send_raw_lenient(wsraw.encode_frame(OP_CONT, FRAG_C))


@pytest.mark.parametrize("second", [
    pytest.param(FRAG_B, id="6.4.3-whole-bad-sequence"),
    pytest.param(FRAG_B[:2], id="6.4.4-first-two-bad-bytes"),
])
def test_fail_fast_within_a_frame(echo, second):
    """6.4.3, 6.4.4: one frame, written in three chunks (valid text, the
    bad sequence or its first two bytes, the rest): the close 1007 comes
    before the last chunk is sent."""
    frame = wsraw.encode_frame(OP_TEXT, FRAG_A + FRAG_B + FRAG_C)
    head = len(frame) - len(FRAG_A + FRAG_B + FRAG_C)
    first = frame[:head + len(FRAG_A)]
    with open_echo(echo) as conn:
        conn.send_raw(first)
        time.sleep(0.05)
        conn.send_raw(frame[len(first):len(first) + len(second)])
        conn.expect_close(1007)
        conn.send_raw_lenient(frame[len(first) + len(second):])


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["6.4.x-text-64KiB", "6.4.x-binary-contrast"])
def test_fail_fast_in_a_64k_frame(echo, opcode):
    """6.4.x (64 KiB): a text frame announcing 65536 bytes whose first ten
    bytes hold an overlong "/": only the header and those ten bytes are
    sent, and the close 1007 arrives before the other 65526 are.  The
    same bytes as binary are no error: nothing comes until the rest is
    sent, and then the echo."""
    data = b"abc\xc0\xafdefg" + b"z" * (65536 - 10)
    frame = wsraw.encode_frame(opcode, data)
    first = len(frame) - len(data) + 10
    with open_echo(echo) as conn:
        conn.send_raw(frame[:first])
        if opcode == OP_TEXT:
            conn.expect_close(1007)
            conn.send_raw_lenient(frame[first:])
        else:
            with pytest.raises(TimeoutError):
                conn.recv_frame(timeout=0.3)
            conn.send_raw(frame[first:])
            echoes(conn, OP_BINARY, data)


# Control frames inside a character


def test_character_split_around_a_ping(echo):
    """6.x (with a ping): a 4-byte character cut over three fragments
    with pings between: pongs first, then the character intact."""
    smile = "\U0001F600".encode()
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames(
            (OP_TEXT, b"<" + smile[:1], {"fin": False}), (OP_PING, b"1"),
            (OP_CONT, smile[1:3], {"fin": False}), (OP_PING, b"2"),
            (OP_CONT, smile[3:] + b">")))
        assert conn.recv_frame() == (True, OP_PONG, b"1")
        assert conn.recv_frame() == (True, OP_PONG, b"2")
        echoes(conn, OP_TEXT, b"<" + smile + b">")


def test_bad_continuation_after_a_ping(echo):
    """6.x (with a ping): a character started, a ping (answered), then a
    byte that cannot continue it: close 1007 after the pong."""
    with open_echo(echo) as conn:
        conn.send_raw_lenient(wsraw.frames(
            (OP_TEXT, b"ok \xe2\x82", {"fin": False}), (OP_PING, b"p"),
            (OP_CONT, b"(", {"fin": True})))
        assert conn.recv_frame() == (True, OP_PONG, b"p")
        conn.expect_close(1007)


def test_valid_then_invalid_messages(echo):
    """6.x (state per message): a valid text, then a text ending inside a
    character: the first is echoed, the second fails with 1007 (its
    validation does not carry over from the first or into a next)."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, b"\xce\xba")
        echoes(conn, OP_TEXT, b"\xce\xba")
        conn.send_frame(OP_TEXT, b"\xce")
        conn.expect_close(1007)


def test_binary_carries_no_utf8_state(echo):
    """6.x (binary is not text): a binary message ending inside a
    character is echoed, and a text starting with the byte that would
    finish the character is invalid on its own: 1007.  Invalid bytes in
    binary, then a valid text: both echoed."""
    with open_echo(echo) as conn:
        conn.send_frame(OP_BINARY, b"\xe2\x82")
        echoes(conn, OP_BINARY, b"\xe2\x82")
        conn.send_frame(OP_TEXT, b"\xac after")
        conn.expect_close(1007)
    with open_echo(echo) as conn:
        conn.send_frame(OP_BINARY, b"\xff\xfe")
        echoes(conn, OP_BINARY, b"\xff\xfe")
        still_echoes(conn, "\u20ac fine".encode())
