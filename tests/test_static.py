"""Static files on the WebSocket port (issue 10), over raw sockets.

A plain HTTP GET or HEAD under static_dir or a [static PREFIX] section
gets its file; a WebSocket handshake still goes to its resource.  The
statuses asserted here are those gatewayd/http_static.h documents: 400
for a target that is unsafe or malformed (dot segments in any spelling,
encoded slashes, backslashes, NUL and controls), 404 for what does not
exist or leaves the directory through a symlink, 414 for a relative path
of 4096 bytes or more.

Most cases share one daemon serving one tree (the `site` fixture); the
ones that need their own limits start their own.
"""
import calendar
import collections
import hashlib
import http.client
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import (GATEWAYD, ROOT, Gateway, fd_count, free_port,
                      launch_gateway, rss, stop_gateway, wait_for)
import wsraw

TIMEOUT = 5.0
# The content of /etc/passwd begins with it; so does secret.txt, which
# lies beside the served directory: no answer may hold it.
LEAK = b"root:"

Resp = collections.namedtuple("Resp", "status headers body fields")
Resp.__doc__ = """A response: status (int), headers (a dict with lower-cased
names), body (bytes), fields (the (name, value) pairs in order)."""

# Extension -> the Content-Type gatewayd must send.
MIME = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "json": "application/json",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/vnd.microsoft.icon",
    "txt": "text/plain; charset=utf-8",
    "wasm": "application/wasm",
}


# Requests and responses, byte for byte


def request(target, method="GET", headers=(), version="HTTP/1.1",
            host="127.0.0.1"):
    """The bytes of a request head; target and values are str or bytes."""
    def b(v):
        return v if isinstance(v, bytes) else str(v).encode("latin-1")
    lines = [b"%s %s %s" % (b(method), b(target), b(version))]
    if host is not None:
        lines.append(b"Host: " + b(host))
    for name, value in headers:
        lines.append(b(name) + b": " + b(value))
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Conn:
    """One TCP connection that sends requests and reads responses one at a
    time, by their Content-Length, so that it can go on after each."""

    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def get(self, target, **kw):
        """Send one request (see request()) and read its response."""
        self.send(request(target, **kw))
        return self.response(head=kw.get("method") == "HEAD")

    def _more(self, deadline, what):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out waiting for {what}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        if not chunk:
            raise EOFError(f"connection closed while waiting for {what}; "
                           f"got {bytes(self.buf[:200])!r}")
        self.buf += chunk

    def response(self, head=False, timeout=TIMEOUT):
        """The next response; head: it answers a HEAD (no body)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._more(deadline, "a response head")
        i = self.buf.index(b"\r\n\r\n")
        raw = bytes(self.buf[:i]).decode("latin-1")
        del self.buf[:i + 4]
        lines = raw.split("\r\n")
        version, status, _ = (lines[0] + " ").split(" ", 2)
        assert version == "HTTP/1.1" and status.isdigit(), lines[0]
        fields = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep and name and name == name.strip(), line
            fields.append((name, value.strip()))
        headers = {}
        for name, value in fields:
            assert name.lower() not in headers, f"{name} twice: {raw}"
            headers[name.lower()] = value
        status = int(status)
        if head or status == 304:
            n = 0
        else:
            assert "content-length" in headers, raw
            n = int(headers["content-length"])
        while len(self.buf) < n:
            self._more(deadline, f"{n - len(self.buf)} more body bytes")
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return Resp(status, headers, body, fields)

    def assert_silent(self, wait=0.3):
        """Nothing more arrives for wait seconds (nor the end)."""
        assert not self.buf, bytes(self.buf[:200])
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return
        raise AssertionError(f"unexpected {chunk[:200]!r}")

    def expect_eof(self, timeout=TIMEOUT):
        """The server closes, sending nothing more; returns the seconds it
        took."""
        assert not self.buf, bytes(self.buf[:200])
        start = time.monotonic()
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("the server did not close the connection")
        except ConnectionResetError:
            chunk = b""
        assert chunk == b"", f"unexpected {chunk[:200]!r}"
        return time.monotonic() - start


def fetch(port, target, method="GET", headers=(), **kw):
    """One request with Connection: close on a new connection; the server
    must close after the response."""
    with Conn(port) as c:
        r = c.get(target, method=method,
                  headers=list(headers) + [("Connection", "close")], **kw)
        assert r.headers.get("connection") == "close", r
        c.expect_eof()
    return r


def fetch_raw(port, data, timeout=TIMEOUT):
    """Send any bytes; read the response until the server closes."""
    resp = wsraw.http_request(port, data, timeout=timeout, allow_reset=True)
    return Resp(resp.status, resp.headers, resp.body, None)


# The served tree


def make_tree(root):
    """The files of the shared site under root; returns a dict of paths
    and contents the tests refer to."""
    www = root / "www"
    assets = root / "assets"
    for d in (www / "sub", www / "empty", www / "assets", assets):
        d.mkdir(parents=True)
    (root / "secret.txt").write_bytes(LEAK + b"x:0:0:secret beside www\n")
    files = {
        "index.html": b"<!doctype html><title>root index</title>\n",
        "sub/index.html": b"<p>sub index</p>\n",
        "page.html": b"<p>page</p>\n",
        "a.css": b"body { color: red }\n",
        "app.js": b"console.log('hi');\n",
        "data.json": b'{"a": [1, 2, 3]}\n',
        "pic.svg": b'<svg xmlns="http://www.w3.org/2000/svg"/>\n',
        "img.png": b"\x89PNG\r\n\x1a\n" + os.urandom(3000),
        "favicon.ico": b"\x00\x00\x01\x00" + os.urandom(500),
        "readme.txt": b"plain text\n",
        "mod.wasm": b"\x00asm\x01\x00\x00\x00" + os.urandom(100),
        "blob.bin": os.urandom(70000),
        "empty.txt": b"",
        ".hidden": b"dot file\n",
        "echo": b"a file named like the /echo resource\n",
        "assets/only-root.txt": b"www/assets, not the assets dir\n",
    }
    for name, data in files.items():
        (www / name).write_bytes(data)
    (assets / "style.css").write_bytes(b"h1 { font-weight: bold }\n")
    (assets / "index.html").write_bytes(b"<p>assets index</p>\n")
    # Symlinks: two that stay inside, the rest lead out.
    os.symlink("../a.css", www / "sub" / "inside.css")
    os.symlink("..", www / "sub" / "up")
    os.symlink("/etc/passwd", www / "sub" / "leak")
    os.symlink("/etc", www / "sub" / "leakdir")
    os.symlink("../../../../../../../../../../etc/passwd",
               www / "sub" / "rel")
    os.symlink("../..", www / "sub" / "outdir")
    os.symlink("../../secret.txt", www / "sub" / "secret")
    os.symlink(str(www / "a.css"), www / "sub" / "abs-inside")
    os.mkfifo(www / "pipe")
    return {"www": www, "assets": assets, "files": files}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One daemon for the module: static_dir, a [static /assets/] section
    with another directory, and two client-mode resources, /chat (no file
    of that name) and /echo (a file of that name exists)."""
    root = tmp_path_factory.mktemp("site")
    tree = make_tree(root)
    port = free_port()
    g = launch_gateway(
        f"[gateway]\nlisten = 127.0.0.1:{port}\n"
        f"static_dir = {tree['www']}\n"
        f"max_header_size = 64K\n"
        f"[static /assets/]\ndir = {tree['assets']}\n"
        f"[resource /chat]\nmode = client\nbackend = exec:cat\n"
        f"[resource /echo]\nmode = client\nbackend = exec:cat\n",
        port, root / "gatewayd")
    g.tree = tree
    yield g
    stop_gateway(g)


