"""wsdeflate: permessage-deflate (RFC 7692) over wsraw connections.

A client library negotiates and compresses for itself and hides the
frames; the tests of a server must see them: which frames carry RSV1,
which window the server compressed with, what happens to a frame that
breaks the extension's rules.  This module does the client's side with
zlib, byte for byte:

    offer(...)             one permessage-deflate offer, as header text
    parse_extensions(v)    a Sec-WebSocket-Extensions value, parsed
    gatewayd_answer(...)   what gatewayd documents it answers an offer
    open_deflate(port, path, offers, ...)
                           connect, offer, read the 101 and the answer:
                           a DeflateConnection (answer None: declined)
    compress_payload(...)  deflate a message the RFC 7692 way
    zip_bomb(n)            a payload that inflates to n zero bytes

A DeflateConnection sends messages compressed or plain, whole or in
fragments (send_message), and reads messages whose frames may carry
RSV1 (recv_frame, recv_message), inflating them with the window and
context takeover the server agreed to: a server that compresses with a
larger window than it agreed fails zlib's distance check (give or take
inflate_step bytes: see DeflateConnection.inflate).
"""
import zlib

import wsraw
from wsraw import OP_CONT

EXTENSION = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"
RSV1 = 4                        # wsraw's rsv field: RSV1..RSV3 as 3 bits


def offer(server_no_context_takeover=False, client_no_context_takeover=False,
          server_max_window_bits=None, client_max_window_bits=None):
    """One offer: client_max_window_bits=True offers it without a value."""
    parts = [EXTENSION]
    if server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if server_max_window_bits is not None:
        parts.append(f"server_max_window_bits={server_max_window_bits}")
    if client_max_window_bits is True:
        parts.append("client_max_window_bits")
    elif client_max_window_bits is not None:
        parts.append(f"client_max_window_bits={client_max_window_bits}")
    return "; ".join(parts)


def parse_extensions(value):
    """[(name, {param: value or True})] of a header value; a parameter
    given twice fails the test (RFC 7692 7: never in a response)."""
    out = []
    for element in value.split(","):
        items = [s.strip() for s in element.split(";")]
        params = {}
        for item in items[1:]:
            name, eq, val = item.partition("=")
            name = name.strip()
            assert name not in params, f"{name} twice in {value!r}"
            params[name] = val.strip().strip('"') if eq else True
        out.append((items[0], params))
    return out


def gatewayd_answer(snct=False, cnct=False, smwb=None, cmwb=None,
                    context_takeover=False, window_bits=15):
    """The parameters gatewayd answers an offer with (gatewayd/
    ws_deflate.h), as parse_extensions gives them: both
    no_context_takeover flags unless the room keeps context
    (compression_no_context_takeover = no: then those offered);
    server_max_window_bits when the client limited it or the room's
    window (compression_window_bits) is smaller; client_max_window_bits
    when offered with a value below 15 (cmwb=True: offered without
    one)."""
    p = {}
    if not context_takeover or snct:
        p["server_no_context_takeover"] = True
    if not context_takeover or cnct:
        p["client_no_context_takeover"] = True
    if smwb is not None:
        p["server_max_window_bits"] = str(min(smwb, window_bits))
    elif window_bits < 15:
        p["server_max_window_bits"] = str(window_bits)
    if cmwb not in (None, True) and cmwb < 15:
        p["client_max_window_bits"] = str(cmwb)
    return p


class Agreement:
    """What the server's answer agreed to (RFC 7692 7.1)."""

    def __init__(self, params):
        for name in params:
            assert name in ("server_no_context_takeover",
                            "client_no_context_takeover",
                            "server_max_window_bits",
                            "client_max_window_bits"), name
        self.params = params
        self.server_no_context_takeover = "server_no_context_takeover" \
            in params
        self.client_no_context_takeover = "client_no_context_takeover" \
            in params
        self.server_max_window_bits = int(params.get(
            "server_max_window_bits", 15))
        self.client_max_window_bits = int(params.get(
            "client_max_window_bits", 15))


def compress_payload(compressor, data):
    """One message through compressor (a zlib compressobj): deflate,
    sync flush, the final 00 00 ff ff stripped (RFC 7692 7.2.1)."""
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL), out[-8:]
    return out[:-4]


