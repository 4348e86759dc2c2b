"""At least once across a backend restart: the room's journal, records
marked "redelivered", delivery = socket and delivery = ack
(docs/PROTOCOL.md, sections 3.3, 5.6 and 6), with real processes.

The backend is tests/backends/rawrecord.py: it peeks at its socket and
records every complete line there before it takes it from the socket, so
that what a process has taken from its socket is in its record file even
when it is SIGKILLed.  "Nothing lost" is then a fair thing to ask of the
gateway (a buffered reader would hold bytes the gateway counts as read,
the one loss docs/PROTOCOL.md says delivery = socket cannot see).
"""
import asyncio
import json
import os
import re
import signal
import socket
import time

import pytest

from conftest import BACKENDS, PYTHON, backend_cmd, free_port, \
    start_unix_room, wait_for
from test_resilience import (Chatter, backend_pids, close_all, connect,
                             connect_many, count, expect_close, read_records,
                             records_of, wait_log, wait_until)

RAWRECORD = os.path.join(BACKENDS, "rawrecord.py")
TIMEOUT = 5
CLIENT_READ = 65536             # what gatewayd reads of a client at once


# Helpers

def start_rawrecord_unix(rec, sock, procs, *args):
    """rawrecord.py serving the Unix socket sock, recording into rec;
    returns the process."""
    return start_unix_room([PYTHON, RAWRECORD, str(rec), *args], sock, procs)


def file_has(path, needle):
    """Whether the file holds the bytes needle (no parsing: the record
    files of a burst are big)."""
    try:
        with open(path, "rb") as f:
            return needle in f.read()
    except FileNotFoundError:
        return False


