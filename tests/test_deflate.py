"""permessage-deflate (RFC 7692, issue 12).

Two clients: python websockets, which negotiates and compresses for
itself (every parameter combination it can offer, messages of every
size), and wsdeflate over raw sockets, which shows the frames: RSV1 on
the first frame of a compressed message only, the window the server
compresses with (inflated here with exactly the agreed window, so a
larger one fails), and what a frame that breaks the extension's rules
gets: 1002 for RSV1 where it may not be, 1007 for undecodable data or
text that is not UTF-8 once inflated, 1009 for a message that inflates
past max_message_size (a zip bomb, which must cost no more than that).

Most cases share one daemon (`echo`) serving echo rooms
(examples/echo/room.py) with different compression options; those that
measure memory start their own.  Memory is VmRSS; under the sanitizer
build the bounds are not asserted (ASan's quarantine and shadow memory
swamp them), only reported.
"""
import asyncio
import base64
import random
import time
import zlib

import pytest
import websockets
from websockets.extensions.permessage_deflate import \
    ClientPerMessageDeflateFactory

import wsraw
import wsdeflate
from conftest import (GATEWAYD, backend_cmd, example_cmd, free_port,
                      launch_gateway, rss, sanitizer_report, stop_gateway)
from wsdeflate import offer, open_deflate
from wsraw import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT

TIMEOUT = 10
SAN = "build-san" in GATEWAYD
KiB = 1 << 10
MiB = 1 << 20
SIZES = [0, 1, 127, 128, 1000, 65535, MiB]

ECHO = example_cmd("echo/room.py")
ROOMS = f"""\
[gateway]
listen = 127.0.0.1:{{port}}
max_message_size = 2M
max_client_buffer = 64M

[resource /echo]
backend = {ECHO}

[resource /ctx]
backend = {ECHO}
compression_no_context_takeover = no

[resource /off]
backend = {ECHO}
compression = no

[resource /min]
backend = {ECHO}
compression_min_size = 512

[resource /zero]
backend = {ECHO}
compression_min_size = 0

[resource /w10]
backend = {ECHO}
compression_window_bits = 10
compression_level = 9

[resource /small]
backend = {ECHO}
max_message_size = 1M
"""


@pytest.fixture(scope="module")
def echo_gateway(tmp_path_factory):
    port = free_port()
    g = launch_gateway(ROOMS.replace("{port}", str(port)), port,
                       tmp_path_factory.mktemp("deflate") / "gatewayd")
    yield g
    stop_gateway(g)


@pytest.fixture
def echo(echo_gateway):
    g = echo_gateway
    yield g
    assert g.proc.poll() is None, f"gatewayd died:\n{g.log()}"
    assert sanitizer_report(g.log()) is None, g.log()


def text_of(n, seed=0):
    """n bytes of UTF-8 text, partly repetitive, partly not."""
    rnd = random.Random(seed)
    words = ["gateway", "d\u00e9j\u00e0", "\u20ac", "\U0001F600", "room",
             "caf\u00e9", "x", "\u4e2d\u6587"]
    out, size = [], 0
    while size < n:
        w = rnd.choice(words) + (" " if rnd.random() < 0.8 else "\n")
        b = w.encode()
        if size + len(b) > n:
            b = b"a" * (n - size)
        out.append(b)
        size += len(b)
    data = b"".join(out)
    assert len(data) == n
    return data.decode()


