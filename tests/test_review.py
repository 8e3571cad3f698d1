"""The review queue: claims are leases, exactly one reviewer wins."""

from __future__ import annotations

import io
import threading
import uuid

import numpy as np
import soundfile as sf

from models import EMOTION_LABELS, Batch, Result, ReviewItem
from models.db import transaction
from tests.conftest import wait_until, wav_bytes
from tests.factories import key_id, make_job, make_review_item

RATE = 16_000


def stereo_tones(seconds: float = 6.0, left_hz: float = 440.0, right_hz: float = 1000.0) -> bytes:
    """A 16 kHz stereo WAV: one steady tone on each channel, so a channel can be told by its pitch."""
    t = np.arange(int(seconds * RATE)) / RATE
    samples = np.stack([np.sin(2 * np.pi * left_hz * t), np.sin(2 * np.pi * right_hz * t)], axis=1)
    return wav_bytes((0.5 * samples).astype(np.float32), RATE)


def make_recorded_review_item(
    sessions,
    store,
    data: bytes,
    submitter: uuid.UUID,
    *,
    start: float,
    end: float,
    channel: int | None,
    recording_seconds: float | None = None,
    channels: int | None = None,
    reason_details: dict | None = None,
) -> uuid.UUID:
    """A succeeded job whose recording is in S3, its result, and one review item on segment 0.
    ``channel=None`` leaves the key out of the result's segment (older results)."""
    job = make_job(
        sessions, store, data, submitter,
        status="succeeded", duration_seconds=recording_seconds, channels=channels,
    )  # fmt: skip
    scores = dict.fromkeys(EMOTION_LABELS, 0.0)
    scores.update(fearful=0.45, disgusted=0.40, neutral=0.15)
    segment = {"index": 0, "role": "customer", "start": start, "end": end}
    if channel is not None:
        segment["channel"] = channel
    with transaction(sessions) as session:
        result = Result(
            job_id=job.id, model_id="test", model_revision="test", model_random_weights=True,
            primary_label="fearful", primary_confidence=0.45, scores=scores, embedding=[0.0] * 8,
            embedding_dim=8, enhancement={}, flags=["fear_disgust_ambiguous"], segments=[segment], aggregate={},
        )  # fmt: skip
        session.add(result)
        session.flush()
        item = ReviewItem(
            job_id=job.id, result_id=result.id, segment_index=0, start_seconds=start, end_seconds=end,
            channel_role="customer", embedding=[0.0] * 8, model_scores=scores, model_label="fearful",
            reasons=["fear_disgust_ambiguous"], reason_details=reason_details or {}, status="pending",
        )  # fmt: skip
        session.add(item)
        session.flush()
        return item.id


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def band_energy(samples: np.ndarray, rate: int, hz: float, width: float = 20.0) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    return float(spectrum[(freqs > hz - width) & (freqs < hz + width)].sum())


def test_claim_and_resolve(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    pending = client.get("/v1/review-items?status=pending", headers=keys["reviewer"]).get_json()["items"]
    assert [i["id"] for i in pending] == [str(item_id)]
    assert pending[0]["reasons"] == ["fear_disgust_ambiguous"]

    claimed = client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"])
    assert claimed.status_code == 200 and claimed.get_json()["status"] == "claimed"
    assert client.get("/v1/review-items?status=pending", headers=keys["reviewer"]).get_json()["items"] == []

    other = client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "fearful"}, headers=keys["reviewer2"])
    assert other.status_code == 409 and other.get_json()["code"] == "not_claimed"
    bad = client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "scared"}, headers=keys["reviewer"])
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_label"

    done = client.post(
        f"/v1/review-items/{item_id}/resolve", json={"label": "disgusted", "note": "retching"}, headers=keys["reviewer"]
    )
    assert done.status_code == 200
    assert done.get_json()["final_labels"] == ["disgusted"] and done.get_json()["status"] == "resolved"
    again = client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "fearful"}, headers=keys["reviewer"])
    assert again.status_code == 409 and again.get_json()["code"] == "already_resolved"
    resolved = client.get("/v1/review-items?status=resolved", headers=keys["reviewer"]).get_json()["items"]
    assert [i["final_labels"] for i in resolved] == [["disgusted"]]
    decisions = client.get("/v1/review-items?status=resolved", headers=keys["admin"]).get_json()["items"][0][
        "decisions"
    ]
    assert [(d["labels"], d["note"], d["reviewer"]["name"]) for d in decisions] == [
        (["disgusted"], "retching", "reviewer")
    ]


