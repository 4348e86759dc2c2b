"""A test room that records exactly what it has read: for the redelivery
tests, where "taken from the socket" must be "in the record file".

    rawrecord.py RECORD_DIR [--echo] [--listen PATH]

It never reads through a buffered reader (which would take bytes from the
socket that the file does not show).  It peeks at its socket (MSG_PEEK),
appends the complete lines there to RECORD_DIR/PID.jsonl, byte for byte
as they came, in one write, and only then takes them from the socket and
acts on them.  So a process SIGKILLed at any instant has taken from its
socket nothing but what its file shows, and the unfinished tail of a
line (which the gateway cannot count as read: part of it is still in the
socket).  It serves its stdin and stdout (one socket, as gatewayd spawns
an exec: backend), or with --listen a Unix socket, one room per
connection, all recorded in the one file.

A text message from a client is:

    stall:SECONDS   the room sleeps that long without reading (the lines
                    read along with this one are recorded already); not
                    when the record is marked "redelivered"
    ack             {"type":"ack","seq":S} is written, S being this
                    record's seq (delivery = ack; 1 without a seq)
    ack:N           {"type":"ack","seq":N} is written
    autoack         from this record on, every record is acknowledged
                    once recorded (one ack per read, for the last one)
    anything else   sent back to its sender, with --echo

Signals (handled whatever the rooms are doing, stalls included):

    SIGUSR1         acknowledge every record acted on so far, once
    SIGUSR2         the same, and autoack from then on
"""
import argparse
import json
import os
import signal
import socket
import sys
import threading
import time

from unixserve import serve_unix

READ_SIZE = 65536


class Room:
    """One connection: a room's records in, commands out."""

    rooms = set()               # the live ones, for the signals
    rooms_lock = threading.Lock()

    def __init__(self, sock, logfd, echo):
        self.sock, self.wfd, self.logfd = sock, sock.fileno(), logfd
        self.echo = echo
        self.wlock = threading.Lock()
        self.last_seq = 0       # the highest seq acted on
        self.autoack = False

    def write(self, data):
        """Write data whole (commands from two threads never mix)."""
        with self.wlock:
            view = memoryview(data)
            while view:
                view = view[os.write(self.wfd, view):]

    def ack_all(self):
        if self.last_seq:
            self.write(b'{"type":"ack","seq":%d}\n' % self.last_seq)

    def serve(self):
        with Room.rooms_lock:
            Room.rooms.add(self)
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with Room.rooms_lock:
                Room.rooms.discard(self)

    def take(self, n):
        """Take n bytes, there already, from the socket."""
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionResetError("peeked bytes gone")
            data += chunk
        return data

    def read(self):
        """The complete lines that came next, recorded; b"" at the end."""
        part = b""
        while True:
            data = self.sock.recv(READ_SIZE, socket.MSG_PEEK)
            if not data:
                return b""
            end = data.rfind(b"\n") + 1
            if end == 0:
                # Part of a line: taken, to wait for the rest.
                part += self.take(len(data))
                continue
            lines = part + data[:end]
            os.write(self.logfd, lines)
            self.take(end)
            return lines

    def _serve(self):
        while True:
            lines = self.read()
            if not lines:
                return
            out = []
            for raw in lines.split(b"\n")[:-1]:
                record = json.loads(raw)
                seq = record.get("seq")
                if isinstance(seq, int):
                    self.last_seq = max(self.last_seq, seq)
                if record.get("type") != "message":
                    continue
                text = record.get("text")
                if text is None:
                    continue
                if text.startswith("stall:"):
                    if record.get("redelivered"):
                        continue        # done already, by the last one
                    if out:
                        self.write(b"".join(out))
                        out = []
                    time.sleep(float(text[6:]))
                elif text == "ack":
                    out.append(b'{"type":"ack","seq":%d}\n' %
                               (seq if isinstance(seq, int) else 1))
                elif text.startswith("ack:"):
                    out.append(b'{"type":"ack","seq":%d}\n' % int(text[4:]))
                elif text == "autoack":
                    self.autoack = True
                elif self.echo:
                    out.append(json.dumps({"type": "send",
                                           "client": record["client"],
                                           "text": text}).encode() + b"\n")
            if self.autoack and self.last_seq:
                out.append(b'{"type":"ack","seq":%d}\n' % self.last_seq)
            if out:
                self.write(b"".join(out))


def signals():
    """SIGUSR1 and SIGUSR2 reach a thread of their own through a wakeup
    pipe, which writes the acks: a room may be asleep in a stall."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(w)

    def dispatch():
        while True:
            for sig in os.read(r, 64):
                with Room.rooms_lock:
                    rooms = list(Room.rooms)
                for room in rooms:
                    if sig == signal.SIGUSR2:
                        room.autoack = True
                    try:
                        room.ack_all()
                    except OSError:
                        pass
    threading.Thread(target=dispatch, daemon=True).start()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("record_dir")
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--listen")
    args = parser.parse_args()
    logfd = os.open(os.path.join(args.record_dir, f"{os.getpid()}.jsonl"),
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    signals()
    if not args.listen:
        # stdin and stdout are one socket.
        Room(socket.socket(fileno=sys.stdin.fileno()), logfd,
             args.echo).serve()
        return

    def connection(conn):
        with conn:
            Room(conn, logfd, args.echo).serve()

    serve_unix(args.listen, connection)


if __name__ == "__main__":
    main()
