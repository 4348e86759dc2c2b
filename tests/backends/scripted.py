"""A test room that its clients drive: each text message is an instruction.

    scripted.py [--record FILE] [--listen PATH]

Every record received is appended to FILE (one JSON line each, like
recorder.py) before it is acted on.  A text message from a client is:

    cmd:LINE       LINE is written to gatewayd verbatim, followed by "\\n"
                   (LINE may hold more "\\n"s: several lines at once)
    whoami         answered with {"client": ID, "room": ROOM, "pid": PID}
    stderr:TEXT    TEXT is written to stderr (gatewayd logs it); answered "ok"
    huge:N         a line of N "x" bytes is written, then "\\n"
    pad:N:LINE     LINE padded with blanks to N bytes is written, then "\\n"
    exit[:STATUS]  the process exits at once (status 3 by default)
    drop           --listen: this connection is closed; else like exit
    anything else  echoed back to its sender (binary messages too)

An open record with "authorize": true is answered from the client's query
string: verdict=accept (the default) with subprotocol=NAME when given,
verdict=reject with status=N (default 403) and reason=TEXT, or
verdict=ignore (no answer).

With --listen the program serves a Unix socket, one room per connection;
otherwise the process is one room on stdin/stdout.
"""
import argparse
import json
import os
import socket
import sys
from urllib.parse import parse_qs

from unixserve import serve_unix


class Drop(Exception):
    """Close this room's connection."""


def handle(record, state, write, listening):
    kind = record.get("type")
    if kind == "hello":
        state["room"] = record.get("room")
        return
    if kind == "open" and record.get("authorize"):
        query = parse_qs(record.get("query") or "")
        verdict = query.get("verdict", ["accept"])[0]
        client = record["client"]
        if verdict == "accept":
            out = {"type": "accept", "client": client}
            if "subprotocol" in query:
                out["subprotocol"] = query["subprotocol"][0]
            write(json.dumps(out))
        elif verdict == "reject":
            out = {"type": "reject", "client": client,
                   "status": int(query.get("status", ["403"])[0])}
            if "reason" in query:
                out["reason"] = query["reason"][0]
            write(json.dumps(out))
        return
    if kind != "message":
        return
    client = record["client"]
    if "binary" in record:
        write(json.dumps({"type": "send", "client": client,
                          "binary": record["binary"]}))
        return
    text = record["text"]
    if text.startswith("cmd:"):
        write(text[4:])
    elif text == "whoami":
        me = {"client": client, "room": state.get("room"), "pid": os.getpid()}
        write(json.dumps({"type": "send", "client": client,
                          "text": json.dumps(me)}))
    elif text.startswith("stderr:"):
        print(text[7:], file=sys.stderr, flush=True)
        write(json.dumps({"type": "send", "client": client, "text": "ok"}))
    elif text.startswith("huge:"):
        write("x" * int(text[5:]))
    elif text.startswith("pad:"):
        size, line = text[4:].split(":", 1)
        write(line + " " * (int(size) - len(line.encode())))
    elif text == "exit" or text.startswith("exit:"):
        os._exit(int(text[5:]) if text.startswith("exit:") else 3)
    elif text == "drop":
        if not listening:
            os._exit(3)
        raise Drop()
    else:
        write(json.dumps({"type": "send", "client": client, "text": text}))


def serve(rfile, wfile, record_file, listening):
    state = {}

    def write(line):
        wfile.write((line + "\n").encode())
        wfile.flush()

    log = open(record_file, "a", buffering=1) if record_file else None
    try:
        for raw in rfile:
            line = raw.decode()
            if log is not None:
                log.write(line if line.endswith("\n") else line + "\n")
                log.flush()
            handle(json.loads(line), state, write, listening)
    except Drop:
        pass
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        if log is not None:
            log.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--record")
    parser.add_argument("--listen")
    args = parser.parse_args()
    if not args.listen:
        serve(sys.stdin.buffer, sys.stdout.buffer, args.record, False)
        return
    def connection(conn):
        with conn:
            rfile = conn.makefile("rb")
            wfile = conn.makefile("wb")
            serve(rfile, wfile, args.record, True)
            rfile.close()
            wfile.close()
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    serve_unix(args.listen, connection)


if __name__ == "__main__":
    main()