def http_get(port, path):
    """GET path from the admin listener: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close"
                  f"\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def metric(port, name):
    _, body = http_get(port, "/metrics")
    m = re.search(rf"^{name} (\d+)$", body, re.M)
    assert m, f"no {name} in /metrics:\n{body}"
    return int(m.group(1))


def room_info(port, path):
    _, body = http_get(port, "/rooms")
    for r in json.loads(body)["rooms"]:
        if r["path"] == path:
            return r
    raise AssertionError(f"no room {path} in /rooms: {body}")


RESUMED = re.compile(r"room (\S+): backend resumed (\d+) clients and (\d+) "
                     r"held messages \((\d+) redelivered\)")


def resumed_lines(log, room):
    """[(clients, held, redelivered)] of the room's "backend resumed"
    lines."""
    return [tuple(int(x) for x in m.groups()[1:])
            for m in RESUMED.finditer(log) if m.group(1) == room]


def client_ids(records):
    """{query's n: client id} from the open records."""
    return {dict(kv.split("=") for kv in r["query"].split("&"))["n"]:
            r["client"] for r in records if r["type"] == "open"}


def numbers(records, cid):
    """The numbers of client cid's messages ("N:K" texts give K), in
    the order recorded, with whether each was marked redelivered."""
    return [(int(r["text"].split(":")[1]), r.get("redelivered") is True)
            for r in records if r["type"] == "message" and
            r["client"] == cid]


def raw_records(path):
    """[(bytes, record)] of a record file: each line's length as written
    by the gateway (its newline included), and the record."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    return [(len(line) + 1, json.loads(line)) for line in lines]


def strip(record, *fields):
    return {k: v for k, v in record.items() if k not in fields}


async def echoed(clients, timeout=TIMEOUT):
    """Wait until every client has the echo of everything it sent (a
    redelivered message is echoed again)."""
    await wait_until(lambda: all(set(c.sent) <= set(c.got)
                                 for c in clients), timeout, "the echoes")


def file_size(path):
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


async def settled(path, quiet=0.5, timeout=TIMEOUT):
    """Wait until the file has not grown for quiet seconds; its size."""
    deadline = time.monotonic() + timeout
    size, since = file_size(path), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"{path} keeps growing"
        await asyncio.sleep(0.05)
        if file_size(path) != size:
            size, since = file_size(path), time.monotonic()
    return size


# 1. The user's scenario: a backend stops reading, then is SIGKILLed

N_CHAT = 20
SPEEDS = {"25ms": 0.025, "5ms": 0.005, "burst": 0}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("speed", list(SPEEDS))
@pytest.mark.parametrize("kind", ["exec", "unix"])
async def test_stalled_backend_killed_nothing_lost(gateway, room_programs,
                                                   tmp_path, kind, speed):
    """20 clients send a numbered message every 25 ms, every 5 ms, or as
    fast as they can, to one room; its backend stops reading for 0.4 s
    and is SIGKILLed (exec: the process; unix: the server, and a new one
    is started on the same path).  Every number of every client reaches
    one of the two processes; each process has them in order; the new
    one repeats only a tail of what the old one got, each repeat marked
    "redelivered", the marked records first; the log and /metrics count
    the redelivered records."""
    interval = SPEEDS[speed]
    rec = tmp_path / "rec"
    rec.mkdir()
    sock = str(tmp_path / "room.sock")
    admin = free_port()
    if kind == "unix":
        server = start_rawrecord_unix(rec, sock, room_programs, "--echo")
        backend = f"unix:{sock}"
    else:
        backend = backend_cmd("rawrecord.py", rec, "--echo")
    g = gateway(f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
[resource /r]
backend = {backend}
""")
    pid1 = server.pid if kind == "unix" else \
        wait_for(lambda: backend_pids(rec), what="the backend")[0]
    ctl = await connect(g, "/r?n=ctl")
    # Chatters read their echoes (a client that does not read stops
    # reading its socket, close frames included).
    clients = [Chatter(i, ws) for i, ws in enumerate(await connect_many(
        g, [f"/r?n={i}" for i in range(N_CHAT)]))]
    tasks, stop, sent = [], asyncio.Event(), [0] * N_CHAT
    try:
        old = records_of(rec, pid1,
                         until=lambda r: count(r, "open") == N_CHAT + 1)
        ids = client_ids(old)

        async def chat(c):
            while not stop.is_set():
                await c.send(f"{c.n}:{sent[c.n]}")
                sent[c.n] += 1
                await asyncio.sleep(interval)
        tasks = [asyncio.ensure_future(chat(c)) for c in clients]
        await asyncio.sleep(0.3)
        await ctl.send("stall:0.4")
        await wait_until(lambda: file_has(rec / f"{pid1}.jsonl",
                                          b'"stall:0.4"'), TIMEOUT,
                         "the stall")
        await asyncio.sleep(0.4)
        os.kill(pid1, signal.SIGKILL)
        if kind == "unix":
            server.wait()
            start_rawrecord_unix(rec, sock, room_programs, "--echo")
        log = await wait_log(g, "room /r: backend resumed", 10)
        await asyncio.sleep(0.3)        # and live traffic after it
        stop.set()
        await asyncio.gather(*tasks)
        print(f"{sum(sent)} messages sent")
        assert ctl.open and all(c.closed is None for c in clients)

        pid2 = wait_for(lambda: [p for p in backend_pids(rec) if p != pid1],
                        what="the new backend")[0]
        last = {ids[str(i)]: f'"{i}:{sent[i] - 1}"'.encode()
                for i in range(N_CHAT)}
        wait_for(lambda: all(file_has(rec / f"{pid2}.jsonl", t)
                             for t in last.values()), 20,
                 what="every client's last message at the new backend")
        old, new = records_of(rec, pid1), records_of(rec, pid2)

        # The new backend: a resumed hello and opens, then the journal.
        assert new[0]["type"] == "hello" and new[0].get("resumed") is True
        assert [r["type"] for r in new[1:N_CHAT + 2]] == \
            ["open"] * (N_CHAT + 1)
        assert all(r.get("resumed") is True for r in new[1:N_CHAT + 2])
        assert count(old, "close") == count(new, "close") == 0

        repeats = 0
        for i in range(N_CHAT):
            cid = ids[str(i)]
            before = [n for n, _ in numbers(old, cid)]
            after = numbers(new, cid)
            # The dead one: in order, from the first.
            assert before == list(range(len(before))), \
                f"client {i}: the old backend got {before}"
            # The new one: in order, from where the old one may have
            # stopped reading, to the last sent.
            start = after[0][0] if after else sent[i]
            assert start <= len(before), \
                f"client {i}: lost {start - len(before)} messages, " \
                f"{len(before)} to {start - 1}"
            assert [n for n, _ in after] == list(range(start, sent[i])), \
                f"client {i}: the new backend got {after}"
            # Repeats are of what the dead one got, and marked.
            again = [n for n, m in after if n < len(before)]
            assert all(m for n, m in after if n < len(before)), \
                f"client {i}: unmarked repeats {after[:len(again) + 3]}"
            repeats += len(again)

        # The marked records come first; the log and /metrics count them.
        journal = new[N_CHAT + 2:]
        marked = [r.get("redelivered") is True for r in journal]
        k = sum(marked)
        assert marked == [True] * k + [False] * (len(journal) - k), \
            "a redelivered record after one never written before"
        resumed = resumed_lines(log, "/r")
        assert len(resumed) == 1, log[-2000:]
        clients_resumed, held, redelivered = resumed[0]
        assert (clients_resumed, redelivered) == (N_CHAT + 1, k), resumed
        assert k <= held <= len(journal)
        assert metric(admin, "gatewayd_records_redelivered_total") == k
        print(f"{kind}, {speed}: {sum(sent)} messages; {k} records "
              f"redelivered, {repeats} of them read by the dead backend; "
              f"{held} held")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_all([c.ws for c in clients] + [ctl])


