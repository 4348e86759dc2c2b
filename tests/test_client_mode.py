"""mode = client: a program of its own for every client, as websocketd
runs them.  websocketd's own kind of examples under both daemons, bc,
the lines, json and binary formats, exit codes, the CGI environment and
the clean one, misbehaving programs, max_processes, and the one-line
start (gatewayd --listen ADDR:PORT -- COMMAND).

Memory bounds are on gatewayd's VmRSS, sampled every 20 ms against a
baseline taken before the load.  Under the sanitizer build (GATEWAYD
naming build-san) a bound B becomes 2 B + 288 MB, as in
tests/test_resilience.py: ASan keeps freed memory in its quarantine.
"""
import asyncio
import base64
import json
import os
import re
import socket
import struct
import socketserver
import subprocess
import threading
import time

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatusCode

import wsraw
from conftest import (GATEWAYD, PYTHON, Gateway, backend_cmd, end_processes,
                      fd_count,
                      free_port, pid_gone, read_records, rss, stop_gateway,
                      wait_for)
from wsclient import connect, expect_close, expect_status, recv, wait_log

TIMEOUT = 5
WEBSOCKETD = "/usr/bin/websocketd"
SAN = "build-san" in GATEWAYD
MB = 1024 * 1024

# The CGI variables both daemons set (and HTTPS, which neither sets
# without TLS).
CGI_NAMES = """REMOTE_ADDR REMOTE_PORT REMOTE_HOST SERVER_NAME SERVER_PORT
SERVER_PROTOCOL SERVER_SOFTWARE GATEWAY_INTERFACE REQUEST_METHOD REQUEST_URI
SCRIPT_NAME PATH_INFO PATH_TRANSLATED QUERY_STRING AUTH_TYPE CONTENT_LENGTH
CONTENT_TYPE REMOTE_IDENT REMOTE_USER UNIQUE_ID""".split()

# The programs: websocketd's kind of examples, run unchanged by both.
COUNT_SH = """#!/bin/bash
for i in $(seq 1 10); do echo $i; sleep 0.1; done
"""
ECHO_SH = """#!/bin/bash
while read line; do echo "$line"; done
"""
# Every CGI variable (telling an empty one from an unset one), then every
# HTTP_ variable.
DUMP_ENV_SH = """#!/bin/bash
for NAME in %s HTTPS; do
  echo "$NAME=${!NAME-<unset>}"
done
env | grep '^HTTP_'
""" % " ".join(CGI_NAMES)


# Helpers

def program(tmp_path, name, text):
    """An executable file in the test's directory; a text without #! is
    a bash script."""
    path = tmp_path / name
    if not text.startswith("#!"):
        text = "#!/bin/bash\n" + text
    path.write_text(text)
    path.chmod(0o755)
    return path


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command: [state, ppid, ...];
    None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def children(pid):
    """{child pid: state} of the processes whose parent is pid."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = proc_stat(name)
            if fields is not None and int(fields[1]) == pid:
                found[int(name)] = fields[0]
    return found


class RssWatch:
    """Samples a process's RSS in a thread; .peak is the highest seen."""

    def __init__(self, pid):
        self.pid = pid
        self.baseline = self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, AssertionError):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def check(self, bound, what):
        if SAN:
            bound = 2 * bound + 288 * MB
        grown = self.peak - self.baseline
        assert grown <= bound, (
            f"{what}: gatewayd's RSS grew by {grown / MB:.1f} MB (from "
            f"{self.baseline / MB:.1f} to {self.peak / MB:.1f} MB), over the "
            f"bound of {bound / MB:.0f} MB")


async def session(url, send=(), timeout=TIMEOUT, **kw):
    """Connect, send the messages, and read until the server closes:
    (the messages, the close code).  websocketd drops TCP without a close
    frame (code 1006)."""
    got = []
    async with websockets.connect(url, open_timeout=TIMEOUT, **kw) as ws:
        for m in send:
            await ws.send(m)
        try:
            while True:
                got.append(await asyncio.wait_for(ws.recv(), timeout))
        except ConnectionClosed:
            pass
        await ws.wait_closed()
    return got, ws.close_code


async def until(ws, last, timeout=TIMEOUT):
    """The messages up to and including last."""
    got = []
    while not got or got[-1] != last:
        got.append(await recv(ws, timeout))
    return got


async def admitted(url, timeout=TIMEOUT):
    """Connect, retrying while the answer is 503 (a process slot frees
    once the program that held it has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await websockets.connect(url, open_timeout=TIMEOUT)
        except InvalidStatusCode as e:
            if e.status_code != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def env_of(lines):
    """NAME=VALUE lines as a dict."""
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture
def websocketd(tmp_path):
    """Start websocketd --port=P --address=127.0.0.1 ARGS in the test's
    directory and wait until it accepts; returns ws://127.0.0.1:P."""
    procs = []

    def start(*args):
        port = free_port()
        log = open(tmp_path / f"websocketd{len(procs)}.log", "w")
        proc = subprocess.Popen([WEBSOCKETD, f"--port={port}",
                                 "--address=127.0.0.1", *args],
                                cwd=tmp_path, stdout=log,
                                stderr=subprocess.STDOUT)
        log.close()
        procs.append(proc)

        def accepting():
            if proc.poll() is not None:
                raise AssertionError("websocketd exited early")
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                return True
            except OSError:
                return False
        wait_for(accepting, what="websocketd to accept")
        return f"ws://127.0.0.1:{port}"

    yield start
    end_processes(procs)


