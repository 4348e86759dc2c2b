#!/usr/bin/python3
"""The benchmark's in-process peer: an echo and broadcast server on Debian's
python3-websockets (10.4), one asyncio loop, no backend processes.

    py_server.py --port PORT [--host 127.0.0.1]

  /echo...       every message goes back to its sender
  /broadcast...  every message goes to every client connected to a
                 /broadcast path, its sender included (one room)
  anything else  closed with 1008

It runs until SIGTERM or SIGINT, which end it at once.  Keepalive pings and compression are off,
as gatewayd has neither; the listen backlog is raised so that the load
generator's bounded burst of handshakes is not dropped.
"""
import argparse
import asyncio
import os
import signal

import websockets

BACKLOG = 4096
MAX_SIZE = 1 << 20      # gatewayd's default max_message_size

ROOM = set()            # the open /broadcast connections


async def serve_client(ws):
    if ws.path.startswith("/echo"):
        async for message in ws:
            await ws.send(message)
    elif ws.path.startswith("/broadcast"):
        ROOM.add(ws)
        try:
            async for message in ws:
                # Pushes to every write buffer at once, without waiting.
                websockets.broadcast(ROOM, message)
        finally:
            ROOM.discard(ws)
    else:
        await ws.close(1008, "no such room")


async def handler(ws):
    try:
        await serve_client(ws)
    except websockets.ConnectionClosed:
        pass    # the generator resets its connections at the end of a run


async def serve(host, port):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await websockets.serve(handler, host, port, ping_interval=None,
                           compression=None, max_size=MAX_SIZE,
                           backlog=BACKLOG)
    await stop
    # At once: closing 15000 connections one by one, each waiting for its
    # close handshake, takes longer than the runner waits, and the load
    # generator has reset them all anyway.
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
