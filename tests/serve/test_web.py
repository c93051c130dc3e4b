"""The chat page in headless Chromium: type a message, press Send, and the answer streams into the page, equal to
``generate()``'s greedy answer for the same conversation.

The browser is driven over the Chrome DevTools Protocol (https://chromedevtools.github.io/devtools-protocol/) on a
websocket: no WebDriver binary whose version must match the browser. Chromium is Debian's package; when it is missing
the fixture installs it with apt-get (the test machines run as root), and skips only where apt-get itself is absent.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from .test_server import expected_chat

pytestmark = pytest.mark.slow


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and apt-get is unavailable to install it")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run(["apt-get", "update"], check=True, capture_output=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, capture_output=True, env=env)
    return shutil.which("chromium")


class Browser:
    """Headless Chromium and one page, spoken to over the DevTools protocol."""

    def __init__(self, binary: str, profile):
        import websocket

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.ids = itertools.count(1)

    def call(self, method: str, **params):
        message_id = next(self.ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        """Poll until ``expression`` is truthy. An exception counts as "not yet" (the page may still be loading and
        its elements absent); the last one is reported if the time runs out."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            try:
                if value := self.js(expression):
                    return value
            except RuntimeError as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"{expression} (last error: {last})" if last else expression)

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    pytest.importorskip("websocket")
    b = Browser(find_chromium(), tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def test_page_sends_a_message_and_streams_the_answer(live, browser, oracle):
    browser.call("Page.navigate", url=f"{live.url}/")
    browser.wait_for("document.getElementById('model').textContent.includes('tiny-chat')")
    # Count the changes of the answer's text as they happen: more than one means it arrived in pieces.
    browser.js("""
        window.changes = 0;
        new MutationObserver(() => window.changes++).observe(document.getElementById('messages'),
            {childList: true, subtree: true, characterData: true});
        document.getElementById('temperature').value = '0';
        document.getElementById('max_tokens').value = '30';
        document.getElementById('input').value = 'Hello, who are you?';
        document.getElementById('send').click();
    """)
    browser.wait_for(
        "document.querySelector('.assistant') && document.querySelector('.assistant').dataset.done === '1'"
    )
    answer = browser.js("document.querySelector('.assistant').textContent")
    expected, n = expected_chat(oracle, [{"role": "user", "content": "Hello, who are you?"}], 30)
    assert answer == expected
    assert browser.js("document.querySelector('.user').textContent") == "Hello, who are you?"
    assert browser.js("window.changes") > 3  # user bubble, answer bubble, then the streamed pieces

    # A second turn sends the whole conversation.
    browser.js("document.getElementById('input').value = 'And then?'; document.getElementById('send').click();")
    browser.wait_for("document.querySelectorAll('.assistant').length === 2 && "
                     "document.querySelectorAll('.assistant')[1].dataset.done === '1'")  # fmt: skip
    second = browser.js("document.querySelectorAll('.assistant')[1].textContent")
    history = [{"role": "user", "content": "Hello, who are you?"}, {"role": "assistant", "content": expected},
               {"role": "user", "content": "And then?"}]  # fmt: skip
    assert second == expected_chat(oracle, history, 30)[0]
