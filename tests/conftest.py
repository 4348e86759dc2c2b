"""Fixtures for the gatewayd suite: the real binary, real sockets, real
backend processes.

`gateway(config_text)` writes a config into a temporary directory, starts
the daemon from the project root, waits until it accepts connections and
returns a handle.  At teardown the daemon gets SIGTERM and must exit 0 with
no sanitizer report in its log.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3"
BACKENDS = os.path.join(ROOT, "tests", "backends")
GATEWAYD = os.environ.get("GATEWAYD", os.path.join(ROOT, "build", "gatewayd"))

sys.path.insert(0, os.path.join(ROOT, "tests"))


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class Gateway:
    """A running gatewayd."""

    def __init__(self, proc, port, config_path, log_path):
        self.proc = proc
        self.port = port
        self.config_path = config_path
        self.log_path = log_path

    def url(self, path):
        return f"ws://127.0.0.1:{self.port}{path}"

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=10.0):
        """Wait until the log contains text; return the log."""
        return wait_for(lambda: text in self.log() and self.log(), timeout,
                        what=f"{text!r} in the gatewayd log")

    def connect_raw(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("gatewayd did not stop on SIGTERM")


def sanitizer_report(log):
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:"):
        if marker in log:
            return marker
    return None


def launch_gateway(config, port, stem, expect_ready=True):
    """Start gatewayd with the config text, written to STEM.ini, logging
    to STEM.log, and wait until it is ready unless told not to."""
    config_path = stem.with_suffix(".ini")
    config_path.write_text(config)
    log_path = stem.with_suffix(".log")
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([GATEWAYD, "-c", str(config_path)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, env=env)
    g = Gateway(proc, port, config_path, log_path)
    if expect_ready:
        # "ready" is logged once every listener is bound.  Waiting for it,
        # rather than probing the port, costs no connection slot.
        def ready():
            if proc.poll() is not None:
                raise AssertionError("gatewayd exited early:\n" + g.log())
            return "gatewayd: info: ready" in g.log()
        wait_for(ready, what="gatewayd to be ready")
    return g


def stop_gateway(g):
    """SIGTERM; the daemon must exit 0 with no sanitizer report."""
    status = g.stop()
    log = g.log()
    assert sanitizer_report(log) is None, log
    assert status == 0, f"gatewayd exited with {status}:\n{log}"


@pytest.fixture
def gateway(tmp_path):
    """Start gatewayd with a config; '{port}' in the text is replaced by a
    free port, and the [gateway] listen line is added when missing."""
    started = []

    def start(config, port=None, expect_ready=True):
        port = port or free_port()
        config = config.replace("{port}", str(port))
        if "listen" not in config:
            config = config.replace("[gateway]",
                                    f"[gateway]\nlisten = 127.0.0.1:{port}", 1)
        if "[gateway]" not in config:
            config = f"[gateway]\nlisten = 127.0.0.1:{port}\n" + config
        n = len(started)
        g = launch_gateway(config, port, tmp_path / f"gatewayd{n}",
                           expect_ready)
        started.append(g)
        return g

    yield start

    for g in started:
        stop_gateway(g)


def backend_cmd(name, *args):
    """An exec: backend value running a test backend under Debian's Python."""
    return " ".join(["exec:" + PYTHON, os.path.join(BACKENDS, name)] +
                    [str(a) for a in args])


def example_cmd(path, *args):
    """An exec: backend value for one of examples/."""
    full = os.path.join(ROOT, "examples", path)
    if path.endswith(".py"):
        return " ".join(["exec:" + PYTHON, full] + list(args))
    return " ".join(["exec:" + full] + list(args))


def pid_gone(pid):
    """True when the process has exited (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def fd_count(pid):
    """The number of file descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss(pid):
    """The resident set size of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def start_unix_room(argv, path, procs):
    """Start a room program serving a Unix socket at path (it gets
    --listen PATH) and wait until it accepts; the process is appended to
    procs, for the caller to stop."""
    proc = subprocess.Popen(argv + ["--listen", path], cwd=ROOT)
    procs.append(proc)

    # The socket file appears at bind(), before listen(): wait until a
    # connection goes through.
    def accepting():
        if proc.poll() is not None:
            raise AssertionError("the room program exited")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return True
        except OSError:
            return False
    wait_for(accepting, what="the room program's socket")
    return proc


@pytest.fixture
def unix_room(tmp_path):
    """Start a room program listening on a Unix socket; returns the socket
    path.  The program is killed at teardown."""
    procs = []

    def start(argv, name="room.sock"):
        path = str(tmp_path / name)
        start_unix_room(argv, path, procs)
        return path

    yield start
    end_processes(procs)


def end_processes(procs):
    """SIGTERM each process, SIGKILL what is left after 5 s, reap all."""
    for p in procs:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def room_programs():
    """The unix: backends a test starts, killed at its end."""
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def read_records(path, timeout=10.0, until=None):
    """The records a recorder backend logged; with until (a predicate on
    the list), wait until it holds."""
    import json

    def load():
        try:
            with open(path) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
    if until is None:
        return load()
    return wait_for(lambda: (lambda r: r if until(r) else None)(load()),
                    timeout, what="records")
