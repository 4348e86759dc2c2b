"""The chat page (examples/chat/www) in a real browser: Debian's chromium,
headless, driven through chromedriver and Selenium.  The gateway runs
conf/demo.ini on a port of its own, serving the page and the chat rooms;
the chat program listens on a Unix socket in the test's directory.

Two windows chat in /bongo, a third in /fury sees none of it, a window
that closes leaves the room, and /fury refuses a name in use.  Each
window gets a fresh profile and a screenshot in the test's tmp_path.

Skipped only where chromium or chromedriver is not installed at all."""
import os
import re
import shutil
import signal

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import PYTHON, ROOT, stop_gateway

WAIT = 10          # seconds: every explicit wait
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
         "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync",
         "--disable-quic", "--no-proxy-server"]


def find(program):
    """Debian's path first, then PATH; None when it is not installed."""
    return shutil.which(f"/usr/bin/{program}") or shutil.which(program)


# /proc: the processes a window leaves behind (psutil is not available).

def proc_stat(pid):
    """(parent pid, start time) of a live process, or None (gone or a
    zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), fields[19]


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def leftovers(root_pid, marker):
    """{pid: start time} of root_pid's descendants and of the processes
    whose command line holds marker (the window's profile directory: it
    finds chromium's processes once chromedriver is gone)."""
    stats = {pid: proc_stat(pid) for pid in all_pids()}
    stats = {pid: s for pid, s in stats.items() if s is not None}
    found = {pid for pid in stats if marker in proc_cmdline(pid)}
    if root_pid is not None:
        tree = {root_pid}
        grew = True
        while grew:
            more = {pid for pid, (ppid, _) in stats.items()
                    if ppid in tree and pid not in tree}
            tree |= more
            grew = bool(more)
        found |= tree & set(stats)
    return {pid: stats[pid][1] for pid in found}


class Window:
    """A browser window: one chromedriver, one chromium, its own profile."""

    def __init__(self, name, tmp_path, chromedriver):
        self.name = name
        self.tmp_path = tmp_path
        self.profile = str(tmp_path / f"profile-{name}")
        self.service = Service(executable_path=chromedriver,
                               log_path=str(tmp_path /
                                            f"chromedriver-{name}.log"))
        self.driver = None

    def start(self, chromium, size):
        """Start chromedriver and chromium: after __init__, so that close()
        cleans up after a start that failed half way."""
        options = Options()
        options.binary_location = chromium
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        options.add_argument(f"--window-size={size}")
        options.ignore_local_proxy_environment_variables()
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=self.service, options=options)
        self.wait = WebDriverWait(self.driver, WAIT)

    # What a user does.

    def open(self, url):
        self.driver.get(url)
        self.until(lambda d: d.title == "gatewayd chat", "the page")
        self.until(lambda d: d.execute_script(
            "return document.body.dataset.phase") == "idle",
            "the page's script")

    def join(self, room, name, enter=False):
        """Pick the room, type the name, and press Enter or click Join."""
        Select(self.driver.find_element(By.ID, "room")).select_by_value(room)
        field = self.driver.find_element(By.ID, "name")
        field.clear()
        field.send_keys(name)
        if enter:
            field.send_keys(Keys.ENTER)
        else:
            self.driver.find_element(By.ID, "join").click()

    def say(self, text, enter=True):
        self.until(lambda d: d.find_element(By.ID, "message").is_enabled(),
                   "the message field")
        field = self.driver.find_element(By.ID, "message")
        field.send_keys(text)
        if enter:
            field.send_keys(Keys.ENTER)
        else:
            self.driver.find_element(By.ID, "send").click()

    def leave(self):
        self.driver.find_element(By.ID, "leave").click()

    # What a user sees.

    def lines(self):
        """The room's lines in the log, without the page's own notes."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll("
            "'#log li:not(.note)'), li => li.textContent)")

    def notes(self):
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#log li.note'),"
            " li => li.textContent)")

    def console_errors(self):
        """The console's errors since the last call."""
        return [e["message"] for e in self.driver.get_log("browser")
                if e["level"] == "SEVERE"]

    def state(self):
        """(data-state, text) of the connection state line."""
        el = self.driver.find_element(By.ID, "state")
        return el.get_attribute("data-state"), el.text

    def until(self, predicate, what):
        try:
            return self.wait.until(predicate)
        except TimeoutException:
            raise AssertionError(
                f"{self.name}: no {what} within {WAIT} s; state "
                f"{self.safe(self.state)}, log {self.safe(self.lines)}"
            ) from None

    def safe(self, f):
        try:
            return f()
        except Exception as e:
            return f"({type(e).__name__})"

    def wait_line(self, text):
        self.until(lambda d: text in self.lines(), f"line {text!r}")

    def wait_state(self, state):
        return self.until(lambda d: self.state()[0] == state and
                          self.state()[1], f"state {state!r}")

    def screenshot(self, label, saved):
        path = self.tmp_path / f"{label}.png"
        assert self.driver.save_screenshot(str(path)), path
        saved.append(path)
        return path

    def close(self):
        """Quit the browser; kill whatever chromedriver or chromium left."""
        process = getattr(self.service, "process", None)
        root = process.pid if process is not None else None
        before = leftovers(root, self.profile)
        try:
            if self.driver is not None:
                self.driver.quit()
        except Exception:
            pass
        finally:
            self.driver = None
            if process is not None and process.poll() is None:
                process.kill()
            if process is not None:
                process.wait(5)
            for pid, start in {**before,
                               **leftovers(None, self.profile)}.items():
                s = proc_stat(pid)
                if s is not None and s[1] == start:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


