"""The PROXY protocol on listeners marked proxy: gatewayd behind HAProxy.

What an operator sees, from real processes: raw sockets that send v1 and v2
headers as HAProxy's send-proxy and send-proxy-v2 write them, then a
WebSocket handshake (in one write with the header, or a byte at a time);
the client's address taken from the header in the open record, the access
log, the CGI variables of a mode = client program and max_connections_per_ip;
LOCAL and UNKNOWN headers (health checks) keeping the connection's own
address; bad, missing and oversized headers closing the connection at once
(or at handshake_timeout) while other clients carry on; a header before TLS
on a "tls proxy" listener; and a real HAProxy in front of gatewayd.
"""
import asyncio
import http.client
import ipaddress
import socket
import ssl
import struct
import subprocess
import time

import pytest
import trustme
import websockets

import wsraw
from conftest import (backend_cmd, end_processes, free_port, read_records,
                      wait_for)
from wsclient import recv

TIMEOUT = 5
HAPROXY = "/usr/sbin/haproxy"

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
V2_LOCAL, V2_PROXY = 0x20, 0x21
# TLVs HAProxy may add: ALPN, authority, a NOOP, a unique id.
TLVS = (b"\x01\x00\x08http/1.1" + b"\x02\x00\x0bexample.com" +
        b"\x04\x00\x00" + b"\x05\x00\x04abcd")
# The start of a TLS ClientHello: no PROXY header.
CLIENT_HELLO = bytes.fromhex("160301002a010000260303") + bytes(32) + \
    bytes.fromhex("000002002f0100")


# Headers

def v1(src, sport, dst="127.0.0.1", dport=443):
    """A v1 line as send-proxy writes it."""
    if ":" in src:
        dst = "::1" if dst == "127.0.0.1" else dst
        return f"PROXY TCP6 {src} {dst} {sport} {dport}\r\n".encode()
    return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()


def v2(src=None, sport=0, dst=None, dport=443, command=V2_PROXY, fam=None,
       body=None, tlvs=b""):
    """A v2 header as send-proxy-v2 writes it: TCP over IPv4 or IPv6 from
    src, or the fam byte and body given."""
    if body is None:
        if src is None:
            fam, body = 0x00, b""
        elif ":" in src:
            fam = 0x21
            body = (ipaddress.IPv6Address(src).packed +
                    ipaddress.IPv6Address(dst or "::1").packed +
                    struct.pack("!HH", sport, dport))
        else:
            fam = 0x11
            body = (ipaddress.IPv4Address(src).packed +
                    ipaddress.IPv4Address(dst or "127.0.0.1").packed +
                    struct.pack("!HH", sport, dport))
    body += tlvs
    return V2_SIG + bytes([command, fam]) + struct.pack("!H", len(body)) + \
        body


# Clients

def send(sock, data, split=None, delay=0.0):
    if not split:
        sock.sendall(data)
        return
    for i in range(0, len(data), split):
        sock.sendall(data[i:i + split])
        if delay:
            time.sleep(delay)


def check_101(sock, key):
    status, headers, rest = wsraw.read_response_head(sock, TIMEOUT)
    assert status == 101, (status, headers, rest)
    assert headers["sec-websocket-accept"] == wsraw.accept_for(key)
    return wsraw.RawConnection(sock, status, headers, rest)


def open_proxied(port, header, path="/rec", split=None, delay=0.0,
                 then=b""):
    """Connect, send header, the handshake for path and then (frames),
    in one write or in pieces of split bytes; the 101 is checked.
    Returns a wsraw.RawConnection."""
    key = wsraw.make_key()
    sock = wsraw.connect(port, timeout=TIMEOUT)
    try:
        send(sock, header + wsraw.handshake_request(path, key=key) + then,
             split, delay)
        return check_101(sock, key)
    except BaseException:
        sock.close()
        raise


def status_of(port, header, path="/rec"):
    """The status a proxied handshake is answered with."""
    with wsraw.connect(port, timeout=TIMEOUT) as sock:
        sock.sendall(header + wsraw.handshake_request(path))
        status, _, _ = wsraw.read_response_head(sock, TIMEOUT)
        return status