def echo_works(conn, text="ping?"):
    conn.send_text(text)
    assert conn.recv_message() == (wsraw.OP_TEXT, text)


# 200: the file, its type, its length, its validators


@pytest.mark.parametrize("ext", sorted(MIME))
def test_get_serves_file_with_its_type(site, ext):
    name = {"html": "page.html", "css": "a.css", "js": "app.js",
            "json": "data.json", "svg": "pic.svg", "png": "img.png",
            "ico": "favicon.ico", "txt": "readme.txt",
            "wasm": "mod.wasm"}[ext]
    data = site.tree["files"][name]
    r = fetch(site.port, "/" + name)
    assert r.status == 200
    assert r.headers["content-type"] == MIME[ext]
    assert int(r.headers["content-length"]) == len(data)
    assert r.body == data
    assert r.headers["etag"].startswith('"')
    assert r.headers["last-modified"].endswith(" GMT")


def test_every_type_over_one_http_client_connection(site):
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=TIMEOUT)
    try:
        conn.connect()
        first = conn.sock.getsockname()
        for name, data in site.tree["files"].items():
            ext = name.rsplit(".", 1)[-1]
            if ext not in MIME or "/" in name:
                continue
            conn.request("GET", "/" + name)
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Content-Type") == MIME[ext]
            assert resp.getheader("Content-Length") == str(len(data))
            assert resp.read() == data
            assert not resp.will_close
        assert conn.sock.getsockname() == first     # one connection
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["blob.bin", "empty.txt", ".hidden"])
def test_other_files_are_served_exactly(site, name):
    data = site.tree["files"][name]
    r = fetch(site.port, "/" + name)
    assert r.status == 200
    assert int(r.headers["content-length"]) == len(data)
    assert r.body == data


def test_unknown_extension_is_octet_stream(site):
    r = fetch(site.port, "/blob.bin")
    assert r.headers["content-type"] == "application/octet-stream"


def test_query_is_not_part_of_the_file_name(site):
    r = fetch(site.port, "/a.css?v=123")
    assert r.status == 200 and r.body == site.tree["files"]["a.css"]


def test_percent_encoded_name_is_decoded_once(site):
    r = fetch(site.port, "/%61%2E%63ss")
    assert r.status == 200 and r.body == site.tree["files"]["a.css"]