# 2. Arrivals and departures the dead backend never read

@pytest.mark.timeout(30)
async def test_comings_and_goings_while_stalled(gateway, tmp_path):
    """Clients come and go, and members leave, while the backend reads
    nothing, then it is SIGKILLed; more come and go during the outage.
    The next backend gets the resumed opens of the clients still there,
    then, in the order it happened, the open and close of every client
    that came and went and the close of every member that left: those the
    dead one was written marked "redelivered", those of the outage not."""
    rec = tmp_path / "rec"
    rec.mkdir()
    g = gateway(f"""[gateway]
[resource /r]
backend = {backend_cmd("rawrecord.py", rec)}
restart_delay = 1s
""")
    pid1 = wait_for(lambda: backend_pids(rec), what="the backend")[0]
    members = await connect_many(g, [f"/r?n=m{i}" for i in range(4)])
    ctl = await connect(g, "/r?n=ctl")
    here = []
    closed = [0]            # the clients the gateway has seen go

    async def gone(ws, code=1000, reason=""):
        """Close ws (abort: drop the connection) and wait until the
        gateway has logged it, and so written its close record."""
        if code == 1006:
            ws.transport.abort()
        else:
            await ws.close(code, reason)
        closed[0] += 1
        await wait_until(lambda: g.log().count(": closed ") == closed[0],
                         TIMEOUT, "the gateway to see the client go")

    async def come_and_go(name, code, reason=""):
        ws = await connect(g, f"/r?n={name}")
        await gone(ws, code, reason)
        return name

    try:
        old = records_of(rec, pid1, until=lambda r: count(r, "open") == 5)
        await ctl.send("stall:30")
        await wait_until(lambda: file_has(rec / f"{pid1}.jsonl",
                                          b'"stall:30"'), TIMEOUT,
                         "the stall")
        # (name, event, code, reason, written to the dead backend)
        expected = []
        await gone(members[1], 1000)
        expected.append(("m1", "close", 1000, "", True))
        await gone(members[2], 4001, "bye")
        expected.append(("m2", "close", 4001, "bye", True))
        for j in range(4):
            name = await come_and_go(f"a{j}", 4000 + j, f"a{j}")
            expected += [(name, "open", None, None, True),
                         (name, "close", 4000 + j, name, True)]
        name = await come_and_go("drop", 1006)
        expected += [(name, "open", None, None, True),
                     (name, "close", 1006, "", True)]
        here.append(await connect(g, "/r?n=late"))
        os.kill(pid1, signal.SIGKILL)
        await wait_log(g, "room /r: holding 4 clients")
        for j in range(2):
            name = await come_and_go(f"o{j}", 4100 + j, f"o{j}")
            expected += [(name, "open", None, None, False),
                         (name, "close", 4100 + j, name, False)]
        await gone(members[3], 4200, "m3")
        expected.append(("m3", "close", 4200, "m3", False))
        here.append(await connect(g, "/r?n=olate"))
        assert "backend resumed" not in g.log(), "the outage was too short"
        log = await wait_log(g, "room /r: backend resumed", 10)

        pid2 = wait_for(lambda: [p for p in backend_pids(rec) if p != pid1],
                        what="the new backend")[0]
        n_resumed = 4           # m0, ctl, late, olate
        new = records_of(rec, pid2, until=lambda r: len(r) >= 1 + n_resumed
                         + len(expected))
        old = records_of(rec, pid1)
        assert count(old, "close") == 0 and count(old, "open") == 5, \
            "the stalled backend read records after the stall"

        assert new[0]["type"] == "hello" and new[0].get("resumed") is True
        opens = new[1:1 + n_resumed]
        assert [(r["type"], r["query"], r.get("resumed")) for r in opens] \
            == [("open", f"n={n}", True) for n in
                ("m0", "ctl", "late", "olate")], opens
        original = {r["client"]: r for r in old if r["type"] == "open"}
        for r in opens[:2]:
            assert {k: v for k, v in r.items() if k != "resumed"} == \
                original[r["client"]], r
        journal = new[1 + n_resumed:]
        # First, perhaps, records the dead backend did read, but after the
        # gateway last saw its socket (SIOCOUTQ is a loose bound: about
        # 768 bytes a write): a tail of what it got, marked.
        again = 0
        while again < len(journal) and journal[again].get("redelivered") \
                and strip(journal[again], "redelivered") in old:
            again += 1
        tail = [strip(r, "redelivered") for r in journal[:again]]
        present = {r["client"] for r in opens}
        journaled = [r for r in old[1:] if not (
            r["type"] == "open" and r["client"] in present)]
        assert tail == journaled[len(journaled) - again:], \
            f"not a tail of what the dead one read: {tail}"
        journal = journal[again:]
        names = client_ids(old)
        for r in journal:
            if r["type"] == "open":
                names[r["query"][2:]] = r["client"]
        got = [(r["type"], r["client"], r.get("code"), r.get("reason"),
                r.get("redelivered") is True) for r in journal]
        want = [(event, names.get(name), code, reason, marked)
                for name, event, code, reason, marked in expected]
        assert got == want, "\n".join(
            f"{'  ' if a == b else '! '}{a} / {b}"
            for a, b in zip(got + [None] * len(want), want + [None] *
                            len(got)) if a is not None or b is not None)
        k = sum(1 for *_, m in expected if m) + again
        assert resumed_lines(log, "/r") == \
            [(n_resumed, len(expected) + again, k)], log[-2000:]
        # The resumed open of a client that arrived while the dead backend
        # was stalled is its first open, which it was written but did not
        # read: the journal does not repeat it.
        late = opens[2]["client"]
        assert all(r["client"] != late for r in journal)
    finally:
        await close_all(members + here + [ctl])


