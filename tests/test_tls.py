"""wss:// with OpenSSL (issue 12): TLS listeners beside plain ones.

What a user sees, from real clients: python websockets over wss://,
verifying the certificate against a test CA; `openssl s_client` for the
protocol versions, ciphers, ALPN, SNI and session resumption; raw sockets
for the handshakes that fail (plain HTTP, garbage, a client that stalls);
SIGHUP with new, broken and mismatched certificates while a client keeps
chatting; the privilege drop of a daemon started as root (the suite runs
as root); static files over https; and the README's chat over wss with
permessage-deflate.

Certificates are made at test time with trustme: one CA, a default
certificate for localhost and 127.0.0.1, one for chat.test and a
wildcard *.example.test, each with its own common name so that
`s_client` shows which one the server chose.
"""
import asyncio
import collections
import hashlib
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
import trustme
import websockets

import wsraw
from conftest import (GATEWAYD, ROOT, backend_cmd, example_cmd, fd_count,
                      free_port, read_records, wait_for)
from wsclient import recv

TIMEOUT = 5
SAN = "build-san" in GATEWAYD
NOBODY = 65534          # uid of nobody, gid of nogroup (Debian)

Cert = collections.namedtuple("Cert", "cert key cn serial")


class Pki:
    """The test CA and the certificates it issued, as files in one
    directory (readable by anyone: the privilege drop test needs it)."""

    def __init__(self, root):
        self.root = root
        self.ca = trustme.CA()
        self.ca_path = str(root / "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_path)
        self.default = self.issue("default", "localhost", "127.0.0.1",
                                  cn="localhost")
        self.chat = self.issue("chat", "chat.test", cn="chat.test")
        self.wild = self.issue("wild", "*.example.test", cn="*.example.test")
        self.renewed = self.issue("renewed", "localhost", "127.0.0.1",
                                  cn="renewed.localhost")

    def issue(self, name, *identities, cn):
        leaf = self.ca.issue_cert(*identities, common_name=cn)
        cert, key = str(self.root / f"{name}.pem"), str(self.root /
                                                         f"{name}.key")
        leaf.cert_chain_pems[0].write_to_path(cert)
        leaf.private_key_pem.write_to_path(key)
        out = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in",
                              cert], capture_output=True, text=True,
                             check=True).stdout
        return Cert(cert, key, cn, out.strip().split("=", 1)[1])

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca_path)
        return ctx


@pytest.fixture(scope="module")
def pki():
    # Not under pytest's base directory, which is root's alone: after
    # the privilege drop, nobody reads the certificates on SIGHUP.
    root = tempfile.mkdtemp(prefix="gatewayd-pki-")
    os.chmod(root, 0o755)
    yield Pki(pathlib.Path(root))
    shutil.rmtree(root)


def tls_config(pki, tls_port, gateway="", body="", cert=None, names=True):
    """A config with a plain listener ({port}) and a tls one beside it,
    [gateway]'s certificate (pki.default unless cert), the [tls NAME]
    sections of chat.test and *.example.test unless names is false, the
    gateway options and the resource sections of body."""
    cert = cert or pki.default
    text = ("[gateway]\n"
            "listen = 127.0.0.1:{port}\n"
            f"listen = 127.0.0.1:{tls_port} tls\n"
            f"tls_certificate = {cert.cert}\n"
            f"tls_key = {cert.key}\n" + gateway)
    if names:
        text += (f"[tls chat.test]\ntls_certificate = {pki.chat.cert}\n"
                 f"tls_key = {pki.chat.key}\n"
                 f"[tls *.example.test]\ntls_certificate = {pki.wild.cert}\n"
                 f"tls_key = {pki.wild.key}\n")
    return text + body


@pytest.fixture
def tls_gateway(gateway, pki):
    """Start gatewayd from tls_config(pki, PORT, **kw); the handle gets
    tls_port and wss(path)."""
    def start(**kw):
        tls_port = free_port()
        g = gateway(tls_config(pki, tls_port, **kw))
        g.tls_port = tls_port
        g.wss = lambda path: f"wss://127.0.0.1:{tls_port}{path}"
        return g
    return start


def config_line(g, key, after=None):
    """The line number of the first "key =" line of g's config (after the
    line that starts with after, when given)."""
    lines = g.config_path.read_text().splitlines()
    start = 0
    if after is not None:
        start = next(i for i, line in enumerate(lines)
                     if line.startswith(after))
    for i in range(start, len(lines)):
        if re.match(rf"{key}\s*=", lines[i]):
            return i + 1
    raise AssertionError(f"no {key} in {g.config_path}")


def wss_connect(g, path, pki, server_hostname=None, check_hostname=True,
                **kw):
    """A websockets client over wss:// to g's tls listener, verifying the
    server's certificate with the test CA (for server_hostname when
    given, which is then sent as SNI; else for 127.0.0.1, without SNI;
    the chain alone without check_hostname)."""
    if server_hostname is not None:
        kw["server_hostname"] = server_hostname
    ctx = pki.client_context()
    ctx.check_hostname = check_hostname
    return websockets.connect(g.wss(path), ssl=ctx, open_timeout=TIMEOUT,
                              **kw)


# openssl s_client

SClient = collections.namedtuple(
    "SClient", "ok reused protocol cipher cn alpn verified output")


def parse_s_client(output):
    m = re.search(r"^(New|Reused), (\S+), Cipher is (\S+)", output, re.M)
    assert m is not None, output
    cn = re.search(r"^subject=.*?CN ?= ?([^,\n]+)", output, re.M)
    alpn = re.search(r"^ALPN protocol: (\S+)", output, re.M)
    return SClient(ok=m.group(2) != "(NONE)", reused=m.group(1) == "Reused",
                   protocol=m.group(2), cipher=m.group(3),
                   cn=cn.group(1).strip() if cn else None,
                   alpn=alpn.group(1) if alpn else None,
                   verified="Verify return code: 0 (ok)" in output,
                   output=output)


def s_client_cmd(port, pki, *args, servername=None):
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
           "-CAfile", pki.ca_path]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    return cmd + list(args)