def test_head_has_the_headers_of_get_and_no_body(site):
    get = fetch(site.port, "/img.png")
    with Conn(site.port) as c:
        head = c.get("/img.png", method="HEAD")
        assert head.status == 200
        skip = {"date", "keep-alive"}
        assert {k: v for k, v in head.headers.items() if k not in skip} == \
            {k: v for k, v in get.headers.items() if k not in skip
             and k != "connection"} | {"connection": "keep-alive"}
        assert int(head.headers["content-length"]) == \
            len(site.tree["files"]["img.png"])
        c.assert_silent()
        # The connection goes on: the next response starts right here.
        r = c.get("/a.css")
        assert r.status == 200 and r.body == site.tree["files"]["a.css"]


@pytest.mark.parametrize("target,status", [
    ("/missing.html", 404), ("/sub", 301), ("/empty/", 404),
])
def test_head_of_an_error_has_no_body(site, target, status):
    with Conn(site.port) as c:
        r = c.get(target, method="HEAD")
        assert r.status == status
        assert int(r.headers["content-length"]) > 0
        c.assert_silent()
        r = c.get("/readme.txt")
        assert r.status == 200 and r.body == site.tree["files"]["readme.txt"]


# 304 and the validators


def validators(port, target):
    r = fetch(port, target)
    assert r.status == 200
    return r.headers["etag"], r.headers["last-modified"]


def assert_304(c, target, headers, etag):
    r = c.get(target, headers=headers)
    assert r.status == 304, r
    assert r.body == b""
    assert "content-length" not in r.headers
    assert "content-type" not in r.headers
    assert r.headers["etag"] == etag
    assert r.headers["connection"] == "keep-alive"


@pytest.mark.parametrize("inm", [
    "{etag}", "*", "W/{etag}", '"nope", {etag}', '"a",W/{etag} , "b"',
], ids=["etag", "star", "weak", "list", "list-weak"])
def test_if_none_match_is_304(site, inm):
    etag, _ = validators(site.port, "/a.css")
    with Conn(site.port) as c:
        assert_304(c, "/a.css", [("If-None-Match", inm.format(etag=etag))],
                   etag)
        # A 304 has no body: the next response comes right after it.
        r = c.get("/a.css")
        assert r.status == 200 and r.body == site.tree["files"]["a.css"]


@pytest.mark.parametrize("inm", ['"nope"', 'W/"nope"', "not-a-tag"])
def test_if_none_match_other_is_200(site, inm):
    r = fetch(site.port, "/a.css", headers=[("If-None-Match", inm)])
    assert r.status == 200 and r.body == site.tree["files"]["a.css"]


def test_if_modified_since_equal_is_304(site):
    etag, lm = validators(site.port, "/data.json")
    with Conn(site.port) as c:
        assert_304(c, "/data.json", [("If-Modified-Since", lm)], etag)


def test_if_modified_since_obsolete_forms_are_304(site):
    etag, lm = validators(site.port, "/data.json")
    t = time.strptime(lm, "%a, %d %b %Y %H:%M:%S GMT")
    rfc850 = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", t)
    asctime = time.strftime("%a %b %d %H:%M:%S %Y", t)
    asctime = asctime[:8] + ("%2d" % t.tm_mday) + asctime[10:]
    with Conn(site.port) as c:
        assert_304(c, "/data.json", [("If-Modified-Since", rfc850)], etag)
        assert_304(c, "/data.json", [("If-Modified-Since", asctime)], etag)


def test_if_modified_since_earlier_is_200(site):
    _, lm = validators(site.port, "/data.json")
    t = calendar.timegm(time.strptime(lm, "%a, %d %b %Y %H:%M:%S GMT"))
    earlier = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t - 3600))
    r = fetch(site.port, "/data.json", headers=[("If-Modified-Since",
                                                 earlier)])
    assert r.status == 200


def test_if_none_match_decides_alone(site):
    _, lm = validators(site.port, "/data.json")
    r = fetch(site.port, "/data.json", headers=[
        ("If-None-Match", '"nope"'), ("If-Modified-Since", lm)])
    assert r.status == 200