def run_gatewayd(args, cwd, log_path, env=None):
    env = dict(env or os.environ, ASAN_OPTIONS="detect_leaks=1:"
               "abort_on_error=0", UBSAN_OPTIONS="print_stacktrace=1")
    with open(log_path, "w") as log:
        return subprocess.Popen([GATEWAYD, *args], cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, env=env)


@pytest.fixture
def gatewayd(tmp_path):
    """Start gatewayd with the arguments given ("{port}" in them is
    replaced by a free port), in the test's directory, and wait until it
    is ready.  At teardown it must stop on SIGTERM with status 0 and no
    sanitizer report, as the gateway fixture's daemons."""
    started = []

    def start(*args):
        port = free_port()
        args = [a.replace("{port}", str(port)) for a in args]
        log_path = tmp_path / f"gatewayd-argv{len(started)}.log"
        g = Gateway(run_gatewayd(args, tmp_path, log_path), port, None,
                    log_path)
        started.append(g)

        def ready():
            if g.proc.poll() is not None:
                raise AssertionError("gatewayd exited early:\n" + g.log())
            return "gatewayd: info: ready" in g.log()
        wait_for(ready, what="gatewayd to be ready")
        return g

    yield start
    for g in started:
        stop_gateway(g)


# websocketd's examples, unchanged, under both daemons

async def test_counter_same_under_websocketd(tmp_path, websocketd, gatewayd):
    """The same command line for both: the same ten messages; gatewayd
    then closes with 1000 (websocketd drops TCP)."""
    program(tmp_path, "count.sh", COUNT_SH)
    wsd = websocketd("./count.sh")
    g = gatewayd("--port={port}", "--address=127.0.0.1", "./count.sh")
    (theirs, _), (ours, code) = await asyncio.gather(
        session(wsd + "/"), session(g.url("/")))
    assert theirs == [str(i) for i in range(1, 11)]
    assert ours == theirs
    assert code == 1000


async def test_echo_same_under_websocketd(tmp_path, websocketd, gatewayd):
    """The shell's read takes blanks and backslashes as websocketd's
    clients know; a message holding a newline is two lines."""
    program(tmp_path, "echo.sh", ECHO_SH)
    wsd = websocketd("./echo.sh")
    g = gatewayd("--port={port}", "--address=127.0.0.1", "./echo.sh")
    sent = ["hello", "two  blanks", "  leading", "tab\there", "back\\slash",
            "a\nb", "", "trailing newline\n", "h\u00e9llo \u2713", "END"]
    results = []
    for url in (wsd + "/", g.url("/")):
        async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
            for m in sent:
                await ws.send(m)
            results.append(await until(ws, "END"))
    theirs, ours = results
    assert theirs == ["hello", "two  blanks", "leading", "tab\there",
                      "backslash", "a", "b", "", "trailing newline", "",
                      "h\u00e9llo \u2713", "END"]
    assert ours == theirs


async def dump_env(url, path):
    headers = [("X-Repeated", "one"), ("X-Repeated", "two"),
               ("X-Custom-Header", "with  inner  blanks"),
               ("Origin", "http://example.com")]
    lines, _ = await session(url + path, extra_headers=headers)
    return env_of(lines)


async def test_cgi_environment_same_as_websocketd(tmp_path, websocketd,
                                                  gatewayd):
    """A CGI environment dump: the same names, and the same values but
    for what differs by nature (ports, server name, ids)."""
    program(tmp_path, "dump-env.sh", DUMP_ENV_SH)
    wsd = websocketd("./dump-env.sh")
    g = gatewayd("--port={port}", "--address=127.0.0.1", "./dump-env.sh")
    path = "/some/path?a=1&b=two%20words"
    theirs = await dump_env(wsd, path)
    ours = await dump_env(g.url(""), path)

    # websocketd (Go's net/http) keeps Host out of the headers, so it has
    # no HTTP_HOST; gatewayd has every request header.
    assert "HTTP_HOST" not in theirs
    assert ours.pop("HTTP_HOST") == f"127.0.0.1:{g.port}"
    assert sorted(ours) == sorted(theirs)
    same = ["REMOTE_ADDR", "REMOTE_HOST", "SERVER_NAME", "SERVER_PROTOCOL",
            "GATEWAY_INTERFACE", "REQUEST_METHOD", "REQUEST_URI",
            "SCRIPT_NAME", "PATH_INFO", "PATH_TRANSLATED", "QUERY_STRING",
            "AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "REMOTE_IDENT",
            "REMOTE_USER", "HTTPS"] + \
        [n for n in theirs if n.startswith("HTTP_") and
         n != "HTTP_SEC_WEBSOCKET_KEY"]
    assert {n: ours[n] for n in same} == {n: theirs[n] for n in same}
    # What the request was, said the same way by both.
    assert ours["REQUEST_URI"] == path
    assert ours["SCRIPT_NAME"] == "/"
    assert ours["PATH_INFO"] == "/some/path"
    assert ours["QUERY_STRING"] == "a=1&b=two%20words"
    assert ours["GATEWAY_INTERFACE"] == "websocketd-CGI/0.1"
    assert ours["HTTP_X_REPEATED"] == "one, two"
    assert ours["HTTP_X_CUSTOM_HEADER"] == "with  inner  blanks"
    assert ours["AUTH_TYPE"] == "" and ours["HTTPS"] == "<unset>"
    # What differs by nature: each daemon's port, its name, the ids.
    assert theirs["SERVER_PORT"] == wsd.rsplit(":", 1)[1]
    assert ours["SERVER_PORT"] == str(g.port)
    assert ours["SERVER_SOFTWARE"].startswith("gatewayd/")
    assert re.fullmatch(r"c\d+", ours["UNIQUE_ID"]), ours["UNIQUE_ID"]
    assert ours["REMOTE_PORT"].isdigit()