def s_client(port, pki, *args, servername=None):
    """Run one `openssl s_client` handshake (stdin at its end at once) and
    return what it printed, parsed."""
    p = subprocess.run(s_client_cmd(port, pki, *args, servername=servername),
                       stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=20)
    return parse_s_client(p.stdout.decode(errors="replace") +
                          p.stderr.decode(errors="replace"))


def s_client_save_session(port, pki, path, *args, servername=None):
    """A handshake whose session s_client saves to path (-sess_out).
    TLS 1.3 tickets come after the handshake: stdin stays open until
    s_client has written the session, then the client closes as any
    client does (close_notify, then FIN)."""
    p = subprocess.Popen(s_client_cmd(port, pki, "-sess_out", path, *args,
                                      servername=servername),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.exists(path) and os.path.getsize(path) > 0,
                 what="s_client to save its session")
        time.sleep(0.2)         # the second TLS 1.3 ticket, if any
    finally:
        p.stdin.close()
        out = p.stdout.read().decode(errors="replace")
        p.wait(10)
    return parse_s_client(out)


async def chat_until(ws, stop, counter, prefix="tick"):
    """Send numbered messages and check their echoes until stop is set;
    counter[0] counts the round trips."""
    while not stop.is_set():
        text = f"{prefix} {counter[0]}"
        await ws.send(text)
        assert await recv(ws) == text
        counter[0] += 1
        await asyncio.sleep(0.01)


# wss:// with python websockets


async def test_wss_echo_and_open_records(tls_gateway, pki, tmp_path):
    """Clients over wss:// (the certificate checked against the CA) and
    over ws:// beside it reach the same room; each open record says
    "tls" and, over TLS, the name the client asked for (null without
    SNI and on the plain listener)."""
    records = tmp_path / "records.jsonl"
    g = tls_gateway(body="[resource /rec]\nbackend = " +
                    backend_cmd("recorder.py", records) + "\n")
    cases = [("tls-ip", None, True, None),
             ("tls-localhost", "localhost", True, "localhost"),
             ("tls-chat", "chat.test", True, "chat.test"),
             ("tls-wild", "x.example.test", True, "x.example.test"),
             # No section claims it: [gateway]'s certificate (for
             # localhost, so the name is not checked), and the name the
             # client asked for in the record.
             ("tls-unknown", "Unknown.Test", True, "Unknown.Test")]
    for name, sni, tls, server_name in cases:
        async with wss_connect(g, f"/rec?who={name}", pki,
                               server_hostname=sni,
                               check_hostname=name != "tls-unknown") as ws:
            await ws.send(f"hello from {name}")
            assert await recv(ws) == f"hello from {name}"
            await ws.send(b"\x00\x01binary")
            assert await recv(ws) == b"\x00\x01binary"
    async with websockets.connect(g.url("/rec?who=plain"),
                                  open_timeout=TIMEOUT) as ws:
        await ws.send("hello plain")
        assert await recv(ws) == "hello plain"
    cases.append(("plain", None, False, None))

    opens = read_records(records, until=lambda r: len(
        [x for x in r if x["type"] == "open"]) == len(cases))
    opens = {r["query"].split("=")[1]: r for r in opens if r["type"] == "open"}
    for name, sni, tls, server_name in cases:
        rec = opens[name]
        assert rec["tls"] is tls, rec
        assert "server_name" in rec and rec["server_name"] == server_name, rec


