"""Raw-socket abuse: thousands of connections that misbehave in every way a
TCP peer can, against one room, while a well-behaved client chats in
another room.  The daemon must stay up, the well-behaved client must see
every echo in order, and once the abuse is over and its timeouts have
passed the daemon must be back to the file descriptors and (within a
bound) the memory it had before.

Each abusive connection draws its behaviour from random.Random seeded with
the test's seed and the connection's number, so a seed names one run's
choices and bytes (the interleaving of the connections still varies).  The
seed is printed; GATEWAYD_ABUSE_SEED=N reruns the random-seed variant with
seed N.

Everything is loopback, bounded in count (TOTAL connections, at most
CONCURRENCY at once) and in time (no new connection after ABUSE_SECONDS;
every read has a timeout).
"""
import asyncio
import collections
import os
import random
import socket
import struct
import threading
import time

import websockets

import wsraw
from conftest import GATEWAYD, example_cmd, fd_count, rss, wait_for

SAN = "build-san" in GATEWAYD
MB = 1024 * 1024

TOTAL = 2000             # abusive connections in all
CONCURRENCY = 400        # at most this many at once
ABUSE_SECONDS = 25.0     # no new abusive connection after this
SERVER_END_TIMEOUT = 8.0  # handshake_timeout/close_timeout (1 s) + load slack
FD_SLACK = 2
# After the abuse, VmRSS may stay above the baseline even with nothing
# leaked: glibc's malloc keeps freed chunks in its arenas and returns memory
# to the kernel only from the top of the heap (trimming) or for mmap'd
# blocks over 128 KiB, so the buffers of a few hundred connections freed in
# a scattered order stay resident.  400 concurrent connections with ~16 KiB
# of head buffer and some frame/event buffers each is a few MB; 32 MB leaves
# room for fragmentation while still catching a per-connection leak
# (2000 connections x 16 KiB = 32 MB).  ASan keeps freed memory in its
# quarantine (256 MB by default) and adds shadow memory: under build-san
# only growth beyond that says anything.
RSS_BOUND = 32 * MB + (320 * MB if SAN else 0)

CONFIG = f"""
[gateway]
max_connections = 5000
handshake_timeout = 1s
close_timeout = 1s

[resource /abuse]
backend = {example_cmd("echo/room.py")}

[resource /calm]
backend = {example_cmd("echo/room.py")}
"""


# The daemon's resources

class Peak:
    """Samples a process's RSS and fd count in a thread, for the report."""

    def __init__(self, pid):
        self.pid = pid
        self.rss = rss(pid)
        self.fds = fd_count(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.05):
            try:
                self.rss = max(self.rss, rss(self.pid))
                self.fds = max(self.fds, fd_count(self.pid))
            except (OSError, AssertionError):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# The well-behaved client

class CalmClient(threading.Thread):
    """A websockets client in its own thread and event loop: sends
    "calm N" every interval and checks that the echoes come back as
    0, 1, 2, ... with none missing."""

    def __init__(self, url, interval=0.02):
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.sent = 0
        self.received = 0
        self.errors = []
        self.max_latency = 0.0
        self._sent_at = {}
        self.connected = threading.Event()
        self.stopping = threading.Event()

    def run(self):
        try:
            asyncio.run(self._main())
        except BaseException as e:   # reported by the test
            self.errors.append(f"calm client failed: {e!r}")
        finally:
            self.connected.set()

    async def _receive(self, ws):
        while True:
            msg = await ws.recv()
            expected = f"calm {self.received}"
            if msg != expected:
                self.errors.append(f"echo {self.received}: expected "
                                   f"{expected!r}, got {msg!r}")
                raise AssertionError(self.errors[-1])
            sent_at = self._sent_at.pop(self.received)
            self.max_latency = max(self.max_latency,
                                   time.monotonic() - sent_at)
            self.received += 1

    async def _main(self):
        async with websockets.connect(self.url, open_timeout=10,
                                      close_timeout=5) as ws:
            self.connected.set()
            receiver = asyncio.ensure_future(self._receive(ws))
            try:
                while not self.stopping.is_set() and not receiver.done():
                    self._sent_at[self.sent] = time.monotonic()
                    await ws.send(f"calm {self.sent}")
                    self.sent += 1
                    await asyncio.sleep(self.interval)
                # Every echo must be back within 10 s of the last send.
                deadline = time.monotonic() + 10
                while self.received < self.sent and not receiver.done() \
                        and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                if receiver.done():
                    receiver.result()   # raises what ended it
                if self.received < self.sent:
                    self.errors.append(f"only {self.received} of "
                                       f"{self.sent} echoes came back")
            finally:
                receiver.cancel()
                try:
                    await receiver
                except BaseException:
                    pass