async def test_cgi_path_info_decoded_as_websocketd(tmp_path, websocketd,
                                                   gatewayd):
    """CGI's PATH_INFO is the decoded path: websocketd gives a program
    "/my dir/x" for /my%20dir/x, and so must gatewayd."""
    program(tmp_path, "dump-env.sh", DUMP_ENV_SH)
    wsd = websocketd("./dump-env.sh")
    g = gatewayd("--port={port}", "--address=127.0.0.1", "./dump-env.sh")
    theirs = await dump_env(wsd, "/my%20dir/x?q=%20")
    ours = await dump_env(g.url(""), "/my%20dir/x?q=%20")
    assert theirs["PATH_INFO"] == "/my dir/x"
    names = ["PATH_INFO", "PATH_TRANSLATED", "REQUEST_URI", "QUERY_STRING"]
    assert {n: ours[n] for n in names} == {n: theirs[n] for n in names}


# The formats

async def test_bc_per_client(gateway):
    g = gateway("""[gateway]
[resource /bc]
mode = client
backend = exec:bc -l
[resource /pid]
mode = client
backend = exec:sh -c 'echo $$; exec cat'
""")
    async with connect(g, "/bc") as a, connect(g, "/bc") as b:
        await a.send("2+3")
        assert await recv(a) == "5"
        await a.send("scale=3; 1/3")
        assert await recv(a) == ".333"
        await a.send("x = 42")
        await b.send("x + 1")
        assert await recv(b) == "1"        # b's x is its own: 0
        await a.send("x + 1")
        assert await recv(a) == "43"
    async with connect(g, "/pid") as a, connect(g, "/pid") as b:
        pids = {int(await recv(a)), int(await recv(b))}
        assert len(pids) == 2
        assert all(p in children(g.proc.pid) for p in pids)


RECORDER = """import json, sys
out = open(sys.argv[1], "a", buffering=1)
while True:
    line = sys.stdin.readline()
    if not line:
        break
    out.write(line)
    r = json.loads(line)
    if r["type"] == "message" and r.get("text") == "reply, please":
        print(json.dumps({"type": "send", "client": r["client"],
                          "text": "from the program"}), flush=True)
out.write(json.dumps({"type": "eof"}) + "\\n")
"""


async def test_json_format_records(gateway, tmp_path):
    rec = tmp_path / "records.jsonl"
    prog = program(tmp_path, "recorder.py", RECORDER)
    g = gateway(f"""[gateway]
[resource /json]
mode = client
format = json
backend = exec:{PYTHON} {prog} {rec}
""")
    async with connect(g, "/json?k=v", extra_headers={"X-Test": "yes"}) as ws:
        await ws.send("hi")
        await ws.send(b"\x00\x01\xff")
        await ws.send("reply, please")
        assert await recv(ws) == "from the program"
        await ws.close(4001, "bye")
    records = read_records(rec, until=lambda r: r and r[-1]["type"] == "eof")
    assert [r["type"] for r in records] == \
        ["hello", "open", "message", "message", "message", "close", "eof"]
    hello, opened, m1, m2, m3, closed, _ = records
    assert hello == {"type": "hello", "room": "/json", "version": 1}
    me = opened["client"]
    assert re.fullmatch(r"c\d+", me)
    assert opened["path"] == "/json" and opened["query"] == "k=v"
    assert opened["remote"].startswith("127.0.0.1:")
    assert opened["authorize"] is False
    assert opened["headers"]["x-test"] == "yes"
    assert m1 == {"type": "message", "client": me, "text": "hi"}
    assert m2 == {"type": "message", "client": me,
                  "binary": base64.b64encode(b"\x00\x01\xff").decode()}
    assert m3["text"] == "reply, please"
    assert closed == {"type": "close", "client": me, "code": 4001,
                      "reason": "bye"}