def expect_dropped(sock, timeout=TIMEOUT):
    """The server ends the connection (a FIN or a reset) without a byte."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the connection was not closed")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return "reset"
        assert data == b"", f"the server answered {data[:80]!r}"
        return "eof"


def echo_works(conn, text="still here"):
    conn.send_text(text)
    assert conn.recv_message() == (wsraw.OP_TEXT, text)


def metrics(g):
    """The admin listener's /metrics, as {name{labels}: value}."""
    conn = http.client.HTTPConnection("127.0.0.1", g.admin_port,
                                      timeout=TIMEOUT)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in body.splitlines() if line and line[0] != "#"}


def opens_by_who(g, n):
    """The open records of the recorder, by their ?who= query, once
    there are n."""
    recs = read_records(g.records, until=lambda r: len(
        [x for x in r if x["type"] == "open"]) >= n)
    return {r["query"].split("=", 1)[1]: r for r in recs
            if r["type"] == "open"}


# Gateways

ENV_SH = """#!/bin/sh
echo "$REMOTE_ADDR $REMOTE_PORT"
exec cat
"""


@pytest.fixture
def proxy_gateway(gateway, tmp_path):
    """Start gatewayd with a proxy listener (g.port), a plain one beside
    it (g.plain_port), an admin listener (g.admin_port), a recorder room
    /rec (records in g.records) and a mode = client room /env whose
    program says REMOTE_ADDR and REMOTE_PORT, then echoes."""
    started = []

    def start(gateway_opts="", listen_flags="proxy", body=""):
        started.append(1)
        records = tmp_path / f"records{len(started)}.jsonl"
        env_sh = tmp_path / "env.sh"
        env_sh.write_text(ENV_SH)
        env_sh.chmod(0o755)
        plain, admin = free_port(), free_port()
        g = gateway(f"""[gateway]
listen = 127.0.0.1:{{port}} {listen_flags}
listen = 127.0.0.1:{plain}
admin_listen = 127.0.0.1:{admin}
log_level = debug
{gateway_opts}
[resource /rec]
backend = {backend_cmd("recorder.py", records)}
[resource /env]
mode = client
backend = exec:{env_sh}
{body}""")
        g.plain_port, g.admin_port, g.records = plain, admin, records
        return g
    return start


# The client's address

def test_open_record_and_access_log_name_the_header_address(proxy_gateway):
    """Behind the proxy, a client is whom the header names: the open
    record's remote and the access log's "ws open from" say so, for v1
    and v2, IPv4 and IPv6, with or without TLVs."""
    g = proxy_gateway()
    cases = [
        ("v1-tcp4", v1("203.0.113.7", 40001), "203.0.113.7:40001"),
        ("v1-tcp6", v1("2001:db8::7", 40002), "[2001:db8::7]:40002"),
        ("v1-tcp6-mapped", b"PROXY TCP6 ::ffff:203.0.113.9 ::1 40003 443"
         b"\r\n", "[::ffff:203.0.113.9]:40003"),
        ("v1-port-0", v1("203.0.113.10", 0), "203.0.113.10:0"),
        ("v2-tcp4", v2("203.0.113.8", 40004), "203.0.113.8:40004"),
        ("v2-tcp6", v2("2001:db8::8", 40005), "[2001:db8::8]:40005"),
        ("v2-tlvs", v2("198.51.100.20", 65535, tlvs=TLVS),
         "198.51.100.20:65535"),
    ]
    for who, header, _ in cases:
        with open_proxied(g.port, header, f"/rec?who={who}") as c:
            echo_works(c, f"hello from {who}")
    opens = opens_by_who(g, len(cases))
    log = g.log()
    for who, _, remote in cases:
        assert opens[who]["remote"] == remote, opens[who]
        assert opens[who]["tls"] is False
        assert f": ws open from {remote}, room /rec" in log, remote


