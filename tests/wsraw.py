"""wsraw: a raw-socket WebSocket client for tests (RFC 6455).

Client libraries only send what is valid; a gateway's tests must also send
what is not: malformed request heads, a head split into single bytes,
unmasked frames, reserved bits, frames pipelined behind the handshake.  This
module writes every byte itself and checks every byte the server sends:

    handshake_request(path, ...)   the bytes of an opening handshake
    open_raw(port, path, ...)      connect, handshake (101 checked), and
                                   return a RawConnection
    http_request(port, data, ...)  send any bytes, read the HTTP response
                                   until the server closes the connection
    encode_frame(...)              the bytes of one client frame

A RawConnection sends frames (send_frame), or any bytes (send_raw), and
reads server frames (recv_frame, recv_message, recv_close, expect_eof).
Every read takes a timeout and raises TimeoutError when it passes, so a
test whose server does not answer fails instead of hanging.

Server frames must be unmasked with clear RSV bits, and control frames must
be final with at most 125 bytes of payload: a frame that breaks one of
these rules fails the test with an AssertionError (ProtocolViolation).

For longer exchanges (tests/conformance): frames(...) and fragment(...)
build several frames at once; RawConnection.recv_data returns a message's
exact bytes, recv_until_close what came before the close, expect_close a
close code followed by the end of TCP, expect_drop the end of TCP by FIN
or reset, and send_raw_lenient keeps sending into a closed connection.
"""
import base64
import collections
import hashlib
import os
import socket
import struct
import time

__all__ = [
    "GUID", "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING",
    "OP_PONG", "Frame", "Response", "ProtocolViolation", "make_key",
    "accept_for", "handshake_request", "encode_frame", "close_payload",
    "parse_close", "RawConnection", "open_raw", "http_request", "connect",
    "read_response_head", "read_until_close", "frames", "fragment",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DEFAULT_TIMEOUT = 5.0

Frame = collections.namedtuple("Frame", "fin opcode payload")
Frame.__doc__ = "A server frame: fin (bool), opcode (int), payload (bytes)."

Response = collections.namedtuple("Response", "status headers body")
Response.__doc__ = """An HTTP response: status (int), headers (a dict with
lower-cased names; repeated fields joined with ", "), body (bytes)."""


class ProtocolViolation(AssertionError):
    """The server sent something RFC 6455 does not allow it to send."""


def make_key():
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key):
    """The Sec-WebSocket-Accept value a server must answer key with."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def _text(value):
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def handshake_request(path, host="127.0.0.1", key=None, extra_headers=(),
                      version=13, method="GET", http_version="HTTP/1.1",
                      upgrade="websocket", connection="Upgrade", omit=(),
                      line_end=b"\r\n"):
    """The bytes of an opening handshake request.

    Each standard header is given by its argument; None leaves it out
    (host, version, upgrade, connection).  key=None makes a fresh key; to
    send no Sec-WebSocket-Key at all, name it in omit, which leaves out
    any header by name (case-insensitive).  extra_headers is a sequence of
    (name, value) pairs, or a dict, appended in order; names and values
    are sent exactly as given (str as Latin-1, or bytes).
    """
    if key is None:
        key = make_key()
    headers = [("Host", host), ("Upgrade", upgrade),
               ("Connection", connection), ("Sec-WebSocket-Key", key),
               ("Sec-WebSocket-Version", version)]
    if isinstance(extra_headers, dict):
        extra_headers = list(extra_headers.items())
    left_out = {name.lower() for name in omit}
    lines = [b"%s %s %s" % (_text(method), _text(path), _text(http_version))]
    for name, value in headers + list(extra_headers):
        if value is None or name.lower() in left_out:
            continue
        lines.append(_text(name) + b": " + _text(value))
    return line_end.join(lines) + line_end + line_end


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0,
                 mask_key=None, length=None):
    """The bytes of one client frame.

    payload is bytes (str is sent as UTF-8).  mask=True masks it with
    mask_key (4 bytes; random when None); mask=False sends it in the clear,
    which a server must refuse.  rsv is the 3-bit RSV1..RSV3 field (4 is
    RSV1).  length overrides the announced payload length, to send a frame
    whose header lies; without it the shortest encoding is used.
    """
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not 0 <= opcode <= 0xF or not 0 <= rsv <= 7:
        raise ValueError("opcode is 4 bits, rsv is 3 bits")
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n <= 0xFFFF:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4) if mask_key is None else bytes(mask_key)
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    return bytes(head) + key + _mask(payload, key)


def _mask(data, key):
    # XOR with the key repeated over the whole length, as one big integer.
    if not data:
        return b""
    reps = key * (len(data) // 4 + 1)
    n = len(data)
    x = int.from_bytes(data, "big") ^ int.from_bytes(reps[:n], "big")
    return x.to_bytes(n, "big")


def close_payload(code=None, reason=b""):
    """A close frame payload: nothing when code is None, else the code in
    network order and the reason (str as UTF-8, or bytes as given)."""
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def connect(port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT):
    """A TCP connection with Nagle off, so that each send is one segment."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _send(sock, data, split=None, delay=0.0):
    """Send data at once, or in chunks of split bytes with delay seconds
    between them."""
    if not split:
        sock.sendall(data)
        return
    for i in range(0, len(data), split):
        sock.sendall(data[i:i + split])
        if delay and i + split < len(data):
            time.sleep(delay)


