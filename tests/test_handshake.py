"""The opening handshake (RFC 6455 section 4), over raw sockets.

Each refused request must get its status, a well-formed response and then
the end of the connection: wsraw.http_request reads until the server
closes and times out otherwise, so every status check below also checks
the close.
"""
import base64
import socket
import time

import pytest

from conftest import backend_cmd, read_records, wait_for
import wsraw
from wsraw import handshake_request, http_request, open_raw

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.fixture
def echo(gateway, tmp_path):
    """Start gatewayd with one room, /echo, served by the recorder.
    Returns start(gateway_opts="", resource_opts="") -> (gateway, path of
    the record file)."""
    def start(gateway_opts="", resource_opts=""):
        records = tmp_path / "records.jsonl"
        g = gateway(f"[gateway]\n{gateway_opts}\n"
                    f"[resource /echo]\n"
                    f"backend = {backend_cmd('recorder.py', records)}\n"
                    f"{resource_opts}\n")
        return g, records
    return start


def opens(records_path, n=1):
    """Wait for n open records and return them."""
    return [r for r in read_records(
        records_path, until=lambda rs: sum(r["type"] == "open"
                                           for r in rs) >= n)
        if r["type"] == "open"]


def refused(port, data, status, **kw):
    """Send data; check the response is status with Connection: close and
    that the server then closes.  Returns the Response."""
    resp = http_request(port, data, **kw)
    assert resp.status == status, resp
    assert resp.headers.get("connection", "").lower() == "close", resp
    assert int(resp.headers["content-length"]) == len(resp.body), resp
    return resp


def echo_works(conn, text="ping?"):
    conn.send_text(text)
    assert conn.recv_message() == (wsraw.OP_TEXT, text)


@pytest.mark.parametrize("request_line", [
    b"GARBAGE",
    b"GET /echo",
    b"GET /echo HTTP/1.1 extra",
    b"GET  /echo HTTP/1.1",
    b"GET echo HTTP/1.1",
    b"GET http://127.0.0.1/echo HTTP/1.1",
    b"GET /echo HTTP/1.x",
    b"GET /echo#frag HTTP/1.1",
    b"G(T /echo HTTP/1.1",
])
def test_malformed_request_line_is_400(echo, request_line):
    g, _ = echo()
    data = handshake_request("/echo")
    data = request_line + data[data.index(b"\r\n"):]
    refused(g.port, data, 400)


@pytest.mark.parametrize("header_line", [
    b"No-Colon-Here",
    b"Bad Name: x",
    b"Space-Before-Colon : x",
    b" Folded: x",
])
def test_malformed_header_line_is_400(echo, header_line):
    g, _ = echo()
    data = handshake_request("/echo")
    i = data.index(b"\r\n") + 2
    refused(g.port, data[:i] + header_line + b"\r\n" + data[i:], 400)


def test_http_major_version_2_is_505(echo):
    g, _ = echo()
    refused(g.port, handshake_request("/echo", http_version="HTTP/2.0"), 505)


@pytest.mark.parametrize("data", [
    handshake_request("/nowhere"),
    handshake_request("/echo/"),
    handshake_request("/ech"),
    handshake_request("/ECHO"),
    # 404 comes before every handshake check
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    handshake_request("/nowhere", method="POST"),
    handshake_request("/nowhere", http_version="HTTP/1.0"),
    handshake_request("/nowhere", version=8),
    handshake_request("/nowhere", host=None, omit=["Sec-WebSocket-Key"]),
], ids=["upgrade", "trailing-slash", "prefix", "case", "plain-get", "post",
        "http10", "version8", "no-host-no-key"])
def test_unknown_path_is_404(echo, data):
    g, _ = echo()
    refused(g.port, data, 404)