def test_changed_file_is_200_with_new_validators(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    f = www / "f.txt"
    f.write_bytes(b"version one\n")
    past = time.time() - 1000
    os.utime(f, (past, past))
    g = gateway(f"[gateway]\nstatic_dir = {www}\n")
    etag, lm = validators(g.port, "/f.txt")
    with Conn(g.port) as c:
        assert_304(c, "/f.txt", [("If-None-Match", etag)], etag)
        assert_304(c, "/f.txt", [("If-Modified-Since", lm)], etag)
    os.utime(f, (past + 500, past + 500))       # touched: a new mtime
    for h in [("If-None-Match", etag), ("If-Modified-Since", lm)]:
        r = fetch(g.port, "/f.txt", headers=[h])
        assert r.status == 200 and r.body == b"version one\n"
        assert r.headers["etag"] != etag
        assert r.headers["last-modified"] != lm
    with Conn(g.port) as c:
        assert_304(c, "/f.txt", [("If-None-Match", r.headers["etag"])],
                   r.headers["etag"])


def test_future_mtime_is_clamped_and_never_304(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    f = www / "f.txt"
    f.write_bytes(b"from the future\n")
    future = time.time() + 3600
    os.utime(f, (future, future))
    g = gateway(f"[gateway]\nstatic_dir = {www}\n")
    r = fetch(g.port, "/f.txt")
    # Last-Modified is at most Date ...
    lm = time.strptime(r.headers["last-modified"], "%a, %d %b %Y %H:%M:%S GMT")
    date = time.strptime(r.headers["date"], "%a, %d %b %Y %H:%M:%S GMT")
    assert lm <= date
    # ... and the file is later than that date: not "not modified".
    r = fetch(g.port, "/f.txt", headers=[("If-Modified-Since",
                                          r.headers["last-modified"])])
    assert r.status == 200


# Directories


@pytest.mark.parametrize("target,name", [
    ("/", "index.html"), ("/sub/", "sub/index.html"),
    ("/?x=1", "index.html"), ("//sub//", "sub/index.html"),
])
def test_directory_serves_index_html(site, target, name):
    r = fetch(site.port, target)
    assert r.status == 200
    assert r.headers["content-type"] == MIME["html"]
    assert r.body == site.tree["files"][name]


@pytest.mark.parametrize("target,location", [
    ("/sub", "/sub/"), ("/sub?x=1&y", "/sub/?x=1&y"), ("//sub", "/sub/"),
    ("/empty", "/empty/"), ("/assets", "/assets/"),
    ("/sub/up", "/sub/up/"),
])
def test_directory_without_slash_is_301(site, target, location):
    r = fetch(site.port, target)
    assert r.status == 301
    assert r.headers["location"] == location


def test_directory_without_index_is_404(site):
    assert fetch(site.port, "/empty/").status == 404


def test_symlink_inside_is_served(site):
    for target in ("/sub/inside.css", "/sub/up/a.css"):
        r = fetch(site.port, target)
        assert r.status == 200, target
        assert r.body == site.tree["files"]["a.css"]


# The error statuses


def test_missing_file_is_404_and_keeps_the_connection(site):
    with Conn(site.port) as c:
        r = c.get("/missing.html")
        assert r.status == 404
        assert int(r.headers["content-length"]) == len(r.body)
        assert r.headers["connection"] == "keep-alive"
        assert c.get("/a.css").status == 200


def test_fifo_is_404_without_stalling(site):
    start = time.monotonic()
    assert fetch(site.port, "/pipe").status == 404
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS",
                                    "PATCH", "get"])
def test_other_methods_are_405_with_allow(site, method):
    with Conn(site.port) as c:
        r = c.get("/a.css", method=method)
        assert r.status == 405
        assert r.headers["allow"] == "GET, HEAD"
        assert LEAK not in r.body and b"color" not in r.body
        # No content was announced: the connection goes on.
        assert c.get("/a.css").status == 200


def test_post_with_content_is_405_and_closes(site):
    with Conn(site.port) as c:
        c.send(request("/a.css", method="POST",
                       headers=[("Content-Length", "5")]) + b"hello")
        r = c.response()
        assert r.status == 405
        assert r.headers["allow"] == "GET, HEAD"
        assert r.headers["connection"] == "close"
        c.expect_eof()


@pytest.mark.parametrize("line", [
    b"GARBAGE",
    b"GET /a.css",
    b"GET /a.css HTTP/1.1 extra",
    b"GET  /a.css HTTP/1.1",
    b"GET a.css HTTP/1.1",
    b"GET /a.css HTTP/1.x",
    b"GET /a\x01.css HTTP/1.1",
])
def test_malformed_request_line_is_400(site, line):
    r = fetch_raw(site.port, line + b"\r\nHost: 127.0.0.1\r\n\r\n")
    assert r.status == 400
    assert r.headers["connection"].lower() == "close"


@pytest.mark.parametrize("n", [4096, 5000, 60000])
def test_long_target_is_414(site, n):
    # The relative path ("a" * n) and its NUL do not fit in 4096 bytes;
    # the head is within max_header_size (64K).
    r = fetch(site.port, "/" + "a" * n)
    assert r.status == 414
    assert r.body.count(b"a" * 100) == 0


def test_target_just_under_the_limit_is_404(site):
    # 4095 bytes and a NUL fit: looked up, and missing.
    assert fetch(site.port, "/" + "a" * 4095).status == 404


def test_long_unsafe_target_is_400(site):
    # A 400 outranks a 414.
    assert fetch(site.port, "/" + "a" * 5000 + "/../x").status == 400


def test_head_over_max_header_size_is_431(site):
    r = fetch_raw(site.port, request("/" + "a" * 70000))
    assert r.status == 431


@pytest.mark.parametrize("headers", [
    [("Connection", "close")],
    [("Host", "127.0.0.1"), ("Host", "127.0.0.1"), ("Connection", "close")],
    [("Host", "127.0.0.1"), ("Content-Length", "abc")],
    [("Host", "127.0.0.1"), ("Content-Length", "1"), ("Content-Length", "2")],
], ids=["no-host", "two-hosts", "bad-content-length",
        "two-content-lengths"])