def _split_head(data):
    """(head, rest) when data holds a whole response head, else None.
    Lines end in CR LF; a bare LF is accepted too."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = data.find(sep)
        if i >= 0:
            return data[:i], data[i + len(sep):]
    return None


def _parse_head(head):
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    status_line = lines[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or \
            not parts[1].isdigit() or len(parts[1]) != 3:
        raise ProtocolViolation(f"malformed status line {status_line!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolViolation(f"malformed header line {line!r}")
        name, value = name.lower(), value.strip()
        headers[name] = headers[name] + ", " + value if name in headers \
            else value
    return int(parts[1]), headers


class RawConnection:
    """A WebSocket connection driven byte by byte.

    sock is the socket; status and headers are those of the handshake
    response (101 for connections made by open_raw).  Use it as a context
    manager, or call close().
    """

    def __init__(self, sock, status=None, headers=None, buffered=b""):
        self.sock = sock
        self.status = status
        self.headers = headers or {}
        self._buf = bytearray(buffered)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the TCP connection (no close frame)."""
        self.sock.close()

    def abort(self):
        """Reset the TCP connection (SO_LINGER 0: an RST, no FIN)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
        self.sock.close()

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    # Sending

    def send_raw(self, data, split=None, delay=0.0):
        """Send bytes as they are; split and delay as in send_frame."""
        _send(self.sock, data, split, delay)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0,
                   split=None, delay=0.0, mask_key=None, length=None):
        """Send one frame (see encode_frame).  split sends its bytes in
        chunks of that size (1: byte by byte), delay seconds apart."""
        self.send_raw(encode_frame(opcode, payload, fin, mask, rsv,
                                   mask_key, length), split, delay)

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text, **kw)

    def send_binary(self, data, **kw):
        self.send_frame(OP_BINARY, data, **kw)

    def send_close(self, code=None, reason=b"", **kw):
        """Send a close frame: empty when code is None."""
        self.send_frame(OP_CLOSE, close_payload(code, reason), **kw)

    # Receiving

    def _fill(self, n, deadline):
        """Wait until the buffer holds n bytes.  EOFError when the server
        closes first, TimeoutError at the deadline."""
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"timed out waiting for {n - len(self._buf)} more bytes")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buf)))
            except socket.timeout:
                continue
            if not chunk:
                raise EOFError(f"connection closed with {len(self._buf)} of "
                               f"{n} bytes of a frame received")
            self._buf += chunk

    def _take(self, n):
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def recv_frame(self, timeout=DEFAULT_TIMEOUT):
        """The next server frame as Frame(fin, opcode, payload)."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self._buf[0], self._buf[1]
        if b1 & 0x80:
            raise ProtocolViolation("the server sent a masked frame")
        if b0 & 0x70:
            raise ProtocolViolation(f"the server set RSV bits {b0 & 0x70:#x}")
        fin, opcode, n = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
        head = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", self._buf[2:4])[0]
            head = 4
            if n < 126:
                raise ProtocolViolation("16-bit length not minimal")
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", self._buf[2:10])[0]
            head = 10
            if n <= 0xFFFF or n >> 63:
                raise ProtocolViolation("bad 64-bit length")
        if opcode & 0x8:
            if not fin:
                raise ProtocolViolation("fragmented control frame")
            if n > 125:
                raise ProtocolViolation("control frame over 125 bytes")
        if opcode not in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING,
                          OP_PONG):
            raise ProtocolViolation(f"reserved opcode {opcode}")
        self._fill(head + n, deadline)
        self._take(head)
        return Frame(fin, opcode, self._take(n))

    def recv_message(self, timeout=DEFAULT_TIMEOUT):
        """The next data message, reassembled: (opcode, payload), with text
        decoded to str.  Pings and pongs on the way are skipped; a close
        frame raises ProtocolViolation."""
        deadline = time.monotonic() + timeout
        opcode, parts = None, []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode in (OP_PING, OP_PONG):
                continue
            if f.opcode == OP_CLOSE:
                raise ProtocolViolation(
                    f"close frame {parse_close(f.payload)} instead of a "
                    "message")
            if (opcode is None) != (f.opcode != OP_CONT):
                raise ProtocolViolation("bad fragmentation from the server")
            opcode = f.opcode if opcode is None else opcode
            parts.append(f.payload)
            if f.fin:
                data = b"".join(parts)
                return opcode, data.decode("utf-8") if opcode == OP_TEXT \
                    else data

    def recv_close(self, timeout=DEFAULT_TIMEOUT):
        """Expect the next frame to be a close frame; return (code,
        reason) with reason a str, or None for an empty close frame."""
        f = self.recv_frame(timeout)
        if f.opcode != OP_CLOSE:
            raise ProtocolViolation(
                f"expected a close frame, got opcode {f.opcode} with "
                f"{f.payload[:60]!r}")
        return parse_close(f.payload)

    def expect_eof(self, timeout=DEFAULT_TIMEOUT):
        """Expect the server to close TCP (an orderly FIN) within timeout,
        without sending any more bytes first."""
        deadline = time.monotonic() + timeout
        while not self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server did not close the connection")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                return
            self._buf += chunk
        raise ProtocolViolation(
            f"expected the connection to close, got {bytes(self._buf[:60])!r}")

    # Additions for the conformance suite (tests/conformance)

    def send_raw_lenient(self, data, split=None, delay=0.0):
        """Send like send_raw, but take a server that has already closed or
        reset the connection as the end of the sending: returns False when
        the send failed that way, True when every byte went out.  For
        tests that keep sending after the frame that should fail the
        connection."""
        try:
            _send(self.sock, data, split, delay)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def recv_data(self, timeout=DEFAULT_TIMEOUT):
        """The next data message, reassembled, as (opcode, payload) with the
        payload as bytes even for text, so that it compares exactly with
        what was sent.  Unlike recv_message, a control frame on the way
        (ping, pong or close) fails with ProtocolViolation: nothing but
        the message may come first."""
        deadline = time.monotonic() + timeout
        opcode, parts = None, []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                raise ProtocolViolation(
                    f"close frame {parse_close(f.payload)} instead of a "
                    "message")
            if f.opcode in (OP_PING, OP_PONG):
                raise ProtocolViolation(
                    f"control frame {f.opcode} with {f.payload[:60]!r} "
                    "instead of a message")
            if (opcode is None) != (f.opcode != OP_CONT):
                raise ProtocolViolation("bad fragmentation from the server")
            opcode = f.opcode if opcode is None else opcode
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def recv_until_close(self, timeout=DEFAULT_TIMEOUT):
        """Read frames up to and including the server's close frame:
        (the frames that came before it, (code, reason) of the close or
        None when it was empty)."""
        deadline = time.monotonic() + timeout
        before = []
        while True:
            f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode == OP_CLOSE:
                return before, parse_close(f.payload)
            before.append(f)

    def expect_close(self, code, timeout=DEFAULT_TIMEOUT):
        """Expect the next frame to be a close frame with code (None: an
        empty close frame), then the server to close TCP with an orderly
        FIN.  Returns the close reason ("" for an empty close)."""
        got = self.recv_close(timeout)
        if code is None:
            if got is not None:
                raise AssertionError(f"expected an empty close frame, got "
                                     f"{got}")
            self.expect_eof(timeout)
            return ""
        if got is None or got[0] != code:
            raise AssertionError(f"expected close code {code}, got {got}")
        self.expect_eof(timeout)
        return got[1]

    def expect_drop(self, timeout=DEFAULT_TIMEOUT):
        """Expect the server to end the connection, with a FIN or a reset,
        without sending any more bytes first.  Returns "eof" or "reset"."""
        deadline = time.monotonic() + timeout
        while not self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the server did not end the connection")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return "reset"
            if not chunk:
                return "eof"
            self._buf += chunk
        raise ProtocolViolation(
            f"expected the connection to end, got {bytes(self._buf[:60])!r}")


