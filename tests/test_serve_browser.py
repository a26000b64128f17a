"""The chat page and the API docs in headless Chromium (Debian's /usr/bin/chromium driven by
Playwright), with every request to a host other than the local server aborted and recorded.

Chat: types a request, sees track cards with a title and artist and a reply grounded in the
first track's facts, plays nothing, clicks like, sees the next turn, and saves screenshots (phone
and desktop) under test-artifacts/. Docs: /docs
renders every operation from local assets only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from test_serve_api import LiveServer, write_toy_catalog

from talkplay.data.dataset import read_dataset
from talkplay.evaluate.baselines import SYSTEMS
from talkplay.recommend.replies import TemplateReplies
from talkplay.serve.app import create_app
from talkplay.serve.settings import ServeSettings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

LOCAL_HOSTS = {"127.0.0.1", "localhost"}

pytestmark = pytest.mark.slow


def block_outside(page) -> list[str]:
    """Abort every request that would leave this machine; return the list the URLs go into."""
    outside: list[str] = []

    def handle(route) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", handle)
    return outside


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (scripts/test.sh does in CI)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    ds = read_dataset(write_toy_catalog(tmp_path_factory.mktemp("browser") / "data"))
    system = TemplateReplies(SYSTEMS["bm25"](ds), {t.id: t for t in ds.tracks})
    with LiveServer(create_app(system, ds, ServeSettings(k=4))) as server:
        yield server


@pytest.mark.parametrize("device", ["phone", "desktop"])
def test_chat_page_recommends_and_takes_feedback(browser, live, device):
    size = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}[device]
    context = browser.new_context(viewport=size, device_scale_factor=2 if device == "phone" else 1,
                                  is_mobile=device == "phone", has_touch=device == "phone")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    outside = block_outside(page)
    page.goto(live.url + "/")
    page.wait_for_function("document.getElementById('system').textContent.includes('bm25')")
    page.fill("#text", "upbeat indie rock for a road trip")
    page.press("#text", "Enter")
    first = page.locator(".msg.assistant .card").first
    first.wait_for(timeout=15_000)
    cards = page.locator(".msg.assistant .cards").first.locator(".card")
    assert cards.count() == 4
    title = cards.first.locator(".title").inner_text()
    artist = cards.first.locator(".artist").inner_text()
    assert title == "Mr. Brightside" and artist == "The Killers"  # the BM25 answer on this catalog
    # The reply is grounded in the first track's catalog facts (the screenshot shows it).
    reply = page.locator(".msg.assistant .reply").first.inner_text()
    assert reply.startswith("Here is Mr. Brightside by The Killers: "), reply
    assert cards.first.locator("audio").count() == 1  # this track has audio in the catalog
    assert cards.first.locator(".tag").first.inner_text()
    # Like the second card: a new turn arrives and the session records the like.
    liked_title = cards.nth(1).locator(".title").inner_text()
    cards.nth(1).locator("button.like").click()
    page.wait_for_function("document.querySelectorAll('.msg.assistant .cards').length >= 2",
                           timeout=15_000)
    assert "liked" in (cards.nth(1).get_attribute("class") or "")
    sid, token = page.evaluate("[state.sid, state.token]")
    session = httpx.get(f"{live.url}/api/sessions/{sid}", headers={"X-Session-Token": token}).json()
    assert len(session["liked"]) == 1 and session["turns"] == 2
    assert liked_title in session["history"][-3]["content"] or any(
        liked_title in m["content"] for m in session["history"] if m["role"] == "user")
    # The phone layout never scrolls sideways.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.wait_for_timeout(800)  # let the page's smooth scroll to the new turn finish
    page.locator(".msg.user").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(100)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"serve_chat_{device}.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert not errors, errors
    assert not outside, f"the page fetched outside resources: {outside}"
    context.close()


def test_api_docs_render_offline(browser, live, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    outside = block_outside(page)
    page.goto(live.url + "/docs")
    page.locator(".swagger-ui .opblock").first.wait_for(timeout=15_000)
    # Every route of the API is listed: the spec loaded and Swagger UI's script ran.
    summaries = page.locator(".swagger-ui .opblock-summary-path").all_inner_texts()
    assert "/api/sessions/{sid}/messages" in [s.replace("\u200b", "") for s in summaries]
    assert page.locator(".swagger-ui .opblock").count() >= 8
    assert page.evaluate("getComputedStyle(document.querySelector('.swagger-ui .opblock'))"
                         ".borderStyle") == "solid"  # the stylesheet applied
    shot = tmp_path / "serve_docs.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not errors, errors
    assert not outside, f"the docs fetched outside resources: {outside}"
    context.close()
