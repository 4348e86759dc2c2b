"""Autobahn 12.x and 13.x: permessage-deflate (RFC 7692).  Many
compressed messages of one size echoed on one connection, each exact and
in order: 12.x with the default offer over five kinds of payload, 13.x
with each offer Autobahn makes.

12.1-12.5 are Autobahn's payloads (a JSON file, a bitmap, human text,
an HTML page, a PDF), made here: JSON, a 1-bit bitmap, prose in several
scripts, HTML, and opaque binary that does not compress.  Sizes 16 to
131072 bytes (12.x.1-12.x.10), whole, then the larger ones fragmented
in 256, 1024 and 4096-byte frames of compressed data (12.x.11-18).
Autobahn sends 1000 messages per case; here 100 of the small ones, and
for larger sizes as many as make 256 KiB, at least 4: the suite stays
under 30 s.

13.1-13.7 are Autobahn's offers: (server_no_context_takeover,
server_max_window_bits) = (no, none), (yes, none), (no, 8), (no, 15),
(yes, 8), (yes, 15), and 13.7 three offers at once, the first to be
taken; each offer also says client_no_context_takeover and
client_max_window_bits, as Autobahn's client does.  The same cases with
the parameters of the other side (client_no_context_takeover,
client_max_window_bits=9 and 15) follow as 13.x-client.

The server's messages are inflated with exactly the window it agreed
to, so a larger one fails; messages under compression_min_size (128)
must come back plain, the others with RSV1 on their first frame only.
"""
import json
import random

import pytest

import wsdeflate
from wsdeflate import offer
from wsraw import OP_BINARY, OP_TEXT

from .conftest import ECHO_PATH

KiB = 1 << 10
SIZES = [16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072]
MIN_SIZE = 128          # gatewayd's default compression_min_size
WINDOW = 16             # messages sent before their echoes are read
WINDOW_BYTES = 512 * KiB


