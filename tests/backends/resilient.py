"""A test room for the resilience tests: records what it gets, one file per
process, and on command stops reading or floods its room.

    resilient.py RECORD_DIR [--no-echo] [--listen PATH]

Every record received is appended to RECORD_DIR/PID.jsonl (one JSON line
each, written and flushed before the record is acted on), so that a test
can tell the records of a backend process from those of the one that took
over after it.  With --listen it serves a Unix socket instead of
stdin/stdout, one room per connection (all of them recorded in the one
file).  A text message from a client is:

    stall:SECONDS        the process sleeps that long without reading
                         stdin (the record is logged first); not when
                         the record is marked redelivered (the process
                         before may have stalled on it already)
    reader               the sender takes part in the pacing of flood
    ack:SEQ              a reader has received every flood message up to
                         SEQ
    flood:N:SIZE:WINDOW  N broadcasts of SIZE bytes of text: the sequence
                         number as 8 digits, then "x"s.  Paced by the
                         readers' acks: the next one is not written while
                         it is more than WINDOW ahead of the slowest
                         reader (so that a reader is never more than
                         WINDOW * SIZE bytes behind; other members are not
                         waited for)
    burst:N:BATCH        N broadcasts of the sequence number as 8 digits,
                         as fast as it can: BATCH lines per write
    anything else        echoed back to its sender (unless --no-echo)
"""
import argparse
import json
import os
import sys
import threading
import time

from unixserve import serve_unix


def serve(rfile, wfile, log, lock, echo):
    """One room: records from rfile, commands to wfile (binary files)."""
    readers = {}            # client -> highest acked sequence number

    def write(obj):
        wfile.write(json.dumps(obj).encode() + b"\n")
        wfile.flush()

    def read():
        """One record, logged; None at EOF."""
        raw = rfile.readline()
        if not raw:
            return None
        line = raw.decode()
        with lock:
            log.write(line if line.endswith("\n") else line + "\n")
        return json.loads(line)

    def note(record):
        """Bookkeeping for records that matter while flooding."""
        if record.get("type") == "message" and "text" in record:
            text = record["text"]
            if text == "reader":
                readers.setdefault(record["client"], -1)
            elif text.startswith("ack:"):
                readers[record["client"]] = int(text[4:])
        elif record.get("type") == "close":
            readers.pop(record.get("client"), None)

    def flood(n, size, window):
        for seq in range(n):
            while readers and seq - min(readers.values()) > window:
                record = read()
                if record is None:
                    return
                note(record)
            head = b"%08d" % seq
            text = head + b"x" * (size - len(head))
            wfile.write(b'{"type":"broadcast","text":"' + text + b'"}\n')
            wfile.flush()

    def burst(n, batch):
        for start in range(0, n, batch):
            wfile.write(b"".join(
                b'{"type":"broadcast","text":"%08d"}\n' % i
                for i in range(start, min(n, start + batch))))
            wfile.flush()

    while True:
        record = read()
        if record is None:
            return
        note(record)
        if record.get("type") != "message":
            continue
        text = record.get("text")
        if text is None:
            continue
        if text.startswith("stall:"):
            if not record.get("redelivered"):
                time.sleep(float(text[6:]))
        elif text == "reader" or text.startswith("ack:"):
            pass
        elif text.startswith("flood:"):
            n, size, window = (int(x) for x in text[6:].split(":"))
            flood(n, size, window)
        elif text.startswith("burst:"):
            n, batch = (int(x) for x in text[6:].split(":"))
            burst(n, batch)
        elif echo:
            write({"type": "send", "client": record["client"], "text": text})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("record_dir")
    parser.add_argument("--no-echo", action="store_true")
    parser.add_argument("--listen")
    args = parser.parse_args()
    log = open(os.path.join(args.record_dir, f"{os.getpid()}.jsonl"), "a",
               buffering=1)
    lock = threading.Lock()
    if not args.listen:
        try:
            serve(sys.stdin.buffer, sys.stdout.buffer, log, lock,
                  not args.no_echo)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return
    def connection(conn):
        with conn:
            rfile, wfile = conn.makefile("rb"), conn.makefile("wb")
            try:
                serve(rfile, wfile, log, lock, not args.no_echo)
            except (BrokenPipeError, ConnectionResetError):
                pass

    serve_unix(args.listen, connection)


if __name__ == "__main__":
    main()
