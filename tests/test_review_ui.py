"""The reviewers' web page, in a real browser: Debian's Chromium driven by
Playwright against the Flask app served on a free local port."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from models import ReviewItem
from models.db import transaction
from tests.factories import key_id, make_review_item
from tests.test_review import make_recorded_review_item, stereo_tones

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is missing (Debian package 'chromium'; `make system-deps` installs it)",
)
# Where the claimed-item screenshot goes; set it to keep one (e.g. /tmp/review.png).
SCREENSHOT = os.environ.get("EMOQ_REVIEW_SCREENSHOT")
TIMEOUT_MS = 15_000


def test_page_and_its_files_are_served_without_auth(client):
    page = client.get("/review")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'src="review/static/review.js"' in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "media-src 'self' blob:;" in page.headers["Content-Security-Policy"]  # the segment's audio
    for name, mimetype in [("review.js", "text/javascript"), ("review.css", "text/css")]:
        asset = client.get(f"/review/static/{name}")
        assert asset.status_code == 200 and asset.mimetype == mimetype
    assert client.get("/v1/review-items").status_code == 401  # the data still needs a key


@contextmanager
def serving(app) -> Iterator[str]:
    """The app on 127.0.0.1 at a free port (the OS picks it), in a background thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="review-ui-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture
