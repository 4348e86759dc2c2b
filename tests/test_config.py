"""gatewayd -t and the configuration errors it reports as FILE:LINE: message;
the daemon's refusal to start on a bad configuration or a busy port."""
import asyncio
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import (GATEWAYD, ROOT, backend_cmd, free_port, read_records,
                      wait_for)

TIMEOUT = 10


def run(*args, timeout=TIMEOUT):
    return subprocess.run([GATEWAYD, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def check(tmp_path, text, name="test.ini"):
    path = tmp_path / name
    path.write_text(text)
    return path, run("-t", "-c", str(path))


def errors(path, output):
    """The FILE:LINE: message lines about path, as (line, message)."""
    prefix = f"{path}:"
    out = []
    for line in output.splitlines():
        if line.startswith(prefix):
            m = re.match(r"(\d+): (.*)", line[len(prefix):])
            assert m, line
            out.append((int(m.group(1)), m.group(2)))
    return out


GOOD = """\
; a comment
[gateway]
listen = 127.0.0.1:18080
listen = [::1]:18080
max_message_size = 64K
handshake_timeout = 500ms
log_level = debug

[resource /echo]
backend = exec:/bin/cat

[resource /rooms/*]
backend = exec:/usr/bin/python3 'a b' "c \\"d\\"" e\\ f
authorize = yes
linger = 0

[resource /chat]
backend = unix:/run/chat.sock
"""


def test_good_config(tmp_path):
    path, r = check(tmp_path, GOOD)
    assert r.returncode == 0, r.stderr
    assert errors(path, r.stdout + r.stderr) == []
    assert "valid" in r.stdout


GOOD_VARIANTS = """\ufeff# a byte order mark, CRLF, indentation, "key: value"
[resource /first]
  backend: exec:/bin/cat   ; a comment after a blank
  authorize = TRUE
  max_message_size = 16k
  stop_timeout = 0
[ gateway ]
\tlisten = *:18081
\tlisten = [::]:18081
\tshutdown_timeout = 0
\tlinger = 24h
[resource /*]
backend = unix:relative/path.sock
authorize = Off
"""


def test_good_config_variants(tmp_path):
    path = tmp_path / "variants.ini"
    path.write_bytes(GOOD_VARIANTS.replace("\n", "\r\n").encode())
    r = run("-t", "-c", str(path))
    assert r.returncode == 0, r.stderr


# (config, line, expected fragment of the message)
BROKEN = {
    "unknown key": ("[gateway]\nlisten = 127.0.0.1:1\nmax_conections = 5\n"
                    "[resource /x]\nbackend = exec:/bin/cat\n",
                    3, "unknown key 'max_conections'"),
    "unknown key in resource": ("[gateway]\nlisten = 127.0.0.1:1\n"
                                "[resource /x]\nbackend = exec:/bin/cat\n"
                                "colour = blue\n",
                                5, "unknown key 'colour' in [resource /x]"),
    "unknown section": ("[gateway]\nlisten = 127.0.0.1:1\n"
                        "[resource /x]\nbackend = exec:/bin/cat\n"
                        "[gatway]\n",
                        5, "unknown section [gatway]"),
    "bad size": ("[gateway]\nlisten = 127.0.0.1:1\n"
                 "max_message_size = 12X\n"
                 "[resource /x]\nbackend = exec:/bin/cat\n",
                 3, "max_message_size: invalid value '12X'"),
    "bad size in resource": ("[gateway]\nlisten = 127.0.0.1:1\n"
                             "[resource /x]\nbackend = exec:/bin/cat\n"
                             "max_message_size = 1.5M\n",
                             5, "max_message_size: invalid value '1.5M'"),
    "bad duration": ("[gateway]\nlisten = 127.0.0.1:1\n"
                     "[resource /x/*]\nbackend = exec:/bin/cat\n"
                     "linger = 5 sec\n",
                     5, "linger: invalid value '5 sec'"),
    "bad duration unit": ("[gateway]\nlisten = 127.0.0.1:1\n"
                          "handshake_timeout = 10d\n"
                          "[resource /x]\nbackend = exec:/bin/cat\n",
                          3, "handshake_timeout: invalid value '10d'"),
    "out of range": ("[gateway]\nlisten = 127.0.0.1:1\nmax_headers = 500\n"
                     "[resource /x]\nbackend = exec:/bin/cat\n",
                     3, "max_headers: 500 is out of range 1..128"),
    "out of range duration": ("[gateway]\nlisten = 127.0.0.1:1\n"
                              "[resource /x]\nbackend = exec:/bin/cat\n"
                              "authorize_timeout = 10ms\n",
                              5, "authorize_timeout: 10ms is out of range"),
    "out of range size": ("[gateway]\nlisten = 127.0.0.1:1\n"
                          "max_header_size = 2M\n"
                          "[resource /x]\nbackend = exec:/bin/cat\n",
                          3, "max_header_size: 2M is out of range 1K..1M"),
    "backend missing": ("[gateway]\nlisten = 127.0.0.1:1\n"
                        "[resource /x]\nbackend = exec:/bin/cat\n"
                        "[resource /y]\nauthorize = yes\n",
                        5, "[resource /y] has no backend"),
    "backend empty": ("[gateway]\nlisten = 127.0.0.1:1\n"
                      "[resource /x]\nbackend =\n",
                      4, "backend: missing value"),
    "bad backend scheme": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "[resource /x]\nbackend = udp:127.0.0.1:9000\n",
                           4, "backend: invalid value 'udp:127.0.0.1:9000'"),
    "unbalanced double quote": ("[gateway]\nlisten = 127.0.0.1:1\n"
                                "[resource /x]\n"
                                "backend = exec:/bin/echo \"abc def\n",
                                4, "unbalanced double quote"),
    "unbalanced single quote": ("[gateway]\nlisten = 127.0.0.1:1\n"
                                "[resource /x]\n"
                                "backend = exec:/bin/echo it's\n",
                                4, "unbalanced single quote"),
    "empty exec command": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "[resource /x]\nbackend = exec:  \n",
                           4, "backend"),
    "listen host name": ("[gateway]\nlisten = localhost:8080\n"
                         "[resource /x]\nbackend = exec:/bin/cat\n",
                         2, "listen: invalid value 'localhost:8080'"),
    "listen without port": ("[gateway]\nlisten = 127.0.0.1\n"
                            "[resource /x]\nbackend = exec:/bin/cat\n",
                            2, "listen: invalid value '127.0.0.1'"),
    "listen port out of range": ("[gateway]\nlisten = 127.0.0.1:70000\n"
                                 "[resource /x]\nbackend = exec:/bin/cat\n",
                                 2, "port out of range"),
    "listen bare ipv6": ("[gateway]\nlisten = ::1:8080\n"
                         "[resource /x]\nbackend = exec:/bin/cat\n",
                         2, "listen: invalid value '::1:8080'"),
    "resource path relative": ("[gateway]\nlisten = 127.0.0.1:1\n"
                               "[resource rooms/x]\nbackend = exec:/bin/cat\n",
                               3, "resource path 'rooms/x' must start "
                                  "with '/'"),
    "resource path star": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "[resource /a*]\nbackend = exec:/bin/cat\n",
                           3, "'*' is only allowed as a final '/*'"),
    "duplicate key": ("[gateway]\nlisten = 127.0.0.1:1\n"
                      "[resource /x]\nbackend = exec:/bin/cat\n"
                      "backend = exec:/bin/true\n",
                      5, "duplicate key 'backend'"),
    "backend in gateway": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "backend = exec:/bin/cat\n"
                           "[resource /x]\nbackend = exec:/bin/cat\n",
                           3, "'backend' is not allowed in [gateway]"),
    "syntax error": ("[gateway]\nlisten = 127.0.0.1:1\n"
                     "[resource /x]\nbackend = exec:/bin/cat\n"
                     "just some words\n",
                     5, "syntax error"),
    "duplicate listen": ("[gateway]\nlisten = 127.0.0.1:1\n"
                         "listen = 127.0.0.1:01\n"
                         "[resource /x]\nbackend = exec:/bin/cat\n",
                         3, "duplicate listen address"),
    "line too long": ("[gateway]\nlisten = 127.0.0.1:1\n"
                      "[resource /x]\nbackend = exec:/bin/cat\n"
                      "; " + "y" * 65535 + "\n",
                      5, "line too long (max 65536 characters)"),
    "missing program": ("[gateway]\nlisten = 127.0.0.1:1\n"
                        "[resource /x]\nbackend = exec:no-such-program-x\n",
                        4, "backend: program 'no-such-program-x' not found "
                        "on PATH"),
    "program not executable": ("[gateway]\nlisten = 127.0.0.1:1\n"
                               "[resource /x]\nbackend = exec:/etc/passwd\n",
                               4, "backend: cannot run '/etc/passwd': "
                               "Permission denied"),
    "program is a directory": ("[gateway]\nlisten = 127.0.0.1:1\n"
                               "[resource /x]\nmode = client\n"
                               "backend = exec:/tmp\n",
                               5, "backend: cannot run '/tmp': Is a directory"),
    "lines in a room": ("[gateway]\nlisten = 127.0.0.1:1\n"
                        "[resource /x]\nbackend = exec:/bin/cat\n"
                        "format = lines\n",
                        5, "format = lines needs mode = client"),
    "binary with json": ("[gateway]\nlisten = 127.0.0.1:1\n"
                         "[resource /x]\nbackend = exec:/bin/cat\n"
                         "mode = client\nformat = json\nbinary = yes\n",
                         7, "binary = yes needs mode = client and format = "
                         "lines"),
    "authorize with lines": ("[gateway]\nlisten = 127.0.0.1:1\n"
                             "authorize = yes\n"
                             "[resource /x]\nbackend = exec:/bin/cat\n"
                             "mode = client\n",
                             3, "authorize = yes needs format = json"),
    "bad env": ("[gateway]\nlisten = 127.0.0.1:1\n"
                "[resource /x]\nbackend = exec:/bin/cat\n"
                "env = 1X=2\n",
                5, "env: invalid name '1X'"),
    "env without =": ("[gateway]\nlisten = 127.0.0.1:1\n"
                      "[resource /x]\nbackend = exec:/bin/cat\n"
                      "env = FOO\n",
                      5, "env: invalid value 'FOO': expected NAME=VALUE"),
    "bad passenv": ("[gateway]\nlisten = 127.0.0.1:1\n"
                    "[resource /x]\nbackend = exec:/bin/cat\n"
                    "passenv = PATH a-b\n",
                    5, "passenv: invalid variable name 'a-b'"),
    "wildcard and specific listener": ("[gateway]\nlisten = 127.0.0.1:1\n"
                                       "listen = *:1\n"
                                       "[resource /x]\n"
                                       "backend = exec:/bin/cat\n",
                                       3, "listen address '*:1' overlaps "
                                       "'127.0.0.1:1' (line 2)"),
    "static dir missing": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "static_dir = /no/such/dir\n"
                           "[resource /x]\nbackend = exec:/bin/cat\n",
                           3, "static directory '/no/such/dir': No such file "
                           "or directory"),
    "static without dir": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "[resource /x]\nbackend = exec:/bin/cat\n"
                           "[static /a/]\n",
                           5, "[static /a/] has no dir"),
    "max_processes word": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "max_processes = many\n"
                           "[resource /x]\nbackend = exec:/bin/cat\n",
                           3, "max_processes: invalid value 'many'"),
    "auto where not allowed": ("[gateway]\nlisten = 127.0.0.1:1\n"
                               "max_connections = auto\n"
                               "[resource /x]\nbackend = exec:/bin/cat\n",
                               3, "max_connections: invalid value 'auto': "
                               "not a number"),
    "comment cuts a quoted word": ("[gateway]\nlisten = 127.0.0.1:1\n"
                                   "[resource /x]\n"
                                   "backend = exec:/bin/echo 'a ;b'\n",
                                   4, "unbalanced single quote"),
    "bad boolean": ("[gateway]\nlisten = 127.0.0.1:1\n"
                    "[resource /x]\nbackend = exec:/bin/cat\n"
                    "authorize = maybe\n",
                    5, "authorize: invalid value 'maybe'"),
    "bad log level": ("[gateway]\nlisten = 127.0.0.1:1\nlog_level = loud\n"
                      "[resource /x]\nbackend = exec:/bin/cat\n",
                      3, "log_level: invalid value 'loud'"),
    "count out of range": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "max_connections = 0\n"
                           "[resource /x]\nbackend = exec:/bin/cat\n",
                           3, "max_connections: 0 is out of range"),
    "linger out of range": ("[gateway]\nlisten = 127.0.0.1:1\n"
                            "[resource /x/*]\nbackend = exec:/bin/cat\n"
                            "linger = 25h\n",
                            5, "linger: 25h is out of range 0..24h"),
    "key outside section": ("listen = 127.0.0.1:1\n[gateway]\n"
                            "listen = 127.0.0.1:2\n"
                            "[resource /x]\nbackend = exec:/bin/cat\n",
                            1, "outside any section"),
    "duplicate gateway": ("[gateway]\nlisten = 127.0.0.1:1\n"
                          "[resource /x]\nbackend = exec:/bin/cat\n"
                          "[gateway]\n",
                          5, "duplicate [gateway] section (first at line 1)"),
    "duplicate resource": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "[resource /x]\nbackend = exec:/bin/cat\n"
                           "[resource /x]\nbackend = exec:/bin/cat\n",
                           5, "duplicate [resource /x]"),
    "resource path with query": ("[gateway]\nlisten = 127.0.0.1:1\n"
                                 "[resource /x?y]\n"
                                 "backend = exec:/bin/cat\n",
                                 3, "must not contain '?' or '#'"),
    "unix path too long": ("[gateway]\nlisten = 127.0.0.1:1\n"
                           "[resource /x]\nbackend = unix:/" + "s" * 110
                           + "\n",
                           4, "unix socket path longer than 107 bytes"),
    "no listen": ("[gateway]\nlog_level = info\n"
                  "[resource /x]\nbackend = exec:/bin/cat\n",
                  1, "no listen address"),
    "cluster without redis": ("[gateway]\nlisten = 127.0.0.1:1\n"
                              "[resource /x]\nbackend = exec:/bin/cat\n"
                              "[cluster]\nnode = a\n",
                              5, "[cluster] needs redis = HOST:PORT"),
    "cluster bad redis": ("[gateway]\nlisten = 127.0.0.1:1\n"
                          "[resource /x]\nbackend = exec:/bin/cat\n"
                          "[cluster]\nredis = localhost\n",
                          6, "redis = localhost is not HOST:PORT"),
    "cluster bad port": ("[gateway]\nlisten = 127.0.0.1:1\n"
                         "[resource /x]\nbackend = exec:/bin/cat\n"
                         "[cluster]\nredis = 127.0.0.1:99999\n",
                         6, "has no port from 1 to 65535"),
    "cluster bad node": ("[gateway]\nlisten = 127.0.0.1:1\n"
                         "[resource /x]\nbackend = exec:/bin/cat\n"
                         "[cluster]\nredis = 127.0.0.1:6379\n"
                         "node = a.b\n",
                         7, "node = a.b: a node name is up to 40"),
    "cluster short lease": ("[gateway]\nlisten = 127.0.0.1:1\n"
                            "[resource /x]\nbackend = exec:/bin/cat\n"
                            "[cluster]\nredis = 127.0.0.1:6379\n"
                            "lease = 100ms\n", 7, "lease"),
    "cluster unknown key": ("[gateway]\nlisten = 127.0.0.1:1\n"
                            "[resource /x]\nbackend = exec:/bin/cat\n"
                            "[cluster]\nredis = 127.0.0.1:6379\n"
                            "backend = exec:/bin/cat\n", 7,
                            "'backend' is not allowed in [cluster]"),
    "duplicate cluster": ("[gateway]\nlisten = 127.0.0.1:1\n"
                          "[resource /x]\nbackend = exec:/bin/cat\n"
                          "[cluster]\nredis = 127.0.0.1:6379\n"
                          "[cluster]\n", 7,
                          "duplicate [cluster] section (first at line 5)"),
    "cluster key in gateway": ("[gateway]\nlisten = 127.0.0.1:1\n"
                               "lease = 5s\n"
                               "[resource /x]\nbackend = exec:/bin/cat\n",
                               3, "'lease' is not allowed in [gateway], "
                               "only in [cluster]"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_config(tmp_path, case):
    text, line, fragment = BROKEN[case]
    path, r = check(tmp_path, text)
    assert r.returncode == 1, (r.stdout, r.stderr)
    found = errors(path, r.stderr)
    assert len(found) == 1, r.stderr
    assert found[0][0] == line, r.stderr
    assert fragment in found[0][1], r.stderr
    assert f"{path}: configuration is invalid" in r.stderr


def test_no_resource(tmp_path):
    path, r = check(tmp_path, "[gateway]\nlisten = 127.0.0.1:1\n")
    assert r.returncode == 1
    assert "no [resource PATH] section and no static files" in r.stderr


def test_several_errors_all_reported(tmp_path):
    text = (
        "[gateway]\n"                              # 1
        "listen = 127.0.0.1:1\n"                   # 2
        "max_connections = lots\n"                 # 3
        "bogus = 1\n"                              # 4
        "\n"                                       # 5
        "[resource /a]\n"                          # 6
        "backend = ftp:x\n"                        # 7
        "linger = forever\n"                       # 8
        "[resource nope]\n"                        # 9
        "backend = exec:/bin/cat\n"                # 10
        "[resource /c]\n"                          # 11
        "backend = exec:'unterminated\n"           # 12
        "[whatever]\n"                             # 13
        "[resource /d]\n"                          # 14
    )
    path, r = check(tmp_path, text)
    assert r.returncode == 1
    found = errors(path, r.stderr)
    lines = [n for n, _ in found]
    assert lines == [3, 4, 7, 8, 9, 12, 13, 14], r.stderr
    messages = dict(found)
    assert "max_connections" in messages[3]
    assert "bogus" in messages[4]
    assert "ftp:x" in messages[7]
    assert "linger" in messages[8]
    assert "nope" in messages[9]
    assert "unbalanced single quote" in messages[12]
    assert "whatever" in messages[13]
    assert "no backend" in messages[14]


async def test_matching_and_gateway_defaults(gateway, tmp_path):
    """The first resource in file order wins; "/a/*" matches below /a/ only;
    [gateway]'s room options apply to resources above it too."""
    import websockets
    from websockets.exceptions import InvalidStatusCode
    rec = tmp_path / "rec.jsonl"
    g = gateway(f"""[resource /a/x]
backend = {backend_cmd("scripted.py")}
[resource /a/*]
backend = {backend_cmd("recorder.py", rec)}
[resource /exact]
backend = {backend_cmd("recorder.py", rec)}
authorize = no
[gateway]
authorize = yes
""")
    for path in ("/a/b", "/a/b/c", "/exact"):
        async with websockets.connect(g.url(path), open_timeout=5) as ws:
            await ws.send(path)
            assert await asyncio.wait_for(ws.recv(), 5) == path
    async with websockets.connect(g.url("/a/x"), open_timeout=5) as ws:
        await ws.send("whoami")
        me = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert me["room"] == "/a/x"
    for path in ("/a", "/a/", "/", "/exactly", "/other"):
        with pytest.raises(InvalidStatusCode) as e:
            await websockets.connect(g.url(path), open_timeout=5)
        assert e.value.status_code == 404
    records = read_records(rec)
    opens = {r["path"]: r["authorize"] for r in records if r["type"] == "open"}
    assert opens == {"/a/b": True, "/a/b/c": True, "/exact": False}


async def test_first_match_wins_over_later_exact_room(gateway, tmp_path):
    """[resource /a/*] comes first, so /a/b is its room, served by its
    backend, though a (shadowed) [resource /a/b] follows."""
    import websockets
    g = gateway(f"""[gateway]
[resource /a/*]
backend = {backend_cmd("scripted.py")}
[resource /a/b]
backend = {backend_cmd("recorder.py", tmp_path / "rec.jsonl")}
""")
    async with websockets.connect(g.url("/a/b"), open_timeout=5) as ws:
        await ws.send("whoami")
        answer = await asyncio.wait_for(ws.recv(), 5)
    # scripted.py answers with JSON; recorder.py would echo "whoami".
    assert answer != "whoami"


def test_check_starts_no_backend(gateway, tmp_path):
    marker = tmp_path / "marker"
    sock = tmp_path / "nobody.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    listener.listen(1)
    listener.settimeout(0.3)
    text = f"""[gateway]
[resource /x]
backend = exec:/bin/sh -c 'touch {marker}; exec cat'
[resource /u]
backend = unix:{sock}
"""
    path, r = check(tmp_path, "[gateway]\nlisten = 127.0.0.1:1\n" +
                    text.split("\n", 1)[1])
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)          # time enough for a stray backend to run
    assert not marker.exists()
    with pytest.raises(socket.timeout):
        listener.accept()
    # The same backends started for real: the test would see it.
    gateway(text)
    wait_for(marker.exists, timeout=5, what="the marker")
    listener.settimeout(5)
    listener.accept()[0].close()
    listener.close()