def test_local_and_unknown_keep_the_connection_address(proxy_gateway):
    """HAProxy's health checks and connections it cannot describe (v2
    LOCAL, v1 UNKNOWN, v2 AF_UNSPEC and AF_UNIX) are let in with the
    connection's own address."""
    g = proxy_gateway()
    unix = b"/run/haproxy.sock".ljust(108, b"\0") * 2
    cases = [
        ("v2-local", v2(command=V2_LOCAL)),
        ("v2-local-with-addresses", v2("203.0.113.1", 1, command=V2_LOCAL)),
        ("v1-unknown", b"PROXY UNKNOWN\r\n"),
        ("v1-unknown-long", b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n"),
        ("v2-unspec", v2()),
        ("v2-unix", v2(fam=0x31, body=unix)),
    ]
    ports = {}
    for who, header in cases:
        with open_proxied(g.port, header, f"/rec?who={who}") as c:
            ports[who] = c.local_port
            echo_works(c)
    opens = opens_by_who(g, len(cases))
    for who, _ in cases:
        assert opens[who]["remote"] == f"127.0.0.1:{ports[who]}", \
            opens[who]


def test_mode_client_program_sees_the_header_address(proxy_gateway):
    """A mode = client program gets the header's address and port as
    REMOTE_ADDR and REMOTE_PORT (the connection's for LOCAL)."""
    g = proxy_gateway()
    for header, want in [
            (v1("192.0.2.44", 5144), "192.0.2.44 5144"),
            (v2("2001:db8::44", 5145), "2001:db8::44 5145"),
            (v1("2001:db8::45", 5146), "2001:db8::45 5146")]:
        with open_proxied(g.port, header, "/env") as c:
            assert c.recv_message() == (wsraw.OP_TEXT, want)
            echo_works(c)
    with open_proxied(g.port, v2(command=V2_LOCAL), "/env") as c:
        assert c.recv_message() == (wsraw.OP_TEXT,
                                    f"127.0.0.1 {c.local_port}")


# How the header arrives

@pytest.mark.parametrize("version", [1, 2])
def test_header_and_request_a_byte_at_a_time(proxy_gateway, version):
    """Header and handshake sent a byte at a time: nothing but the header
    is read until it is whole, and the client gets in as its address."""
    g = proxy_gateway()
    header = v1("198.51.100.77", 7777) if version == 1 else \
        v2("198.51.100.77", 7777, tlvs=TLVS)
    sock = wsraw.connect(g.port)
    try:
        send(sock, header[:-1], split=1, delay=0.001)
        # Still in its header: so the metrics say.
        wait_for(lambda: metrics(g).get('gatewayd_clients{state="proxy"}')
                 == 1, what="a client in state proxy")
        key = wsraw.make_key()
        send(sock, header[-1:] + wsraw.handshake_request(
            "/rec?who=bytewise", key=key), split=1, delay=0.001)
        with check_101(sock, key) as c:
            echo_works(c)
    finally:
        sock.close()
    assert opens_by_who(g, 1)["bytewise"]["remote"] == "198.51.100.77:7777"


@pytest.mark.parametrize("version", [1, 2])
def test_header_request_and_frames_in_one_write(proxy_gateway, version):
    """The header, the handshake and a frame in one write: the bytes
    behind the header are the client's, none lost."""
    g = proxy_gateway()
    header = v1("198.51.100.78", 7878) if version == 1 else \
        v2("198.51.100.78", 7878)
    frames = wsraw.frames((wsraw.OP_TEXT, "first"), (wsraw.OP_TEXT, "second"))
    with open_proxied(g.port, header, "/rec?who=onewrite", then=frames) as c:
        assert c.recv_message() == (wsraw.OP_TEXT, "first")
        assert c.recv_message() == (wsraw.OP_TEXT, "second")
    assert opens_by_who(g, 1)["onewrite"]["remote"] == "198.51.100.78:7878"


# Bad headers

REQUEST = wsraw.handshake_request("/rec?who=bad")
BAD = [
    ("plain-http", REQUEST),
    ("tls-client-hello", CLIENT_HELLO),
    ("v1-lf-only", b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n" + REQUEST),
    ("v1-leading-zero", b"PROXY TCP4 192.0.2.01 192.0.2.2 1 2\r\n" + REQUEST),
    ("v1-port-65536", b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n" +
     REQUEST),
    ("v1-tcp4-with-ipv6", b"PROXY TCP4 ::1 ::1 1 2\r\n" + REQUEST),
    ("v1-lowercase", b"proxy TCP4 192.0.2.1 192.0.2.2 1 2\r\n" + REQUEST),
    ("v1-108-bytes", b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n" + REQUEST),
    ("v1-no-line-end", b"PROXY TCP4 " + b"1 " * 200),
    ("v2-version-1", V2_SIG + b"\x11" + v2("192.0.2.1", 1)[13:] + REQUEST),
    ("v2-command-2", V2_SIG + b"\x22" + v2("192.0.2.1", 1)[13:] + REQUEST),
    ("v2-family-0x41", V2_SIG + b"\x21\x41" + v2("192.0.2.1", 1)[14:]),
    ("v2-oversized", V2_SIG + b"\x21\x11\xff\xff" + bytes(12)),
    ("v2-short-for-ipv6", V2_SIG + b"\x21\x21\x00\x0c" + bytes(12)),
    ("v2-bad-tlv", v2("192.0.2.1", 1, tlvs=b"\x04\x00\x09ab") + REQUEST),
    ("v2-signature", b"\r\n\r\n\x00\r\nQUIT\r" + REQUEST),
]


def test_bad_headers_close_at_once_and_others_carry_on(proxy_gateway):
    """A peer that sends no valid header (a browser, a scanner, a proxy
    set up for another protocol) is closed at once, with no HTTP answer,
    and counted as refused; an oversized v2 header is refused on its
    length, not after 64 KiB; clients already in carry on, and new ones
    get in."""
    g = proxy_gateway()
    before = open_proxied(g.port, v1("192.0.2.100", 100), "/rec?who=before")
    try:
        for name, data in BAD:
            with wsraw.connect(g.port) as sock:
                sock.sendall(data)
                t0 = time.monotonic()
                expect_dropped(sock, timeout=3)
                assert time.monotonic() - t0 < 2, name
            echo_works(before, name)
        # a header cut short by the peer's FIN
        with wsraw.connect(g.port) as sock:
            sock.sendall(b"PROXY TCP4 192.0.2.1 ")
            sock.shutdown(socket.SHUT_WR)
            expect_dropped(sock)
        with open_proxied(g.port, v2("192.0.2.101", 101),
                          "/rec?who=after") as after:
            echo_works(after)
        echo_works(before)
    finally:
        before.close()
    m = metrics(g)
    assert m["gatewayd_connections_refused_total"] == len(BAD) + 1
    opens = opens_by_who(g, 2)
    assert set(opens) == {"before", "after"}
    log = g.wait_log("no valid PROXY header: connection closed")
    assert log.count("no valid PROXY header: ") == len(BAD) + 1
    assert "no valid PROXY header: not a PROXY protocol header" in log
    assert "no valid PROXY header: v2: longer than 4096 bytes" in log


def test_missing_header_times_out(proxy_gateway):
    """A connection that sends nothing, or half a header, is closed at
    handshake_timeout; meanwhile it is a client in state proxy."""
    g = proxy_gateway("handshake_timeout = 1s")
    silent = wsraw.connect(g.port)
    half = wsraw.connect(g.port)
    try:
        half.sendall(v2("192.0.2.9", 9)[:20])
        wait_for(lambda: metrics(g).get('gatewayd_clients{state="proxy"}')
                 == 2, what="two clients in state proxy")
        t0 = time.monotonic()
        expect_dropped(silent)
        expect_dropped(half)
        assert 0.5 < time.monotonic() - t0 < 4
    finally:
        silent.close()
        half.close()
    g.wait_log("no valid PROXY header: timed out")
    m = metrics(g)
    assert m['gatewayd_clients{state="proxy"}'] == 0
    assert m["gatewayd_connections_refused_total"] == 2


def test_plain_listener_beside_takes_no_header(proxy_gateway):
    """The flag is the listener's: the plain one beside takes clients
    without a header, and a PROXY header there is a malformed request."""
    g = proxy_gateway()
    with wsraw.open_raw(g.plain_port, "/rec?who=plain") as c:
        echo_works(c)
    assert status_of(g.plain_port, v1("192.0.2.3", 3)) == 400
    assert opens_by_who(g, 1)["plain"]["remote"].startswith("127.0.0.1:")


# max_connections_per_ip

def test_max_connections_per_ip_counts_the_header_address(proxy_gateway):
    """With max_connections_per_ip = 2, two proxied addresses behind one
    real one get two connections each; a third from one of them is
    answered 429 as soon as its header is read, as a plain listener
    answers at accept; the proxy's own address is not charged for
    them."""
    g = proxy_gateway("max_connections_per_ip = 2")
    conns = []
    try:
        for i in range(2):
            conns.append(open_proxied(g.port, v1("198.51.100.1", 1000 + i)))
            conns.append(open_proxied(g.port, v2("198.51.100.2", 2000 + i)))
        assert status_of(g.port, v1("198.51.100.1", 1002)) == 429
        assert status_of(g.port, v2("198.51.100.2", 2002)) == 429
        # refused on the header alone, before any request
        with wsraw.connect(g.port) as sock:
            sock.sendall(v2("198.51.100.1", 1003))
            status, _, body = wsraw.read_response_head(sock, TIMEOUT)
            assert status == 429
        # another proxied address, and the real one on the plain listener
        with open_proxied(g.port, v1("198.51.100.3", 3000)) as c:
            echo_works(c)
        with wsraw.open_raw(g.plain_port, "/rec") as c:
            echo_works(c)
        for c in conns:
            echo_works(c)
        assert metrics(g)["gatewayd_connections_refused_total"] == 3
        # one gone, one more gets in
        conns.pop(0).close()
        conns.append(wait_for(lambda: (lambda s: s if s else None)(
            try_open(g.port, v1("198.51.100.1", 1004))), what="a free slot"))
        echo_works(conns[-1])
    finally:
        for c in conns:
            c.close()


def try_open(port, header):
    try:
        return open_proxied(port, header)
    except (AssertionError, OSError, EOFError):
        return None


def test_local_headers_count_the_connection_address(proxy_gateway):
    """LOCAL connections keep the proxy's address, and are counted under
    it: a third from it is 429."""
    g = proxy_gateway("max_connections_per_ip = 2")
    a = open_proxied(g.port, v2(command=V2_LOCAL))
    b = open_proxied(g.port, b"PROXY UNKNOWN\r\n")
    try:
        assert status_of(g.port, v2(command=V2_LOCAL)) == 429
        with open_proxied(g.port, v1("198.51.100.9", 9)) as c:
            echo_works(c)
    finally:
        a.close()
        b.close()


# TLS behind the proxy

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA and a certificate for localhost and 127.0.0.1."""
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
    cert, key, ca_path = root / "cert.pem", root / "key.pem", root / "ca.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_path))
    return {"cert": cert, "key": key, "ca": str(ca_path)}


def tls_gateway(proxy_gateway, pki, gateway_opts=""):
    return proxy_gateway(f"tls_certificate = {pki['cert']}\n"
                         f"tls_key = {pki['key']}\n" + gateway_opts,
                         listen_flags="tls proxy")


def wss_socket(port, pki, header, split=None):
    """Header in the clear, then TLS: python's ssl over the socket."""
    ctx = ssl.create_default_context(cafile=pki["ca"])
    sock = wsraw.connect(port)
    try:
        send(sock, header, split, 0.001 if split else 0.0)
        return ctx.wrap_socket(sock, server_hostname="localhost")
    except BaseException:
        sock.close()
        raise


def wss_proxied(port, pki, header, path, split=None):
    """wss_socket, then the handshake; the 101 is checked."""
    tls = wss_socket(port, pki, header, split)
    key = wsraw.make_key()
    try:
        tls.sendall(wsraw.handshake_request(path, key=key))
        return check_101(tls, key)
    except BaseException:
        tls.close()
        raise


def test_tls_after_the_header(proxy_gateway, pki):
    """On a "tls proxy" listener the header comes first, in the clear,
    then the TLS handshake: the client is the header's address, over
    TLS, with v1 and v2, whole or a byte at a time."""
    g = tls_gateway(proxy_gateway, pki)
    cases = [("tls-v1", v1("203.0.113.50", 5050), None, "203.0.113.50:5050"),
             ("tls-v2", v2("2001:db8::50", 5051), None, "[2001:db8::50]:5051"),
             ("tls-bytewise", v2("203.0.113.52", 5052, tlvs=TLVS), 1,
              "203.0.113.52:5052")]
    for who, header, split, _ in cases:
        with wss_proxied(g.port, pki, header, f"/rec?who={who}", split) as c:
            echo_works(c, who)
    opens = opens_by_who(g, len(cases))
    for who, _, _, remote in cases:
        assert opens[who]["remote"] == remote
        assert opens[who]["tls"] is True
    assert "wss open from 203.0.113.50:5050, room /rec" in g.log()


def test_tls_client_hello_in_the_header_write(proxy_gateway, pki):
    """The header and the ClientHello in one write: the ClientHello is
    left for OpenSSL, not swallowed with the header."""
    g = tls_gateway(proxy_gateway, pki)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with wsraw.connect(g.port) as sock:
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        sock.sendall(v1("203.0.113.60", 6060) + outgoing.read())
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                data = sock.recv(65536)
                assert data, "closed in the TLS handshake"
                incoming.write(data)
        key = wsraw.make_key()
        obj.write(wsraw.handshake_request("/rec?who=hello", key=key))
        sock.sendall(outgoing.read())
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                answer += obj.read(65536)
            except ssl.SSLWantReadError:
                data = sock.recv(65536)
                assert data, "closed before the 101"
                incoming.write(data)
        assert answer.startswith(b"HTTP/1.1 101 ")
        assert wsraw.accept_for(key).encode() in answer
    assert opens_by_who(g, 1)["hello"]["remote"] == "203.0.113.60:6060"


def test_tls_without_header_is_closed(proxy_gateway, pki):
    """A TLS client that sends no header is closed: the ClientHello is
    no header."""
    g = tls_gateway(proxy_gateway, pki)
    ctx = ssl.create_default_context(cafile=pki["ca"])
    with wsraw.connect(g.port) as sock:
        with pytest.raises((ssl.SSLError, ConnectionResetError,
                            BrokenPipeError)):
            ctx.wrap_socket(sock, server_hostname="localhost")
    g.wait_log("no valid PROXY header: not a PROXY protocol header")
    with wss_proxied(g.port, pki, v1("203.0.113.61", 6161), "/rec") as c:
        echo_works(c)


def test_tls_429_after_the_header(proxy_gateway, pki):
    """Over max_connections_per_ip by the header's address on a tls proxy
    listener: the TLS handshake completes and the request is answered
    429, over TLS, as on a tls listener."""
    g = tls_gateway(proxy_gateway, pki, "max_connections_per_ip = 1\n")
    first = wss_proxied(g.port, pki, v1("203.0.113.70", 7070), "/rec")
    try:
        with wss_socket(g.port, pki, v1("203.0.113.70", 7071)) as tls:
            tls.sendall(wsraw.handshake_request("/rec"))
            status, _, body = wsraw.read_response_head(tls, TIMEOUT)
            assert status == 429
        echo_works(first)
        with wss_proxied(g.port, pki, v2("203.0.113.71", 7171), "/rec") as c:
            echo_works(c)
    finally:
        first.close()


# A real HAProxy in front

@pytest.fixture
def haproxy(tmp_path):
    """Start HAProxy (mode tcp) on a free port in front of 127.0.0.1:PORT,
    its server line ending in how (send-proxy, send-proxy-v2, and any
    other server options); returns the port it listens on."""
    procs = []

    def start(port, how):
        front = free_port()
        cfg = tmp_path / f"haproxy{len(procs)}.cfg"
        cfg.write_text(f"""global
    maxconn 256

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h

frontend fe
    bind 127.0.0.1:{front}
    default_backend be

backend be
    server s1 127.0.0.1:{port} {how}
""")
        log = open(tmp_path / f"haproxy{len(procs)}.log", "w")
        proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"],
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs.append(proc)

        def listening():
            if proc.poll() is not None:
                raise AssertionError(
                    "haproxy exited: " +
                    (tmp_path / f"haproxy{len(procs) - 1}.log").read_text())
            with open("/proc/net/tcp") as f:
                return any(line.split()[1] == f"0100007F:{front:04X}" and
                           line.split()[3] == "0A" for line in f
                           if line.split()[0] != "sl")
        wait_for(listening, what="haproxy to listen")
        return front

    yield start
    end_processes(procs)


@pytest.mark.parametrize("how", ["send-proxy", "send-proxy-v2"])
async def test_behind_haproxy(proxy_gateway, haproxy, how):
    """A websockets client through HAProxy: the open record says
    127.0.0.1 and the client's own source port (not HAProxy's), and so
    does a mode = client program's environment."""
    g = proxy_gateway()
    front = haproxy(g.port, how)
    async with websockets.connect(f"ws://127.0.0.1:{front}/rec?who=ha",
                                  open_timeout=TIMEOUT) as ws:
        rec_port = ws.local_address[1]
        await ws.send("through haproxy")
        assert await recv(ws) == "through haproxy"
    async with websockets.connect(f"ws://127.0.0.1:{front}/env",
                                  open_timeout=TIMEOUT) as ws:
        env_port = ws.local_address[1]
        assert await recv(ws) == f"127.0.0.1 {env_port}"
        await ws.send("and back")
        assert await recv(ws) == "and back"
    rec = opens_by_who(g, 1)["ha"]
    assert rec["remote"] == f"127.0.0.1:{rec_port}"
    log = g.log()
    assert f"ws open from 127.0.0.1:{rec_port}, room /rec" in log
    version = "v2" if how.endswith("v2") else "v1"
    assert f"PROXY {version} header: from 127.0.0.1:{rec_port}" in log
    # HAProxy's side of the connection is another port
    connected = [line for line in log.splitlines()
                 if ": connected from 127.0.0.1:" in line]
    assert connected and all(f":{rec_port}" not in line.split("from")[1]
                             for line in connected)


async def test_many_clients_through_haproxy(proxy_gateway, haproxy):
    """Twenty clients at once through HAProxy (send-proxy-v2), each one
    the port it has."""
    g = proxy_gateway()
    front = haproxy(g.port, "send-proxy-v2")
    clients = [await websockets.connect(
        f"ws://127.0.0.1:{front}/rec?who=m{i}", open_timeout=TIMEOUT)
        for i in range(20)]
    try:
        for i, ws in enumerate(clients):
            await ws.send(f"m{i}")
        for i, ws in enumerate(clients):
            assert await recv(ws) == f"m{i}"
        opens = opens_by_who(g, 20)
        for i, ws in enumerate(clients):
            assert opens[f"m{i}"]["remote"] == \
                f"127.0.0.1:{ws.local_address[1]}"
    finally:
        await asyncio.gather(*[ws.close() for ws in clients])


@pytest.mark.parametrize("how,header", [
    ("send-proxy", "PROXY v1 header: from 127.0.0.1:"),
    ("send-proxy-v2", "PROXY v2 LOCAL header: keeping 127.0.0.1:")])
async def test_haproxy_health_checks_are_no_refusals(proxy_gateway, haproxy,
                                                     how, header):
    """HAProxy's health checks (a v1 line of its own addresses, or a v2
    LOCAL header) connect, send their header and hang up, often with a
    reset: valid headers, not refused connections, even when the
    connection's own address must be counted for max_connections_per_ip;
    clients get in meanwhile."""
    g = proxy_gateway("max_connections_per_ip = 2")
    front = haproxy(g.port, how + " check inter 100ms")
    wait_for(lambda: g.log().count(header) >= 3, what="three checks")
    async with websockets.connect(f"ws://127.0.0.1:{front}/rec?who=hc",
                                  open_timeout=TIMEOUT) as ws:
        await ws.send("checked")
        assert await recv(ws) == "checked"
    log = g.log()
    assert "no valid PROXY header" not in log
    assert metrics(g)["gatewayd_connections_refused_total"] == 0
    assert opens_by_who(g, 1)["hc"]["remote"] == \
        f"127.0.0.1:{ws.local_address[1]}"