def count_for(size):
    return max(10, min(1000, 2048 * KiB // size))


def _fit(data, n):
    """Exactly n bytes of the UTF-8 (or ASCII) data: repeated, then cut;
    a character the cut would split is replaced by ASCII dots."""
    while len(data) < n:
        data += data
    out = data[:n]
    i = n
    while i > 0 and out[i - 1] & 0xC0 == 0x80:
        i -= 1
    if i > 0 and out[i - 1] >= 0xC0:
        lead = out[i - 1]
        need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if n - (i - 1) < need:
            out = out[:i - 1] + b"." * (n - i + 1)
    return out


def json_doc(n, rnd):
    items = [{"id": i, "name": f"user{rnd.randrange(10 ** 6)}",
              "tags": ["alpha", "beta", "gamma"][:rnd.randint(0, 3)],
              "score": round(rnd.random() * 100, 3),
              "active": rnd.random() < 0.5} for i in range(n // 60 + 2)]
    return _fit(json.dumps(items).encode(), n)


def bitmap(n, rnd):
    out = bytearray()
    while len(out) < n:
        out += bytes([rnd.choice((0x00, 0xFF, 0xFF, 0x0F, 0xF0))]) * \
            rnd.randint(1, 64)
        if rnd.random() < 0.1:
            out += rnd.randbytes(rnd.randint(1, 8))
    return bytes(out[:n])


WORDS = ("the quick brown fox jumps over the lazy dog and runs away "
         "caf\u00e9 na\u00efve \u00fcber stra\u00dfe \u0436\u0438\u0437\u043d"
         "\u044c \u4e16\u754c \u3053\u3093\u306b\u3061\u306f \U0001F600 "
         "\u20ac").split()


def prose(n, rnd):
    text = " ".join(rnd.choice(WORDS) for _ in range(n // 3 + 4))
    return _fit(text.encode(), n)


def html(n, rnd):
    parts = ["<!DOCTYPE html><html><head><title>page</title></head><body>"]
    while sum(map(len, parts)) < n:
        tag = rnd.choice(("p", "div", "li", "span", "a"))
        parts.append(f'<{tag} class="c{rnd.randrange(20)}">'
                     f'{" ".join(rnd.choice(WORDS[:12]) for _ in range(8))}'
                     f"</{tag}>\n")
    return _fit("".join(parts).encode(), n)


def opaque(n, rnd):
    return rnd.randbytes(n)


KINDS = {
    "12.1-json": (OP_TEXT, json_doc),
    "12.2-bitmap": (OP_BINARY, bitmap),
    "12.3-text": (OP_TEXT, prose),
    "12.4-html": (OP_TEXT, html),
    "12.5-binary": (OP_BINARY, opaque),
}


def messages(kind, size, count):
    """count different payloads of size bytes: each begins with its
    number in 8 ASCII digits."""
    opcode, make = KINDS[kind]
    tail = make(size - 8, random.Random(f"{kind} {size}"))
    if opcode == OP_TEXT:
        tail.decode("utf-8")
    return opcode, [b"%08d" % i + tail for i in range(count)]


def echo_all(conn, opcode, msgs, sizes=None):
    """Send msgs (compressed, fragmented as sizes says), a window at a
    time, and expect each back exact and in order: plain under 128
    bytes, compressed otherwise."""
    i = 0
    while i < len(msgs):
        batch, total = [], 0
        while i < len(msgs) and len(batch) < WINDOW and \
                total < WINDOW_BYTES:
            batch.append(msgs[i])
            total += len(msgs[i])
            i += 1
        conn.conn.send_raw(b"".join(
            b"".join(conn.message_frames(opcode, m, sizes=sizes))
            for m in batch))
        for m in batch:
            got_op, got, compressed = conn.recv_message(timeout=20)
            assert got_op == opcode
            assert len(got) == len(m), (len(got), len(m))
            assert got == m
            assert compressed is (len(m) >= MIN_SIZE), (len(m), compressed)


# 12.x: the default offer (client_max_window_bits, as browsers send it)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_12_compressed_echo(echo, kind, size):
    """12.x.1-12.x.10: many messages of one kind and size, each echoed
    exact and in order."""
    opcode, msgs = messages(kind, size, count_for(size))
    with wsdeflate.open_deflate(echo.port, ECHO_PATH) as c:
        assert c.agreement.params == wsdeflate.gatewayd_answer(cmwb=True)
        echo_all(c, opcode, msgs)


@pytest.mark.parametrize("size,frag", [
    (8192, 256), (16384, 256), (32768, 1024), (65536, 1024),
    (131072, 4096), (131072, 256)])
@pytest.mark.parametrize("kind", ["12.1-json", "12.5-binary"])
def test_12_compressed_echo_fragmented(echo, kind, size, frag):
    """12.x.11-12.x.18: the compressed payload auto-fragmented in frames
    of frag bytes (RSV1 on the first only); each message comes back
    whole."""
    opcode, msgs = messages(kind, size, max(4, count_for(size) // 4))
    with wsdeflate.open_deflate(echo.port, ECHO_PATH) as c:
        echo_all(c, opcode, msgs, sizes=frag)


# 13.x: Autobahn's offers


def autobahn_offer(snct, smwb):
    """An offer as Autobahn's client makes it: it accepts the server's
    no_context_takeover and window requests (client_no_context_takeover,
    client_max_window_bits), and asks for its own."""
    return offer(server_no_context_takeover=snct,
                 client_no_context_takeover=True,
                 server_max_window_bits=smwb or None,
                 client_max_window_bits=True)


CASES = {
    "13.1": [(False, 0)],
    "13.2": [(True, 0)],
    "13.3": [(False, 8)],
    "13.4": [(False, 15)],
    "13.5": [(True, 8)],
    "13.6": [(True, 15)],
    "13.7": [(True, 8), (True, 0), (False, 0)],
}

# The same cases with the client-side parameters: (client_no_context_
# takeover, client_max_window_bits).
CLIENT_CASES = {
    "13.1-client": [(False, 0)],
    "13.2-client": [(True, 0)],
    "13.3-client": [(False, 9)],
    "13.4-client": [(False, 15)],
    "13.5-client": [(True, 9)],
    "13.6-client": [(True, 15)],
    "13.7-client": [(True, 9), (True, 0), (False, 0)],
}


def case_offers(case):
    if case in CASES:
        return [autobahn_offer(*o) for o in CASES[case]], \
            wsdeflate.gatewayd_answer(
                snct=CASES[case][0][0], cnct=True,
                smwb=CASES[case][0][1] or None, cmwb=True)
    first = CLIENT_CASES[case][0]
    return [offer(client_no_context_takeover=cnct,
                  client_max_window_bits=cmwb or None)
            for cnct, cmwb in CLIENT_CASES[case]], \
        wsdeflate.gatewayd_answer(cnct=first[0], cmwb=first[1] or None)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", list(CASES) + list(CLIENT_CASES))
def test_13_offers(echo, case, size):
    """13.x.1-13.x.10: the first offer is taken (13.7: of three), with
    the documented answer; many JSON messages of one size (and a few
    bitmaps) echo exact and in order, compressed with the agreed
    windows."""
    offers, answer = case_offers(case)
    with wsdeflate.open_deflate(echo.port, ECHO_PATH, offers) as c:
        assert c.agreement.params == answer, (offers, c.agreement.params)
        opcode, msgs = messages("12.1-json", size,
                                max(4, count_for(size) // 2))
        echo_all(c, opcode, msgs)
        opcode, msgs = messages("12.2-bitmap", size, 4)
        echo_all(c, opcode, msgs)
