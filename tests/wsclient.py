"""What the tests do with a websockets client, said once: receive with a
timeout, expect a close or an HTTP status, ask a scripted backend who we
are, wait for a line in gatewayd's log."""
import asyncio
import json
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

TIMEOUT = 5


def connect(g, path, **kw):
    """Open a client to path on the running gateway g."""
    return websockets.connect(g.url(path), open_timeout=TIMEOUT, **kw)


async def recv(ws, timeout=TIMEOUT):
    return await asyncio.wait_for(ws.recv(), timeout)


async def recv_json(ws, timeout=TIMEOUT):
    return json.loads(await recv(ws, timeout))


async def whoami(ws):
    """Ask tests/backends/scripted.py for {client, room, pid}."""
    await ws.send("whoami")
    return await recv_json(ws)


async def assert_silent(ws, wait=0.3):
    """Nothing arrives for wait seconds."""
    try:
        msg = await asyncio.wait_for(ws.recv(), wait)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected message {msg!r}")


async def expect_close(ws, timeout=TIMEOUT):
    """Wait for the server to close ws, with no message first; return
    (code, reason)."""
    async def closed():
        try:
            while True:
                msg = await ws.recv()
                raise AssertionError(f"message {msg!r} instead of a close")
        except ConnectionClosed:
            pass
        await ws.wait_closed()
    await asyncio.wait_for(closed(), timeout)
    return ws.close_code, ws.close_reason


async def expect_status(url, status, timeout=TIMEOUT, **kw):
    """The handshake to url is refused with HTTP status."""
    with pytest.raises(InvalidStatusCode) as e:
        await asyncio.wait_for(websockets.connect(url, **kw), timeout)
    assert e.value.status_code == status
    return e.value


async def wait_log(g, text, timeout=TIMEOUT):
    """Wait until gatewayd's log holds text."""
    deadline = time.monotonic() + timeout
    while text not in g.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the log:\n{g.log()}")
        await asyncio.sleep(0.02)