async def test_binary_bytes_round_trip(gateway):
    g = gateway("""[gateway]
[resource /bin]
mode = client
binary = yes
backend = exec:cat
""")
    sent = [b"\x00\xff\x00bin\nary\r\n\xfe", b"second", bytes(range(256))]
    want = b"".join(sent)      # unchanged: no newline after a message
    async with connect(g, "/bin") as ws:
        for m in sent:
            await ws.send(m)
        got = []
        while sum(map(len, got)) < len(want):
            got.append(await recv(ws))
    assert all(isinstance(m, bytes) for m in got), got
    assert b"".join(got) == want


async def test_lines_format(gateway, tmp_path):
    """Messages in, lines out: a message holding a newline is two lines;
    CR LF ends a line as LF does; bytes that are not UTF-8 become
    U+FFFD."""
    prog = program(tmp_path, "lines.sh", r"""
printf 'caf\351 au lait\n'
printf 'a windows line\r\n'
printf 'a bare\rinside\n'
while IFS= read -r line; do printf '[%s]\n' "$line"; done
""")
    g = gateway(f"""[gateway]
[resource /lines]
mode = client
backend = exec:{prog}
""")
    async with connect(g, "/lines") as ws:
        assert await recv(ws) == "caf\ufffd au lait"
        assert await recv(ws) == "a windows line"
        assert await recv(ws) == "a bare\rinside"
        await ws.send("a\nb")
        assert await recv(ws) == "[a]"
        assert await recv(ws) == "[b]"
        await ws.send("one line")
        assert await recv(ws) == "[one line]"


async def test_unix_backend_per_client(gateway, tmp_path):
    """backend = unix:PATH in client mode: a connection of its own for
    each client, closed when the client goes; the backend's close ends
    its client with 1000."""
    path = str(tmp_path / "lines.sock")
    numbers = iter(range(1, 100))
    ended = []

    class Lines(socketserver.StreamRequestHandler):
        def handle(self):
            n = next(numbers)
            self.wfile.write(b"connection %d\n" % n)
            for line in self.rfile:
                if line == b"hang up\n":
                    break
                self.wfile.write(b"%d: %s" % (n, line))
            ended.append(n)

    server = socketserver.ThreadingUnixStreamServer(path, Lines)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        g = gateway(f"""[gateway]
[resource /u]
mode = client
backend = unix:{path}
""")
        async with connect(g, "/u") as a, connect(g, "/u") as b:
            na = int((await recv(a)).split()[1])
            nb = int((await recv(b)).split()[1])
            assert na != nb
            await a.send("hi\nthere")
            assert await recv(a) == f"{na}: hi"
            assert await recv(a) == f"{na}: there"
            await a.close()
            wait_for(lambda: na in ended, 3, what="a's connection to end")
            assert nb not in ended
            await b.send("hang up")
            assert (await expect_close(b))[0] == 1000
    finally:
        server.shutdown()
        server.server_close()


# How a program ends, and what its client sees

async def test_exit_status_gives_close_code(gateway):
    g = gateway("""[gateway]
[resource /ok]
mode = client
backend = exec:sh -c 'seq 1 5000; exit 0'
[resource /three]
mode = client
backend = exec:sh -c 'echo failing; exit 3'
[resource /killed]
mode = client
backend = exec:sh -c 'echo dying; kill -9 $$'
""")
    ok, three, killed = await asyncio.gather(
        session(g.url("/ok")), session(g.url("/three")),
        session(g.url("/killed")))
    # Every line it wrote comes before the close.
    assert ok == ([str(i) for i in range(1, 5001)], 1000)
    assert three == (["failing"], 1011)
    assert killed == (["dying"], 1011)
    log = g.log()
    assert re.search(r"c\d+: backend \(pid \d+\) exited with status 3", log)
    assert re.search(r"c\d+: backend \(pid \d+\) killed by signal 9", log)
    assert re.search(r"c\d+: backend \(pid \d+\) exited with status 0", log)


async def test_thousand_connections_leave_nothing(gateway):
    """1000 clients come and go (one in ten drops TCP without a close):
    the daemon is left with the descriptors it had, no child and no
    zombie, and each cat ended on EOF, with status 0."""
    g = gateway("""[gateway]
stop_timeout = 1s
[resource /cat]
mode = client
backend = exec:cat
""")
    pid = g.proc.pid
    base_fds = fd_count(pid)
    assert children(pid) == {}

    async def one(i):
        ws = await connect(g, "/cat")
        await ws.send(f"client {i}")
        assert await recv(ws) == f"client {i}"
        if i % 10 == 9:
            ws.transport.abort()
        else:
            await ws.close()

    t0 = time.monotonic()
    for batch in range(100):
        await asyncio.gather(*(one(batch * 10 + i) for i in range(10)))
    elapsed = time.monotonic() - t0
    wait_for(lambda: not children(pid) and fd_count(pid) == base_fds, 5,
             what=f"no child and {base_fds} descriptors (now "
                  f"{children(pid)}, {fd_count(pid)} fds)")
    log = g.log()
    assert log.count("started backend cat") == 1000
    assert len(re.findall(r"exited with status 0 after", log)) == 1000, \
        [line for line in log.splitlines() if "backend (pid" in line and
         "status 0" not in line][:5]
    assert "sending SIG" not in log
    print(f"1000 connections in {elapsed:.1f} s")