def test_each_item_names_its_call(client, keys, sessions):
    """The recording's external id, in the list and on the item, tells calls apart."""
    submitter = key_id(sessions, "submitter")
    named = make_review_item(sessions, submitter, job_fields={"external_id": "call-0042"})
    unnamed = make_review_item(sessions, submitter)
    listed = client.get("/v1/review-items", headers=keys["reviewer"]).get_json()["items"]
    assert {i["id"]: i["external_id"] for i in listed} == {str(named): "call-0042", str(unnamed): None}
    claimed = client.post(f"/v1/review-items/{named}/claim", headers=keys["reviewer"]).get_json()
    assert claimed["external_id"] == claimed["evidence"]["call"]["external_id"] == "call-0042"


def test_the_batch_filter_takes_a_batch_s_name_or_its_id(client, keys, sessions):
    submitter = key_id(sessions, "submitter")
    with transaction(sessions) as session:
        nightly = Batch(submitter_id=submitter, name="nightly")
        # Names are not unique: two submitters both called a batch "weekly".
        weekly = [Batch(submitter_id=key_id(sessions, name), name="weekly") for name in ("submitter", "submitter2")]
        session.add_all([nightly, *weekly])
        session.flush()
        nightly_id, weekly_ids = nightly.id, {str(b.id) for b in weekly}
    inside = make_review_item(sessions, submitter, job_fields={"batch_id": nightly_id})
    make_review_item(sessions, submitter)  # in no batch
    make_review_item(sessions, submitter, job_fields={"batch_id": uuid.UUID(min(weekly_ids))})
    reviewer = keys["reviewer"]

    def listed(batch: str):
        return client.get("/v1/review-items", query_string={"batch_id": batch}, headers=reviewer)

    for batch in (str(nightly_id), "nightly"):
        assert [i["id"] for i in listed(batch).get_json()["items"]] == [str(inside)]
    assert listed(str(uuid.uuid4())).get_json()["items"] == []  # a UUID is an id, never a name
    assert client.get("/v1/review-items/counts?batch_id=nightly", headers=reviewer).get_json()["waiting"] == 1

    unknown = listed("no-such-batch")
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"
    assert unknown.get_json()["code"] == "batch_not_found" and "'no-such-batch'" in unknown.get_json()["detail"]
    for ambiguous in (
        listed("weekly"),
        client.get("/v1/review-items/counts?batch_id=weekly", headers=reviewer),
        client.post("/v1/review-items/claim-next?batch_id=weekly", headers=reviewer),
    ):
        assert ambiguous.status_code == 409 and ambiguous.get_json()["code"] == "batch_name_ambiguous"
        assert set(ambiguous.get_json()["batch_ids"]) == weekly_ids
    claimed = client.post("/v1/review-items/claim-next?batch_id=nightly", headers=reviewer)
    assert claimed.status_code == 200 and claimed.get_json()["id"] == str(inside)
    call = claimed.get_json()["evidence"]["call"]  # the item view names the batch as its reviewer knows it
    assert (call["batch_id"], call["batch_name"]) == (str(nightly_id), "nightly")
    assert client.post("/v1/review-items/claim-next?batch_id=nope", headers=reviewer).get_json()["code"] == (
        "batch_not_found"
    )


