#!/usr/bin/python3
"""Hunchensocket's chat example as a gatewayd room backend.

Everyone in a room sees "NAME has joined ROOM", "NAME says TEXT" and
"NAME has left ROOM"; NAME is the client's ?name= query parameter, or else
its client id.  The records are described in docs/PROTOCOL.md.  When
gatewayd restarts a failed backend, the new one takes the members over
from their resumed opens without announcing them again.

  room.py                one room per process, records on stdin/stdout
                         (backend = exec:/usr/bin/python3 .../room.py)
  room.py --listen PATH  one room per connection to a Unix socket
                         (backend = unix:PATH)

Standard library only; one log line per event on stderr.
"""
import argparse
import asyncio
import base64
import json
import os
import stat
import sys
from urllib.parse import parse_qs

MAX_NAME = 32          # the longest name an authorizing room lets in
LINE_LIMIT = 1 << 28   # the longest line --listen mode reads


def log(room, what):
    print(f"chat {room or '-'}: {what}", file=sys.stderr, flush=True)


def broadcast(text):
    return {"type": "broadcast", "text": text}


class ChatRoom:
    """One room: who is in it, and what to answer to each record."""

    def __init__(self):
        self.room = None   # the room's path, from hello
        self.names = {}    # client id -> NAME, for the room's members

    def handle(self, rec):
        """Take one record from gatewayd; return the records to write back."""
        kind = rec.get("type")
        if kind == "hello":
            # A resumed hello: a backend before us failed, and the room's
            # members follow as resumed opens.  Either way we know no one.
            self.room, self.names = rec["room"], {}
            log(self.room, f"hello, protocol version {rec.get('version')}"
                           + (", resumed" if rec.get("resumed") else ""))
            return []
        if kind in ("open", "message", "close"):
            return getattr(self, "on_" + kind)(rec)
        log(self.room, f"ignored a record of type {kind!r}")   # a newer gatewayd
        return []

    def on_open(self, rec):
        client = rec["client"]
        name = parse_qs(rec.get("query") or "").get("name", [client])[0]
        if rec.get("resumed"):
            # A member since before our start (docs/PROTOCOL.md 3.3): the
            # room saw it join already, and it needs no verdict whatever
            # "authorize" says.  Learn its name and say nothing.
            self.names[client] = name
            log(self.room, f"{client} resumed as {name!r}")
            return []
        out = []
        if rec.get("authorize"):
            # The client is still in its handshake: accept or reject it.
            if name in self.names.values():
                log(self.room, f"{client} rejected: name {name!r} is taken")
                return [{"type": "reject", "client": client,
                         "status": 409, "reason": "name taken"}]
            if len(name) > MAX_NAME:
                log(self.room, f"{client} rejected: name is too long")
                return [{"type": "reject", "client": client,
                         "status": 400, "reason": "name too long"}]
            out.append({"type": "accept", "client": client})
        # A member from now on.  gatewayd keeps our order, so the accept
        # comes first and the newcomer sees its own join as well.
        self.names[client] = name
        log(self.room, f"{client} joined as {name!r}")
        return out + [broadcast(f"{name} has joined {self.room}")]

    def on_message(self, rec):
        name = self.names.get(rec["client"])
        if name is None:
            log(self.room, f"message from {rec['client']}, not a member")
            return []
        if "binary" in rec:
            size = len(base64.b64decode(rec["binary"], validate=True))
            log(self.room, f"{name} sent {size} bytes")
            return [broadcast(f"{name} sent {size} bytes")]
        log(self.room, f"{name} said {len(rec['text'])} characters")
        return [broadcast(f"{name} says {rec['text']}")]

    def on_close(self, rec):
        name = self.names.pop(rec["client"], None)
        log(self.room, f"{rec['client']} closed, code {rec.get('code')}")
        if name is None:   # not a client we know: nothing to announce
            return []
        return [broadcast(f"{name} has left {self.room}")]


def answer(room, line):
    """One line in, the encoded lines to write out.  A bad line is logged
    and skipped: it must not take the room down."""
    try:
        rec = json.loads(line.decode("utf-8"))
        if not isinstance(rec, dict):
            raise ValueError("not a JSON object")
        replies = room.handle(rec)
    except Exception as e:   # bad JSON, a missing field, a wrong type...
        log(room.room, f"skipped a bad record ({type(e).__name__}: {e}): "
                       f"{line[:100]!r}")
        return []
    # json.dumps escapes newlines (and non-ASCII): each record is one line.
    return [json.dumps(r, separators=(",", ":")).encode() + b"\n"
            for r in replies]


def serve_stdio():
    """exec: mode.  The process is one room; gatewayd closes stdin at its end."""
    room, out = ChatRoom(), sys.stdout.buffer
    try:
        for line in iter(sys.stdin.buffer.readline, b""):
            for reply in answer(room, line):
                out.write(reply)
                out.flush()   # gatewayd acts on whole lines: flush each one
    except (BrokenPipeError, ConnectionResetError):
        pass
    log(room.room, "end of input, exiting")


async def serve_connection(reader, writer):
    """--listen mode.  Each connection is a room of its own."""
    room = ChatRoom()
    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:   # longer than LINE_LIMIT; asyncio dropped it
                log(room.room, "skipped an overlong line")
                continue
            if not line:
                break
            for reply in answer(room, line):
                writer.write(reply)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        log(room.room, "connection closed, room state dropped")
        writer.close()


async def serve_unix(path):
    # A socket file left by an earlier run would make the bind fail.
    if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
        os.unlink(path)
    server = await asyncio.start_unix_server(serve_connection, path,
                                             limit=LINE_LIMIT)
    log(None, f"listening on {path}")
    await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description="gatewayd's chat room")
    parser.add_argument("--listen", metavar="PATH",
                        help="serve rooms on this Unix socket, not on stdio")
    args = parser.parse_args()
    try:
        if args.listen:
            asyncio.run(serve_unix(args.listen))
        else:
            serve_stdio()
    except KeyboardInterrupt:
        pass
    except OSError as e:   # e.g. --listen PATH is in use or not writable
        sys.exit(f"chat: {e}")


if __name__ == "__main__":
    main()