# The abusers

def _set_rst(writer):
    """SO_LINGER 0: closing the socket sends a reset, not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
        except OSError:
            pass


async def _hang_up(writer, rst):
    if rst:
        _set_rst(writer)
        writer.transport.abort()
        return
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2)
    except (OSError, asyncio.TimeoutError):
        pass


async def _server_end(reader, timeout=SERVER_END_TIMEOUT, keep=None):
    """Read until the server ends the connection: "eof" or "reset", or
    "timeout" when it has not within timeout.  What it sends first (a
    response, a close frame) goes into keep (a bytearray) when given."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                return "eof"
            if keep is not None and len(keep) < 4096:
                keep += chunk
    except asyncio.TimeoutError:
        return "timeout"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"


def _close_code(data):
    """The code of the close frame data starts with, or what came
    instead."""
    if len(data) >= 4 and data[0] == 0x88 and 2 <= (data[1] & 0x7F) <= 125:
        return struct.unpack("!H", data[2:4])[0]
    return f"no close frame but {bytes(data[:40])!r}"


async def _read_101(reader, timeout=5.0):
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(f"handshake answered {head[:80]!r}")


def _request(rng, path="/abuse"):
    return wsraw.handshake_request(path, key=wsraw.make_key())


def _mask_key(rng):
    return rng.randbytes(4)


def _frame(rng, opcode, payload, **kw):
    kw.setdefault("mask_key", _mask_key(rng) if kw.get("mask", True)
                  else None)
    return wsraw.encode_frame(opcode, payload, **kw)


# Each behaviour returns an outcome name; those starting with "BAD" are
# counted as failures of the daemon.

async def random_bytes(rng, reader, writer):
    """Random bytes instead of a request head."""
    writer.write(rng.randbytes(rng.randint(1, 4096)))
    await writer.drain()
    if rng.random() < 0.5:
        # Whatever it is (400, 431, or silence until the handshake
        # timeout's 408), the server must end the connection.
        end = await _server_end(reader)
        return "random bytes: server ended" if end != "timeout" else \
            "BAD random bytes: server never ended the connection"
    await _hang_up(writer, rng.random() < 0.5)
    return "random bytes: hung up"


async def truncated_head(rng, reader, writer):
    """A prefix of a valid request head, then FIN or RST."""
    req = _request(rng)
    writer.write(req[:rng.randint(1, len(req) - 2)])
    await writer.drain()
    await _hang_up(writer, rng.random() < 0.5)
    return "truncated head"


async def half_open_head(rng, reader, writer):
    """A prefix of a valid request head, then silence: the server must end
    it after handshake_timeout (1 s)."""
    req = _request(rng)
    writer.write(req[:rng.randint(0, len(req) - 2)])
    await writer.drain()
    t0 = time.monotonic()
    end = await _server_end(reader)
    if end == "timeout":
        return "BAD half-open head: not ended after handshake_timeout"
    if time.monotonic() - t0 < 0.5:
        return "BAD half-open head: ended long before handshake_timeout"
    return "half-open head: ended by timeout"