async def test_program_that_exits_at_once(gateway):
    g = gateway("""[gateway]
[resource /true]
mode = client
backend = exec:true
[resource /false]
mode = client
backend = exec:false
""")
    t0 = time.monotonic()
    assert await session(g.url("/true"), timeout=2) == ([], 1000)
    assert await session(g.url("/false"), timeout=2) == ([], 1011)
    assert time.monotonic() - t0 < 2


DEAF = """[gateway]
stop_timeout = 200ms
[resource /deaf]
mode = client
backend = exec:sleep 300
backend_buffer = 64K
[resource /cat]
mode = client
backend = exec:cat
"""


async def fill_deaf(g):
    """Connect to the program that never reads and send until the daemon
    stops reading: (the client, the program's pid, the bytes sent)."""
    chunk = "x" * 65535 + "\n"
    # Uncompressed: the bytes sent are the bytes that must wait.
    deaf = await connect(g, "/deaf", compression=None)
    (sleeper,) = children(g.proc.pid)
    sent = 0
    while sent < 256 * MB:
        try:
            await asyncio.wait_for(deaf.send(chunk), 1.0)
        except asyncio.TimeoutError:
            break
        sent += len(chunk)
    return deaf, sleeper, sent


async def test_program_that_never_reads(gateway):
    """A program that never reads its stdin: its client is no longer
    read once the queue to it is full, and nothing else suffers."""
    g = gateway(DEAF)
    with RssWatch(g.proc.pid) as watch:
        deaf, sleeper, sent = await fill_deaf(g)
        # What went is what the sockets and backend_buffer hold.
        assert sent < 64 * MB, f"{sent / MB:.0f} MB went in"
        async with connect(g, "/cat") as other:
            for i in range(20):
                await other.send(f"still here {i}")
                assert await recv(other) == f"still here {i}"
    watch.check(16 * MB, "a program that never reads")
    assert not pid_gone(sleeper)
    deaf.transport.abort()
    await deaf.wait_closed()


async def test_client_of_program_that_never_reads_leaves(gateway):
    """The client of a program that never reads, no longer read itself,
    drops its connection (a reset: a FIN would wait behind the data the
    daemon does not read, where no server can see it): its program is
    stopped all the same (stdin closed, SIGTERM after stop_timeout), not
    left until shutdown."""
    g = gateway(DEAF)
    deaf, sleeper, _ = await fill_deaf(g)
    sock = deaf.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    deaf.transport.abort()
    await deaf.wait_closed()
    wait_for(lambda: pid_gone(sleeper), 0.4 + 3,
             what="sleep to be stopped after its client left")
    await wait_log(g, "sending SIGTERM")


async def test_program_writing_a_huge_line(gateway, tmp_path):
    """A 10 MB line is over max_message_size (64K here): it is discarded
    and logged, the daemon never holds it (its RSS grows by less than
    8 MB), and the program's next line comes through."""
    prog = program(tmp_path, "huge.sh", """
head -c 10485760 /dev/zero | tr '\\0' x
echo
echo after the huge line
exec cat
""")
    g = gateway(f"""[gateway]
[resource /huge]
mode = client
max_message_size = 64K
backend = exec:{prog}
[resource /cat]
mode = client
backend = exec:cat
""")
    with RssWatch(g.proc.pid) as watch:
        async with connect(g, "/huge") as ws:
            assert await recv(ws, 10) == "after the huge line"
            await ws.send("echo")
            assert await recv(ws) == "echo"
            async with connect(g, "/cat") as other:
                await other.send("responsive")
                assert await recv(other) == "responsive"
    watch.check(8 * MB, "a 10 MB line")
    assert re.search(r"c\d+: line longer than 65536 bytes from backend: "
                     r"discarded", g.log()), g.log()


@pytest.mark.parametrize("then", ["exit 0", "exec cat"])
async def test_grandchild_stopped_with_program(gateway, then):
    """A program that leaves a child behind, exiting on its own or
    stopped by its client's close: the child goes with it (the process
    group is signalled) within 2 * stop_timeout."""
    g = gateway(f"""[gateway]
stop_timeout = 300ms
[resource /fork]
mode = client
backend = exec:sh -c 'sleep 300 & echo $!; {then}'
""")
    async with connect(g, "/fork") as ws:
        grandchild = int(await recv(ws))
        if then == "exit 0":
            assert (await expect_close(ws))[0] == 1000
        else:
            await asyncio.sleep(0.3)
            assert not pid_gone(grandchild)
    t0 = time.monotonic()
    wait_for(lambda: pid_gone(grandchild), 0.6 + 2,
             what="the grandchild to be stopped")
    print(f"grandchild gone {time.monotonic() - t0:.2f} s after the close")


async def test_client_close_gives_program_eof(gateway, tmp_path):
    bye = tmp_path / "bye"
    prog = program(tmp_path, "polite.sh", f"""
while read -r line; do echo "got $line"; done
echo bye > {bye}
""")
    g = gateway(f"""[gateway]
stop_timeout = 10s
[resource /polite]
mode = client
backend = exec:{prog}
""")
    async with connect(g, "/polite") as ws:
        await ws.send("x")
        assert await recv(ws) == "got x"
    # Well before stop_timeout: EOF, not a signal, ended it.
    wait_for(lambda: bye.exists() and bye.read_text() == "bye\n", 3,
             what="the program's goodbye")
    await wait_log(g, "exited with status 0")
    assert "sending SIG" not in g.log()