def test_plain_http_get_is_426_with_upgrade_header(echo):
    g, _ = echo()
    resp = refused(g.port, b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Accept: */*\r\n\r\n", 426)
    assert resp.headers["upgrade"].lower() == "websocket"
    assert resp.headers["sec-websocket-version"] == "13"


def test_upgrade_to_something_else_is_426(echo):
    g, _ = echo()
    resp = refused(g.port, handshake_request("/echo", upgrade="h2c"), 426)
    assert resp.headers["upgrade"].lower() == "websocket"


def test_post_with_upgrade_is_405(echo):
    g, _ = echo()
    resp = refused(g.port, handshake_request("/echo", method="POST"), 405)
    assert resp.headers["allow"] == "GET"


def test_http_1_0_is_400(echo):
    g, _ = echo()
    refused(g.port, handshake_request("/echo", http_version="HTTP/1.0"), 400)


@pytest.mark.parametrize("kw", [
    dict(host=None),
    dict(host=""),
    dict(extra_headers=[("Host", "127.0.0.1")]),
], ids=["missing", "empty", "twice"])
def test_bad_host_is_400(echo, kw):
    g, _ = echo()
    refused(g.port, handshake_request("/echo", **kw), 400)


@pytest.mark.parametrize("connection", [None, "keep-alive", "upgrades",
                                        "close"])
def test_connection_without_upgrade_token_is_400(echo, connection):
    g, _ = echo()
    refused(g.port, handshake_request("/echo", connection=connection), 400)


@pytest.mark.parametrize("kw", [
    dict(connection="keep-alive, Upgrade"),
    dict(connection="keep-alive,upgrade , close"),
    dict(connection="keep-alive", extra_headers=[("Connection", "UPGRADE")]),
    dict(upgrade="WebSocket"),
], ids=["keep-alive-upgrade", "list-blanks", "two-fields", "upgrade-case"])
def test_connection_lists_and_token_case_work(echo, kw):
    g, _ = echo()
    with open_raw(g.port, "/echo", **kw) as conn:
        echo_works(conn)


def test_odd_case_header_names_work(echo):
    g, _ = echo()
    key = wsraw.make_key()
    data = (f"GET /echo HTTP/1.1\r\n"
            f"hOsT: 127.0.0.1\r\n"
            f"UPGRADE: websocket\r\n"
            f"connection: Upgrade\r\n"
            f"sec-websocket-key: {key}\r\n"
            f"SEC-WEBSOCKET-VERSION: 13\r\n\r\n").encode()
    with wsraw.connect(g.port) as sock:
        sock.sendall(data)
        status, headers, rest = wsraw.read_response_head(sock)
        assert status == 101
        assert headers["sec-websocket-accept"] == wsraw.accept_for(key)
        conn = wsraw.RawConnection(sock, status, headers, rest)
        echo_works(conn)


def test_bare_lf_line_ends_work(echo):
    g, _ = echo()
    with open_raw(g.port, "/echo", line_end=b"\n") as conn:
        echo_works(conn)


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", ""])
def test_other_websocket_version_is_426(echo, version):
    g, _ = echo()
    resp = refused(g.port, handshake_request("/echo", version=version), 426)
    assert resp.headers["sec-websocket-version"] == "13"


def test_missing_websocket_version_is_426(echo):
    g, _ = echo()
    resp = refused(g.port, handshake_request("/echo", version=None), 426)
    assert resp.headers["sec-websocket-version"] == "13"


@pytest.mark.parametrize("key", [
    base64.b64encode(b"x" * 15).decode(),
    base64.b64encode(b"x" * 17).decode(),
    base64.b64encode(b"x" * 16).decode()[:-2],     # no padding
    "!" * 22 + "==",
    "",
], ids=["15-bytes", "17-bytes", "unpadded", "not-base64", "empty"])
def test_bad_key_is_400(echo, key):
    g, _ = echo()
    refused(g.port, handshake_request("/echo", key=key), 400)


def test_missing_key_is_400(echo):
    g, _ = echo()
    refused(g.port, handshake_request("/echo", omit=["Sec-WebSocket-Key"]),
            400)


def test_two_keys_is_400(echo):
    g, _ = echo()
    refused(g.port, handshake_request(
        "/echo", extra_headers=[("Sec-WebSocket-Key", wsraw.make_key())]),
        400)


def test_accept_value_for_rfc_sample_key(echo):
    g, _ = echo()
    assert wsraw.accept_for(RFC_KEY) == RFC_ACCEPT      # the helper itself
    with open_raw(g.port, "/echo", key=RFC_KEY) as conn:
        assert conn.headers["sec-websocket-accept"] == RFC_ACCEPT
        assert conn.headers["upgrade"].lower() == "websocket"
        # no subprotocol was offered, so none may be chosen
        assert "sec-websocket-protocol" not in conn.headers
        echo_works(conn)


def test_more_headers_than_max_headers_is_431(echo):
    # the handshake itself takes 5 header lines
    g, _ = echo("max_headers = 8")
    extra = [(f"X-Extra-{i}", "1") for i in range(3)]
    with open_raw(g.port, "/echo", extra_headers=extra) as conn:   # 8 lines
        echo_works(conn)
    extra.append(("X-Extra-3", "1"))                               # 9 lines
    refused(g.port, handshake_request("/echo", extra_headers=extra), 431)


def test_default_max_headers_is_64(echo):
    g, _ = echo()
    extra = [(f"X-Extra-{i}", "1") for i in range(59)]
    with open_raw(g.port, "/echo", extra_headers=extra) as conn:   # 64 lines
        echo_works(conn)
    extra.append(("X-Extra-59", "1"))
    refused(g.port, handshake_request("/echo", extra_headers=extra), 431)


def padded_request(total, **kw):
    """A valid handshake request head exactly total bytes long."""
    base = handshake_request("/echo", extra_headers=[("X-Pad", "")], **kw)
    pad = total - len(base)
    assert pad >= 0
    return handshake_request("/echo", extra_headers=[("X-Pad", "p" * pad)],
                             **kw)


def test_head_bigger_than_max_header_size_is_431(echo):
    g, _ = echo("max_header_size = 1K")
    key = wsraw.make_key()
    data = padded_request(1024, key=key)
    assert len(data) == 1024
    with wsraw.connect(g.port) as sock:               # exactly the limit
        sock.sendall(data)
        status, headers, _ = wsraw.read_response_head(sock)
        assert status == 101
    refused(g.port, padded_request(1025), 431)
    refused(g.port, padded_request(4000), 431)
    # a client trickling in an endless head is stopped at the limit too
    refused(g.port, padded_request(1500), 431, split=100, delay=0.005)


def test_head_split_byte_by_byte_works(echo):
    g, _ = echo()
    with open_raw(g.port, "/echo", split=1, delay=0.001) as conn:
        echo_works(conn)


def test_frame_pipelined_behind_the_head_is_processed(echo):
    g, _ = echo()
    frames = (wsraw.encode_frame(wsraw.OP_TEXT, "early") +
              wsraw.encode_frame(wsraw.OP_BINARY, b"\x00bird"))
    with open_raw(g.port, "/echo", then=frames) as conn:
        assert conn.recv_message() == (wsraw.OP_TEXT, "early")
        assert conn.recv_message() == (wsraw.OP_BINARY, b"\x00bird")


@pytest.mark.parametrize("sent", [40, 0], ids=["half-head", "nothing"])
def test_stalled_head_gets_408_after_handshake_timeout(echo, sent):
    g, _ = echo("handshake_timeout = 1s")
    start = time.monotonic()
    refused(g.port, handshake_request("/echo")[:sent], 408, timeout=6)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 4, elapsed


def test_slow_but_steady_head_is_cut_by_handshake_timeout(echo):
    # the timeout bounds the whole head, not the pause between bytes
    g, _ = echo("handshake_timeout = 1s")
    data = handshake_request("/echo")
    with wsraw.connect(g.port) as sock:
        start = time.monotonic()
        got = b""
        for i in range(len(data)):
            try:
                sock.sendall(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
            if time.monotonic() - start > 1.5:
                break
        sock.settimeout(3)
        got = sock.recv(4096)
    assert got.startswith(b"HTTP/1.1 408 "), got


def test_query_string_takes_no_part_in_matching(echo):
    g, records = echo()
    with open_raw(g.port, "/echo?x=1") as conn:
        echo_works(conn)
    with open_raw(g.port, "/echo") as conn:
        echo_works(conn)
    with open_raw(g.port, "/echo?") as conn:
        echo_works(conn)
    refused(g.port, handshake_request("/nowhere?/echo"), 404)
    o = opens(records, 3)
    assert [(r["path"], r["query"]) for r in o] == [
        ("/echo", "x=1"), ("/echo", ""), ("/echo", "")]


def test_open_record_describes_the_client(echo):
    g, records = echo()
    extra = [("Sec-WebSocket-Protocol", "chat, superchat"),
             ("Sec-WebSocket-Protocol", "v2.json"),
             ("X-Odd-CASE-Name", "Keep This Value"),
             ("User-Agent", "wsraw/1"),
             ("Cookie", "a=1"), ("cookie", "b=2")]
    with open_raw(g.port, "/echo?room=a%20b&x", extra_headers=extra) as conn:
        port = conn.local_port
        echo_works(conn)
    (o,) = opens(records)
    assert o["path"] == "/echo"
    assert o["query"] == "room=a%20b&x"
    assert o["remote"] == f"127.0.0.1:{port}"
    assert o["subprotocols"] == ["chat", "superchat", "v2.json"]
    assert o["subprotocol"] is None
    assert o["authorize"] is False
    assert isinstance(o["client"], str) and o["client"]
    headers = o["headers"]
    assert all(name == name.lower() for name in headers), headers
    assert headers["x-odd-case-name"] == "Keep This Value"
    assert headers["user-agent"] == "wsraw/1"
    assert headers["host"] == "127.0.0.1"
    assert headers["sec-websocket-version"] == "13"
    assert headers["upgrade"] == "websocket"
    # repeated fields are joined, cookies with "; "
    assert headers["sec-websocket-protocol"] == "chat, superchat, v2.json"
    assert headers["cookie"] == "a=1; b=2"
    # the messages and the close carry the same client id
    recs = read_records(records, until=lambda rs: any(
        r["type"] == "close" for r in rs))
    mine = [r for r in recs if r.get("client") == o["client"]]
    assert [r["type"] for r in mine] == ["open", "message", "close"]


def test_no_subprotocols_offered_is_an_empty_list(echo):
    g, records = echo()
    with open_raw(g.port, "/echo") as conn:
        echo_works(conn)
    (o,) = opens(records)
    assert o["subprotocols"] == []
    assert "sec-websocket-protocol" not in o["headers"]


@pytest.mark.parametrize("protocols", ["chat, chat", "a b", "chat, [x]"])
def test_malformed_or_repeated_subprotocol_is_400(echo, protocols):
    g, _ = echo()
    refused(g.port, handshake_request(
        "/echo", extra_headers=[("Sec-WebSocket-Protocol", protocols)]), 400)


def test_max_connections_refuses_with_503(echo):
    g, _ = echo("max_connections = 2")
    # (the fixture's readiness probe may hold a slot for a moment)
    a = wait_for(lambda: _try_open(g.port), timeout=5, what="a slot")
    b = wait_for(lambda: _try_open(g.port), timeout=5, what="a slot")
    try:
        # The refusal closes at once, without reading the request, so a
        # request that arrived first turns the close into a reset (a race):
        # what the client must still see is the whole 503.
        resp = refused(g.port, handshake_request("/echo"), 503,
                       allow_reset=True)
        assert resp.body == b"too many connections\n"
        echo_works(a)
        echo_works(b)
    finally:
        b.close()
    # once one has gone, a new client gets in again
    c = wait_for(lambda: _try_open(g.port), timeout=5,
                 what="a free connection slot")
    with a, c:
        echo_works(c)


def test_handshaking_connections_count_against_max_connections(echo):
    g, _ = echo("max_connections = 1")
    idle = wait_for(lambda: _hold_slot(g.port), timeout=5, what="a slot")
    with idle:
        # a client that waits for the greeting gets an orderly close
        refused(g.port, b"", 503)
        refused(g.port, handshake_request("/echo"), 503, allow_reset=True)


def _hold_slot(port):
    """A connection that sent half a request head and was not refused."""
    sock = wsraw.connect(port)
    sock.sendall(b"GET /echo HTTP/1.1\r\n")
    sock.settimeout(0.3)
    try:
        if sock.recv(1024) == b"":
            raise ConnectionResetError
        sock.close()                    # refused with a 503
        return None
    except socket.timeout:
        return sock                     # held: nothing came back
    except ConnectionResetError:
        sock.close()
        return None


def _try_open(port):
    try:
        return open_raw(port, "/echo", timeout=2)
    except (AssertionError, EOFError, OSError):
        return None


def test_close_pipelined_behind_the_head(echo):
    g, records = echo()
    close = wsraw.encode_frame(wsraw.OP_CLOSE, wsraw.close_payload(1000, "bye"))
    with open_raw(g.port, "/echo", then=close) as conn:
        assert conn.recv_close() == (1000, "")
        conn.expect_eof()
    rs = read_records(records, until=lambda rs: any(
        r["type"] == "close" for r in rs))
    assert [r["type"] for r in rs if r["type"] != "hello"] == ["open",
                                                               "close"]
    assert (rs[-1]["code"], rs[-1]["reason"]) == (1000, "bye")


def test_protocol_error_pipelined_behind_the_head(echo):
    g, _ = echo()
    bad = wsraw.encode_frame(wsraw.OP_TEXT, "x", mask=False)
    with open_raw(g.port, "/echo", then=bad) as conn:
        code, _ = conn.recv_close()
        assert code == 1002
        conn.expect_eof()


def test_long_request_target_is_431(echo):
    g, _ = echo()
    refused(g.port, handshake_request("/echo?" + "q" * 20000), 431)
