#!/usr/bin/python3
"""gatewayd's echo room in Python: every message record goes back to its
sender as a send record (text as text, binary as binary, its base64 passed
through untouched); every other record is ignored.  Same behaviour as
room.sh, but it survives bad lines and is quick with large messages.

    [resource /echo]
    backend = exec:/usr/bin/python3 examples/echo/room.py

Records come on stdin and go to stdout, one JSON object per line, each line
flushed at once (docs/PROTOCOL.md).  The process ends at the end of stdin.
"""
import json
import sys


def log(what):
    print(f"echo: {what}", file=sys.stderr, flush=True)


def reply(line):
    """The send record answering one input line, or None."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except ValueError as e:   # not UTF-8, or not JSON
        log(f"skipped a line that is not JSON ({e}): {line[:100]!r}")
        return None
    if not isinstance(rec, dict) or rec.get("type") != "message":
        return None
    send = {"type": "send", "client": rec.get("client")}
    if "binary" in rec:
        send["binary"] = rec["binary"]
    else:
        send["text"] = rec.get("text")
    try:
        # Non-ASCII as UTF-8: the line is no longer than the one we read.
        return json.dumps(send, ensure_ascii=False,
                          separators=(",", ":")).encode() + b"\n"
    except UnicodeEncodeError:   # a lone surrogate ("\ud800"): keep it escaped
        return json.dumps(send, separators=(",", ":")).encode() + b"\n"


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        while True:
            line = stdin.readline()   # any length: 16 MiB messages and more
            if not line:
                break
            out = reply(line)
            if out is not None:
                stdout.write(out)
                stdout.flush()
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
