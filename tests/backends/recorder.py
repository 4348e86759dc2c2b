"""A test room: writes every record it receives to RECORD_FILE, one JSON
line each, and echoes each message back to its sender.

    recorder.py RECORD_FILE [--authorize accept|reject|ignore] [--listen PATH]
                [--tcp PORT] [--delay SECONDS]

--authorize decides what it answers to an open with "authorize": true
(accept, reject with 403 and reason "go away", or nothing at all).  With
--listen it serves a Unix socket (one connection per room) instead of
stdin/stdout, with --tcp a TCP port on 127.0.0.1.  --delay makes it take that long over each message before
it echoes it, as a backend with work to do.
"""
import argparse
import json
import sys
import time

from unixserve import serve_tcp, serve_unix


def serve(rfile, wfile, record_file, authorize, delay=0.0):
    with open(record_file, "a", buffering=1) as log:
        for line in rfile:
            log.write(line if line.endswith("\n") else line + "\n")
            log.flush()
            record = json.loads(line)
            out = None
            if record["type"] == "message":
                if delay:
                    time.sleep(delay)
                out = {"type": "send", "client": record["client"]}
                for key in ("text", "binary"):
                    if key in record:
                        out[key] = record[key]
            elif record["type"] == "open" and record.get("authorize"):
                if authorize == "accept":
                    out = {"type": "accept", "client": record["client"]}
                elif authorize == "reject":
                    out = {"type": "reject", "client": record["client"],
                           "status": 403, "reason": "go away"}
            if out is not None:
                wfile.write(json.dumps(out) + "\n")
                wfile.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("record_file")
    parser.add_argument("--authorize", default="accept",
                        choices=["accept", "reject", "ignore"])
    parser.add_argument("--listen")
    parser.add_argument("--tcp", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    if not args.listen and not args.tcp:
        serve(sys.stdin, sys.stdout, args.record_file, args.authorize,
              args.delay)
        return

    def connection(conn):
        # One file each way: writing to a "rw" text file drops what it
        # had read ahead.
        rfile = conn.makefile("r", encoding="utf-8", newline="\n")
        wfile = conn.makefile("w", encoding="utf-8", newline="\n")
        serve(rfile, wfile, args.record_file, args.authorize, args.delay)

    if args.tcp:
        serve_tcp(args.tcp, connection)
    serve_unix(args.listen, connection)


if __name__ == "__main__":
    main()
