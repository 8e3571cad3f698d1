"""Rows made directly in the database, for tests that start mid-way."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from models import EMOTION_LABELS, ApiKey, Job, Result, ReviewItem
from models.db import transaction


def key_id(sessions, name: str) -> uuid.UUID:
    with sessions() as session:
        return session.scalar(select(ApiKey.id).where(ApiKey.name == name))


def make_job(sessions, store, data: bytes, submitter: uuid.UUID, **fields) -> Job:
    job_id = uuid.uuid4()
    key = f"recordings/test/{job_id}"
    store.put_bytes(key, data)
    job = Job(
        id=job_id,
        object_key=key,
        sha256="0" * 64,
        size_bytes=len(data),
        submitter_id=submitter,
        status=fields.pop("status", "queued"),
        granularity=fields.pop("granularity", "utterance"),
        **fields,
    )
    with transaction(sessions) as session:
        session.add(job)
    return job


def make_review_item(
    sessions, submitter: uuid.UUID, *, label: str = "fearful", dim: int = 8, job_fields: dict | None = None, **fields
) -> uuid.UUID:
    """A succeeded job with a result and one pending review item; ``fields`` go to the item, ``job_fields`` to the job."""
    scores = dict.fromkeys(EMOTION_LABELS, 0.0)
    scores.update(fearful=0.45, disgusted=0.40, neutral=0.15)
    with transaction(sessions) as session:
        job = Job(
            object_key="recordings/none",
            sha256="0" * 64,
            size_bytes=1,
            submitter_id=submitter,
            status="succeeded",
            granularity="utterance",
            **(job_fields or {}),
        )
        session.add(job)
        session.flush()
        result = Result(
            job_id=job.id,
            model_id="test",
            model_revision="test",
            model_random_weights=True,
            primary_label=label,
            primary_confidence=0.45,
            scores=scores,
            embedding=[0.0] * dim,
            embedding_dim=dim,
            enhancement={},
            flags=["fear_disgust_ambiguous"],
            segments=[],
            aggregate={},
        )
        session.add(result)
        session.flush()
        item = ReviewItem(
            job_id=job.id,
            result_id=result.id,
            embedding=[0.0] * dim,
            model_scores=scores,
            **{
                "model_label": label,
                "reasons": ["fear_disgust_ambiguous"],
                "reason_details": {},
                "status": "pending",
                **fields,
            },
        )
        session.add(item)
        session.flush()
        return item.id