def parse_close(payload):
    """(code, reason) of a close payload, or None when it is empty."""
    if not payload:
        return None
    if len(payload) == 1:
        raise ProtocolViolation("close payload of one byte")
    code = struct.unpack("!H", payload[:2])[0]
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(f"close reason is not UTF-8: {payload!r}")
    return code, reason


def _read_head(sock, deadline, buf=b""):
    """Read a response head: (status, headers, bytes after the head)."""
    buf = bytearray(buf)
    while True:
        parts = _split_head(bytes(buf))
        if parts is not None:
            status, headers = _parse_head(parts[0])
            return status, headers, parts[1]
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out waiting for a response head")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            raise EOFError(f"connection closed before a whole response "
                           f"head: {bytes(buf)!r}")
        buf += chunk


def read_response_head(sock, timeout=DEFAULT_TIMEOUT):
    """Read an HTTP response head from sock: (status, headers, the bytes
    that came after the head).  For requests sent by hand; to go on with
    WebSocket frames, wrap them as RawConnection(sock, status, headers,
    rest)."""
    return _read_head(sock, time.monotonic() + timeout)


def open_raw(port, path="/", host="127.0.0.1", extra_headers=(), then=b"",
             split=None, delay=0.0, timeout=DEFAULT_TIMEOUT, **request):
    """Connect, send a valid handshake for path (handshake_request's other
    arguments may be passed), and read the 101 response, checking its
    Upgrade, Connection and Sec-WebSocket-Accept headers.  then is sent in
    the same send as the request (frames pipelined behind it); split and
    delay send the whole lot in pieces.  Returns a RawConnection, whose
    buffer keeps any bytes that came right after the 101 head."""
    key = request.pop("key", None) or make_key()
    data = handshake_request(path, host=host, key=key,
                             extra_headers=extra_headers, **request) + then
    sock = connect(port, timeout=timeout)
    try:
        _send(sock, data, split, delay)
        status, headers, rest = _read_head(sock,
                                           time.monotonic() + timeout)
        if status != 101:
            raise AssertionError(f"handshake answered {status}: {headers}, "
                                 f"{rest!r}")
        if headers.get("upgrade", "").lower() != "websocket":
            raise ProtocolViolation(f"101 without Upgrade: websocket: "
                                    f"{headers}")
        if "upgrade" not in [t.strip().lower() for t in
                             headers.get("connection", "").split(",")]:
            raise ProtocolViolation(f"101 without Connection: Upgrade: "
                                    f"{headers}")
        if headers.get("sec-websocket-accept") != accept_for(key):
            raise ProtocolViolation(
                f"wrong Sec-WebSocket-Accept for {key}: {headers}")
    except BaseException:
        sock.close()
        raise
    return RawConnection(sock, status, headers, rest)


