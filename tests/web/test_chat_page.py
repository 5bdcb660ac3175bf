"""The chat page at `/` (api/static: index.html and the JavaScript client baton.js), in
headless Chromium driven by Selenium, against real `baton serve` processes on both backends.

What a person would see: replies streamed as they arrive; a connection cut mid-reply whose
stream resumes (from the session's events, with Last-Event-ID); a reload, even mid-reply,
that carries on the same session; a server killed with -9 mid-reply and started again, after
which the page finishes the turn and goes on; and a stale tab (its session moved on in
another tab) that shows the stale-token refusal instead of forking a new session.
Screenshots go to tests/artifacts/ (tests/web/browser.py has the browser side).
"""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.databases import fresh_database
from tests.e2e.server import BatonServer
from tests.web.browser import CuttableProxy, Page, chromium

pytestmark = pytest.mark.e2e

LEASE = "1"  # seconds: a killed server's turn is taken over soon after it comes back
# The demo streams its reply a word every 20 ms: this one takes about a second.
LONG = (
    "Here is a longer message, so that the reply streams for about a second and the test can "
    "catch it half way: Baton keeps the session in its database, this page keeps the token in "
    "the browser, and neither of them minds when a connection drops now and then."
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser for the module; each server has its own origin, so its own localStorage."""
    with chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatonServer]:
    directory = tmp_path_factory.mktemp(f"web-{backend}")
    with (
        fresh_database(backend, directory) as url,
        BatonServer(url, directory / "server.log", "--lease", LEASE) as server,
    ):
        yield server


@pytest.fixture
def page(browser: Any, server: BatonServer, backend: str) -> Iterator[Page]:
    """The page on a new conversation, in one window."""
    yield Page(browser, server, backend).fresh()
    first, *others = browser.window_handles
    for handle in others:
        browser.switch_to.window(handle)
        browser.close()
    browser.switch_to.window(first)


def said(text: str) -> str:
    return f"You said: {text}"


def test_three_messages_get_streamed_replies(page: Page) -> None:
    tokens = []
    for turn, text in enumerate(["hello", "how are you today"], start=1):
        page.send(text)
        reply = page.reply(turn)
        assert reply["text"] == said(text)
        assert reply["deltas"] == len(said(text).split(" "))  # word by word, as they came
        tokens.append(page.snapshot()["saved"]["continuationToken"])

    page.send(LONG)
    partial = page.streaming(deltas=3)  # caught mid-reply: part of it is already shown
    assert said(LONG).startswith(partial["text"])
    assert 3 <= partial["deltas"] < len(said(LONG).split(" "))
    assert partial["text"] != said(LONG)
    reply = page.reply(3)
    assert reply["text"] == said(LONG)
    assert not reply["recovered"]

    final = page.snapshot()
    tokens.append(final["saved"]["continuationToken"])
    assert len(set(tokens)) == 3  # a new token for every committed turn
    assert final["saved"] == {
        "sessionId": final["sessionId"],
        "continuationToken": tokens[-1],
        "pendingKey": None,
    }
    assert [user["text"] for user in final["users"]] == ["hello", "how are you today", LONG]
    page.screenshot("1-three-messages")


def test_a_connection_dropped_mid_reply_resumes_the_stream(
    browser: Any, server: BatonServer, backend: str
) -> None:
    proxy = CuttableProxy(server.port)
    try:
        page = Page(browser, server, backend, url=proxy.url).fresh()
        page.send("before the drop")
        page.reply(1)
        page.send(LONG)
        page.streaming(deltas=3)
        proxy.cut()  # the server runs on: the turn commits while the page is cut off

        # The page resumes the turn from its events (Last-Event-ID, the token the turn is
        # consuming): the outcome comes with the token the turn issued, marked recovered. The
        # deltas sent while it was cut off are lost (never stored); the reply is whole.
        reply = page.reply(2)
        assert reply["text"] == said(LONG)
        assert reply["recovered"]
        assert reply["deltas"] < len(said(LONG).split(" "))
        page.send("after the drop")
        assert page.reply(3)["text"] == said("after the drop")
        page.screenshot("2-resumed-after-a-drop")
    finally:
        proxy.close()


def test_a_reload_mid_reply_continues_the_same_session(page: Page) -> None:
    page.send("before the reload")
    page.reply(1)
    session_id = page.snapshot()["sessionId"]

    page.send(LONG)
    page.streaming(deltas=3)
    during = page.snapshot()["saved"]
    assert during["pendingKey"], "a turn under way keeps its Idempotency-Key in the store"
    page.driver.refresh()  # the turn's stream drops; the turn goes on on the server

    # The reloaded page shows the conversation, and the interrupted reply, recovered from
    # the session's events with the token the turn consumed (no deltas: those are live only).
    recovered = page.reply(2)
    assert recovered["text"] == said(LONG)
    assert recovered["recovered"]
    assert recovered["deltas"] == 0
    after = page.snapshot()
    assert after["sessionId"] == session_id
    assert [user["text"] for user in after["users"]] == ["before the reload", LONG]
    assert after["saved"]["pendingKey"] is None
    assert after["saved"]["continuationToken"] != during["continuationToken"]

    page.send("after the reload")
    assert page.reply(3)["text"] == said("after the reload")
    assert page.snapshot()["sessionId"] == session_id
    page.screenshot("3-after-reload")


def test_a_server_killed_mid_reply_and_restarted_continues(page: Page) -> None:
    server = page.server
    page.send("before the restart")
    page.reply(1)
    session_id = page.snapshot()["sessionId"]

    page.send(LONG)
    page.streaming(deltas=3)
    first_attempt = page.snapshot()["users"][-1]["seq"]
    server.kill()  # kill -9 mid-reply: the turn never commits
    page.wait(lambda page: "Connection lost" in page["status"], "the page says it reconnects")
    page.screenshot("4-reconnecting")
    server.start()  # the same database, the same port

    # The page resumes, finds the turn's server gone (its lease lapses), and sends the turn
    # again with the same key and token: the new server runs it, and the reply streams.
    reply = page.reply(2)
    assert reply["text"] == said(LONG)
    after = page.snapshot()
    assert after["sessionId"] == session_id
    assert after["users"][-1]["seq"] > first_attempt  # the record of the attempt that committed

    page.send("after the restart")
    assert page.reply(3)["text"] == said("after the restart")
    assert page.snapshot()["sessionId"] == session_id
    page.screenshot("4-after-restart")


def test_a_stale_tab_shows_the_refusal_instead_of_forking(page: Page) -> None:
    driver = page.driver
    page.send("from the first tab")
    page.reply(1)
    first_tab = driver.current_window_handle

    # A second tab on the same localStorage picks the session up and moves it on.
    driver.switch_to.new_window("tab")
    page.open()
    assert [reply["turn"] for reply in page.snapshot()["replies"]] == [1]
    page.send("from the second tab")
    page.reply(2)
    moved_on = page.snapshot()["saved"]

    # The first tab still holds the token turn 2 consumed.
    driver.switch_to.window(first_tab)
    page.send("from the first tab again")
    stale = page.wait(lambda page: page["alert"], "the page shows a refusal", expect_alert=True)
    assert stale["alert"]["reason"] == "stale-token"
    assert "stale-token (HTTP 409)" in stale["alert"]["text"]
    assert stale["users"][-1]["failed"]
    # Not forked: the same session, and the store still holds the newer tab's token.
    assert stale["sessionId"] == moved_on["sessionId"]
    assert stale["saved"] == moved_on
    page.screenshot("5-stale-tab")

    # Reloading picks the session up where the other tab left it.
    driver.refresh()
    page.wait(lambda page: len(page["replies"]) == 2 and not page["busy"], "the history is shown")
    page.send("caught up")
    assert page.reply(3)["text"] == said("caught up")
    assert page.snapshot()["sessionId"] == moved_on["sessionId"]
