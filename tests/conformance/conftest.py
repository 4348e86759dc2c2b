"""Fixtures of the conformance suite: the echo room of conf/echo.ini.

`echo` is gatewayd running conf/echo.ini (examples/echo/room.py at /echo,
max_message_size 20M) on a free port.  One daemon serves a whole test
module: the cases open hundreds of connections, and a daemon per case
would cost more than the cases.  It is started and stopped exactly like
the suite's `gateway` fixture (tests/conftest.py): the same environment,
"ready" in the log before use, and at the end SIGTERM, exit status 0 and
no sanitizer report.  After every test the daemon must still be running
with a clean log, so a crash is blamed on the case that caused it.

Cases that need another configuration (a small max_message_size, a short
close_timeout, a scripted backend) use the `gateway` fixture directly.
"""
import os
import re

import pytest

from conftest import (ROOT, example_cmd, free_port, launch_gateway,
                      sanitizer_report, stop_gateway)
import wsraw

ECHO_INI = os.path.join(ROOT, "conf", "echo.ini")
ECHO_PATH = "/echo"


def echo_config():
    """conf/echo.ini with "{port}" for its listen address (the gateway
    fixture's convention) and the backend named by an absolute path."""
    with open(ECHO_INI) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^listen\s*=.*$", "listen = 127.0.0.1:{port}",
                      text)
    assert n == 1, "conf/echo.ini must have one listen line"
    text, n = re.subn(r"(?m)^backend\s*=.*$",
                      "backend = " + example_cmd("echo/room.py"), text)
    assert n == 1, "conf/echo.ini must have one backend line"
    return text


@pytest.fixture(scope="module")
def echo_gateway(tmp_path_factory):
    port = free_port()
    g = launch_gateway(echo_config().replace("{port}", str(port)), port,
                       tmp_path_factory.mktemp("echo") / "gatewayd")
    yield g
    stop_gateway(g)


@pytest.fixture
def echo(echo_gateway):
    """The module's echo gateway (see the module docstring)."""
    g = echo_gateway
    yield g
    assert g.proc.poll() is None, f"gatewayd died:\n{g.log()}"
    assert sanitizer_report(g.log()) is None, g.log()


def open_echo(g, **kw):
    """A RawConnection to the echo room of g (open_raw's keywords)."""
    return wsraw.open_raw(g.port, ECHO_PATH, **kw)


def echoes(conn, opcode, payload, timeout=wsraw.DEFAULT_TIMEOUT):
    """The next thing from the server is the message (opcode, payload),
    compared byte for byte."""
    got = conn.recv_data(timeout)
    assert got[0] == opcode, (got[0], opcode)
    assert len(got[1]) == len(payload), (len(got[1]), len(payload))
    assert got[1] == payload


def still_echoes(conn, text=b"still there?"):
    """The connection still works: a text message comes back."""
    conn.send_frame(wsraw.OP_TEXT, text)
    echoes(conn, wsraw.OP_TEXT, text)