def live_server(app) -> Iterator[str]:
    with serving(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _as_the_worker_writes_it(sessions, item_id) -> None:
    """A segment with a time range and role, and reason details shaped like worker.jobs.persist's."""
    with transaction(sessions) as session:
        row = session.get(ReviewItem, item_id)
        row.start_seconds, row.end_seconds, row.channel_role = 12.4, 15.9, "customer"
        row.domain = "<b>support</b>"  # shown as text, never as markup
        row.reason_details = _worker_reason_details()


def _worker_reason_details(focus_start: float = 0.8, focus_end: float = 1.3) -> dict:
    return {
        "flags": ["fear_disgust_ambiguous", "low_confidence"],
        "enhancement": {
            "policy": {"redecide_margin": 0.12, "review_margin": 0.15, "focus_weight": 0.25},
            "domain_profile": {"domain": "support", "version": 3, "applied": True},
            "fear_disgust": {
                "margin_before": 0.05,
                "margin_after": 0.08,
                "model": {"fearful": 0.45, "disgusted": 0.40},
                "redecision": "applied",
                "similarity": {"fearful": 0.412, "disgusted": 0.377},
                "similarity_probability": {"fearful": 0.587, "disgusted": 0.413},
                "temperature": 0.1,
                "focus_window": {
                    "start": focus_start,
                    "end": focus_end,
                    "window_scores": {"fearful": 0.31, "disgusted": 0.58},
                    "crop_scores": {"fearful": 0.29, "disgusted": 0.6},
                    "crop_fear_share": 0.326,
                },
                "changed_decision": False,
            },
        },
        "enhanced_scores": {"fearful": 0.465, "disgusted": 0.385, "neutral": 0.15},
        "quality": {"speech_ratio": 0.83, "snr_db": 21.5, "clipping_ratio": 0.0, "flags": []},
    }


def _bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def _sign_in(page, base: str, key: str) -> None:
    page.goto(f"{base}/review")
    page.get_by_role("textbox", name="API key").fill(key)
    page.get_by_role("button", name="Use key").click()


@needs_chromium
def test_reviewer_claims_labels_and_resolves_an_item(live_server, page, keys, sessions, client):
    from playwright.sync_api import expect

    submitter = key_id(sessions, "submitter")
    first, second = make_review_item(sessions, submitter), make_review_item(sessions, submitter, label="disgusted")
    _as_the_worker_writes_it(sessions, first)

    _sign_in(page, live_server, _bearer(keys["reviewer"]))
    queue = page.locator("#queue > li")
    expect(queue).to_have_count(2)
    expect(queue.first).to_contain_text("fear disgust ambiguous")
    expect(page.locator("#queue-count")).to_have_text("(2)")
    # The key is in this tab's sessionStorage and nowhere else.
    assert page.evaluate("sessionStorage.getItem('emoq.review.apiKey')") == _bearer(keys["reviewer"])
    assert page.evaluate("localStorage.length") == 0

    page.get_by_role("button", name="Claim next").click()
    item = page.locator("#item-section")
    expect(item).to_be_visible()
    expect(item).to_have_attribute("data-id", str(first))  # claim-next takes the oldest
    expect(queue).to_have_count(1)
    expect(page.get_by_role("button", name="Claim next")).to_be_disabled()
    expect(page.locator("#random-weights")).to_contain_text("Random model weights")
    expect(page.locator("#lease")).to_contain_text("Lease expires at")
    expect(page.locator("#item-reasons")).to_contain_text("fear disgust ambiguous")
    details = page.locator("#reason-details")
    expect(details).to_contain_text("Fear/disgust margin (model)0.050")
    expect(details).to_contain_text("Similarity to centroids (fearful / disgusted)0.412 / 0.377")
    expect(details).to_contain_text("Focus window0.80–1.30 s into the segment (13.20–13.70 s in the recording)")
    expect(details).to_contain_text("Focus crop fear share0.326")
    expect(details).to_contain_text("Domain profilesupport v3")
    expect(details).not_to_contain_text("focus weight")  # a setting, not evidence
    expect(details).to_contain_text("Other flagslow confidence")
    # This item's job has no recording in storage: the player says so, and the focus button waits.
    expect(page.get_by_label("Segment audio (1 s of context each side)")).to_be_visible()
    expect(page.locator("#audio-note")).to_contain_text("The recording is no longer in storage")
    expect(page.locator("#audio-note")).to_contain_text("(recording_missing)")
    expect(page.get_by_role("button", name="Play focus window")).to_be_disabled()
    expect(page.locator("#focus-where")).to_have_text("13.20–13.70 s in the recording")
    expect(page.locator("#item-facts")).to_contain_text("12.40–15.90 s (#0)")
    expect(page.locator("#item-facts")).to_contain_text("customer")
    expect(page.locator("#item-facts")).to_contain_text("<b>support</b>")
    expect(page.locator("#enhanced-scores > li")).to_have_count(3)
    expect(page.locator("#model-scores > li")).to_have_count(9)
    expect(page.locator("#model-scores > li").first).to_contain_text("fearful")
    expect(page.locator("#model-scores > li").first).to_contain_text("45.0%")
    expect(page.locator("#labels input[type=radio]")).to_have_count(9)

    page.get_by_role("radio", name="disgusted").check()
    page.get_by_role("textbox", name="Note").fill("retching sound at the end")
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)
    page.get_by_role("button", name="Resolve").click()

    expect(page.locator("#status")).to_contain_text("Resolved as “disgusted”")
    expect(item).to_be_hidden()
    expect(queue).to_have_count(1)
    expect(queue.first).to_have_attribute("data-id", str(second))
    expect(page.locator("#queue-count")).to_have_text("(1)")

    resolved = client.get("/v1/review-items?status=resolved", headers=keys["reviewer"]).get_json()["items"]
    assert [(i["id"], i["resolved_label"], i["note"]) for i in resolved] == [
        (str(first), "disgusted", "retching sound at the end")
    ]
    with sessions() as session:
        row = session.get(ReviewItem, first)
        assert row.status == "resolved" and row.resolved_by == key_id(sessions, "reviewer")

    # Claim the other one by keyboard, then release it: it goes back to the queue.
    page.get_by_role("button", name="Claim next").press("Enter")
    expect(item).to_have_attribute("data-id", str(second))
    expect(queue).to_have_count(0)
    expect(page.locator("#queue-empty")).to_be_visible()
    page.keyboard.press("5")  # digit shortcut: the fifth label
    expect(page.get_by_role("radio", name="neutral")).to_be_checked()
    page.get_by_role("button", name="Release").click()
    expect(page.locator("#status")).to_contain_text("Released")
    expect(item).to_be_hidden()
    expect(queue).to_have_count(1)
    pending = client.get("/v1/review-items?status=pending", headers=keys["reviewer"]).get_json()["items"]
    assert [i["id"] for i in pending] == [str(second)]


