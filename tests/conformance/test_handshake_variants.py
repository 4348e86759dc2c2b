"""Opening handshake variants (RFC 6455 4.1, 4.2; RFC 9110/9112 syntax):
what real clients and proxies send beyond the textbook request, and where
the handshake ends and the frames begin.  tests/test_handshake.py covers
the basic refusals; this goes through the variations a server must
accept, the keys it must refuse, and the byte-level boundaries.
"""
import base64
import json
import socket
import time

import pytest

import wsraw
from conftest import backend_cmd
from wsraw import (OP_BINARY, OP_PING, OP_PONG, OP_TEXT, handshake_request,
                   http_request, open_raw)

from .conftest import ECHO_PATH, echoes, open_echo, still_echoes


def refused(port, data, status):
    resp = http_request(port, data)
    assert resp.status == status, resp
    assert resp.headers.get("connection", "").lower() == "close", resp
    return resp


def handshake_by_hand(g, data, key, then=b""):
    """Send a hand-written request head (and then), check the 101 and its
    accept value for key; return the RawConnection."""
    sock = wsraw.connect(g.port)
    sock.sendall(data + then)
    status, headers, rest = wsraw.read_response_head(sock)
    assert status == 101, (status, headers, rest)
    assert headers["sec-websocket-accept"] == wsraw.accept_for(key.strip())
    assert headers["upgrade"].lower() == "websocket"
    return wsraw.RawConnection(sock, status, headers, rest)