# 3. delivery = ack

@pytest.mark.timeout(30)
async def test_ack_redelivers_exactly_the_unacknowledged(gateway, tmp_path):
    """delivery = ack: hello says so; every open, message and close has a
    seq, from 1, one more each time.  A backend acknowledges part of what
    it read and is SIGKILLed: the next one gets exactly the records after
    the ack that the dead one was written, unchanged but for
    "redelivered": true (same seq), then what came during the outage,
    numbered on.  /rooms counts the written, unacknowledged bytes.  It
    acknowledges in turn and is SIGKILLed: what it acknowledged never
    comes back."""
    rec = tmp_path / "rec"
    rec.mkdir()
    admin = free_port()
    g = gateway(f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
[resource /a]
backend = {backend_cmd("rawrecord.py", rec, "--echo")}
delivery = ack
restart_delay = 300ms
""")
    pid1 = wait_for(lambda: backend_pids(rec), what="the backend")[0]
    clients = [Chatter(i, ws) for i, ws in enumerate(await connect_many(
        g, [f"/a?n={i}" for i in range(3)]))]
    passers = []
    try:
        async def chat(tag, k):
            for c in clients:
                for j in range(k):
                    await c.send(f"{c.n}:{tag}{j}")
            await echoed(clients)

        async def ack(c):
            """c's "ack" record makes the backend acknowledge it; the
            echo of what c sends next comes after the ack."""
            await c.ws.send("ack")
            await c.send(f"{c.n}:after-ack")
            await echoed(clients)

        async def pass_by(name):
            ws = await connect(g, f"/a?n={name}")
            passers.append(ws)
            await ws.close()

        await chat("A", 4)
        await ack(clients[0])
        await pass_by("p1")
        await chat("B", 4)
        old = raw_records(rec / f"{pid1}.jsonl")
        records = [r for _, r in old]
        assert records[0] == {"type": "hello", "room": "/a", "version": 1,
                              "delivery": "ack"}, records[0]
        seqs = [r.get("seq") for r in records[1:]]
        assert seqs == list(range(1, len(records))), \
            f"not numbered 1, 2, 3...: {seqs}"
        acked = next(r["seq"] for r in records
                     if r.get("text") == "ack")
        unacked = [(n, r) for n, r in old[1:] if r["seq"] > acked]
        # /rooms: what was written and not acknowledged, to the byte.
        info = room_info(admin, "/a")
        assert info["backend"]["state"] == "up", info
        assert info["backend"]["unconfirmed"] == sum(n for n, _ in unacked), \
            (info, [n for n, _ in unacked])

        os.kill(pid1, signal.SIGKILL)
        await wait_log(g, "room /a: holding 3 clients")
        await chat("C", 2)      # held: echoed once the next one is up
        log = await wait_log(g, "room /a: backend resumed", 10)
        pid2 = wait_for(lambda: [p for p in backend_pids(rec) if p != pid1],
                        what="the new backend")[0]
        await echoed(clients)
        new = records_of(rec, pid2)
        assert new[0] == {"type": "hello", "room": "/a", "version": 1,
                          "resumed": True, "delivery": "ack"}, new[0]
        assert [r["type"] for r in new[1:4]] == ["open"] * 3
        for r in new[1:4]:
            # The client's first open, marked resumed (a seq, if any, is
            # its first one's).
            first = next(x for _, x in old if x["type"] == "open" and
                         x["client"] == r["client"])
            assert r.get("resumed") is True, r
            assert strip(r, "resumed", "seq") == strip(first, "seq"), r
            assert r.get("seq", first["seq"]) == first["seq"], r
        journal = new[4:]
        redelivered = [r for r in journal if r.get("redelivered") is True]
        # Exactly the unacknowledged records, the same lines, marked.
        assert [strip(r, "redelivered") for r in redelivered] == \
            [r for _, r in unacked], "not the unacknowledged records"
        assert journal[:len(redelivered)] == redelivered
        rest = journal[len(redelivered):]
        assert [r["seq"] for r in rest] == \
            list(range(records[-1]["seq"] + 1,
                       records[-1]["seq"] + 1 + len(rest)))
        assert [r["text"] for r in rest] == \
            [f"{c.n}:C{j}" for c in clients for j in range(2)]
        assert resumed_lines(log, "/a") == \
            [(3, len(redelivered) + len(rest), len(redelivered))], log
        assert all(r["seq"] > acked for r in journal)

        # The second backend acknowledges up to its "ack" record, and dies.
        await ack(clients[1])
        await chat("D", 2)
        second = records_of(rec, pid2)
        acked2 = next(r["seq"] for r in second if r.get("text") == "ack")
        os.kill(pid2, signal.SIGKILL)
        log = await wait_log(g, "room /a: backend resumed 3 clients and "
                             f"{second[-1]['seq'] - acked2} held", 10)
        pid3 = wait_for(lambda: [p for p in backend_pids(rec)
                                 if p not in (pid1, pid2)],
                        what="the third backend")[0]
        third = records_of(rec, pid3, until=lambda r: len(r) >= 4 + (
            second[-1]["seq"] - acked2))
        journal = third[4:]
        assert [strip(r, "redelivered") for r in journal] == \
            [r for r in second if r.get("seq", 0) > acked2]
        assert all(r.get("redelivered") is True for r in journal)
        print(f"acked {acked} of {records[-1]['seq']}, then {acked2} of "
              f"{second[-1]['seq']}")
    finally:
        await close_all([c.ws for c in clients] + passers)


@pytest.mark.timeout(30)
async def test_ack_unacknowledged_records_pause_the_room(gateway, tmp_path):
    """delivery = ack, backend_buffer = 16K, a backend that reads and
    echoes but does not acknowledge, a client sending 300 KB: once more
    than 16K is written and unacknowledged the room stops reading its
    client, so the backend gets no more records and the client no more
    echoes; what waits in the gateway stays under backend_buffer and what
    it had read of the client (one read, 64 KiB).  An ack (SIGUSR1: all it
    acted on) lets the room go on, until it is over 16K again; with
    the backend acknowledging as it goes (SIGUSR2), every message gets
    through, and is echoed."""
    rec = tmp_path / "rec"
    rec.mkdir()
    admin = free_port()
    g = gateway(f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
log_level = debug
[resource /p]
backend = {backend_cmd("rawrecord.py", rec, "--echo")}
delivery = ack
backend_buffer = 16K
""")
    pid = wait_for(lambda: backend_pids(rec), what="the backend")[0]
    path = rec / f"{pid}.jsonl"
    c = Chatter(0, await connect(g, "/p", compression=None))
    n, size = 600, 500
    # A record is the message and about 60 bytes: 16K, and one read of
    # the client's, in records.
    bound = 16 * 1024 + CLIENT_READ * (size + 60) // size

    async def send_all():
        for k in range(n):
            await c.send(f"{k:04d}" + "x" * size)
    sending = asyncio.ensure_future(send_all())

    async def paused(acked):
        """Wait until the room is paused and the backend has recorded all
        it was written; check what waits, and that the echoes stop."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            info = room_info(admin, "/p")["backend"]
            records = raw_records(path)
            written = sum(b for b, r in records if r["type"] != "hello")
            if info["paused"] and info["queued"] == 0 and \
                    info["unconfirmed"] == written - acked:
                break
            assert time.monotonic() < deadline, \
                f"not paused with {written - acked} bytes unacknowledged " \
                f"and all of it read: {info}"
            await asyncio.sleep(0.05)
        got = [r for _, r in records if r["type"] == "message"]
        print(f"{len(got)} messages at the backend, /rooms: {info}")
        assert len(got) < n, f"all {n} messages went out unacknowledged"
        assert info["unconfirmed"] <= bound, \
            f"more than backend_buffer and a read unacknowledged: {info}"
        await wait_until(lambda: len(c.got) == len(got), TIMEOUT,
                         "the echoes so far")
        await asyncio.sleep(0.3)
        assert file_size(path) == sum(b for b, _ in records), \
            "records written to the backend of a paused room"
        assert len(c.got) == len(got)
        return written

    try:
        acked = 0
        for _ in range(2):
            written = await paused(acked)
            # An ack of all it acted on: the room goes on, and stops again.
            acked = written
            os.kill(pid, signal.SIGUSR1)
            await wait_until(lambda: file_size(path) > written, TIMEOUT,
                             "more records after an ack")
        await paused(acked)
        assert g.log().count("room /p: pausing its clients") == 3
        os.kill(pid, signal.SIGUSR2)
        await asyncio.wait_for(sending, 10)
        await wait_until(lambda: len(c.got) == n, 10, "every echo")
        assert c.got == c.sent
        await wait_until(lambda: room_info(admin, "/p")["backend"][
            "unconfirmed"] == 0, TIMEOUT, "every record acknowledged")
    finally:
        sending.cancel()
        c.ws.close_timeout = 1      # a paused room does not read it
        await c.ws.close()


@pytest.mark.timeout(20)
async def test_ack_in_socket_room_is_ignored(gateway, tmp_path):
    """An ack from the backend of a delivery = socket room is logged
    ("ack ignored"), counted as malformed, and nothing else: the room
    goes on."""
    rec = tmp_path / "rec"
    rec.mkdir()
    admin = free_port()
    g = gateway(f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
[resource /s]
backend = {backend_cmd("rawrecord.py", rec, "--echo")}
""")
    async with connect(g, "/s") as ws:
        await ws.send("before")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "before"
        assert metric(admin, "gatewayd_records_malformed_total") == 0
        await ws.send("ack:1")          # {"type":"ack","seq":1}
        await ws.send("ack")
        await ws.send("after")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "after"
        await wait_log(g, "room /s: ack ignored: the resource has delivery "
                          "= socket")
        assert metric(admin, "gatewayd_records_malformed_total") == 2
        assert "room /s: backend" not in g.log()


