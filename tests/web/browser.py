"""The chat page in a real browser, for tests/web: headless Chromium driven by Selenium,
the page read as one snapshot per poll, and a proxy whose connections a test can cut.

Selenium is imported where it is used, so that a machine without it reaches
`require_browser()`, which skips (or, under CI, fails) loudly.
"""

import contextlib
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.databases import IN_CI
from tests.e2e.server import ROOT, BatonServer

ARTIFACTS = ROOT / "tests" / "artifacts"
WAIT_SECONDS = 30  # an explicit wait fails the test after this long

# The page as the test reads it: one snapshot per poll.
SNAPSHOT = """
const text = (node) => node.querySelector('.text').textContent;
const alert = document.querySelector('#alert');
return {
  sessionId: document.querySelector('#session').dataset.sessionId ?? null,
  busy: document.querySelector('.app').getAttribute('aria-busy') === 'true',
  status: document.querySelector('#status').textContent,
  alert: alert.hidden ? null : {reason: alert.dataset.reason, text: alert.textContent},
  users: [...document.querySelectorAll('.msg.user')].map((node) => ({
    text: text(node), seq: node.dataset.seq ? Number(node.dataset.seq) : null,
    failed: node.classList.contains('failed'),
  })),
  replies: [...document.querySelectorAll('.msg.assistant')].map((node) => ({
    text: text(node), turn: node.dataset.turn ? Number(node.dataset.turn) : null,
    deltas: Number(node.dataset.deltas), recovered: node.dataset.recovered === 'true',
    streaming: node.classList.contains('streaming'),
  })),
  saved: JSON.parse(localStorage.getItem('baton.chat') ?? 'null'),
};
"""


def require_browser() -> tuple[str, str]:
    """Chromium and its driver (Debian's chromium, chromium-driver), or a loud skip; under CI,
    which installs them (.ci/system-packages), a failure."""
    found = {program: shutil.which(program) for program in ("chromium", "chromedriver")}
    missing = [program for program, path in found.items() if path is None]
    try:
        import selenium  # noqa: F401 - in the dev extra
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = f"{', '.join(missing)} not installed"
        if IN_CI:
            pytest.fail(f"{message}; CI requires them for the chat page", pytrace=False)
        pytest.skip(
            f"SKIPPING THE CHAT PAGE'S BROWSER TESTS: {message} "
            "(make test installs them: .ci/system-packages)"
        )
    return str(found["chromium"]), str(found["chromedriver"])


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium under chromedriver, both Debian's (no Selenium Manager download)."""
    binary, chromedriver = require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # Chromium's sandbox refuses to run as root (CI is root)
        "--disable-dev-shm-usage",
        "--window-size=860,1000",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


class CuttableProxy:
    """A TCP proxy in front of the server whose open connections the test can cut, as a flaky
    network or a restarted load balancer would, while the server runs on."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return  # closed
            with self.lock:
                self.open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Break every open connection mid-stream."""
        with self.lock:
            cut, self.open = self.open, set()
        for end in cut:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


class Page:
    """The chat page in the browser, read and driven the way a person would use it."""

    def __init__(self, driver: Any, server: BatonServer, backend: str, url: str = "") -> None:
        self.driver = driver
        self.server = server
        self.backend = backend
        self.url = url or server.url  # where the browser finds the page (a proxy, say)

    def open(self) -> "Page":
        self.driver.get(f"{self.url}/")
        title = self.driver.title
        assert title == "Baton chat", f"{self.url}/ is not the chat page: {title!r}"
        self.wait(lambda page: not page["busy"], "the page is ready")
        return self

    def fresh(self) -> "Page":
        """The page on a new conversation: this origin's localStorage cleared."""
        self.driver.get(f"{self.url}/")
        self.driver.execute_script("localStorage.clear()")
        return self.open()

    def snapshot(self) -> dict[str, Any]:
        page: dict[str, Any] = self.driver.execute_script(SNAPSHOT)
        return page

    def wait(
        self,
        condition: Callable[[dict[str, Any]], Any],
        what: str,
        expect_alert: bool = False,
    ) -> dict[str, Any]:
        """Poll the page until `condition(snapshot)` holds; a refusal on the page fails at
        once (unless it is what the test waits for)."""
        from selenium.webdriver.support.wait import WebDriverWait

        def check(_: Any) -> dict[str, Any] | None:
            page = self.snapshot()
            if page["alert"] and not expect_alert:
                raise AssertionError(f"the page shows a refusal: {page['alert']['text']}")
            return page if condition(page) else None

        waited: dict[str, Any] = WebDriverWait(
            self.driver, WAIT_SECONDS, poll_frequency=0.02
        ).until(check, message=f"waiting until {what}")
        return waited

    def send(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        self.wait(lambda page: not page["busy"], "the page can send")
        self.driver.find_element(By.ID, "message").send_keys(text)
        self.driver.find_element(By.ID, "send").click()

    def reply(self, turn: int) -> dict[str, Any]:
        """Wait for turn `turn`'s reply to be complete; return it."""
        page = self.wait(
            lambda page: (
                any(r["turn"] == turn and not r["streaming"] for r in page["replies"])
                and not page["busy"]
            ),
            f"turn {turn}'s reply is on the page",
        )
        return next(reply for reply in page["replies"] if reply["turn"] == turn)

    def streaming(self, deltas: int) -> dict[str, Any]:
        """Wait until the reply under way has received `deltas` deltas (and is not done)."""
        page = self.wait(
            lambda page: any(r["streaming"] and r["deltas"] >= deltas for r in page["replies"]),
            f"a reply is streaming ({deltas} deltas in)",
        )
        return next(reply for reply in page["replies"] if reply["streaming"])

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(ARTIFACTS / f"chat-{self.backend}-{name}.png"))