def binary_of(n, seed=0):
    """n bytes: runs of random bytes and runs that repeat."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < n:
        k = rnd.randint(1, 4096)
        if rnd.random() < 0.5:
            out += rnd.randbytes(k)
        else:
            out += bytes([rnd.randrange(256)]) * k
    return bytes(out[:n])


def parsed_answer(value):
    exts = wsdeflate.parse_extensions(value)
    assert len(exts) == 1 and exts[0][0] == "permessage-deflate", value
    return exts[0][1]


expected_answer = wsdeflate.gatewayd_answer


def ws_connect(g, path, factory=None, compression="deflate", **kw):
    if factory is not None:
        kw["extensions"] = [factory]
        compression = None
    return websockets.connect(g.url(path), open_timeout=TIMEOUT,
                              compression=compression, max_size=None, **kw)


async def round_trip(ws, sizes, seed=0):
    """Each size as text and as binary: sent, echoed byte for byte; sent
    in batches of up to 8, so that messages follow one another."""
    msgs = []
    for n in sizes:
        msgs.append(text_of(n, seed + n))
        msgs.append(binary_of(n, seed + n))
    for i in range(0, len(msgs), 8):
        batch = msgs[i:i + 8]
        for m in batch:
            await ws.send(m)
        for m in batch:
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert type(got) is type(m) and len(got) == len(m)
            assert got == m


# python websockets: with and without compression


async def test_without_compression(echo):
    """A client that offers nothing gets no extension and its messages
    back."""
    async with ws_connect(echo, "/echo", compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response_headers
        await round_trip(ws, SIZES)


async def test_default_offer(echo):
    """websockets' default offer (client_max_window_bits, no value): the
    answer adds both no_context_takeover parameters and nothing else."""
    async with ws_connect(echo, "/echo") as ws:
        answer = ws.response_headers["Sec-WebSocket-Extensions"]
        assert parsed_answer(answer) == expected_answer(cmwb=True), answer
        await round_trip(ws, SIZES)


CMWB = [None, True] + list(range(9, 16))
SMWB = [None] + list(range(9, 16))


@pytest.mark.parametrize("cnct", [False, True], ids=["cct", "cnct"])
@pytest.mark.parametrize("snct", [False, True], ids=["sct", "snct"])
@pytest.mark.parametrize("smwb", SMWB, ids=[f"s{b}" for b in SMWB])
@pytest.mark.parametrize("cmwb", CMWB, ids=[f"c{b}" for b in CMWB])
async def test_offer_matrix(echo, cmwb, smwb, snct, cnct):
    """Every offer websockets can make: the answer is the documented one,
    and messages of 0 to 65535 bytes (1 MiB too where both windows are
    equal or unset) round-trip as text and binary."""
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=snct, client_no_context_takeover=cnct,
        server_max_window_bits=smwb, client_max_window_bits=cmwb)
    async with ws_connect(echo, "/echo", factory) as ws:
        answer = ws.response_headers["Sec-WebSocket-Extensions"]
        assert parsed_answer(answer) == expected_answer(
            snct, cnct, smwb, cmwb), answer
        sizes = SIZES if cmwb == smwb or (cmwb in (None, True) and
                                          smwb is None) else SIZES[:-1]
        await round_trip(ws, sizes, seed=hash((cmwb, smwb)) & 0xFFFF)


@pytest.mark.parametrize("path,context_takeover,window_bits", [
    ("/ctx", True, 15), ("/w10", False, 10)])
@pytest.mark.parametrize("snct,cnct,smwb,cmwb", [
    (False, False, None, None), (False, False, None, True),
    (True, False, None, True), (False, True, 12, 11), (True, True, 9, 9),
    (False, False, 15, 15)])
async def test_room_policies(echo, path, context_takeover, window_bits,
                             snct, cnct, smwb, cmwb):
    """compression_no_context_takeover = no: the answer has only the
    no_context_takeover parameters the client offered; a room window of
    10 bits (compression_window_bits) is announced even when not asked
    for.  Messages round-trip either way."""
    factory = ClientPerMessageDeflateFactory(
        server_no_context_takeover=snct, client_no_context_takeover=cnct,
        server_max_window_bits=smwb, client_max_window_bits=cmwb)
    async with ws_connect(echo, path, factory) as ws:
        answer = ws.response_headers["Sec-WebSocket-Extensions"]
        assert parsed_answer(answer) == expected_answer(
            snct, cnct, smwb, cmwb, context_takeover, window_bits), answer
        await round_trip(ws, SIZES[:-1])
        # Similar messages in a row: what context takeover is for.
        for i in range(20):
            m = f"message {i}: " + "the same words again and again " * 20
            await ws.send(m)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == m


# Negotiation details, over raw sockets


@pytest.mark.parametrize("offers,answer", [
    pytest.param(["permessage-deflate; foo=1", "permessage-deflate"],
                 {"server_no_context_takeover": True,
                  "client_no_context_takeover": True}, id="unknown-param"),
    pytest.param(["permessage-deflate; server_max_window_bits",
                  "permessage-deflate; server_max_window_bits=10"],
                 {"server_no_context_takeover": True,
                  "client_no_context_takeover": True,
                  "server_max_window_bits": "10"}, id="smwb-without-value"),
    pytest.param(["permessage-deflate; server_max_window_bits=7",
                  "permessage-deflate; server_max_window_bits=16",
                  "permessage-deflate; server_max_window_bits=010",
                  "permessage-deflate; client_max_window_bits=16",
                  "permessage-deflate; client_max_window_bits=7",
                  "permessage-deflate; client_max_window_bits=11"],
                 {"server_no_context_takeover": True,
                  "client_no_context_takeover": True,
                  "client_max_window_bits": "11"}, id="bits-out-of-range"),
    pytest.param(["permessage-deflate; server_no_context_takeover=1",
                  "permessage-deflate; client_no_context_takeover; "
                  "client_no_context_takeover",
                  "permessage-deflate; server_max_window_bits=9; "
                  "server_max_window_bits=9",
                  "permessage-deflate; server_max_window_bits=12"],
                 {"server_no_context_takeover": True,
                  "client_no_context_takeover": True,
                  "server_max_window_bits": "12"}, id="bad-flags-repeats"),
    pytest.param(["x-webkit-deflate-frame", "permessage-deflate; "
                  "client_max_window_bits=\"10\""],
                 {"server_no_context_takeover": True,
                  "client_no_context_takeover": True,
                  "client_max_window_bits": "10"}, id="other-ext-quoted"),
    pytest.param(["permessage-deflate; server_max_window_bits=8"],
                 {"server_no_context_takeover": True,
                  "client_no_context_takeover": True,
                  "server_max_window_bits": "8"}, id="smwb-8"),
    pytest.param(["permessage-deflate; mux", "x-foo"], None, id="none-fits"),
])
def test_offers_fall_back_to_the_next(echo, offers, answer):
    """Offers the server must decline are skipped for the next one; none
    acceptable: the connection goes on without the extension."""
    with open_deflate(echo.port, "/echo", offers) as c:
        if answer is None:
            assert c.agreement is None, c.conn.headers
        else:
            assert c.agreement is not None, c.conn.headers
            assert c.agreement.params == answer
        data = text_of(5000).encode()
        c.send_message(OP_TEXT, data, compressed=answer is not None)
        opcode, got, compressed = c.recv_message()
        assert (opcode, got) == (OP_TEXT, data)
        assert compressed is (answer is not None)


def test_offers_in_several_header_fields(echo):
    """Offers may come in several Sec-WebSocket-Extensions fields: they
    are one list, in order (RFC 6455 9.1); the first acceptable one is
    taken whichever field it is in."""
    headers = [("Sec-WebSocket-Extensions", "x-foo, permessage-deflate; "
                "bogus"),
               ("Sec-WebSocket-Extensions", "permessage-deflate; "
                "server_max_window_bits=11"),
               ("Sec-WebSocket-Extensions", "permessage-deflate")]
    with open_deflate(echo.port, "/echo", None, extra_headers=headers) as c:
        assert c.agreement.server_max_window_bits == 11
        c.send_message(OP_TEXT, text_of(9000).encode())
        assert c.recv_message() == (OP_TEXT, text_of(9000).encode(), True)


def test_window_of_8_bits(echo):
    """server_max_window_bits=8: zlib cannot deflate with 256 bytes, so
    gatewayd uses 512 and keeps its distances under 256: every message
    inflates with a 256-byte window (a farther distance would fail
    zlib's check here)."""
    with open_deflate(echo.port, "/echo",
                      [offer(server_max_window_bits=8)]) as c:
        assert c.agreement.server_max_window_bits == 8
        c.inflate_step = 1          # every distance checked exactly
        rnd = random.Random(8)
        for n in (300, 5000, 100000):
            # Repeats at every distance from 1 to 1000 bytes.
            chunks = [rnd.randbytes(rnd.randint(1, 600)) for _ in range(40)]
            data = b"".join(c2 + chunks[rnd.randrange(len(chunks))]
                            for c2 in chunks) * (n // 10000 + 1)
            data = data[:n]
            c.send_message(OP_BINARY, data)
            assert c.recv_message()[1:] == (data, True)


def test_windows_of_8_bits_with_context_takeover(echo):
    """/ctx, both windows limited to 8 bits: gatewayd's own streams keep
    their history across messages, its distances stay within 256 bytes
    (inflated here with a 256-byte window that remembers), and ours,
    compressed within 256 bytes against our history, inflate right."""
    with open_deflate(echo.port, "/ctx", [offer(
            server_max_window_bits=8, client_max_window_bits=8)]) as c:
        assert c.agreement.params == {"server_max_window_bits": "8",
                                      "client_max_window_bits": "8"}
        c.inflate_step = 1
        rnd = random.Random(88)
        words = [rnd.randbytes(rnd.randint(3, 40)) for _ in range(30)]
        for i in range(30):
            data = b"".join(rnd.choice(words) for _ in range(
                rnd.randint(5, 400)))
            c.send_message(OP_BINARY, data)
            assert c.recv_message() == (OP_BINARY, data, True)


@pytest.mark.parametrize("header", [
    "permessage-deflate; client_max_window_bits=\"1 0\"",
    "permessage-deflate; =1",
    "permessage-deflate; server_max_window_bits=\"10",
    "permessage-deflate,, ;",
])
def test_malformed_extension_header_is_400(echo, header):
    """A Sec-WebSocket-Extensions value that breaks the grammar is a bad
    handshake (RFC 6455 4.2.1): 400."""
    req = wsraw.handshake_request("/echo", extra_headers=[
        ("Sec-WebSocket-Extensions", header)])
    r = wsraw.http_request(echo.port, req)
    assert r.status == 400, r


def test_no_offer_no_extension(echo):
    with open_deflate(echo.port, "/echo", None) as c:
        assert c.agreement is None
        c.conn.send_frame(OP_TEXT, b"x" * 1000)
        assert c.recv_message()[1:] == (b"x" * 1000, False)


def test_incompressible_message_at_the_limit(echo):
    """/small (max_message_size = 1M): 1 MiB of random bytes, compressed
    by a client with zlib's smallest memLevel (stored blocks: the most
    a deflate stream grows), is longer than 1 MiB on the wire, yet
    within the limit: it inflates to 1 MiB."""
    data = random.Random(12).randbytes(MiB)
    with open_deflate(echo.port, "/small", mem_level=1) as c:
        payload = c.compress(data)
        assert len(payload) > MiB
        c.conn.send_raw(wsraw.encode_frame(OP_BINARY, payload, rsv=4))
        assert c.recv_message() == (OP_BINARY, data, True)


async def test_authorizing_room_answers_the_extension_after_accept(
        gateway):
    """authorize = yes: the 101, sent once the backend accepts, carries
    the extension agreed at the request; compressed messages flow."""
    g = gateway("[resource /auth]\nbackend = " +
                backend_cmd("scripted.py") + "\nauthorize = yes\n")
    async with ws_connect(g, "/auth?verdict=accept") as ws:
        assert parsed_answer(ws.response_headers[
            "Sec-WebSocket-Extensions"]) == expected_answer(cmwb=True)
        await round_trip(ws, [0, 200, 70000])


async def test_per_connection_programs(gateway):
    """mode = client (a program per client, lines of text, and bytes as
    they are with binary = yes): compressed messages reach cat inflated,
    and what it writes comes back compressed."""
    g = gateway("[resource /lines]\nbackend = exec:cat\nmode = client\n"
                "[resource /bytes]\nbackend = exec:cat\nmode = client\n"
                "binary = yes\n")
    async with ws_connect(g, "/lines") as ws:
        assert "permessage-deflate" in ws.response_headers[
            "Sec-WebSocket-Extensions"]
        for n in (1, 127, 128, 5000, 60000):
            line = text_of(n, n).replace("\n", " ")
            await ws.send(line)
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == line
    async with ws_connect(g, "/bytes") as ws:
        data = binary_of(300000, 4)
        await ws.send(data)
        got = b""
        while len(got) < len(data):
            got += await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert got == data


# Context takeover


def test_context_takeover_keeps_history_both_ways(echo):
    """In the /ctx room (compression_no_context_takeover = no) with a
    plain offer: the server compresses a repeated message against its
    history (the second echo is a fraction of the first), and inflates
    ours, compressed against our history, right."""
    with open_deflate(echo.port, "/ctx", [offer()]) as c:
        assert c.agreement.params == {}
        # Base64 of random bytes: no repeats inside, all of it a repeat
        # of the message before.
        msg = base64.b64encode(random.Random(3).randbytes(2250))
        sizes = []
        for _ in range(5):
            frames = c.message_frames(OP_TEXT, msg)
            c.conn.send_raw(b"".join(frames))
            rsv1, f = c.recv_frame()
            assert rsv1 and f.fin
            sizes.append(len(f.payload))
            assert c.inflate(f.payload) == msg
        assert sizes[0] > 2000 and max(sizes[1:]) < 100, sizes


def test_without_context_takeover_every_message_stands_alone(echo):
    """In the default room every compressed message inflates on its own,
    from a fresh stream."""
    with open_deflate(echo.port, "/echo") as c:
        msg = base64.b64encode(random.Random(3).randbytes(2250))
        payloads = []
        for _ in range(3):
            c.send_message(OP_TEXT, msg)
            rsv1, f = c.recv_frame()
            payloads.append(f.payload)
            assert zlib.decompressobj(-15).decompress(
                f.payload + wsdeflate.TAIL) == msg
        assert payloads[0] == payloads[1] == payloads[2]


# compression = no and compression_min_size


async def test_compression_off(echo):
    """compression = no: no extension for websockets' offer or ours, and
    a frame with RSV1 is then a protocol error (1002)."""
    async with ws_connect(echo, "/off") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response_headers
        await round_trip(ws, SIZES[:-1])
    with open_deflate(echo.port, "/off", [offer(client_max_window_bits=True),
                                          offer()]) as c:
        assert c.agreement is None
        assert "sec-websocket-extensions" not in c.conn.headers
        c.conn.send_frame(OP_TEXT, b"plain")
        assert c.recv_message()[1:] == (b"plain", False)
        payload = wsdeflate.compress_payload(
            zlib.compressobj(6, zlib.DEFLATED, -15), b"compressed")
        c.conn.send_raw_lenient(wsraw.encode_frame(OP_TEXT, payload, rsv=4))
        c.expect_close(1002)


@pytest.mark.parametrize("path,plain,compressed", [
    ("/echo", [0, 1, 100, 127], [128, 129, 1000, 70000]),
    ("/min", [100, 127, 128, 511], [512, 1000, 70000]),
    ("/zero", [], [0, 1, 100, 1000]),
])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_compression_min_size(echo, path, plain, compressed, opcode):
    """Shorter messages than compression_min_size (128 by default) come
    back with RSV1 clear, as sent; the others compressed, and inflate to
    what was sent.  Whether ours came compressed makes no difference."""
    with open_deflate(echo.port, path) as c:
        for n, want in [(n, False) for n in plain] + \
                [(n, True) for n in compressed]:
            data = text_of(n, n).encode() if opcode == OP_TEXT else \
                binary_of(n, n)
            for ours in (True, False):
                c.send_message(opcode, data, compressed=ours)
                got_op, got, was = c.recv_message()
                assert (got_op, len(got), was) == (opcode, n, want), n
                assert got == data


# Bounds: the zip bomb


@pytest.fixture(scope="module")
def bomb():
    """A 1 GiB message of zeros, compressed: about 1 MB."""
    return wsdeflate.zip_bomb(1 << 30)


def reset_peak_rss(pid):
    """Make VmHWM, the peak RSS, start again from the RSS of now."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def rss_bound(b):
    return 2 * b + 288 * MiB if SAN else b


@pytest.mark.parametrize("how", ["whole", "fragments", "context-takeover"])
async def test_zip_bomb_costs_at_most_max_message_size(gateway, bomb, how):
    """A compressed message that would inflate to 1 GiB, to a room with
    max_message_size = 1M: closed with 1009 within 2 s, the daemon's
    peak RSS (VmHWM, reset just before) is less than 8 MB above its RSS
    before, and a client of the same room chatting meanwhile goes on.  Whole, in 64 KiB fragments, or on a connection
    with context takeover."""
    g = gateway("[gateway]\nmax_message_size = 1M\n"
                f"[resource /echo]\nbackend = {ECHO}\n"
                + ("compression_no_context_takeover = no\n"
                   if how == "context-takeover" else ""))
    assert len(bomb) < MiB + MiB // 16      # within the compressed slack
    async with ws_connect(g, "/echo") as other:
        await other.send("before" * 100)
        assert await other.recv() == "before" * 100
        loop = asyncio.get_running_loop()

        def attack():
            with open_deflate(g.port, "/echo",
                              [offer(client_no_context_takeover=True)]
                              if how != "context-takeover" else [offer()]) \
                    as c:
                # A first message, so that a stream of its own exists.
                c.send_message(OP_TEXT, b"warm " * 100)
                assert c.recv_message()[1] == b"warm " * 100
                base = rss(g.proc.pid)
                reset_peak_rss(g.proc.pid)
                if how == "fragments":
                    frames = wsraw.fragment(OP_BINARY, bomb, 64 * KiB)
                    first = bytearray(frames[0])
                    first[0] |= 0x40
                    data = bytes(first) + b"".join(frames[1:])
                else:
                    data = wsraw.encode_frame(OP_BINARY, bomb, rsv=4)
                t0 = time.monotonic()
                c.conn.send_raw_lenient(data)
                code = c.recv_close(timeout=5)
                took = time.monotonic() - t0
                c.conn.expect_eof()
                peak = peak_rss(g.proc.pid)
            return code, took, peak - base

        code, took, growth = await loop.run_in_executor(None, attack)
        print(f"zip bomb ({how}): closed {code} after {took:.3f} s, "
              f"RSS +{growth / MiB:.1f} MiB")
        assert code is not None and code[0] == 1009, code
        assert took < 2, took
        assert growth < rss_bound(8 * MiB), growth
        await other.send("after" * 100)
        assert await other.recv() == "after" * 100


def test_inflate_bound_is_inclusive(echo):
    """/small (max_message_size = 1M): a compressed message that inflates
    to exactly 1 MiB passes, one byte more is 1009."""
    with open_deflate(echo.port, "/small") as c:
        c.send_message(OP_BINARY, bytes(MiB))
        assert c.recv_message()[1:] == (bytes(MiB), True)
        c.send_message(OP_BINARY, bytes(MiB + 1))
        assert c.recv_close()[0] == 1009
        c.conn.expect_eof()


# Fragments and RSV1 where it may not be


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY],
                         ids=["text", "binary"])
def test_compressed_fragments_with_ping_between(echo, opcode):
    """A compressed message in fragments (RSV1 on the first only), with a
    ping between them: the pong comes at once, then the whole message;
    the fragments may split the compressed bytes anywhere, multi-byte
    characters included."""
    data = text_of(20000, 5).encode() if opcode == OP_TEXT else \
        binary_of(20000, 5)
    with open_deflate(echo.port, "/echo") as c:
        for sizes in (1000, 1, [0, 5, 0]):
            payload_len = len(c.compress(data))
            if sizes == [0, 5, 0]:
                sizes = [0, 5, payload_len - 5, 0]
            frames = c.message_frames(opcode, data, sizes=sizes)
            mid = len(frames) // 2
            c.conn.send_raw(b"".join(frames[:mid]) +
                            wsraw.encode_frame(OP_PING, b"between") +
                            b"".join(frames[mid:]))
            rsv1, f = c.recv_frame()
            assert (rsv1, f) == (False, (True, OP_PONG, b"between"))
            assert c.recv_message() == (opcode, data, True)


def test_uncompressed_message_on_a_deflate_connection(echo):
    """RSV1 clear on a connection that agreed to deflate: a plain message,
    echoed as any other."""
    with open_deflate(echo.port, "/echo") as c:
        for frames in ([wsraw.encode_frame(OP_TEXT, "plain \u20ac" * 50)],
                       wsraw.fragment(OP_BINARY, b"\xff" * 300, 100)):
            c.conn.send_raw(b"".join(frames))
        assert c.recv_message()[:2] == (OP_TEXT,
                                        ("plain \u20ac" * 50).encode())
        assert c.recv_message()[:2] == (OP_BINARY, b"\xff" * 300)


@pytest.mark.parametrize("case", [
    "rsv1-on-continuation", "rsv1-on-both", "rsv1-on-ping", "rsv1-on-pong",
    "rsv1-on-close", "rsv2", "rsv3", "rsv1-on-plain-continuation"])
def test_misplaced_rsv_is_1002(echo, case):
    """RSV1 belongs on a data message's first frame alone (RFC 7692 6.1):
    on a continuation, a ping, a pong or a close it is a protocol error,
    and so are RSV2 and RSV3, which no agreed extension defines."""
    with open_deflate(echo.port, "/echo") as c:
        data = text_of(3000).encode()
        if case in ("rsv1-on-continuation", "rsv1-on-both",
                    "rsv1-on-plain-continuation"):
            # Binary: the first fragment of compressed bytes sent plain
            # must not fail as text that is not UTF-8 first.
            compressed = case != "rsv1-on-plain-continuation"
            frames = c.message_frames(OP_BINARY, data, compressed=compressed,
                                      sizes=500)
            second = bytearray(frames[1])
            second[0] |= 0x40
            frames[1] = bytes(second)
            if case == "rsv1-on-continuation":
                first = bytearray(frames[0])
                first[0] &= 0xBF
                frames[0] = bytes(first)
            wire = b"".join(frames)
        elif case in ("rsv1-on-ping", "rsv1-on-pong", "rsv1-on-close"):
            op = {"rsv1-on-ping": OP_PING, "rsv1-on-pong": OP_PONG,
                  "rsv1-on-close": OP_CLOSE}[case]
            payload = wsraw.close_payload(1000) if op == OP_CLOSE else b"p"
            wire = wsraw.encode_frame(op, payload, rsv=4)
        else:
            rsv = {"rsv2": 2, "rsv3": 1}[case]
            wire = wsraw.encode_frame(OP_TEXT, c.compress(data), rsv=4 | rsv)
        c.conn.send_raw_lenient(wire)
        c.expect_close(1002)


@pytest.mark.parametrize("case", [
    "garbage", "reserved-block-type", "truncated", "bad-distance",
    "text-not-utf8", "text-cut-utf8", "fragmented-text-not-utf8"])
def test_undecodable_or_bad_text_is_1007(echo, case):
    """A compressed message that does not inflate (garbage, a reserved
    block type, data cut short inside a block, a distance before the
    start) or that inflates to text that is not UTF-8: 1007; the next
    client inflates as before."""
    with open_deflate(echo.port, "/echo") as c:
        opcode, sizes = OP_TEXT, None
        if case == "garbage":
            payload = bytes(range(7, 250))
        elif case == "reserved-block-type":
            payload = b"\x07\xff\xff\xff"          # BTYPE 11
        elif case == "truncated":
            full = c.compress(text_of(5000).encode())
            payload = full[:len(full) // 2]
        elif case == "bad-distance":
            # Matches into a preset dictionary the server does not have:
            # distances before the start of the stream.
            z = zlib.compressobj(6, zlib.DEFLATED, -15,
                                 zdict=b"a preset dictionary " * 10)
            payload = wsdeflate.compress_payload(
                z, b"a preset dictionary " * 3)
        elif case == "text-not-utf8":
            payload = c.compress(b"valid text then \xff\xfe bad")
        elif case == "text-cut-utf8":
            payload = c.compress("ends inside \u20ac".encode()[:-1])
        else:
            payload = c.compress(b"fragmented " * 50 + b"\xc0\xaf")
            sizes = 7
        if sizes is None:
            wire = wsraw.encode_frame(opcode, payload, rsv=4)
        else:
            frames = wsraw.fragment(opcode, payload, sizes)
            first = bytearray(frames[0])
            first[0] |= 0x40
            wire = bytes(first) + b"".join(frames[1:])
        c.conn.send_raw_lenient(wire)
        c.expect_close(1007)
    # The zlib stream all such clients share was left clean for the next.
    with open_deflate(echo.port, "/echo") as c:
        c.send_message(OP_TEXT, b"clean again " * 20)
        assert c.recv_message() == (OP_TEXT, b"clean again " * 20, True)


@pytest.mark.parametrize("case", [
    "empty-payload", "single-zero", "bfinal", "bfinal-then-more",
    "stored-blocks", "binary-not-utf8", "level-0"])
def test_unusual_but_valid_compressed_messages(echo, case):
    """RFC 7692 7.2.3: an empty payload and the single byte 0x00 are the
    empty message; a message ending in a BFINAL block (with or without
    bytes after it, 7.2.3.4), stored blocks and level 0 are valid;
    binary is never checked as UTF-8."""
    with open_deflate(echo.port, "/echo") as c:
        opcode, data = OP_TEXT, text_of(2000, 9).encode()
        if case == "empty-payload":
            payload, data = b"", b""
        elif case == "single-zero":
            payload, data = b"\x00", b""
        elif case in ("bfinal", "bfinal-then-more"):
            z = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = z.compress(data) + z.flush(zlib.Z_FINISH)
            if case == "bfinal-then-more":
                payload += b"\x00"
        elif case in ("stored-blocks", "level-0"):
            z = zlib.compressobj(0, zlib.DEFLATED, -15)
            payload = wsdeflate.compress_payload(z, data)
        else:
            opcode, data = OP_BINARY, b"\xff\xfe\xc0" * 1000
            payload = c.compress(data)
        c.conn.send_raw(wsraw.encode_frame(opcode, payload, rsv=4))
        got_op, got, _ = c.recv_message()
        assert (got_op, got) == (opcode, data)
        # The connection goes on, inflating from a clean state.
        c.send_message(OP_TEXT, b"next " * 100)
        assert c.recv_message()[1] == b"next " * 100


# Memory per connection


def open_idle_clients(port, path, n, compressed=True, size=1000):
    """n raw clients of path, each with one message of size bytes echoed
    (compressed both ways when compressed, so that any per-connection
    zlib state exists), then idle."""
    out = []
    msg = binary_of(size, 1) if size > 1000 else text_of(size, 1).encode()
    opcode = OP_BINARY if size > 1000 else OP_TEXT
    for _ in range(n):
        c = open_deflate(port, path) if compressed else \
            open_deflate(port, path, None)
        c.send_message(opcode, msg, compressed=compressed)
        op, got, was = c.recv_message()
        assert got == msg and was is compressed
        out.append(c)
    return out


def settled_rss(pid):
    time.sleep(0.3)
    return rss(pid)


def test_memory_per_idle_connection(gateway, capsys):
    """Groups of 200 idle clients, each after one message echoed: with
    the default (no context takeover: shared zlib streams) a client
    costs less than 10 KB more than one without compression, after a
    1000-byte message or a 64 KiB one; with compression_no_context_
    takeover = no each keeps streams of its own (hundreds of KB once
    they are used).  The figures (VmRSS growth per client) are
    printed."""
    n = 200
    rooms = (f"[resource /echo]\nbackend = {ECHO}\n"
             f"[resource /ctx]\nbackend = {ECHO}\n"
             "compression_no_context_takeover = no\n")
    g = gateway("[gateway]\nmax_connections = 2000\n" + rooms)
    pid = g.proc.pid
    # Warm up: the rooms, the shared streams and the buffers exist.
    everyone = open_idle_clients(g.port, "/echo", 5) + \
        open_idle_clients(g.port, "/echo", 5, size=65536) + \
        open_idle_clients(g.port, "/echo", 5, compressed=False) + \
        open_idle_clients(g.port, "/ctx", 1)
    groups = [("no compression", "/echo", False, 1000),
              ("deflate default", "/echo", True, 1000),
              ("deflate default, 64 KiB", "/echo", True, 65536),
              ("context takeover", "/ctx", True, 1000),
              ("context takeover, 64 KiB", "/ctx", True, 65536)]
    per = {}
    try:
        for name, path, compressed, size in groups:
            before = settled_rss(pid)
            everyone += open_idle_clients(g.port, path, n, compressed, size)
            per[name] = (settled_rss(pid) - before) / n
    finally:
        for c in everyone:
            c.close()
    with capsys.disabled():
        print(f"\nVmRSS per idle client ({n} a group, "
              f"{'ASan' if SAN else 'plain'} build): " +
              ", ".join(f"{k} {v / 1024:.1f} KiB" for k, v in per.items()))
    if not SAN:
        plain = per["no compression"]
        assert per["deflate default"] - plain < 10 * 1024, per
        assert per["deflate default, 64 KiB"] - plain < 10 * 1024, per
        assert per["context takeover"] > plain + 64 * 1024, per
        assert per["context takeover, 64 KiB"] > plain + 200 * 1024, per


# Broadcasts


async def test_broadcast_to_50_compressing_clients(gateway):
    """examples/chat/room.py with 50 websockets clients, all compressing:
    every client receives every broadcast, short (plain) and long
    (compressed), with the right text, in order."""
    g = gateway(f"[resource /chat]\nbackend = "
                f"{example_cmd('chat/room.py')}\n")
    n = 50
    clients = []
    try:
        for i in range(n):
            # max_queue=None: a client reads what it has not taken yet
            # (the leaves of the others at the end), so its close goes
            # through at once.
            ws = await ws_connect(g, f"/chat?name=u{i}", max_queue=None)
            assert "permessage-deflate" in ws.response_headers[
                "Sec-WebSocket-Extensions"]
            clients.append(ws)
            # Its own join first (the room's next newcomer comes after).
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == \
                f"u{i} has joined /chat"
        for i, ws in enumerate(clients):
            for j in range(i + 1, n):
                assert await asyncio.wait_for(ws.recv(), TIMEOUT) == \
                    f"u{j} has joined /chat"
        said, heard = [], [[] for _ in clients]
        for k in range(10):
            speaker = (k * 7) % n
            text = f"short {k}" if k % 2 else f"long {k} " + \
                text_of(3000, k)
            await clients[speaker].send(text)
            said.append(f"u{speaker} says {text}")
            # Messages of different connections have no order between
            # them: the next speaker waits for this broadcast.
            while not heard[speaker] or heard[speaker][-1] != said[-1]:
                heard[speaker].append(await asyncio.wait_for(
                    clients[speaker].recv(), TIMEOUT))
        for i, ws in enumerate(clients):
            while len(heard[i]) < len(said):
                heard[i].append(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert heard[i] == said, i
    finally:
        await asyncio.gather(*[ws.close() for ws in clients])


def test_broadcast_frames_compressed_once(gateway):
    """Raw clients of a chat room: without context takeover every client
    with the same window gets the same compressed bytes (one compression
    for all); a client with a 9-bit window gets its own, which inflates
    with 512 bytes of window; a client without the extension gets the
    text plain."""
    g = gateway(f"[resource /chat]\nbackend = "
                f"{example_cmd('chat/room.py')}\n")
    conns = [open_deflate(g.port, f"/chat?name=r{i}") for i in range(5)]
    small = open_deflate(g.port, "/chat?name=small",
                         [offer(server_max_window_bits=9)])
    plain = open_deflate(g.port, "/chat?name=plain", None)
    everyone = conns + [small, plain]
    try:
        text = "broadcast " + text_of(20000, 2)
        plain.conn.send_frame(OP_TEXT, text.encode())
        want = f"plain says {text}".encode()
        payloads = []
        for c in everyone:
            while True:
                rsv1, f = c.recv_frame()
                if f.payload.startswith(b"plain says") or rsv1:
                    break
            data = c.inflate(f.payload) if rsv1 else f.payload
            assert data == want
            assert rsv1 is (c is not plain)
            payloads.append(f.payload)
        assert all(p == payloads[0] for p in payloads[:5])
        assert payloads[5] != payloads[0]
    finally:
        for c in everyone:
            c.close()


def test_broadcast_with_context_takeover(gateway):
    """A chat room with compression_no_context_takeover = no: each client
    has a stream of its own; ten similar broadcasts inflate right for
    each one, joined at different times (different histories)."""
    g = gateway(f"[resource /chat]\nbackend = "
                f"{example_cmd('chat/room.py')}\n"
                "compression_no_context_takeover = no\n")
    conns = []
    try:
        for i in range(4):
            c = open_deflate(g.port, f"/chat?name=h{i}", [offer()])
            assert c.agreement.params == {}
            conns.append(c)
            for k in range(3):
                c.send_message(OP_TEXT, f"hello {k} from h{i} " * 20)
        lines = []
        for k in range(10):
            text = f"round {k}: " + "similar words each round " * 30
            conns[k % 4].send_message(OP_TEXT, text.encode())
            lines.append(f"h{k % 4} says {text}".encode())
        # No order between the messages of different connections: each
        # client gets every round, each speaker's in the order sent.
        for c in conns:
            got = []
            while len(got) < len(lines):
                op, data, _ = c.recv_message()
                if b" says round " in data:
                    got.append(data)
            assert sorted(got) == sorted(lines)
            for who in range(4):
                mine = [x for x in lines if x.startswith(f"h{who} ".encode())]
                assert [x for x in got if x in mine] == mine
    finally:
        for c in conns:
            c.close()
