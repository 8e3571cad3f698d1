"""The reviewers' web pages, in a real browser: Debian's Chromium driven by
Playwright against the Flask app served on a free local port, with the real
database, S3 and recordings. Screenshots and the keyboard loop's timings go
to var/test-artifacts/ (git-ignored)."""

from __future__ import annotations

import json
import os
import re
import statistics
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from models import EMOTION_LABELS, Batch, Job, Result, ReviewItem
from models.db import transaction
from tests.conftest import serving
from tests.factories import key_id, make_review_item
from tests.test_review import stereo_tones

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("EMOQ_TEST_ARTIFACTS", ROOT / "var" / "test-artifacts"))
CHROMIUM = Path("/usr/bin/chromium")
NO_CHROMIUM = "/usr/bin/chromium is missing (Debian package 'chromium'; `make system-deps` installs it)"
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM)  # for tests that launch their own
TIMEOUT_MS = 15_000
SCREEN = {"width": 1366, "height": 768}  # the reviewers' laptops


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name


# ---------- serving and the browser ----------


@pytest.fixture
def live_server(app) -> Iterator[str]:
    with serving(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():  # every test of this page, in one place
        pytest.skip(NO_CHROMIUM)

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-gpu",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, errors: list[str]):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    context = browser.new_context(viewport=SCREEN, locale="en-GB", timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # A blocked style or script (CSP) is a console error, not a page error: count it too.
    page.on(
        "console", lambda msg: msg.type == "error" and "Content Security Policy" in msg.text and errors.append(msg.text)
    )
    return page


@pytest.fixture
def page(browser):
    errors: list[str] = []
    page = new_page(browser, errors)
    yield page
    page.context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def sign_in(page, base: str, key: str, path: str = "/review") -> None:
    page.goto(f"{base}{path}")
    page.get_by_role("textbox", name="API key").fill(key)
    page.get_by_role("button", name="Use key").click()


# ---------- items as the worker makes them, with a recording and a timeline ----------

SEGMENT = (2.0, 3.5)  # on channel 1 (the 1000 Hz side of stereo_tones)
FOCUS = (0.5, 1.0)  # into the segment


def timeline(start: float, end: float, window: float = 0.4, hop: float = 0.1) -> dict:
    """Frame scores whose fearful line rises and disgusted falls across the segment."""
    starts = np.round(np.arange(start, end - window + 1e-9, hop), 3)
    t = np.linspace(0, 1, len(starts))
    scores = np.full((len(starts), len(EMOTION_LABELS)), 0.02)
    scores[:, EMOTION_LABELS.index("fearful")] = 0.2 + 0.5 * t
    scores[:, EMOTION_LABELS.index("disgusted")] = 0.6 - 0.4 * t
    scores[:, EMOTION_LABELS.index("neutral")] = 0.1
    scores /= scores.sum(axis=1, keepdims=True)
    return {
        "window_seconds": window,
        "hop_seconds": hop,
        "labels": list(EMOTION_LABELS),
        "starts": starts.tolist(),
        "scores": np.round(scores, 4).tolist(),
        "runs": [],
    }


def reason_details(fear_disgust: bool = True) -> dict:
    model = {"fearful": 0.45, "disgusted": 0.40, "neutral": 0.15}
    if not fear_disgust:
        return {
            "flags": ["low_snr"],
            "enhancement": {"policy": {}, "fear_disgust": None},
            "enhanced_scores": {"neutral": 0.7, "sad": 0.3},  # the same as the model's: nothing changed
            "quality": {"speech_ratio": 0.4, "snr_db": 8.5, "clipping_ratio": 0.0, "flags": ["low_snr"]},
        }
    return {
        "flags": ["fear_disgust_ambiguous", "low_confidence"],
        "enhancement": {
            "policy": {"redecide_margin": 0.12, "review_margin": 0.15, "focus_weight": 0.25},
            "domain_profile": {"domain": "support", "version": 3, "applied": True},
            "fear_disgust": {
                "margin_before": 0.05,
                "margin_after": 0.08,
                "model": {"fearful": model["fearful"], "disgusted": model["disgusted"]},
                "redecision": "applied",
                "similarity": {"fearful": 0.412, "disgusted": 0.377},
                "similarity_probability": {"fearful": 0.587, "disgusted": 0.413},
                "temperature": 0.1,
                "focus_window": {
                    "start": FOCUS[0],
                    "end": FOCUS[1],
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


def make_items(sessions, store, submitter: uuid.UUID, count: int = 1, *, fear_disgust: bool = True, **item_fields):
    """``count`` succeeded stereo calls sharing one recording in S3, each with a
    frame timeline and one pending review item on its customer segment."""
    key = f"recordings/test/ui-{uuid.uuid4()}"
    data = stereo_tones()
    store.put_bytes(key, data)
    scores = dict.fromkeys(EMOTION_LABELS, 0.0)
    if fear_disgust:
        scores.update(fearful=0.45, disgusted=0.40, neutral=0.15)
    else:
        scores.update(neutral=0.7, sad=0.3)
    label = "fearful" if fear_disgust else "neutral"
    reasons = ["fear_disgust_ambiguous"] if fear_disgust else ["low_snr"]
    start, end = SEGMENT
    ids = []
    with transaction(sessions) as session:
        for n in range(count):
            job = Job(
                object_key=key, sha256="0" * 64, size_bytes=len(data), submitter_id=submitter, status="succeeded",
                granularity="frame", duration_seconds=6.0, sample_rate=16000, channels=2,
                channel_roles=["agent", "customer"], external_id=f"call-{n:03d}", domain="support",
            )  # fmt: skip
            session.add(job)
            session.flush()
            segment = {
                "index": 0, "channel": 1, "role": "customer", "start": start, "end": end, "scores": scores,
                "model_scores": scores, "primary": {"label": label, "confidence": max(scores.values())},
                "flags": reasons, "enhancement": reason_details(fear_disgust)["enhancement"],
                "quality": reason_details(fear_disgust)["quality"], "timeline": timeline(start, end),
                "frames_key": None,
            }  # fmt: skip
            result = Result(
                job_id=job.id, model_id="test", model_revision="test", model_random_weights=True,
                primary_label=label, primary_confidence=max(scores.values()), scores=scores, embedding=[0.0] * 8,
                embedding_dim=8, enhancement={}, flags=reasons, segments=[segment], aggregate={},
            )  # fmt: skip
            session.add(result)
            session.flush()
            item = ReviewItem(
                **{
                    "job_id": job.id, "result_id": result.id, "segment_index": 0, "start_seconds": start,
                    "end_seconds": end, "channel_role": "customer", "domain": "support", "embedding": [0.0] * 8,
                    "model_scores": scores, "model_label": label, "reasons": reasons,
                    "reason_details": reason_details(fear_disgust), "status": "pending", **item_fields,
                }
            )  # fmt: skip
            session.add(item)
            session.flush()
            ids.append(item.id)
    return ids


# ---------- what the page shows ----------


def canvas_painted(page, selector_js: str) -> bool:
    """Whether a canvas found by ``selector_js`` (an expression) has any non-transparent pixel."""
    return page.evaluate(
        f"""() => {{
            const canvases = {selector_js};
            return canvases.some((c) => {{
                if (!c.width || !c.height) return false;
                const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
                for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
                return false;
            }});
        }}"""
    )


WAVE_CANVASES = "Array.from(document.querySelector('#waveform > div').shadowRoot.querySelectorAll('canvas'))"
CHART_CANVASES = "Array.from(document.querySelectorAll('#timeline-chart canvas'))"


def wave_regions(page) -> list[str]:
    return page.evaluate(
        "() => Array.from(document.querySelector('#waveform > div').shadowRoot"
        ".querySelectorAll('[part~=\"region\"]')).map((r) => r.getAttribute('part'))"
    )


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= SCREEN["height"]


def audio(page, expression: str):
    return page.evaluate(f"(() => {{ const a = document.getElementById('segment-audio'); return {expression}; }})()")


def wait_for_audio(page, condition: str) -> None:
    page.wait_for_function(
        f"() => {{ const a = document.getElementById('segment-audio'); return {condition}; }}", timeout=TIMEOUT_MS
    )


# ---------- the tests ----------


def test_pages_and_their_files_are_served_without_auth(client):
    page = client.get("/review")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'src="review/static/review.js"' in page.data
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "media-src 'self' blob:;" in csp
    nonce = re.search(r"style-src 'self' 'nonce-([^']+)'", csp).group(1)
    assert f'content="{nonce}"'.encode() in page.data  # the waveform's shadow stylesheet carries it
    assert nonce not in client.get("/review").headers["Content-Security-Policy"]  # fresh every time
    for name, mimetype in [
        ("review.js", "text/javascript"),
        ("common.js", "text/javascript"),
        ("review.css", "text/css"),
        ("review-stats.js", "text/javascript"),
        ("vendor/wavesurfer/wavesurfer.min.js", "text/javascript"),
        ("vendor/wavesurfer/regions.min.js", "text/javascript"),
        ("vendor/wavesurfer/zoom.min.js", "text/javascript"),
        ("vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("vendor/uplot/uPlot.min.css", "text/css"),
    ]:
        asset = client.get(f"/review/static/{name}")
        assert asset.status_code == 200 and asset.mimetype == mimetype, name
    stats = client.get("/review/stats")
    assert stats.status_code == 200 and b'src="static/review-stats.js"' in stats.data
    assert client.get("/v1/review-items").status_code == 401  # the data still needs a key


def test_an_item_shows_its_waveform_chart_and_only_the_evidence_that_applies(live_server, page, keys, sessions, store):
    from playwright.sync_api import expect

    submitter = key_id(sessions, "submitter")
    (fear,) = make_items(sessions, store, submitter)
    (snr,) = make_items(sessions, store, submitter, fear_disgust=False, priority=5)
    sign_in(page, live_server, _bearer(keys["reviewer"]))
    expect(page.locator("#queue > li")).to_have_count(2)
    expect(page.locator("#waiting")).to_have_text("2 waiting")
    expect(page.locator("#reason-counts")).to_contain_text("fear disgust ambiguous 1")
    assert page.evaluate("sessionStorage.getItem('emoq.review.apiKey')") == _bearer(keys["reviewer"])
    assert page.evaluate("localStorage.length") == 0
    page.screenshot(path=artifact("review-queue.png"))

    page.keyboard.press("n")  # claim next: fear/disgust first
    item = page.locator("#item-section")
    expect(item).to_have_attribute("data-id", str(fear))
    expect(page.locator("#queue-section")).to_be_hidden()
    expect(page.locator("#labels input:focus")).to_have_count(1)  # the label group, not <body>
    facts = page.locator("#item-facts")
    expect(facts).to_contain_text("call-000")
    expect(facts).to_contain_text("support")
    expect(facts).to_contain_text("customer (channel 1)")
    expect(page.locator("#random-weights")).to_contain_text("Random model weights")
    details = page.locator("#reason-details")
    expect(details).to_contain_text("Fear/disgust margin (model)0.050")
    expect(details).to_contain_text("Focus window0.50–1.00 s into the segment (2.50–3.00 s in the recording)")
    expect(details).to_contain_text("Domain profilesupport v3")
    expect(page.locator("#enhanced-wrap")).to_be_visible()  # the enhancement moved fearful/disgusted
    expect(page.locator("#definition-list")).to_contain_text("cannot tell")

    # The waveform: drawn, with the segment and the focus window as regions; the chart: drawn.
    expect(page.locator("#audio-mode")).to_contain_text("the segment with 1 s either side")
    page.wait_for_function(f"() => {WAVE_CANVASES}.length > 0")
    assert canvas_painted(page, WAVE_CANVASES)
    page.wait_for_function(
        "() => document.querySelector('#waveform > div').shadowRoot.querySelectorAll('[part~=\"region\"]').length === 2"
    )
    assert sorted(wave_regions(page)) == ["region focus", "region segment"]
    assert canvas_painted(page, CHART_CANVASES)
    expect(page.locator("#timeline-chart .u-legend")).to_contain_text("fearful")
    assert abs(audio(page, "a.duration") - 3.5) < 0.05  # 1 s + 1.5 s + 1 s

    # On a 1366×768 screen the form stays in view, the evidence beside it, scrolled or not.
    page.screenshot(path=artifact("review-item.png"))
    for selector in ("#label-fearful", "#resolve", "#waveform"):
        assert in_view(page, selector), selector
    page.mouse.wheel(0, 2000)
    page.wait_for_function("() => window.scrollY > 0")
    assert in_view(page, "#label-fearful") and in_view(page, "#resolve")

    page.keyboard.press("Escape")  # release
    expect(page.locator("#status")).to_contain_text("Released")
    page.locator(f"#queue > li[data-id='{snr}'] button").click()
    expect(item).to_have_attribute("data-id", str(snr))
    expect(details).not_to_contain_text("Fear/disgust")  # not a fear/disgust item: no such rows
    expect(details).to_contain_text("SNR 8.5 dB")
    expect(page.locator("#enhanced-wrap")).to_be_hidden()  # nothing changed: one score panel
    expect(page.get_by_role("button", name="Focus window F")).to_be_hidden()
    page.wait_for_function(
        "() => document.querySelector('#waveform > div').shadowRoot.querySelectorAll('[part~=\"region\"]').length === 1"
    )


def test_each_queue_row_shows_its_call(live_server, page, keys, sessions, store):
    """Reviewers tell the calls in the list apart by their external ids."""
    from playwright.sync_api import expect

    make_items(sessions, store, key_id(sessions, "submitter"), count=2)
    sign_in(page, live_server, _bearer(keys["reviewer"]))
    rows = page.locator("#queue > li")
    expect(rows).to_have_count(2)
    for call in ("call-000", "call-001"):
        expect(rows.filter(has_text=f"Call {call}")).to_have_count(1)
        expect(page.get_by_role("button", name=re.compile(f"^Claim the item of call {call} "))).to_have_count(1)


def test_the_batch_filter_takes_the_batch_s_name(live_server, page, keys, sessions, store):
    from playwright.sync_api import expect

    submitter = key_id(sessions, "submitter")
    inside = make_items(sessions, store, submitter, count=2)
    make_items(sessions, store, submitter)  # in no batch
    with transaction(sessions) as session:
        batch = Batch(submitter_id=submitter, name="nightly-2026-11-25")
        session.add(batch)
        session.flush()
        jobs = select(ReviewItem.job_id).where(ReviewItem.id.in_(inside))
        session.execute(update(Job).where(Job.id.in_(jobs)).values(batch_id=batch.id))
    sign_in(page, live_server, _bearer(keys["reviewer"]))
    rows = page.locator("#queue > li")
    expect(rows).to_have_count(3)

    batch_filter = page.locator("#filter-batch")
    batch_filter.fill("nightly-2026-11-25")
    batch_filter.press("Enter")
    expect(rows).to_have_count(2)
    expect(page.locator("#waiting")).to_have_text("2 waiting")
    assert sorted(rows.evaluate_all("(rows) => rows.map((r) => r.dataset.id)")) == sorted(map(str, inside))

    batch_filter.fill("no-such-batch")
    batch_filter.press("Enter")
    expect(page.locator("#status")).to_contain_text("no batch is named 'no-such-batch' (batch_not_found)")
    expect(rows).to_have_count(0)  # not the last filter's rows under the refused one
    expect(page.get_by_label("Batch (name or id)")).to_be_visible()  # the field says what it takes


def test_clicking_the_chart_seeks_the_player(live_server, page, keys, sessions, store):
    make_items(sessions, store, key_id(sessions, "submitter"))
    sign_in(page, live_server, _bearer(keys["reviewer"]))
    page.get_by_role("button", name="Claim next").click()
    wait_for_audio(page, "a.readyState >= 1 && a.duration > 3")
    page.wait_for_function(f"() => {CHART_CANVASES}.length > 0")
    # The chart's x axis runs over the timeline's window centres: 2.2 s to 3.3 s of the recording.
    over = page.locator("#timeline-chart .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    page.wait_for_function("() => !document.getElementById('segment-audio').paused")
    assert abs(float(page.locator("#play-time").get_attribute("data-seconds")) - 2.75) < 0.05
    # The clip starts 1 s before the segment, at 1.0 s: the player went to 1.75 s of it (and plays on).
    assert 1.7 <= audio(page, "a.currentTime") < 2.3
    assert page.locator("#timeline-chart .chart-playhead").is_visible()  # the play cursor on the chart


def resolved_items(client, headers) -> dict[str, list[str]]:
    items = client.get("/v1/review-items?status=resolved&limit=200", headers=headers).get_json()["items"]
    return {i["id"]: i["final_labels"] for i in items}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def test_a_reviewer_clears_50_items_with_the_keyboard_alone(live_server, page, keys, sessions, store, client):
    from playwright.sync_api import expect

    make_items(sessions, store, key_id(sessions, "submitter"), 50)
    sign_in(page, live_server, _bearer(keys["reviewer"]))
    expect(page.locator("#waiting")).to_have_text("50 waiting")
    item = page.locator("#item-section")
    chosen: dict[str, str] = {}
    page.keyboard.press("n")
    previous = None
    for n in range(50):
        if previous is not None:
            expect(item).not_to_have_attribute("data-id", previous)  # Enter opened the next item …
        expect(page.locator("#labels input:focus")).to_have_count(1)  # … with focus on its labels, never <body>
        expect(page.locator("#resolve")).to_be_enabled()
        previous = item.get_attribute("data-id")
        label = EMOTION_LABELS[n % 9]
        page.keyboard.press(str(n % 9 + 1))
        expect(page.locator(f"#label-{label}")).to_be_checked()
        chosen[previous] = label
        page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Nothing more is waiting for you")
    expect(item).to_be_hidden()
    assert page.evaluate("document.activeElement.id") in ("claim-next", "queue-heading")  # never <body> …
    expect(page.get_by_role("button", name="Claim next")).to_be_focused()  # … and then ready for N / Enter
    assert resolved_items(client, keys["admin"]) == {i: [label] for i, label in chosen.items()}

    # The app's own time per item: Enter → the next item on screen with focus on its labels (User Timing).
    per_item = page.evaluate("performance.getEntriesByName('emoq:next-item').map((m) => m.duration)")
    waveform = page.evaluate("performance.getEntriesByName('emoq:waveform-ready').map((m) => m.duration)")
    assert len(per_item) == 49  # the 50th Enter found the queue empty
    report = {
        "items": 50,
        "next_item_ms": {"p50": statistics.median(per_item), "p95": percentile(per_item, 0.95), "max": max(per_item)},
        "waveform_ready_ms": {"p50": statistics.median(waveform), "p95": percentile(waveform, 0.95)},
        "target": "p95 of next_item_ms under 300 ms on the development machine",
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    artifact("keyboard-loop.json").write_text(json.dumps(report, indent=2))
    print(f"\nkeyboard loop: {json.dumps(report)}")
    # Recorded, not asserted tightly (the machine is shared); this bound catches a broken loop, not a slow one.
    assert report["next_item_ms"]["p95"] < 5000


def test_hotkeys_play_pick_two_labels_and_resolve(live_server, page, keys, sessions, store, client):
    from playwright.sync_api import expect

    (item_id,) = make_items(sessions, store, key_id(sessions, "submitter"))
    sign_in(page, live_server, _bearer(keys["reviewer"]))
    expect(page.locator("#waiting")).to_have_text("1 waiting")
    page.keyboard.press("n")
    expect(page.locator("#item-section")).to_have_attribute("data-id", str(item_id))
    wait_for_audio(page, "a.readyState >= 1 && Math.abs(a.duration - 3.5) < 0.05")

    page.keyboard.press(" ")  # Space plays …
    wait_for_audio(page, "!a.paused && a.currentTime > 0")
    page.keyboard.press(" ")  # … and pauses
    wait_for_audio(page, "a.paused")

    # F: the focus window, 2.5–3.0 s of the recording = 1.5–2.0 s of the clip; it stops itself at the end.
    page.keyboard.press("f")
    wait_for_audio(page, "a.played.length > 0 && a.paused && a.currentTime >= 1.9")
    played = audio(page, "[a.played.start(a.played.length - 1), a.currentTime]")
    assert 1.4 <= played[0] <= 1.6 and played[1] < 2.3, played

    # W: the whole call on the customer's channel; O: the agent's.
    page.keyboard.press("w")
    expect(page.locator("#audio-mode")).to_contain_text("the whole call, this speaker's channel (channel 1)")
    wait_for_audio(page, "Math.abs(a.duration - 6.0) < 0.05 && !a.paused")
    page.keyboard.press("o")
    expect(page.locator("#audio-mode")).to_contain_text("the whole call, the other channel (channel 0)")
    wait_for_audio(page, "Math.abs(a.duration - 6.0) < 0.05 && !a.paused")
    page.keyboard.press("s")  # back to the segment
    expect(page.locator("#audio-mode")).to_contain_text("the segment with 1 s either side")

    page.keyboard.press("3")
    page.keyboard.press("Shift+2")  # a second emotion
    expect(page.locator("#label-fearful")).to_be_checked()
    expect(page.locator("#second-label")).to_have_value("disgusted")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Resolved: “fearful + disgusted”")
    assert resolved_items(client, keys["admin"]) == {str(item_id): ["fearful", "disgusted"]}
    events = client.get(f"/v1/review-items/{item_id}/history", headers=keys["admin"]).get_json()["events"]
    scopes = {e["details"]["scope"] for e in events if e["kind"] == "audio_played"}
    assert scopes == {"segment", "focus", "call", "other"}


def test_two_reviewers_on_a_double_review_item_and_the_admin_adjudicates(
    live_server, browser, keys, sessions, store, client
):
    from playwright.sync_api import expect

    (item_id,) = make_items(sessions, store, key_id(sessions, "submitter"), required_decisions=2)
    errors: list[str] = []
    first, second, admin = (new_page(browser, errors) for _ in range(3))
    try:
        sign_in(first, live_server, _bearer(keys["reviewer"]))
        expect(first.locator("#queue > li")).to_have_count(1)
        first.keyboard.press("n")
        expect(first.locator("#double-note")).to_be_visible()
        first.keyboard.press("3")  # fearful
        first.keyboard.press("Enter")
        expect(first.locator("#status")).to_contain_text("Recorded (a second reviewer decides too)")
        expect(first.locator("#waiting")).to_have_text("0 waiting")  # never twice for the same person

        sign_in(second, live_server, _bearer(keys["reviewer2"]))
        expect(second.locator("#queue > li")).to_have_count(1)
        expect(second.locator("#queue > li")).to_contain_text("double review (1/2)")
        second.keyboard.press("n")
        expect(second.locator("#item-section")).to_have_attribute("data-id", str(item_id))
        # Blind: nothing of the first reviewer's answer is on this page.
        expect(second.locator("#labels input:checked")).to_have_count(0)
        expect(second.locator("#admin-panel")).to_be_hidden()
        assert "fearful" not in second.locator("#decision-list").inner_text()
        second.keyboard.press("2")  # disgusted
        second.keyboard.press("Enter")
        expect(second.locator("#status")).to_contain_text("Sent to an admin")

        sign_in(admin, live_server, _bearer(keys["admin"]))
        admin.get_by_role("button", name="Disagreements").click()
        expect(admin.locator("#queue > li")).to_have_count(1)
        admin.locator("#queue > li button").click()
        expect(admin.locator("#decision-list > li")).to_have_count(2)
        expect(admin.locator("#decision-list")).to_contain_text("fearful · review by reviewer")
        expect(admin.locator("#decision-list")).to_contain_text("disgusted · review by reviewer2")
        expect(admin.locator("#resolve")).to_contain_text("Adjudicate")
        admin.keyboard.press("2")
        admin.keyboard.press("Enter")
        expect(admin.locator("#status")).to_contain_text("Adjudicated: “disgusted”")
        assert resolved_items(client, keys["admin"]) == {str(item_id): ["disgusted"]}
    finally:
        for p in (first, second, admin):
            p.context.close()
    assert errors == []


def test_an_admin_corrects_and_reopens_a_decision_and_analysts_see_it(live_server, page, keys, sessions, store, client):
    from playwright.sync_api import expect

    (item_id,) = make_items(sessions, store, key_id(sessions, "submitter"))
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"]).status_code == 200
    client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "fearful"}, headers=keys["reviewer"])
    with sessions() as session:
        job_id = session.get(ReviewItem, item_id).job_id

    def job_final() -> tuple[dict, dict]:
        segment = client.get(f"/v1/jobs/{job_id}", headers=keys["submitter"]).get_json()["result"]["segments"][0]
        return segment["final"], segment["review"]

    assert job_final()[0] == {"label": "fearful", "labels": ["fearful"], "source": "human"}

    sign_in(page, live_server, _bearer(keys["admin"]))
    page.get_by_role("button", name="Resolved").click()
    expect(page.locator("#queue > li")).to_contain_text("final: fearful")
    page.locator("#queue > li button").click()
    expect(page.locator("#decision-list")).to_contain_text("fearful · review by reviewer")
    page.keyboard.press("6")  # other
    page.keyboard.press("Enter")  # Correct
    expect(page.locator("#status")).to_contain_text("Corrected: “other”")

    # The analysts read the corrected human label in the job and the export.
    final, review = job_final()
    assert final["labels"] == ["other"] and review["reviewer"] == "admin"
    exported = client.get("/v1/exports/results?format=csv", headers=keys["submitter"]).get_data(as_text=True)
    assert "0:other" in exported

    page.locator("#queue > li button").click()
    page.locator("#history summary").click()
    expect(page.locator("#history-list")).to_contain_text("corrected · admin · other · was fearful")
    page.get_by_role("textbox", name="Note").fill("listen again")
    page.get_by_role("button", name="Reopen").click()
    expect(page.locator("#status")).to_contain_text("Reopened")
    expect(page.locator("#item-section")).to_be_hidden()
    final, review = job_final()
    assert final["source"] == "model" and review["status"] == "pending"  # back with people
    history = client.get(f"/v1/review-items/{item_id}/history", headers=keys["reviewer"]).get_json()["events"]
    assert [e["kind"] for e in history][-2:] == ["corrected", "reopened"]
    assert history[-1]["details"] == {"previous": ["other"], "note": "listen again"}


def test_the_stats_page_for_supervisors(live_server, page, keys, sessions, client):
    from playwright.sync_api import expect

    submitter = key_id(sessions, "submitter")
    for label in ("fearful", "disgusted"):
        item_id = make_review_item(sessions, submitter, required_decisions=2)
        for reviewer in ("reviewer", "reviewer2"):
            client.post(f"/v1/review-items/{item_id}/claim", headers=keys[reviewer])
            client.post(f"/v1/review-items/{item_id}/resolve", json={"label": label}, headers=keys[reviewer])
    make_review_item(sessions, submitter, reasons=["low_snr"])

    sign_in(page, live_server, _bearer(keys["reviewer"]), "/review/stats")
    expect(page.locator("#status")).to_contain_text("The stats need an admin key")
    page.get_by_role("textbox", name="API key").fill(_bearer(keys["admin"]))
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#summary")).to_contain_text("Double-reviewed pairs2")
    expect(page.locator("#summary")).to_contain_text("Raw agreement100.0%")
    expect(page.locator("#backlog")).to_contain_text("low snr")
    expect(page.locator("#cleared tbody tr")).to_have_count(2)
    expect(page.locator("#agreement")).to_contain_text("disgusted")
    expect(page.locator("#confusion tbody tr")).to_have_count(9)
    page.screenshot(path=artifact("review-stats.png"), full_page=True)


def test_a_submitter_key_is_told_it_is_forbidden(live_server, page, keys, sessions):
    from playwright.sync_api import expect

    make_review_item(sessions, key_id(sessions, "submitter"))
    sign_in(page, live_server, _bearer(keys["submitter"]))

    status = page.locator("#status")
    expect(status).to_contain_text("Forbidden")
    expect(status).to_contain_text("your key is 'submitter'")
    expect(status).to_have_attribute("data-kind", "error")
    expect(page.get_by_role("textbox", name="API key")).to_be_focused()
    expect(page.locator("#workspace")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('emoq.review.apiKey')") is None

    page.get_by_role("textbox", name="API key").fill("emoq_not-a-real-key")
    page.get_by_role("button", name="Use key").click()
    expect(status).to_contain_text("Unauthorized: unknown or revoked API key")
    page.get_by_role("textbox", name="API key").fill(_bearer(keys["reviewer"]))
    page.get_by_role("button", name="Use key").click()
    expect(page.locator("#queue > li")).to_have_count(1)


def test_an_expired_lease_is_shown_and_resolving_then_fails_clearly(
    settings, database, redis_client, store, page, keys, sessions
):
    from playwright.sync_api import expect

    from api import create_app

    app = create_app(settings.override({"EMOQ_REVIEW_LEASE_SECONDS": 2}))
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    with serving(app) as base:
        sign_in(page, base, _bearer(keys["reviewer"]))
        page.get_by_role("button", name="Claim next").click()
        lease = page.locator("#lease")
        expect(lease).to_contain_text("Lease expires at")
        expect(lease).to_contain_text("Lease expired at")  # the page's own clock ticks it over
        expect(lease).to_have_attribute("data-kind", "expired")
        # The item's recording is not in storage: the player says so instead of hanging.
        expect(page.locator("#audio-note")).to_contain_text("The recording is no longer in storage")
        page.keyboard.press("3")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("claim the item first (or your lease expired)")
        expect(page.locator("#queue > li")).to_have_count(1)
        expect(page.locator("#queue > li").first).to_have_attribute("data-id", str(item_id))
        expect(page.get_by_role("button", name="Claim next")).to_be_focused()  # not <body>


def test_a_new_tab_picks_up_the_item_this_key_still_holds(live_server, page, keys, sessions, store, client):
    """A tab closed right after Enter claimed the next item must not strand it for the lease's length."""
    from playwright.sync_api import expect

    (held,) = make_items(sessions, store, key_id(sessions, "submitter"))
    assert client.post(f"/v1/review-items/{held}/claim", headers=keys["reviewer"]).status_code == 200
    sign_in(page, live_server, _bearer(keys["reviewer"]))  # a fresh tab: nothing in its sessionStorage
    expect(page.locator("#item-section")).to_have_attribute("data-id", str(held))
    expect(page.locator("#labels input:focus")).to_have_count(1)