async def test_program_ignoring_sigterm_is_killed(gateway):
    g = gateway("""[gateway]
stop_timeout = 300ms
[resource /stubborn]
mode = client
backend = exec:sh -c 'trap "" TERM; echo $$; while :; do sleep 1; done'
""")
    async with connect(g, "/stubborn") as ws:
        stubborn = int(await recv(ws))
        t0 = time.monotonic()
    wait_for(lambda: pid_gone(stubborn), 0.6 + 2,
             what="the program to be killed")
    elapsed = time.monotonic() - t0
    # EOF, 300 ms, SIGTERM (ignored), 300 ms, SIGKILL.
    assert elapsed >= 0.55, f"gone after {elapsed:.2f} s"
    await wait_log(g, "killed by signal 9")
    log = g.log()
    assert "still running after 300 ms; sending SIGTERM" in log
    assert "still running after 300 ms; sending SIGKILL" in log
    assert children(g.proc.pid) == {}


async def test_stderr_logged_with_client_id(gateway, tmp_path):
    prog = program(tmp_path, "grumble.sh", """
echo "$GATEWAYD_CLIENT"
while read -r line; do echo "complaint: $line" >&2; echo done; done
""")
    g = gateway(f"""[gateway]
[resource /grumble]
mode = client
backend = exec:{prog}
""")
    async with connect(g, "/grumble") as a, connect(g, "/grumble") as b:
        ida, idb = await recv(a), await recv(b)
        assert ida != idb
        await a.send("from a")
        await b.send("from b")
        assert await recv(a) == await recv(b) == "done"
        await wait_log(g, f"{ida}: backend: complaint: from a")
        await wait_log(g, f"{idb}: backend: complaint: from b")


# Limits and failures

async def test_max_processes(gateway):
    """max_processes bounds client programs and rooms' programs
    together: one past it gets 503 before any 101."""
    g = gateway(f"""[gateway]
max_processes = 2
[resource /cat]
mode = client
backend = exec:cat
[resource /room/*]
backend = {backend_cmd("scripted.py")}
""")
    a = await connect(g, "/cat")
    b = await connect(g, "/cat")
    await expect_status(g.url("/cat"), 503)
    await expect_status(g.url("/room/1"), 503)
    await wait_log(g, "max_processes (2) reached")
    await a.close()
    c = await admitted(g.url("/cat"))
    await c.send("in")
    assert await recv(c) == "in"
    await b.send("b still")
    assert await recv(b) == "b still"
    await b.close()
    room = await admitted(g.url("/room/1"))
    await room.send("room")
    assert await recv(room) == "room"
    await expect_status(g.url("/cat"), 503)
    await room.close()
    await c.close()


def test_max_processes_says_why(gateway):
    """A new pattern room that cannot have its process at max_processes
    is refused with the reason, not as a room whose backend is down."""
    g = gateway(f"""[gateway]
max_processes = 1
[resource /room/*]
backend = {backend_cmd("scripted.py")}
""")
    with wsraw.open_raw(g.port, "/room/1"):
        r = wsraw.http_request(g.port, wsraw.handshake_request("/room/2"))
        assert r.status == 503
        assert b"too many backend processes" in r.body, r.body


async def test_program_made_not_executable(gateway, tmp_path):
    prog = program(tmp_path, "prog.sh", "echo hello\n")
    g = gateway(f"""[gateway]
[resource /prog]
mode = client
backend = exec:{prog}
""")
    assert await session(g.url("/prog")) == (["hello"], 1000)
    prog.chmod(0o644)
    await expect_status(g.url("/prog"), 500)
    await wait_log(g, f"cannot run backend {prog}: Permission denied")
    assert re.search(rf"c\d+: cannot run backend {prog}: Permission denied",
                     g.log())
    prog.chmod(0o755)
    assert await session(g.url("/prog")) == (["hello"], 1000)


def test_missing_program_refused(tmp_path):
    config = tmp_path / "bad.ini"
    config.write_text(f"""[gateway]
listen = 127.0.0.1:{free_port()}
[resource /a]
mode = client
backend = exec:{tmp_path}/no/such/program
[resource /b]
mode = client
backend = exec:no-such-program-on-path --flag
""")
    for args in (["-t", "-c", str(config)], ["-c", str(config)]):
        r = subprocess.run([GATEWAYD] + args, capture_output=True, text=True,
                           timeout=10)
        assert r.returncode == 1, r
        assert (f"{config}:5: backend: cannot run '{tmp_path}/no/such/"
                "program': No such file or directory") in r.stderr, r.stderr
        assert (f"{config}:8: backend: program 'no-such-program-on-path' "
                "not found on PATH (") in r.stderr, r.stderr
        assert "ready" not in r.stderr