@needs_chromium
def test_a_submitter_key_is_told_it_is_forbidden(live_server, page, keys, sessions):
    from playwright.sync_api import expect

    make_review_item(sessions, key_id(sessions, "submitter"))
    _sign_in(page, live_server, _bearer(keys["submitter"]))

    status = page.locator("#status")
    expect(status).to_contain_text("Forbidden")
    expect(status).to_contain_text("your key is 'submitter'")
    expect(status).to_have_attribute("data-kind", "error")
    expect(page.get_by_role("textbox", name="API key")).to_be_visible()
    expect(page.get_by_role("textbox", name="API key")).to_be_focused()
    expect(page.locator("#workspace")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('emoq.review.apiKey')") is None

    # An unknown key is asked for again too; a reviewer key then gets in.
    page.get_by_role("textbox", name="API key").fill("emoq_not-a-real-key")
    page.get_by_role("button", name="Use key").click()
    expect(status).to_contain_text("Unauthorized: unknown or revoked API key")
    page.get_by_role("textbox", name="API key").fill(_bearer(keys["reviewer"]))
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#queue > li")).to_have_count(1)
    expect(status).to_be_hidden()


@needs_chromium
def test_an_expired_lease_is_shown_and_resolving_then_fails_clearly(
    settings, database, redis_client, store, page, keys, sessions
):
    from playwright.sync_api import expect

    from api import create_app

    app = create_app(settings.override({"EMOQ_REVIEW_LEASE_SECONDS": 2}))
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    with serving(app) as base:
        _sign_in(page, base, _bearer(keys["reviewer"]))
        page.get_by_role("button", name="Claim next").click()
        lease = page.locator("#lease")
        expect(lease).to_contain_text("Lease expires at")
        expect(lease).to_contain_text("Lease expired at")  # the page's own clock ticks it over
        expect(lease).to_have_attribute("data-kind", "expired")
        page.get_by_role("radio", name="fearful").check()
        page.get_by_role("button", name="Resolve").click()
        expect(page.locator("#status")).to_contain_text("claim the item first (or your lease expired)")
        expect(page.locator("#item-section")).to_be_hidden()
        expect(page.locator("#queue > li")).to_have_count(1)
        expect(page.locator("#queue > li").first).to_have_attribute("data-id", str(item_id))


def _audio(page, expression: str):
    return page.evaluate(f"(() => {{ const a = document.getElementById('segment-audio'); return {expression}; }})()")


def _wait_for_audio(page, condition: str) -> None:
    page.wait_for_function(
        f"() => {{ const a = document.getElementById('segment-audio'); return {condition}; }}", timeout=TIMEOUT_MS
    )


@needs_chromium
def test_reviewer_listens_to_the_segment_and_its_focus_window(live_server, page, keys, sessions, store):
    from playwright.sync_api import expect

    submitter = key_id(sessions, "submitter")
    # Channel 1 (the 1000 Hz side) from 2.0 to 3.5 s; focus 0.5–1.0 s into the segment = 1.5–2.0 s into the clip.
    item_id = make_recorded_review_item(
        sessions, store, stereo_tones(), submitter, start=2.0, end=3.5, channel=1,
        recording_seconds=6.0, channels=2, reason_details=_worker_reason_details(0.5, 1.0),
    )  # fmt: skip
    other = make_review_item(sessions, submitter)  # no recording in storage
    _sign_in(page, live_server, _bearer(keys["reviewer"]))
    page.get_by_role("button", name="Claim next").click()
    item = page.locator("#item-section")
    expect(item).to_have_attribute("data-id", str(item_id))

    player = page.get_by_label("Segment audio (1 s of context each side)")
    expect(player).to_have_attribute("src", re.compile(r"^blob:"))
    _wait_for_audio(page, "a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0")
    assert abs(_audio(page, "a.duration") - 3.5) < 0.05
    assert _audio(page, "a.error") is None
    expect(page.locator("#audio-note")).to_have_text(
        "The clip starts at 1.00 s in the recording; the segment runs from 1.00 s to 2.50 s of the clip."
    )
    expect(page.locator("#focus-where")).to_have_text("2.50–3.00 s in the recording")
    old_url = player.get_attribute("src")

    focus = page.get_by_role("button", name="Play focus window")
    expect(focus).to_be_enabled()
    focus.click()
    # It plays from the window's start and pauses itself at the window's end.
    _wait_for_audio(page, "a.played.length > 0 && a.paused && a.currentTime >= 1.9")
    played = _audio(page, "[a.played.start(0), a.played.end(a.played.length - 1), a.currentTime]")
    assert abs(played[0] - 1.5) < 0.1, played
    assert 1.9 <= played[2] < 2.3 and played[1] < 2.3, played

    # Another item: the old object URL is revoked and the new item's audio (missing here) is not the old one.
    page.get_by_role("button", name="Release").click()
    expect(item).to_be_hidden()
    assert (
        page.evaluate(
            """(url) => new Promise((done) => {
            const probe = new Audio();
            probe.onloadedmetadata = () => done("loaded");
            probe.onerror = () => done("error");
            probe.src = url;
        })""",
            old_url,
        )
        == "error"
    )
    page.locator(f"#queue > li[data-id='{other}'] button").click()
    expect(item).to_have_attribute("data-id", str(other))
    expect(page.locator("#audio-note")).to_contain_text("(recording_missing)")
    expect(player).not_to_have_attribute("src", re.compile("."))
    expect(focus).to_be_hidden()  # this item has no focus window