@pytest.fixture
def browsers(tmp_path, capsys):
    """browsers(name, size) opens a window; all are closed at teardown,
    and whatever processes they leave are killed."""
    chromium, chromedriver = find("chromium"), find("chromedriver")
    if chromium is None or chromedriver is None:
        reason = "not installed: " + " and ".join(
            p for p, path in (("chromium", chromium),
                              ("chromedriver", chromedriver))
            if path is None)
        with capsys.disabled():
            print(f"\ntest_browser: skipped, {reason}")
        pytest.skip(reason)
    opened = []

    def open_window(name, size="1000,800"):
        w = Window(name, tmp_path, chromedriver)
        opened.append(w)
        w.start(chromium, size)
        return w

    try:
        yield open_window
    finally:
        for w in opened:
            w.close()


def demo_config(port, sock):
    """conf/demo.ini, on one port of our own, its chat rooms on sock."""
    with open(os.path.join(ROOT, "conf", "demo.ini")) as f:
        text = f.read()
    text, n = re.subn(r"(?m)^listen\s*=.*\n", "", text)
    assert n >= 1, "conf/demo.ini has no listen line"
    text = text.replace("[gateway]\n",
                        f"[gateway]\nlisten = 127.0.0.1:{port}\n", 1)
    text, n = re.subn(r"unix:run/chat\.sock", f"unix:{sock}", text)
    assert n == 2, "conf/demo.ini has not /bongo and /fury on run/chat.sock"
    assert re.search(r"(?m)^static_dir\s*=\s*examples/chat/www\b", text), \
        "conf/demo.ini does not serve examples/chat/www"
    return text


def test_chat_in_the_browser(unix_room, gateway, browsers, capsys):
    """What two people chatting in /bongo and one in /fury see."""
    sock = unix_room([PYTHON, "examples/chat/room.py"], "chat.sock")
    g = gateway(demo_config("{port}", sock))
    page = f"http://127.0.0.1:{g.port}/"
    shots = []
    windows = []
    try:
        # alice, on a desktop-sized window, joins /bongo with Enter.
        alice = browsers("alice", "1000,800")
        windows.append(alice)
        alice.open(page)
        assert alice.state()[1].startswith("Not connected")
        alice.join("/bongo", "alice", enter=True)
        assert "Connected to /bongo as alice" in alice.wait_state("open")
        alice.wait_line("alice has joined /bongo")

        # bob, on a phone-sized one, with the Join button.
        bob = browsers("bob", "412,860")
        windows.append(bob)
        bob.open(page)
        bob.join("/bongo", "bob")
        bob.wait_state("open")
        bob.wait_line("bob has joined /bongo")
        alice.wait_line("bob has joined /bongo")

        # carol in /fury.
        carol = browsers("carol", "800,700")
        windows.append(carol)
        carol.open(page)
        carol.join("/fury", "carol", enter=True)
        carol.wait_line("carol has joined /fury")

        # Each sees the other's messages; what they type is text, not HTML.
        alice.say("hello bob")
        bob.wait_line("alice says hello bob")
        alice.wait_line("alice says hello bob")
        markup = "hi alice <b>not bold</b> & ünïcödé 😀"
        bob.say(markup, enter=False)
        alice.wait_line(f"bob says {markup}")
        bob.wait_line(f"bob says {markup}")
        assert alice.driver.execute_script(
            "return document.querySelectorAll('#log li b').length") == 2

        # carol sees nothing of /bongo, and /bongo nothing of her.
        carol.say("anyone here?")
        carol.wait_line("carol says anyone here?")
        assert carol.lines() == ["carol has joined /fury",
                                 "carol says anyone here?"]
        for w in (alice, bob):
            assert not [line for line in w.lines() if "carol" in line]
        assert alice.lines() == [
            "alice has joined /bongo", "bob has joined /bongo",
            "alice says hello bob", f"bob says {markup}"]
        assert bob.lines() == alice.lines()[1:]
        bob.screenshot("bob", shots)
        assert bob.console_errors() == []

        # bob's window closes: alice sees him leave.
        windows.remove(bob)
        bob.close()
        alice.wait_line("bob has left /bongo")

        # alice leaves /bongo and tries /fury as carol: refused, and told
        # so with the close code; as alice she gets in.
        alice.leave()
        assert alice.wait_state("closed") == "You left /bongo."
        alice.join("/fury", "carol")
        refused = alice.wait_state("error")
        assert "Could not join /fury as carol" in refused, refused
        assert "close code 1006" in refused, refused
        assert "one person in per name" in refused, refused
        alice.screenshot("alice-refused", shots)
        alice.join("/fury", "alice")
        alice.wait_line("alice has joined /fury")
        carol.wait_line("alice has joined /fury")
        assert alice.notes() == ["You are in /bongo as alice.",
                                 "You left /bongo.",
                                 "You are in /fury as alice."]
        carol.say("welcome")
        alice.wait_line("carol says welcome")
        assert "carol has joined /fury" not in alice.lines()
        carol.screenshot("carol", shots)

        # The gateway stops: both are told, with the code and the reason.
        stop_gateway(g)
        for w in (alice, carol):
            closed = w.wait_state("error")
            assert closed == ("The server closed the connection (close code "
                              "1001: the server is going away; reason: "
                              "server shutting down)."), closed
        alice.screenshot("alice", shots)

        # No script errors, no missing files; the one failure in the
        # consoles is the refused handshake, which was a 409.
        refusals = alice.console_errors()
        assert len(refusals) == 1 and "/fury?name=carol" in refusals[0] \
            and "Unexpected response code: 409" in refusals[0], refusals
        assert carol.console_errors() == []
    except BaseException:
        for w in windows:
            try:
                w.screenshot(f"{w.name}-failed", shots)
            except Exception:
                pass
        raise
    finally:
        with capsys.disabled():
            print("\ntest_browser: screenshots:")
            for path in shots:
                print(f"  {path}")