@pytest.mark.parametrize("name", ["gatewayd.ini", "demo.ini"])
def test_shipped_configs(name):
    path = os.path.join(ROOT, "conf", name)
    r = run("-t", "-c", path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_missing_config_file(tmp_path):
    path = tmp_path / "absent.ini"
    for args in (["-t", "-c", str(path)], ["-c", str(path)]):
        r = run(*args)
        assert r.returncode == 1
        assert f"{path}: No such file or directory" in r.stderr


def test_config_is_a_directory(tmp_path):
    r = run("-t", "-c", str(tmp_path))
    assert r.returncode == 1
    assert "Is a directory" in r.stderr


def test_daemon_refuses_bad_config(tmp_path):
    marker = tmp_path / "marker"
    port = free_port()
    path = tmp_path / "bad.ini"
    path.write_text(f"""[gateway]
listen = 127.0.0.1:{port}
[resource /x]
backend = exec:/bin/sh -c 'touch {marker}; exec cat'
max_message_size = huge
""")
    r = run("-c", str(path))
    assert r.returncode == 1
    assert errors(path, r.stderr) == [
        (5, "max_message_size: invalid value 'huge': not a size (a number "
            "with an optional K, M or G suffix)")], r.stderr
    time.sleep(0.3)          # time enough for a stray backend to run
    assert not marker.exists()


def test_port_in_use(tmp_path):
    marker = tmp_path / "marker"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        path = tmp_path / "busy.ini"
        path.write_text(f"""[gateway]
listen = 127.0.0.1:{free_port()}
listen = 127.0.0.1:{port}
[resource /x]
backend = exec:/bin/sh -c 'touch {marker}; exec cat'
""")
        r = run("-c", str(path))
    assert r.returncode == 1
    assert f"{path}:3: cannot listen on 127.0.0.1:{port}: " \
           "Address already in use" in r.stderr, r.stderr
    time.sleep(0.3)          # time enough for a stray backend to run
    assert not marker.exists()


def test_usage_errors():
    assert run("-x").returncode == 2
    assert run("-t", "extra").returncode == 2
    r = run("-V")
    assert r.returncode == 0 and r.stdout.startswith("gatewayd ")