def request_lines(key, names=None, values=None):
    """The lines of a handshake as (name, value) pairs, renamed and
    revalued by the dicts names and values."""
    names, values = names or {}, values or {}
    base = [("Host", "127.0.0.1"), ("Upgrade", "websocket"),
            ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13")]
    return [(names.get(n, n), values.get(n, v)) for n, v in base]


def build(lines, sep=": "):
    head = "GET /echo HTTP/1.1\r\n" + "".join(
        f"{n}{sep}{v}\r\n" for n, v in lines) + "\r\n"
    return head.encode("latin-1")


# Header names and values


@pytest.mark.parametrize("transform", [
    str.lower, str.upper, str.swapcase,
    lambda s: "".join(c.upper() if i % 2 else c.lower()
                      for i, c in enumerate(s)),
], ids=["lower", "upper", "swapcase", "alternating"])
def test_header_name_case(echo, transform):
    """Field names are case-insensitive (RFC 9110 5.1): every handshake
    header in lower, upper, swapped and alternating case works."""
    key = wsraw.make_key()
    lines = [(transform(n), v) for n, v in request_lines(key)]
    with handshake_by_hand(echo, build(lines), key) as conn:
        still_echoes(conn)


@pytest.mark.parametrize("sep,pad", [
    (":", ""), (":  ", "  "), (":\t", "\t"), (": \t ", " \t"),
], ids=["no-blank", "spaces", "tabs", "mixed"])
def test_optional_whitespace_around_values(echo, sep, pad):
    """OWS before and after field values is not part of them (RFC 9112
    5): the key is taken without it, and the accept value is that of the
    bare key."""
    key = wsraw.make_key()
    lines = [(n, v + pad) for n, v in request_lines(key)]
    with handshake_by_hand(echo, build(lines, sep), key) as conn:
        still_echoes(conn)


@pytest.mark.parametrize("connection", [
    "keep-alive, Upgrade", "Upgrade, HTTP2-Settings", "upgrade", "UPGRADE",
    "Upgrade,keep-alive", "keep-alive,,Upgrade", ", Upgrade", "Upgrade ,",
    "keep-alive ,\tUpgrade", "TE, Upgrade, keep-alive",
])
def test_connection_token_lists(echo, connection):
    """Connection is a case-insensitive token list (RFC 9110 7.6.1), with
    empty elements to skip (5.6.1): any list holding "upgrade" will do."""
    with open_echo(echo, connection=connection) as conn:
        still_echoes(conn)


@pytest.mark.parametrize("connection", [
    "Upgraded", "Up grade", "keep-alive;Upgrade", "HTTP2-Settings"])
def test_connection_without_the_upgrade_token_is_400(echo, connection):
    """A Connection list without the exact token "upgrade" is no
    WebSocket handshake: 400."""
    refused(echo.port, handshake_request(ECHO_PATH, connection=connection),
            400)


@pytest.mark.parametrize("upgrade", ["WebSocket", "WEBSOCKET", "webSocket",
                                     "h2c, websocket", "websocket, h2c"])
def test_upgrade_value_case_and_lists(echo, upgrade):
    """The Upgrade value is compared without regard to case (RFC 6455
    4.2.1); a list that offers websocket among others is answered with
    Upgrade: websocket (RFC 9110 7.8)."""
    with open_echo(echo, upgrade=upgrade) as conn:
        assert conn.headers["upgrade"].lower() == "websocket"
        still_echoes(conn)


@pytest.mark.parametrize("host", ["127.0.0.1:80", "example.com",
                                  "EXAMPLE.com:8080", "[::1]:9001"])
def test_host_forms(echo, host):
    """Any one Host value names the server; a WebSocket server does not
    need it to match its address (RFC 6455 4.2.1 leaves that to it)."""
    with open_echo(echo, host=host) as conn:
        still_echoes(conn)


@pytest.mark.parametrize("extra", [
    [("Origin", "http://example.com")],
    [("User-Agent", "AutobahnTestSuite/0.8.2-0.10.9")],
    [("Pragma", "no-cache"), ("Cache-Control", "no-cache")],
    [("Sec-WebSocket-Extensions",
      "permessage-deflate; client_max_window_bits")],
], ids=["origin", "user-agent", "cache", "extensions"])
def test_headers_browsers_and_autobahn_send(echo, extra):
    """Headers that browsers and Autobahn's client add change nothing but
    what they ask for: 101, no subprotocol (the room offers none), and
    permessage-deflate when it is offered, without context takeover
    either way (the default)."""
    with open_echo(echo, extra_headers=extra) as conn:
        if extra[0][0] == "Sec-WebSocket-Extensions":
            assert conn.headers["sec-websocket-extensions"] == (
                "permessage-deflate; server_no_context_takeover; "
                "client_no_context_takeover")
        else:
            assert "sec-websocket-extensions" not in conn.headers
        assert "sec-websocket-protocol" not in conn.headers
        still_echoes(conn)


def test_declined_deflate_is_not_in_use(echo):
    """permessage-deflate was offered with a parameter the server must
    decline (a window of 7 bits), so nothing is agreed and a "compressed"
    frame (RSV1) is a protocol error: 1002."""
    with open_echo(echo, extra_headers=[
            ("Sec-WebSocket-Extensions",
             "permessage-deflate; server_max_window_bits=7")]) as conn:
        assert "sec-websocket-extensions" not in conn.headers
        conn.send_frame(OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=4)
        conn.expect_close(1002)


def test_agreed_deflate_takes_compressed_frames(echo):
    """Agreed, the RFC 7692 7.2.3.1 example ("Hello", compressed) is a
    message: it comes back as "Hello" (too short to be compressed again,
    under compression_min_size)."""
    with open_echo(echo, extra_headers=[
            ("Sec-WebSocket-Extensions", "permessage-deflate")]) as conn:
        assert "permessage-deflate" in conn.headers["sec-websocket-extensions"]
        conn.send_frame(OP_TEXT, b"\xf2\x48\xcd\xc9\xc9\x07\x00", rsv=4)
        assert conn.recv_message() == (OP_TEXT, "Hello")


# Sec-WebSocket-Protocol


@pytest.mark.parametrize("offers", [
    [("Sec-WebSocket-Protocol", "chat")],
    [("Sec-WebSocket-Protocol", "chat, superchat")],
    [("Sec-WebSocket-Protocol", "chat"),
     ("Sec-WebSocket-Protocol", "superchat")],
    [("Sec-WebSocket-Protocol", "  chat ,superchat  ")],
    [("Sec-WebSocket-Protocol", "")],
    [("sec-websocket-protocol", "chat"),
     ("SEC-WEBSOCKET-PROTOCOL", "v2.json, wamp")],
], ids=["one", "list", "two-headers", "blanks", "empty", "name-case"])
def test_subprotocols_offered_to_a_room_without_any(echo, offers):
    """Subprotocols offered in one or several headers: the echo room
    speaks none, so the 101 names none (RFC 6455 4.2.2) and the
    connection works."""
    with open_echo(echo, extra_headers=offers) as conn:
        assert "sec-websocket-protocol" not in conn.headers
        still_echoes(conn)


@pytest.fixture
def authorizing(gateway):
    """gatewayd with /s served by scripted.py with authorize = yes: the
    query string tells the backend which subprotocol to accept."""
    return gateway("[resource /s]\n"
                   f"backend = {backend_cmd('scripted.py')}\n"
                   "authorize = yes\n")


@pytest.mark.parametrize("chosen,offers", [
    ("superchat", [("Sec-WebSocket-Protocol", "chat"),
                   ("Sec-WebSocket-Protocol", "superchat")]),
    ("chat", [("Sec-WebSocket-Protocol", "chat"),
              ("Sec-WebSocket-Protocol", "superchat")]),
    ("v2.json", [("Sec-WebSocket-Protocol", "chat, superchat"),
                 ("sec-websocket-protocol", " v2.json ")]),
], ids=["from-second-header", "from-first-header", "list-and-blanks"])
def test_subprotocol_chosen_from_several_headers(authorizing, chosen,
                                                 offers):
    """Offers spread over several Sec-WebSocket-Protocol headers are one
    list: the backend may pick from any of them, and the 101 carries
    exactly its choice once."""
    with open_raw(authorizing.port, f"/s?subprotocol={chosen}",
                  extra_headers=offers) as conn:
        assert conn.headers["sec-websocket-protocol"] == chosen
        conn.send_text("whoami")
        op, me = conn.recv_message()
        assert op == OP_TEXT and json.loads(me)["room"] == "/s"


# Sec-WebSocket-Key


def key_of(n):
    return base64.b64encode(bytes(range(1, n + 1))).decode()


@pytest.mark.parametrize("n", [n for n in range(0, 33) if n != 16])
def test_key_of_wrong_length_is_400(echo, n):
    """A key that is not base64 of exactly 16 bytes (here 0-32 bytes
    but 16) is refused with 400 (RFC 6455 4.2.1)."""
    refused(echo.port, handshake_request(ECHO_PATH, key=key_of(n)), 400)


@pytest.mark.parametrize("key", [
    "AQIDBAUGBwgJCgsMDQ4PEA",             # no padding
    "AQIDBAUGBwgJCgsMDQ4PEA=",            # half the padding
    "AQIDBAUGBwgJCgsMDQ4PEA===",          # too much padding
    "-_IDBAUGBwgJCgsMDQ4PEA==",           # base64url digits
    "AQIDBAUG=wgJCgsMDQ4PEA==",           # padding inside
    "AQIDBAUGBwg CgsMDQ4PEA==",           # a blank inside
    "AQIDBAUGBwgJCgsMDQ4PEA==, AQIDBAUGBwgJCgsMDQ4PEA==",   # a list
], ids=["unpadded", "half-padded", "over-padded", "url-alphabet",
        "inner-padding", "inner-blank", "list"])
def test_malformed_keys_are_400(echo, key):
    """Malformed base64 is no key, even when it would decode to 16 bytes
    leniently: 400."""
    refused(echo.port, handshake_request(ECHO_PATH, key=key), 400)


@pytest.mark.parametrize("key", [
    "dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA==",
    "/////////////////////w==", "+++++++++++++++++++++w==",
])
def test_valid_keys(echo, key):
    """16-byte keys of every digit class get the accept value of RFC 6455
    4.2.2 (the RFC's own sample included)."""
    with open_echo(echo, key=key) as conn:
        assert conn.headers["sec-websocket-accept"] == wsraw.accept_for(key)
        still_echoes(conn)


# HTTP versions


@pytest.mark.parametrize("extra", [[], [("Connection", "keep-alive")]],
                         ids=["plain", "keep-alive"])
def test_http_1_0_is_400(echo, extra):
    """HTTP/1.0 has no Upgrade (RFC 6455 4.1 requires 1.1 or higher):
    400, whatever else the request says."""
    refused(echo.port, handshake_request(ECHO_PATH, http_version="HTTP/1.0",
                                         extra_headers=extra), 400)


def test_http_1_2_is_served_as_1_1(echo):
    """A higher minor version is HTTP/1.1 to a 1.1 server (RFC 9110
    2.5): 101."""
    with open_echo(echo, http_version="HTTP/1.2") as conn:
        still_echoes(conn)


# The head in pieces


def test_head_one_line_per_segment_with_delays(echo):
    """The request, one line per TCP segment, 20 ms apart: 101."""
    key = wsraw.make_key()
    data = handshake_request(ECHO_PATH, key=key)
    lines = data.split(b"\r\n")
    sock = wsraw.connect(echo.port)
    for line in lines[:-1]:
        sock.sendall(line + b"\r\n")
        time.sleep(0.02)
    status, headers, rest = wsraw.read_response_head(sock)
    assert status == 101 and rest == b""
    with wsraw.RawConnection(sock, status, headers, rest) as conn:
        still_echoes(conn)


@pytest.mark.parametrize("cut", [1, 2, 3],
                         ids=["before-last-crlf", "inside-last-crlf",
                              "before-last-lf"])
def test_head_cut_inside_its_final_crlf_crlf(echo, cut):
    """The empty line that ends the head split over two segments 100 ms
    apart: nothing before the second, then the 101 (and no early 101:
    "\\r\\n\\r" is not the end of a head)."""
    key = wsraw.make_key()
    data = handshake_request(ECHO_PATH, key=key)
    sock = wsraw.connect(echo.port)
    sock.sendall(data[:-cut])
    sock.settimeout(0.1)
    try:
        early = sock.recv(100)
    except socket.timeout:
        early = None
    assert early is None, f"answered before the head was whole: {early!r}"
    time.sleep(0.05)
    sock.sendall(data[-cut:] + wsraw.encode_frame(OP_TEXT, b"right behind"))
    status, headers, rest = wsraw.read_response_head(sock)
    assert status == 101
    with wsraw.RawConnection(sock, status, headers, rest) as conn:
        echoes(conn, OP_TEXT, b"right behind")


@pytest.mark.parametrize("chunk,delay", [(7, 0.002), (64, 0.01),
                                         (100, 0.0)])
def test_head_in_small_chunks(echo, chunk, delay):
    """The head in chunks of 7, 64 and 100 bytes, a little apart: 101."""
    with open_echo(echo, split=chunk, delay=delay) as conn:
        still_echoes(conn)


def test_head_and_frames_straddling_segments(echo):
    """The head's last bytes and the first two bytes of a frame in one
    segment, the rest of the frame in the next: the frame is read from
    where the head ends."""
    key = wsraw.make_key()
    data = handshake_request(ECHO_PATH, key=key)
    frame = wsraw.encode_frame(OP_BINARY, b"\x00straddling\xff")
    sock = wsraw.connect(echo.port)
    sock.sendall(data[:-5])
    time.sleep(0.02)
    sock.sendall(data[-5:] + frame[:2])
    status, headers, rest = wsraw.read_response_head(sock)
    assert status == 101
    time.sleep(0.02)
    sock.sendall(frame[2:])
    with wsraw.RawConnection(sock, status, headers, rest) as conn:
        echoes(conn, OP_BINARY, b"\x00straddling\xff")


# Frames pipelined behind the head


def test_pipelined_ping_and_fragments(echo):
    """A ping and a fragmented text with a ping between, sent in the same
    segment as the head: the 101 first, then the pongs and the echo."""
    then = wsraw.frames((OP_PING, b"first"),
                        (OP_TEXT, b"frag", {"fin": False}),
                        (OP_PING, b"second"), (wsraw.OP_CONT, b"mented"))
    with open_echo(echo, then=then) as conn:
        assert conn.recv_frame() == (True, OP_PONG, b"first")
        assert conn.recv_frame() == (True, OP_PONG, b"second")
        echoes(conn, OP_TEXT, b"fragmented")


def test_hundred_pipelined_messages(echo):
    """100 messages in the head's segment: 100 echoes in order."""
    msgs = [f"pipelined {i}".encode() for i in range(100)]
    with open_echo(echo, then=wsraw.frames(*[(OP_TEXT, m)
                                             for m in msgs])) as conn:
        for m in msgs:
            echoes(conn, OP_TEXT, m)


def test_pipelined_invalid_utf8(echo):
    """Invalid text right behind the head: the 101, then close 1007."""
    with open_echo(echo, then=wsraw.encode_frame(OP_TEXT, b"\xc0\xaf")) \
            as conn:
        conn.expect_close(1007)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_second_http_request_after_the_101_is_garbage(echo, method):
    """After the 101 the bytes are frames: a second HTTP request is read
    as one ("G" is 0x47: RSV1 set, opcode 7; "P" is 0x50: RSV1 and RSV3)
    and fails the connection with 1002."""
    second = handshake_request(ECHO_PATH, method=method)
    with open_echo(echo) as conn:
        still_echoes(conn)
        conn.send_raw_lenient(second)
        conn.expect_close(1002)


def test_second_http_request_pipelined_with_the_first(echo):
    """Two requests in one segment: the first is answered 101, the second
    is garbage frames: 1002, and never a second 101."""
    second = handshake_request(ECHO_PATH)
    with open_echo(echo, then=second) as conn:
        before, close = conn.recv_until_close()
        assert before == [] and close[0] == 1002
        conn.expect_eof()