def bytes_written(pid):
    """What a process has written so far (/proc/PID/io's wchar)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise AssertionError(f"no wchar for {pid}")


def at_rest(pid, wait=0.3):
    """The process writes nothing for wait seconds."""
    before = bytes_written(pid)
    time.sleep(wait)
    return bytes_written(pid) == before


@pytest.mark.parametrize("buffer", ["1M", "64K"])
def test_slow_reader_pauses_program(gateway, buffer):
    """`yes` feeding a client that does not read: once about
    max_client_buffer / 2 waits for the client, yes is no longer read, so
    it blocks; the daemon does not grow, and the client is not dropped
    as a slow consumer: when it reads again, yes goes on."""
    g = gateway(f"""[gateway]
stop_timeout = 200ms
[resource /yes]
mode = client
max_client_buffer = {buffer}
backend = exec:sh -c 'echo $$; exec yes'
""")
    frame = b"\x81\x01y"     # a text message "y"
    with RssWatch(g.proc.pid) as watch:
        with wsraw.open_raw(g.port, "/yes") as c:
            try:
                yes = int(c.recv_message()[1])
            except EOFError:
                raise AssertionError("closed at once:\n" + g.log())
            # The sockets between yes and the client fill up first.
            time.sleep(1.0)
            assert "slow consumer" not in g.log(), g.log()
            written = bytes_written(yes)
            assert at_rest(yes, 1.0), "yes was still read"
            # Read again (the socket's bytes: frames in bulk), until yes
            # has written another megabyte.
            data = bytearray(c._buf)
            c.sock.settimeout(TIMEOUT)
            deadline = time.monotonic() + 10
            while bytes_written(yes) < written + MB:
                assert time.monotonic() < deadline, \
                    f"yes was not read again ({len(data)} bytes read)"
                data += c.sock.recv(1 << 20)
            # Left unread again, yes stops again (and the client leaves
            # with yes at rest: test_client_leaves_flooding_program is
            # the other case).
            wait_for(lambda: at_rest(yes), 5, what="yes to stop again")
    whole = len(data) - len(data) % len(frame)
    assert data[:whole] == frame * (whole // len(frame)), \
        "something else than 'y' messages (a close?)"
    watch.check(8 * MB, "yes to a client that does not read")
    assert "slow consumer" not in g.log()


def test_client_leaves_flooding_program(gateway):
    """A client leaves while its program's output is being relayed to it
    (the write to it fails in the middle of a read of the program's
    output): the daemon survives, the program is stopped, and the next
    client is served."""
    g = gateway("""[gateway]
stop_timeout = 200ms
[resource /yes]
mode = client
backend = exec:sh -c 'echo $$; exec yes'
""")
    for _ in range(3):
        with wsraw.open_raw(g.port, "/yes") as c:
            yes = int(c.recv_message()[1])
            c.sock.settimeout(TIMEOUT)
            for _ in range(20):
                c.sock.recv(1 << 20)
        time.sleep(0.2)
        assert g.proc.poll() is None, "gatewayd died:\n" + g.log()
        wait_for(lambda: pid_gone(yes), 0.4 + 2, what="yes to be stopped")
    with wsraw.open_raw(g.port, "/yes") as c:
        assert int(c.recv_message()[1]) > 0
        assert c.recv_message() == (wsraw.OP_TEXT, "y")


# The environment

async def test_environment_clean(gateway, tmp_path, monkeypatch):
    """A program gets the CGI variables, PATH and LANG, passenv and env
    (which win), and nothing else of the daemon's environment; a room's
    backend gets the same clean environment, without the CGI part."""
    monkeypatch.setenv("FOO", "leak")
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    monkeypatch.setenv("BAR", "passed")
    monkeypatch.setenv("LANG", "C.UTF-8")
    room_prog = program(tmp_path, "envroom.py", """#!/usr/bin/python3
import json, os, sys
for line in sys.stdin:
    r = json.loads(line)
    if r["type"] == "open":
        print(json.dumps({"type": "send", "client": r["client"],
                          "text": json.dumps(dict(os.environ))}),
              flush=True)
""")
    g = gateway(f"""[gateway]