async def silent_after_handshake(rng, reader, writer):
    """A valid handshake, its 101 never read, then silence, then a FIN or
    RST."""
    writer.write(_request(rng))
    await writer.drain()
    await asyncio.sleep(rng.uniform(0.2, 2.5))
    await _hang_up(writer, rng.random() < 0.5)
    return "silent after handshake"


async def random_frames(rng, reader, writer):
    """A valid handshake, then random bytes as frames."""
    writer.write(_request(rng))
    await writer.drain()
    await _read_101(reader)
    for _ in range(rng.randint(1, 4)):
        writer.write(rng.randbytes(rng.randint(1, 2048)))
    await writer.drain()
    if rng.random() < 0.3:
        await _server_end(reader, 2.0)   # may well be a valid partial frame
        await _hang_up(writer, rng.random() < 0.5)
        return "random frames: waited"
    await _hang_up(writer, rng.random() < 0.5)
    return "random frames: hung up"


async def truncated_frame(rng, reader, writer):
    """A valid handshake, some valid messages (echoed), then part of a
    frame, then FIN or RST."""
    writer.write(_request(rng))
    await writer.drain()
    await _read_101(reader)
    n = rng.randint(0, 3)
    for i in range(n):
        writer.write(_frame(rng, wsraw.OP_TEXT, f"abuse {i}"))
    frame = _frame(rng, rng.choice([wsraw.OP_TEXT, wsraw.OP_BINARY]),
                   rng.randbytes(rng.randint(10, 70000)))
    writer.write(frame[:rng.randint(1, len(frame) - 1)])
    await writer.drain()
    if rng.random() < 0.5:
        await asyncio.sleep(rng.uniform(0, 0.5))
    await _hang_up(writer, rng.random() < 0.5)
    return "truncated frame"


async def huge_length(rng, reader, writer):
    """A valid handshake, then a frame announcing far more than
    max_message_size (1M): the server must close (1009) and not wait for,
    nor allocate, the payload."""
    writer.write(_request(rng))
    await writer.drain()
    await _read_101(reader)
    length = rng.choice([2 ** 63 - 1, 2 ** 40, 2 ** 32 + 7, 16 * MB])
    frame = _frame(rng, rng.choice([wsraw.OP_TEXT, wsraw.OP_BINARY]),
                   rng.randbytes(rng.randint(0, 1000)), length=length)
    writer.write(frame)
    await writer.drain()
    got = bytearray()
    end = await _server_end(reader, keep=got)
    if end == "timeout":
        return "BAD huge length: server waited for the payload"
    if end == "eof" and _close_code(got) != 1009:
        return f"BAD huge length: close code {_close_code(got)}, not 1009"
    return "huge length: closed"


async def unmasked_frame(rng, reader, writer):
    """A valid handshake, then an unmasked frame: the server must close
    (1002)."""
    writer.write(_request(rng))
    await writer.drain()
    await _read_101(reader)
    writer.write(_frame(rng, wsraw.OP_TEXT, "not masked", mask=False))
    await writer.drain()
    if rng.random() < 0.5:
        await _hang_up(writer, rng.random() < 0.5)
        return "unmasked frame: hung up"
    # The server closes with 1002 and waits for our close frame, which
    # never comes: it must end the connection after close_timeout (1 s).
    got = bytearray()
    end = await _server_end(reader, keep=got)
    if end == "timeout":
        return "BAD unmasked frame: server did not end the connection"
    if end == "eof" and _close_code(got) != 1002:
        return f"BAD unmasked frame: close code {_close_code(got)}, not 1002"
    return "unmasked frame: closed"