async def test_wss_large_messages_both_ways(tls_gateway, pki):
    """Messages of up to 8 MiB cross TLS records whole, both ways, as
    text and binary, and the connection goes on."""
    g = tls_gateway(gateway="max_message_size = 16M\n"
                    "max_client_buffer = 64M\n",
                    body="[resource /echo]\nbackend = " +
                    example_cmd("echo/room.py") + "\n")
    async with wss_connect(g, "/echo", pki, max_size=None,
                           compression=None) as ws:
        for n in (16383, 16384, 16385, 1 << 20, 8 << 20):
            data = os.urandom(n)
            await ws.send(data)
            assert await recv(ws, 30) == data
            text = ("\u00e9t\u00e9 " * (n // 6 + 1))[:n // 2]
            await ws.send(text)
            assert await recv(ws, 30) == text


async def test_wss_flood_through_a_slow_room_keeps_order(tls_gateway, pki):
    """A client that pours 3000 messages over TLS into a room whose
    backend lags (a small backend_buffer pauses the room's clients, with
    records already decrypted inside OpenSSL) gets every echo, in
    order."""
    g = tls_gateway(gateway="backend_buffer = 4K\n",
                    body="[resource /echo]\nbackend = " +
                    example_cmd("echo/room.py") + "\n")
    msgs = [f"{i:05d} " + "x" * (i % 700) for i in range(3000)]
    async with wss_connect(g, "/echo", pki) as ws:
        async def sender():
            for m in msgs:
                await ws.send(m)
        task = asyncio.ensure_future(sender())
        for m in msgs:
            assert await recv(ws, 20) == m
        await task


async def test_broadcast_of_large_messages_to_wss_clients(tls_gateway,
                                                         pki):
    """20 wss clients of the chat room: broadcasts of up to 200 KB (one
    frame shared by every client's queue, written record by record
    through each one's TLS) reach every client whole, compressed or
    not."""
    g = tls_gateway(body="[resource /chat]\nbackend = " +
                    example_cmd("chat/room.py") + "\n")
    clients = []
    try:
        for i in range(20):
            ws = await wss_connect(g, f"/chat?name=w{i}", pki, max_size=None,
                                   max_queue=None,
                                   compression=None if i % 2 else "deflate")
            clients.append(ws)
            assert await recv(ws) == f"w{i} has joined /chat"
        for i, ws in enumerate(clients):
            for j in range(i + 1, 20):
                assert await recv(ws) == f"w{j} has joined /chat"
        texts = [("%06d " % n) + "\u00e9" * (n // 2) for n in
                 (1000, 20000, 100000)]
        for t in texts:
            await clients[0].send(t)
            for ws in clients:
                assert await recv(ws, 20) == f"w0 says {t}"
    finally:
        await asyncio.gather(*[ws.close() for ws in clients])


@pytest.mark.parametrize("limit,status", [
    ("max_connections = 2", 503), ("max_connections_per_ip = 2", 429)])
async def test_refusals_over_tls_are_http_answers(tls_gateway, pki, limit,
                                                  status):
    """A wss client over max_connections (max_connections_per_ip) is
    answered 503 (429), as docs/POLICY.md says, over TLS: not with
    plain-text HTTP bytes in the middle of its TLS handshake."""
    g = tls_gateway(gateway=limit + "\n",
                    body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    async with wss_connect(g, "/echo", pki) as a, \
            wss_connect(g, "/echo", pki) as b:
        await a.send("a")
        await b.send("b")
        assert (await recv(a), await recv(b)) == ("a", "b")
        # The plain listener's answer, for comparison.
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await websockets.connect(g.url("/echo"), open_timeout=TIMEOUT)
        assert e.value.status_code == status
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await wss_connect(g, "/echo", pki)
        assert e.value.status_code == status


async def test_http_errors_over_tls(tls_gateway, pki):
    """Handshake errors are HTTP answers inside TLS: 404 for an unknown
    path, 400 for a bad upgrade request, 408 for a client that
    completes the TLS handshake but sends no request head within
    handshake_timeout."""
    g = tls_gateway(gateway="handshake_timeout = 1s\n",
                    body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
        await wss_connect(g, "/nowhere", pki)
    assert e.value.status_code == 404
    ctx = pki.client_context()

    def bad_then_silent():
        with ctx.wrap_socket(socket.create_connection(
                ("127.0.0.1", g.tls_port), timeout=5),
                server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n"
                      b"Upgrade: websocket\r\n\r\n")
            bad = s.recv(4096)
        with ctx.wrap_socket(socket.create_connection(
                ("127.0.0.1", g.tls_port), timeout=5),
                server_hostname="127.0.0.1") as s:
            t0 = time.monotonic()
            silent = s.recv(4096)
            return bad, silent, time.monotonic() - t0

    bad, silent, took = await asyncio.get_running_loop().run_in_executor(
        None, bad_then_silent)
    assert bad.startswith(b"HTTP/1.1 400 "), bad
    assert silent.startswith(b"HTTP/1.1 408 "), silent
    assert took < 3, took


async def test_per_connection_program_sees_https(tls_gateway, pki):
    """mode = client: the program of a wss client gets HTTPS=on (as
    websocketd sets it, docs/WEBSOCKETD.md); that of a ws client gets no
    HTTPS at all."""
    g = tls_gateway(body="[resource /env]\n"
                    "backend = exec:/bin/sh -c 'echo \"HTTPS=${HTTPS-unset}\"'"
                    "\nmode = client\n")
    async with wss_connect(g, "/env", pki) as ws:
        assert await recv(ws) == "HTTPS=on"
    async with websockets.connect(g.url("/env"), open_timeout=TIMEOUT) as ws:
        assert await recv(ws) == "HTTPS=unset"


# Versions, ciphers, ALPN, SNI, resumption: openssl s_client


@pytest.mark.parametrize("flag,accepted", [
    ("-tls1", False), ("-tls1_1", False), ("-tls1_2", True),
    ("-tls1_3", True)])
def test_versions_by_default(tls_gateway, pki, flag, accepted):
    """TLS 1.2 and 1.3 by default; a TLS 1.0 or 1.1 client (told to go
    as low as its library lets it) gets a protocol_version alert."""
    g = tls_gateway(body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    r = s_client(g.tls_port, pki, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert r.ok is accepted, r.output
    if accepted:
        assert r.protocol == {"-tls1_2": "TLSv1.2",
                              "-tls1_3": "TLSv1.3"}[flag]
        assert r.verified and r.cn == "localhost", r.output
    else:
        assert "alert protocol version" in r.output, r.output


def test_min_version_1_3_refuses_1_2(tls_gateway, pki):
    g = tls_gateway(gateway="tls_min_version = 1.3\n",
                    body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    r = s_client(g.tls_port, pki, "-tls1_2")
    assert not r.ok and "alert protocol version" in r.output, r.output
    r = s_client(g.tls_port, pki, "-tls1_3")
    assert r.ok and r.protocol == "TLSv1.3", r.output


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_min_version_1_0_lets_old_clients_in(tls_gateway, pki, flag):
    """tls_min_version = 1.0 is documented as "the oldest TLS version
    accepted": a TLS 1.0 (1.1) client must then complete a handshake,
    which needs a cipher those versions have (the intermediate list's
    are all TLS 1.2 AEAD ciphers)."""
    g = tls_gateway(gateway="tls_min_version = 1.0\n",
                    body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    r = s_client(g.tls_port, pki, flag, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert r.ok, r.output


def test_intermediate_ciphers_in_server_order(tls_gateway, pki):
    """TLS 1.2: the server's order wins (AES-GCM first, whatever the
    client prefers); CBC and RSA key exchange, outside Mozilla's
    intermediate profile, are refused."""
    g = tls_gateway(body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    r = s_client(g.tls_port, pki, "-tls1_2", "-cipher",
                 "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256")
    assert r.ok and r.cipher == "ECDHE-RSA-AES128-GCM-SHA256", r.output
    r = s_client(g.tls_port, pki, "-tls1_2", "-cipher",
                 "ECDHE-RSA-CHACHA20-POLY1305")
    assert r.ok and r.cipher == "ECDHE-RSA-CHACHA20-POLY1305", r.output
    for weak in ("ECDHE-RSA-AES128-SHA", "AES128-GCM-SHA256", "AES256-SHA"):
        r = s_client(g.tls_port, pki, "-tls1_2", "-cipher", weak)
        assert not r.ok, (weak, r.output)


@pytest.mark.parametrize("servername", [None, "chat.test"])
@pytest.mark.parametrize("offer,expected", [
    ("http/1.1", "http/1.1"), ("h2,http/1.1", "http/1.1"), ("h2", None)])
def test_alpn(tls_gateway, pki, offer, expected, servername):
    """ALPN: http/1.1 when offered; a client offering only h2 still
    connects, with no protocol agreed.  The same with a [tls NAME]
    certificate."""
    g = tls_gateway(body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    r = s_client(g.tls_port, pki, "-alpn", offer, servername=servername)
    assert r.ok, r.output
    assert r.alpn == expected, r.output
    if expected is None:
        assert "No ALPN negotiated" in r.output
    assert r.cn == (servername or "localhost")


@pytest.mark.parametrize("name,cn", [
    ("chat.test", "chat.test"),
    ("CHAT.Test", "chat.test"),
    ("x.example.test", "*.example.test"),
    ("www.example.test", "*.example.test"),
    ("a.b.example.test", "localhost"),       # one label only
    ("example.test", "localhost"),           # not the domain itself
    ("xexample.test", "localhost"),
    ("unknown.test", "localhost"),
    ("localhost", "localhost"),
    (None, "localhost"),
])
def test_sni_picks_the_certificate(tls_gateway, pki, name, cn):
    g = tls_gateway(body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    for version in ("-tls1_2", "-tls1_3"):
        r = s_client(g.tls_port, pki, version, servername=name)
        assert r.ok and r.cn == cn, (version, r.output)
        assert r.verified, r.output


def test_exact_name_before_wildcard_whatever_the_order(tls_gateway, pki):
    """A [tls NAME] with an exact name wins over a wildcard that also
    matches, though the wildcard comes first in the file; the wildcard
    still serves the other names, and tls_min_version holds for a
    section's certificate too."""
    body = (f"[tls *.example.test]\ntls_certificate = {pki.wild.cert}\n"
            f"tls_key = {pki.wild.key}\n"
            f"[tls exact.example.test]\ntls_certificate = {pki.chat.cert}\n"
            f"tls_key = {pki.chat.key}\n"
            "[resource /echo]\nbackend = exec:cat\nmode = client\n")
    g = tls_gateway(names=False, gateway="tls_min_version = 1.3\n",
                    body=body)
    assert s_client(g.tls_port, pki,
                    servername="exact.example.test").cn == "chat.test"
    assert s_client(g.tls_port, pki,
                    servername="other.example.test").cn == "*.example.test"
    r = s_client(g.tls_port, pki, "-tls1_2", servername="exact.example.test")
    assert not r.ok, r.output


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
@pytest.mark.parametrize("name", [None, "chat.test"])
def test_session_resumption_by_ticket(tls_gateway, pki, tmp_path, version,
                                      name):
    """A session saved by one s_client (-sess_out) is resumed by the next
    (-sess_in), for the default certificate and for a [tls NAME] one."""
    g = tls_gateway(body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    sess = str(tmp_path / "session.pem")
    first = s_client_save_session(g.tls_port, pki, sess, version,
                                  servername=name)
    assert first.ok and not first.reused, first.output
    again = s_client(g.tls_port, pki, version, "-sess_in", sess,
                     servername=name)
    assert again.ok and again.reused, again.output


def test_session_from_before_sighup_is_a_full_handshake(tls_gateway, pki,
                                                        tmp_path):
    """A reload rotates the ticket keys (gatewayd/tls.h): a session saved
    before SIGHUP is not resumed after it, and the handshake simply
    goes the full way."""
    g = tls_gateway(body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    sess = str(tmp_path / "session.pem")
    for version in ("-tls1_2", "-tls1_3"):
        if os.path.exists(sess):
            os.unlink(sess)
        s_client_save_session(g.tls_port, pki, sess, version)
        sighup(g, "applied")
        again = s_client(g.tls_port, pki, version, "-sess_in", sess)
        assert again.ok and not again.reused, again.output


def test_session_resumption_by_cache(tls_gateway, pki, tmp_path):
    """TLS 1.2 without tickets (-no_ticket): the server's session cache
    resumes the session of a connection that has ended (the client
    closed it the usual way: close_notify, then FIN), twice in a row."""
    g = tls_gateway(body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    sess = str(tmp_path / "session.pem")
    first = s_client_save_session(g.tls_port, pki, sess, "-tls1_2",
                                  "-no_ticket")
    assert first.ok and not first.reused, first.output
    for _ in range(2):
        again = s_client(g.tls_port, pki, "-tls1_2", "-no_ticket",
                         "-sess_in", sess)
        assert again.ok and again.reused, again.output


def test_session_resumption_by_cache_while_first_is_open(tls_gateway, pki,
                                                         tmp_path):
    """The same while the first connection is still open (what works
    today: the cache entry lives as long as that connection)."""
    g = tls_gateway(body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    sess = str(tmp_path / "session.pem")
    p = subprocess.Popen(s_client_cmd(g.tls_port, pki, "-tls1_2",
                                      "-no_ticket", "-sess_out", sess),
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(sess) and os.path.getsize(sess) > 0,
                 what="the session file")
        again = s_client(g.tls_port, pki, "-tls1_2", "-no_ticket",
                         "-sess_in", sess)
        assert again.ok and again.reused, again.output
    finally:
        p.stdin.close()
        p.wait(10)


# The handshake's edges


def memory_bio_client(port, pki, version, split=None):
    """A TLS client on memory BIOs, driven by hand over a socket: returns
    (socket, SSLObject, incoming BIO, outgoing BIO) once the client's
    side of the handshake is done.  split sends its first flight (the
    ClientHello) in pieces of that many bytes."""
    ctx = pki.client_context()
    ctx.minimum_version = ctx.maximum_version = version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    first = True
    while True:
        try:
            obj.do_handshake()
            return sock, obj, incoming, outgoing
        except ssl.SSLWantReadError:
            data = outgoing.read()
            if data and split and first:
                for i in range(0, len(data), split):
                    sock.sendall(data[i:i + split])
                    time.sleep(0.002)
            elif data:
                sock.sendall(data)
            first = False
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed during the handshake")
            incoming.write(chunk)


def bio_read_until(sock, obj, incoming, marker, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    got = b""
    while marker not in got:
        try:
            got += obj.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} in {got!r}")
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"closed with {got!r}")
        incoming.write(chunk)
    return got


@pytest.mark.parametrize("version,split", [
    (ssl.TLSVersion.TLSv1_3, None), (ssl.TLSVersion.TLSv1_2, None),
    (ssl.TLSVersion.TLSv1_3, 1), (ssl.TLSVersion.TLSv1_2, 7)],
    ids=["1.3", "1.2", "1.3-hello-bytewise", "1.2-hello-in-7s"])
def test_request_in_the_flight_of_the_finished(tls_gateway, pki, version,
                                               split):
    """A client whose last handshake message, its upgrade request and a
    first frame leave in one segment (TLS 1.3 lets the request follow
    the client's Finished at once) is answered without waiting for
    more bytes: the request is already inside OpenSSL, which epoll
    cannot see.  The ClientHello may come a byte at a time."""
    g = tls_gateway(body="[resource /echo]\nbackend = " +
                    example_cmd("echo/room.py") + "\n")
    sock, obj, incoming, outgoing = memory_bio_client(g.tls_port, pki,
                                                      version, split)
    with sock:
        key = wsraw.make_key()
        obj.write(wsraw.handshake_request("/echo", key=key) +
                  wsraw.encode_frame(wsraw.OP_TEXT, b"first frame"))
        sock.sendall(outgoing.read())
        got = bio_read_until(sock, obj, incoming, b"first frame")
        head, _, rest = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert wsraw.accept_for(key).encode() in head
        assert rest == b"\x81\x0bfirst frame"


# Failed handshakes


def client_hello():
    """The bytes of a real TLS ClientHello (python's ssl, memory BIOs)."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    data = outgoing.read()
    assert data[:1] == b"\x16", data[:5]
    return data


def read_to_end(sock, timeout):
    """Everything the server sends until it ends the connection (FIN or
    reset); TimeoutError if it does not within timeout."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the server kept the connection open")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return bytes(got)
        if not chunk:
            return bytes(got)
        got += chunk


def new_log_lines(g, since):
    return g.log()[since:].splitlines()


async def test_failed_handshakes_cost_nothing(tls_gateway, pki):
    """Plain HTTP to the TLS port, 64 KiB of random bytes, a ClientHello
    then silence past handshake_timeout (1s), and a connection that
    says nothing: each is closed, the daemon stays responsive (a wss
    client chats throughout), its descriptors come back to their count
    before, and its log says nothing about them above debug level."""
    g = tls_gateway(gateway="handshake_timeout = 1s\nlog_level = debug\n",
                    body="[resource /echo]\nbackend = " +
                    example_cmd("echo/room.py") + "\n")
    async with wss_connect(g, "/echo", pki) as ws:
        await ws.send("warm up")
        assert await recv(ws) == "warm up"
        baseline = fd_count(g.proc.pid)
        mark = len(g.log())
        stop, counter = asyncio.Event(), [0]
        chatter = asyncio.ensure_future(chat_until(ws, stop, counter))
        loop = asyncio.get_running_loop()

        def abuse():
            started = time.monotonic()
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", g.tls_port),
                                              timeout=5) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    out = read_to_end(s, 5)
                    assert b"HTTP/1.1 200" not in out
                with socket.create_connection(("127.0.0.1", g.tls_port),
                                              timeout=5) as s:
                    try:
                        s.sendall(os.urandom(65536))
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    read_to_end(s, 5)
            socks = []
            for _ in range(3):
                s = socket.create_connection(("127.0.0.1", g.tls_port),
                                             timeout=5)
                s.sendall(client_hello())
                socks.append(s)
                socks.append(socket.create_connection(
                    ("127.0.0.1", g.tls_port), timeout=5))
            t0 = time.monotonic()
            for s in socks:
                read_to_end(s, 5)
                s.close()
            stalled = time.monotonic() - t0
            return stalled, time.monotonic() - started

        stalled, total = await loop.run_in_executor(None, abuse)
        # handshake_timeout is 1s: the stalled ones go after 1 s, not 10.
        assert 0.8 < stalled < 3, stalled
        await asyncio.sleep(0.3)
        stop.set()
        await chatter
        assert counter[0] > 10
        await ws.send("still here")
        assert await recv(ws) == "still here"
    # A new client is served as before.
    async with wss_connect(g, "/echo", pki) as ws:
        await ws.send("new")
        assert await recv(ws) == "new"
    wait_for(lambda: fd_count(g.proc.pid) <= baseline,
             what=f"the descriptors back to {baseline}")
    lines = new_log_lines(g, mark)
    assert sum("TLS handshake failed" in x for x in lines) >= 6, lines
    assert sum("TLS handshake timed out" in x for x in lines) == 6, lines
    # Only the access log of the real clients is above debug.
    loud = [x for x in lines if "gatewayd: debug: " not in x
            and not re.search(r"gatewayd: info: c\d+: (wss open from |"
                             r"closed \d+ after )", x)]
    assert loud == [], loud


def test_failed_handshakes_silent_at_info(tls_gateway, pki):
    """At the default log_level (info), the same abuse writes nothing."""
    g = tls_gateway(gateway="handshake_timeout = 1s\n",
                    body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    mark = len(g.log())
    for payload in (b"GET / HTTP/1.0\r\n\r\n", os.urandom(65536),
                    client_hello(), b""):
        with socket.create_connection(("127.0.0.1", g.tls_port),
                                      timeout=5) as s:
            try:
                s.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass
            read_to_end(s, 5)
    r = s_client(g.tls_port, pki, "-tls1")
    assert not r.ok
    r = s_client(g.tls_port, pki)
    assert r.ok
    assert new_log_lines(g, mark) == []


# SIGHUP


def replace_file(path, content):
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(content)
    os.replace(tmp, path)


def sighup(g, expect):
    """Send SIGHUP and wait for the next log line containing expect."""
    before = g.log().count(expect)
    g.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: g.log().count(expect) > before,
             what=f"{expect!r} after SIGHUP")


async def test_sighup_reloads_certificates_without_dropping_anyone(
        tls_gateway, pki, tmp_path):
    """A new certificate (another serial and CN) in place and SIGHUP: new
    connections get it, while a wss client that chats all along is
    never disconnected.  Then garbage instead of the certificate, and
    separately a key that does not match it: each SIGHUP is refused
    with FILE:LINE of the config key that names the file, the last good
    certificate stays in use, and the client keeps chatting."""
    live = tmp_path / "live"
    live.mkdir()
    cert, key = str(live / "cert.pem"), str(live / "key.pem")
    shutil.copy(pki.default.cert, cert)
    shutil.copy(pki.default.key, key)
    g = tls_gateway(cert=Cert(cert, key, "localhost", None),
                    body="[resource /echo]\nbackend = " +
                    example_cmd("echo/room.py") + "\n")
    cert_line = config_line(g, "tls_certificate")
    key_line = config_line(g, "tls_key")
    cfg = str(g.config_path)
    loop = asyncio.get_running_loop()

    def cn_now():
        return s_client(g.tls_port, pki).cn

    async with wss_connect(g, "/echo", pki) as ws:
        stop, counter = asyncio.Event(), [0]
        chatter = asyncio.ensure_future(chat_until(ws, stop, counter))
        assert await loop.run_in_executor(None, cn_now) == "localhost"

        # A renewed certificate.
        replace_file(cert, open(pki.renewed.cert, "rb").read())
        replace_file(key, open(pki.renewed.key, "rb").read())
        before = counter[0]
        await loop.run_in_executor(None, sighup, g,
                                   "applied")
        r = await loop.run_in_executor(None, s_client, g.tls_port, pki)
        assert r.ok and r.cn == "renewed.localhost" and r.verified, r.output
        async with wss_connect(g, "/echo", pki) as ws2:
            await ws2.send("on the new certificate")
            assert await recv(ws2) == "on the new certificate"
            peer = ws2.transport.get_extra_info("ssl_object")
            der = peer.getpeercert(binary_form=True)
            assert der == ssl.PEM_cert_to_DER_cert(
                open(pki.renewed.cert).read())

        # Garbage instead of the certificate.
        replace_file(cert, b"this is not a certificate\n")
        await loop.run_in_executor(None, sighup, g,
                                   "is invalid; nothing changed")
        assert f"{cfg}:{cert_line}: tls_certificate '{cert}': " in g.log(), \
            g.log()
        assert await loop.run_in_executor(None, cn_now) == \
            "renewed.localhost"

        # The certificate back, a key that does not match it.
        replace_file(cert, open(pki.renewed.cert, "rb").read())
        replace_file(key, open(pki.chat.key, "rb").read())
        await loop.run_in_executor(None, sighup, g,
                                   "is invalid; nothing changed")
        assert f"{cfg}:{key_line}: tls_key '{key}': " in g.log(), g.log()
        assert await loop.run_in_executor(None, cn_now) == \
            "renewed.localhost"

        # A key that is not a key.
        replace_file(key, b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
                     b"-----END PRIVATE KEY-----\n")
        await loop.run_in_executor(None, sighup, g,
                                   "is invalid; nothing changed")
        assert g.log().count(f"{cfg}:{key_line}: tls_key '{key}': ") == 2
        assert await loop.run_in_executor(None, cn_now) == \
            "renewed.localhost"

        await asyncio.sleep(0.2)
        stop.set()
        await chatter
        assert counter[0] > before + 10
        await ws.send("never dropped")
        assert await recv(ws) == "never dropped"
    assert g.proc.poll() is None


def test_handshakes_in_flight_survive_a_reload(tls_gateway, pki, tmp_path):
    """Clients in the middle of their TLS handshake at SIGHUP (ClientHello
    sent, the server's answer not yet taken) finish it afterwards with
    the certificate they were offered, and are served; under ASan this
    also checks that the old contexts outlive their last connection."""
    live = tmp_path / "live"
    live.mkdir()
    cert, key = str(live / "cert.pem"), str(live / "key.pem")
    shutil.copy(pki.default.cert, cert)
    shutil.copy(pki.default.key, key)
    g = tls_gateway(cert=Cert(cert, key, "localhost", None),
                    body="[resource /echo]\nbackend = " +
                    example_cmd("echo/room.py") + "\n")
    pending = []
    for i in range(10):
        ctx = pki.client_context()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing,
                           server_hostname="chat.test" if i % 2 else
                           "localhost")
        with pytest.raises(ssl.SSLWantReadError):
            obj.do_handshake()
        sock = socket.create_connection(("127.0.0.1", g.tls_port),
                                        timeout=TIMEOUT)
        sock.sendall(outgoing.read())
        pending.append((sock, obj, incoming, outgoing))
    time.sleep(0.2)
    replace_file(cert, open(pki.renewed.cert, "rb").read())
    replace_file(key, open(pki.renewed.key, "rb").read())
    sighup(g, "applied")
    for i, (sock, obj, incoming, outgoing) in enumerate(pending):
        with sock:
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    data = outgoing.read()
                    if data:
                        sock.sendall(data)
                    chunk = sock.recv(65536)
                    assert chunk, "closed in the handshake"
                    incoming.write(chunk)
            cn = dict(x[0] for x in obj.getpeercert()["subject"])[
                "commonName"]
            assert cn == ("chat.test" if i % 2 else "localhost")
            key_ = wsraw.make_key()
            obj.write(wsraw.handshake_request("/echo", key=key_) +
                      wsraw.encode_frame(wsraw.OP_TEXT, b"after reload"))
            sock.sendall(outgoing.read())
            got = bio_read_until(sock, obj, incoming, b"after reload")
            assert got.startswith(b"HTTP/1.1 101 ")
    assert s_client(g.tls_port, pki).cn == "renewed.localhost"


async def test_sighup_broken_name_section_keeps_everything(tls_gateway, pki,
                                                           tmp_path):
    """A [tls NAME] certificate broken at SIGHUP: the error names that
    section's tls_certificate line; no context changes, not even the
    default one that did load (the reload is all or nothing)."""
    live = tmp_path / "live"
    live.mkdir()
    chat_cert = str(live / "chat.pem")
    shutil.copy(pki.chat.cert, chat_cert)
    body = ("[tls chat.test]\n"
            f"tls_certificate = {chat_cert}\ntls_key = {pki.chat.key}\n"
            "[resource /echo]\nbackend = exec:cat\nmode = client\n")
    live_cert = str(live / "default.pem")
    live_key = str(live / "default.key")
    shutil.copy(pki.default.cert, live_cert)
    shutil.copy(pki.default.key, live_key)
    g = tls_gateway(cert=Cert(live_cert, live_key, "localhost", None),
                    names=False, body=body)
    line = config_line(g, "tls_certificate", after="[tls chat.test]")
    replace_file(chat_cert, b"garbage")
    replace_file(live_cert, open(pki.renewed.cert, "rb").read())
    replace_file(live_key, open(pki.renewed.key, "rb").read())
    sighup(g, "is invalid; nothing changed")
    assert f"{g.config_path}:{line}: tls_certificate '{chat_cert}': " in \
        g.log(), g.log()
    assert s_client(g.tls_port, pki, servername="chat.test").cn == "chat.test"
    assert s_client(g.tls_port, pki).cn == "localhost"
    replace_file(chat_cert, open(pki.chat.cert, "rb").read())
    sighup(g, "applied")
    assert s_client(g.tls_port, pki).cn == "renewed.localhost"
    assert s_client(g.tls_port, pki, servername="chat.test").cn == "chat.test"


def test_bad_certificate_at_start_names_the_line(pki, tmp_path):
    """At start a certificate that does not load is a config error with
    FILE:LINE, and gatewayd -t says so too."""
    bad = tmp_path / "bad.pem"
    bad.write_text("garbage\n")
    cfg = tmp_path / "bad.ini"
    text = tls_config(pki, free_port(), cert=Cert(str(bad), pki.default.key,
                                                  None, None),
                      body="[resource /echo]\nbackend = exec:cat\n"
                      "mode = client\n").replace("{port}", str(free_port()))
    cfg.write_text(text)
    line = next(i + 1 for i, x in enumerate(text.splitlines())
                if x.startswith("tls_certificate"))
    p = subprocess.run([GATEWAYD, "-t", "-c", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode != 0
    assert f"{cfg}:{line}: tls_certificate '{bad}': " in p.stderr, p.stderr


# Privileges


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            out[name] = value.split()
    return out


async def whoami(ws):
    await ws.send("whoami")
    return json.loads(await recv(ws))


@pytest.fixture
def root_only_key(pki, tmp_path):
    """A copy of the default key, mode 600, owned by root, in a directory
    nobody may enter."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    key = str(d / "key.pem")
    shutil.copy(pki.default.key, key)
    os.chown(key, 0, 0)
    os.chmod(key, 0o600)
    return key


@pytest.mark.parametrize("user,group", [
    ("nobody", "nogroup"), ("nobody", None), ("65534", "65534")])
async def test_privilege_drop(tls_gateway, pki, root_only_key, tmp_path,
                              user, group):
    """Started as root, with supplementary groups, with user = nobody (and
    group = nogroup, or the user's own): the listeners are bound, the
    root-only key read and the static directory (below a directory only
    root may enter) opened first; then the daemon and the backends it
    spawns run as nobody, with nobody's groups only."""
    www = tmp_path / "www"          # tmp_path: root's alone (0700)
    www.mkdir(mode=0o755)
    (www / "index.html").write_text("static after the drop\n")
    os.chmod(www / "index.html", 0o644)
    conf = f"user = {user}\nstatic_dir = {www}\n" + \
        (f"group = {group}\n" if group else "")
    groups = os.getgroups()
    os.setgroups([0, 4, 27, 100])       # root, adm, sudo, users
    try:
        g = tls_gateway(gateway=conf,
                        cert=Cert(pki.default.cert, root_only_key,
                                  "localhost", None),
                        body="[resource /s]\nbackend = " +
                        backend_cmd("scripted.py") + "\n")
    finally:
        os.setgroups(groups)
    st = proc_status(g.proc.pid)
    assert st["Uid"] == [str(NOBODY)] * 4, st["Uid"]
    assert st["Gid"] == [str(NOBODY)] * 4, st["Gid"]
    assert st["Groups"] == [str(NOBODY)], st["Groups"]
    assert "running as user nobody (uid 65534, gid 65534)" in g.log()
    assert "running as root" not in g.log()
    async with wss_connect(g, "/s", pki) as ws:
        me = await whoami(ws)
    bst = proc_status(me["pid"])
    assert bst["Uid"] == [str(NOBODY)] * 4, bst["Uid"]
    assert bst["Gid"] == [str(NOBODY)] * 4, bst["Gid"]
    assert bst["Groups"] == [str(NOBODY)], bst["Groups"]
    async with websockets.connect(g.url("/s"), open_timeout=TIMEOUT) as ws:
        assert (await whoami(ws))["pid"] == me["pid"]
    c = http.client.HTTPSConnection("127.0.0.1", g.tls_port,
                                    context=pki.client_context(),
                                    timeout=TIMEOUT)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"static after the drop\n")
    finally:
        c.close()


@pytest.mark.parametrize("conf,error", [
    ("user = no-such-user\n", "user: no user 'no-such-user'"),
    ("user = nobody\ngroup = no-such-group\n",
     "group: no group 'no-such-group'")])
def test_unknown_user_or_group_stops_the_start(pki, tmp_path, conf, error):
    """An unknown user or group: gatewayd does not start, and says which
    line of the config named it."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    text = tls_config(pki, free_port(), gateway=conf,
                      body="[resource /echo]\nbackend = exec:cat\n"
                      "mode = client\n").replace("{port}", str(free_port()))
    cfg = tmp_path / "g.ini"
    cfg.write_text(text)
    key = error.split(":")[0]
    line = next(i + 1 for i, x in enumerate(text.splitlines())
                if x.startswith(key + " ="))
    p = subprocess.run([GATEWAYD, "-c", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert f"{cfg}:{line}: {error}" in p.stderr, p.stderr
    assert "ready" not in p.stderr


def test_user_without_root_must_be_oneself(pki, tmp_path):
    """Started as nobody: user = nobody is accepted as it is; another
    user cannot be become, which stops the start with FILE:LINE."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    d = pathlib.Path(tempfile.mkdtemp(prefix="gatewayd-nobody-"))
    try:
        os.chmod(d, 0o755)
        for user, ok in (("nobody", True), ("daemon", False)):
            port = free_port()
            text = tls_config(pki, free_port(), gateway=f"user = {user}\n",
                              body="[resource /echo]\nbackend = exec:cat\n"
                              "mode = client\n").replace("{port}", str(port))
            cfg = d / f"{user}.ini"
            cfg.write_text(text)
            os.chmod(cfg, 0o644)
            p = subprocess.Popen([GATEWAYD, "-c", str(cfg)], cwd=ROOT,
                                 user=NOBODY, group=NOBODY, extra_groups=[],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
            if ok:
                try:
                    wait_for(lambda: wsraw_probe(port), what="a listener")
                    assert proc_status(p.pid)["Uid"][0] == str(NOBODY)
                finally:
                    p.send_signal(signal.SIGTERM)
                    out = p.communicate(timeout=20)[0]
                assert p.returncode == 0, out
                assert "running as root" not in out
            else:
                out = p.communicate(timeout=20)[0]
                assert p.returncode != 0, out
                line = next(i + 1 for i, x in enumerate(text.splitlines())
                            if x.startswith("user ="))
                assert f"{cfg}:{line}: user: cannot become 'daemon'" in out, \
                    out
    finally:
        shutil.rmtree(d)


def wsraw_probe(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_sighup_after_the_drop_keeps_the_root_only_key(tls_gateway, pki,
                                                        root_only_key):
    """After the drop, SIGHUP cannot read a key only root may read: that
    is reported with its line, and the key read at start stays in use.
    (The config itself is readable by all, as in /etc.)"""
    g = tls_gateway(gateway="user = nobody\n",
                    cert=Cert(pki.default.cert, root_only_key, "localhost",
                              None),
                    body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    path = pathlib.Path(g.config_path)
    path.chmod(0o644)
    for d in path.parents:
        if d == pathlib.Path("/tmp"):
            break
        d.chmod(d.stat().st_mode | 0o005)
    sighup(g, "is invalid; nothing changed")
    line = config_line(g, "tls_key")
    assert f"{g.config_path}:{line}: tls_key '{root_only_key}': " in g.log()
    r = s_client(g.tls_port, pki)
    assert r.ok and r.cn == "localhost"


async def test_root_without_user_warns_once(tls_gateway, pki):
    """Started as root without user: one warning at start, not repeated
    by connections, backends or SIGHUP."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    g = tls_gateway(body="[resource /s]\nbackend = " +
                    backend_cmd("scripted.py") + "\n")
    for _ in range(3):
        async with wss_connect(g, "/s", pki) as ws:
            me = await whoami(ws)
    assert proc_status(me["pid"])["Uid"][0] == "0"
    sighup(g, "applied")
    lines = [x for x in g.log().splitlines() if "running as root" in x]
    assert len(lines) == 1, g.log()
    assert "gatewayd: warn: " in lines[0], lines


# Static files over https


def test_static_files_over_https(tls_gateway, pki, tmp_path):
    """static_dir is served on the tls listener as on the plain one: an
    index, a 1 MiB file whole (several requests on one connection),
    HEAD; the WebSocket resource still answers over wss."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("<h1>hello over tls</h1>\n")
    big = os.urandom(1 << 20)
    (www / "big.bin").write_bytes(big)
    g = tls_gateway(gateway=f"static_dir = {www}\n",
                    body="[resource /echo]\nbackend = exec:cat\n"
                    "mode = client\n")
    ctx = pki.client_context()
    c = http.client.HTTPSConnection("127.0.0.1", g.tls_port, context=ctx,
                                    timeout=TIMEOUT)
    try:
        for _ in range(2):
            c.request("GET", "/")
            r = c.getresponse()
            assert r.status == 200
            assert r.read() == b"<h1>hello over tls</h1>\n"
            c.request("GET", "/big.bin")
            r = c.getresponse()
            assert r.status == 200
            assert int(r.getheader("Content-Length")) == len(big)
            body = r.read()
            assert hashlib.sha256(body).digest() == \
                hashlib.sha256(big).digest()
            c.request("HEAD", "/big.bin")
            r = c.getresponse()
            assert r.status == 200 and r.read() == b""
            assert int(r.getheader("Content-Length")) == len(big)
            c.request("GET", "/missing")
            r = c.getresponse()
            assert r.status == 404
            r.read()
    finally:
        c.close()
    # A client that reads slowly at first (the server's writes stop on a
    # full socket, and go on from where they stopped) gets every byte.
    with socket.create_connection(("127.0.0.1", g.tls_port)) as raw:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        got = bytearray()
        s.settimeout(10)
        while True:
            chunk = s.recv(8192)
            if not chunk:
                break
            got += chunk
            if len(got) < 512 * 1024:
                time.sleep(0.002)
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert body == big
    r = wsraw.http_request(g.port, b"GET /big.bin HTTP/1.1\r\nHost: x\r\n"
                           b"Connection: close\r\n\r\n")
    assert r.status == 200 and r.body == big


# The README's chat over wss with compression


async def test_readme_chat_over_wss_with_deflate(tls_gateway, pki):
    """examples/chat/room.py behind the tls listener; alice and bob over
    wss:// with the default permessage-deflate offer: each sees the
    other's join and messages, short (sent plain) and long (compressed
    both ways)."""
    g = tls_gateway(body="[resource /bongo]\nbackend = " +
                    example_cmd("chat/room.py") + "\n")
    long_text = "chat over tls with deflate " * 40
    async with wss_connect(g, "/bongo?name=alice", pki) as alice:
        ext = alice.response_headers.get("Sec-WebSocket-Extensions", "")
        assert ext.startswith("permessage-deflate"), ext
        assert await recv(alice) == "alice has joined /bongo"
        async with wss_connect(g, "/bongo?name=bob", pki,
                               server_hostname="localhost") as bob:
            assert "permessage-deflate" in bob.response_headers.get(
                "Sec-WebSocket-Extensions", "")
            assert await recv(bob) == "bob has joined /bongo"
            assert await recv(alice) == "bob has joined /bongo"
            await alice.send("hi bob")
            assert await recv(alice) == "alice says hi bob"
            assert await recv(bob) == "alice says hi bob"
            await bob.send(long_text)
            assert await recv(alice) == f"bob says {long_text}"
            assert await recv(bob) == f"bob says {long_text}"
            await alice.send(long_text.upper())
            assert await recv(bob) == f"alice says {long_text.upper()}"
            assert await recv(alice) == f"alice says {long_text.upper()}"
        assert await recv(alice) == "bob has left /bongo"
