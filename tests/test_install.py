"""make install and make uninstall, as a package build runs them: into a
DESTDIR, without root.  What lands where, the units made from their
templates with the paths of PREFIX and accepted by systemd-analyze verify,
manual pages that render without a warning, a configuration never
overwritten, an uninstall that leaves only directories behind; and the
reference configuration, as installed, serving its echo room."""
import asyncio
import glob
import os
import re
import shutil
import signal
import subprocess

import pytest
import websockets

from conftest import ROOT, free_port, wait_for

# The first make install may have to build the daemon.
pytestmark = pytest.mark.timeout(600)

PREFIX = "/usr/local"
UNIT_DIR = "lib/systemd/system"
DOC = "usr/local/share/doc/gatewayd"
UNITS = ["gatewayd.service", "gatewayd@.service", "gatewayd.socket"]
MAN_PAGES = ["usr/local/share/man/man8/gatewayd.8",
             "usr/local/share/man/man5/gatewayd.ini.5"]


def make(*args):
    """Run make in the project root; its output, or a failure with it.
    The MAKEFLAGS of a make that runs this suite (SANITIZE=1, say) stay
    out, and so do the variables it exports (make exports a variable
    given on its command line): it is the plain build that gets
    installed."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "SANITIZE",
                        "BUILD")}
    r = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT,
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"make {' '.join(args)}:\n{r.stdout}{r.stderr}"
    return r.stdout


def install(destdir, *args):
    return make("install", f"DESTDIR={destdir}", f"PREFIX={PREFIX}", *args)


def uninstall(destdir, *args):
    return make("uninstall", f"DESTDIR={destdir}", f"PREFIX={PREFIX}", *args)


def files_under(top):
    """Every file and symbolic link under top, relative to it."""
    found = set()
    for d, _, names in os.walk(top):
        for n in names:
            found.add(os.path.relpath(os.path.join(d, n), top))
    return found


def shipped(subdir):
    """The files of subdir in the source tree, as make install takes them
    (no Python caches)."""
    return {os.path.relpath(p, ROOT) for p in files_under_abs(subdir)}


def files_under_abs(subdir):
    for d, dirs, names in os.walk(os.path.join(ROOT, subdir)):
        dirs[:] = [x for x in dirs if x != "__pycache__"]
        for n in names:
            if not n.endswith(".pyc"):
                yield os.path.join(d, n)


def expected_files():
    """What make install DESTDIR=... PREFIX=/usr/local puts there."""
    files = {
        "usr/local/bin/gatewayd",
        "etc/gatewayd/gatewayd.ini",
        f"{UNIT_DIR}/gatewayd.service",
        f"{UNIT_DIR}/gatewayd@.service",
        f"{UNIT_DIR}/gatewayd.socket",
        *MAN_PAGES,
        f"{DOC}/README.md",
        f"{DOC}/docs/OPERATIONS.md",
        f"{DOC}/docs/POLICY.md",
        f"{DOC}/docs/PROTOCOL.md",
        f"{DOC}/examples/chat/room.py",
        f"{DOC}/examples/chat/www/index.html",
        f"{DOC}/examples/echo/room.sh",
    }
    files |= {f"{DOC}/{p}" for p in shipped("docs") if p.endswith(".md")}
    files |= {f"{DOC}/{p}" for p in shipped("examples")}
    return files


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """One make install into a fresh DESTDIR, for the tests that only
    look at the result."""
    destdir = tmp_path_factory.mktemp("destdir")
    install(destdir)
    return destdir


def test_install_puts_every_file_in_place(installed):
    assert files_under(installed) == expected_files()
    mode = lambda p: os.stat(installed / p).st_mode & 0o777
    assert mode("usr/local/bin/gatewayd") == 0o755
    assert mode("etc/gatewayd/gatewayd.ini") == 0o644
    assert mode(f"{DOC}/examples/chat/room.py") == 0o755
    assert mode(f"{DOC}/examples/chat/www/index.html") == 0o644
    for unit in UNITS:
        assert mode(f"{UNIT_DIR}/{unit}") == 0o644
    with open(os.path.join(ROOT, "build", "gatewayd"), "rb") as a, \
            open(installed / "usr/local/bin/gatewayd", "rb") as b:
        assert a.read() == b.read()


def test_installed_units_have_the_prefix_paths(installed):
    for unit in UNITS:
        text = (installed / UNIT_DIR / unit).read_text()
        assert not re.search(r"@[A-Z_]+@", text), unit
        assert "file:///usr/local/share/doc/gatewayd/docs/OPERATIONS.md" \
            in text, unit
    service = (installed / UNIT_DIR / "gatewayd.service").read_text()
    assert ("\nExecStart=/usr/local/bin/gatewayd -c "
            "/etc/gatewayd/gatewayd.ini\n") in service
    assert ("\nExecStartPre=/usr/local/bin/gatewayd -t -c "
            "/etc/gatewayd/gatewayd.ini\n") in service
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in service
    template = (installed / UNIT_DIR / "gatewayd@.service").read_text()
    assert ("\nExecStart=/usr/local/bin/gatewayd -c "
            "/etc/gatewayd/%i.ini\n") in template
    socket_unit = (installed / UNIT_DIR / "gatewayd.socket").read_text()
    assert "\nListenStream=127.0.0.1:8080\n" in socket_unit
    # The socket's address is the reference configuration's listen line.
    config = (installed / "etc/gatewayd/gatewayd.ini").read_text()
    assert "\nlisten = 127.0.0.1:8080\n" in config


def test_units_follow_prefix(tmp_path):
    """Another PREFIX and unit directory: the units name the paths of that
    installation, and so do the examples of the configuration."""
    make("install", f"DESTDIR={tmp_path}", "PREFIX=/usr",
         "SYSTEMD_UNIT_DIR=/usr/lib/systemd/system")
    assert (tmp_path / "usr/bin/gatewayd").exists()
    service = (tmp_path / "usr/lib/systemd/system/gatewayd.service") \
        .read_text()
    assert "\nExecStart=/usr/bin/gatewayd -c /etc/gatewayd/gatewayd.ini\n" \
        in service
    settings = [l for l in service.splitlines() if not l.startswith("#")]
    assert not [l for l in settings if "/usr/local" in l]
    assert not (tmp_path / "lib").exists()
    config = (tmp_path / "etc/gatewayd/gatewayd.ini").read_text()
    assert "/usr/local" not in config
    assert "/usr/share/doc/gatewayd/examples/chat/room.py" in config
    assert "/usr/share/doc/gatewayd" in \
        (tmp_path / "usr/share/man/man8/gatewayd.8").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="no systemd-analyze")
def test_systemd_analyze_verify_accepts_every_unit(installed, tmp_path):
    # On systemd 252, systemd-analyze verify checks that the programs of
    # ExecStart= and the like exist and are executable, and runs man(1)
    # for each man: link of Documentation=.  The units name
    # /usr/local/bin/gatewayd, which exists only in DESTDIR: --root=DIR
    # makes verify look programs up below DIR, and load the units from the
    # unit directories below DIR.  But then also the units they depend on
    # (sysinit.target, sockets.target, ...), which a DESTDIR does not
    # hold: so verify runs on a copy of DESTDIR with the host's targets
    # added, and MANPATH takes man(1) to the pages just installed.
    # (Without --root, verify checks /usr/local/bin/gatewayd on the host,
    # and fails: "Command ... is not executable".)  verify exits 0 even
    # on an unknown key or a value it cannot parse (it logs them and goes
    # on), so it must print nothing at all.
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    host_units = next(d for d in ("/usr/lib/systemd/system",
                                  "/lib/systemd/system")
                      if glob.glob(f"{d}/sysinit.target"))
    targets = root / "usr/lib/systemd/system"
    targets.mkdir(parents=True, exist_ok=True)
    for t in glob.glob(f"{host_units}/*.target"):
        shutil.copy(t, targets)
    env = dict(os.environ, MANPATH=str(root / "usr/local/share/man"),
               SYSTEMD_LOG_COLOR="0")
    for unit in ["gatewayd.service", "gatewayd.socket",
                 "gatewayd@example.service"]:
        r = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                            unit], env=env, capture_output=True, text=True)
        assert (r.returncode, r.stdout + r.stderr) == (0, ""), unit

    # And it does see what the copy holds: without the binary, it fails.
    os.unlink(root / "usr/local/bin/gatewayd")
    r = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                        "gatewayd.service"], env=env, capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert "/usr/local/bin/gatewayd is not executable" in r.stderr


@pytest.mark.parametrize("page", MAN_PAGES)
def test_man_pages_render_without_warnings(installed, page):
    env = dict(os.environ, MANWIDTH="80")
    r = subprocess.run(["man", "--warnings", "-l", str(installed / page)],
                       env=env, capture_output=True, text=True)
    assert (r.returncode, r.stderr) == (0, "")
    text = re.sub(".\b", "", r.stdout)     # bold and underline overstrikes
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
        assert f"\n{heading}\n" in text, heading


def test_install_keeps_an_existing_config(tmp_path):
    config = tmp_path / "etc/gatewayd/gatewayd.ini"
    config.parent.mkdir(parents=True)
    config.write_text("; mine\n")
    out = install(tmp_path)
    assert config.read_text() == "; mine\n"
    assert "not overwritten" in out

    # Nor is it taken away, being no reference.
    out = uninstall(tmp_path)
    assert config.read_text() == "; mine\n"
    assert "keeping" in out


def test_uninstall_leaves_only_directories(tmp_path):
    install(tmp_path)
    uninstall(tmp_path)
    assert files_under(tmp_path) == set()
    # gatewayd's own directories go once empty; the shared ones stay.
    assert not (tmp_path / DOC).exists()
    assert not (tmp_path / "etc/gatewayd").exists()


def test_uninstall_keeps_a_changed_config(tmp_path):
    install(tmp_path)
    config = tmp_path / "etc/gatewayd/gatewayd.ini"
    config.write_text(config.read_text().replace("127.0.0.1:8080",
                                                 "127.0.0.1:8081"))
    uninstall(tmp_path)
    assert files_under(tmp_path) == {"etc/gatewayd/gatewayd.ini"}


def test_reference_config_serves_its_echo_room_as_installed(installed,
                                                            tmp_path):
    """The installed binary, with the installed configuration (another
    port), run as the unit runs it: from /etc/gatewayd, with systemd's
    PATH and nothing else in its environment."""
    etc = installed / "etc/gatewayd"
    binary = str(installed / "usr/local/bin/gatewayd")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                   "/sbin:/bin"}
    r = subprocess.run([binary, "-t", "-c", str(etc / "gatewayd.ini")],
                       cwd=etc, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    port = free_port()
    config = tmp_path / "gatewayd.ini"
    config.write_text((etc / "gatewayd.ini").read_text().replace(
        "\nlisten = 127.0.0.1:8080\n", f"\nlisten = 127.0.0.1:{port}\n"))
    log_path = tmp_path / "gatewayd.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([binary, "-c", str(config)], cwd=etc,
                                env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "info: ready" in log_path.read_text(),
                 what="the installed gatewayd to be ready")

        async def echo():
            async with websockets.connect(
                    f"ws://127.0.0.1:{port}/echo", open_timeout=5) as ws:
                await ws.send("hello")
                return await asyncio.wait_for(ws.recv(), 5)
        assert asyncio.run(echo()) == "hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(20)
    assert status == 0, log_path.read_text()