def zip_bomb(n, piece=1 << 24):
    """A compressed message payload that inflates to n zero bytes: zeros
    compressed piece by piece (n need not fit in memory)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(piece)
    out = []
    left = n
    while left > 0:
        k = min(left, piece)
        out.append(c.compress(zeros[:k]))
        left -= k
    out.append(c.flush(zlib.Z_SYNC_FLUSH))
    data = b"".join(out)
    assert data.endswith(TAIL)
    return data[:-4]


class DeflateConnection:
    """A wsraw connection that agreed to permessage-deflate (or not:
    agreement None)."""

    inflate_step = 256

    def __init__(self, conn, agreement, level=6, mem_level=8,
                 client_window_bits=None):
        self.conn = conn
        self.agreement = agreement
        self.level = level
        self.mem_level = mem_level
        if agreement is not None:
            bits = client_window_bits or agreement.client_max_window_bits
            assert bits <= agreement.client_max_window_bits
            self.client_bits = max(bits, 9)     # zlib: no raw window of 8
            self._compressor = self._new_compressor()
            self._decompressor = self._new_decompressor()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    def close(self):
        self.conn.close()

    def _new_compressor(self):
        return zlib.compressobj(self.level, zlib.DEFLATED, -self.client_bits,
                                self.mem_level)

    def _new_decompressor(self):
        # The agreed window exactly: a distance beyond it is an error.
        return zlib.decompressobj(-self.agreement.server_max_window_bits)

    # Sending

    def compress(self, data):
        """The payload of data as a compressed message of ours."""
        payload = compress_payload(self._compressor, data)
        if self.agreement.client_no_context_takeover:
            self._compressor = self._new_compressor()
        return payload

    def message_frames(self, opcode, data, compressed=True, sizes=None):
        """The frames (list of bytes) of one message: RSV1 on the first
        when compressed; sizes as wsraw.fragment's, applied to the
        payload as sent."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        payload = self.compress(data) if compressed else data
        if sizes is None:
            return [wsraw.encode_frame(opcode, payload,
                                       rsv=RSV1 if compressed else 0)]
        frames = wsraw.fragment(opcode, payload, sizes)
        if compressed:
            first = bytearray(frames[0])
            first[0] |= 0x40
            frames[0] = bytes(first)
        return frames

    def send_message(self, opcode, data, compressed=True, sizes=None):
        self.conn.send_raw(b"".join(self.message_frames(opcode, data,
                                                        compressed, sizes)))

    # Receiving

    def recv_frame(self, timeout=wsraw.DEFAULT_TIMEOUT):
        """(rsv1, Frame) of the next server frame: wsraw's checks, but
        RSV1 is let through (and reported) once the extension is agreed."""
        import time
        self.conn._fill(2, time.monotonic() + timeout)
        rsv1 = bool(self.conn._buf[0] & 0x40)
        if rsv1:
            assert self.agreement is not None, \
                "RSV1 from a server that agreed to no extension"
            self.conn._buf[0] &= 0xBF
        return rsv1, self.conn.recv_frame(timeout)

    def inflate(self, payload):
        """A message of the server's, inflated with the agreed window.
        zlib checks a distance against its window only for what is not
        in the output of the same call: the output is taken in pieces of
        inflate_step bytes, so a distance past the window by more than
        that fails."""
        d = self._decompressor
        out, data = [], payload + TAIL
        while data:
            out.append(d.decompress(data, self.inflate_step))
            data = d.unconsumed_tail
        out.append(d.flush())
        data = b"".join(out)
        assert not d.unused_data, d.unused_data[:20]
        if self.agreement.server_no_context_takeover:
            self._decompressor = self._new_decompressor()
        return data

    def recv_message(self, timeout=wsraw.DEFAULT_TIMEOUT, controls=False):
        """The next data message: (opcode, data as bytes, compressed).
        RSV1 may be on its first frame only; control frames on the way
        fail the test unless controls is true (then they are skipped)."""
        import time
        deadline = time.monotonic() + timeout
        opcode, parts, compressed = None, [], False
        while True:
            rsv1, f = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if f.opcode >= 8:
                assert not rsv1, "RSV1 on a control frame"
                if f.opcode == wsraw.OP_CLOSE:
                    raise wsraw.ProtocolViolation(
                        f"close {wsraw.parse_close(f.payload)} instead of a "
                        "message")
                assert controls, f"control frame {f} instead of a message"
                continue
            if opcode is None:
                assert f.opcode != OP_CONT, "continuation without a message"
                opcode, compressed = f.opcode, rsv1
            else:
                assert f.opcode == OP_CONT, "new message inside a message"
                assert not rsv1, "RSV1 on a continuation frame"
            parts.append(f.payload)
            if f.fin:
                data = b"".join(parts)
                return opcode, self.inflate(data) if compressed else data, \
                    compressed

    def recv_close(self, timeout=wsraw.DEFAULT_TIMEOUT):
        return self.conn.recv_close(timeout)

    def expect_close(self, code, timeout=wsraw.DEFAULT_TIMEOUT):
        return self.conn.expect_close(code, timeout)


def open_deflate(port, path, offers=(offer(client_max_window_bits=True),),
                 extra_headers=(), **kw):
    """Connect and offer offers (a list of offer() strings, sent as one
    header, or None to send none); returns a DeflateConnection whose
    agreement is None when the server answered no extension.  kw goes
    to wsraw.open_raw, and level, mem_level, client_window_bits to the
    DeflateConnection."""
    dkw = {k: kw.pop(k) for k in ("level", "mem_level", "client_window_bits")
           if k in kw}
    headers = list(extra_headers)
    if offers:
        headers.append(("Sec-WebSocket-Extensions", ", ".join(offers)))
    conn = wsraw.open_raw(port, path, extra_headers=headers, **kw)
    answer = conn.headers.get("sec-websocket-extensions")
    agreement = None
    if answer is not None:
        exts = parse_extensions(answer)
        assert len(exts) == 1 and exts[0][0] == EXTENSION, answer
        agreement = Agreement(exts[0][1])
    return DeflateConnection(conn, agreement, **dkw)
