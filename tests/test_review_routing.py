"""Which segments reach people: no silence by default, fear/disgust first, a
reproducible share for two reviewers."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
from sqlalchemy import select

from config import Settings
from domain.review_routing import priority, required_decisions, route
from models import Result, ReviewItem
from tests.conftest import voiced, wav_bytes
from tests.factories import key_id, make_job
from worker.jobs import Delivery, run_job


def test_silence_is_not_sent_to_people_unless_the_domain_asks_for_it():
    review = Settings.from_env({"EMOQ_REVIEW_FLAGS_BY_DOMAIN": {"lab": ["no_speech", "low_confidence"]}}).review
    silent = ["no_speech", "too_short", "low_confidence"]
    assert route(uuid.uuid4(), silent, None, review) is None
    assert route(uuid.uuid4(), silent, "lab", review).reasons == ["no_speech", "low_confidence"]
    assert route(uuid.uuid4(), ["low_confidence"], None, review).reasons == ["low_confidence"]
    assert route(uuid.uuid4(), ["clipping"], None, review) is None  # not a review flag by default


def test_priority_follows_the_configured_order():
    order = ["fear_disgust_ambiguous", "dual_emotion"]
    assert priority(["low_confidence", "fear_disgust_ambiguous"], order) == 0
    assert priority(["dual_emotion"], order) == 1
    assert priority(["low_snr"], order) == 2
    review = Settings.from_env({"EMOQ_REVIEW_PRIORITY": ["low_snr"]}).review
    assert route(uuid.uuid4(), ["low_snr"], None, review).priority == 0
    assert route(uuid.uuid4(), ["fear_disgust_ambiguous"], None, review).priority == 1


def test_the_double_review_share_is_reproducible_and_close_to_the_setting():
    ids = [uuid.UUID(int=i * 7919) for i in range(4000)]
    doubles = [required_decisions(i, 0.1) for i in ids]
    assert doubles == [required_decisions(i, 0.1) for i in ids]  # the same id always gets the same answer
    assert 0.08 < doubles.count(2) / len(ids) < 0.12
    assert {required_decisions(i, 0.0) for i in ids} == {1}
    assert {required_decisions(i, 1.0) for i in ids} == {2}


def stereo_with_a_silent_channel() -> bytes:
    speech = voiced(3.0)
    return wav_bytes(np.stack([speech, np.zeros_like(speech)], axis=1))


def test_the_worker_routes_speech_but_not_the_silent_channel(settings, sessions, store, keys, worker_ctx):
    # Every segment low-confidence, so both channels carry a review flag.
    unsure = settings.override(
        {"EMOQ_LOW_CONFIDENCE_THRESHOLD": 0.99, "EMOQ_REVIEW_FLAGS_BY_DOMAIN": {"lab": ["no_speech", "low_confidence"]}}
    )
    ctx = dataclasses.replace(worker_ctx, settings=unsure)

    def routed(domain: str | None) -> tuple[set[int], set[int]]:
        job = make_job(sessions, store, stereo_with_a_silent_channel(), key_id(sessions, "submitter"), domain=domain)
        run_job(ctx, Delivery(job.id, job.task_id))
        with sessions() as session:
            items = session.scalars(select(ReviewItem).where(ReviewItem.job_id == job.id)).all()
            segments = session.scalar(select(Result.segments).where(Result.job_id == job.id))
        assert all(i.required_decisions in (1, 2) for i in items)
        silent = {s["index"] for s in segments if "no_speech" in s["flags"]}
        assert silent and all("low_confidence" in segments[i]["flags"] for i in silent)
        return {i.segment_index for i in items}, silent

    indexes, silent = routed(None)
    assert indexes and not indexes & silent  # the speech goes to people, the silence does not
    indexes, silent = routed("lab")  # a domain whose policy names no_speech gets its silence reviewed
    assert silent <= indexes