def test_concurrent_claims_have_exactly_one_winner(app, keys, sessions):
    submitter = key_id(sessions, "submitter")
    for _ in range(10):
        item_id = make_review_item(sessions, submitter)
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def claim(headers, item_id=item_id, barrier=barrier, statuses=statuses):
            client = app.test_client()
            barrier.wait()
            statuses.append(client.post(f"/v1/review-items/{item_id}/claim", headers=headers).status_code)

        threads = [threading.Thread(target=claim, args=(keys[name],)) for name in ("reviewer", "reviewer2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 409]


def test_expired_lease_returns_the_item_to_the_queue(settings, database, redis_client, store, keys, sessions):
    from api import create_app

    app = create_app(settings.override({"EMOQ_REVIEW_LEASE_SECONDS": 1}))
    client = app.test_client()
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"]).status_code == 200
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer2"]).status_code == 409
    wait_until(
        lambda: client.get("/v1/review-items?status=pending", headers=keys["reviewer2"]).get_json()["items"],
        10,
        "the lease to expire",
    )
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer2"]).status_code == 200
    late = client.post(f"/v1/review-items/{item_id}/resolve", json={"label": "fearful"}, headers=keys["reviewer"])
    assert late.status_code == 409


def test_claim_next_takes_the_oldest_and_reports_an_empty_queue(client, keys, sessions):
    submitter = key_id(sessions, "submitter")
    first, second = make_review_item(sessions, submitter), make_review_item(sessions, submitter)
    assert client.post("/v1/review-items/claim-next", headers=keys["reviewer"]).get_json()["id"] == str(first)
    assert client.post("/v1/review-items/claim-next", headers=keys["reviewer2"]).get_json()["id"] == str(second)
    empty = client.post("/v1/review-items/claim-next", headers=keys["reviewer"])
    assert empty.status_code == 404 and empty.get_json()["code"] == "queue_empty"


def test_release_puts_the_item_back(client, keys, sessions):
    item_id = make_review_item(sessions, key_id(sessions, "submitter"))
    client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer"])
    assert client.post(f"/v1/review-items/{item_id}/release", headers=keys["reviewer2"]).status_code == 409
    assert client.post(f"/v1/review-items/{item_id}/release", headers=keys["reviewer"]).status_code == 200
    assert client.post(f"/v1/review-items/{item_id}/claim", headers=keys["reviewer2"]).status_code == 200


def test_segment_audio_is_the_items_channel_with_a_second_of_context(client, keys, sessions, store, settings):
    submitter = key_id(sessions, "submitter")
    item_id = make_recorded_review_item(
        sessions, store, stereo_tones(), submitter, start=2.0, end=3.5, channel=1, recording_seconds=6.0, channels=2
    )
    response = client.get(f"/v1/review-items/{item_id}/audio", headers=keys["reviewer"])
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == "audio/wav"
    assert float(response.headers["X-Emoq-Segment-Start"]) == 1.0
    assert float(response.headers["X-Emoq-Context-Seconds"]) == 1.0
    assert "no-store" in response.headers["Cache-Control"]

    info = sf.info(io.BytesIO(response.data))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (RATE, 1, "PCM_16", "WAV")
    assert abs(info.duration - 3.5) < 0.02  # 1.0 + 1.5 + 1.0
    samples, rate = sf.read(io.BytesIO(response.data), dtype="float32")
    assert dominant_hz(samples, rate) == 1000.0  # the right channel's tone ...
    assert band_energy(samples, rate, 440.0) < 1e-4 * band_energy(samples, rate, 1000.0)  # ... and none of the left's
    assert list(settings.storage.work_dir.glob("review-audio-*")) == []  # the downloaded recording is gone

    admin = client.get(f"/v1/review-items/{item_id}/audio", headers=keys["admin"])
    assert admin.status_code == 200 and admin.data == response.data
    forbidden = client.get(f"/v1/review-items/{item_id}/audio", headers=keys["submitter"])
    assert forbidden.status_code == 403 and forbidden.get_json()["code"] == "forbidden"
    assert client.get(f"/v1/review-items/{item_id}/audio").status_code == 401


def test_segment_audio_context_is_clamped_to_the_recording(client, keys, sessions, store):
    submitter = key_id(sessions, "submitter")
    data = stereo_tones()
    # No channel in the result's segment: channel 0. No duration on the job: ffmpeg stops at the end.
    near_start = make_recorded_review_item(sessions, store, data, submitter, start=0.3, end=1.0, channel=None)
    near_end = make_recorded_review_item(
        sessions, store, data, submitter, start=5.2, end=5.9, channel=0, recording_seconds=6.0
    )
    first = client.get(f"/v1/review-items/{near_start}/audio", headers=keys["reviewer"])
    assert first.status_code == 200 and float(first.headers["X-Emoq-Segment-Start"]) == 0.0
    samples, rate = sf.read(io.BytesIO(first.data), dtype="float32")
    assert abs(len(samples) / rate - 2.0) < 0.02  # 0.3 before (all there is) + 0.7 + 1.0 after
    assert dominant_hz(samples, rate) == 440.0

    last = client.get(f"/v1/review-items/{near_end}/audio", headers=keys["reviewer"])
    assert last.status_code == 200 and float(last.headers["X-Emoq-Segment-Start"]) == 4.2
    samples, rate = sf.read(io.BytesIO(last.data), dtype="float32")
    assert abs(len(samples) / rate - 1.8) < 0.02  # 1.0 before + 0.7 + 0.1 after (the recording ends)


def test_segment_audio_problems(client, keys, sessions, store):
    submitter = key_id(sessions, "submitter")
    unknown = client.get(f"/v1/review-items/{uuid.uuid4()}/audio", headers=keys["reviewer"])
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "review_item_not_found"

    gone = make_recorded_review_item(sessions, store, stereo_tones(1.0), submitter, start=0.0, end=0.5, channel=0)
    with sessions() as session:
        store.remove(session.get(ReviewItem, gone).result.job.object_key)
    missing = client.get(f"/v1/review-items/{gone}/audio", headers=keys["reviewer"])
    assert missing.status_code == 404 and missing.get_json()["code"] == "recording_missing"
    assert missing.mimetype == "application/problem+json"

    junk = b"certainly not audio" * 50
    not_audio = make_recorded_review_item(sessions, store, junk, submitter, start=0.0, end=1.0, channel=0)
    broken = client.get(f"/v1/review-items/{not_audio}/audio", headers=keys["reviewer"])
    assert broken.status_code == 422 and broken.get_json()["code"] == "audio_unavailable"

    # A channel the file does not have: ffmpeg refuses it even when the job row does not know the count.
    no_such_channel = make_recorded_review_item(
        sessions, store, stereo_tones(1.0), submitter, start=0.0, end=0.5, channel=3
    )
    wrong = client.get(f"/v1/review-items/{no_such_channel}/audio", headers=keys["reviewer"])
    assert wrong.status_code == 422 and wrong.get_json()["code"] == "audio_unavailable"
    assert "channel" in wrong.get_json()["detail"]  # ffmpeg's own reason, e.g. "input channel #3 not available"


def test_whole_call_and_other_channel_audio(settings, database, redis_client, store, keys, sessions):
    from api import create_app

    client = create_app(settings.override({"EMOQ_REVIEW_CALL_AUDIO_SECONDS": 2})).test_client()
    submitter = key_id(sessions, "submitter")
    item_id = make_recorded_review_item(
        sessions, store, stereo_tones(), submitter, start=2.0, end=3.5, channel=1, recording_seconds=6.0, channels=2
    )

    def fetch(scope: str):
        response = client.get(f"/v1/review-items/{item_id}/audio?scope={scope}", headers=keys["reviewer"])
        assert response.status_code == 200, response.get_json()
        samples, rate = sf.read(io.BytesIO(response.data), dtype="float32")
        return response.headers, samples, rate

    # The call, capped at 2 s here: centred on the segment (2.0–3.5 s), on the segment's own channel.
    headers, samples, rate = fetch("call")
    assert (headers["X-Emoq-Scope"], headers["X-Emoq-Channel"], float(headers["X-Emoq-Segment-Start"])) == (
        "call", "1", 1.75,
    )  # fmt: skip
    assert "X-Emoq-Context-Seconds" not in headers
    assert abs(len(samples) / rate - 2.0) < 0.02 and dominant_hz(samples, rate) == 1000.0
    headers, samples, rate = fetch("other")  # the other side over the same stretch
    assert (headers["X-Emoq-Channel"], float(headers["X-Emoq-Segment-Start"])) == ("0", 1.75)
    assert dominant_hz(samples, rate) == 440.0

    whole = client.get(f"/v1/review-items/{item_id}/audio?scope=call", headers=keys["reviewer"])
    assert whole.status_code == 200
    bad = client.get(f"/v1/review-items/{item_id}/audio?scope=everything", headers=keys["reviewer"])
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_scope"
    mono = make_recorded_review_item(
        sessions, store, wav_bytes(np.zeros(RATE, np.float32)), submitter, start=0.0, end=0.5, channel=0, channels=1
    )
    alone = client.get(f"/v1/review-items/{mono}/audio?scope=other", headers=keys["reviewer"])
    assert alone.status_code == 422 and alone.get_json()["code"] == "no_other_channel"


def test_the_call_window_fits_the_recording():
    from api.segment_audio import call_window

    assert call_window(100.0, 110.0, 300.0, 600.0) == (0.0, 300.0)  # the whole call fits
    assert call_window(1000.0, 1010.0, 3600.0, 600.0) == (705.0, 600.0)  # centred on the segment
    assert call_window(3590.0, 3600.0, 3600.0, 600.0) == (3000.0, 600.0)  # shifted to end with the call
    assert call_window(10.0, 20.0, None, 600.0) == (0.0, 600.0)  # unknown length: ffmpeg stops at the end