async def dribbled_head(rng, reader, writer):
    """A valid request head sent a byte every 100-200 ms: the handshake
    timeout (1 s) bounds the whole head, not the wait for each byte."""
    req = _request(rng)
    t0 = time.monotonic()
    for i in range(len(req) - 4):
        if time.monotonic() - t0 > SERVER_END_TIMEOUT:
            return "BAD dribbled head: not ended after handshake_timeout"
        try:
            writer.write(req[i:i + 1])
            await writer.drain()
            chunk = await asyncio.wait_for(reader.read(65536),
                                           rng.uniform(0.1, 0.2))
        except asyncio.TimeoutError:
            continue
        if not chunk or chunk.startswith(b"HTTP/1.1 408"):
            return "dribbled head: ended by timeout"
        return f"BAD dribbled head: answered {chunk[:40]!r}"
    return "BAD dribbled head: whole head sent, not ended"


async def chat_then_drop(rng, reader, writer):
    """A valid handshake, messages pipelined right behind it, then FIN or
    RST with the echoes unread."""
    data = _request(rng)
    for i in range(rng.randint(1, 20)):
        if rng.random() < 0.5:
            data += _frame(rng, wsraw.OP_TEXT, f"abuse {i}")
        else:
            data += _frame(rng, wsraw.OP_BINARY,
                           rng.randbytes(rng.randint(0, 3000)))
    writer.write(data)
    await writer.drain()
    await asyncio.sleep(rng.uniform(0, 0.3))
    await _hang_up(writer, rng.random() < 0.7)
    return "chat then drop"


async def close_then_silence(rng, reader, writer):
    """A valid handshake with a close frame right behind it, then neither
    reading nor closing: the server answers the close and ends TCP."""
    writer.write(_request(rng) +
                 _frame(rng, wsraw.OP_CLOSE, wsraw.close_payload(1000)))
    await writer.drain()
    if rng.random() < 0.5:
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        await _hang_up(writer, rng.random() < 0.5)
        return "close frame: hung up"
    end = await _server_end(reader)
    if end == "timeout":
        return "BAD close frame: server did not end the connection"
    return "close frame: ended"


BEHAVIOURS = [random_bytes, truncated_head, half_open_head,
              silent_after_handshake, random_frames, truncated_frame,
              huge_length, unmasked_frame, chat_then_drop,
              close_then_silence, dribbled_head]


async def abuse_one(port, seed, i, outcomes, sem):
    rng = random.Random(f"{seed}:{i}")
    behaviour = rng.choice(BEHAVIOURS)
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 10)
        except (OSError, asyncio.TimeoutError) as e:
            outcomes[f"BAD connect failed: {type(e).__name__}"] += 1
            return
        try:
            outcome = await behaviour(rng, reader, writer)
        except (ConnectionResetError, BrokenPipeError,
                asyncio.IncompleteReadError):
            # The server ended it first (e.g. random bytes that were a
            # complete bad head, answered before we were done).
            outcome = f"{behaviour.__name__}: ended by the server"
        except asyncio.TimeoutError:
            outcome = f"BAD {behaviour.__name__}: no 101 in time"
        except AssertionError as e:
            outcome = f"BAD {behaviour.__name__}: {e}"
        finally:
            writer.transport.abort()   # whatever is left: drop it
        outcomes[outcome] += 1


async def abuse(port, seed):
    sem = asyncio.Semaphore(CONCURRENCY)
    outcomes = collections.Counter()
    deadline = time.monotonic() + ABUSE_SECONDS
    tasks = []
    for i in range(TOTAL):
        # Start a connection only when a slot is free, so that the
        # deadline bounds how many start.
        await sem.acquire()
        sem.release()
        if time.monotonic() > deadline:
            outcomes["not started: out of time"] += TOTAL - i
            break
        tasks.append(asyncio.ensure_future(
            abuse_one(port, seed, i, outcomes, sem)))
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return outcomes


# The test

def warm_up(port):
    """A few valid connections to /abuse, so that whatever the daemon
    allocates once (and keeps) is in the baseline."""
    for _ in range(3):
        with wsraw.open_raw(port, "/abuse") as c:
            c.send_frame(wsraw.OP_TEXT, "warm")
            assert c.recv_message() == (wsraw.OP_TEXT, "warm")
            c.send_frame(wsraw.OP_CLOSE, wsraw.close_payload(1000))
            c.recv_close()