def http_request(port, data, timeout=DEFAULT_TIMEOUT, split=None, delay=0.0,
                 host="127.0.0.1", allow_reset=False):
    """Send raw bytes, read the response until the server closes the
    connection, and return Response(status, headers, body) with body all
    the bytes after the head.  TimeoutError when the server does not close
    within timeout, so a passing call also shows that it did.

    A reset (ECONNRESET) instead of an orderly close is an error: a server
    that resets may destroy its own response before the client reads it.
    allow_reset=True takes a reset after the head as the end of the body.
    """
    deadline = time.monotonic() + timeout
    with connect(port, host, timeout) as sock:
        _send(sock, data, split, delay)
        status, headers, rest = _read_head(sock, deadline)
        body = read_until_close(sock, rest, deadline, status, allow_reset)
    return Response(status, headers, body)


def read_until_close(sock, rest, deadline, status, allow_reset=False):
    """The body of a response whose head came with rest: rest and every
    byte until the server closes the connection, which it must do by
    deadline (time.monotonic()); see http_request for allow_reset."""
    body = bytearray(rest)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the server did not close the connection "
                               f"after a {status} response")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            if not allow_reset:
                raise
            break
        if not chunk:
            break
        body += chunk
    return bytes(body)


# Additions for the conformance suite (tests/conformance)


def frames(*specs):
    """The bytes of several client frames in a row, for one send: each spec
    is (opcode, payload) or (opcode, payload, {encode_frame keywords})."""
    return b"".join(encode_frame(s[0], s[1], **(s[2] if len(s) > 2 else {}))
                    for s in specs)


def fragment(opcode, payload, sizes, **kw):
    """The frames of one message in fragments, as a list of bytes: the
    first frame has opcode, the others are continuations, the last has
    FIN.  sizes is an int (fragments of that many bytes, the last one
    what is left) or a list of fragment lengths adding up to the payload's
    length (zeros make empty fragments).  kw goes to encode_frame."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if isinstance(sizes, int):
        if sizes <= 0:
            raise ValueError("fragment size must be positive")
        sizes = [min(sizes, len(payload) - i)
                 for i in range(0, len(payload), sizes)] or [0]
    if sum(sizes) != len(payload) or not sizes:
        raise ValueError("fragment sizes must add up to the payload length")
    out, pos = [], 0
    for i, n in enumerate(sizes):
        out.append(encode_frame(opcode if i == 0 else OP_CONT,
                                payload[pos:pos + n],
                                fin=i == len(sizes) - 1, **kw))
        pos += n
    return out