# 4. A client held, and not read, is not idle

@pytest.mark.timeout(30)
async def test_held_unread_client_is_not_idle(gateway, tmp_path):
    """idle_timeout = 2s, hold_buffer = 4K: a client sending 1.5 KB every
    0.2 s to a room whose backend is down is not read once the held
    messages fill hold_buffer, so it cannot be idle: it is not closed
    with 1001 "idle timeout" 2 s later.  In /gone (hold_timeout 4s, no
    backend before 10 s) it is closed by hold_timeout, with 1012, 4 s
    after the backend died; in /back (the backend back after 4 s) it
    carries on, and every message it sent reaches a backend.  A client
    that sends nothing to a room that is up (/quiet) is closed as idle."""
    rec = tmp_path / "rec"
    rec.mkdir()
    raw = backend_cmd("rawrecord.py", rec)
    g = gateway(f"""[gateway]
log_level = debug
idle_timeout = 2s
hold_buffer = 4K
[resource /gone]
backend = {raw}
hold_timeout = 4s
restart_delay = 10s
[resource /back]
backend = {raw}
restart_delay = 4s
[resource /quiet]
backend = {raw}
""")
    pids = wait_for(lambda: len(backend_pids(rec)) == 3 and
                    backend_pids(rec), what="the backends")
    pad = "x" * 1500
    gone, back = await connect_many(g, ["/gone", "/back"])
    rooms = {}
    for pid in pids:
        first = read_records(rec / f"{pid}.jsonl", until=lambda r: len(r))
        rooms[first[0]["room"]] = pid
    for room in ("/gone", "/back"):
        read_records(rec / f"{rooms[room]}.jsonl",
                     until=lambda r: count(r, "open") == 1)
    sent = {"/gone": 0, "/back": 0}
    stop = asyncio.Event()

    async def chat(room, ws):
        while not stop.is_set():
            try:
                await ws.send(f"{sent[room]}:{pad}")
            except Exception:
                return
            sent[room] += 1
            await asyncio.sleep(0.2)
    tasks = []
    try:
        t0 = time.monotonic()
        quiet = await connect(g, "/quiet")
        tasks = [asyncio.ensure_future(chat("/gone", gone)),
                 asyncio.ensure_future(chat("/back", back))]
        await asyncio.sleep(0.3)
        t_kill = time.monotonic()
        os.kill(rooms["/gone"], signal.SIGKILL)
        os.kill(rooms["/back"], signal.SIGKILL)
        # The control: a room that is up closes a client that says
        # nothing for idle_timeout.
        code, reason = await expect_close(quiet, 4)
        assert (code, reason) == (1001, "idle timeout"), (code, reason)
        assert 1.8 <= time.monotonic() - t0 <= 3.5
        # Held, and soon not read: the rooms pause on hold_buffer.
        await wait_log(g, "room /gone: pausing its clients")
        await wait_log(g, "room /back: pausing its clients")
        code, reason = await expect_close(gone, 8)
        elapsed = time.monotonic() - t_kill
        assert (code, reason) != (1001, "idle timeout"), \
            f"a client the room did not read was closed as idle after " \
            f"{elapsed:.1f} s"
        assert code == 1012, (code, reason)
        assert 3.5 <= elapsed <= 5.5, f"closed {elapsed:.1f} s after the kill"
        await wait_log(g, "room /back: backend resumed 1 clients")
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        assert back.open, (back.close_code, back.close_reason)
        new = wait_for(lambda: [p for p in backend_pids(rec)
                                if p not in pids], what="/back's backend")[0]
        records = records_of(rec, rooms["/back"]) + records_of(
            rec, new, until=lambda r: any(
                x.get("text", "").startswith(f"{sent['/back'] - 1}:")
                for x in r))
        got = {int(r["text"].split(":")[0]) for r in records
               if r["type"] == "message"}
        assert got == set(range(sent["/back"])), "messages lost"
        print(f"/back: {sent['/back']} messages over "
              f"{time.monotonic() - t_kill:.1f} s")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_all([gone, back])