def run_abuse(gateway, seed):
    print(f"abuse seed: {seed} (GATEWAYD_ABUSE_SEED={seed} reproduces the "
          "random-seed variant's choices)")
    t_start = time.monotonic()
    g = gateway(CONFIG)
    pid = g.proc.pid
    calm = CalmClient(g.url("/calm"))
    calm.start()
    try:
        assert calm.connected.wait(15), "the calm client did not connect"
        assert not calm.errors, calm.errors
        wait_for(lambda: calm.received >= 5 or calm.errors, 10,
                 what="the calm client's first echoes")
        warm_up(g.port)
        time.sleep(0.3)   # the warm-up connections' last fds go
        base_fds, base_rss = fd_count(pid), rss(pid)

        with Peak(pid) as peak:
            t0 = time.monotonic()
            outcomes = asyncio.run(abuse(g.port, seed))
            abuse_time = time.monotonic() - t0
        assert g.proc.poll() is None, "gatewayd died:\n" + g.log()[-4000:]

        # The abusers are gone; their connections end on the server's
        # side within handshake_timeout or close_timeout (1 s each).
        deadline = time.monotonic() + 10
        while True:
            fds = fd_count(pid)
            if abs(fds - base_fds) <= FD_SLACK or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.1)
        after_rss = rss(pid)
        alive = g.proc.poll() is None

        # The room still works for a newcomer.
        if alive:
            with wsraw.open_raw(g.port, "/abuse") as c:
                c.send_frame(wsraw.OP_TEXT, "after")
                assert c.recv_message(10) == (wsraw.OP_TEXT, "after")
    finally:
        calm.stopping.set()
        calm.join(30)

    print(f"abuse: {sum(outcomes.values())} connections in "
          f"{abuse_time:.1f} s, outcomes:")
    for outcome, n in sorted(outcomes.items()):
        print(f"  {n:5d}  {outcome}")
    print(f"calm client: {calm.sent} sent, {calm.received} echoed, max "
          f"latency {calm.max_latency * 1000:.0f} ms")
    print(f"gatewayd fds: baseline {base_fds}, peak {peak.fds}, after "
          f"{fds}")
    print(f"gatewayd RSS: baseline {base_rss / MB:.1f} MB, peak "
          f"{peak.rss / MB:.1f} MB, after {after_rss / MB:.1f} MB (bound "
          f"+{RSS_BOUND / MB:.0f} MB)")
    print(f"test time: {time.monotonic() - t_start:.1f} s")

    assert alive, "gatewayd died:\n" + g.log()[-4000:]
    assert not calm.is_alive(), "the calm client did not finish"
    assert not calm.errors, calm.errors
    assert calm.sent > 0 and calm.received == calm.sent
    bad = {k: n for k, n in outcomes.items() if k.startswith("BAD")}
    assert not bad, f"seed {seed}: {bad}"
    assert peak.fds > base_fds + 50, "the abuse did not get through"
    assert abs(fds - base_fds) <= FD_SLACK, \
        f"seed {seed}: gatewayd holds {fds} fds after the abuse, " \
        f"{base_fds} before"
    assert after_rss <= base_rss + RSS_BOUND, \
        f"seed {seed}: gatewayd RSS {after_rss / MB:.1f} MB after the " \
        f"abuse, {base_rss / MB:.1f} MB before"


def test_abuse_fixed_seed(gateway):
    run_abuse(gateway, 20240601)


def test_abuse_random_seed(gateway):
    seed = os.environ.get("GATEWAYD_ABUSE_SEED")
    seed = int(seed) if seed else random.SystemRandom().randrange(2 ** 32)
    run_abuse(gateway, seed)