passenv = BAR
env = NEW=value
[resource /env]
mode = client
backend = exec:env
env = REMOTE_USER=forced
env = BAR=overridden
[resource /room]
backend = exec:{PYTHON} {room_prog}
""")
    lines, code = await session(g.url("/env?x=1"),
                                extra_headers={"X-Hello": "there"})
    assert code == 1000
    env = env_of(lines)
    assert "FOO" not in env and "PYTHONUNBUFFERED" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert env["LANG"] == "C.UTF-8"
    assert env["NEW"] == "value"
    assert env["BAR"] == "overridden"          # env wins over passenv
    assert env["REMOTE_USER"] == "forced"      # and over CGI's
    assert env["QUERY_STRING"] == "x=1"
    assert env["HTTP_X_HELLO"] == "there"
    assert env["GATEWAYD_ROOM"] == "/env"
    assert env["GATEWAYD_CLIENT"] == env["UNIQUE_ID"]
    assert re.fullmatch(r"c\d+", env["UNIQUE_ID"])
    assert "HTTPS" not in env
    assert set(env) - {n for n in env if n.startswith("HTTP_")} == \
        set(CGI_NAMES) | {"PATH", "LANG", "BAR", "NEW", "GATEWAYD_ROOM",
                          "GATEWAYD_CLIENT"}

    async with connect(g, "/room") as ws:
        room_env = json.loads(await recv(ws))
    assert room_env == {"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
                        "BAR": "passed", "NEW": "value",
                        "GATEWAYD_ROOM": "/room"}


# The one-line start

async def test_one_line_start(tmp_path, gatewayd):
    """gatewayd --listen ADDR:PORT -- ./count.sh serves every path, as
    websocketd --port=PORT ./count.sh does; -t prints the ini it stands
    for, which checks, contains mode = client, and runs the same."""
    program(tmp_path, "count.sh", COUNT_SH)
    g = gatewayd("--listen", "127.0.0.1:{port}", "--", "./count.sh")

    port = free_port()
    r = subprocess.run([GATEWAYD, "-t", "--listen", f"127.0.0.1:{port}",
                        "--", "./count.sh"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^mode = client$", r.stdout, re.M), r.stdout
    saved = tmp_path / "saved.ini"
    saved.write_text(r.stdout)
    check = subprocess.run([GATEWAYD, "-t", "-c", str(saved)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    h = gatewayd("-c", str(saved))
    h.port = port

    counted = [str(i) for i in range(1, 11)]
    results = await asyncio.gather(
        session(g.url("/")), session(g.url("/any/path")),
        session(h.url("/")), session(h.url("/any/path?q=1")))
    assert results == [(counted, 1000)] * 4


def test_one_line_flags_make_ini(tmp_path):
    """Each flag of the one-line start is a line of the ini -t prints,
    and that ini checks."""
    port = free_port()
    r = subprocess.run(
        [GATEWAYD, "-t", "--port", str(port), "--address", "127.0.0.1",
         "--binary", "--static", str(tmp_path), "--env", "A=1",
         "--env", "B=2", "--passenv", "HOME,TZ", "--max-processes", "7",
         "--origins", "https://example.com", "--log-level", "debug",
         "--", "cat", "-u"],
        cwd=tmp_path, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for want in (f"listen = 127.0.0.1:{port}", f"static_dir = {tmp_path}",
                 "max_processes = 7", "log_level = debug",
                 "origins = https://example.com", "env = A=1", "env = B=2",
                 "mode = client", "binary = yes", "backend = exec:cat -u"):
        assert want in lines, r.stdout
    assert "passenv = HOME,TZ" in lines or "passenv = HOME TZ" in lines, \
        r.stdout
    saved = tmp_path / "saved.ini"
    saved.write_text(r.stdout)
    check = subprocess.run([GATEWAYD, "-t", "-c", str(saved)],
                           capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr

    room = subprocess.run([GATEWAYD, "-t", "--listen", f"127.0.0.1:{port}",
                           "--room", "--", "cat"], capture_output=True,
                          text=True, timeout=10)
    assert room.returncode == 0, room.stderr
    assert "mode = client" not in room.stdout
    assert "backend = exec:cat" in room.stdout.splitlines()

    missing = subprocess.run([GATEWAYD, "-t", "--listen",
                              f"127.0.0.1:{port}", "--",
                              "no-such-program-on-path"],
                             capture_output=True, text=True, timeout=10)
    assert missing.returncode == 1
    assert "backend: program 'no-such-program-on-path' not found on PATH" \
        in missing.stderr, missing.stderr


async def test_one_line_binary_and_max_processes(gatewayd):
    g = gatewayd("--listen", "127.0.0.1:{port}", "--binary",
                 "--max-processes", "1", "--", "cat")
    async with connect(g, "/anything") as ws:
        await ws.send(b"\x00\xff\n")
        assert await recv(ws) == b"\x00\xff\n"
        await expect_status(g.url("/"), 503)


async def test_one_line_env_passenv_static(tmp_path, gatewayd, monkeypatch):
    monkeypatch.setenv("KEEP", "kept")
    monkeypatch.setenv("DROP", "dropped")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("<p>static</p>\n")
    g = gatewayd("--listen", "127.0.0.1:{port}", "--static", "www",
                 "--env", "NEW=1", "--env", "OTHER=two words",
                 "--passenv", "KEEP", "--", "env")
    lines, code = await session(g.url("/x"))
    env = env_of(lines)
    assert code == 1000
    assert env["NEW"] == "1" and env["OTHER"] == "two words"
    assert env["KEEP"] == "kept" and "DROP" not in env
    assert env["PATH_INFO"] == "/x"
    r = wsraw.http_request(g.port, b"GET /index.html HTTP/1.1\r\n"
                           b"Host: x\r\nConnection: close\r\n\r\n")
    assert (r.status, r.body) == (200, b"<p>static</p>\n")


def test_help_lists_every_flag():
    r = subprocess.run([GATEWAYD, "--help"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0
    for flag in ("--listen", "--port", "--address", "--room", "--binary",
                 "--static", "--passenv", "--env", "--origins",
                 "--max-processes", "--log-level", "--config", "--check",
                 "--version", "--help"):
        assert re.search(rf"(^|\s){flag}\b", r.stdout), flag