# 5. Configuration

DELIVERY_BROKEN = {
    "bogus": ("[gateway]\nlisten = 127.0.0.1:1\n"
              "[resource /x]\nbackend = exec:/bin/cat\n"
              "delivery = bogus\n",
              5, "delivery: invalid value 'bogus'"),
    "ack with mode = client": ("[gateway]\nlisten = 127.0.0.1:1\n"
                               "[resource /x]\ndelivery = ack\n"
                               "backend = exec:/bin/cat\nmode = client\n",
                               4, "delivery = ack needs mode = room"),
    "ack from [gateway], mode = client": (
        "[gateway]\nlisten = 127.0.0.1:1\ndelivery = ack\n"
        "[resource /x]\nbackend = exec:/bin/cat\nmode = client\n",
        3, "[resource /x]: delivery = ack needs mode = room"),
}


@pytest.mark.parametrize("case", sorted(DELIVERY_BROKEN))
def test_delivery_config_refused(tmp_path, case):
    """gatewayd -t refuses a bad delivery with FILE:LINE: message."""
    from test_config import check, errors
    text, line, fragment = DELIVERY_BROKEN[case]
    path, r = check(tmp_path, text)
    assert r.returncode == 1, (r.stdout, r.stderr)
    found = errors(path, r.stderr)
    assert len(found) == 1, r.stderr
    assert found[0][0] == line, r.stderr
    assert fragment in found[0][1], r.stderr
    assert f"{path}: configuration is invalid" in r.stderr


