"""Autobahn 1.x: framing.  Text (1.1.x) and binary (1.2.x) messages of
every length that changes the frame header (7-bit, 16-bit and 64-bit
lengths and their edges), each echoed byte for byte; the same frames
written in chunks of 1, 2, 3 and 997 bytes, so that headers, masking keys
and payloads straddle TCP segments.

Case ids follow Autobahn where it has the case (1.1.1-1.1.8, 1.2.1-1.2.8);
1.x.9 (1 MiB) and the chunked variants of the other lengths go further.
"""
import os

import pytest

import wsraw
from wsraw import OP_BINARY, OP_TEXT

from .conftest import echoes, open_echo, still_echoes

LENGTHS = {1: 0, 2: 125, 3: 126, 4: 127, 5: 128, 6: 65535, 7: 65536,
           9: 1 << 20}
SMALL = 128          # written byte by byte up to this length


def text_payload(n):
    """n bytes of UTF-8 mixing 1- to 4-byte characters, so that chunks
    and fragments cut characters."""
    unit = "a\u20ac\u00e9\U0001F600".encode()           # 1 + 3 + 2 + 4
    data = unit * (n // len(unit)) + b"a" * (n % len(unit))
    assert len(data) == n
    data.decode("utf-8")
    return data


def payload(opcode, n):
    return text_payload(n) if opcode == OP_TEXT else os.urandom(n)


def cases():
    for group, opcode in ((1, OP_TEXT), (2, OP_BINARY)):
        for case, n in LENGTHS.items():
            yield pytest.param(opcode, n, id=f"1.{group}.{case}-len{n}")


def chunked_cases():
    for group, opcode in ((1, OP_TEXT), (2, OP_BINARY)):
        for case, n in LENGTHS.items():
            chunks = [997] if n > SMALL else [1, 2, 3, 997]
            for chunk in chunks:
                # Autobahn's 1.x.8 is 65536 bytes in chunks of 997
                cid = 8 if (n, chunk) == (65536, 997) else case
                yield pytest.param(opcode, n, chunk,
                                   id=f"1.{group}.{cid}-len{n}-chunk{chunk}")


@pytest.mark.parametrize("opcode,n", cases())
def test_message_of_length(echo, opcode, n):
    """1.1.1-1.1.7, 1.2.1-1.2.7 (and 1.x.9: 1 MiB): one frame of n bytes
    comes back identical, and the connection goes on."""
    data = payload(opcode, n)
    with open_echo(echo) as conn:
        conn.send_frame(opcode, data)
        echoes(conn, opcode, data, timeout=20)
        still_echoes(conn)


@pytest.mark.parametrize("opcode,n,chunk", chunked_cases())
def test_message_written_in_chunks(echo, opcode, n, chunk):
    """1.1.8, 1.2.8 (65536 bytes in chunks of 997) and the same for every
    other length: the frame's bytes in chunks of `chunk`, each its own
    TCP segment (Nagle is off)."""
    data = payload(opcode, n)
    with open_echo(echo) as conn:
        conn.send_frame(opcode, data, split=chunk)
        echoes(conn, opcode, data, timeout=20)
        still_echoes(conn)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["1.1.x-text", "1.2.x-binary"])
def test_every_length_in_one_segment(echo, opcode):
    """1.x (all lengths at once): one message of each length, all in a
    single send; the echoes come back in order."""
    msgs = [payload(opcode, n) for n in LENGTHS.values() if n <= 65536]
    with open_echo(echo) as conn:
        conn.send_raw(wsraw.frames(*[(opcode, m) for m in msgs]))
        for m in msgs:
            echoes(conn, opcode, m)


@pytest.mark.parametrize("key", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                                 b"\x80\x00\x00\x01"],
                         ids=["1.x-mask-zero", "1.x-mask-ones",
                              "1.x-mask-edges"])
@pytest.mark.parametrize("n", [1, 7, 126, 65537])
def test_masking_keys(echo, key, n):
    """1.x (masking): any masking key is a key, the all-zero one too
    (RFC 6455 5.3); payloads not a multiple of 4 bytes unmask right."""
    data = text_payload(n)
    with open_echo(echo) as conn:
        conn.send_frame(OP_TEXT, data, mask_key=key)
        echoes(conn, OP_TEXT, data)
        conn.send_frame(OP_BINARY, data, mask_key=key, split=5)
        echoes(conn, OP_BINARY, data)