def test_malformed_request_head_is_400(site, headers):
    # RFC 9112 3.2: an HTTP/1.1 request without exactly one Host is
    # answered 400; 6.3: so is an invalid Content-Length, and the
    # connection closes.
    r = fetch_raw(site.port, request("/a.css", host=None, headers=headers))
    assert r.status == 400, r
    assert b"color" not in r.body


def test_http_1_0_without_host_is_served(site):
    with Conn(site.port) as c:
        r = c.get("/a.css", version="HTTP/1.0", host=None)
        assert r.status == 200 and r.body == site.tree["files"]["a.css"]


def test_range_is_ignored(site):
    r = fetch(site.port, "/blob.bin", headers=[("Range", "bytes=0-9")])
    assert r.status == 200
    assert r.headers["accept-ranges"] == "none"
    assert r.body == site.tree["files"]["blob.bin"]


def test_request_sent_one_byte_at_a_time(site):
    with Conn(site.port) as c:
        for target in ("/a.css", "/app.js"):
            for byte in request(target):
                c.send(bytes([byte]))
            r = c.response()
            assert r.status == 200
            assert r.body == site.tree["files"][target[1:]]


# Traversal: every spelling, and the status http_static.h documents

TRAVERSAL = [
    ("/../etc/passwd", 400),
    ("/../secret.txt", 400),
    ("/%2e%2e/etc/passwd", 400),
    ("/%2E%2E/%2E%2E/etc/passwd", 400),
    ("/..%2fetc%2fpasswd", 400),
    ("/sub/../../etc/passwd", 400),
    ("/sub/../../secret.txt", 400),
    ("/.%2e/etc/passwd", 400),
    ("/%2e./etc/passwd", 400),
    ("/..%5cetc", 400),
    ("/%5c..%5cetc", 400),
    ("/..\\..\\secret.txt", 400),
    ("/a%00b", 400),
    ("/%00", 400),
    ("/a.css%00.html", 400),
    ("/.%00./secret.txt", 400),
    ("/sub/%2e%2e/%2e%2e/etc/passwd", 400),
    ("/sub/%2E%2e/%2e%2E/secret.txt", 400),
    ("/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 400),
    ("/sub/..%2F..%2Fsecret.txt", 400),
    ("/%2e%2e%5csecret.txt", 400),
    ("/%2fetc/passwd", 400),
    ("/...", 400),
    ("/sub/.", 400),
    ("/sub/%2e", 400),
    ("/sub/..", 400),
    ("/%%2e%%2e/etc/passwd", 400),
    ("/%u002e%u002e/etc/passwd", 400),
    ("/%2", 400),
    ("/%zz", 400),
    ("/%0a/etc/passwd", 400),
    ("/%0d%0aX-Injected:%20yes", 400),
    ("/assets/../secret.txt", 400),
    ("/assets/%2e%2e/secret.txt", 400),
    ("/assets//../secret.txt", 400),
    ("/assets/..%2fsecret.txt", 400),
    ("//etc/passwd", 404),
    ("///../etc/passwd", 400),
    ("/%252e%252e/etc/passwd", 404),      # the literal name "%2e%2e"
    ("/%c0%ae%c0%ae/etc/passwd", 404),    # overlong UTF-8: a literal name
    ("/..%c0%af../etc/passwd", 404),
    ("/..;/etc/passwd", 404),             # "..;" is a name
    ("/sub/leak", 404),                   # -> /etc/passwd
    ("/sub/leak/", 404),
    ("/sub/leakdir", 404),                # -> /etc: not even a 301
    ("/sub/leakdir/", 404),
    ("/sub/leakdir/passwd", 404),
    ("/sub/rel", 404),                    # -> ../../../../etc/passwd
    ("/sub/outdir/secret.txt", 404),      # -> ../.. (beside www)
    ("/sub/outdir/", 404),
    ("/sub/secret", 404),                 # -> ../../secret.txt
    ("/sub/up/../secret.txt", 400),
    ("/sub/up/up/secret.txt", 404),       # up -> .. inside, then again
    ("/sub/abs-inside", 404),             # absolute symlinks never resolve
]


@pytest.mark.parametrize("target,status", TRAVERSAL,
                         ids=[t for t, _ in TRAVERSAL])
def test_traversal_is_refused(site, target, status):
    for method in ("GET", "HEAD"):
        r = fetch_raw(site.port, request(target.encode("latin-1"),
                                         method=method,
                                         headers=[("Connection", "close")]))
        assert r.status == status, (method, r)
        assert LEAK not in r.body
        assert b"\nX-Injected" not in r.body
        assert "x-injected" not in r.headers


@pytest.mark.parametrize("data", [
    b"GET http://127.0.0.1/etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET http://127.0.0.1/../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /a\x00b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /\x00../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /\xc0\xae\xc0\xae/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /../etc/passwd\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET /.. /etc/passwd HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
], ids=["absolute-form", "absolute-form-dots", "authority-form",
        "asterisk", "raw-nul", "raw-nul-dots", "raw-8bit", "http09",
        "space"])
def test_traversal_in_the_request_line_is_400(site, data):
    r = fetch_raw(site.port, data)
    assert r.status == 400, r
    assert LEAK not in r.body


def test_traversal_leaves_the_daemon_serving(site):
    assert fetch(site.port, "/a.css").body == site.tree["files"]["a.css"]


# Prefixes


def test_longest_prefix_wins(site):
    r = fetch(site.port, "/assets/style.css")
    assert r.status == 200
    assert r.body == b"h1 { font-weight: bold }\n"
    assert r.headers["content-type"] == MIME["css"]
    # www/assets/only-root.txt is not reached through /assets/.
    assert fetch(site.port, "/assets/only-root.txt").status == 404
    r = fetch(site.port, "/assets/")
    assert r.status == 200 and r.body == b"<p>assets index</p>\n"
    # Everything else is static_dir's.
    assert fetch(site.port, "/a.css").body == site.tree["files"]["a.css"]


def test_prefix_is_compared_before_decoding(site):
    # "/%61ssets/" is not under "/assets/": static_dir serves it.
    r = fetch(site.port, "/%61ssets/only-root.txt")
    assert r.status == 200
    assert r.body == site.tree["files"]["assets/only-root.txt"]


def test_prefix_only_section_and_resource(gateway, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (files / "a.txt").write_bytes(b"A\n")
    g = gateway(f"[gateway]\n[static /files/]\ndir = {files}\n"
                f"[resource /chat]\nmode = client\nbackend = exec:cat\n")
    assert fetch(g.port, "/files/a.txt").body == b"A\n"
    assert fetch(g.port, "/files/b.txt").status == 404
    # Neither static nor a resource: the handshake's 404.
    r = fetch_raw(g.port, request("/elsewhere"))
    assert r.status == 404
    r = fetch_raw(g.port, request("/chat"))
    assert r.status == 426
    with wsraw.open_raw(g.port, "/chat") as conn:
        echo_works(conn)


# WebSocket beside the files


def test_upgrade_on_a_static_path_goes_to_the_resource(site):
    with wsraw.open_raw(site.port, "/chat") as conn:
        echo_works(conn, "hello over the static port")
        echo_works(conn, "again")


def test_upgrade_where_a_file_has_the_resource_name(site):
    with wsraw.open_raw(site.port, "/echo") as conn:
        echo_works(conn)
    # A plain GET of the same path is the file's.
    r = fetch(site.port, "/echo")
    assert r.status == 200 and r.body == site.tree["files"]["echo"]


def test_plain_get_on_a_resource_path_without_file_is_426(site):
    r = fetch_raw(site.port, request("/chat"))
    assert r.status == 426
    assert r.headers["upgrade"].lower() == "websocket"


def test_head_on_a_resource_path_without_file_has_no_body(site):
    # Whatever the status, an answer to HEAD carries no content
    # (RFC 9110 9.3.2).
    r = fetch_raw(site.port, request("/chat", method="HEAD"))
    assert r.status in (405, 426), r
    assert r.body == b"", r


def test_upgrade_to_a_file_that_is_no_resource_is_404(site):
    r = fetch_raw(site.port, wsraw.handshake_request("/a.css"))
    assert r.status == 404
    assert b"color" not in r.body


def test_upgrade_after_a_get_on_the_same_connection(site):
    with Conn(site.port) as c:
        assert c.get("/a.css").status == 200
        key = wsraw.make_key()
        c.send(wsraw.handshake_request("/chat", key=key))
        status, headers, rest = wsraw._read_head(
            c.sock, time.monotonic() + TIMEOUT, bytes(c.buf))
        assert status == 101
        assert headers["sec-websocket-accept"] == wsraw.accept_for(key)
        echo_works(wsraw.RawConnection(c.sock, status, headers, rest))


# Keep-alive


def test_three_gets_on_one_connection(site):
    files = site.tree["files"]
    with Conn(site.port) as c:
        port = c.sock.getsockname()
        for i, name in enumerate(["a.css", "app.js", "img.png"]):
            r = c.get("/" + name)
            assert r.status == 200 and r.body == files[name]
            assert r.headers["connection"] == "keep-alive"
            assert r.headers["keep-alive"] == f"timeout=5, max={99 - i}"
        assert c.sock.getsockname() == port
        c.assert_silent()


def test_three_gets_with_http_client(site):
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=TIMEOUT)
    try:
        conn.connect()
        first = conn.sock.getsockname()
        for name in ["page.html", "data.json", "blob.bin"]:
            conn.request("GET", "/" + name)
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.read() == site.tree["files"][name]
        assert conn.sock.getsockname() == first
    finally:
        conn.close()


def test_three_pipelined_gets_are_all_answered(site):
    data = site.tree["files"]["a.css"]
    with Conn(site.port) as c:
        c.send(request("/a.css") * 3)
        for _ in range(3):
            r = c.response(timeout=2.0)
            assert r.status == 200 and r.body == data


def test_pipelined_requests_are_answered_in_order(site):
    files = site.tree["files"]
    with Conn(site.port) as c:
        c.send(request("/a.css") + request("/app.js"))
        assert c.response().body == files["a.css"]
        assert c.response().body == files["app.js"]
        c.send(request("/blob.bin") + request("/readme.txt", method="HEAD") +
               request("/missing") + request("/sub") +
               request("/data.json", headers=[("Connection", "close")]))
        assert c.response(timeout=2).body == files["blob.bin"]
        r = c.response(head=True, timeout=2)
        assert r.status == 200 and r.body == b""
        assert int(r.headers["content-length"]) == len(files["readme.txt"])
        assert c.response(timeout=2).status == 404
        assert c.response(timeout=2).headers["location"] == "/sub/"
        r = c.response(timeout=2)
        assert r.body == files["data.json"]
        assert r.headers["connection"] == "close"
        c.expect_eof()


def test_pipelined_request_split_across_sends(site):
    files = site.tree["files"]
    data = request("/a.css") + request("/app.js")
    with Conn(site.port) as c:
        cut = len(request("/a.css")) + 7
        c.send(data[:cut])
        assert c.response().body == files["a.css"]
        c.send(data[cut:])
        assert c.response().body == files["app.js"]


def test_connection_close_closes(site):
    with Conn(site.port) as c:
        r = c.get("/a.css", headers=[("Connection", "close")])
        assert r.status == 200 and r.headers["connection"] == "close"
        c.expect_eof()


def test_http_1_0_closes_after_the_answer(site):
    with Conn(site.port) as c:
        r = c.get("/a.css", version="HTTP/1.0", host=None)
        assert r.status == 200 and r.body == site.tree["files"]["a.css"]
        assert r.headers["connection"] == "close"
        c.expect_eof()


def test_http_1_0_with_keep_alive_stays(site):
    with Conn(site.port) as c:
        for _ in range(2):
            r = c.get("/a.css", version="HTTP/1.0",
                      headers=[("Connection", "keep-alive")])
            assert r.status == 200 and r.body == site.tree["files"]["a.css"]
            assert r.headers["connection"] == "keep-alive"


def test_get_with_content_closes(site):
    with Conn(site.port) as c:
        c.send(request("/a.css", headers=[("Content-Length", "3")]) + b"abc")
        r = c.response()
        assert r.status == 200
        assert r.headers["connection"] == "close"
        c.expect_eof()


def test_keepalive_requests_bounds_the_connection(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.txt").write_bytes(b"A\n")
    g = gateway(f"[gateway]\nstatic_dir = {www}\nkeepalive_requests = 2\n")
    with Conn(g.port) as c:
        r = c.get("/a.txt")
        assert r.headers["connection"] == "keep-alive"
        assert r.headers["keep-alive"] == "timeout=5, max=1"
        r = c.get("/a.txt")
        assert r.status == 200 and r.body == b"A\n"
        assert r.headers["connection"] == "close"
        c.expect_eof()
    # Pipelined: the third is never answered.
    with Conn(g.port) as c:
        c.send(request("/a.txt") * 3)
        assert c.response().headers["connection"] == "keep-alive"
        assert c.response().headers["connection"] == "close"
        c.expect_eof()


def test_keepalive_timeout_closes_an_idle_connection(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.txt").write_bytes(b"A\n")
    g = gateway(f"[gateway]\nstatic_dir = {www}\nkeepalive_timeout = 500ms\n"
                f"handshake_timeout = 10s\n")
    with Conn(g.port) as c:
        # Requests 0.3 s apart keep it open: each restarts the wait.
        for _ in range(4):
            r = c.get("/a.txt")
            assert r.status == 200 and r.headers["connection"] == \
                "keep-alive"
            time.sleep(0.3)
        r = c.get("/a.txt")
        took = c.expect_eof(timeout=2.0)
        assert 0.35 < took < 2.0, took


def test_keepalive_timeout_mid_request_is_408(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.txt").write_bytes(b"A\n")
    g = gateway(f"[gateway]\nstatic_dir = {www}\nkeepalive_timeout = 500ms\n"
                f"handshake_timeout = 500ms\n")
    with Conn(g.port) as c:
        assert c.get("/a.txt").status == 200
        c.send(b"GET /a.txt HTTP/1.1\r\nHost:")
        r = c.response(timeout=3.0)
        assert r.status == 408


# Large files: sendfile, no memory


def settle(g):
    """Serve one small file (the first answer's allocations are done),
    wait until its connection is gone, and return the daemon's fd count
    with no client."""
    base = fd_count(g.proc.pid)
    assert fetch(g.port, "/small.txt").status == 200
    wait_for(lambda: fd_count(g.proc.pid) == base, 5,
             what="the warm-up connection to go")
    return base


def test_100mb_file_whole_and_no_memory(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    big = www / "big.bin"
    digest = hashlib.sha256()
    with open(big, "wb") as f:
        for _ in range(100):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            f.write(chunk)
    (www / "small.txt").write_bytes(b"warm\n")
    g = gateway(f"[gateway]\nstatic_dir = {www}\n")
    pid = g.proc.pid
    before_fds = settle(g)
    before_rss = rss(pid)
    got = hashlib.sha256()
    n = 0
    with Conn(g.port) as c:
        c.send(request("/big.bin", headers=[("Connection", "close")]))
        deadline = time.monotonic() + 30
        while b"\r\n\r\n" not in c.buf:
            c._more(deadline, "the head")
        i = c.buf.index(b"\r\n\r\n")
        head = bytes(c.buf[:i]).decode()
        assert head.startswith("HTTP/1.1 200 ")
        assert f"\r\nContent-Length: {100 << 20}\r\n" in head
        got.update(c.buf[i + 4:])
        n = len(c.buf) - i - 4
        c.buf.clear()
        c.sock.settimeout(30)
        while True:
            chunk = c.sock.recv(1 << 20)
            if not chunk:
                break
            got.update(chunk)
            n += len(chunk)
    assert n == 100 << 20
    assert got.hexdigest() == digest.hexdigest()
    wait_for(lambda: fd_count(pid) == before_fds, 5, what="fds back")
    assert rss(pid) - before_rss < 4 << 20, (before_rss, rss(pid))


def test_stalled_client_of_1gib_file_holds_no_memory(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    with open(www / "huge.bin", "wb") as f:
        f.truncate(1 << 30)                     # sparse
    (www / "small.txt").write_bytes(b"warm\n")
    g = gateway(f"[gateway]\nstatic_dir = {www}\n")
    pid = g.proc.pid
    base_fds = settle(g)
    base_rss = rss(pid)
    c = Conn(g.port, rcvbuf=16384)
    try:
        c.send(request("/huge.bin"))
        peak = base_rss
        end = time.monotonic() + 2.0
        while time.monotonic() < end:           # reads nothing
            peak = max(peak, rss(pid))
            time.sleep(0.05)
        assert peak - base_rss < 4 << 20, (base_rss, peak)
        assert fd_count(pid) == base_fds + 2    # the socket and the file
        # The loop is not held by it.
        assert fetch(g.port, "/small.txt").body == b"warm\n"
    finally:
        c.sock.close()
    wait_for(lambda: fd_count(pid) == base_fds, 5,
             what="the daemon's fd count back to its baseline")
    assert rss(pid) - base_rss < 4 << 20


def test_pipelined_request_behind_a_large_file(gateway, tmp_path):
    # The first answer does not fit in the socket: the second request
    # waits for it to be written from the write event.
    www = tmp_path / "www"
    www.mkdir()
    big = os.urandom(8 << 20)
    (www / "big.bin").write_bytes(big)
    (www / "a.txt").write_bytes(b"A\n")
    g = gateway(f"[gateway]\nstatic_dir = {www}\n")
    with Conn(g.port) as c:
        c.send(request("/big.bin") + request("/a.txt"))
        time.sleep(0.3)                         # let the socket fill
        r = c.response(timeout=20)
        assert r.status == 200 and r.body == big
        r = c.response()
        assert r.status == 200 and r.body == b"A\n"


def wait_exit(g):
    """Wait for g, sent SIGTERM by the test, to exit: the fixture's
    teardown then checks its status and log without a second signal."""
    try:
        g.proc.wait(20)
    except subprocess.TimeoutExpired:
        pass                                    # the teardown fails it


def test_stop_closes_an_idle_kept_connection_quietly(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "a.txt").write_bytes(b"A\n")
    g = gateway(f"[gateway]\nstatic_dir = {www}\n")
    c = Conn(g.port)
    try:
        r = c.get("/a.txt")
        assert r.headers["connection"] == "keep-alive"
        time.sleep(0.1)
        g.proc.send_signal(signal.SIGTERM)
        # No request is pending: nothing to answer, not even a 503.
        c.expect_eof()
    finally:
        c.sock.close()
        wait_exit(g)


def test_stop_finishes_a_file_being_sent(gateway, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    with open(www / "f.bin", "wb") as f:
        f.truncate(64 << 20)                    # more than sockets hold
    g = gateway(f"[gateway]\nstatic_dir = {www}\n")
    c = Conn(g.port, rcvbuf=16384)
    try:
        c.send(request("/f.bin"))
        time.sleep(0.3)                         # the socket is full
        assert c.sock.recv(1, socket.MSG_PEEK)  # and the head is out
        g.proc.send_signal(signal.SIGTERM)
        r = c.response(timeout=20)
        assert r.status == 200
        assert len(r.body) == 64 << 20 and not r.body.strip(b"\0")
        # The answer began before the stop: it ends, then the
        # connection closes.
        c.expect_eof()
    finally:
        c.sock.close()
        wait_exit(g)


# The one-line start


def test_one_line_start_serves_files_and_websocket(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_bytes(b"<p>one line</p>\n")
    port = free_port()
    log_path = tmp_path / "oneline.log"
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [GATEWAYD, "--listen", f"127.0.0.1:{port}", "--static", str(www),
             "--", "cat"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env=env)
    g = Gateway(proc, port, None, log_path)
    try:
        def ready():
            if proc.poll() is not None:
                raise AssertionError("gatewayd exited early:\n" + g.log())
            return "gatewayd: info: ready" in g.log()
        wait_for(ready, what="gatewayd to be ready")
        r = fetch(port, "/")
        assert r.status == 200
        assert r.headers["content-type"] == MIME["html"]
        assert r.body == b"<p>one line</p>\n"
        with wsraw.open_raw(port, "/") as conn:
            echo_works(conn, "echo on /")
    finally:
        stop_gateway(g)