def test_delivery_config_accepted(tmp_path):
    from test_config import check
    for text in ("[gateway]\nlisten = 127.0.0.1:1\ndelivery = ack\n"
                 "[resource /x]\nbackend = exec:/bin/cat\n",
                 "[gateway]\nlisten = 127.0.0.1:1\n[resource /x]\n"
                 "backend = exec:/bin/cat\nmode = client\n"
                 "delivery = socket\n"):
        path, r = check(tmp_path, text)
        assert r.returncode == 0, (text, r.stderr)


# 6. What the admin listener shows

@pytest.mark.timeout(30)
async def test_admin_unconfirmed_and_redelivered(gateway, tmp_path):
    """delivery = socket: /rooms shows as "unconfirmed" what was written
    to the backend and not known to be read: 0 once it has read all,
    at least the records it has not read while it stalls.  After a
    SIGKILL /metrics counts in gatewayd_records_redelivered_total the
    records marked redelivered, as the log does."""
    rec = tmp_path / "rec"
    rec.mkdir()
    admin = free_port()
    g = gateway(f"""[gateway]
listen = 127.0.0.1:{{port}}
admin_listen = 127.0.0.1:{admin}
[resource /m]
backend = {backend_cmd("rawrecord.py", rec)}
""")
    pid1 = wait_for(lambda: backend_pids(rec), what="the backend")[0]
    clients = await connect_many(g, ["/m?n=ctl"] + [f"/m?n={i}"
                                                    for i in range(3)])
    ctl = clients[0]
    try:
        records_of(rec, pid1, until=lambda r: count(r, "open") == 4)
        # Read, all of it: nothing unconfirmed (seen once a second at
        # least).
        await wait_until(lambda: room_info(admin, "/m")["backend"][
            "unconfirmed"] == 0, 3, "nothing unconfirmed")
        assert metric(admin, "gatewayd_backend_unconfirmed_bytes") == 0
        await ctl.send("stall:30")
        await wait_until(lambda: file_has(rec / f"{pid1}.jsonl",
                                          b'"stall:30"'), TIMEOUT,
                         "the stall")
        for k in range(20):
            for i, ws in enumerate(clients[1:]):
                await ws.send(f"{i}:{k}")
        await asyncio.sleep(0.3)
        info = room_info(admin, "/m")["backend"]
        assert info["queued"] == 0, info        # all written, none read
        assert metric(admin, "gatewayd_backend_unconfirmed_bytes") == \
            info["unconfirmed"]
        assert metric(admin, "gatewayd_records_redelivered_total") == 0
        os.kill(pid1, signal.SIGKILL)
        log = await wait_log(g, "room /m: backend resumed")
        pid2 = wait_for(lambda: [p for p in backend_pids(rec) if p != pid1],
                        what="the new backend")[0]
        records_of(rec, pid2, until=lambda r: count(r, "message") >= 60)
        new = raw_records(rec / f"{pid2}.jsonl")
        k = sum(1 for _, r in new if r.get("redelivered") is True)
        assert k >= 60, f"only {k} records redelivered"
        # What the dead one was written and did not read, as it was
        # written to it (unmarked), was unconfirmed.
        mark = len(',"redelivered":true')
        unread = sum(n - mark for n, r in new if r["type"] == "message" and
                     not r["text"].startswith("stall"))
        assert info["unconfirmed"] >= unread, (info, unread)
        new = [r for _, r in new]
        assert resumed_lines(log, "/m") == [(4, k, k)], log[-1000:]
        assert metric(admin, "gatewayd_records_redelivered_total") == k
        info = room_info(admin, "/m")["backend"]
        assert info["state"] == "up" and info["pid"] == pid2, info
        await wait_until(lambda: room_info(admin, "/m")["backend"][
            "unconfirmed"] == 0, 3, "nothing unconfirmed after the replay")
    finally:
        await close_all(clients)
